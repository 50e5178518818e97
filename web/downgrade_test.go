package web

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/factors"
)

// Attack paths of issue 11, part 3: someone with the password and the
// mailbox (or a recovery code) tries to take over an account's second
// factors. Every refusal is checked to have changed nothing; every
// accepted change to have mailed a "This wasn't me" link.

const appOnlyPolicy = `
default: two_factor
rules:
  - name: app-only
    hosts: [app.example.com]
    paths: ["/app-only/**"]
    action: two_factor
    factors: [totp]
`

// emailProof signs c in with the password and a code by email: the
// attacker who reads the mailbox.
func (h *harness) emailProof(c *http.Client, user, password string) {
	h.t.Helper()
	h.clock.Add(2 * time.Minute) // past the resend cooldown of earlier codes
	if _, out := h.login(c, user, password, ""); out["status"] == nil {
		h.t.Fatalf("login: %v", out)
	}
	if resp, out := h.postJSON(c, "/.keygate/api/factors/email/send", nil); resp.StatusCode != http.StatusOK {
		h.t.Fatalf("send code: %d %v", resp.StatusCode, out)
	}
	u, _ := h.mfa.User(context.Background(), user)
	if resp, out := h.postJSON(c, "/.keygate/api/factors/email/verify", map[string]any{"code": h.latestCode(u.Email)}); resp.StatusCode != http.StatusOK {
		h.t.Fatalf("verify code: %d %v", resp.StatusCode, out)
	}
}

// snapshot is everything stored about user's second factors, to compare
// before and after a refused attempt.
func (h *harness) snapshot(user string) string {
	h.t.Helper()
	creds, err := h.mfa.Credentials(context.Background(), user)
	if err != nil {
		h.t.Fatal(err)
	}
	b, _ := json.Marshal(creds)
	return string(b)
}

// noticeMails counts the security-change notices sent to addr that carry a
// "This wasn't me" link.
func (h *harness) noticeMails(addr string) int {
	h.t.Helper()
	mails, err := h.outbox.List()
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, m := range mails {
		if m.To == addr && strings.Contains(m.Subject, "Security change") && notMeRe.MatchString(m.Text) {
			n++
		}
	}
	return n
}

func (h *harness) credOf(user, kind string) factors.Credential {
	h.t.Helper()
	creds, _ := h.mfa.Credentials(context.Background(), user)
	i := slices.IndexFunc(creds, func(c factors.Credential) bool { return c.Kind == kind })
	if i < 0 {
		h.t.Fatalf("%s has no %s credential: %v", user, kind, creds)
	}
	return creds[i]
}

// refusedChanges tries every change of second factors with c's session
// and checks each is refused with stronger_proof_required naming need,
// and that the stored factors did not move.
func (h *harness) refusedChanges(c *http.Client, user string, need []string, skip ...string) {
	h.t.Helper()
	before := h.snapshot(user)
	app := h.credOf(user, "totp")
	tries := []struct{ name, method, path, body string }{
		{"add app", http.MethodPost, "/.keygate/api/factors/totp/enroll/begin", ""},
		{"add key", http.MethodPost, "/.keygate/api/factors/webauthn/enroll/begin", `{"kind":"security_key"}`},
		{"add passkey", http.MethodPost, "/.keygate/api/factors/webauthn/enroll/begin", `{"kind":"platform"}`},
		{"finish app", http.MethodPost, "/.keygate/api/factors/totp/enroll/finish", `{"id":"x","code":"123456"}`},
		{"new recovery codes", http.MethodPost, "/.keygate/api/factors/recovery/generate", ""},
		{"remove app", http.MethodDelete, "/.keygate/api/factors/" + app.ID, ""},
		{"rename app", http.MethodPatch, "/.keygate/api/factors/" + app.ID, `{"name":"Attacker's"}`},
	}
	for _, tr := range tries {
		if slices.Contains(skip, tr.name) {
			continue
		}
		resp, raw := h.do(c, tr.method, "http://app.example.com"+tr.path, tr.body,
			setHeader("Content-Type", "application/json"), setHeader("Accept", "application/json"))
		var out struct {
			Error   string   `json:"error"`
			Message string   `json:"message"`
			Need    []string `json:"need"`
		}
		_ = json.Unmarshal([]byte(raw), &out)
		if resp.StatusCode != http.StatusForbidden || out.Error != "stronger_proof_required" || !slices.Equal(out.Need, need) ||
			!strings.Contains(out.Message, "administrator for an enrolment link") {
			h.t.Errorf("%s: %d %.160s, want 403 stronger_proof_required need %v", tr.name, resp.StatusCode, raw, need)
		}
	}
	// The HTML forms say the same, in the person's language.
	resp, body := h.do(c, http.MethodPost, "http://app.example.com/.keygate/settings/totp", "", formHeader)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Confirm it&#39;s you with") {
		h.t.Errorf("settings form: %d", resp.StatusCode)
	}
	resp, body = h.do(c, http.MethodPost, "http://app.example.com/.keygate/settings/factors/"+app.ID+"/remove", "", formHeader,
		setHeader("Accept-Language", "ru"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "попросите администратора выдать ссылку") {
		h.t.Errorf("ru remove form: %d", resp.StatusCode)
	}
	// The security page offers none of these changes, and says why.
	_, body = h.do(c, http.MethodGet, "http://app.example.com/.keygate/settings", "")
	if strings.Contains(body, "/factors/"+app.ID+"/remove") || strings.Contains(body, `data-kind="security_key"`) || !strings.Contains(body, `id="stronger-proof"`) ||
		!strings.Contains(body, "need=totp") {
		h.t.Errorf("the security page offers changes it would refuse")
	}
	if after := h.snapshot(user); after != before {
		h.t.Errorf("factors changed by refused attempts:\n%s\n%s", before, after)
	}
}

// (1) A rule that accepts only the app: the attacker with the password and
// the mailbox cannot add an app where one exists, and where the account
// has nothing stronger than codes, the app they add does not count as a
// sign-in with it.
func TestDowngradeAppOnlyRule(t *testing.T) {
	t.Run("account with an app", func(t *testing.T) {
		h := newHarness(t, harnessOptions{policyYAML: appOnlyPolicy})
		owner := h.client()
		h.login(owner, testUser, testPassword, "")
		h.redeemLink(owner, testUser)
		h.addTOTP(owner, "Phone")

		attacker := h.client()
		h.emailProof(attacker, testUser, testPassword)
		h.refusedChanges(attacker, testUser, []string{"totp"})
		if r, _ := h.do(attacker, http.MethodGet, "http://app.example.com/app-only/x", ""); r.StatusCode != http.StatusFound {
			t.Fatalf("app-only rule with an email code: %d", r.StatusCode)
		}
		events, _ := h.mfa.Activity(context.Background(), testUser, 100)
		if !slices.ContainsFunc(events, func(e activity.Event) bool { return e.Kind == activity.EventChangeRefused }) {
			t.Error("refused changes are not in the activity log")
		}
		if _, body := h.do(owner, http.MethodGet, "http://app.example.com/.keygate/activity", ""); !strings.Contains(body, "Change of second factors refused") {
			t.Error("the activity page does not show the refused changes")
		}
	})
	t.Run("confirming a new app is no sign-in with it", func(t *testing.T) {
		h := newHarness(t, harnessOptions{policyYAML: appOnlyPolicy})
		// Only recovery codes: as weak as the mailbox, so an app may be
		// added with a code by email.
		owner := h.client()
		h.login(owner, testUser, testPassword, "")
		h.redeemLink(owner, testUser)
		if resp, _ := h.postJSON(owner, "/.keygate/api/factors/recovery/generate", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("recovery codes: %d", resp.StatusCode)
		}
		attacker := h.client()
		h.emailProof(attacker, testUser, testPassword)
		before := h.noticeMails("alice@example.com")
		h.addTOTP(attacker, "Attacker's phone")
		if got := h.noticeMails("alice@example.com"); got != before+1 {
			t.Errorf("notices after adding an app: %d, want %d", got, before+1)
		}
		if r, _ := h.do(attacker, http.MethodGet, "http://app.example.com/app-only/x", ""); r.StatusCode != http.StatusFound {
			t.Fatalf("the code confirming an enrolment satisfied an app-only rule: %d", r.StatusCode)
		}
		_, raw := h.do(attacker, http.MethodGet, "http://app.example.com/.keygate/api/session", "")
		if strings.Contains(raw, `"kind":"totp"`) {
			t.Fatalf("the session counts the enrolment as a TOTP proof: %s", raw)
		}
	})
}

// (3) A lasting takeover: with the password and the mailbox, or with a
// recovery code, nothing about the app can change, no recovery codes can be
// made, and the email enrolment code is neither sent nor accepted. An
// admin's enrolment link is the way back; the owner with a fresh proof of
// the app changes what they like, and hears of each change.
func TestDowngradeLastingTakeover(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n"})
	ctx := context.Background()
	const addr = "alice@example.com"
	owner := h.client()
	h.login(owner, testUser, testPassword, "")
	h.redeemLink(owner, testUser)
	secret := h.enrolTOTP(owner) // owner now has a fresh app proof
	resp, out := h.postJSON(owner, "/.keygate/api/factors/recovery/generate", nil)
	codes, _ := out["codes"].([]any)
	if resp.StatusCode != http.StatusOK || len(codes) == 0 {
		t.Fatalf("owner's recovery codes: %d %v", resp.StatusCode, out)
	}

	// Password + mailbox.
	mailbox := h.client()
	h.emailProof(mailbox, testUser, testPassword)
	h.refusedChanges(mailbox, testUser, []string{"totp"})
	ids, mails := h.credIDs(testUser), len(must(h.outbox.List()))
	resp, _ = h.postForm(mailbox, "/.keygate/settings/enroll-code/send")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "done=code_sent_enroll") {
		t.Fatalf("enrolment code request: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if n := len(must(h.outbox.List())); n != mails {
		t.Fatalf("an enrolment code was mailed to an account that has a factor (%d mails, was %d)", n, mails)
	}
	resp, body := h.postForm(mailbox, "/.keygate/settings/enroll-code/verify", "code", "123456")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "can no longer add one") {
		t.Fatalf("enrolment code verify: %d", resp.StatusCode)
	}
	_, body = h.do(mailbox, http.MethodGet, "http://app.example.com/.keygate/settings", "")
	if strings.Contains(body, "enroll-code/send") {
		t.Error("the security page offers an enrolment code to an account with a factor")
	}

	// Password + a recovery code: also too weak for the app.
	sheet := h.client()
	h.login(sheet, testUser, testPassword, "")
	if resp, out := h.postJSON(sheet, "/.keygate/api/factors/recovery/verify", map[string]any{"code": codes[0]}); resp.StatusCode != http.StatusOK {
		t.Fatalf("recovery code: %d %v", resp.StatusCode, out)
	}
	h.refusedChanges(sheet, testUser, []string{"totp"})
	if got := h.credIDs(testUser); !slices.Equal(got, ids) {
		t.Fatalf("credentials after the attacks: %v, before %v", got, ids)
	}

	// The owner lost the phone: an admin's link lets them add a new app,
	// but removing the old one still needs a proof of an app.
	lost := h.client()
	h.login(lost, testUser, testPassword, "")
	h.redeemLink(lost, testUser)
	notices := h.noticeMails(addr)
	h.clock.Add(30 * time.Second)
	newSecret := h.addTOTP(lost, "New phone")
	if h.noticeMails(addr) != notices+1 {
		t.Error("no notice for the app added with a link")
	}
	old := h.credNamed(testUser, "Phone")
	resp, raw := h.do(lost, http.MethodDelete, "http://app.example.com/.keygate/api/factors/"+old.ID, "", setHeader("Accept", "application/json"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(raw, "stronger_proof_required") {
		t.Fatalf("an enrolment link removed a factor: %d %s", resp.StatusCode, raw)
	}
	// A sign-in with the new app (its next code) is the proof that may.
	h.clock.Add(30 * time.Second)
	if resp, out := h.postJSON(lost, "/.keygate/api/factors/totp/verify", map[string]any{"code": oathtool(t, newSecret, h.clock.Now())}); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign in with the new app: %d %v", resp.StatusCode, out)
	}
	resp, raw = h.do(lost, http.MethodDelete, "http://app.example.com/.keygate/api/factors/"+old.ID, "", setHeader("Accept", "application/json"))
	if resp.StatusCode != http.StatusOK || h.noticeMails(addr) != notices+2 {
		t.Fatalf("owner removing the lost app: %d %s, %d notices", resp.StatusCode, raw, h.noticeMails(addr)-notices)
	}
	creds, _ := h.mfa.Credentials(ctx, testUser)
	if slices.ContainsFunc(creds, func(c factors.Credential) bool { return c.ID == old.ID }) {
		t.Fatal("the lost app is still there")
	}
	_ = secret // the lost phone's

	// With the fresh app proof the owner renames and makes new codes;
	// each change is mailed with a "This wasn't me" link.
	cur := h.credOf(testUser, "totp")
	resp, raw = h.do(lost, http.MethodPatch, "http://app.example.com/.keygate/api/factors/"+cur.ID, `{"name":"Pixel"}`,
		setHeader("Content-Type", "application/json"), setHeader("Accept", "application/json"))
	if resp.StatusCode != http.StatusOK || h.noticeMails(addr) != notices+3 {
		t.Fatalf("rename: %d %s", resp.StatusCode, raw)
	}
	if resp, _ := h.postJSON(lost, "/.keygate/api/factors/recovery/generate", nil); resp.StatusCode != http.StatusOK || h.noticeMails(addr) != notices+4 {
		t.Fatalf("new recovery codes: %d", resp.StatusCode)
	}
	// Past the windows (the app's 5 minutes, the link's 15) the same
	// session is refused again.
	h.clock.Add(16 * time.Minute)
	if resp, _ := h.postJSON(lost, "/.keygate/api/factors/recovery/generate", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("stale proof made recovery codes: %d", resp.StatusCode)
	}
}

// A code sent while the account had no factor dies when one is added.
func TestEnrolmentCodeDiesWithTheFirstFactor(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n"})
	c := h.client()
	h.login(c, testUser, testPassword, "")
	resp, _ := h.postForm(c, "/.keygate/settings/enroll-code/send")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %d", resp.StatusCode)
	}
	code := h.latestCode("alice@example.com")
	other := h.client()
	h.login(other, testUser, testPassword, "")
	h.redeemLink(other, testUser)
	h.addTOTP(other, "Phone")
	before := h.snapshot(testUser)
	resp, body := h.postForm(c, "/.keygate/settings/enroll-code/verify", "code", code)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "can no longer add one") {
		t.Fatalf("old enrolment code: %d", resp.StatusCode)
	}
	if r, _ := h.postForm(c, "/.keygate/settings/totp"); r.StatusCode != http.StatusForbidden || h.snapshot(testUser) != before {
		t.Fatalf("enrolment after a dead code: %d", r.StatusCode)
	}
}

func (h *harness) credIDs(user string) []string {
	h.t.Helper()
	creds, _ := h.mfa.Credentials(context.Background(), user)
	var ids []string
	for _, c := range creds {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	return ids
}

func (h *harness) credNamed(user, name string) factors.Credential {
	h.t.Helper()
	creds, _ := h.mfa.Credentials(context.Background(), user)
	i := slices.IndexFunc(creds, func(c factors.Credential) bool { return c.Name == name })
	if i < 0 {
		h.t.Fatalf("%s has no credential named %q: %v", user, name, creds)
	}
	return creds[i]
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
