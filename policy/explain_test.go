package policy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// designPolicy is the example of design.md ("Policy model"), plus rules
// for the other criteria.
const designPolicy = `
default: two_factor
rules:
  - name: public-assets
    hosts: ["app.example.com"]
    paths: ["/static/*", "/favicon.ico"]
    action: bypass
  - name: admin-console
    hosts: ["admin.example.com"]
    groups: ["admins"]
    action: two_factor
    factors: [webauthn]
    webauthn: {hardware: true, user_verification: required}
    max_age: 15m
    trusted_device: false
  - name: office-network-readonly
    hosts: ["wiki.example.com"]
    networks: ["10.0.0.0/8"]
    methods: [GET, HEAD]
    action: one_factor
  - name: alice-only
    hosts: ["wiki.example.com"]
    users: [alice]
    action: two_factor
`

func TestExplainWords(t *testing.T) {
	c := compileYAML(t, designPolicy)
	bob := user("bob", []string{"dev"}, passkey)
	tests := []struct {
		name string
		req  Request
		subj Subject
		want []string // substrings of String()
	}{
		{"host and match", req("GET", "admin.example.com", "/x", "10.1.1.1"), user("alice", []string{"admins"}, passkey), []string{
			"rules[0] public-assets (bypass): no: host admin.example.com not in [app.example.com]",
			"rules[1] admin-console (two_factor): matched",
			"decision: challenge (webauthn) by rules[1] admin-console",
			"missing: a second factor: webauthn (an attested hardware key, with user verification); the session's WebAuthn proof is not from an attested hardware key",
		}},
		{"path", req("GET", "app.example.com", "/x", ""), bob, []string{
			"path /x does not match [/static/*, /favicon.ico]",
			"decision: allow by the default",
		}},
		{"subjects, network, method, users", req("POST", "wiki.example.com", "/", "1.2.3.4"), bob, []string{
			"rules[1] admin-console (two_factor): no: host wiki.example.com not in [admin.example.com]",
			"rules[2] office-network-readonly (one_factor): no: method POST not in [GET, HEAD]",
			"rules[3] alice-only (two_factor): no: user bob not in users [alice]",
			"default (two_factor): no rule matched",
			"satisfied: signed in as bob; second factor webauthn 1m0s ago",
		}},
		{"network", req("GET", "wiki.example.com", "/", "1.2.3.4"), bob, []string{
			"source 1.2.3.4 not in [10.0.0.0/8]",
		}},
		{"groups", req("GET", "admin.example.com", "/", ""), bob, []string{
			"groups [dev] not in groups [admins]",
		}},
		{"identity", req("GET", "admin.example.com", "/", ""), anon, []string{
			"subject: anonymous",
			"rules[1] admin-console (two_factor): undecided: the rest matched, but groups [admins] can only be checked for a signed-in user",
			"decision: challenge (sign_in) by rules[1] admin-console",
			"missing: sign-in, so that groups [admins] can be checked",
		}},
		{"stale", req("GET", "admin.example.com", "/", ""), user("alice", []string{"admins"}, Proof{Kind: FactorWebAuthn, At: before(40 * time.Minute), Attested: true, UserVerified: true}), []string{
			"decision: challenge (stale)",
			"missing: a second factor no older than 15m0s: webauthn (an attested hardware key, with user verification); the newest is 40m0s old",
		}},
		{"trusted device refused", req("GET", "admin.example.com", "/", ""), Subject{Authenticated: true, User: "alice", Groups: []string{"admins"}, TrustedDevice: true}, []string{
			"subject: alice, groups [admins], remembered device",
			"(a remembered device does not count where max_age is set)",
		}},
		{"bypass", req("GET", "app.example.com", "/static/a.css", ""), anon, []string{
			"decision: allow by rules[0] public-assets",
			"satisfied: nothing needed",
		}},
		{"sign in then factor", req("GET", "x.example.com", "/", ""), anon, []string{
			"missing: sign-in (password), then a second factor: one of webauthn, totp, email or recovery",
		}},
	}
	for _, tc := range tests {
		e := c.Explain(tc.req, tc.subj, testNow)
		text := e.String()
		for _, w := range tc.want {
			if !strings.Contains(text, w) {
				t.Errorf("%s: missing %q in\n%s", tc.name, w, text)
			}
		}
	}
}

func TestExplainDeny(t *testing.T) {
	c := compileYAML(t, `{default: deny, rules: [{name: no, hosts: [x.example.com], action: deny}]}`)
	if e := c.Explain(req("GET", "x.example.com", "/", ""), anon, testNow); !strings.Contains(e.Missing, `rule "no" denies`) {
		t.Fatal(e.Missing)
	}
	if e := c.Explain(req("GET", "y.example.com", "/", ""), anon, testNow); !strings.Contains(e.Missing, "default action denies") {
		t.Fatal(e.Missing)
	}
}

func TestExplanationJSON(t *testing.T) {
	c := compileYAML(t, designPolicy)
	e := c.Explain(req("GET", "admin.example.com", "/x", "10.0.0.1"), user("alice", []string{"admins"}, passkey), testNow)
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Request  map[string]any   `json:"request"`
		Rules    []map[string]any `json:"rules"`
		Decision map[string]any   `json:"decision"`
		Missing  string           `json:"missing"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Request["ip"] != "10.0.0.1" || m.Rules[0]["criterion"] != "hosts" || m.Rules[1]["matched"] != true {
		t.Fatalf("json: %s", b)
	}
	wantDecision := map[string]any{"outcome": "challenge", "reason": "webauthn", "rule_index": 1.0, "rule_name": "admin-console",
		"action": "two_factor", "acceptable": []any{"webauthn"}, "max_age": "15m0s", "trusted_device": false}
	if !reflect.DeepEqual(m.Decision, wantDecision) {
		t.Fatalf("decision json: %v", m.Decision)
	}
	// And back: an Explanation read from JSON carries the same decision.
	var back Explanation
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Decision, e.Decision) || back.String() != e.String() {
		t.Fatalf("round trip:\n%+v\n%+v", back.Decision, e.Decision)
	}
}
