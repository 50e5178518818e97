package authn

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/totp"
)

// "Always ask" on the real parts (pwEnv: Badger, sessions, factors,
// activity log, outbox).

func (e *pwEnv) alwaysAsk(user string) bool {
	e.t.Helper()
	u, err := e.users.Get(e.ctx, user)
	if err != nil {
		e.t.Fatal(err)
	}
	return u.AlwaysAsk
}

func (e *pwEnv) kinds(user string) []string {
	e.t.Helper()
	evs, err := e.mfa.Activity(e.ctx, user, 50)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Kind)
	}
	return out
}

func TestAlwaysAskOnNeedsAFactorToGive(t *testing.T) {
	e := newPwEnv(t)
	// bob has no factor and no confirmed address: on would lock him out.
	s := e.session("bob")
	if _, err := e.mfa.SetAlwaysAsk(e.ctx, s.ID, true, pwClient); !errors.Is(err, ErrAlwaysAskNoFactor) {
		t.Fatalf("on without a factor: %v, want ErrAlwaysAskNoFactor", err)
	}
	if e.alwaysAsk("bob") {
		t.Fatal("a refused turn-on changed the account")
	}
	if got, _ := e.sessions.Lookup(s.ID); got.AlwaysAsk {
		t.Fatal("a refused turn-on changed the session")
	}
	// Signed out: nothing changes.
	if _, err := e.mfa.SetAlwaysAsk(e.ctx, "not-a-session", true, pwClient); !errors.Is(err, ErrSessionUnavailable) {
		t.Fatalf("without a session: %v", err)
	}
}

func TestAlwaysAskOnAndOff(t *testing.T) {
	e := newPwEnv(t)
	secret := e.withApp()
	here, other := e.session(pwUser), e.session(pwUser)

	// On: the session alone will do (it makes the account stricter), and
	// every live session of the person carries it at once.
	got, err := e.mfa.SetAlwaysAsk(e.ctx, here.ID, true, pwClient)
	if err != nil {
		t.Fatal(err)
	}
	if !got.AlwaysAsk || !e.alwaysAsk(pwUser) {
		t.Fatal("on: not set")
	}
	if o, ok := e.sessions.Lookup(other.ID); !ok || !o.AlwaysAsk {
		t.Fatal("on: the person's other session does not carry it")
	}
	// The store's records carry it too: what a restart loads, and what
	// other replicas read from the feed.
	loaded, err := NewSessions(e.ctx, e.sessions.kv, SessionOptions{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := loaded.Lookup(other.ID); !ok || !o.AlwaysAsk {
		t.Fatal("on: the stored session does not carry it")
	}
	// A new sign-in carries it from the user.
	if s := e.session(pwUser); !s.AlwaysAsk {
		t.Fatal("a new session does not carry it")
	}
	// Setting it again records nothing more.
	if _, err := e.mfa.SetAlwaysAsk(e.ctx, here.ID, true, pwClient); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.Join(e.kinds(pwUser), " "), EventAlwaysAskOn); n != 1 {
		t.Fatalf("%d %s events, want 1", n, EventAlwaysAskOn)
	}

	// Off without a fresh second factor: refused with the way to one,
	// nothing changed, no mail.
	_, err = e.mfa.SetAlwaysAsk(e.ctx, here.ID, false, pwClient)
	var weak *WeakProofError
	if !errors.As(err, &weak) || !errors.Is(err, ErrElevationRequired) || len(weak.Kinds) == 0 {
		t.Fatalf("off without a fresh factor: %v", err)
	}
	if !e.alwaysAsk(pwUser) {
		t.Fatal("a refused turn-off changed the account")
	}
	if o, _ := e.sessions.Lookup(other.ID); !o.AlwaysAsk {
		t.Fatal("a refused turn-off changed a session")
	}
	if ms := e.mails("alice@example.com", "Always ask"); len(ms) != 0 {
		t.Fatalf("a refused turn-off mailed %d notices", len(ms))
	}

	// A stale factor does not do either.
	fresh, _, err := e.mfa.Prove(e.ctx, here.ID, totp.Kind, "en", factors.Response{Code: e.totpCode(secret)})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(10 * time.Minute)
	if _, err := e.mfa.SetAlwaysAsk(e.ctx, fresh.ID, false, pwClient); !errors.As(err, &weak) {
		t.Fatalf("off with a stale factor: %v", err)
	}
	// With a fresh one: off, on every session, and the person is told.
	fresh, _, err = e.mfa.Prove(e.ctx, fresh.ID, totp.Kind, "en", factors.Response{Code: e.totpCode(secret)})
	if err != nil {
		t.Fatal(err)
	}
	got, err = e.mfa.SetAlwaysAsk(e.ctx, fresh.ID, false, pwClient)
	if err != nil {
		t.Fatal(err)
	}
	if got.AlwaysAsk || e.alwaysAsk(pwUser) {
		t.Fatal("off: still set")
	}
	if o, _ := e.sessions.Lookup(other.ID); o.AlwaysAsk {
		t.Fatal("off: the other session still carries it")
	}
	ms := e.mails("alice@example.com", "Always ask")
	if len(ms) != 1 || !strings.Contains(ms[0].Text, "no second factor is asked for any more") {
		t.Fatalf("off: %d notices, want 1 saying what changed", len(ms))
	}
	kinds := strings.Join(e.kinds(pwUser), " ")
	for _, k := range []string{EventAlwaysAskOn, EventAlwaysAskOff, "factor_change_refused"} {
		if !strings.Contains(kinds, k) {
			t.Errorf("activity lacks %s: %s", k, kinds)
		}
	}
}
