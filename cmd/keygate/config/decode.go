package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/policy"
)

// The YAML is decoded by walking the yaml.Node tree alongside the Go type,
// field by field, instead of calling yaml.Decoder.KnownFields(true): that
// stops at the first unknown key and reports no path, while an admin wants
// every mistake, each with the dotted path and line. A value that fails to
// decode leaves its default in place so that the rest of the file is still
// decoded and validated.

// decoder collects problems and remembers on which line each path was
// written, so that problems Validate finds later can point into the file.
type decoder struct {
	problems Problems
	lines    map[string]int
}

func newDecoder() *decoder { return &decoder{lines: map[string]int{}} }

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	durationType        = reflect.TypeFor[policy.Duration]()
)

// yamlLineRe finds the line in yaml's syntax errors ("line 3: …").
var yamlLineRe = regexp.MustCompile(`^line (\d+): `)

// document decodes data onto out (a pointer to a struct holding defaults).
// It returns false when the YAML is not even well-formed; the syntax error is
// then the only problem.
func (d *decoder) document(data []byte, out any) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) { // empty file: all defaults
			return true
		}
		d.problems = append(d.problems, syntaxProblem(err))
		return false
	}
	// Further documents would be silently ignored by yaml; refuse them so
	// a stray "---" cannot hide half of the configuration. An empty one
	// (a trailing "---") hides nothing.
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			d.problems = append(d.problems, syntaxProblem(err))
			return false
		}
		if len(extra.Content) > 0 && !isNull(extra.Content[0]) {
			d.problems = append(d.problems, Problem{
				Message: "only one YAML document is allowed (remove the --- before this line)",
				Line:    extra.Content[0].Line,
			})
			return false
		}
	}
	n := &root
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return true
		}
		n = n.Content[0]
	}
	d.value(n, reflect.ValueOf(out).Elem(), "")
	return true
}

func syntaxProblem(err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var p Problem
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	p.Message = "YAML syntax error: " + msg
	return p
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.problems = append(d.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...), Line: n.Line})
}

// value decodes n into v (addressable) at path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	t := v.Type()
	if isLeaf(t) {
		if err := setLeaf(n, v); err != nil {
			d.fail(n, path, "%s", err.Error())
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		if isNull(n) {
			v.SetZero()
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want %s, got %s", describe(t), describeNode(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, e := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			d.lines[p] = e.Line
			d.value(e, s.Index(i), p)
		}
		v.Set(s)
	case reflect.Pointer:
		if isNull(n) {
			v.SetZero()
			return
		}
		e := reflect.New(t.Elem())
		if !v.IsNil() {
			e.Elem().Set(v.Elem())
		}
		d.value(n, e.Elem(), path)
		v.Set(e)
	default:
		// Maps, interfaces: nothing in Config has them today; let yaml do
		// it rather than silently skip the key.
		if err := setLeaf(n, v); err != nil {
			d.fail(n, path, "%s", err.Error())
		}
	}
}

// mapping decodes a YAML mapping onto the struct v, reporting unknown,
// duplicate and env-only keys.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) { // "server:" with nothing under it keeps the defaults
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want %s, got %s", describe(v.Type()), describeNode(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			d.merge(val, v, path)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "keys must be plain names, got %s", describeNode(k))
			continue
		}
		p := joinPath(path, k.Value)
		f, ok := fields[k.Value]
		if !ok {
			d.fail(k, p, "%s", unknownKey(k.Value, fields))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k, p, "duplicate key (first set on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		d.lines[p] = k.Line
		if f.envOnly {
			d.fail(k, p, "secrets are not accepted in the config file: %s", secretHint(fields, k.Value, p))
			continue
		}
		d.value(val, v.FieldByIndex(f.index), p)
	}
}

// merge applies a "<<: *anchor" (or a list of them) before the mapping's
// own keys, which therefore win, as in yaml's own decoder.
func (d *decoder) merge(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		d.mapping(n, v, path)
	case yaml.SequenceNode:
		for _, e := range n.Content {
			d.merge(e, v, path)
		}
	default:
		d.fail(n, path, "<< must merge a mapping or a list of mappings, got %s", describeNode(n))
	}
}

// secretHint says where an env-only secret may come from instead.
func secretHint(fields map[string]field, key, path string) string {
	hint := "set the environment variable " + envName(path)
	if _, ok := fields[key+"_file"]; ok {
		hint = "set " + path + "_file (a file holding it) or the environment variable " + envName(path)
	}
	return hint
}

// setLeaf decodes a scalar-like node into v. On failure v keeps its value
// and the error is a message fit for an admin ("want an integer, got
// \"soon\""), not yaml's internal wording.
func setLeaf(n *yaml.Node, v reflect.Value) error {
	tmp := reflect.New(v.Type())
	tmp.Elem().Set(v) // a null node leaves the default, as yaml does
	if err := n.Decode(tmp.Interface()); err != nil {
		te, ok := errors.AsType[*yaml.TypeError](err)
		if !ok {
			return err
		}
		if hasUnmarshaler(v.Type()) && len(te.Errors) > 0 {
			// The type's own words (policy.Duration: "\"-5m\" is
			// negative") say more than a generic "want …"; only yaml's
			// "line N: " prefix goes, since Problem carries the line.
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = yamlLineRe.ReplaceAllString(m, "")
			}
			return errors.New(strings.Join(msgs, "; "))
		}
		return fmt.Errorf("want %s, got %s", describe(v.Type()), describeNode(n))
	}
	v.Set(tmp.Elem())
	return nil
}

// isLeaf reports whether t is decoded as one value rather than walked: the
// scalars and anything with its own YAML or text unmarshaler (durations).
func isLeaf(t reflect.Type) bool {
	if hasUnmarshaler(t) {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

func hasUnmarshaler(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return pt.Implements(unmarshalerType) || pt.Implements(textUnmarshalerType)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a value of type t looks like in YAML.
func describe(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 15m or 1h30m"
	}
	switch t.Kind() {
	case reflect.String:
		return "text"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a list"
	case reflect.Struct:
		return "a mapping of keys"
	case reflect.Pointer:
		return describe(t.Elem())
	}
	return t.String()
}

// describeNode names what the admin wrote.
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		s := n.Value
		if len(s) > 40 {
			s = s[:40] + "…"
		}
		return strconv.Quote(s)
	}
	return "something else"
}

// field is one yaml-tagged struct field.
type field struct {
	index   []int
	envOnly bool // secret: from the environment only, refused in YAML
}

// yamlFields maps the yaml key names of struct t to its fields, following
// yaml's own rules (name from the tag, lower-cased field name otherwise,
// "-" skipped).
func yamlFields(t reflect.Type) map[string]field {
	fields := map[string]field{}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, ok := yamlName(sf)
		if !ok {
			continue
		}
		fields[name] = field{index: sf.Index, envOnly: sf.Tag.Get("keygate") == "env-only"}
	}
	return fields
}

func yamlName(sf reflect.StructField) (string, bool) {
	if !sf.IsExported() {
		return "", false
	}
	tag := sf.Tag.Get("yaml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return "", false
	}
	if name == "" {
		name = strings.ToLower(sf.Name)
	}
	return name, true
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// unknownKey words the problem for a key the struct does not have,
// suggesting the closest known key when one is near enough to be a typo.
func unknownKey(key string, fields map[string]field) string {
	best, bestDist := "", -1
	for name := range fields {
		dist := editDistance(strings.ToLower(key), name)
		if bestDist < 0 || dist < bestDist || (dist == bestDist && name < best) {
			best, bestDist = name, dist
		}
	}
	// A third of the key's length catches "listn", "idle_timout",
	// "origns" without suggesting unrelated keys for short words.
	if best != "" && bestDist <= max(1, len(key)/3) {
		return fmt.Sprintf("unknown key %q (did you mean %q?)", key, best)
	}
	return fmt.Sprintf("unknown key %q", key)
}

// editDistance is the optimal-string-alignment distance: insertions,
// deletions, substitutions and transpositions of neighbours ("prot" →
// "port") each cost 1, the typos people actually make.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
