package web

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/mail/mailpittest"
)

// The password flows through the real server: changing it signed in, and
// "Forgot your password?", with codes and notices read from a real Mailpit.
// Every bad input gets a clear answer and changes nothing: the password
// hash stays, and so do the sessions.

// pwHarness is a gateway whose mail goes to Mailpit.
func pwHarness(t *testing.T) (*harness, *mailpittest.Server) {
	t.Helper()
	mp := mailpittest.Start(t)
	h := newHarness(t, harnessOptions{policyYAML: "default: one_factor\n", mail: smtpTo(t, mp.SMTPHost, mp.SMTPPort)})
	return h, mp
}

// waitMail waits for a new mail to `to` whose subject contains subject
// (notices of new sign-ins may arrive in between).
func waitMail(t *testing.T, mp *mailpittest.Server, to, subject string) mailpittest.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := mp.WaitFor(to, time.Until(deadline)); strings.Contains(m.Subject, subject) {
			return m
		}
	}
	t.Fatalf("no mail to %s about %q", to, subject)
	return mailpittest.Message{}
}

// hashOf is the stored password hash of user.
func (h *harness) hashOf(user string) string {
	h.t.Helper()
	u, err := h.users.Get(context.Background(), user)
	if err != nil {
		h.t.Fatal(err)
	}
	return u.PasswordHash
}

// signedIn says whether the client's session is live.
func (h *harness) signedIn(c *http.Client) bool {
	h.t.Helper()
	resp, _ := h.do(c, http.MethodGet, "http://app.example.com/.keygate/api/session", "", setHeader("Accept", "application/json"))
	return resp.StatusCode == http.StatusOK
}

// unchanged fails the test unless the hash is still before and every
// client is still signed in.
func (h *harness) unchanged(what, before string, clients ...*http.Client) {
	h.t.Helper()
	if h.hashOf(testUser) != before {
		h.t.Fatalf("%s changed the password", what)
	}
	for i, c := range clients {
		if !h.signedIn(c) {
			h.t.Fatalf("%s ended session %d", what, i)
		}
	}
}

func TestPasswordChangeAPI(t *testing.T) {
	h, mp := pwHarness(t)
	c, other := h.client(), h.client()
	h.login(c, testUser, testPassword, "")
	h.login(other, testUser, testPassword, "")
	before := h.hashOf(testUser)
	const path = "/.keygate/api/password"

	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		says   string
	}{
		{"wrong current", map[string]string{"current": "not-the-password", "new": "a-brand-new-passphrase"}, 401, "wrong_password", "current password is not correct"},
		{"common new", map[string]string{"current": testPassword, "new": "Password123!"}, 400, "weak_password", "too common"},
		{"short new", map[string]string{"current": testPassword, "new": "tiny-7"}, 400, "weak_password", "at least 12 characters"},
		{"missing", map[string]string{"current": testPassword}, 400, "missing_credentials", ""},
		{"unknown field", map[string]string{"current": testPassword, "new": "a-brand-new-passphrase", "also": "x"}, 400, "bad_request", ""},
	} {
		resp, out := h.postJSON(c, path, tc.body)
		if resp.StatusCode != tc.status || out["error"] != tc.code || !strings.Contains(out["message"].(string), tc.says) {
			t.Errorf("%s: %d %v", tc.name, resp.StatusCode, out)
		}
		h.unchanged(tc.name, before, c, other)
	}
	resp, out := h.postJSON(c, path, map[string]string{"current": testPassword, "new": "Password123!"})
	if codes, _ := out["reason_codes"].([]any); len(codes) == 0 || codes[0] != "too_common" || out["min_length"] != float64(12) {
		t.Fatalf("refusal lists no reasons: %d %v", resp.StatusCode, out)
	}
	// Too large, cross-site, signed out: refused before anything is read.
	resp, _ = h.do(c, http.MethodPost, "http://app.example.com"+path, `{"current":"`+strings.Repeat("x", 70<<10)+`"}`,
		setHeader("Content-Type", "application/json"))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %d", resp.StatusCode)
	}
	resp, _ = h.do(c, http.MethodPost, "http://app.example.com"+path, `{"current":"`+testPassword+`","new":"a-brand-new-passphrase"}`,
		setHeader("Content-Type", "application/json"), setHeader("Sec-Fetch-Site", "cross-site"), setHeader("Origin", "https://evil.example"))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site: %d", resp.StatusCode)
	}
	if resp, out := h.postJSON(h.client(), path, map[string]string{"current": testPassword, "new": "a-brand-new-passphrase"}); resp.StatusCode != 401 || out["error"] != "not_signed_in" {
		t.Fatalf("signed out: %d %v", resp.StatusCode, out)
	}
	h.unchanged("the refused requests", before, c, other)

	resp, out = h.postJSON(c, path, map[string]string{"current": testPassword, "new": "a-brand-new-passphrase"})
	if resp.StatusCode != 200 || out["status"] != "changed" || sessionCookie(resp) == nil {
		t.Fatalf("change: %d %v", resp.StatusCode, out)
	}
	if !h.signedIn(c) || h.signedIn(other) || h.hashOf(testUser) == before {
		t.Fatal("after the change this session stays (rotated) and the other ends")
	}
	m := waitMail(t, mp, "alice@example.com", "the password was changed")
	if !strings.Contains(m.Text, h.origin+"/.keygate/not-me/") {
		t.Fatalf("notice without its link: %q", m.Text)
	}
	if r, _ := h.login(h.client(), testUser, "a-brand-new-passphrase", ""); r.StatusCode != 200 {
		t.Fatalf("the new password: %d", r.StatusCode)
	}
}

// With a second factor, a change needs a fresh one: the answer names what
// would do (the step-up every security change asks for), and the page
// offers the way there instead of the form.
func TestPasswordChangeNeedsFreshSecondFactor(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: one_factor\n"})
	c := h.client()
	h.login(c, testUser, testPassword, "")
	h.redeemLink(c, testUser)
	secret := h.addTOTP(c, "Phone")

	c2 := h.client()
	h.login(c2, testUser, testPassword, "")
	before := h.hashOf(testUser)
	resp, out := h.postJSON(c2, "/.keygate/api/password", map[string]string{"current": testPassword, "new": "a-brand-new-passphrase"})
	if need, _ := out["need"].([]any); resp.StatusCode != 403 || out["error"] != "elevation_required" || len(need) == 0 {
		t.Fatalf("without a fresh factor: %d %v", resp.StatusCode, out)
	}
	_, body := h.do(c2, http.MethodGet, "http://app.example.com/.keygate/password", "")
	if !strings.Contains(body, `id="password-elevate"`) || !strings.Contains(body, "/.keygate/second-factor?need=code&amp;rd=%2f.keygate%2fpassword") || strings.Contains(body, `name="current"`) {
		t.Fatalf("the page offers no step-up: %q", body)
	}
	h.unchanged("a change without a fresh factor", before, c, c2)

	h.clock.Add(30 * time.Second)
	if resp, out := h.postJSON(c2, "/.keygate/api/factors/totp/verify", map[string]any{"code": oathtool(t, secret, h.clock.Now())}); resp.StatusCode != 200 {
		t.Fatalf("app code: %d %v", resp.StatusCode, out)
	}
	resp, body = h.postForm(c2, "/.keygate/password", "current", testPassword, "new", "a-brand-new-passphrase", "confirm", "a-brand-new-passphrase-")
	if resp.StatusCode != 400 || !strings.Contains(body, "differ") {
		t.Fatalf("mismatched confirmation: %d", resp.StatusCode)
	}
	h.unchanged("a mismatched confirmation", before, c, c2)
	resp, _ = h.postForm(c2, "/.keygate/password", "current", testPassword, "new", "a-brand-new-passphrase", "confirm", "a-brand-new-passphrase")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "done=password_changed") {
		t.Fatalf("form change: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if !h.signedIn(c2) || h.signedIn(c) {
		t.Fatal("the changing session stays, the other ends")
	}
}

// resetBegin asks for a reset code through the API.
func (h *harness) resetBegin(c *http.Client, login string) (*http.Response, map[string]any) {
	h.t.Helper()
	return h.postJSON(c, "/.keygate/api/password/reset/begin", map[string]string{"login": login})
}

func TestPasswordResetAPI(t *testing.T) {
	h, mp := pwHarness(t)
	signedIn := h.client()
	h.login(signedIn, testUser, testPassword, "")
	before := h.hashOf(testUser)

	// Everyone gets the same answer: a real account, a name without one,
	// an account whose address is not confirmed (bob).
	var answers []map[string]any
	var rc *http.Client
	for _, login := range []string{"alice@example.com", "nobody", "bob"} {
		c := h.client()
		resp, out := h.resetBegin(c, login)
		if resp.StatusCode != 200 || out["status"] != "code_sent" {
			t.Fatalf("begin %s: %d %v", login, resp.StatusCode, out)
		}
		if len(resp.Cookies()) != 1 || resp.Cookies()[0].Name != resetCookie || resp.Cookies()[0].SameSite != http.SameSiteStrictMode {
			t.Fatalf("begin %s: cookies %v", login, resp.Cookies())
		}
		answers = append(answers, out)
		if rc == nil {
			rc = c
		}
	}
	for i, a := range answers[1:] {
		if a["message"] != answers[0]["message"] || a["expires_at"] != answers[0]["expires_at"] {
			t.Fatalf("answer %d differs: %v vs %v", i+1, a, answers[0])
		}
	}
	code := codeRe.FindString(waitMail(t, mp, "alice@example.com", "reset your password").Text)
	time.Sleep(200 * time.Millisecond) // a mail to bob would have arrived by now
	if _, ok := mp.Latest("bob@example.com"); ok {
		t.Fatal("a code went to an unconfirmed address")
	}

	// Bad input at each step: clear answers, nothing changed.
	for _, tc := range []struct {
		name, path string
		body       any
		status     int
		code       string
	}{
		{"finish before the code", "finish", map[string]string{"password": "a-brand-new-passphrase"}, 403, "reset_code_required"},
		{"wrong code", "verify", map[string]string{"code": "000000"}, 401, "wrong_code"},
		{"no code", "verify", map[string]string{}, 400, "missing_code"},
	} {
		resp, out := h.postJSON(rc, "/.keygate/api/password/reset/"+tc.path, tc.body)
		if resp.StatusCode != tc.status || out["error"] != tc.code || out["message"] == "" {
			t.Errorf("%s: %d %v", tc.name, resp.StatusCode, out)
		}
		h.unchanged(tc.name, before, signedIn)
	}
	resp, _ := h.do(rc, http.MethodPost, "http://app.example.com/.keygate/api/password/reset/verify", `{"code":"`+strings.Repeat("1", 70<<10)+`"}`,
		setHeader("Content-Type", "application/json"))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized: %d", resp.StatusCode)
	}
	resp, _ = h.do(rc, http.MethodPost, "http://app.example.com/.keygate/api/password/reset/verify", `{"code":"`+code+`"}`,
		setHeader("Content-Type", "application/json"), setHeader("Sec-Fetch-Site", "cross-site"), setHeader("Origin", "https://evil.example"))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site: %d", resp.StatusCode)
	}

	resp, out := h.postJSON(rc, "/.keygate/api/password/reset/verify", map[string]string{"code": code})
	if resp.StatusCode != 200 || out["status"] != "password_required" {
		t.Fatalf("right code: %d %v", resp.StatusCode, out)
	}
	resp, out = h.postJSON(rc, "/.keygate/api/password/reset/finish", map[string]string{"password": "qwerty123456"})
	if resp.StatusCode != 400 || out["error"] != "weak_password" || !strings.Contains(out["message"].(string), "common") {
		t.Fatalf("common password: %d %v", resp.StatusCode, out)
	}
	h.unchanged("a common new password", before, signedIn)
	resp, out = h.postJSON(rc, "/.keygate/api/password/reset/finish", map[string]string{"password": "a-brand-new-passphrase"})
	if resp.StatusCode != 200 || out["status"] != "reset" {
		t.Fatalf("finish: %d %v", resp.StatusCode, out)
	}
	if h.hashOf(testUser) == before || h.signedIn(signedIn) {
		t.Fatal("after a reset the password is new and every session has ended")
	}
	m := waitMail(t, mp, "alice@example.com", "reset with a code")
	if !strings.Contains(m.Text, h.origin+"/.keygate/not-me/") {
		t.Fatalf("reset notice: %q", m.Text)
	}
	// The same reset again, and the used code in a new one: refused.
	if resp, out := h.postJSON(rc, "/.keygate/api/password/reset/finish", map[string]string{"password": "another-new-passphrase"}); resp.StatusCode != 400 || out["error"] != "reset_expired" {
		t.Fatalf("finish twice: %d %v", resp.StatusCode, out)
	}
	again := h.client()
	h.resetBegin(again, testUser) // within the cooldown: no new code goes out
	if resp, out := h.postJSON(again, "/.keygate/api/password/reset/verify", map[string]string{"code": code}); resp.StatusCode != 401 || out["error"] != "code_used" {
		t.Fatalf("reused code: %d %v", resp.StatusCode, out)
	}
	after := h.hashOf(testUser)

	// An expired reset: the clock moves past the code's life.
	h.clock.Add(2 * time.Minute)
	late := h.client()
	h.resetBegin(late, testUser)
	code = codeRe.FindString(waitMail(t, mp, "alice@example.com", "reset your password").Text)
	h.clock.Add(11 * time.Minute)
	if resp, out := h.postJSON(late, "/.keygate/api/password/reset/verify", map[string]string{"code": code}); resp.StatusCode != 400 || out["error"] != "reset_expired" {
		t.Fatalf("expired: %d %v", resp.StatusCode, out)
	}
	if h.hashOf(testUser) != after {
		t.Fatal("an expired reset changed the password")
	}
}

// A mailbox alone never resets the password of an account with a second
// factor: after the code, the factor; finishing without it is refused.
func TestPasswordResetNeedsSecondFactor(t *testing.T) {
	h, mp := pwHarness(t)
	c := h.client()
	h.login(c, testUser, testPassword, "")
	h.redeemLink(c, testUser)
	secret := h.addTOTP(c, "Phone")
	before := h.hashOf(testUser)

	rc := h.client()
	h.resetBegin(rc, testUser)
	code := codeRe.FindString(waitMail(t, mp, "alice@example.com", "reset your password").Text)
	resp, out := h.postJSON(rc, "/.keygate/api/password/reset/verify", map[string]string{"code": code})
	fs, _ := out["factors"].([]any)
	if resp.StatusCode != 200 || out["status"] != "second_factor_required" || len(fs) != 1 || fs[0].(map[string]any)["kind"] != "totp" {
		t.Fatalf("after the code: %d %v", resp.StatusCode, out)
	}
	for _, tc := range []struct {
		name, path string
		body       any
		status     int
		code       string
	}{
		{"finish without the factor", "finish", map[string]string{"password": "a-brand-new-passphrase"}, 403, "reset_factor_required"},
		{"the mailbox as the factor", "factor/email/verify", map[string]string{"code": code}, 404, "factor_unavailable"},
		{"wrong app code", "factor/totp/verify", map[string]string{"code": "000000"}, 401, "wrong_code"},
	} {
		resp, out := h.postJSON(rc, "/.keygate/api/password/reset/"+tc.path, tc.body)
		if resp.StatusCode != tc.status || out["error"] != tc.code {
			t.Errorf("%s: %d %v", tc.name, resp.StatusCode, out)
		}
		h.unchanged(tc.name, before, c)
	}
	h.clock.Add(30 * time.Second)
	resp, out = h.postJSON(rc, "/.keygate/api/password/reset/factor/totp/verify", map[string]string{"code": oathtool(t, secret, h.clock.Now())})
	if resp.StatusCode != 200 || out["status"] != "password_required" {
		t.Fatalf("app code: %d %v", resp.StatusCode, out)
	}
	if resp, out := h.postJSON(rc, "/.keygate/api/password/reset/finish", map[string]string{"password": "a-brand-new-passphrase"}); resp.StatusCode != 200 {
		t.Fatalf("finish: %d %v", resp.StatusCode, out)
	}
	if h.signedIn(c) {
		t.Fatal("the old session survived the reset")
	}
}
