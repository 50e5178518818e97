package web

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/mail/mailpittest"
)

// Changing the email address through the real server, with the codes and
// notices read from a real Mailpit: every bad input gets a clear answer
// and changes nothing (the address, its confirmation, the sessions).

// addressOf is user's stored address and whether it is confirmed.
func (h *harness) addressOf(user string) (string, bool) {
	h.t.Helper()
	u, err := h.users.Get(context.Background(), user)
	if err != nil {
		h.t.Fatal(err)
	}
	return u.Email, u.EmailVerified
}

// addressUnchanged fails unless alice's address is as before and every
// client is still signed in.
func (h *harness) addressUnchanged(what string, clients ...*http.Client) {
	h.t.Helper()
	if addr, ok := h.addressOf(testUser); addr != "alice@example.com" || !ok {
		h.t.Fatalf("%s changed the address: %s %v", what, addr, ok)
	}
	for i, c := range clients {
		if !h.signedIn(c) {
			h.t.Fatalf("%s ended session %d", what, i)
		}
	}
}

// codeIn is the six-digit code of a mail.
func codeIn(t *testing.T, m mailpittest.Message) string {
	t.Helper()
	for _, f := range strings.Fields(m.Text) {
		if len(f) == 6 && strings.Trim(f, "0123456789") == "" {
			return f
		}
	}
	t.Fatalf("no code in %q", m.Text)
	return ""
}

// emailChangeSetup signs alice in on two clients with an app, and gives
// the first a fresh app code; it returns both and the app's secret.
func emailChangeSetup(t *testing.T, h *harness, lang string) (c, other *http.Client, secret string) {
	t.Helper()
	c, other = h.client(), h.client()
	if lang != "" {
		// The language chosen on the portal before signing in is the one
		// the account's notices are written in.
		h.do(c, http.MethodGet, "http://app.example.com/.keygate/lang/"+lang, "")
	}
	h.login(c, testUser, testPassword, "")
	h.redeemLink(c, testUser)
	secret = h.addTOTP(c, "Phone")
	h.login(other, testUser, testPassword, "")
	return c, other, secret
}

// freshApp proves the app on c now.
func (h *harness) freshApp(c *http.Client, secret string) {
	h.t.Helper()
	h.clock.Add(30 * time.Second)
	if resp, out := h.postJSON(c, "/.keygate/api/factors/totp/verify", map[string]any{"code": oathtool(h.t, secret, h.clock.Now())}); resp.StatusCode != 200 {
		h.t.Fatalf("app code: %d %v", resp.StatusCode, out)
	}
}

func TestEmailChangeAPI(t *testing.T) {
	h, mp := pwHarness(t)
	c, other, secret := emailChangeSetup(t, h, "")
	const path = "/.keygate/api/email/change"

	// Without a fresh second factor: 403 with what would do.
	resp, out := h.postJSON(other, path, map[string]string{"new": "alice.new@example.org"})
	if need, _ := out["need"].([]any); resp.StatusCode != 403 || out["error"] != "elevation_required" || len(need) != 1 || need[0] != "totp" {
		t.Fatalf("without a fresh factor: %d %v", resp.StatusCode, out)
	}
	h.addressUnchanged("no fresh factor", c, other)

	h.freshApp(c, secret)
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		says   string
	}{
		{"malformed", map[string]string{"new": "not-an-address"}, 400, "bad_address", "not valid"},
		{"display name", map[string]string{"new": "Eve <eve@example.org>"}, 400, "bad_address", "not valid"},
		{"header injection", map[string]string{"new": "eve@example.org\r\nBcc: x@example.org"}, 400, "bad_address", "not valid"},
		{"empty", map[string]string{"new": ""}, 400, "bad_address", "not valid"},
		{"same", map[string]string{"new": "Alice@Example.com"}, 400, "same_address", "already your email address"},
		{"unknown field", map[string]string{"new": "alice.new@example.org", "also": "x"}, 400, "bad_request", ""},
	} {
		resp, out := h.postJSON(c, path, tc.body)
		if resp.StatusCode != tc.status || out["error"] != tc.code || !strings.Contains(out["message"].(string), tc.says) {
			t.Errorf("%s: %d %v", tc.name, resp.StatusCode, out)
		}
		h.addressUnchanged(tc.name, c, other)
	}
	if resp, out := h.postJSON(c, path+"/confirm", map[string]string{"code": "123456"}); resp.StatusCode != 400 || out["error"] != "no_email_change" {
		t.Fatalf("confirm before asking: %d %v", resp.StatusCode, out)
	}
	resp, _ = h.do(c, http.MethodPost, "http://app.example.com"+path, `{"new":"alice.new@example.org"}`,
		setHeader("Content-Type", "application/json"), setHeader("Sec-Fetch-Site", "cross-site"), setHeader("Origin", "https://evil.example"))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site: %d", resp.StatusCode)
	}
	if resp, out := h.postJSON(h.client(), path, map[string]string{"new": "alice.new@example.org"}); resp.StatusCode != 401 || out["error"] != "not_signed_in" {
		t.Fatalf("signed out: %d %v", resp.StatusCode, out)
	}

	// An address another account uses: the same answer as a free one
	// (Bob's), and no mail to it.
	resp, taken := h.postJSON(c, path, map[string]string{"new": "bob@example.com"})
	if resp.StatusCode != 202 || taken["status"] != "code_sent" || taken["to"] == "" {
		t.Fatalf("taken address: %d %v", resp.StatusCode, taken)
	}
	if resp, out := h.postJSON(c, path+"/confirm", map[string]string{"code": "123456"}); resp.StatusCode != 401 || out["error"] != "wrong_code" {
		t.Fatalf("code for a taken address: %d %v", resp.StatusCode, out)
	}
	if resp, out := h.postJSON(c, path, map[string]string{"new": "alice.new@example.org"}); resp.StatusCode != 429 || out["error"] != "cooldown" {
		t.Fatalf("again at once: %d %v", resp.StatusCode, out)
	}
	h.addressUnchanged("a taken address", c, other)
	h.clock.Add(61 * time.Second)

	resp, out = h.postJSON(c, path, map[string]string{"new": "alice.new@example.org"})
	if resp.StatusCode != 202 || out["status"] != "code_sent" || strings.Contains(out["to"].(string), "alice.new") {
		t.Fatalf("begin: %d %v", resp.StatusCode, out)
	}
	if keysOf(out) != keysOf(taken) {
		t.Fatalf("a taken address answers differently: %v vs %v", taken, out)
	}
	m := waitMail(t, mp, "alice.new@example.org", "new email address")
	code := codeIn(t, m)
	if resp, out := h.postJSON(c, path+"/confirm", map[string]string{"code": "000000"}); resp.StatusCode != 401 || out["error"] != "wrong_code" {
		t.Fatalf("wrong code: %d %v", resp.StatusCode, out)
	}
	if resp, out := h.postJSON(other, path+"/confirm", map[string]string{"code": code}); resp.StatusCode != 400 || out["error"] != "no_email_change" {
		t.Fatalf("another session: %d %v", resp.StatusCode, out)
	}
	h.addressUnchanged("wrong code, other session", c, other)
	if resp, out := h.do(c, http.MethodGet, "http://app.example.com"+path, "", setHeader("Accept", "application/json")); resp.StatusCode != 200 || !strings.Contains(out, `"code_sent"`) {
		t.Fatalf("state: %d %s", resp.StatusCode, out)
	}

	resp, out = h.postJSON(c, path+"/confirm", map[string]string{"code": code})
	if resp.StatusCode != 200 || out["status"] != "changed" || out["email"] != "alice.new@example.org" || sessionCookie(resp) == nil {
		t.Fatalf("confirm: %d %v", resp.StatusCode, out)
	}
	if addr, ok := h.addressOf(testUser); addr != "alice.new@example.org" || !ok {
		t.Fatalf("after: %s %v", addr, ok)
	}
	if !h.signedIn(c) || !h.signedIn(other) {
		t.Fatal("sessions after the change")
	}
	old := waitMail(t, mp, "alice@example.com", "the email address was changed")
	if !strings.Contains(old.Text, h.origin+"/.keygate/not-me/") || strings.Contains(old.Text, "alice.new@example.org") {
		t.Fatalf("notice to the old address: %q", old.Text)
	}
	conf := waitMail(t, mp, "alice.new@example.org", "is now the email address")
	if !strings.Contains(conf.Text, h.origin+"/.keygate/not-me/") {
		t.Fatalf("confirmation: %q", conf.Text)
	}
	if resp, out := h.postJSON(c, path+"/confirm", map[string]string{"code": code}); resp.StatusCode != 400 || out["error"] != "no_email_change" {
		t.Fatalf("reused code: %d %v", resp.StatusCode, out)
	}
	if r, _ := h.login(h.client(), "alice.new@example.org", testPassword, ""); r.StatusCode != 200 {
		t.Fatalf("sign in with the new address: %d", r.StatusCode)
	}
}

// keysOf lists a JSON answer's keys, to compare answers' shapes.
func keysOf(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return strings.Join(ks, ",")
}

// The form, in Russian: the page, a malformed address (kept in the field),
// an expired code, then the change; the mails in Russian.
func TestEmailChangePageRussian(t *testing.T) {
	h, mp := pwHarness(t)
	c, other, secret := emailChangeSetup(t, h, "ru")
	ru := setHeader("Accept-Language", "ru")

	_, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/settings", "", ru)
	if !strings.Contains(body, `href="/.keygate/email"`) {
		t.Fatal("the security page does not link to the change")
	}
	_, body = h.do(c, http.MethodGet, "http://app.example.com/.keygate/email", "", ru)
	if !strings.Contains(body, `id="email-elevate"`) || strings.Contains(body, `name="new"`) {
		t.Fatalf("the page offers no step-up: %q", body)
	}
	h.freshApp(c, secret)
	_, body = h.do(c, http.MethodGet, "http://app.example.com/.keygate/email", "", ru)
	if !strings.Contains(body, `name="new"`) || !strings.Contains(body, "Новый адрес электронной почты") {
		t.Fatalf("the form: %q", body)
	}
	resp, body := h.postForm(c, "/.keygate/email", "new", "alice at example")
	if resp.StatusCode != 400 || !strings.Contains(body, `value="alice at example"`) || !strings.Contains(body, `aria-invalid="true"`) {
		t.Fatalf("malformed: %d", resp.StatusCode)
	}
	h.addressUnchanged("a malformed address", c, other)
	resp, _ = h.postForm(c, "/.keygate/email", "new", "alice.ru@example.org")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("begin: %d", resp.StatusCode)
	}
	m := waitMail(t, mp, "alice.ru@example.org", "смены адреса")
	code := codeIn(t, m)
	_, body = h.do(c, http.MethodGet, "http://app.example.com/.keygate/email", "")
	if !strings.Contains(body, `id="email-sent"`) || !strings.Contains(body, `name="code"`) {
		t.Fatalf("the code form: %q", body)
	}
	// Expired: the change is gone; nothing changed.
	h.clock.Add(11 * time.Minute)
	resp, body = h.postForm(c, "/.keygate/email/confirm", "code", code)
	if resp.StatusCode != 400 || !strings.Contains(body, "Начните заново") {
		t.Fatalf("expired: %d", resp.StatusCode)
	}
	h.addressUnchanged("an expired code", c, other)

	h.freshApp(c, secret)
	h.postForm(c, "/.keygate/email", "new", "alice.ru@example.org")
	m = waitMail(t, mp, "alice.ru@example.org", "смены адреса")
	resp, _ = h.postForm(c, "/.keygate/email/confirm", "code", codeIn(t, m))
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "done=email_changed") {
		t.Fatalf("confirm: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if addr, ok := h.addressOf(testUser); addr != "alice.ru@example.org" || !ok {
		t.Fatalf("after: %s %v", addr, ok)
	}
	old := waitMail(t, mp, "alice@example.com", "Изменение безопасности")
	if !strings.Contains(old.Text, "изменён") || !strings.Contains(old.Text, h.origin+"/.keygate/not-me/") {
		t.Fatalf("the old address's notice in Russian: %q", old.Text)
	}
	waitMail(t, mp, "alice.ru@example.org", "теперь адрес")
}
