package config

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// examplePath is the reference configuration, relative to this package.
const examplePath = "../../../examples/keygate.yaml"

func TestExampleParsesAndValidates(t *testing.T) {
	c, err := Load(examplePath, nil)
	if err != nil {
		t.Fatalf("%s:\n%v", examplePath, err)
	}
	if len(c.Upstreams) == 0 || c.WebAuthn.RPID == "" || len(c.Policy.Rules) == 0 {
		t.Errorf("example looks empty: %+v", c)
	}
}

// Every key of Config must appear in examples/keygate.yaml, the readers'
// reference, so that a new key cannot ship undocumented. Secrets that are
// only read from the environment cannot appear as keys; their variable must
// be named in the file instead.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	collectPaths(&root, "", present)

	keys, envOnly := configKeys(reflect.TypeFor[Config](), "")
	if len(keys) < 40 {
		t.Fatalf("only %d keys found; is the walk broken?", len(keys))
	}
	for _, k := range keys {
		if !present[k] {
			t.Errorf("%s is not in %s", k, examplePath)
		}
	}
	for _, k := range envOnly {
		if !strings.Contains(string(data), envName(k)) {
			t.Errorf("%s (for %s) is not mentioned in %s", envName(k), k, examplePath)
		}
	}
}

// configKeys lists the key paths of t, lists of mappings written with "[]"
// ("upstreams[].host"), and separately the env-only keys.
func configKeys(t reflect.Type, path string) (keys, envOnly []string) {
	for i := range t.NumField() {
		sf := t.Field(i)
		name, ok := yamlName(sf)
		if !ok {
			continue
		}
		p := joinPath(path, name)
		if sf.Tag.Get("keygate") == "env-only" {
			envOnly = append(envOnly, p)
			continue
		}
		ft := sf.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case isLeaf(ft):
			keys = append(keys, p)
		case ft.Kind() == reflect.Slice && !isLeaf(ft.Elem()) && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, p)
			k, e := configKeys(ft.Elem(), p+"[]")
			keys, envOnly = append(keys, k...), append(envOnly, e...)
		case ft.Kind() == reflect.Struct:
			keys = append(keys, p)
			k, e := configKeys(ft, p)
			keys, envOnly = append(keys, k...), append(envOnly, e...)
		default: // lists of scalars
			keys = append(keys, p)
		}
	}
	return keys, envOnly
}

// collectPaths records every key path written in n, in the same form.
func collectPaths(n *yaml.Node, path string, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			collectPaths(c, path, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := joinPath(path, n.Content[i].Value)
			out[p] = true
			collectPaths(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			collectPaths(c, path+"[]", out)
		}
	case yaml.AliasNode:
		collectPaths(n.Alias, path, out)
	}
}

// The walk above must see the keys the design names; a guard against the
// test passing because it checks nothing.
func TestConfigKeysCoverTheContract(t *testing.T) {
	keys, envOnly := configKeys(reflect.TypeFor[Config](), "")
	for _, k := range []string{
		"server.listen", "server.trusted_proxies", "server.admin_socket", "server.default_redirect",
		"session.cookie_domain", "session.idle_timeout", "session.lifetime",
		"storage.path", "storage.encryption_key_file", "upstreams[].host", "upstreams[].url",
		"webauthn.rp_id", "webauthn.rp_name", "webauthn.origins",
		"email.from", "email.smtp.host", "email.smtp.port", "email.smtp.tls", "email.smtp.username",
		"email.smtp.password_file", "email.outbox", "admin.groups",
		"passwords.min_length", "passwords.argon2id.memory_kib", "passwords.argon2id.iterations",
		"passwords.argon2id.parallelism", "passwords.max_concurrent_hashes",
		"metrics.listen", "log.level", "log.format",
		"policy.default", "policy.rules[].name", "policy.rules[].webauthn.aaguids", "policy.rules[].max_age",
	} {
		if !slices.Contains(keys, k) {
			t.Errorf("configKeys misses %s", k)
		}
	}
	if !slices.Equal(envOnly, []string{"storage.encryption_key", "storage.postgres.dsn", "email.smtp.password"}) {
		t.Errorf("env-only keys = %v", envOnly)
	}
}
