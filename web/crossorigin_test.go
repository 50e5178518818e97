package web

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// crossOriginTable lists every state-changing endpoint under /.keygate/.
// TestCrossOriginStateChangesAreRefused sends each a cross-site request and
// fails for any POST, PUT, PATCH or DELETE route that is missing here: a
// new endpoint must be added (and so checked) before it can ship.
var crossOriginTable = []string{
	// Sign-in and sign-out.
	"POST /.keygate/login",
	"POST /.keygate/logout",
	"POST /.keygate/api/login",
	"POST /.keygate/api/logout",
	// Second factors.
	"POST /.keygate/second-factor/:kind",
	"POST /.keygate/second-factor/:kind/send",
	"POST /.keygate/api/factors/:kind/begin",
	"POST /.keygate/api/factors/:kind/verify",
	"POST /.keygate/api/factors/email/send",
	"POST /.keygate/api/factors/webauthn/login/begin",
	"POST /.keygate/api/factors/webauthn/login/finish",
	"POST /.keygate/api/factors/webauthn/passkey/begin",
	"POST /.keygate/api/factors/webauthn/passkey/finish",
	// Enrolment and the security page.
	"POST /.keygate/enroll",
	"POST /.keygate/api/enroll-link",
	"POST /.keygate/settings/totp",
	"POST /.keygate/settings/totp/confirm",
	"POST /.keygate/settings/recovery",
	"POST /.keygate/settings/enroll/:kind",
	"POST /.keygate/settings/enroll/:kind/confirm",
	"POST /.keygate/settings/factors/:id/rename",
	"POST /.keygate/settings/factors/:id/remove",
	"POST /.keygate/settings/devices/:id/forget",
	"POST /.keygate/settings/email/send",
	"POST /.keygate/settings/email/verify",
	"POST /.keygate/settings/enroll-code/send",
	"POST /.keygate/settings/enroll-code/verify",
	"POST /.keygate/api/factors/:kind/enroll/begin",
	"POST /.keygate/api/factors/:kind/enroll/finish",
	"POST /.keygate/api/factors/recovery/generate",
	"PATCH /.keygate/api/factors/:id",
	"DELETE /.keygate/api/factors/:id",
	// Account: sessions, unlocking, "this wasn't me".
	"POST /.keygate/sessions/:handle/revoke",
	"DELETE /.keygate/api/sessions/:handle",
	"POST /.keygate/unlock",
	"POST /.keygate/unlock/send",
	"POST /.keygate/not-me",
	// Account recovery after losing every factor (recover.go).
	"POST /.keygate/recover/send",
	"POST /.keygate/recover/code",
	"POST /.keygate/recover/cancel",
	"POST /.keygate/api/recovery/send",
	"POST /.keygate/api/recovery/verify",
	"POST /.keygate/api/recovery/cancel",
	// The password: change and "Forgot your password?" (password.go).
	"POST /.keygate/password",
	"POST /.keygate/api/password",
	"POST /.keygate/password/reset",
	"POST /.keygate/password/reset/code",
	"POST /.keygate/password/reset/factor/:kind",
	"POST /.keygate/password/reset/finish",
	"POST /.keygate/password/reset/restart",
	// The email address change (email_change.go).
	"POST /.keygate/email",
	"POST /.keygate/email/confirm",
	"POST /.keygate/email/restart",
	"POST /.keygate/api/email/change",
	"POST /.keygate/api/email/change/confirm",
	"POST /.keygate/api/password/reset/begin",
	"POST /.keygate/api/password/reset/verify",
	"POST /.keygate/api/password/reset/factor/:kind/begin",
	"POST /.keygate/api/password/reset/factor/:kind/verify",
	"POST /.keygate/api/password/reset/finish",
	// The admin area: one handler under /api/admin/ (web/admin, the
	// same the admin socket serves), mounted for every method.
	"POST /.keygate/api/admin/*rest",
	"PUT /.keygate/api/admin/*rest",
	"PATCH /.keygate/api/admin/*rest",
	"DELETE /.keygate/api/admin/*rest",
	// "Always ask me for a second factor" (security_page.go).
	"POST /.keygate/security/always-ask",
	"POST /.keygate/api/security/always-ask",
	"CONNECT /.keygate/api/admin/*rest",
	"TRACE /.keygate/api/admin/*rest",
}

// crossOriginSamples are the admin API's state-changing endpoints behind
// its catch-all route: each is sent cross-site as well.
var crossOriginSamples = []string{
	"POST /.keygate/api/admin/users",
	"POST /.keygate/api/admin/users/bob/enable",
	"POST /.keygate/api/admin/users/bob/disable",
	"POST /.keygate/api/admin/users/bob/enroll-link",
	"POST /.keygate/api/admin/users/bob/reset-factors",
	"POST /.keygate/api/admin/users/bob/unlock",
	"POST /.keygate/api/admin/users/bob/recovery/approve",
	"POST /.keygate/api/admin/users/bob/recovery/cancel",
	"PUT /.keygate/api/admin/users/bob/password",
	"DELETE /.keygate/api/admin/users/bob",
	"DELETE /.keygate/api/admin/users/bob/sessions",
	"POST /.keygate/api/admin/policy/check",
	"POST /.keygate/api/admin/policy/rollback",
	"POST /.keygate/api/admin/policy/import",
	"POST /.keygate/api/admin/explain",
	"PUT /.keygate/api/admin/policy",
	"POST /.keygate/api/admin/keys/verify",
	"POST /.keygate/api/admin/users/bob/keys/x/suspend",
	"POST /.keygate/api/admin/users/bob/keys/x/unsuspend",
}

// samplePath fills a route's parameters with plausible values.
func samplePath(pattern string) string {
	var out []string
	for seg := range strings.SplitSeq(pattern, "/") {
		switch {
		case seg == ":kind":
			seg = "totp"
		case seg == ":name":
			seg = "bob"
		case strings.HasPrefix(seg, ":") || strings.HasPrefix(seg, "*"):
			seg = "x"
		}
		out = append(out, seg)
	}
	return strings.Join(out, "/")
}

func TestCrossOriginStateChangesAreRefused(t *testing.T) {
	h, env := newAdminHarness(t, "")
	// Every route the server has, with the admin area and the second
	// factors switched on, must be in the table.
	var routes []string
	for _, r := range h.web.engine.Routes() {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			continue
		}
		if strings.HasPrefix(r.Path, "/.keygate/") {
			routes = append(routes, r.Method+" "+r.Path)
		}
	}
	for _, r := range routes {
		if !slices.Contains(crossOriginTable, r) {
			t.Errorf("%s changes state and is not in crossOriginTable (web/crossorigin_test.go): add it there", r)
		}
	}
	for _, r := range crossOriginTable {
		if !slices.Contains(routes, r) {
			t.Errorf("crossOriginTable lists %s, which the server does not have: remove it", r)
		}
	}

	// The requests ride on a signed-in admin's cookie, so without the
	// guard they would act as alice.
	c := h.adminClient(testUser, testPassword)
	ctx := context.Background()
	sessionsBefore := len(h.sessions.ListUser(testUser))
	credsBefore, _ := h.mfa.Credentials(ctx, testUser)
	eventsBefore, _ := h.activity.List(ctx, testUser, 0)
	mailsBefore, _ := h.outbox.List()
	policyBefore := env.holder.Load()
	// A cross-site login would otherwise start a session (login CSRF).
	loginBody := `{"username":"alice","password":"` + testPassword + `"}`

	variants := []struct {
		name string
		opts []reqOpt
	}{
		{"fetch metadata cross-site", []reqOpt{setHeader("Sec-Fetch-Site", "cross-site"), setHeader("Origin", "https://evil.example")}},
		{"fetch metadata same-site", []reqOpt{setHeader("Sec-Fetch-Site", "same-site"), setHeader("Origin", "https://evil.example.com")}},
		{"old browser, Origin only", []reqOpt{setHeader("Origin", "https://evil.example")}},
	}
	for _, route := range slices.Concat(crossOriginTable, crossOriginSamples) {
		method, pattern, _ := strings.Cut(route, " ")
		for _, v := range variants {
			for _, ct := range []string{"application/json", "application/x-www-form-urlencoded"} {
				body := loginBody
				if ct != "application/json" {
					body = form("username", testUser, "password", testPassword, "everywhere", "1", "code", "123456")
				}
				opts := append([]reqOpt{setHeader("Content-Type", ct)}, v.opts...)
				resp, raw := h.do(c, method, "http://app.example.com"+samplePath(pattern), body, opts...)
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(raw, "another site") {
					t.Errorf("%s, %s, %s: %d %.120q", route, v.name, ct, resp.StatusCode, raw)
				}
				if sessionCookie(resp) != nil {
					t.Errorf("%s, %s: a session cookie was set", route, v.name)
				}
			}
		}
	}

	// Nothing changed: alice's sessions (this one still works), factors,
	// log, mail and the policy are as they were.
	if n := len(h.sessions.ListUser(testUser)); n != sessionsBefore {
		t.Errorf("alice has %d sessions, had %d", n, sessionsBefore)
	}
	if r, _ := h.do(c, http.MethodGet, "http://app.example.com/x", ""); r.StatusCode != http.StatusOK {
		t.Errorf("alice's session stopped working: %d", r.StatusCode)
	}
	if creds, _ := h.mfa.Credentials(ctx, testUser); len(creds) != len(credsBefore) {
		t.Errorf("credentials %d → %d", len(credsBefore), len(creds))
	}
	if events, _ := h.activity.List(ctx, testUser, 0); len(events) != len(eventsBefore) {
		t.Errorf("activity %d → %d events", len(eventsBefore), len(events))
	}
	if mails, _ := h.outbox.List(); len(mails) != len(mailsBefore) {
		t.Errorf("mails %d → %d", len(mailsBefore), len(mails))
	}
	if u, err := h.users.Get(ctx, "bob"); err != nil || u.Disabled {
		t.Errorf("bob was deleted or disabled: %v %+v", err, u)
	}
	if env.holder.Load() != policyBefore {
		t.Error("the policy changed")
	}
	if le, _ := h.reg.Status(ctx, "password", testUser, "127.0.0.1"); le != nil {
		t.Errorf("refused requests were counted as failures: %v", le)
	}

	// The guard refuses cross-site requests, not the portal's own: the
	// same POST from the same origin works.
	resp, _ := h.do(c, http.MethodPost, "http://app.example.com/.keygate/logout", form("everywhere", "1"),
		formHeader, setHeader("Sec-Fetch-Site", "same-origin"), setHeader("Origin", "http://app.example.com"))
	if resp.StatusCode != http.StatusSeeOther || len(h.sessions.ListUser(testUser)) != 0 {
		t.Fatalf("same-origin sign-out: %d", resp.StatusCode)
	}
}

// Every portal page comes with a strict Content-Security-Policy, no
// framing, no referrer, no sniffing and no caching; bodies are bounded and
// the session cookie is HttpOnly, SameSite=Lax and Secure behind HTTPS.
func TestPortalSecurityHeaders(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: one_factor\n", trustedProxies: []string{"127.0.0.1"}})
	c := h.client()
	resp, _ := h.login(c, testUser, testPassword, "")
	ck := sessionCookie(resp)
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure || ck.Path != "/" || ck.Domain != "example.com" {
		t.Fatalf("session cookie over HTTP: %+v", ck)
	}
	resp, _ = h.do(h.client(), http.MethodPost, "http://app.example.com/.keygate/api/login",
		`{"username":"alice","password":"`+testPassword+`"}`, setHeader("Content-Type", "application/json"), setHeader("X-Forwarded-Proto", "https"))
	if ck := sessionCookie(resp); ck == nil || !ck.Secure || !ck.HttpOnly {
		t.Fatalf("session cookie behind an HTTPS proxy: %+v", ck)
	}

	for _, tc := range []struct {
		name, method, path string
		opts               []reqOpt
		status             int
	}{
		{"login page", http.MethodGet, "/.keygate/login", nil, 200},
		{"home page", http.MethodGet, "/.keygate/", nil, 200},
		{"activity page", http.MethodGet, "/.keygate/activity", nil, 200},
		{"sessions page", http.MethodGet, "/.keygate/sessions", nil, 200},
		{"error page", http.MethodGet, "/.keygate/not-me/nope", nil, 400},
		{"cross-site refusal", http.MethodPost, "/.keygate/logout", []reqOpt{setHeader("Sec-Fetch-Site", "cross-site")}, 403},
		{"JSON API", http.MethodGet, "/.keygate/api/session", nil, 200},
	} {
		client := c
		if tc.name == "login page" {
			client = h.client() // signed in, it redirects onwards
		}
		resp, _ := h.do(client, tc.method, "http://app.example.com"+tc.path, "", tc.opts...)
		hd := resp.Header
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		csp := hd.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %s", tc.name, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-") {
			t.Errorf("%s: CSP allows %q", tc.name, csp)
		}
		for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY", "Cache-Control": "no-store"} {
			if hd.Get(k) != v {
				t.Errorf("%s: %s = %q, want %q", tc.name, k, hd.Get(k), v)
			}
		}
	}

	// Bodies are bounded: a huge JSON body is refused without being read.
	big := `{"username":"alice","password":"` + strings.Repeat("x", maxPortalBody) + `"}`
	resp, raw := h.do(h.client(), http.MethodPost, "http://app.example.com/.keygate/api/login", big, setHeader("Content-Type", "application/json"))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(raw, "too_large") {
		t.Fatalf("oversized body: %d %.100q", resp.StatusCode, raw)
	}
}
