package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The recovery pages over HTTP with the real parts: the page renders in en
// and ru, an account without a factor is told it has nothing to recover,
// bad cancel links (unknown, malformed) get one clear answer and change
// nothing, and a cross-site POST is refused. The whole flow through the
// clock is authn's test (authn/recovery_test.go).
func TestRecoverPagesAndBadInput(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n"})
	c := h.client()
	// Without a session: sent to sign in, and back here afterwards.
	resp, _ := h.do(c, http.MethodGet, "http://app.example.com/.keygate/recover", "")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "rd="+url.QueryEscape("/.keygate/recover")) {
		t.Fatalf("no session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	h.login(c, testUser, testPassword, "")
	for lang, want := range map[string]string{"en": "no second factor to recover", "ru": "нет второго фактора"} {
		resp, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/recover", "", setHeader("Accept-Language", lang))
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, want) || !strings.Contains(body, `lang="`+lang) {
			t.Fatalf("%s page: %d\n%s", lang, resp.StatusCode, body)
		}
	}
	resp, body := h.do(c, http.MethodPost, "http://app.example.com/.keygate/recover/send", "", setHeader("Content-Type", "application/x-www-form-urlencoded"))
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "no second factor to recover") {
		t.Fatalf("code for an account without factors: %d\n%s", resp.StatusCode, body)
	}
	resp, body = h.do(c, http.MethodPost, "http://app.example.com/.keygate/recover/code", "code=", setHeader("Content-Type", "application/x-www-form-urlencoded"))
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("empty code: %d\n%s", resp.StatusCode, body)
	}
	for _, token := range []string{"short", strings.Repeat("A", 43)} {
		resp, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/recover/cancel/"+token, "")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "cancel link is invalid") {
			t.Fatalf("cancel page for %q: %d\n%s", token, resp.StatusCode, body)
		}
		resp, out := h.postJSON(c, "/.keygate/api/recovery/cancel", map[string]any{"token": token})
		if resp.StatusCode != http.StatusBadRequest || out["error"] != "recovery_link_invalid" {
			t.Fatalf("cancel API for %q: %d %v", token, resp.StatusCode, out)
		}
	}
	resp, raw := h.do(c, http.MethodGet, "http://app.example.com/.keygate/api/recovery", "", setHeader("Accept", "application/json"))
	out := map[string]any{}
	_ = json.Unmarshal([]byte(raw), &out)
	if resp.StatusCode != http.StatusOK || out["status"] != "none" || out["has_factors"] != false {
		t.Fatalf("state: %d %v", resp.StatusCode, out)
	}
	// Cross-site: refused before anything runs.
	resp, _ = h.do(c, http.MethodPost, "http://app.example.com/.keygate/recover/send", "",
		setHeader("Sec-Fetch-Site", "cross-site"), setHeader("Origin", "https://evil.example"))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site send: %d", resp.StatusCode)
	}
	mails, _ := h.outbox.List()
	for _, m := range mails {
		if strings.Contains(strings.ToLower(m.Subject), "recover") {
			t.Fatalf("a refused request sent %q", m.Subject)
		}
	}
}
