package web

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
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

// A mistyped confirming code on the authenticator-app page keeps the page
// as it was: the same secret and QR code (from the server's sealed copy,
// not from the form) and the name typed; the right code then confirms that
// same enrolment.
func TestTOTPEnrolmentKeepsItsStateAfterAWrongCode(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client()
	h.login(c, testUser, testPassword, "")
	h.redeemLink(c, testUser)
	resp, body := h.postForm(c, "/.keygate/settings/totp")
	sm, im := secretRe.FindStringSubmatch(body), enrollRe.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || sm == nil || im == nil {
		t.Fatalf("enrolment page: %d", resp.StatusCode)
	}
	qr := qrRe.FindStringSubmatch(body)
	if qr == nil {
		t.Fatal("no QR code on the enrolment page")
	}
	wrong := "000000"
	if wrong == oathtool(t, sm[1], h.clock.Now()) {
		wrong = "111111"
	}
	// A secret sent back by the browser is ignored: the page shows the
	// server's.
	resp, body = h.postForm(c, "/.keygate/settings/totp/confirm", "id", im[1], "code", wrong, "name", "Work phone",
		"secret", "AAAAAAAAAAAAAAAA")
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Fatalf("wrong code: %d", resp.StatusCode)
	}
	for what, want := range map[string]string{
		"the same secret":     `id="totp-secret">` + sm[1] + `<`,
		"the same QR code":    qr[0],
		"the same enrolment":  `name="id" value="` + im[1] + `"`,
		"the name typed":      `value="Work phone"`,
		"the refusal message": "aria-invalid",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("after a wrong code the page lost %s (%q)", what, want)
		}
	}
	if strings.Contains(body, "AAAAAAAAAAAAAAAA") {
		t.Error("the page shows a secret the browser sent")
	}
	if creds := h.credIDs(testUser); len(creds) != 0 {
		t.Fatalf("a wrong code enrolled something: %v", creds)
	}
	resp, _ = h.postForm(c, "/.keygate/settings/totp/confirm", "id", im[1], "code", oathtool(t, sm[1], h.clock.Now()), "name", "Work phone")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "done=totp_added") {
		t.Fatalf("right code after a wrong one: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := h.credNamed(testUser, "Work phone"); got.Kind != "totp" {
		t.Fatalf("enrolled %+v", got)
	}
}

var qrRe = regexp.MustCompile(`src="data:image/png;base64,[^"]+"`)

// Security keys are offered only by a keygate that can enrol them: without
// a webauthn section the security page shows no key buttons, the sign-in
// page no passkey button, and the API refuses a key enrolment clearly.
func TestKeyOptionsOnlyWhenWebAuthnIsConfigured(t *testing.T) {
	for _, configured := range []bool{true, false} {
		h := newHarness(t, harnessOptions{noWebAuthn: !configured})
		c := h.client()
		_, login := h.do(c, http.MethodGet, "http://app.example.com/.keygate/login", "")
		h.login(c, testUser, testPassword, "")
		h.redeemLink(c, testUser)
		resp, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/settings", "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("settings: %d", resp.StatusCode)
		}
		for what, marker := range map[string]string{
			"the key enrolment":  `id="webauthn-enroll"`,
			"the passkey button": `id="passkey-login"`,
		} {
			page := body
			if what == "the passkey button" {
				page = login
			}
			if strings.Contains(page, marker) != configured {
				t.Errorf("webauthn configured=%v: %s shown=%v", configured, what, !configured)
			}
		}
		if !strings.Contains(body, `action="/.keygate/settings/totp"`) {
			t.Errorf("webauthn configured=%v: the authenticator app is not offered", configured)
		}
		if configured {
			continue
		}
		resp, out := h.postJSON(c, "/.keygate/api/factors/webauthn/enroll/begin", map[string]any{})
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || out["error"] == nil || out["message"] == nil {
			t.Errorf("key enrolment without webauthn: %d %v", resp.StatusCode, out)
		}
		if ids := h.credIDs(testUser); len(ids) != 0 {
			t.Errorf("something was enrolled: %v", ids)
		}
	}
}
