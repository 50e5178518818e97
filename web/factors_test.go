package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/emailcode"
	fwa "github.com/keygate/keygate/factors/webauthn"
)

// The second factors through the real portal: pages, JSON API, cookies,
// the real factor packages on Badger, and codes computed by independent
// tools.

// oathtool computes a TOTP code with Debian's oathtool at a pinned time:
// an implementation that shares nothing with ours.
func oathtool(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	bin, err := exec.LookPath("oathtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("oathtool missing: .ci/run installs it (apt-get install -y oathtool)")
		}
		t.Skip("SKIPPING: oathtool is not installed (apt-get install -y oathtool); CI fails instead of skipping")
	}
	out, err := exec.Command(bin, "--totp", "-b", secret, "-N", at.UTC().Format("2006-01-02 15:04:05 UTC")).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func form(vals ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(vals); i += 2 {
		v.Set(vals[i], vals[i+1])
	}
	return v.Encode()
}

var formHeader = setHeader("Content-Type", "application/x-www-form-urlencoded")

func (h *harness) postForm(c *http.Client, path string, vals ...string) (*http.Response, string) {
	h.t.Helper()
	return h.do(c, http.MethodPost, "http://app.example.com"+path, form(vals...), formHeader)
}

func (h *harness) postJSON(c *http.Client, path string, body any) (*http.Response, map[string]any) {
	h.t.Helper()
	b, _ := json.Marshal(body)
	resp, raw := h.do(c, http.MethodPost, "http://app.example.com"+path, string(b),
		setHeader("Content-Type", "application/json"), setHeader("Accept", "application/json"))
	out := map[string]any{}
	_ = json.Unmarshal([]byte(raw), &out)
	return resp, out
}

// redeemLink signs the client's user up for enrolment with an admin link.
func (h *harness) redeemLink(c *http.Client, user string) {
	h.t.Helper()
	token, _, err := h.mfa.IssueEnrollLink(context.Background(), user, time.Hour)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/enroll/"+token, "")
	if resp.StatusCode != 200 || !strings.Contains(body, token) {
		h.t.Fatalf("enrol link page: %d", resp.StatusCode)
	}
	resp, _ = h.postForm(c, "/.keygate/enroll", "token", token)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "done=link_ok") {
		h.t.Fatalf("redeem link: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

var (
	secretRe = regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`)
	enrollRe = regexp.MustCompile(`name="id" value="([^"]+)"`)
)

// enrolTOTP adds an authenticator app through the security page, then
// signs in with it (a code of the next time step), as a person does: the
// code confirming an enrolment is not a sign-in proof. It returns the
// secret; the client must be allowed to add a factor.
func (h *harness) enrolTOTP(c *http.Client) string {
	h.t.Helper()
	secret := h.addTOTP(c, "Phone")
	h.clock.Add(30 * time.Second)
	resp, out := h.postJSON(c, "/.keygate/api/factors/totp/verify", map[string]any{"code": oathtool(h.t, secret, h.clock.Now())})
	if resp.StatusCode != http.StatusOK || out["status"] != "ok" {
		h.t.Fatalf("sign in with the new app: %d %v", resp.StatusCode, out)
	}
	return secret
}

// addTOTP adds an authenticator app through the security page and returns
// its secret, without signing in with it.
func (h *harness) addTOTP(c *http.Client, name string) string {
	h.t.Helper()
	resp, body := h.postForm(c, "/.keygate/settings/totp")
	sm, im := secretRe.FindStringSubmatch(body), enrollRe.FindStringSubmatch(body)
	if resp.StatusCode != 200 || sm == nil || im == nil || !strings.Contains(body, `src="data:image/png;base64,`) {
		h.t.Fatalf("TOTP enrolment page: %d %q", resp.StatusCode, body)
	}
	// The confirming code, from the independent implementation.
	resp, _ = h.postForm(c, "/.keygate/settings/totp/confirm", "id", im[1], "code", oathtool(h.t, sm[1], h.clock.Now()), "name", name)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "done=totp_added") {
		h.t.Fatalf("confirm TOTP: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	return sm[1]
}

func TestPasswordAloneNeverEnrols(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client()
	h.login(c, testUser, testPassword, "")
	for _, path := range []string{"/.keygate/api/factors/totp/enroll/begin", "/.keygate/api/factors/recovery/generate", "/.keygate/api/factors/webauthn/enroll/begin"} {
		resp, out := h.postJSON(c, path, map[string]string{"kind": "security_key"})
		if resp.StatusCode == http.StatusOK || (out["error"] != "elevation_required" && out["error"] != "factor_unavailable") {
			t.Errorf("%s with a password only: %d %v", path, resp.StatusCode, out)
		}
	}
	resp, body := h.postForm(c, "/.keygate/settings/totp")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "confirm it&#39;s you") {
		t.Fatalf("settings TOTP with a password only: %d", resp.StatusCode)
	}
	creds, _ := h.mfa.Credentials(context.Background(), testUser)
	if len(creds) != 0 {
		t.Fatalf("credentials created: %v", creds)
	}
	// An enrolment link works once, and only for its own user.
	token, _, _ := h.mfa.IssueEnrollLink(context.Background(), "bob", time.Hour)
	resp, body = h.postForm(c, "/.keygate/enroll", "token", token)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "invalid, already used or expired") {
		t.Fatalf("bob's link used by alice: %d", resp.StatusCode)
	}
	h.redeemLink(c, testUser)
	token, _, _ = h.mfa.IssueEnrollLink(context.Background(), testUser, time.Hour)
	h.postForm(c, "/.keygate/enroll", "token", token)
	if resp, _ := h.postForm(c, "/.keygate/enroll", "token", token); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a link worked twice: %d", resp.StatusCode)
	}
}

func TestTOTPEnrolSignInAndReplay(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n"})
	admin := h.client()
	h.login(admin, testUser, testPassword, "")
	h.redeemLink(admin, testUser)
	secret := h.enrolTOTP(admin)

	// A fresh browser: password, then the app.
	c := h.client()
	_, out := h.login(c, testUser, testPassword, "http://app.example.com/secret")
	if out["status"] != "second_factor_required" {
		t.Fatalf("login: %v", out)
	}
	if resp, _ := h.do(c, http.MethodGet, "http://app.example.com/secret", ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("two_factor path with a password only: %d", resp.StatusCode)
	}
	resp, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/second-factor?rd=http%3A%2F%2Fapp.example.com%2Fsecret", "")
	if resp.StatusCode != 200 || !strings.Contains(body, "Authenticator app") || !strings.Contains(body, "Code by email") {
		t.Fatalf("chooser: %d %q", resp.StatusCode, body)
	}
	// The enrolment used this step's code: move to the next step.
	h.clock.Add(30 * time.Second)
	code := oathtool(t, secret, h.clock.Now())
	resp, out = h.postJSON(c, "/.keygate/api/factors/totp/verify", map[string]any{"code": code, "rd": "http://app.example.com/secret"})
	if resp.StatusCode != 200 || out["status"] != "ok" || out["redirect"] != "http://app.example.com/secret" {
		t.Fatalf("verify: %d %v", resp.StatusCode, out)
	}
	resp, body = h.do(c, http.MethodGet, "http://app.example.com/secret", "")
	if resp.StatusCode != 200 || body != "upstream:/secret" {
		t.Fatalf("two_factor path after TOTP: %d", resp.StatusCode)
	}
	if f := h.up.last(t).Header.Get("Remote-Factors"); f != "password,totp" {
		t.Fatalf("Remote-Factors %q", f)
	}

	// The same code again, from another browser: refused as used.
	other := h.client()
	h.login(other, testUser, testPassword, "")
	resp, out = h.postJSON(other, "/.keygate/api/factors/totp/verify", map[string]any{"code": code})
	if resp.StatusCode != http.StatusUnauthorized || out["error"] != "code_used" {
		t.Fatalf("replayed code: %d %v", resp.StatusCode, out)
	}
	// A code from two steps ago is refused too.
	old := oathtool(t, secret, h.clock.Now().Add(-60*time.Second))
	resp, out = h.postJSON(other, "/.keygate/api/factors/totp/verify", map[string]any{"code": old})
	if resp.StatusCode != http.StatusUnauthorized || (out["error"] != "wrong_code" && out["error"] != "code_used") {
		t.Fatalf("old code: %d %v", resp.StatusCode, out)
	}
	// The HTML form says what happened, in the person's language.
	resp, body = h.do(other, http.MethodPost, "http://app.example.com/.keygate/second-factor/totp", form("code", code),
		formHeader, setHeader("Accept-Language", "ru"))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "уже использован") {
		t.Fatalf("ru form replay: %d %q", resp.StatusCode, body)
	}
}

func TestTOTPConcurrentSubmissionsOneWins(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n"})
	admin := h.client()
	h.login(admin, testUser, testPassword, "")
	h.redeemLink(admin, testUser)
	secret := h.enrolTOTP(admin)
	h.clock.Add(30 * time.Second)
	code := oathtool(t, secret, h.clock.Now())

	const n = 20
	clients := make([]*http.Client, n)
	for i := range clients {
		clients[i] = h.client()
		h.login(clients[i], testUser, testPassword, "")
	}
	var ok atomic.Int32
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := json.Marshal(map[string]string{"code": code})
			req, _ := http.NewRequest(http.MethodPost, "http://app.example.com/.keygate/api/factors/totp/verify", strings.NewReader(string(b)))
			req.Header.Set("Content-Type", "application/json")
			resp, err := c.Do(req)
			if err == nil {
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if got := ok.Load(); got != 1 {
		t.Fatalf("%d of %d concurrent submissions of one code succeeded, want exactly 1", got, n)
	}
}

func TestRecoveryCodesOnceEachAndNotice(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n"})
	admin := h.client()
	h.login(admin, testUser, testPassword, "")
	h.redeemLink(admin, testUser)
	resp, body := h.postForm(admin, "/.keygate/settings/recovery")
	codes := regexp.MustCompile(`<li><code>([a-z0-9-]+)</code></li>`).FindAllStringSubmatch(body, -1)
	if resp.StatusCode != 200 || len(codes) != 10 || !strings.Contains(body, `download="keygate-recovery-codes.txt"`) {
		t.Fatalf("recovery codes page: %d, %d codes", resp.StatusCode, len(codes))
	}
	first := codes[0][1]

	c := h.client()
	h.login(c, testUser, testPassword, "")
	resp, out := h.postJSON(c, "/.keygate/api/factors/recovery/verify", map[string]any{"code": strings.ToUpper(first)})
	if resp.StatusCode != 200 || out["status"] != "ok" {
		t.Fatalf("recovery code: %d %v", resp.StatusCode, out)
	}
	if r, _ := h.do(c, http.MethodGet, "http://app.example.com/x", ""); r.StatusCode != 200 {
		t.Fatalf("after recovery code: %d", r.StatusCode)
	}
	// Using it told the person by email.
	mails, err := h.outbox.List()
	if err != nil || len(mails) == 0 || !strings.Contains(mails[0].Subject, "recovery code") || mails[0].To != "alice@example.com" {
		t.Fatalf("notice: %v %+v", err, mails)
	}
	// Once only.
	c2 := h.client()
	h.login(c2, testUser, testPassword, "")
	resp, out = h.postJSON(c2, "/.keygate/api/factors/recovery/verify", map[string]any{"code": first})
	if resp.StatusCode != http.StatusUnauthorized || out["error"] != "code_used" {
		t.Fatalf("reused recovery code: %d %v", resp.StatusCode, out)
	}
	// A new set kills the old one. (The admin browser is still elevated
	// by its enrolment link.)
	h.postForm(admin, "/.keygate/settings/recovery")
	resp, out = h.postJSON(c2, "/.keygate/api/factors/recovery/verify", map[string]any{"code": codes[1][1]})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("old set after regenerate: %d %v", resp.StatusCode, out)
	}
}

func TestTrustedDeviceSkipsOnlyWhereAllowed(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: `
default: two_factor
rules:
  - name: strict
    hosts: [app.example.com]
    paths: ["/strict/**"]
    action: two_factor
    trusted_device: false
`})
	admin := h.client()
	h.login(admin, testUser, testPassword, "")
	h.redeemLink(admin, testUser)
	secret := h.enrolTOTP(admin)
	h.clock.Add(30 * time.Second)

	// Where the rule forbids remembered devices, "remember" is not honoured.
	strict := h.client()
	h.login(strict, testUser, testPassword, "http://app.example.com/strict/y")
	resp, _ := h.postJSON(strict, "/.keygate/api/factors/totp/verify", map[string]any{
		"code": oathtool(t, secret, h.clock.Now()), "rd": "http://app.example.com/strict/y", "remember": true})
	for _, ck := range resp.Cookies() {
		if ck.Name == deviceCookie {
			t.Fatal("a device was remembered for a rule with trusted_device: false")
		}
	}
	h.clock.Add(30 * time.Second)

	c := h.client()
	h.login(c, testUser, testPassword, "http://app.example.com/x")
	resp, out := h.postJSON(c, "/.keygate/api/factors/totp/verify", map[string]any{
		"code": oathtool(t, secret, h.clock.Now()), "rd": "http://app.example.com/x", "remember": true})
	if resp.StatusCode != 200 || out["status"] != "ok" {
		t.Fatalf("verify with remember: %d %v", resp.StatusCode, out)
	}
	var device *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == deviceCookie {
			device = ck
		}
	}
	if device == nil || !device.HttpOnly || device.MaxAge < 29*24*3600 {
		t.Fatalf("device cookie %+v", device)
	}
	// Sign out, sign in again on the same browser: password only.
	h.do(c, http.MethodPost, "http://app.example.com/.keygate/api/logout", "")
	_, out = h.login(c, testUser, testPassword, "http://app.example.com/x")
	if out["status"] != "ok" {
		t.Fatalf("remembered device still asked for a second factor: %v", out)
	}
	if r, _ := h.do(c, http.MethodGet, "http://app.example.com/x", ""); r.StatusCode != 200 {
		t.Fatalf("rule allowing remembered devices: %d", r.StatusCode)
	}
	if r, _ := h.do(c, http.MethodGet, "http://app.example.com/strict/y", ""); r.StatusCode != http.StatusFound {
		t.Fatalf("trusted_device: false rule let a remembered device through: %d", r.StatusCode)
	}
	// The device is listed on the security page and can be forgotten.
	devs, _ := h.mfa.Devices(context.Background(), testUser)
	if len(devs) != 1 || !strings.Contains(devs[0].Name, "on") {
		t.Fatalf("devices %+v", devs)
	}
	_, body := h.do(admin, http.MethodGet, "http://app.example.com/.keygate/settings", "")
	if !strings.Contains(body, devs[0].Name) {
		t.Fatal("security page does not list the remembered device")
	}
	resp, _ = h.postForm(admin, "/.keygate/settings/devices/"+devs[0].ID+"/forget")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("forget device: %d", resp.StatusCode)
	}
	// The session that began on it ended, and a new sign-in asks again.
	if r, _ := h.do(c, http.MethodGet, "http://app.example.com/x", ""); r.StatusCode != http.StatusFound {
		t.Fatalf("session of a forgotten device still works: %d", r.StatusCode)
	}
	_, out = h.login(c, testUser, testPassword, "http://app.example.com/x")
	if out["status"] != "second_factor_required" {
		t.Fatalf("forgotten device skipped the second factor: %v", out)
	}
}

func TestRemovingLastFactorIsRefused(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n"})
	// bob has no verified email: the app will be his only factor.
	c := h.client()
	h.login(c, "bob", "violet-harbour-lantern-9", "")
	h.redeemLink(c, "bob")
	h.enrolTOTP(c)
	creds, _ := h.mfa.Credentials(context.Background(), "bob")
	if len(creds) != 1 {
		t.Fatalf("creds %v", creds)
	}
	resp, body := h.postForm(c, "/.keygate/settings/factors/"+creds[0].ID+"/remove")
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "last second factor") {
		t.Fatalf("removing the last factor: %d", resp.StatusCode)
	}
	if after, _ := h.mfa.Credentials(context.Background(), "bob"); len(after) != 1 {
		t.Fatal("the last factor was removed")
	}
}

func TestFactorErrorsSpeakBothLanguages(t *testing.T) {
	tr, err := loadTranslator()
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{}
	for _, e := range mfaErrorSamples() {
		keys = append(keys, problemOf(e, time.Now(), testTables).Key)
	}
	for _, c := range tr.cats {
		for _, k := range keys {
			if msg := c.T(k); msg == k || msg == "" {
				t.Errorf("%s: no message for %s", c.Lang(), k)
			}
		}
	}
}

// mfaErrorSamples is one of each error the second-factor flows return.
func mfaErrorSamples() []error {
	return []error{
		&emailcode.CooldownError{Remaining: 42 * time.Second}, emailcode.ErrHourlyCap, emailcode.ErrDelivery,
		authn.ErrWrongCode, authn.ErrCodeUsed, authn.ErrCodeExpired, authn.ErrCodeDead, authn.ErrNoCodeSent,
		authn.ErrElevationRequired, authn.ErrLastFactor, authn.ErrEmailNotVerified, authn.ErrFactorUnavailable,
		authn.ErrSessionUnavailable, authn.ErrLinkInvalid, authn.ErrAssertionRefused, authn.ErrDeviceNotFound,
		factors.ErrNameTaken, factors.ErrInvalidName, factors.ErrNotFound, factors.ErrNotSupported,
		fwa.ErrCeremony, fwa.ErrCloneWarning,
		&fwa.VerifyError{Reason: "already_registered"}, &fwa.VerifyError{Reason: "suspended"}, fwa.ErrAllSuspended, &fwa.VerifyError{Reason: "not_allowed"}, &fwa.VerifyError{Reason: "bad_origin"},
		authn.ErrEnrollCodeClosed,
		&authn.WeakProofError{Need: factors.StrengthCode}, &authn.WeakProofError{Need: factors.StrengthApp},
		&authn.WeakProofError{Need: factors.StrengthKey}, &authn.WeakProofError{Need: factors.StrengthHardware},
	}
}

// Removing over the API the credential this session was proved with ends
// the session: the answer says so and drops the cookie, rather than set a
// cookie for a session that no longer exists.
func TestAPIRemovingTheProvingCredentialSignsOut(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n"})
	c := h.client()
	h.login(c, testUser, testPassword, "")
	h.redeemLink(c, testUser)
	h.enrolTOTP(c) // "Phone", and this session is proved with it
	h.addTOTP(c, "Tablet")
	phone := h.credNamed(testUser, "Phone")
	resp, body := h.do(c, http.MethodDelete, "http://app.example.com/.keygate/api/factors/"+phone.ID, "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"signed_out":true`) {
		t.Fatalf("remove the proving app: %d %s", resp.StatusCode, body)
	}
	cleared := false
	for _, ck := range resp.Cookies() {
		cleared = cleared || (strings.HasSuffix(ck.Name, CookieName) && ck.MaxAge < 0)
	}
	if !cleared {
		t.Errorf("the session cookie was not cleared: %v", resp.Header.Values("Set-Cookie"))
	}
	if resp, _ := h.do(c, http.MethodGet, "http://app.example.com/.keygate/api/session", "", setHeader("Accept", "application/json")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after the removal the browser still has a session: %d", resp.StatusCode)
	}
	if ids := h.credIDs(testUser); slices.Contains(ids, phone.ID) || len(ids) != 1 {
		t.Errorf("credentials after the removal: %v", ids)
	}
}
