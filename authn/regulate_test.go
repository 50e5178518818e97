package authn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newTestRegulator(t *testing.T, kv KV, clk *clock) *Regulator {
	t.Helper()
	return newTestRegulatorTelling(t, kv, clk, nil)
}

func newTestRegulatorTelling(t *testing.T, kv KV, clk *clock, ev Events) *Regulator {
	t.Helper()
	return NewRegulator(kv, RegulationOptions{MaxFailures: 5, IPMaxFailures: 8, Window: 10 * time.Minute,
		Lockout: 5 * time.Minute, MaxLockout: 30 * time.Minute, Now: clk.Now, Logger: quietLogger(), Events: ev})
}

// lockouts is a listener that counts only locks, the way metrics do.
type lockouts struct {
	NoEvents
	kinds []string
}

func (l *lockouts) LockedOut(kind string) { l.kinds = append(l.kinds, kind) }

// fail makes n wrong attempts and returns the lock the last one started.
func fail(t *testing.T, r *Regulator, gate Gate, user, ip string, n int) time.Time {
	t.Helper()
	var started time.Time
	for i := range n {
		try, err := r.Begin(context.Background(), gate, user, ip)
		if err != nil {
			t.Fatal(err)
		}
		if !try.Check {
			t.Fatalf("try %d of %d not checked", i+1, n)
		}
		started = try.Fail(context.Background())
	}
	return started
}

func TestRegulatorLocksDoublesAndCaps(t *testing.T) {
	clk := newClock()
	heard := &lockouts{}
	r := newTestRegulatorTelling(t, openStore(t, t.TempDir()), clk, heard)
	ctx := context.Background()

	if until := fail(t, r, GatePassword, "alice", "", 4); !until.IsZero() {
		t.Fatal("four failures locked")
	}
	if le, _ := r.Status(ctx, GatePassword, "alice", ""); le != nil {
		t.Fatalf("locked after four failures: %v", le)
	}
	until := fail(t, r, GatePassword, "alice", "", 1)
	if want := clk.Now().Add(5 * time.Minute); !until.Equal(want) {
		t.Fatalf("first lock until %v, want %v", until, want)
	}
	if le, _ := r.Status(ctx, GatePassword, "alice", ""); le == nil || !le.Until.Equal(until) || le.Network {
		t.Fatalf("status %+v", le)
	}
	// Other gates and other accounts are not locked.
	if le, _ := r.Status(ctx, GateSecondFactor, "alice", ""); le != nil {
		t.Fatal("the password lock locked the second factor")
	}
	if le, _ := r.Status(ctx, GatePassword, "bob", ""); le != nil {
		t.Fatal("bob locked")
	}

	// Each further lock doubles, up to MaxLockout.
	for _, want := range []time.Duration{10 * time.Minute, 20 * time.Minute, 30 * time.Minute, 30 * time.Minute} {
		clk.Advance(until.Sub(clk.Now()) + time.Second)
		if le, _ := r.Status(ctx, GatePassword, "alice", ""); le != nil {
			t.Fatal("still locked after the lock ended")
		}
		until = fail(t, r, GatePassword, "alice", "", 5)
		if got := until.Sub(clk.Now()); got != want {
			t.Fatalf("lock of %v, want %v", got, want)
		}
	}
	if len(heard.kinds) != 5 || heard.kinds[0] != LockoutPassword {
		t.Fatalf("events heard locks %v", heard.kinds)
	}
	// A day without failures forgets the strikes.
	clk.Advance(until.Sub(clk.Now()) + 25*time.Hour)
	if until = fail(t, r, GatePassword, "alice", "", 5); until.Sub(clk.Now()) != 5*time.Minute {
		t.Fatalf("after a quiet day the lock is %v", until.Sub(clk.Now()))
	}
}

func TestRegulatorWindowForgetsOldFailures(t *testing.T) {
	clk := newClock()
	r := newTestRegulator(t, openStore(t, t.TempDir()), clk)
	fail(t, r, GatePassword, "alice", "", 4)
	clk.Advance(11 * time.Minute)
	if until := fail(t, r, GatePassword, "alice", "", 4); !until.IsZero() {
		t.Fatal("failures older than the window still counted")
	}
}

// A lock still checks up to MaxFailures tries (so right credentials can be
// told it is locked), then nothing: the "locked" answer must not become an
// oracle that confirms guessed passwords at full speed.
func TestRegulatorLockBudget(t *testing.T) {
	clk := newClock()
	kv := &countingKV{Store: openStore(t, t.TempDir())}
	r := newTestRegulator(t, kv, clk)
	ctx := context.Background()
	fail(t, r, GatePassword, "alice", "", 5)
	first, _ := r.Status(ctx, GatePassword, "alice", "")
	for i := range 5 {
		try, err := r.Begin(ctx, GatePassword, "alice", "")
		if err != nil || !try.Check || try.Locked == nil {
			t.Fatalf("try %d in the lock: %+v %v", i+1, try, err)
		}
		try.Fail(ctx)
	}
	// Guessing on during the lock made it longer, from now.
	second, _ := r.Status(ctx, GatePassword, "alice", "")
	if !second.Until.After(first.Until) {
		t.Fatalf("lock not extended: %v then %v", first.Until, second.Until)
	}
	before := kv.calls.Load()
	try, err := r.Begin(ctx, GatePassword, "alice", "")
	if err != nil || try.Check || try.Locked == nil {
		t.Fatalf("over the budget: %+v %v", try, err)
	}
	// Nothing is written over the budget (reads only).
	if n := kv.calls.Load() - before; n > 2 {
		t.Fatalf("%d store calls over the budget", n)
	}
}

func TestRegulatorPassClearsAndReleaseGivesBack(t *testing.T) {
	clk := newClock()
	r := newTestRegulator(t, openStore(t, t.TempDir()), clk)
	ctx := context.Background()
	fail(t, r, GatePassword, "alice", "198.51.100.7", 4)
	try, _ := r.Begin(ctx, GatePassword, "alice", "198.51.100.7")
	if err := try.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// The released try did not count: one more failure still does not lock.
	try, _ = r.Begin(ctx, GatePassword, "alice", "198.51.100.7")
	if err := try.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	// A success cleared the account's count…
	if until := fail(t, r, GatePassword, "alice", "", 4); !until.IsZero() {
		t.Fatal("a success did not clear the count")
	}
	// …and a right answer on the try that would have locked clears it too.
	try, _ = r.Begin(ctx, GatePassword, "alice", "")
	if try.Locked != nil || !try.Check {
		t.Fatalf("the fifth try is checked as unlocked: %+v", try)
	}
	if err := try.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if le, _ := r.Status(ctx, GatePassword, "alice", ""); le != nil {
		t.Fatal("locked after a right answer")
	}
}

func TestRegulatorPerAddress(t *testing.T) {
	clk := newClock()
	r := newTestRegulator(t, openStore(t, t.TempDir()), clk)
	ctx := context.Background()
	// Eight failures for eight names from one address lock the address,
	// not the names.
	for _, u := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		fail(t, r, GatePassword, u, "203.0.113.9", 1)
	}
	le, _ := r.Status(ctx, GatePassword, "zed", "203.0.113.9")
	if le == nil || !le.Network {
		t.Fatalf("address not locked: %+v", le)
	}
	if le, _ := r.Status(ctx, GatePassword, "zed", "203.0.113.10"); le != nil {
		t.Fatal("another address locked")
	}
	// IPv6: one /64 is one subscriber.
	for i := range 8 {
		fail(t, r, GatePassword, "x", fmt.Sprintf("2001:db8:1:2::%x", i+1), 1)
	}
	if le, _ := r.Status(ctx, GatePassword, "y", "2001:db8:1:2:ffff::1"); le == nil || !le.Network {
		t.Fatal("hopping inside a /64 escaped the address limit")
	}
	if le, _ := r.Status(ctx, GatePassword, "y", "2001:db8:1:3::1"); le != nil {
		t.Fatal("the neighbouring /64 is locked")
	}
	// Successes give the address its tries back: an office signing in
	// does not lock itself.
	for range 20 {
		try, _ := r.Begin(ctx, GatePassword, "ok", "192.0.2.1")
		_ = try.Pass(ctx)
	}
	if le, _ := r.Status(ctx, GatePassword, "ok", "192.0.2.1"); le != nil {
		t.Fatal("successful sign-ins locked the address")
	}
}

// Concurrent guesses are bounded: each try is counted before it is checked.
func TestRegulatorBurstIsBounded(t *testing.T) {
	clk := newClock()
	r := newTestRegulator(t, openStore(t, t.TempDir()), clk)
	ctx := context.Background()
	var checked atomic.Int32
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			try, err := r.Begin(ctx, GatePassword, "alice", "")
			if err != nil {
				t.Error(err)
				return
			}
			if try.Check {
				checked.Add(1)
				try.Fail(ctx)
			}
		}()
	}
	wg.Wait()
	// Five before the lock and five in its budget.
	if n := checked.Load(); n != 10 {
		t.Fatalf("%d of 40 concurrent guesses were checked, want 10", n)
	}
}

func TestRegulatorSurvivesRestart(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	kv := openStore(t, dir)
	until := fail(t, newTestRegulator(t, kv, clk), GatePassword, "alice", "", 5)
	_ = kv.Close()
	r := newTestRegulator(t, openStore(t, dir), clk)
	le, err := r.Status(context.Background(), GatePassword, "alice", "")
	if err != nil || le == nil || !le.Until.Equal(until) {
		t.Fatalf("after reopening: %+v %v", le, err)
	}
}

func TestRegulatorHoldUnlockAndTickets(t *testing.T) {
	clk := newClock()
	r := newTestRegulator(t, openStore(t, t.TempDir()), clk)
	ctx := context.Background()
	if err := r.Hold(ctx, "alice", "reported"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * 24 * time.Hour) // no time ends a hold
	try, _ := r.Begin(ctx, GateSecondFactor, "alice", "")
	if try.Locked == nil || !try.Locked.Reported || !errors.Is(try.Locked, ErrLocked) {
		t.Fatalf("held account: %+v", try.Locked)
	}
	fail(t, r, GatePassword, "bob", "", 5)
	for _, u := range []string{"alice", "bob"} {
		if was, err := r.Unlock(ctx, u); err != nil || !was {
			t.Fatalf("unlock %s: %v %v", u, was, err)
		}
		if le, _ := r.Status(ctx, GatePassword, u, ""); le != nil {
			t.Fatalf("%s still locked", u)
		}
	}
	if was, _ := r.Unlock(ctx, "carol"); was {
		t.Fatal("carol was never locked")
	}

	tk, err := r.IssueTicket(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if owner, err := r.TicketOwner(ctx, tk); err != nil || owner != "alice" {
		t.Fatalf("ticket owner %q %v", owner, err)
	}
	r.consumeTicket(ctx, tk)
	for _, bad := range []string{tk, "", "nope"} {
		if _, err := r.TicketOwner(ctx, bad); !errors.Is(err, ErrTicketInvalid) {
			t.Fatalf("ticket %q: %v", bad, err)
		}
	}
}

func TestSubjectKeysDoNotCollide(t *testing.T) {
	for _, s := range []string{"#abc", "Alice", "alice@example.com", "a/b", ""} {
		if k := subjectKey(s); k[0] != '#' {
			t.Errorf("subjectKey(%q) = %q: not hashed", s, k)
		}
	}
	if subjectKey("alice") != "alice" {
		t.Error("a username is not kept as is")
	}
	for in, want := range map[string]string{"192.0.2.1": "192.0.2.1", "::ffff:192.0.2.1": "192.0.2.1",
		"2001:db8::1": "2001:db8::/64", "fe80::1%eth0": "fe80::/64", "junk": "", "": ""} {
		if got := ipKey(in); got != want {
			t.Errorf("ipKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// The store's TTL only collects garbage, but it must not forget strikes
// before the day is over: the doubling needs them.
func TestRegulatorTTLKeepsStrikes(t *testing.T) {
	clk := newClock()
	r := newTestRegulator(t, openStore(t, t.TempDir()), clk)
	now := clk.Now()
	rec := failRecord{Tries: 1, Since: now, Strikes: 2, Last: now}
	if d := r.ttl(rec, now); d < strikeMemory {
		t.Fatalf("a record with strikes lives %v, want at least %v", d, strikeMemory)
	}
	rec.Until = now.Add(48 * time.Hour)
	if d := r.ttl(rec, now); d < 48*time.Hour {
		t.Fatalf("a locked record lives %v, shorter than its lock", d)
	}
	if d := r.ttl(failRecord{Tries: 1, Since: now, Last: now}, now); d != 10*time.Minute {
		t.Fatalf("a plain count lives %v, want the window", d)
	}
}
