package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// compileErrors compiles doc and returns the reported problems.
func compileErrors(t *testing.T, doc string) ValidationErrors {
	t.Helper()
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	c, err := Compile(p)
	if err == nil {
		t.Fatalf("compiled a policy with problems: %+v", c.Source())
	}
	var ve ValidationErrors
	if !errors.As(err, &ve) {
		t.Fatalf("error is %T, want ValidationErrors: %v", err, err)
	}
	return ve
}

func paths(ve ValidationErrors) []string {
	out := make([]string, len(ve))
	for i, e := range ve {
		out[i] = e.Path
	}
	return out
}

// TestCompileReportsEverything: one policy, many mistakes; every one is
// reported with its path, in document order.
func TestCompileReportsEverything(t *testing.T) {
	ve := compileErrors(t, `
default: twofactor
rules:
  - name: admin
    hosts: ["admin.example.com", "a.*.example.com", "https://x.example.com/", "app.example.com:8443", "*"]
    paths: ["static/*", "/a**", "/x?y", "/ok/**", "/a/../b"]
    methods: [GET, FETCH]
    networks: ["10.0.0.0/33", "10.0.0.0/8", "10.1.2.3/8", "fe80::1%eth0"]
    users: [alice, ""]
    action: twofactor
  - name: admin
    hosts: [one.example.com]
    action: one_factor
    factors: [sms]
  - name: ""
    hosts: [ok.example.com]
    action: two_factor
    factors: [totp, sms, password]
    webauthn: {user_verification: always, aaguids: [not-a-uuid, cb69481e-8ff7-4039-93ec-0a2729a154a8, 00000000-0000-0000-0000-000000000000]}
  - name: bypass-with-options
    hosts: [b.example.com]
    action: bypass
    webauthn: {hardware: true}
    max_age: 5m
    trusted_device: false
  - name: step-up
    hosts: [s.example.com]
    action: two_factor
    max_age: 5m
    trusted_device: true
  - name: default
    hosts: [d.example.com]
    action: deny
  - name: no-action
    hosts: [n.example.com]
  - name: catch-all
    action: deny
  - name: after
    hosts: [z.example.com]
    action: bypass
`)
	want := []string{
		"default",
		"rules[0].hosts[1]",
		"rules[0].hosts[2]",
		"rules[0].hosts[3]",
		"rules[0].hosts[4]",
		"rules[0].paths[0]",
		"rules[0].paths[1]",
		"rules[0].paths[2]",
		"rules[0].paths[4]",
		"rules[0].methods[1]",
		"rules[0].networks[0]",
		"rules[0].networks[2]",
		"rules[0].networks[3]",
		"rules[0].users[1]",
		"rules[0].action",
		"rules[1].name",
		"rules[1].factors",
		"rules[1].factors[0]",
		"rules[2].name",
		"rules[2].factors[1]",
		"rules[2].factors[2]",
		"rules[2].webauthn",
		"rules[2].webauthn.user_verification",
		"rules[2].webauthn.aaguids[0]",
		"rules[2].webauthn.aaguids[2]",
		"rules[3].webauthn",
		"rules[3].max_age",
		"rules[3].trusted_device",
		"rules[4].trusted_device",
		"rules[5].name",
		"rules[6].action",
		"rules[7]",
	}
	if got := paths(ve); !reflect.DeepEqual(got, want) {
		t.Fatalf("paths:\n got %q\nwant %q\nerrors: %v", got, want, ve)
	}
	for _, e := range ve {
		if e.Message == "" || strings.Contains(e.Message, "%!") {
			t.Errorf("%s: bad message %q", e.Path, e.Message)
		}
	}
}

// TestCompileMessages checks the wording people act on for the problems the
// design names; substrings, so that phrasing can improve around them.
func TestCompileMessages(t *testing.T) {
	tests := []struct {
		doc, path, says string
	}{
		{`{rules: [{name: a, networks: ["10.0.0.0/33"], action: deny}]}`, "rules[0].networks[0]", `"10.0.0.0/33" is not a CIDR or IP address`},
		{`{rules: [{name: a, action: twofactor}]}`, "rules[0].action", `unknown action "twofactor"; use deny, bypass, one_factor or two_factor`},
		{`{rules: [{name: admin, hosts: [x], action: deny}, {name: admin, action: deny}]}`, "rules[1].name", `duplicate rule name "admin" (also rules[0])`},
		{`{rules: [{name: a, action: two_factor, factors: [sms]}]}`, "rules[0].factors[0]", `unknown factor "sms"; use webauthn, totp, email or recovery`},
		{`{rules: [{name: a, action: one_factor, factors: [totp]}]}`, "rules[0].factors", `factors only apply to two_factor rules`},
		{`{rules: [{name: a, action: two_factor, factors: [totp], webauthn: {hardware: true}}]}`, "rules[0].webauthn", `factors does not include webauthn`},
		{`{rules: [{name: a, hosts: ["a.*.example.com"], action: deny}]}`, "rules[0].hosts[0]", `leading "*."`},
		{`{rules: [{name: a, paths: ["/a**"], action: deny}]}`, "rules[0].paths[0]", `whole path segment`},
		{`{rules: [{name: a, methods: [FETCH], action: deny}]}`, "rules[0].methods[0]", `"FETCH" is not an HTTP method`},
		{`{rules: [{name: a, action: two_factor, webauthn: {aaguids: [xyz]}}]}`, "rules[0].webauthn.aaguids[0]", `not an AAGUID`},
		{`{rules: [{name: a, action: two_factor, webauthn: {user_verification: yes}}]}`, "rules[0].webauthn.user_verification", `use preferred, required or discouraged`},
		{`{rules: [{name: " ", action: deny}]}`, "rules[0].name", `rule name is empty`},
		{`{rules: [{name: a, networks: ["10.1.2.3/8"], action: deny}]}`, "rules[0].networks[0]", `did you mean 10.0.0.0/8`},
		{`{rules: [{name: a, hosts: ["app.example.com:443"], action: deny}]}`, "rules[0].hosts[0]", `write "app.example.com"`},
		{`{rules: [{name: a, paths: ["*.js"], action: deny}]}`, "rules[0].paths[0]", `"/**/*.js"`},
		{`{rules: [{name: a, hosts: ["bücher.example"], action: deny}]}`, "rules[0].hosts[0]", `xn--`},
	}
	for _, tc := range tests {
		ve := compileErrors(t, tc.doc)
		if len(ve) != 1 || ve[0].Path != tc.path || !strings.Contains(ve[0].Message, tc.says) {
			t.Errorf("%s\n got %v\nwant %s: …%s…", tc.doc, ve, tc.path, tc.says)
		}
	}
}

func TestCompileAccepts(t *testing.T) {
	for _, doc := range []string{
		``,
		`{}`,
		`{default: deny}`,
		`{rules: [{name: everything-last, action: one_factor}]}`,
		`{rules: [{name: v6, networks: ["2001:db8::/32", "::1", "::ffff:10.0.0.0/104"], action: bypass}]}`,
		`{rules: [{name: hosts, hosts: ["*.example.com", "EXAMPLE.com.", "127.0.0.1", "[::1]", "_acme.example.com"], action: bypass}]}`,
		`{rules: [{name: a, action: two_factor, factors: [webauthn], webauthn: {hardware: true, user_verification: required, synced: false, aaguids: [CB69481E-8FF7-4039-93EC-0A2729A154A8]}, max_age: 15m, trusted_device: false}]}`,
		`{rules: [{name: a, paths: ["/", "/**", "/a/**/b/*.c", "/x//y"], methods: [get, PropFind], action: bypass}]}`,
	} {
		p, err := Parse([]byte(doc))
		if err != nil {
			t.Errorf("%s: parse: %v", doc, err)
			continue
		}
		if _, err := Compile(p); err != nil {
			t.Errorf("%s: %v", doc, err)
		}
	}
}

func TestValidationErrorsText(t *testing.T) {
	ve := ValidationErrors{{Path: "default", Message: "m1"}, {Path: "rules[0].name", Message: "m2"}}
	if got := ve.Error(); got != "2 problem(s): default: m1; rules[0].name: m2" {
		t.Fatal(got)
	}
}
