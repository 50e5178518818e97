package authn

import (
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/totp"
	"github.com/pquerna/otp"
	otptotp "github.com/pquerna/otp/totp"
)

// The password flows on the real parts (flowRig).

type pwEnv struct {
	*flowRig
	pw *Passwords
}

const pwUser, pwPassword = flowUser, flowPassword

var pwCodeRe = regexp.MustCompile(`\b\d{6}\b`)

var pwClient = flowClient

func newPwEnv(t *testing.T) *pwEnv {
	t.Helper()
	e := &pwEnv{flowRig: newFlowRig(t, SessionOptions{})}
	e.pw = NewPasswords(e.mfa, PasswordOptions{Logger: quietLogger()})
	return e
}

func (e *pwEnv) hash(user string) string {
	e.t.Helper()
	u, err := e.users.Get(e.ctx, user)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.PasswordHash
}

func (e *pwEnv) live(s *Session) bool {
	_, ok := e.sessions.Lookup(s.ID)
	return ok
}

// mails are the outbox's mails to addr whose subject contains subject.
func (e *pwEnv) mails(addr, subject string) []mail.OutboxMail {
	e.t.Helper()
	ms, err := e.outbox.List()
	if err != nil {
		e.t.Fatal(err)
	}
	var out []mail.OutboxMail
	for _, m := range ms {
		if m.To == addr && strings.Contains(m.Subject, subject) {
			out = append(out, m)
		}
	}
	return out
}

// resetCode waits for the reset mails in flight and reads the newest code.
func (e *pwEnv) resetCode() string {
	e.t.Helper()
	e.pw.Wait()
	ms := e.mails("alice@example.com", "reset your password")
	if len(ms) == 0 {
		e.t.Fatal("no reset code was mailed")
	}
	return pwCodeRe.FindString(ms[0].Text)
}

func (e *pwEnv) totpCode(secret string) string {
	e.t.Helper()
	c, err := otptotp.GenerateCodeCustom(secret, e.clock.Now(), otptotp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// withApp enrols an authenticator app for alice through the real flow (an
// email enrolment grant while she has no factor) and returns its secret.
func (e *pwEnv) withApp() string {
	e.t.Helper()
	s := e.session(pwUser)
	if _, err := e.mfa.SendAddressCode(e.ctx, s.ID, "en", factors.PurposeEnroll); err != nil {
		e.t.Fatal(err)
	}
	code := pwCodeRe.FindString(e.mails("alice@example.com", "add a sign-in method")[0].Text)
	s, err := e.mfa.ProveAddressCode(e.ctx, s.ID, factors.PurposeEnroll, code)
	if err != nil {
		e.t.Fatal(err)
	}
	en, _, err := e.mfa.Enroll(e.ctx, s.ID, totp.Kind, "en", factors.EnrollRequest{})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, _, err := e.mfa.ConfirmEnroll(e.ctx, s.ID, totp.Kind, en.ID, "en", factors.Response{Code: e.totpCode(en.Secret)}, "phone"); err != nil {
		e.t.Fatal(err)
	}
	e.clock.Advance(31 * time.Second) // the next app code is a new step
	return en.Secret
}

func TestChangePassword(t *testing.T) {
	e := newPwEnv(t)
	here, other := e.session(pwUser), e.session(pwUser)
	before := e.hash(pwUser)

	// Bad input: a clear refusal, and nothing changed.
	for _, tc := range []struct {
		name, current, next string
		want                error
		code                string
	}{
		{"wrong current", "not-my-password-at-all", "a-brand-new-passphrase", ErrWrongPassword, ""},
		{"common new", pwPassword, "Password123!", nil, PolicyCodeCommon},
		{"short new", pwPassword, "short-1", nil, PolicyCodeTooShort},
		{"username in new", pwPassword, "alice-the-brave-2030", nil, PolicyCodeContainsUsername},
	} {
		_, err := e.pw.ChangePassword(e.ctx, here.ID, tc.current, tc.next, pwClient)
		var ne *NewPasswordError
		switch {
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		case tc.code != "" && (!errors.As(err, &ne) || ne.Codes[0] != tc.code || ne.MinLength != 12):
			t.Errorf("%s: %v, want a refusal %q", tc.name, err, tc.code)
		}
		if e.hash(pwUser) != before || !e.live(here) || !e.live(other) {
			t.Fatalf("%s changed something", tc.name)
		}
	}
	if n := len(e.mails("alice@example.com", "password")); n != 0 {
		t.Fatalf("%d mails about a password that did not change", n)
	}

	ns, err := e.pw.ChangePassword(e.ctx, here.ID, pwPassword, "a-brand-new-passphrase", pwClient)
	if err != nil {
		t.Fatal(err)
	}
	if e.hash(pwUser) == before || ns.ID == here.ID || !e.live(ns) || e.live(here) || e.live(other) {
		t.Fatalf("after the change: this session rotated and live, the other ended (new %v, old %v, other %v)", e.live(ns), e.live(here), e.live(other))
	}
	if _, err := e.users.SignIn(e.ctx, pwUser, "a-brand-new-passphrase", pwClient); err != nil {
		t.Fatalf("the new password does not sign in: %v", err)
	}
	if _, err := e.users.SignIn(e.ctx, pwUser, pwPassword, pwClient); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("the old password still signs in: %v", err)
	}
	notice := e.mails("alice@example.com", "the password was changed")
	if len(notice) != 1 || !strings.Contains(notice[0].Text, "https://login.example.com/.keygate/not-me/") {
		t.Fatalf("notice: %+v", notice)
	}
}

func TestChangePasswordNeedsFreshSecondFactor(t *testing.T) {
	e := newPwEnv(t)
	secret := e.withApp()
	s := e.session(pwUser)
	before := e.hash(pwUser)

	_, err := e.pw.ChangePassword(e.ctx, s.ID, pwPassword, "a-brand-new-passphrase", pwClient)
	var werr *WeakProofError
	if !errors.As(err, &werr) || !errors.Is(err, ErrElevationRequired) || !strings.Contains(strings.Join(werr.Kinds, ","), "totp") {
		t.Fatalf("no fresh factor: %v", err)
	}
	if e.hash(pwUser) != before {
		t.Fatal("changed without a fresh second factor")
	}
	s, _, err = e.mfa.Prove(e.ctx, s.ID, totp.Kind, "en", factors.Response{Code: e.totpCode(secret)})
	if err != nil {
		t.Fatal(err)
	}
	// A proof gone stale no longer does.
	e.clock.Advance(6 * time.Minute)
	if _, err := e.pw.ChangePassword(e.ctx, s.ID, pwPassword, "a-brand-new-passphrase", pwClient); !errors.Is(err, ErrElevationRequired) {
		t.Fatalf("stale proof: %v", err)
	}
	e.clock.Advance(31 * time.Second)
	s, _, err = e.mfa.Prove(e.ctx, s.ID, totp.Kind, "en", factors.Response{Code: e.totpCode(secret)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.pw.ChangePassword(e.ctx, s.ID, pwPassword, "a-brand-new-passphrase", pwClient); err != nil {
		t.Fatalf("fresh proof: %v", err)
	}
}

// Wrong current passwords count like wrong passwords at sign-in: five lock
// the account, and then the right one is told so.
func TestChangePasswordRegulated(t *testing.T) {
	e := newPwEnv(t)
	s := e.session(pwUser)
	for i := range 5 {
		if _, err := e.pw.ChangePassword(e.ctx, s.ID, "guess-number-"+string(rune('a'+i)), "a-brand-new-passphrase", pwClient); !errors.Is(err, ErrWrongPassword) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if _, err := e.pw.ChangePassword(e.ctx, s.ID, pwPassword, "a-brand-new-passphrase", pwClient); !errors.Is(err, ErrLocked) {
		t.Fatalf("right password while locked: %v", err)
	}
	if _, err := e.users.SignIn(e.ctx, pwUser, pwPassword, Client{IP: "203.0.113.9"}); !errors.Is(err, ErrLocked) {
		t.Fatalf("sign-in after five wrong current passwords: %v", err)
	}
}

func TestResetWithoutSecondFactor(t *testing.T) {
	e := newPwEnv(t)
	s, dev := e.session(pwUser), e.session(pwUser)
	if _, _, err := e.devices.Trust(e.ctx, pwUser, pwClient.UserAgent, pwClient.IP, time.Hour); err != nil {
		t.Fatal(err)
	}
	before := e.hash(pwUser)
	rs, err := e.pw.BeginReset(e.ctx, "Alice@Example.com", "en", pwClient)
	if err != nil || rs.Step != ResetStepCode || !rs.ExpiresAt.Equal(e.clock.Now().Add(10*time.Minute)) {
		t.Fatalf("begin: %+v %v (the window is the code's 10 minutes)", rs, err)
	}
	code := e.resetCode()

	if _, err := e.pw.FinishReset(e.ctx, rs.Token, "a-brand-new-passphrase", pwClient); !errors.Is(err, ErrResetCodeFirst) {
		t.Fatalf("finish before the code: %v", err)
	}
	if _, err := e.pw.VerifyResetCode(e.ctx, rs.Token, "000000", pwClient); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("wrong code: %v", err)
	}
	rs2, err := e.pw.VerifyResetCode(e.ctx, rs.Token, code, pwClient)
	if err != nil || rs2.Step != ResetStepPassword || rs2.Token == rs.Token {
		t.Fatalf("right code: %+v %v", rs2, err)
	}
	if _, err := e.pw.VerifyResetCode(e.ctx, rs.Token, code, pwClient); !errors.Is(err, ErrResetExpired) {
		t.Fatalf("the old token after the step: %v", err)
	}
	if _, err := e.pw.FinishReset(e.ctx, rs2.Token, "qwerty123456", pwClient); err == nil {
		t.Fatal("a common password was accepted")
	}
	if e.hash(pwUser) != before || !e.live(s) || !e.live(dev) {
		t.Fatal("a refused password changed something")
	}
	if _, err := e.pw.FinishReset(e.ctx, rs2.Token, "a-brand-new-passphrase", pwClient); err != nil {
		t.Fatalf("finish: %v", err)
	}
	if e.hash(pwUser) == before || e.live(s) || e.live(dev) {
		t.Fatal("after the reset every session ends")
	}
	if devs, _ := e.devices.List(e.ctx, pwUser); len(devs) != 0 {
		t.Fatalf("remembered devices left: %v", devs)
	}
	if _, err := e.pw.FinishReset(e.ctx, rs2.Token, "another-new-passphrase", pwClient); !errors.Is(err, ErrResetExpired) {
		t.Fatalf("finish twice: %v", err)
	}
	if n := e.mails("alice@example.com", "reset with a code"); len(n) != 1 || !strings.Contains(n[0].Text, "/.keygate/not-me/") {
		t.Fatalf("reset notice: %+v", n)
	}
	// The used code in a new reset (the cooldown holds a new one back).
	rs3, _ := e.pw.BeginReset(e.ctx, pwUser, "en", pwClient)
	e.pw.Wait()
	if _, err := e.pw.VerifyResetCode(e.ctx, rs3.Token, code, pwClient); !errors.Is(err, ErrCodeUsed) {
		t.Fatalf("reused code: %v", err)
	}
}

// Unknown names, accounts without a confirmed address and real accounts
// get the same answers: nothing tells them apart, nothing is mailed to an
// unconfirmed address, and every one dies after as many wrong codes.
func TestResetSameAnswerForEveryone(t *testing.T) {
	e := newPwEnv(t)
	var steps []Reset
	for _, login := range []string{"alice", "nobody", "bob", "nobody@example.com"} {
		rs, err := e.pw.BeginReset(e.ctx, login, "en", pwClient)
		if err != nil || rs.Step != ResetStepCode || len(rs.Token) != 64 {
			t.Fatalf("%s: %+v %v", login, rs, err)
		}
		steps = append(steps, rs)
	}
	e.pw.Wait()
	for i := 1; i < len(steps); i++ {
		if !steps[i].ExpiresAt.Equal(steps[0].ExpiresAt) {
			t.Fatalf("reset %d ends at %v, alice's at %v", i, steps[i].ExpiresAt, steps[0].ExpiresAt)
		}
	}
	if n := len(e.mails("bob@example.com", "")); n != 0 {
		t.Fatalf("%d mails to an unconfirmed address", n)
	}
	for _, rs := range steps {
		var got []string
		for range resetMaxTries + 1 {
			_, err := e.pw.VerifyResetCode(e.ctx, rs.Token, "123456", pwClient)
			got = append(got, errName(err))
		}
		want := "wrong wrong wrong wrong wrong dead"
		if strings.Join(got, " ") != want {
			t.Fatalf("answers %v, want %s", got, want)
		}
	}
	// Past the window, everyone's reset is over alike.
	rs, _ := e.pw.BeginReset(e.ctx, "nobody", "en", pwClient)
	e.clock.Advance(10 * time.Minute)
	if _, err := e.pw.VerifyResetCode(e.ctx, rs.Token, "123456", pwClient); !errors.Is(err, ErrResetExpired) {
		t.Fatalf("expired decoy: %v", err)
	}
}

func errName(err error) string {
	switch {
	case errors.Is(err, ErrWrongCode):
		return "wrong"
	case errors.Is(err, ErrResetDead):
		return "dead"
	case err == nil:
		return "ok"
	}
	return err.Error()
}

func TestResetCodeExpires(t *testing.T) {
	e := newPwEnv(t)
	before := e.hash(pwUser)
	rs, _ := e.pw.BeginReset(e.ctx, pwUser, "en", pwClient)
	code := e.resetCode()
	e.clock.Advance(10*time.Minute + time.Second)
	if _, err := e.pw.VerifyResetCode(e.ctx, rs.Token, code, pwClient); !errors.Is(err, ErrResetExpired) {
		t.Fatalf("expired: %v", err)
	}
	if e.hash(pwUser) != before {
		t.Fatal("changed")
	}
}

// A mailbox alone never resets the password of an account with a second
// factor: the factor is asked for, and the mailbox's own factor is not
// offered for it.
func TestResetNeedsTheSecondFactor(t *testing.T) {
	e := newPwEnv(t)
	secret := e.withApp()
	before := e.hash(pwUser)
	rs, _ := e.pw.BeginReset(e.ctx, pwUser, "en", pwClient)
	rs, err := e.pw.VerifyResetCode(e.ctx, rs.Token, e.resetCode(), pwClient)
	if err != nil || rs.Step != ResetStepFactor {
		t.Fatalf("code: %+v %v", rs, err)
	}
	var kinds []string
	for _, m := range rs.Factors {
		kinds = append(kinds, m.Kind)
	}
	if strings.Join(kinds, ",") != "totp" {
		t.Fatalf("factors offered: %v (never the mailbox again)", kinds)
	}
	if _, err := e.pw.FinishReset(e.ctx, rs.Token, "a-brand-new-passphrase", pwClient); !errors.Is(err, ErrResetFactorFirst) {
		t.Fatalf("finish without the factor: %v", err)
	}
	if _, err := e.pw.ProveResetFactor(e.ctx, rs.Token, "email", "en", factors.Response{Code: "123456"}, pwClient); !errors.Is(err, ErrFactorUnavailable) {
		t.Fatalf("the mailbox as the second factor: %v", err)
	}
	if _, err := e.pw.ProveResetFactor(e.ctx, rs.Token, totp.Kind, "en", factors.Response{Code: "000000"}, pwClient); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("wrong app code: %v", err)
	}
	if e.hash(pwUser) != before {
		t.Fatal("changed before the factor")
	}
	rs, err = e.pw.ProveResetFactor(e.ctx, rs.Token, totp.Kind, "en", factors.Response{Code: e.totpCode(secret)}, pwClient)
	if err != nil || rs.Step != ResetStepPassword {
		t.Fatalf("right app code: %+v %v", rs, err)
	}
	if _, err := e.pw.FinishReset(e.ctx, rs.Token, "a-brand-new-passphrase", pwClient); err != nil {
		t.Fatal(err)
	}
	if _, err := e.users.SignIn(e.ctx, pwUser, "a-brand-new-passphrase", pwClient); err != nil {
		t.Fatal(err)
	}
}

// Of two finishes of one reset at the same moment exactly one wins.
func TestResetFinishOnce(t *testing.T) {
	e := newPwEnv(t)
	rs, _ := e.pw.BeginReset(e.ctx, pwUser, "en", pwClient)
	rs, err := e.pw.VerifyResetCode(e.ctx, rs.Token, e.resetCode(), pwClient)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = e.pw.FinishReset(e.ctx, rs.Token, "a-brand-new-passphrase-"+string(rune('a'+i)), pwClient)
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrResetExpired):
			t.Fatalf("loser: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d finishes won", won)
	}
}
