package web

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/mail/mailpittest"
	"github.com/keygate/keygate/policy"
)

// The security check-up and "always ask me for a second factor" through
// the real server (Badger, the real factors, the outbox).

// The rule of the next step, every row and its priority over the ones
// below it (security_page.go writes the rule down).
func TestCheckupNextStepRule(t *testing.T) {
	good := checkFacts{hasFactor: true, backupOffered: true, hasBackup: true, codesLeft: 10, keyOffered: true, alwaysAsk: true}
	for _, tc := range []struct {
		name string
		edit func(*checkFacts)
		want string
	}{
		{"all done", func(*checkFacts) {}, stepNone},
		{"always ask off", func(f *checkFacts) { f.alwaysAsk = false }, stepAlwaysAsk},
		{"address unconfirmed", func(f *checkFacts) { f.emailUnverified, f.alwaysAsk = true, false }, stepConfirmEmail},
		{"few codes", func(f *checkFacts) { f.codesLeft, f.emailUnverified = fewRecoveryCodes, true }, stepRenewRecovery},
		{"enough codes", func(f *checkFacts) { f.codesLeft = fewRecoveryCodes + 1 }, stepNone},
		{"weak only", func(f *checkFacts) { f.weakOnly, f.codesLeft = true, 0 }, stepAddKey},
		{"weak only, no key to add", func(f *checkFacts) { f.weakOnly, f.keyOffered = true, false }, stepNone},
		{"no backup", func(f *checkFacts) { f.hasBackup, f.weakOnly = false, true }, stepAddRecovery},
		{"no backup offered", func(f *checkFacts) { f.hasBackup, f.backupOffered = false, false }, stepNone},
		{"no factor", func(f *checkFacts) { f.hasFactor, f.hasBackup = false, false }, stepAddFactor},
		{"recovery pending", func(f *checkFacts) { f.recoveryPending, f.hasFactor = true, false }, stepRecoveryPending},
	} {
		f := good
		tc.edit(&f)
		if got := nextStep(f); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// checkupOf reads GET /api/security.
func (h *harness) checkupOf(c *http.Client) map[string]any {
	h.t.Helper()
	resp, raw := h.do(c, http.MethodGet, "http://app.example.com/.keygate/api/security", "", setHeader("Accept", "application/json"))
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("check-up: %d %s", resp.StatusCode, raw)
	}
	out := map[string]any{}
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// nextOf is the check-up's next step, checked on the page too (en and
// ru: the step's own sentence and link).
func (h *harness) nextOf(c *http.Client) string {
	h.t.Helper()
	next, _ := h.checkupOf(c)["next"].(map[string]any)
	step, _ := next["step"].(string)
	for _, lang := range []string{"en", "ru"} {
		resp, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/security", "", setHeader("Accept-Language", lang))
		want := h.web.tr.pick(lang).T("security.next." + step)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-step="`+step+`"`) || !strings.Contains(body, html.EscapeString(want)) {
			h.t.Fatalf("%s page for %s: %d\n%s", lang, step, resp.StatusCode, body)
		}
	}
	return step
}

var sheetRe = regexp.MustCompile(`<li><code>([a-z0-9-]+)</code></li>`)

// recoveryCodes makes a new set on the security page and returns it.
func (h *harness) recoveryCodes(c *http.Client) []string {
	h.t.Helper()
	resp, body := h.postForm(c, "/.keygate/settings/recovery")
	var out []string
	for _, m := range sheetRe.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	if resp.StatusCode != 200 || len(out) == 0 {
		h.t.Fatalf("recovery codes: %d", resp.StatusCode)
	}
	return out
}

func TestCheckupNextStepThroughServer(t *testing.T) {
	t.Run("webauthn configured", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		c := h.client()
		h.login(c, testUser, testPassword, "")
		if got := h.nextOf(c); got != stepAddFactor {
			t.Fatalf("password only: %s", got)
		}
		h.redeemLink(c, testUser)
		h.addTOTP(c, "Phone")
		if got := h.nextOf(c); got != stepAddRecovery {
			t.Fatalf("an app, no backup: %s", got)
		}
		h.recoveryCodes(c)
		cu := h.checkupOf(c)
		if got := h.nextOf(c); got != stepAddKey || cu["strongest"] != "totp" || cu["recovery_codes_left"] != float64(10) {
			t.Fatalf("an app and codes: %s %v", got, cu)
		}
	})
	t.Run("no webauthn", func(t *testing.T) {
		h := newHarness(t, harnessOptions{noWebAuthn: true})
		c := h.client()
		h.login(c, testUser, testPassword, "")
		h.redeemLink(c, testUser)
		h.addTOTP(c, "Phone")
		codes := h.recoveryCodes(c)
		if got := h.nextOf(c); got != stepAlwaysAsk {
			t.Fatalf("an app and codes, no key to add: %s", got)
		}
		if resp, _ := h.postForm(c, "/.keygate/security/always-ask", "on", "1"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("turn on: %d", resp.StatusCode)
		}
		if got := h.nextOf(c); got != stepNone {
			t.Fatalf("everything done: %s", got)
		}
		// Use codes until few are left.
		for _, code := range codes[:len(codes)-fewRecoveryCodes] {
			u := h.client()
			h.login(u, testUser, testPassword, "")
			if resp, out := h.postJSON(u, "/.keygate/api/factors/recovery/verify", map[string]any{"code": code}); resp.StatusCode != 200 {
				t.Fatalf("recovery code: %d %v", resp.StatusCode, out)
			}
		}
		if got := h.nextOf(c); got != stepRenewRecovery {
			t.Fatalf("%d codes left: %s", fewRecoveryCodes, got)
		}
		cu := h.checkupOf(c)
		if signIns, _ := cu["last_sign_ins"].([]any); len(signIns) != lastSignIns {
			t.Fatalf("last sign-ins: %v", cu["last_sign_ins"])
		}

		// bob's address is not confirmed.
		b := h.client()
		h.login(b, "bob", "violet-harbour-lantern-9", "")
		h.redeemLink(b, "bob")
		h.addTOTP(b, "Phone")
		h.recoveryCodes(b)
		if got := h.nextOf(b); got != stepConfirmEmail {
			t.Fatalf("unconfirmed address: %s", got)
		}

		// A recovery under way comes first.
		r := h.client()
		h.login(r, testUser, testPassword, "")
		if resp, out := h.postJSON(r, "/.keygate/api/recovery/send", map[string]any{}); resp.StatusCode != 200 {
			t.Fatalf("recovery send: %d %v", resp.StatusCode, out)
		}
		mails, _ := h.outbox.List()
		var code string
		for _, m := range mails {
			if m.To == "alice@example.com" && strings.Contains(strings.ToLower(m.Subject), "recover") {
				code = codeRe.FindString(m.Text)
				break
			}
		}
		if resp, out := h.postJSON(r, "/.keygate/api/recovery/verify", map[string]any{"code": code}); resp.StatusCode != 200 {
			t.Fatalf("recovery verify: %d %v", resp.StatusCode, out)
		}
		if got := h.nextOf(c); got != stepRecoveryPending {
			t.Fatalf("recovery under way: %s", got)
		}
	})
}

func TestCheckupNeedsASession(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client()
	resp, _ := h.do(c, http.MethodGet, "http://app.example.com/.keygate/security", "")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "/.keygate/login?rd=") {
		t.Fatalf("page without a session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/api/security", "", setHeader("Accept", "application/json"))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "not_signed_in") {
		t.Fatalf("API without a session: %d %s", resp.StatusCode, body)
	}
	// Linked from the home and security pages.
	h.login(c, testUser, testPassword, "")
	for _, p := range []string{"/.keygate/", "/.keygate/settings"} {
		if _, body := h.do(c, http.MethodGet, "http://app.example.com"+p, ""); !strings.Contains(body, `href="/.keygate/security"`) {
			t.Fatalf("%s does not link the check-up", p)
		}
	}
}

// alwaysAsk is the account's setting as stored.
func (h *harness) alwaysAsk(user string) bool {
	h.t.Helper()
	u, err := h.users.Get(context.Background(), user)
	if err != nil {
		h.t.Fatal(err)
	}
	return u.AlwaysAsk
}

// reach is the gate's answer to an API client asking for path on app.
func (h *harness) reach(c *http.Client, path string) (int, map[string]any) {
	h.t.Helper()
	resp, raw := h.do(c, http.MethodGet, "http://app.example.com"+path, "", setHeader("Accept", "application/json"))
	out := map[string]any{}
	_ = json.Unmarshal([]byte(raw), &out)
	return resp.StatusCode, out
}

// authz is forward-auth's answer (nginx style) for a GET of target.
func (h *harness) authz(c *http.Client, target string) int {
	h.t.Helper()
	resp, _ := h.do(c, http.MethodGet, authzURL, "", append(nginxHeaders("", target), setHeader("Accept", "application/json"))...)
	return resp.StatusCode
}

func TestAlwaysAskThroughGateAndForwardAuth(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1", "::1"}})
	c := h.client()
	h.login(c, testUser, testPassword, "")
	h.redeemLink(c, testUser)
	secret := h.addTOTP(c, "Phone")
	// The password is enough for the app (one_factor) while it is off.
	if st, _ := h.reach(c, "/x"); st != 200 || h.authz(c, "http://app.example.com/x") != 200 {
		t.Fatalf("off: %d", st)
	}

	// Bad inputs: a clear refusal, nothing changed.
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"no value", `{}`, 400},
		{"not a bool", `{"on":"yes"}`, 400},
		{"unknown field", `{"on":true,"for":"bob"}`, 400},
		{"not JSON", `on=1`, 400},
	} {
		resp, body := h.do(c, http.MethodPost, "http://app.example.com/.keygate/api/security/always-ask", tc.body,
			setHeader("Content-Type", "application/json"), setHeader("Accept", "application/json"))
		if resp.StatusCode != tc.status || h.alwaysAsk(testUser) {
			t.Fatalf("%s: %d %s", tc.name, resp.StatusCode, body)
		}
	}
	resp, body := h.postForm(c, "/.keygate/security/always-ask", "on", "maybe")
	if resp.StatusCode != 400 || !strings.Contains(body, "Choose whether") || h.alwaysAsk(testUser) {
		t.Fatalf("form without on/off: %d", resp.StatusCode)
	}
	if resp, out := h.postJSON(h.client(), "/.keygate/api/security/always-ask", map[string]any{"on": true}); resp.StatusCode != 401 || out["error"] != "not_signed_in" {
		t.Fatalf("signed out: %d %v", resp.StatusCode, out)
	}
	resp, _ = h.do(c, http.MethodPost, "http://app.example.com/.keygate/security/always-ask", "on=1",
		setHeader("Content-Type", "application/x-www-form-urlencoded"), setHeader("Sec-Fetch-Site", "cross-site"), setHeader("Origin", "https://evil.example"))
	if resp.StatusCode != http.StatusForbidden || h.alwaysAsk(testUser) {
		t.Fatalf("cross-site: %d", resp.StatusCode)
	}
	// bob has nothing to give as a second factor: on would lock him out.
	b := h.client()
	h.login(b, "bob", "violet-harbour-lantern-9", "")
	if resp, out := h.postJSON(b, "/.keygate/api/security/always-ask", map[string]any{"on": true}); resp.StatusCode != http.StatusConflict || out["error"] != "always_ask_no_factor" || h.alwaysAsk("bob") {
		t.Fatalf("bob on: %d %v", resp.StatusCode, out)
	}
	if st, _ := h.reach(b, "/x"); st != 200 {
		t.Fatalf("bob after a refused on: %d", st)
	}

	// On, with the session alone.
	resp, _ = h.postForm(c, "/.keygate/security/always-ask", "on", "1")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "done=always_ask_on") || !h.alwaysAsk(testUser) {
		t.Fatalf("on: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// This very session is now asked (it proved no second factor: the
	// enrolment link is none), through the gate and forward-auth alike.
	st, out := h.reach(c, "/x")
	if factors, _ := out["factors"].([]any); st != http.StatusUnauthorized || out["error"] != "second_factor_required" || len(factors) == 0 {
		t.Fatalf("on, gate: %d %v", st, out)
	}
	if st := h.authz(c, "http://app.example.com/x"); st != http.StatusUnauthorized {
		t.Fatalf("on, forward-auth: %d", st)
	}
	// A new sign-in is asked as well; the second-factor step names the app.
	c2 := h.client()
	if _, out := h.login(c2, testUser, testPassword, "http://app.example.com/x"); out["status"] != "second_factor_required" {
		t.Fatalf("sign-in with it on: %v", out)
	}
	// Bypass stays open, deny stays deny, nobody else is touched.
	if st, _ := h.reach(c2, "/static/x.css"); st != 200 {
		t.Fatalf("bypass: %d", st)
	}
	if st, _ := h.reach(c2, "/closed/x"); st != http.StatusForbidden {
		t.Fatalf("deny: %d", st)
	}
	if st, _ := h.reach(b, "/x"); st != 200 {
		t.Fatalf("bob: %d", st)
	}
	// With the app, through.
	h.clock.Add(30 * time.Second)
	if resp, out := h.postJSON(c2, "/.keygate/api/factors/totp/verify", map[string]any{"code": oathtool(t, secret, h.clock.Now())}); resp.StatusCode != 200 {
		t.Fatalf("app code: %d %v", resp.StatusCode, out)
	}
	if st, _ := h.reach(c2, "/x"); st != 200 || h.authz(c2, "http://app.example.com/x") != 200 {
		t.Fatalf("with a second factor: %d", st)
	}

	// Off needs a fresh second factor: c has none; refused, the page
	// offers the way to one, nothing changed, no mail.
	before, _ := h.outbox.List()
	resp, body = h.postForm(c, "/.keygate/security/always-ask", "on", "0")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `id="always-ask-elevate"`) || !h.alwaysAsk(testUser) {
		t.Fatalf("off without a fresh factor: %d\n%s", resp.StatusCode, body)
	}
	if resp, out := h.postJSON(c, "/.keygate/api/security/always-ask", map[string]any{"on": false}); resp.StatusCode != http.StatusForbidden || out["error"] != "elevation_required" {
		t.Fatalf("API off without a fresh factor: %d %v", resp.StatusCode, out)
	}
	if after, _ := h.outbox.List(); len(after) != len(before) || !h.alwaysAsk(testUser) {
		t.Fatal("a refused off mailed or changed something")
	}
	// With one: off, the sessions follow, the person is told.
	if resp, out := h.postJSON(c2, "/.keygate/api/security/always-ask", map[string]any{"on": false}); resp.StatusCode != 200 || out["always_ask"] != false {
		t.Fatalf("off: %d %v", resp.StatusCode, out)
	}
	if st, _ := h.reach(c, "/x"); st != 200 || h.alwaysAsk(testUser) {
		t.Fatalf("off, the other session: %d", st)
	}
	mails, _ := h.outbox.List()
	found := false
	for _, m := range mails {
		if m.To == "alice@example.com" && strings.Contains(m.Text, "no second factor is asked for any more") {
			found = true
		}
	}
	if !found {
		t.Fatal("no notice of turning it off")
	}
	// Both changes are in the activity log.
	_, body = h.do(c, http.MethodGet, "http://app.example.com/.keygate/activity", "")
	if !strings.Contains(body, "turned on") || !strings.Contains(body, "turned off") {
		t.Fatalf("activity page lacks the changes:\n%s", body)
	}
}

// "Always ask" is applied in decide from the session alone: no allocation
// on either side of it, and only a one_factor allow changes.
func TestDecideAlwaysAskDoesNotAllocate(t *testing.T) {
	pol, err := policy.Compile(policy.Policy{Default: policy.ActionOneFactor, Rules: []policy.Rule{
		{Name: "public", Paths: []string{"/static/**"}, Action: policy.ActionBypass},
		{Name: "closed", Paths: []string{"/closed/**"}, Action: policy.ActionDeny},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ask := []string{"totp", "email"}
	password := []policy.Proof{{Kind: policy.FactorPassword, At: time.Now()}}
	both := append(password, policy.Proof{Kind: "totp", At: time.Now()})
	up, now := &upstream{}, time.Now()
	for _, tc := range []struct {
		path   string
		proofs []policy.Proof
		device bool
		ask    []string
		want   policy.Outcome
	}{
		{"/page", password, false, nil, policy.Allow},
		{"/page", password, false, ask, policy.Challenge},
		{"/page", both, false, ask, policy.Allow},
		{"/page", password, true, ask, policy.Allow}, // a remembered device stands for one
		{"/static/app.css", password, false, ask, policy.Allow},
		{"/closed/x", both, false, ask, policy.Deny},
	} {
		q := question{pol: pol, up: up, host: "app.test", path: tc.path, method: http.MethodGet, now: now, ask: tc.ask,
			subject: policy.Subject{Authenticated: true, User: "alice", Proofs: tc.proofs, TrustedDevice: tc.device}}
		var d policy.Decision
		if n := testing.AllocsPerRun(100, func() {
			if d, err = decide(&q, nil); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations", tc.path, n)
		}
		if d.Outcome != tc.want {
			t.Errorf("%s ask=%v proofs=%d device=%v: %v, want %v", tc.path, tc.ask, len(tc.proofs), tc.device, d.Outcome, tc.want)
		}
		if d.Outcome == policy.Challenge && (d.Reason != policy.ReasonSecondFactor || len(d.Acceptable) != len(ask)) {
			t.Errorf("%s: challenge %v %v", tc.path, d.Reason, d.Acceptable)
		}
	}
}

// Admins see the setting on the user page and in the admin API (which
// `keygate user show` prints).
func TestAdminSeesAlwaysAsk(t *testing.T) {
	h, _ := newAdminHarness(t, "")
	alice := h.adminClient(testUser, testPassword)
	for _, want := range []bool{false, true} {
		if want {
			if resp, out := h.postJSON(alice, "/.keygate/api/security/always-ask", map[string]any{"on": true}); resp.StatusCode != 200 {
				t.Fatalf("on: %d %v", resp.StatusCode, out)
			}
		}
		_, out := h.api(alice, http.MethodGet, "users/"+testUser, nil)
		if u, _ := out["user"].(map[string]any); u["always_ask"] != want {
			t.Fatalf("admin API: %v, want always_ask %v", out["user"], want)
		}
		label := map[bool]string{false: "off", true: "on: a second factor is asked for"}[want]
		resp, body := h.do(alice, http.MethodGet, "http://app.example.com/.keygate/admin/users/"+testUser, "", setHeader("Accept-Language", "en"))
		if resp.StatusCode != 200 || !strings.Contains(body, `<dd id="user-always-ask">`+label) {
			t.Fatalf("admin user page (%v): %d", want, resp.StatusCode)
		}
	}
}

// The notice of turning "always ask" off, read from Mailpit in en and ru:
// language, time in the person's zone, place, working absolute links.
func TestAlwaysAskOffNoticeInMailpit(t *testing.T) {
	mp := mailpittest.Start(t)
	off := map[string]string{"en": "“Always ask me for a second factor” was turned off", "ru": "отключено «Всегда запрашивать второй фактор»"}
	for _, tc := range noticeCases {
		t.Run(tc.lang, func(t *testing.T) {
			h := newHarness(t, harnessOptions{policyYAML: "default: one_factor\n", mail: smtpTo(t, mp.SMTPHost, mp.SMTPPort),
				trustedProxies: []string{"127.0.0.1"}})
			const addr, ip = "alice@example.com", "198.51.100.7"
			mp.DeleteAll()
			c := h.client()
			if tc.lang == "ru" {
				if resp := h.switchLanguage(c, "ru", "http://app.example.com/.keygate/login"); resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("switch: %d", resp.StatusCode)
				}
			}
			opts := append([]reqOpt{setHeader("Content-Type", "application/json"), setHeader("Accept", "application/json")}, from(ip, firefoxLinux)...)
			b, _ := json.Marshal(map[string]string{"username": testUser, "password": testPassword, "tz": tc.zone})
			if resp, body := h.do(c, http.MethodPost, "http://app.example.com/.keygate/api/login", string(b), opts...); resp.StatusCode != http.StatusOK {
				t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
			}
			h.redeemLink(c, testUser)
			h.enrolTOTP(c) // a fresh second factor
			for _, on := range []string{"true", "false"} {
				if resp, body := h.do(c, http.MethodPost, "http://app.example.com/.keygate/api/security/always-ask", `{"on":`+on+`}`, opts...); resp.StatusCode != http.StatusOK {
					t.Fatalf("on=%s: %d %s", on, resp.StatusCode, body)
				}
			}
			m := waitNotice(t, mp, addr, off[tc.lang])
			h.checkNotice(t, mp, m, tc, ip, tc.browser, tc.zone)
		})
	}
}
