package authn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Attempts that a lock refuses unchecked run no argon2 hash, yet answer
// after the usual hash time, for known and unknown names alike.
func TestSignInRefusedByLockRunsNoHash(t *testing.T) {
	ctx := context.Background()
	kv := openStore(t, t.TempDir())
	clk := newClock()
	h := NewHasher(cheapParams(), 4)
	us := NewUsers(kv, UserOptions{Hasher: h, Now: clk.Now, Regulator: newTestRegulator(t, kv, clk)})
	mustAdd(t, us, NewUser{Username: "pia"})

	// Five wrong passwords lock the account; five more are the lock's
	// budget (still checked, each with a hash).
	for i := range 10 {
		before := h.runs.Load()
		if _, err := us.SignIn(ctx, "pia", "wrong-password-"+fmt.Sprint(i), Client{IP: "192.0.2.10"}); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("try %d: %v", i, err)
		}
		if h.runs.Load()-before != 1 {
			t.Fatalf("try %d (within the budget) ran %d hashes, want 1", i, h.runs.Load()-before)
		}
	}
	// The same for a name without an account, from another address.
	for i := range 10 {
		_, _ = us.SignIn(ctx, "nobody-here", "wrong-password", Client{IP: "192.0.2.11"})
		_ = i
	}
	typical := h.TypicalHash()
	if typical <= 0 {
		t.Fatal("no hash time measured")
	}
	for _, tc := range []struct{ name, login, pw, ip string }{
		{"known name, wrong password", "pia", "wrong-password-x", "192.0.2.10"},
		{"known name, right password", "pia", goodPW, "192.0.2.12"},
		{"unknown name", "nobody-here", "wrong-password", "192.0.2.11"},
	} {
		runs, imitated := h.runs.Load(), h.imitated.Load()
		start := time.Now()
		u, err := us.SignIn(ctx, tc.login, tc.pw, Client{IP: tc.ip})
		took := time.Since(start)
		if !errors.Is(err, ErrInvalidCredentials) || u.Username != "" {
			t.Errorf("%s: %q, %v; want ErrInvalidCredentials (the budget is spent: nothing is checked)", tc.name, u.Username, err)
		}
		if n := h.runs.Load() - runs; n != 0 {
			t.Errorf("%s: %d hashes beyond the lock's budget, want 0", tc.name, n)
		}
		if h.imitated.Load()-imitated != 1 {
			t.Errorf("%s: did not wait the usual hash time", tc.name)
		}
		if took < typical*3/4 {
			t.Errorf("%s: answered in %v, the usual hash takes %v: the refusal is faster than a check", tc.name, took, typical)
		}
	}
}

// A locked address gets a small budget of checked tries (the per-account
// one), not its whole window's worth, and then costs no hash.
func TestLockedAddressBudgetIsSmall(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	r := newTestRegulator(t, openStore(t, t.TempDir()), clk) // IPMaxFailures 8, MaxFailures 5
	for i := range 8 {
		fail(t, r, GatePassword, fmt.Sprintf("name%d", i), "203.0.113.5", 1)
	}
	checked := 0
	for i := range 20 {
		try, err := r.Begin(ctx, GatePassword, fmt.Sprintf("other%d", i), "203.0.113.5")
		if err != nil {
			t.Fatal(err)
		}
		if try.Locked == nil || !try.Locked.Network {
			t.Fatalf("try %d: address lock not reported: %+v", i, try.Locked)
		}
		if try.Check {
			checked++
			try.Fail(ctx)
		}
	}
	if checked != 5 {
		t.Fatalf("%d tries checked during the address lock, want the budget of 5", checked)
	}
}

// One key holds at most its share of the slots; other keys still get one.
func TestHasherSharesSlotsPerKey(t *testing.T) {
	p := cheapParams()
	p.Iterations = 4 // long enough for the runs to overlap
	h := NewHasher(p, 4)
	if h.perKey != 1 {
		t.Fatalf("perKey = %d, want 1 of 4 slots", h.perKey)
	}
	phc, _ := h.Hash("x")
	var busy, peak atomic.Int32
	track := func() {
		n := busy.Add(1)
		for {
			m := peak.Load()
			if n <= m || peak.CompareAndSwap(m, n) {
				break
			}
		}
	}
	var wg sync.WaitGroup
	var finished atomic.Int32
	const flood = 12
	for range flood {
		wg.Go(func() {
			release, err := h.acquire(context.Background(), "203.0.113.1")
			if err != nil {
				t.Error(err)
				return
			}
			track()
			time.Sleep(20 * time.Millisecond)
			busy.Add(-1)
			finished.Add(1)
			release()
		})
	}
	// While the flood queues (12 × 20 ms, one at a time), another key
	// gets a slot before the flood is through: it is not queued behind it.
	// Judged by order, not by a time budget, which a loaded machine breaks.
	time.Sleep(5 * time.Millisecond)
	release, err := h.acquire(context.Background(), "198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	servedAfter := finished.Load()
	release()
	if ok, err := h.VerifyFor(context.Background(), "198.51.100.1", "x", phc); !ok || err != nil {
		t.Fatalf("other key: %v %v", ok, err)
	}
	wg.Wait()
	if peak.Load() != 1 {
		t.Fatalf("one key held %d slots at once, want at most 1", peak.Load())
	}
	if servedAfter >= flood/2 {
		t.Errorf("another key got a slot only after %d of the flood's %d hashes", servedAfter, flood)
	}
	h.mu.Lock()
	left := len(h.keys)
	h.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d keys left in the map after every hash ended", left)
	}
	// A waiter whose request ends leaves the queue and the map.
	hold, _ := h.acquire(context.Background(), "203.0.113.1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.VerifyFor(ctx, "203.0.113.1", "x", phc); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	hold()
	h.mu.Lock()
	left = len(h.keys)
	h.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d keys left after a cancelled wait", left)
	}
}

// TestSignInFloodFromOneAddress: a flood of concurrent wrong passwords
// from one address (bursts of 40, as measured in issue 11) while someone
// else signs in from another address. Goal: the other sign-in's median
// latency stays within 2× its quiet median. It fails only beyond 2× plus
// a margin for the shared, noisy CI machines; the figures are logged.
// Before the fix the flood filled every hash slot and the victim queued
// behind dozens of 64 MiB hashes (~10× its quiet time).
func TestSignInFloodFromOneAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real 64 MiB argon2 hashes for several seconds")
	}
	ctx := context.Background()
	kv := openStore(t, t.TempDir())
	h := NewHasher(DefaultArgon2Params(), 4)
	// The regulator's defaults: 5 per account, 20 per address.
	us := NewUsers(kv, UserOptions{Hasher: h, Regulator: NewRegulator(kv, RegulationOptions{Logger: quietLogger()})})
	mustAdd(t, us, NewUser{Username: "victor"})

	victim := func(n int) time.Duration {
		var d []time.Duration
		for range n {
			start := time.Now()
			if _, err := us.SignIn(ctx, "victor", goodPW, Client{IP: "198.51.100.7"}); err != nil {
				t.Fatalf("victim sign-in: %v", err)
			}
			d = append(d, time.Since(start))
		}
		slices.Sort(d)
		return d[len(d)/2]
	}
	quiet := victim(9)

	stop := make(chan struct{})
	var flood sync.WaitGroup
	var sent atomic.Int64
	runs0 := h.runs.Load()
	flood.Go(func() {
		for burst := 0; ; burst++ {
			var wg sync.WaitGroup
			for i := range 40 {
				wg.Go(func() {
					_, _ = us.SignIn(ctx, fmt.Sprintf("guess-%d-%d", burst, i), "wrong-password", Client{IP: "203.0.113.66"})
					sent.Add(1)
				})
			}
			select {
			case <-stop:
				wg.Wait()
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
	time.Sleep(100 * time.Millisecond) // the first burst is under way
	loud := victim(40)
	close(stop)
	flood.Wait()
	floodRuns := h.runs.Load() - runs0 - 40 // less the victim's own 40
	// Quiet again after the flood: the machine's own load (other test
	// packages run alongside) may have changed meanwhile; the slower of the
	// two quiet medians is the fair yardstick.
	quiet = max(quiet, victim(9))
	t.Logf("victim median: quiet %v, during the flood %v (%.2f×; goal ≤ 2×); flood: %d attempts, %d hashed, %d answered by waiting",
		quiet, loud, float64(loud)/float64(quiet), sent.Load(), floodRuns, h.imitated.Load())
	if loud > 2*quiet+quiet/2 {
		t.Fatalf("the flood from one address slowed another address's sign-in from %v to %v", quiet, loud)
	}
	if floodRuns > 20+5 {
		t.Errorf("the flood ran %d hashes; after the address lock (20) and its budget (5) it should run none", floodRuns)
	}
}
