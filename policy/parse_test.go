package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	p, err := Parse([]byte(`
default: one_factor
rules:
  - name: admin-console
    hosts: ["admin.example.com"]
    groups: ["admins"]
    action: two_factor
    factors: [webauthn]
    webauthn: {hardware: true, user_verification: required, synced: false}
    max_age: 15m
    trusted_device: false
`))
	if err != nil {
		t.Fatal(err)
	}
	no := false
	want := Policy{Default: ActionOneFactor, Rules: []Rule{{
		Name: "admin-console", Hosts: []string{"admin.example.com"}, Groups: []string{"admins"},
		Action: ActionTwoFactor, Factors: []string{FactorWebAuthn},
		WebAuthn: &WebAuthnOptions{Hardware: true, UserVerification: "required", Synced: &no},
		MaxAge:   Duration(15 * time.Minute), TrustedDevice: &no,
	}}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got %+v\nwant %+v", p, want)
	}
}

// TestParseStrict: each problem names its line, and all are listed.
func TestParseStrict(t *testing.T) {
	tests := []struct {
		doc  string
		says []string
	}{
		{"rules:\n  - name: a\n    hostz: [x]\n    action: deny\n", []string{`line 3: unknown key "hostz" in a rule`}},
		{"defualt: deny\n", []string{`line 1: unknown key "defualt" in the policy`}},
		{"rules:\n  - name: a\n    action: two_factor\n    webauthn: {hardwre: true}\n", []string{`line 4: unknown key "hardwre" in webauthn options`}},
		{"rules:\n  - name: a\n    action: two_factor\n    max_age: soon\n", []string{`line 4: "soon" is not a duration`}},
		{"rules:\n  - name: a\n    action: two_factor\n    max_age: -5m\n", []string{`line 4: "-5m" is negative`}},
		{"rules:\n  - name: a\n    action: two_factor\n    max_age: [1]\n", []string{`line 4: want a duration`}},
		// Both problems in one run.
		{"rules:\n  - name: a\n    max_age: 1x\n    colour: red\n", []string{"line 3:", `line 4: unknown key "colour"`}},
		{"rules: {name: a}\n", []string{"line 1:"}},
		{"default: deny\ndefault: bypass\n", []string{"line 2"}},
		{"default: deny\n---\ndefault: bypass\n", []string{"line 2: a second YAML document"}},
		{"rules: [\n", []string{"line"}},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(tc.doc))
		if err == nil {
			t.Errorf("%q: parsed", tc.doc)
			continue
		}
		for _, s := range tc.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%q:\n got %v\nwant …%s…", tc.doc, err, s)
			}
		}
	}
}

func TestParseEmpty(t *testing.T) {
	for _, doc := range []string{"", "\n", "# nothing\n", "~\n"} {
		p, err := Parse([]byte(doc))
		if err != nil || !reflect.DeepEqual(p, Policy{}) {
			t.Errorf("%q: %+v, %v", doc, p, err)
		}
	}
}

// TestParseProblemsAreTyped: every problem is a FieldError with the YAML
// path of the key at fault and its line, so callers need not read text.
func TestParseProblemsAreTyped(t *testing.T) {
	tests := []struct {
		doc   string
		paths []string
		lines []int
	}{
		{"rules:\n  - name: a\n    hostz: [x]\n    action: deny\n", []string{"rules[0].hostz"}, []int{3}},
		{"defualt: deny\n", []string{"defualt"}, []int{1}},
		{"rules:\n  - name: a\n    action: two_factor\n    webauthn: {hardwre: true}\n", []string{"rules[0].webauthn.hardwre"}, []int{4}},
		{"rules:\n  - name: a\n  - name: b\n    max_age: 1x\n    colour: red\n", []string{"rules[1].max_age", "rules[1].colour"}, []int{4, 5}},
		{"rules:\n  - {name: a, hostz: [x]}\n", []string{"rules[0].hostz"}, []int{2}},
		{"default: deny\n---\ndefault: bypass\n", []string{"yaml"}, []int{2}},
		{"rules: [\n", []string{"yaml"}, nil},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(tc.doc))
		var ve ValidationErrors
		if !errors.As(err, &ve) {
			t.Errorf("%q: %T %v, want ValidationErrors", tc.doc, err, err)
			continue
		}
		var paths []string
		var lines []int
		for _, fe := range ve {
			paths = append(paths, fe.Path)
			if fe.Line > 0 {
				lines = append(lines, fe.Line)
			}
		}
		if !reflect.DeepEqual(paths, tc.paths) || (tc.lines != nil && !reflect.DeepEqual(lines, tc.lines)) {
			t.Errorf("%q: paths %v lines %v, want %v %v (%v)", tc.doc, paths, lines, tc.paths, tc.lines, err)
		}
	}
}
