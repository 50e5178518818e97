package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// ExplainRequest judges what an admin types the way the gate judges a
// request: folded host, every reading of the path, methods as the gate
// reads them; input the gate would refuse is an *InputError naming the
// field, never an explanation.
func TestExplainRequest(t *testing.T) {
	c, err := Compile(mustParseText(t, previewTestPolicy))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   ExplainInput
		want string // outcome, or the field of the input error
		rule string
	}{
		{ExplainInput{URL: "https://APP.example.com:8443/static/site.css"}, "allow", "public"},
		{ExplainInput{URL: "https://app.example.com/"}, "challenge", "app"},
		{ExplainInput{User: "bob", URL: "https://app.example.com/"}, "allow", "app"},
		{ExplainInput{User: "bob", URL: "https://app.example.com/ADMIN/x"}, "deny", "admin-others"},
		{ExplainInput{User: "Alice", Groups: []string{"admins"}, URL: "https://app.example.com/admin/x"}, "allow", "admins-only"},
		{ExplainInput{User: "bob", Method: "get", URL: "https://app.example.com/closed/x"}, "deny", "closed"},
		{ExplainInput{User: "bob", URL: "http://other.example.org/", Factors: []string{"totp"}, FactorAge: "1h"}, "allow", "default"},
		{ExplainInput{URL: "https://wiki.example.com/p", SourceIP: "::ffff:10.1.2.3"}, "allow", "office-wiki"},
		{ExplainInput{URL: "/relative"}, "url", ""},
		{ExplainInput{URL: "ftp://app.example.com/"}, "url", ""},
		{ExplainInput{URL: "https://app.example.com/a/../b"}, "url", ""},
		{ExplainInput{URL: "https://app.example.com/.KEYGATE/admin"}, "url", ""},
		{ExplainInput{URL: "https://app.example.com/%2e%6beygate/x"}, "url", ""},
		{ExplainInput{URL: "https://app.example.com/", Method: "G E T"}, "method", ""},
		{ExplainInput{URL: "https://app.example.com/", SourceIP: "10.0.0.0/8"}, "source_ip", ""},
		{ExplainInput{User: "bob", URL: "https://app.example.com/", FactorAge: "-5m"}, "factor_age", ""},
		{ExplainInput{User: "bob", URL: "https://app.example.com/", Factors: []string{"carrier-pigeon"}}, "factors", ""},
		{ExplainInput{URL: "https://app.example.com/", Factors: []string{"totp"}}, "factors", ""},
	} {
		e, err := ExplainRequest(c, tc.in, now, nil)
		var ie *InputError
		switch {
		case errors.As(err, &ie):
			if ie.Field != tc.want || !errors.Is(err, ErrExplainInput) || !strings.HasPrefix(err.Error(), "explain: ") {
				t.Errorf("%+v: input error %q (%v), want %s", tc.in, ie.Field, err, tc.want)
			}
		case err != nil:
			t.Errorf("%+v: %v", tc.in, err)
		case e.Decision.Outcome.String() != tc.want || e.Decision.RuleName != tc.rule:
			t.Errorf("%+v: %s by %s, want %s by %s", tc.in, e.Decision.Outcome, e.Decision.RuleName, tc.want, tc.rule)
		}
	}
	// A kind the caller registers is a second factor; the built-in list
	// does not know it.
	sms := func(k string) bool { return k == "sms" }
	if _, err := ExplainRequest(c, ExplainInput{User: "bob", URL: "https://x.example.com/", Factors: []string{"sms"}}, now, sms); err != nil {
		t.Fatalf("a registered kind: %v", err)
	}
}

func TestReadPathRefusesTheReservedPrefix(t *testing.T) {
	for _, raw := range []string{"/.keygate/admin", "/.KeyGate", "//.keygate/x", "/%2e%6beygate/x", "/.keygate;x/admin", "/%5C.keygate/x", "/.keygate./x"} {
		if _, err := ReadPath(nil, raw, PathOptions{}); !errors.Is(err, ErrReserved) {
			t.Errorf("%s: %v, want ErrReserved", raw, err)
		}
	}
	for _, raw := range []string{"/", "/keygate/x", "/.keygatex/y", "/x/.keygate/"} {
		if rs, err := ReadPath(nil, raw, PathOptions{}); err != nil || len(rs) == 0 {
			t.Errorf("%s: %v %v", raw, rs, err)
		}
	}
	if _, err := ReadPath(nil, "/a/../b", PathOptions{}); !errors.Is(err, ErrBadPath) {
		t.Errorf("dot segments: %v", err)
	}
	if HostOnly("APP.Example.com:8443") != "app.example.com" || HostOnly("[::1]:80") != "::1" {
		t.Error("HostOnly")
	}
}
