package config

import (
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable that overrides a key.
const EnvPrefix = "KEYGATE_"

// envName is the variable overriding the key at path: "email.smtp.host" →
// KEYGATE_EMAIL_SMTP_HOST.
func envName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// applyEnv overlays KEYGATE_<PATH> variables onto the struct v, walking the
// yaml tags so that every scalar and scalar-list key is overridable without
// a hand-written table that could fall behind the struct. Lists of mappings
// (upstreams, policy.rules) and optional sub-mappings have no sensible
// one-variable form and are left to the file. An empty variable counts as
// unset, because getenv cannot tell the two apart.
//
// It records in set which path each variable overrode, so that problems on
// those paths name the variable instead of a line in the file.
func applyEnv(v reflect.Value, path string, getenv func(string) string, set map[string]string, ps *Problems) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		name, ok := yamlName(sf)
		if !ok {
			continue
		}
		p := joinPath(path, name)
		fv := v.Field(i)
		ft := sf.Type
		switch {
		case isLeaf(ft):
			env := envName(p)
			val := getenv(env)
			if val == "" {
				continue
			}
			set[p] = env
			if err := setLeaf(envNode(val, ft), fv); err != nil {
				ps.add(p, "%s: %v", env, err)
			}
		case ft.Kind() == reflect.Slice && isLeaf(ft.Elem()):
			env := envName(p)
			val := getenv(env)
			if val == "" {
				continue
			}
			set[p] = env
			s := reflect.MakeSlice(ft, 0, strings.Count(val, ",")+1)
			bad := false
			for item := range strings.SplitSeq(val, ",") {
				item = strings.TrimSpace(item)
				if item == "" { // tolerate "a,,b" and a trailing comma
					continue
				}
				e := reflect.New(ft.Elem()).Elem()
				if err := setLeaf(envNode(item, ft.Elem()), e); err != nil {
					ps.add(p, "%s: item %q: %v", env, item, err)
					bad = true
					continue
				}
				s = reflect.Append(s, e)
			}
			if !bad {
				fv.Set(s)
			}
		case ft.Kind() == reflect.Struct:
			applyEnv(fv, p, getenv, set, ps)
		}
	}
}

// envNode wraps an environment value as a YAML scalar so that it is decoded
// exactly like the same text in the file (durations, integers, booleans).
// Text fields get an explicit !!str tag so that "null", "~" or "yes" stay
// the literal text the admin exported.
func envNode(val string, t reflect.Type) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: val}
	if t.Kind() == reflect.String && !hasUnmarshaler(t) {
		n.Tag = "!!str"
	}
	return n
}
