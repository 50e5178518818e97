package web

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	delivery "github.com/keygate/keygate/authn/mail"
)

// Account recovery after losing every factor, through the real server
// (pages, JSON API, admin API) on Badger with the outbox: each bad input
// gets a clear answer and changes nothing (the account's factors, its
// password, the pending request and its clock all stay as they were).

const (
	recUser     = "carol"
	recAddr     = "carol@example.com"
	recPassword = "amber-quarry-lantern-42"
)

// recoverySnapshot is what a refused step must leave as it was.
type recoverySnapshot struct {
	factors []string // kind:name of every credential
	hash    string
	pending string // "" or the request's times and approver
}

func (h *harness) recoverySnap() recoverySnapshot {
	h.t.Helper()
	ctx := context.Background()
	creds, err := h.mfa.Credentials(ctx, recUser)
	if err != nil {
		h.t.Fatal(err)
	}
	var s recoverySnapshot
	for _, c := range creds {
		s.factors = append(s.factors, c.Kind+":"+c.Name)
	}
	slices.Sort(s.factors)
	s.hash = h.hashOf(recUser)
	list, err := h.mfa.PendingRecoveries(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, r := range list {
		if r.Username == recUser {
			s.pending = r.RequestedAt.String() + " " + r.ReadyAt.String() + " " + r.ApprovedBy
		}
	}
	return s
}

// same fails unless the account is as before.
func (h *harness) sameRecovery(what string, before recoverySnapshot) {
	h.t.Helper()
	after := h.recoverySnap()
	if !slices.Equal(after.factors, before.factors) || after.hash != before.hash || after.pending != before.pending {
		h.t.Fatalf("%s changed the account: %+v, was %+v", what, after, before)
	}
}

// findMail waits for a mail to addr in which find finds something, and
// returns it; the newest such mail wins.
func (h *harness) findMail(t *testing.T, addr string, find func(delivery.OutboxMail) string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mails, err := h.outbox.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mails {
			if m.To == addr {
				if s := find(m); s != "" {
					return s
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no such mail to %s", addr)
	return ""
}

// newestMail is the text of the newest mail to addr whose subject
// contains subject.
func (h *harness) newestMail(addr, subject string) string {
	h.t.Helper()
	return h.findMail(h.t, addr, func(m delivery.OutboxMail) string {
		if strings.Contains(m.Subject, subject) {
			return m.Text
		}
		return ""
	})
}

// mailCount counts the mails to addr whose subject contains subject.
func (h *harness) mailCount(addr, subject string) int {
	h.t.Helper()
	mails, err := h.outbox.List()
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, m := range mails {
		if m.To == addr && strings.Contains(m.Subject, subject) {
			n++
		}
	}
	return n
}

// askRecovery mails a recovery code to carol and proves it with c's
// session; it returns the API's answer.
func (h *harness) askRecovery(c *http.Client) (int, map[string]any) {
	h.t.Helper()
	if resp, out := h.postJSON(c, "/.keygate/api/recovery/send", nil); resp.StatusCode != http.StatusOK {
		h.t.Fatalf("send a recovery code: %d %v", resp.StatusCode, out)
	}
	code := codeRe.FindString(h.newestMail(recAddr, "code to recover your account"))
	resp, out := h.postJSON(c, "/.keygate/api/recovery/verify", map[string]any{"code": code})
	return resp.StatusCode, out
}

// cancelToken is the token of the newest request notice's cancel link.
func (h *harness) cancelToken() string {
	h.t.Helper()
	path := cancelLinkRe.FindString(h.newestMail(recAddr, "Account recovery requested"))
	if path == "" {
		h.t.Fatal("no cancel link in the request notice")
	}
	return path[strings.LastIndex(path, "/")+1:]
}

// passwordSession signs carol in with the password alone (the phone is
// lost).
func (h *harness) passwordSession() *http.Client {
	h.t.Helper()
	c := h.client()
	if resp, out := h.login(c, recUser, recPassword, ""); resp.StatusCode != http.StatusOK {
		h.t.Fatalf("sign-in: %d %v", resp.StatusCode, out)
	}
	return c
}

func TestRecoveryFlowOverHTTP(t *testing.T) {
	h, _ := newAdminHarness(t, "")
	ctx := context.Background()
	if _, err := h.users.Add(ctx, authn.NewUser{Username: recUser, Email: recAddr, Password: recPassword, EmailVerified: true}); err != nil {
		t.Fatal(err)
	}
	// Carol has an authenticator app.
	owner := h.passwordSession()
	h.redeemLink(owner, recUser)
	oldSecret := h.addTOTP(owner, "Phone")
	// Alice is an admin with an app of her own.
	admin := h.client()
	h.login(admin, testUser, testPassword, "")
	h.redeemLink(admin, testUser)
	adminSecret := h.enrolTOTP(admin)
	fresh := h.recoverySnap()
	if len(fresh.factors) != 1 || fresh.pending != "" {
		t.Fatalf("set-up: %+v", fresh)
	}

	// 1. The phone is lost: a wrong code starts nothing.
	lost := h.passwordSession()
	if resp, out := h.postJSON(lost, "/.keygate/api/recovery/send", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("send: %d %v", resp.StatusCode, out)
	}
	right := codeRe.FindString(h.newestMail(recAddr, "code to recover your account"))
	if resp, out := h.postJSON(lost, "/.keygate/api/recovery/verify", map[string]any{"code": wrongCode(right)}); resp.StatusCode < 400 || resp.StatusCode >= 500 || out["message"] == "" {
		t.Fatalf("wrong code: %d %v", resp.StatusCode, out)
	}
	h.sameRecovery("a wrong code", fresh)
	// The right one starts the clock.
	resp, out := h.postJSON(lost, "/.keygate/api/recovery/verify", map[string]any{"code": right})
	if resp.StatusCode != http.StatusOK || out["status"] != "waiting" {
		t.Fatalf("start: %d %v", resp.StatusCode, out)
	}
	waiting := h.recoverySnap()
	if waiting.pending == "" || !slices.Equal(waiting.factors, fresh.factors) {
		t.Fatalf("after the request: %+v", waiting)
	}
	token1 := h.cancelToken()

	// While it waits: no second request, no code, no enrolment, no
	// finishing; each refusal says so and the clock does not restart.
	h.clock.Add(2 * time.Minute)
	resp, out = h.postJSON(lost, "/.keygate/api/recovery/send", nil)
	if resp.StatusCode != http.StatusForbidden || out["error"] != "recovery_waiting" {
		t.Fatalf("code while waiting: %d %v", resp.StatusCode, out)
	}
	resp, out = h.postJSON(lost, "/.keygate/api/recovery/verify", map[string]any{"code": right})
	if resp.StatusCode != http.StatusForbidden || out["error"] != "recovery_waiting" {
		t.Fatalf("finish while waiting: %d %v", resp.StatusCode, out)
	}
	resp, body := h.postForm(lost, "/.keygate/settings/totp")
	if resp.StatusCode != http.StatusForbidden || strings.Contains(body, `id="totp-secret"`) {
		t.Fatalf("enrolment before the wait is over: %d", resp.StatusCode)
	}
	if resp, out := h.postJSON(lost, "/.keygate/api/factors/totp/enroll/begin", nil); resp.StatusCode != http.StatusForbidden || out["error"] != "stronger_proof_required" {
		t.Fatalf("API enrolment before the wait is over: %d %v", resp.StatusCode, out)
	}
	h.sameRecovery("steps before the wait is over", waiting)

	// Cross-site POSTs are refused before anything runs.
	for _, path := range []string{"/.keygate/recover/cancel", "/.keygate/recover/code", "/.keygate/api/recovery/cancel", "/.keygate/api/recovery/verify"} {
		resp, _ := h.do(lost, http.MethodPost, "http://app.example.com"+path, "token="+token1+"&code="+right,
			formHeader, setHeader("Sec-Fetch-Site", "cross-site"), setHeader("Origin", "https://evil.example"))
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-site %s: %d", path, resp.StatusCode)
		}
	}
	h.sameRecovery("cross-site posts", waiting)

	// 2. The cancel link: opening it changes nothing, the button cancels,
	// and the link is then used up (page and API, one answer).
	if resp, body := h.do(h.client(), http.MethodGet, "http://app.example.com/.keygate/recover/cancel/"+token1, ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, token1) {
		t.Fatalf("cancel page: %d", resp.StatusCode)
	}
	h.sameRecovery("opening the cancel link", waiting)
	cancelledMails := h.mailCount(recAddr, "Security change")
	if resp, body := h.postForm(h.client(), "/.keygate/recover/cancel", "token", token1); resp.StatusCode != http.StatusOK || !strings.Contains(body, "cancelled") {
		t.Fatalf("cancel: %d %s", resp.StatusCode, body)
	}
	cancelled := h.recoverySnap()
	if cancelled.pending != "" || !slices.Equal(cancelled.factors, fresh.factors) {
		t.Fatalf("after cancelling: %+v", cancelled)
	}
	if h.mailCount(recAddr, "Security change") != cancelledMails+1 {
		t.Fatal("no notice of the cancellation")
	}
	if resp, body := h.postForm(h.client(), "/.keygate/recover/cancel", "token", token1); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "cancel link is invalid") {
		t.Fatalf("reused link: %d", resp.StatusCode)
	}
	if resp, out := h.postJSON(h.client(), "/.keygate/api/recovery/cancel", map[string]any{"token": token1}); resp.StatusCode != http.StatusBadRequest || out["error"] != "recovery_link_invalid" {
		t.Fatalf("reused link (API): %d %v", resp.StatusCode, out)
	}
	if resp, _ := h.do(h.client(), http.MethodGet, "http://app.example.com/.keygate/recover/cancel/"+token1, ""); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("reused link's page: %d", resp.StatusCode)
	}
	h.sameRecovery("a reused cancel link", cancelled)

	// 3. Finishing after a cancel: the time the cancelled request named
	// passes, and nothing is ready; a code now only starts a new clock.
	h.clock.Add(73 * time.Hour)
	lost = h.passwordSession()
	if resp, out := h.postJSON(lost, "/.keygate/api/recovery/verify", map[string]any{"code": right}); resp.StatusCode < 400 {
		t.Fatalf("the old code after the cancel: %d %v", resp.StatusCode, out)
	}
	resp, body = h.postForm(lost, "/.keygate/settings/totp")
	if resp.StatusCode == http.StatusOK && strings.Contains(body, `id="totp-secret"`) {
		t.Fatal("enrolment after a cancelled recovery")
	}
	h.sameRecovery("finishing a cancelled recovery", cancelled)
	if status, out := h.askRecovery(lost); status != http.StatusOK || out["status"] != "waiting" {
		t.Fatalf("after a cancel, a code starts a new wait (never a completion): %d %v", status, out)
	}
	token2 := h.cancelToken()

	// 4. A sign-in with the old factor cancels it: the phone was found.
	owner = h.passwordSession()
	h.clock.Add(30 * time.Second)
	if resp, out := h.postJSON(owner, "/.keygate/api/factors/totp/verify", map[string]any{"code": oathtool(t, oldSecret, h.clock.Now())}); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in with the app: %d %v", resp.StatusCode, out)
	}
	if s := h.recoverySnap(); s.pending != "" {
		t.Fatalf("a sign-in with the old factor left the recovery pending: %+v", s)
	}
	if resp, out := h.postJSON(h.client(), "/.keygate/api/recovery/cancel", map[string]any{"token": token2}); resp.StatusCode != http.StatusBadRequest || out["error"] != "recovery_link_invalid" {
		t.Fatalf("the link of a request a sign-in cancelled: %d %v", resp.StatusCode, out)
	}
	h.clock.Add(73 * time.Hour)
	lost = h.passwordSession()
	if resp, out := h.postJSON(lost, "/.keygate/api/recovery/verify", map[string]any{"code": right}); resp.StatusCode < 400 {
		t.Fatalf("finishing what a sign-in cancelled: %d %v", resp.StatusCode, out)
	}
	h.sameRecovery("finishing a recovery a sign-in cancelled", cancelled)

	// 5. Approved by an admin: nothing to approve first (clear, nothing
	// changed); then a request, approved, completes at once.
	// (Days have passed: the admin signs in again, with her app.)
	admin = h.client()
	h.login(admin, testUser, testPassword, "")
	h.clock.Add(30 * time.Second)
	if resp, out := h.postJSON(admin, "/.keygate/api/factors/totp/verify", map[string]any{"code": oathtool(t, adminSecret, h.clock.Now())}); resp.StatusCode != http.StatusOK {
		t.Fatalf("admin's second factor: %d %v", resp.StatusCode, out)
	}
	if resp, out := h.api(admin, http.MethodPost, "users/"+recUser+"/recovery/approve", nil); resp.StatusCode != http.StatusNotFound || out["error"] != "no_recovery" {
		t.Fatalf("approve with none pending: %d %v", resp.StatusCode, out)
	}
	if resp, out := h.api(admin, http.MethodPost, "users/"+testUser+"/recovery/approve", nil); resp.StatusCode != http.StatusConflict || out["error"] != "not_on_yourself" {
		t.Fatalf("an admin approving their own: %d %v", resp.StatusCode, out)
	}
	h.sameRecovery("approving nothing", cancelled)
	h.clock.Add(time.Minute)
	if status, out := h.askRecovery(lost); status != http.StatusOK || out["status"] != "waiting" {
		t.Fatalf("third request: %d %v", status, out)
	}
	resp, out = h.api(admin, http.MethodGet, "recoveries", nil)
	if list, _ := out["recoveries"].([]any); resp.StatusCode != http.StatusOK || len(list) != 1 {
		t.Fatalf("admin list: %d %v", resp.StatusCode, out)
	}
	// Without a fresh admin session, or cross-site: refused.
	if resp, _ := h.api(lost, http.MethodPost, "users/"+recUser+"/recovery/approve", nil); resp.StatusCode < 400 {
		t.Fatalf("the person approving: %d", resp.StatusCode)
	}
	if resp, _ := h.api(admin, http.MethodPost, "users/"+recUser+"/recovery/approve", nil, setHeader("Sec-Fetch-Site", "cross-site"), setHeader("Origin", "https://evil.example")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site approval: %d", resp.StatusCode)
	}
	pendingBefore := h.recoverySnap()
	if strings.HasSuffix(pendingBefore.pending, testUser) {
		t.Fatal("approved by a refused request")
	}
	resp, out = h.api(admin, http.MethodPost, "users/"+recUser+"/recovery/approve", nil)
	if resp.StatusCode != http.StatusOK || out["approved"] != true {
		t.Fatalf("approve: %d %v", resp.StatusCode, out)
	}
	if s := h.recoverySnap(); !strings.HasSuffix(s.pending, " "+testUser) {
		t.Fatalf("after approval: %+v", s)
	}
	h.clock.Add(time.Minute)
	status, out := h.askRecovery(lost)
	if status != http.StatusOK || out["status"] != "granted" {
		t.Fatalf("finish after approval: %d %v", status, out)
	}
	h.addTOTP(lost, "New phone")
	done := h.recoverySnap()
	if !slices.Equal(done.factors, []string{"totp:New phone"}) || done.pending != "" {
		t.Fatalf("after completing: %+v", done)
	}
	// The old app signs in no more; the other sessions ended.
	if h.signedIn(owner) {
		t.Fatal("the other session survived the recovery")
	}
	c := h.passwordSession()
	h.clock.Add(30 * time.Second)
	if resp, out := h.postJSON(c, "/.keygate/api/factors/totp/verify", map[string]any{"code": oathtool(t, oldSecret, h.clock.Now())}); resp.StatusCode == http.StatusOK {
		t.Fatalf("the old app still signs in: %v", out)
	}

	// 6. An expired link: a request left alone lapses with its link.
	h.clock.Add(time.Minute)
	lost = h.passwordSession()
	if status, out := h.askRecovery(lost); status != http.StatusOK || out["status"] != "waiting" {
		t.Fatalf("fourth request: %d %v", status, out)
	}
	token4 := h.cancelToken()
	h.clock.Add(authn.DefaultRecoveryWait + authn.DefaultRecoveryWindow + time.Minute)
	lapsed := h.recoverySnap()
	if lapsed.pending != "" {
		t.Fatalf("a lapsed request is still pending: %+v", lapsed)
	}
	if resp, out := h.postJSON(h.client(), "/.keygate/api/recovery/cancel", map[string]any{"token": token4}); resp.StatusCode != http.StatusBadRequest || out["error"] != "recovery_link_invalid" {
		t.Fatalf("expired link: %d %v", resp.StatusCode, out)
	}
	if _, err := h.mfa.CheckRecoveryLink(ctx, token4); !errors.Is(err, authn.ErrRecoveryLinkInvalid) {
		t.Fatalf("expired link: %v", err)
	}
	h.sameRecovery("an expired link", lapsed)
}
