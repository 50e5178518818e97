package pgstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/pgstore"
	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
	"github.com/keygate/keygate/authn/store/storetest"
)

// The sequence trap, provoked: writer A has taken its seq and not yet
// committed. Writer B must not get a higher seq and commit first (a
// follower would pass A's change and never see it): B waits for A, and
// until A commits neither the head nor the change list moves.
func TestFeedCommitOrderHeld(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	w := open(t, dsn, 0)
	r := open(t, dsn, 0) // a follower on another replica
	ctx := t.Context()
	h0, err := r.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reached, release := make(chan int64), make(chan struct{})
	var once sync.Once
	pgstore.SetBeforeCommit(w, func(seq int64) {
		once.Do(func() { reached <- seq; <-release })
	})
	aDone, bDone := make(chan error, 1), make(chan error, 1)
	go func() { _, err := w.Set(ctx, "o/a", []byte("a"), store.WriteOptions{Durable: true}); aDone <- err }()
	seqA := <-reached
	go func() { _, err := w.Set(ctx, "o/b", []byte("b"), store.WriteOptions{}); bDone <- err }()

	select {
	case err := <-bDone:
		t.Fatalf("B committed (%v) while A, holding seq %d, had not", err, seqA)
	case <-time.After(300 * time.Millisecond):
	}
	if h, err := r.Head(ctx); err != nil || h != h0 {
		t.Fatalf("Head while A is uncommitted = %d, %v; want %d", h, err, h0)
	}
	if chs, next, err := r.Changes(ctx, "", h0, 0); err != nil || len(chs) != 0 || next != h0 {
		t.Fatalf("Changes while A is uncommitted = %v, next %d, %v; want none, %d", chs, next, err, h0)
	}

	close(release)
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	chs, _, err := r.Changes(ctx, "", h0, 0)
	if err != nil || len(chs) != 2 || chs[0].Key != "o/a" || chs[1].Key != "o/b" || chs[0].Seq != uint64(seqA) || chs[1].Seq <= chs[0].Seq {
		t.Fatalf("Changes after both committed = %+v, %v; want o/a (seq %d) then o/b", chs, err, seqA)
	}
}

// Single use across replicas: 50 callers on two replicas consume one
// value; exactly one gets it.
func TestConsumeAcrossReplicas(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	replicas := []*pgstore.Store{open(t, dsn, 0), open(t, dsn, 0)}
	ctx := t.Context()
	for round := range 10 {
		if _, err := replicas[0].Set(ctx, "webauthn/ceremony/c1", []byte("challenge"), store.WriteOptions{TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
		var (
			mu   sync.Mutex
			wins int
			wg   sync.WaitGroup
		)
		start := make(chan struct{})
		for i := range 50 {
			wg.Go(func() {
				<-start
				v, err := replicas[i%2].Consume(ctx, "webauthn/ceremony/c1")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && string(v) == "challenge":
					wins++
				case !errors.Is(err, store.ErrNotFound):
					t.Errorf("Consume = %q, %v", v, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins != 1 {
			t.Fatalf("round %d: %d of 50 callers on two replicas consumed the value, want 1", round, wins)
		}
	}
}

func BenchmarkStore(b *testing.B) {
	c := pgtest.Start(b)
	storetest.Bench(b, func(b *testing.B) store.KV { return open(b, c.NewDatabase(b), 0) })
}

// The listener's connection dies (a database restart, a proxy timeout): it
// reconnects, and Wait on that replica still wakes on another's write.
func TestListenerReconnects(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	a, b := open(t, dsn, 0), open(t, dsn, 0)
	ctx := t.Context()
	var killed int
	q(t, dsn, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'keygate-feed-listener'`, &killed)
	if killed != 2 {
		t.Fatalf("terminated %d listener connections, want 2 (one per replica)", killed)
	}
	head, err := b.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		got := make(chan error, 1)
		go func() { _, err := b.Wait(ctx, head); got <- err }()
		time.Sleep(300 * time.Millisecond) // past the first reconnect
		start := time.Now()
		if _, err := a.Set(ctx, "session/y", []byte{byte(i)}, store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("write %d: Wait woke after %v; the listener did not come back", i, d)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("write %d: Wait did not wake", i)
		}
		if head, err = b.Head(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// PostgreSQL goes away and comes back: calls fail with an error (never a
// wrong answer such as ErrNotFound) while it is down, and everything works
// again by itself once it is back, the feed's listener included; nothing
// written before the outage is lost.
func TestDatabaseOutage(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	a, b := open(t, dsn, 0), open(t, dsn, 0)
	ctx := t.Context()
	v, err := a.Set(ctx, "user/alice", []byte("alice"), store.WriteOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Stop(t)
	down, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.Ping(down); err == nil {
		t.Fatal("Ping succeeded with the database stopped")
	}
	if _, err := a.Get(down, "user/alice"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get with the database stopped = %v, want an error other than ErrNotFound", err)
	}
	if _, err := a.Set(down, "user/bob", []byte("bob"), store.WriteOptions{}); err == nil {
		t.Fatal("Set succeeded with the database stopped")
	}
	c.Resume(t)

	// Connections cut by the outage are replaced as they are found dead.
	deadline := time.Now().Add(10 * time.Second)
	for a.Ping(ctx) != nil || b.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the stores did not reconnect within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var it store.Item
	for {
		if it, err = b.Get(ctx, "user/alice"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || it.Version != v || string(it.Value) != "alice" {
		t.Fatalf("after the outage Get = %q v%d, %v; want alice v%d", it.Value, it.Version, err, v)
	}
	if _, err := b.Get(ctx, "user/bob"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the Set that failed during the outage left something: %v", err)
	}
	// The listeners are back: a write on a wakes Wait on b promptly.
	head, err := b.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Both listeners reconnect within their back-off.
	for n := 0; n != 2; {
		q(t, dsn, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'keygate-feed-listener'`, &n)
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2 listeners reconnected within 10 s", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := make(chan error, 1)
	go func() { _, err := b.Wait(ctx, head); got <- err }()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	for {
		_, err := a.Set(ctx, "session/z", []byte("z"), store.WriteOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("Set after the outage: %v", err)
		}
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Wait woke %v after the write: the listener did not reconnect", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not wake after the outage")
	}
}
