package web

import (
	"net/http"
	"slices"
	"testing"
)

// After the password, the answer names the factors the person has and the
// rule accepts: not the rule's whole list (a kind they never enrolled is a
// dead end), and nothing for someone with none.
func TestSignInNamesTheFactorsThePersonHas(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: `
default: one_factor
rules:
  - {name: strong, hosts: [app.example.com], paths: ["/strong/**"], action: two_factor, factors: [webauthn, totp, sms]}
  - {name: any, hosts: [app.example.com], paths: ["/any/**"], action: two_factor}
`})
	admin := h.client()
	h.login(admin, testUser, testPassword, "")
	h.redeemLink(admin, testUser)
	h.addTOTP(admin, "Phone")

	factorsOf := func(out map[string]any) []string {
		list := []string{}
		raw, _ := out["factors"].([]any)
		for _, k := range raw {
			list = append(list, k.(string))
		}
		return list
	}
	for _, tc := range []struct {
		user, password, rd string
		want               []string
	}{
		// alice has the app, and a confirmed address (email codes).
		{testUser, testPassword, "http://app.example.com/strong/x", []string{"totp"}},
		{testUser, testPassword, "http://app.example.com/any/x", []string{"totp", "email"}},
		// bob has nothing the rule could take.
		{"bob", "violet-harbour-lantern-9", "http://app.example.com/strong/x", []string{}},
	} {
		resp, out := h.login(h.client(), tc.user, tc.password, tc.rd)
		if resp.StatusCode != http.StatusOK || out["status"] != "second_factor_required" {
			t.Fatalf("%s → %s: %d %v", tc.user, tc.rd, resp.StatusCode, out)
		}
		got := factorsOf(out)
		slices.Sort(got)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s → %s: factors %v, want %v", tc.user, tc.rd, got, tc.want)
		}
	}
}
