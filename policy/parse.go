package policy

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse reads a policy document (the value under the config's "policy:"
// key: default and rules at the top level) strictly: unknown keys, wrong
// types and bad durations are errors, and every such problem is listed, not
// just the first. An empty document is the empty policy. Parse only reads;
// Compile checks what the values mean.
//
// Problems come back as ValidationErrors, one FieldError each, with the
// YAML path of the key at fault ("rules[0].hostz"; "yaml" when the
// document does not parse far enough to say) and its line, so that the
// admin page can point at the rule and the CLI can print the line.
func Parse(yamlBytes []byte) (Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(yamlBytes))
	dec.KnownFields(true)
	var p Policy
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return Policy{}, nil
		}
		return Policy{}, parseProblems(yamlBytes, err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		if err != nil {
			return Policy{}, parseProblems(yamlBytes, err)
		}
		return Policy{}, ValidationErrors{{Path: "yaml", Line: more.Line,
			Message: "line " + strconv.Itoa(more.Line) + ": a second YAML document; a policy file holds one"}}
	}
	return p, nil
}

// lineRE finds yaml.v3's "line N: " in a message.
var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// parseProblems lists every problem yaml.v3 found, each placed at its YAML
// path. yaml.v3 names Go types in its messages ("field hostz not found in
// type policy.Rule"); people editing YAML think in keys, so those are
// reworded.
func parseProblems(doc []byte, err error) ValidationErrors {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var root yaml.Node
	// A document that does not even parse into nodes has no paths; the
	// line in the message is all there is.
	_ = yaml.Unmarshal(doc, &root)
	out := make(ValidationErrors, 0, len(msgs))
	for _, m := range msgs {
		m = rewordUnknownField(m)
		fe := FieldError{Path: "yaml", Message: strings.TrimPrefix(m, "yaml: ")}
		if sm := lineRE.FindStringSubmatch(m); sm != nil {
			fe.Line, _ = strconv.Atoi(sm[1])
			if p := pathAtLine(&root, fe.Line, unknownKeyOf(m)); p != "" {
				fe.Path = p
			}
		}
		out = append(out, fe)
	}
	return out
}

// unknownKeyOf is the key an "unknown key" message names ("" for others).
func unknownKeyOf(m string) string {
	_, rest, ok := strings.Cut(m, `unknown key "`)
	if !ok {
		return ""
	}
	key, _, _ := strings.Cut(rest, `"`)
	return key
}

// pathAtLine is the YAML path of the deepest key on line (preferring one
// named want, for flow mappings that hold several keys on one line), or of
// the list item that starts there.
func pathAtLine(n *yaml.Node, line int, want string) string {
	best, bestDepth, bestNamed := "", -1, false
	var walk func(n *yaml.Node, path string, depth int)
	consider := func(path string, depth int, named bool) {
		if (named && !bestNamed) || (named == bestNamed && depth > bestDepth) {
			best, bestDepth, bestNamed = path, depth, named
		}
	}
	walk = func(n *yaml.Node, path string, depth int) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path, depth)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if k.Line == line {
					consider(p, depth+1, want != "" && k.Value == want)
				}
				walk(v, p, depth+1)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				if c.Line == line && c.Kind != yaml.MappingNode {
					consider(p, depth+1, false)
				}
				walk(c, p, depth+1)
			}
		}
	}
	walk(n, "", 0)
	return best
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
	return head + "unknown key " + strconv.Quote(key) + " in " + where
}
