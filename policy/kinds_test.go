package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// Rules may name only the registered second factors: a factor added later
// (SMS) is accepted once registered, refused with the registered list
// before, and its proof satisfies the rules that name it.
func TestFactorNamesAreTheRegisteredKinds(t *testing.T) {
	p := Policy{Default: ActionDeny, Rules: []Rule{
		{Name: "sms-only", Hosts: []string{"a.example.com"}, Action: ActionTwoFactor, Factors: []string{"sms"}},
		{Name: "any", Hosts: []string{"b.example.com"}, Action: ActionTwoFactor},
	}}
	_, err := Compile(p)
	var ve ValidationErrors
	if !errors.As(err, &ve) || len(ve) != 1 || ve[0].Path != "rules[0].factors[0]" ||
		!strings.Contains(ve[0].Message, `unknown factor "sms"; use webauthn, totp, email or recovery`) {
		t.Fatalf("sms before it is registered: %v", err)
	}
	kinds := []string{"webauthn", "totp", "email", "sms", "recovery"}
	c, err := CompileWith(p, CompileOptions{Factors: kinds})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Factors(), kinds) {
		t.Fatalf("Factors() = %v", c.Factors())
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	sub := func(kind string) Subject {
		return Subject{Authenticated: true, User: "u", Proofs: []Proof{{Kind: FactorPassword, At: now}, {Kind: kind, At: now}}}
	}
	for _, tc := range []struct {
		host, proof string
		want        Outcome
	}{
		{"a.example.com", "sms", Allow},
		{"a.example.com", "totp", Challenge}, // a stronger factor the rule does not name
		{"b.example.com", "sms", Allow},      // an unrestricted rule takes every registered kind
		{"b.example.com", "carrier-pigeon", Challenge},
	} {
		d := c.Evaluate(Request{Host: tc.host, Path: "/", Method: "GET"}, sub(tc.proof), now)
		if d.Outcome != tc.want {
			t.Errorf("%s with %s: %v, want %v", tc.host, tc.proof, d.Outcome, tc.want)
		}
	}
	if d := c.Evaluate(Request{Host: "b.example.com", Path: "/", Method: "GET"}, sub("totp"), now); d.Outcome != Allow ||
		!slices.Equal(d.Acceptable, nil) && !slices.Contains(d.Acceptable, "sms") {
		t.Errorf("unrestricted rule: %+v", d)
	}
	if _, err := CompileWith(p, CompileOptions{Factors: make([]string, 33)}); err == nil {
		t.Error("33 kinds accepted; the bit set holds 32")
	}
}
