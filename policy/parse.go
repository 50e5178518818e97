package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse reads a policy document (the value under the config's "policy:"
// key: default and rules at the top level) strictly: unknown keys, wrong
// types and bad durations are errors that name their line, and every such
// problem is listed, not just the first. An empty document is the empty
// policy. Parse only reads; Compile checks what the values mean.
func Parse(yamlBytes []byte) (Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(yamlBytes))
	dec.KnownFields(true)
	var p Policy
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return Policy{}, nil
		}
		return Policy{}, parseError(err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		if err != nil {
			return Policy{}, parseError(err)
		}
		return Policy{}, fmt.Errorf("policy: line %d: a second YAML document; a policy file holds one", more.Line)
	}
	return p, nil
}

// parseError lists every problem yaml.v3 found. yaml.v3 names Go types in
// its messages ("field hostz not found in type policy.Rule"); people editing
// YAML think in keys, so those are reworded.
func parseError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("policy: %w", err)
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = rewordUnknownField(m)
	}
	return fmt.Errorf("policy: %s", strings.Join(msgs, "; "))
}

func rewordUnknownField(m string) string {
	head, rest, ok := strings.Cut(m, "field ")
	if !ok {
		return m
	}
	key, typ, ok := strings.Cut(rest, " not found in type policy.")
	if !ok {
		return m
	}
	var where string
	switch typ {
	case "Policy":
		where = "the policy (it holds default and rules)"
	case "Rule":
		where = "a rule"
	case "WebAuthnOptions":
		where = "webauthn options (hardware, user_verification, aaguids, synced)"
	default:
		return m
	}
	return fmt.Sprintf("%sunknown key %q in %s", head, key, where)
}
