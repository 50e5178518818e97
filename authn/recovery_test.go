package authn

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/recovery"
	"github.com/keygate/keygate/factors/totp"
	"github.com/pquerna/otp"
	otptotp "github.com/pquerna/otp/totp"
)

// The recovery tests run on the account flows' real parts (flowRig); one
// injected clock moves through the waiting period.

type recEnv struct{ *flowRig }

const recUser, recPassword = flowUser, flowPassword

func newRecEnv(t *testing.T) *recEnv {
	t.Helper()
	return &recEnv{newFlowRig(t, SessionOptions{IdleTimeout: 30 * time.Minute, Lifetime: 12 * time.Hour})}
}

// signIn starts a password session for user.
func (e *recEnv) signIn(user string) *Session { return e.session(user) }

var recCodeRe = regexp.MustCompile(`\b\d{6}\b`)

// mailTo is the newest mail to addr whose subject contains subject.
func (e *recEnv) mailTo(addr, subject string) mail.OutboxMail {
	e.t.Helper()
	ms, err := e.outbox.List()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range ms {
		if m.To == addr && strings.Contains(m.Subject, subject) {
			return m
		}
	}
	e.t.Fatalf("no mail to %s about %q", addr, subject)
	return mail.OutboxMail{}
}

func (e *recEnv) countMail(subject string) int {
	ms, err := e.outbox.List()
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, m := range ms {
		if strings.Contains(m.Subject, subject) {
			n++
		}
	}
	return n
}

// recoveryCode sends a recovery code to the session's user and reads it.
func (e *recEnv) recoveryCode(s *Session) string {
	e.t.Helper()
	e.clock.Advance(time.Minute) // the resend cooldown of the code before
	if _, err := e.mfa.SendRecoveryCode(context.Background(), s.ID, "en"); err != nil {
		e.t.Fatalf("send recovery code: %v", err)
	}
	return recCodeRe.FindString(e.mailTo("alice@example.com", "recover your account").Text)
}

// addTOTP enrols an authenticator app for alice through the real flow
// (an email enrolment grant while she has no factor, or fresh proof).
func (e *recEnv) addTOTP(s *Session, name string) (factors.Credential, string, *Session) {
	e.t.Helper()
	ctx := context.Background()
	en, _, err := e.mfa.Enroll(ctx, s.ID, totp.Kind, "en", factors.EnrollRequest{})
	if err != nil {
		e.t.Fatalf("enrol app: %v", err)
	}
	cred, next, err := e.mfa.ConfirmEnroll(ctx, s.ID, totp.Kind, en.ID, "en", factors.Response{Code: e.totpCode(en.Secret)}, name)
	if err != nil {
		e.t.Fatalf("confirm app: %v", err)
	}
	return cred, en.Secret, next
}

func (e *recEnv) totpCode(secret string) string {
	e.t.Helper()
	c, err := otptotp.GenerateCodeCustom(secret, e.clock.Now(), otptotp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// withFactors gives alice an app and recovery codes, as someone who then
// loses both would have; it returns the app's secret.
func (e *recEnv) withFactors() string {
	e.t.Helper()
	ctx := context.Background()
	s := e.signIn(recUser)
	if _, err := e.mfa.SendAddressCode(ctx, s.ID, "en", factors.PurposeEnroll); err != nil {
		e.t.Fatal(err)
	}
	code := recCodeRe.FindString(e.mailTo("alice@example.com", "add a sign-in method").Text)
	s, err := e.mfa.ProveAddressCode(ctx, s.ID, factors.PurposeEnroll, code)
	if err != nil {
		e.t.Fatal(err)
	}
	_, secret, s := e.addTOTP(s, "old phone")
	// Fresh proof of the app, then a recovery sheet.
	e.clock.Advance(31 * time.Second)
	s, _, err = e.mfa.Prove(ctx, s.ID, totp.Kind, "en", factors.Response{Code: e.totpCode(secret)})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, _, err := e.mfa.Enroll(ctx, s.ID, recovery.Kind, "en", factors.EnrollRequest{}); err != nil {
		e.t.Fatal(err)
	}
	return secret
}

func (e *recEnv) credKinds() []string {
	e.t.Helper()
	cs, err := e.mfa.Credentials(context.Background(), recUser)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, c := range cs {
		out = append(out, c.Kind+":"+c.Name)
	}
	return out
}

func (e *recEnv) events(kind string) []activity.Event {
	evs, err := e.log.List(context.Background(), recUser, 200)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []activity.Event
	for _, ev := range evs {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

func TestRecoveryWaitsThenEnrolsAndRemovesOldFactors(t *testing.T) {
	e := newRecEnv(t)
	ctx := context.Background()
	e.withFactors()
	before := e.credKinds()
	if len(before) != 2 {
		t.Fatalf("set-up: %v", before)
	}
	first := e.signIn(recUser)

	// A wrong code starts nothing.
	if _, err := e.mfa.SendRecoveryCode(ctx, first.ID, "en"); err != nil {
		t.Fatal(err)
	}
	code := recCodeRe.FindString(e.mailTo("alice@example.com", "recover your account").Text)
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	if _, err := e.mfa.ProveRecovery(ctx, first.ID, wrong, Client{}); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("wrong code: %v", err)
	}
	if _, err := e.rs.Get(ctx, recUser); !errors.Is(err, ErrNoRecovery) {
		t.Fatalf("a wrong code started a recovery: %v", err)
	}
	step, err := e.mfa.ProveRecovery(ctx, first.ID, code, Client{IP: "198.51.100.7", Lang: "en"})
	if err != nil || !step.Started || step.Granted {
		t.Fatalf("start: %+v %v", step, err)
	}
	if want := e.clock.Now().Add(DefaultRecoveryWait); !step.Recovery.ReadyAt.Equal(want) {
		t.Fatalf("ready at %s, want %s", step.Recovery.ReadyAt, want)
	}
	notice := e.mailTo("alice@example.com", "Account recovery requested")
	if !strings.Contains(notice.Text, "https://login.example.com/.keygate/recover/cancel/") || !strings.Contains(notice.Text, "198.51.100.7") {
		t.Fatalf("notice lacks the cancel link or the address:\n%s", notice.Text)
	}
	if len(e.events(activity.EventRecoveryRequested)) != 1 {
		t.Fatal("the request is not in the activity log")
	}

	// A second request while pending: refused, the clock does not restart,
	// no code is sent.
	mails := e.countMail("recover your account")
	e.clock.Advance(time.Hour)
	again := e.signIn(recUser)
	if _, err := e.mfa.SendRecoveryCode(ctx, again.ID, "en"); !errors.Is(err, ErrRecoveryWaiting) {
		t.Fatalf("code while waiting: %v", err)
	}
	if _, err := e.mfa.ProveRecovery(ctx, again.ID, code, Client{}); !errors.Is(err, ErrRecoveryWaiting) {
		t.Fatalf("second request: %v", err)
	}
	if got := e.countMail("recover your account"); got != mails {
		t.Fatalf("a code was sent while waiting (%d mails, had %d)", got, mails)
	}
	rec, err := e.rs.Get(ctx, recUser)
	if err != nil || !rec.ReadyAt.Equal(step.Recovery.ReadyAt) {
		t.Fatalf("the clock moved: %+v %v", rec, err)
	}

	// Before the wait is over: no enrolment.
	e.clock.Advance(DefaultRecoveryWait - 2*time.Hour)
	early := e.signIn(recUser)
	if _, err := e.mfa.ProveRecovery(ctx, early.ID, "123456", Client{}); !errors.As(err, new(*RecoveryWaitError)) {
		t.Fatalf("before the wait is over: %v", err)
	}
	if _, _, err := e.mfa.Enroll(ctx, early.ID, totp.Kind, "en", factors.EnrollRequest{}); !errors.Is(err, ErrElevationRequired) {
		t.Fatalf("enrolment before the wait: %v", err)
	}

	// The wait is over: password session, the mailbox again, one factor.
	e.clock.Advance(2 * time.Hour)
	other := e.signIn(recUser) // a session that must end with the recovery
	s := e.signIn(recUser)
	step, err = e.mfa.ProveRecovery(ctx, s.ID, e.recoveryCode(s), Client{})
	if err != nil || !step.Granted || step.Session == nil || step.Session.ID == s.ID {
		t.Fatalf("resume: %+v %v", step, err)
	}
	s = step.Session
	// The grant adds a real factor, never a backup sheet, and removes nothing.
	if _, _, err := e.mfa.Enroll(ctx, s.ID, recovery.Kind, "en", factors.EnrollRequest{}); !errors.Is(err, ErrElevationRequired) {
		t.Fatalf("recovery sheet under a recovery grant: %v", err)
	}
	cs, _ := e.mfa.Credentials(ctx, recUser)
	if _, err := e.mfa.RemoveCredential(ctx, s.ID, cs[0].ID); !errors.Is(err, ErrElevationRequired) && !errors.Is(err, ErrLastFactor) {
		t.Fatalf("removal under a recovery grant: %v", err)
	}
	if len(e.credKinds()) != 2 {
		t.Fatal("something changed before the new factor was added")
	}
	_, secret, s := e.addTOTP(s, "new phone")
	if got := e.credKinds(); len(got) != 1 || got[0] != "totp:new phone" {
		t.Fatalf("after recovery the account holds %v, want only the new app", got)
	}
	if _, err := e.rs.Get(ctx, recUser); !errors.Is(err, ErrNoRecovery) {
		t.Fatalf("the request outlived its completion: %v", err)
	}
	if _, ok := e.sessions.Lookup(other.ID); ok {
		t.Fatal("another session survived the recovery")
	}
	if _, ok := e.sessions.Lookup(s.ID); !ok {
		t.Fatal("the recovering session ended")
	}
	if len(e.events(activity.EventRecoveryCompleted)) != 1 {
		t.Fatal("the completion is not logged")
	}
	e.mailTo("alice@example.com", "the account was recovered")
	// The grant is spent: no second factor on the same grant.
	if _, _, err := e.mfa.Enroll(ctx, s.ID, totp.Kind, "en", factors.EnrollRequest{}); !errors.Is(err, ErrElevationRequired) {
		t.Fatalf("a second factor on a spent grant: %v", err)
	}
	// The new app signs in.
	e.clock.Advance(31 * time.Second)
	if _, _, err := e.mfa.Prove(ctx, s.ID, totp.Kind, "en", factors.Response{Code: e.totpCode(secret)}); err != nil {
		t.Fatalf("the new app: %v", err)
	}
}

// startRecovery asks for a recovery as alice and returns the cancel token
// from the notice.
func (e *recEnv) startRecovery() string {
	e.t.Helper()
	s := e.signIn(recUser)
	step, err := e.mfa.ProveRecovery(context.Background(), s.ID, e.recoveryCode(s), Client{Lang: "en"})
	if err != nil || !step.Started {
		e.t.Fatalf("start: %+v %v", step, err)
	}
	m := e.mailTo("alice@example.com", "Account recovery requested")
	i := strings.Index(m.Text, "/recover/cancel/")
	if i < 0 {
		e.t.Fatalf("no cancel link:\n%s", m.Text)
	}
	return m.Text[i+len("/recover/cancel/"):][:43]
}

func TestRecoveryCancelledByLink(t *testing.T) {
	e := newRecEnv(t)
	ctx := context.Background()
	e.withFactors()
	token := e.startRecovery()
	if rec, err := e.mfa.CheckRecoveryLink(ctx, token); err != nil || rec.Username != recUser {
		t.Fatalf("check: %+v %v", rec, err)
	}
	// Bad links: one answer, nothing changed.
	for _, bad := range []string{"", "short", strings.Repeat("A", 43), token[:42] + "x", token + "x"} {
		if _, err := e.mfa.CancelRecoveryLink(ctx, bad, Client{}); !errors.Is(err, ErrRecoveryLinkInvalid) {
			t.Fatalf("cancel with %q: %v", bad, err)
		}
	}
	if _, err := e.rs.Get(ctx, recUser); err != nil {
		t.Fatalf("a bad link touched the request: %v", err)
	}
	if name, err := e.mfa.CancelRecoveryLink(ctx, token, Client{IP: "203.0.113.9"}); err != nil || name != recUser {
		t.Fatalf("cancel: %q %v", name, err)
	}
	if _, err := e.rs.Get(ctx, recUser); !errors.Is(err, ErrNoRecovery) {
		t.Fatalf("still pending: %v", err)
	}
	// Reused: the same answer as an unknown link.
	if _, err := e.mfa.CancelRecoveryLink(ctx, token, Client{}); !errors.Is(err, ErrRecoveryLinkInvalid) {
		t.Fatalf("reused link: %v", err)
	}
	if _, err := e.mfa.CheckRecoveryLink(ctx, token); !errors.Is(err, ErrRecoveryLinkInvalid) {
		t.Fatalf("reused link checked: %v", err)
	}
	if len(e.events(activity.EventRecoveryCancelled)) != 1 {
		t.Fatal("the cancel is not logged")
	}
	e.mailTo("alice@example.com", "recovery was cancelled")
	// After the cancel the wait gives nothing: a code starts a new clock.
	e.clock.Advance(DefaultRecoveryWait + time.Hour)
	s := e.signIn(recUser)
	step, err := e.mfa.ProveRecovery(ctx, s.ID, e.recoveryCode(s), Client{})
	if err != nil || step.Granted || !step.Started {
		t.Fatalf("after a cancel: %+v %v", step, err)
	}
	if _, _, err := e.mfa.Enroll(ctx, s.ID, totp.Kind, "en", factors.EnrollRequest{}); !errors.Is(err, ErrElevationRequired) {
		t.Fatalf("enrolment after a cancelled recovery: %v", err)
	}
	if len(e.credKinds()) != 2 {
		t.Fatal("factors changed")
	}
}

func TestRecoveryLinkExpiresWithItsRequest(t *testing.T) {
	e := newRecEnv(t)
	e.withFactors()
	token := e.startRecovery()
	e.clock.Advance(DefaultRecoveryWait + DefaultRecoveryWindow)
	if _, err := e.mfa.CancelRecoveryLink(context.Background(), token, Client{}); !errors.Is(err, ErrRecoveryLinkInvalid) {
		t.Fatalf("expired link: %v", err)
	}
	if list, err := e.mfa.PendingRecoveries(context.Background()); err != nil || len(list) != 0 {
		t.Fatalf("a lapsed request is listed: %v %v", list, err)
	}
}

func TestRecoveryCancelledBySignInWithAFactor(t *testing.T) {
	e := newRecEnv(t)
	ctx := context.Background()
	secret := e.withFactors()
	e.startRecovery()

	// A code to the mailbox proves what the recovery proved: no cancel.
	s := e.signIn(recUser)
	if _, err := e.mfa.Begin(ctx, s.ID, factors.KindEmail, "en"); err != nil {
		t.Fatal(err)
	}
	code := recCodeRe.FindString(e.mailTo("alice@example.com", "to sign in").Text)
	if _, _, err := e.mfa.Prove(ctx, s.ID, factors.KindEmail, "en", factors.Response{Code: code}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rs.Get(ctx, recUser); err != nil {
		t.Fatalf("an email code cancelled the recovery: %v", err)
	}
	// The app the account still holds: cancelled, logged, told.
	e.clock.Advance(31 * time.Second)
	s = e.signIn(recUser)
	if _, _, err := e.mfa.Prove(ctx, s.ID, totp.Kind, "en", factors.Response{Code: e.totpCode(secret)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rs.Get(ctx, recUser); !errors.Is(err, ErrNoRecovery) {
		t.Fatalf("a sign-in with the app left the recovery pending: %v", err)
	}
	evs := e.events(activity.EventRecoveryCancelled)
	if len(evs) != 1 || evs[0].Detail != "sign_in:totp" {
		t.Fatalf("cancel events: %+v", evs)
	}
	e.clock.Advance(DefaultRecoveryWait)
	s = e.signIn(recUser)
	if _, _, err := e.mfa.Enroll(ctx, s.ID, totp.Kind, "en", factors.EnrollRequest{}); !errors.Is(err, ErrElevationRequired) {
		t.Fatalf("enrolment after the cancel: %v", err)
	}
}

func TestRecoveryApprovedByAdminAndCancelledAfterGrant(t *testing.T) {
	e := newRecEnv(t)
	ctx := context.Background()
	e.withFactors()
	if _, err := e.mfa.ApproveRecovery(ctx, recUser, "root"); !errors.Is(err, ErrNoRecovery) {
		t.Fatalf("approve with none pending: %v", err)
	}
	if _, err := e.mfa.ApproveRecovery(ctx, "nobody", "root"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("approve for an unknown user: %v", err)
	}
	e.startRecovery()
	list, err := e.mfa.PendingRecoveries(ctx)
	if err != nil || len(list) != 1 || list[0].Username != recUser || list[0].Ready(e.clock.Now()) {
		t.Fatalf("pending list: %+v %v", list, err)
	}
	rec, err := e.mfa.ApproveRecovery(ctx, recUser, "root")
	if err != nil || !rec.Ready(e.clock.Now()) || rec.ApprovedBy != "root" {
		t.Fatalf("approve: %+v %v", rec, err)
	}
	e.mailTo("alice@example.com", "approved the account recovery")
	s := e.signIn(recUser)
	step, err := e.mfa.ProveRecovery(ctx, s.ID, e.recoveryCode(s), Client{})
	if err != nil || !step.Granted {
		t.Fatalf("resume after approval: %+v %v", step, err)
	}
	// An admin cancels after the grant: the grant dies with the request.
	if _, err := e.mfa.CancelRecoveryByAdmin(ctx, recUser, "root"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.mfa.Enroll(ctx, step.Session.ID, totp.Kind, "en", factors.EnrollRequest{}); !errors.Is(err, ErrElevationRequired) {
		t.Fatalf("enrolment on a cancelled grant: %v", err)
	}
	if _, err := e.mfa.CancelRecoveryByAdmin(ctx, recUser, "root"); !errors.Is(err, ErrNoRecovery) {
		t.Fatalf("second cancel: %v", err)
	}
	if len(e.credKinds()) != 2 {
		t.Fatal("factors changed")
	}
}

func TestRecoveryRefusals(t *testing.T) {
	e := newRecEnv(t)
	ctx := context.Background()
	// No factor: nothing to recover (a first factor is enrolled instead).
	s := e.signIn(recUser)
	if _, err := e.mfa.SendRecoveryCode(ctx, s.ID, "en"); !errors.Is(err, ErrRecoveryNotNeeded) {
		t.Fatalf("no factor: %v", err)
	}
	// An unconfirmed address gets no code.
	b := e.signIn("bob")
	if _, err := e.mfa.SendRecoveryCode(ctx, b.ID, "en"); !errors.Is(err, ErrEmailNotVerified) {
		t.Fatalf("unconfirmed address: %v", err)
	}
	// A session that is gone, or of a deleted user: the same answer.
	if _, err := e.mfa.SendRecoveryCode(ctx, "no-such-session", "en"); !errors.Is(err, ErrSessionUnavailable) {
		t.Fatalf("unknown session: %v", err)
	}
	if err := e.users.Delete(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mfa.ProveRecovery(ctx, b.ID, "123456", Client{}); !errors.Is(err, ErrSessionUnavailable) {
		t.Fatalf("deleted user: %v", err)
	}
	if e.countMail("Account recovery requested") != 0 {
		t.Fatal("a refused request sent a notice")
	}
	// Without the store, recovery is not offered.
	plain := NewMFA(e.users, e.sessions, MFAOptions{Now: e.clock.Now})
	if plain.RecoveryEnabled() {
		t.Fatal("recovery offered without its store")
	}
	if _, err := plain.SendRecoveryCode(ctx, s.ID, "en"); !errors.Is(err, ErrFactorUnavailable) {
		t.Fatalf("without the store: %v", err)
	}
}

func TestRecoveryCancelledByNotMeReport(t *testing.T) {
	e := newRecEnv(t)
	ctx := context.Background()
	e.withFactors()
	e.startRecovery()
	// The security-change mails carry a "This wasn't me" link; the newest
	// one is the request's own activity, any will do.
	m := e.mailTo("alice@example.com", "Security change")
	i := strings.Index(m.Text, "/.keygate/not-me/")
	if i < 0 {
		t.Fatalf("no not-me link:\n%s", m.Text)
	}
	token := strings.Fields(m.Text[i+len("/.keygate/not-me/"):])[0]
	if _, err := e.mfa.ReportNotMe(ctx, token, Client{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rs.Get(ctx, recUser); !errors.Is(err, ErrNoRecovery) {
		t.Fatalf("a reported account kept its recovery: %v", err)
	}
}
