package authn

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/totp"
)

// The address change on the real parts of the password flows' rig
// (Badger on disk, the factors, the activity log, an outbox; one clock).

const newAddr = "alice.new@example.org"

func (e *pwEnv) emailChanges() *EmailChanges {
	return NewEmailChanges(e.mfa, EmailChangeOptions{Logger: quietLogger()})
}

// user reads a user back (what the store holds now).
func (e *pwEnv) user(name string) User {
	e.t.Helper()
	u, err := e.users.Get(e.ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// changeCode waits for the codes in flight and reads the newest code sent
// to addr to move the address there.
func (e *pwEnv) changeCode(ec *EmailChanges, addr string) string {
	e.t.Helper()
	ec.Wait()
	ms := e.mails(addr, "new email address")
	if len(ms) == 0 {
		e.t.Fatalf("no code was mailed to %s", addr)
	}
	return pwCodeRe.FindString(ms[0].Text)
}

// freshApp proves the app on s and returns the rotated session.
func (e *pwEnv) freshApp(s *Session, secret string) *Session {
	e.t.Helper()
	e.clock.Advance(31 * time.Second)
	ns, _, err := e.mfa.Prove(e.ctx, s.ID, totp.Kind, "en", factors.Response{Code: e.totpCode(secret)})
	if err != nil {
		e.t.Fatal(err)
	}
	return ns
}

func TestEmailChange(t *testing.T) {
	e := newPwEnv(t)
	ec := e.emailChanges()
	secret := e.withApp()
	s := e.session(pwUser)
	other := e.session(pwUser)
	before := e.user(pwUser)
	mailsBefore := func() int {
		ms, err := e.outbox.List()
		if err != nil {
			t.Fatal(err)
		}
		return len(ms)
	}
	sent := mailsBefore()
	unchanged := func(what string) {
		t.Helper()
		ec.Wait()
		u := e.user(pwUser)
		if u.Email != before.Email || !u.EmailVerified || !e.live(s) || !e.live(other) {
			t.Fatalf("%s changed something: %+v", what, u)
		}
		if n := mailsBefore(); n != sent {
			t.Fatalf("%s sent %d mails", what, n-sent)
		}
	}

	// No fresh second factor: refused, with the factors that would do
	// (the mailbox being replaced is not one of them).
	_, err := ec.BeginEmailChange(e.ctx, s.ID, newAddr, "en", pwClient)
	var werr *WeakProofError
	if !errors.As(err, &werr) || werr.Action != ChangeEmail || strings.Join(werr.Kinds, ",") != "totp" {
		t.Fatalf("no fresh factor: %v (%+v)", err, werr)
	}
	unchanged("no fresh factor")

	// A fresh code by email is no such factor for an account with an app.
	if _, err := e.mfa.Begin(e.ctx, s.ID, factors.KindEmail, "en"); err != nil {
		t.Fatal(err)
	}
	code := pwCodeRe.FindString(e.mails("alice@example.com", "to sign in")[0].Text)
	s, _, err = e.mfa.Prove(e.ctx, s.ID, factors.KindEmail, "en", factors.Response{Code: code})
	if err != nil {
		t.Fatal(err)
	}
	sent = mailsBefore()
	if _, err := ec.BeginEmailChange(e.ctx, s.ID, newAddr, "en", pwClient); !errors.Is(err, ErrElevationRequired) {
		t.Fatalf("the old mailbox as the fresh factor: %v", err)
	}
	unchanged("the mailbox as the fresh factor")

	s = e.freshApp(s, secret)
	sent = mailsBefore()
	// Bad addresses: a clear refusal, nothing stored, nothing sent.
	for _, bad := range []string{"", "not-an-address", "Eve <eve@example.org>", "a@example.org, b@example.org", "a@example.org\r\nBcc: x@example.org", strings.Repeat("a", 250) + "@example.org"} {
		if _, err := ec.BeginEmailChange(e.ctx, s.ID, bad, "en", pwClient); !errors.Is(err, factors.ErrBadAddress) {
			t.Errorf("%q: %v, want ErrBadAddress", bad, err)
		}
	}
	if _, err := ec.BeginEmailChange(e.ctx, s.ID, " ALICE@example.com ", "en", pwClient); !errors.Is(err, ErrSameAddress) {
		t.Errorf("same address: %v", err)
	}
	if _, err := ec.PendingEmailChange(e.ctx, s.ID); !errors.Is(err, ErrNoEmailChange) {
		t.Fatalf("a refusal left a pending change: %v", err)
	}
	unchanged("bad addresses")

	// The real one: a code to the new address only.
	ch, err := ec.BeginEmailChange(e.ctx, s.ID, newAddr, "ru", pwClient)
	if err != nil {
		t.Fatal(err)
	}
	if ch.To == newAddr || !strings.HasSuffix(ch.To, ".org") || !ch.ExpiresAt.After(e.clock.Now()) {
		t.Fatalf("answer: %+v", ch)
	}
	ec.Wait()
	if ms := e.mails(newAddr, "для смены адреса"); len(ms) != 1 {
		t.Fatalf("code mail to the new address (in the language asked): %d", len(ms))
	}
	if ms := e.mails("alice@example.com", "новый"); len(ms) != 0 {
		t.Fatal("the change code went to the old address")
	}
	sent = mailsBefore()
	// Another request within the minute: told to wait.
	var ce *factors.CooldownError
	if _, err := ec.BeginEmailChange(e.ctx, s.ID, "elsewhere@example.org", "en", pwClient); !errors.As(err, &ce) {
		t.Fatalf("second request at once: %v", err)
	}
	// A wrong code, and the right one from another session: refused.
	if _, _, err := ec.ConfirmEmailChange(e.ctx, s.ID, "000000", "en", pwClient); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("wrong code: %v", err)
	}
	ec.Wait()
	ms := e.mails(newAddr, "")
	right := pwCodeRe.FindString(ms[0].Text)
	if _, _, err := ec.ConfirmEmailChange(e.ctx, other.ID, right, "en", pwClient); !errors.Is(err, ErrNoEmailChange) {
		t.Fatalf("another session: %v", err)
	}
	unchanged("wrong code, other session")

	// A sign-in code sent to the old address before the change…
	e.clock.Advance(61 * time.Second)
	if _, err := e.mfa.Begin(e.ctx, other.ID, factors.KindEmail, "en"); err != nil {
		t.Fatal(err)
	}
	oldCode := pwCodeRe.FindString(e.mails("alice@example.com", "to sign in")[0].Text)

	ns, nu, err := ec.ConfirmEmailChange(e.ctx, s.ID, right, "en", pwClient)
	if err != nil {
		t.Fatal(err)
	}
	if nu.Email != newAddr || !nu.EmailVerified || e.user(pwUser).Email != newAddr || !e.user(pwUser).EmailVerified {
		t.Fatalf("after: %+v", e.user(pwUser))
	}
	if ns.ID == s.ID || e.live(s) || !e.live(ns) || !e.live(other) {
		t.Fatal("this session rotates; the others stay")
	}
	// …dies with the old address.
	if _, _, err := e.mfa.Prove(e.ctx, other.ID, factors.KindEmail, "en", factors.Response{Code: oldCode}); err == nil {
		t.Fatal("a code sent to the old address still signs in")
	}
	// The old address is told, with the link; the new one confirmed.
	old := e.mails("alice@example.com", "the email address was changed")
	if len(old) != 1 || !strings.Contains(old[0].Text, "/.keygate/not-me/") || strings.Contains(old[0].Text, newAddr) {
		t.Fatalf("notice to the old address: %+v", old)
	}
	if conf := e.mails(newAddr, "is now the email address"); len(conf) != 1 || !strings.Contains(conf[0].Text, "/.keygate/not-me/") {
		t.Fatalf("confirmation to the new address: %+v", conf)
	}
	events, err := e.mfa.o.Activity.List(e.ctx, pwUser, 20)
	if err != nil {
		t.Fatal(err)
	}
	var logged bool
	for _, ev := range events {
		logged = logged || ev.Kind == EventEmailChanged
	}
	if !logged {
		t.Fatal("the change is not in the activity log")
	}
	// The code is used: once more is refused and changes nothing.
	if _, _, err := ec.ConfirmEmailChange(e.ctx, ns.ID, right, "en", pwClient); !errors.Is(err, ErrNoEmailChange) {
		t.Fatalf("reused code: %v", err)
	}
	// Sign-in codes now go to the new address.
	e.clock.Advance(61 * time.Second)
	if _, err := e.mfa.Begin(e.ctx, ns.ID, factors.KindEmail, "en"); err != nil {
		t.Fatal(err)
	}
	if len(e.mails(newAddr, "to sign in")) != 1 {
		t.Fatal("sign-in codes do not go to the new address")
	}
	// The old address no longer signs in; the new one does.
	if _, err := e.users.SignIn(e.ctx, "alice@example.com", pwPassword, pwClient); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("old address signs in: %v", err)
	}
	if _, err := e.users.SignIn(e.ctx, newAddr, pwPassword, pwClient); err != nil {
		t.Fatalf("new address: %v", err)
	}
}

func TestEmailChangeExpiredAndTaken(t *testing.T) {
	e := newPwEnv(t)
	ec := e.emailChanges()
	secret := e.withApp()
	s := e.freshApp(e.session(pwUser), secret)

	// Expired: the code outlives nothing.
	if _, err := ec.BeginEmailChange(e.ctx, s.ID, newAddr, "en", pwClient); err != nil {
		t.Fatal(err)
	}
	code := e.changeCode(ec, newAddr)
	e.clock.Advance(11 * time.Minute)
	s = e.freshApp(s, secret)
	if _, _, err := ec.ConfirmEmailChange(e.ctx, s.ID, code, "en", pwClient); !errors.Is(err, ErrNoEmailChange) {
		t.Fatalf("expired: %v", err)
	}
	if u := e.user(pwUser); u.Email != "alice@example.com" || !u.EmailVerified {
		t.Fatalf("expired code changed the address: %+v", u)
	}

	// An address another account uses: the same answer as any other, no
	// mail to it, and no code can confirm it (not even one sent earlier
	// for another address).
	if _, err := ec.BeginEmailChange(e.ctx, s.ID, "first@example.org", "en", pwClient); err != nil {
		t.Fatal(err)
	}
	earlier := e.changeCode(ec, "first@example.org")
	e.clock.Advance(61 * time.Second)
	s = e.freshApp(s, secret)
	free, err := ec.BeginEmailChange(e.ctx, s.ID, "bob@example.org", "en", pwClient)
	if err != nil {
		t.Fatal(err)
	}
	// The code goes out after the answer: let it leave on this clock's
	// reading, or its cooldown would start after the jump (found by CI
	// under -race).
	ec.Wait()
	e.clock.Advance(61 * time.Second)
	taken, err := ec.BeginEmailChange(e.ctx, s.ID, "BOB@example.com", "en", pwClient)
	if err != nil {
		t.Fatalf("taken address: %v", err)
	}
	if !strings.HasSuffix(taken.To, ".com") || strings.Contains(taken.To, "bob") || !strings.HasSuffix(free.To, ".org") {
		t.Fatalf("answers: %+v %+v", free, taken)
	}
	if taken.ExpiresAt.Sub(e.clock.Now()) != free.ExpiresAt.Sub(e.clock.Now().Add(-61*time.Second)) {
		t.Fatalf("windows differ: %v vs %v", taken.ExpiresAt, free.ExpiresAt)
	}
	ec.Wait()
	if n := len(e.mails("BOB@example.com", "")) + len(e.mails("bob@example.com", "")); n != 0 {
		t.Fatalf("%d mails to the taken address", n)
	}
	pending := e.changeCode(ec, "bob@example.org")
	for _, c := range []string{earlier, pending, "123456"} {
		if _, _, err := ec.ConfirmEmailChange(e.ctx, s.ID, c, "en", pwClient); !errors.Is(err, ErrWrongCode) {
			t.Fatalf("taken address confirmed with %s: %v", c, err)
		}
	}
	if u := e.user(pwUser); u.Email != "alice@example.com" {
		t.Fatalf("taken: %+v", u)
	}
	if u := e.user("bob"); u.Email != "bob@example.com" {
		t.Fatalf("bob: %+v", u)
	}
}

func TestEmailChangeMailboxOnlyAccount(t *testing.T) {
	e := newPwEnv(t)
	ec := e.emailChanges()
	s := e.session(pwUser)
	// The confirmed mailbox is alice's only second factor: the new mailbox
	// alone never suffices; a fresh code to the old one is asked for.
	_, err := ec.BeginEmailChange(e.ctx, s.ID, newAddr, "en", pwClient)
	var werr *WeakProofError
	if !errors.As(err, &werr) || strings.Join(werr.Kinds, ",") != factors.KindEmail {
		t.Fatalf("mailbox-only account: %v", err)
	}
	if _, err := e.mfa.Begin(e.ctx, s.ID, factors.KindEmail, "en"); err != nil {
		t.Fatal(err)
	}
	code := pwCodeRe.FindString(e.mails("alice@example.com", "to sign in")[0].Text)
	if s, _, err = e.mfa.Prove(e.ctx, s.ID, factors.KindEmail, "en", factors.Response{Code: code}); err != nil {
		t.Fatal(err)
	}
	if _, err := ec.BeginEmailChange(e.ctx, s.ID, newAddr, "en", pwClient); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ec.ConfirmEmailChange(e.ctx, s.ID, e.changeCode(ec, newAddr), "en", pwClient); err != nil {
		t.Fatal(err)
	}
	if u := e.user(pwUser); u.Email != newAddr || !u.EmailVerified {
		t.Fatalf("after: %+v", u)
	}

	// Bob has no second factor and no confirmed address: his password is
	// all there is, so it must be fresh — a session signed in long ago (a
	// stolen cookie) cannot move the address, and nothing is sent.
	old := e.session("bob")
	e.clock.Advance(e.mfa.o.ElevationWindow + time.Minute)
	if _, err := ec.BeginEmailChange(e.ctx, old.ID, "bob.new@example.org", "en", pwClient); !errors.Is(err, ErrSignInAgain) {
		t.Fatalf("a stale password session moved the address: %v", err)
	}
	ec.Wait()
	if u := e.user("bob"); u.Email == "bob.new@example.org" || len(e.mails("bob.new@example.org", "new email address")) != 0 {
		t.Fatalf("a refused change left a trace: %+v", u)
	}
	// A fresh sign-in will do, and the new mailbox is then his confirmed
	// address.
	b := e.session("bob")
	if _, err := ec.BeginEmailChange(e.ctx, b.ID, "bob.new@example.org", "en", pwClient); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ec.ConfirmEmailChange(e.ctx, b.ID, e.changeCode(ec, "bob.new@example.org"), "en", pwClient); err != nil {
		t.Fatal(err)
	}
	if u := e.user("bob"); u.Email != "bob.new@example.org" || !u.EmailVerified {
		t.Fatalf("bob after: %+v", u)
	}
}
