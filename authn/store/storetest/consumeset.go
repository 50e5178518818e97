package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
)

// RunConsumeAndSet runs the cases of the optional store.ConsumeSetter
// capability: both writes or neither, the consumed key's version guards it,
// one winner among concurrent consumers, the feed's two changes in order.
// open must return a new, empty store that has the capability (the suite
// fails if it does not); the suite closes it.
//
//	func TestConsumeAndSet(t *testing.T) {
//		storetest.RunConsumeAndSet(t, func(t *testing.T) store.Backend { return openMyBackend(t) })
//	}
func RunConsumeAndSet(t *testing.T, open func(t *testing.T) store.Backend) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, kv store.Backend, cs store.ConsumeSetter)
	}{
		{"Both", testCSBoth},
		{"TakeGone", testCSTakeGone},
		{"KeyConflict", testCSKeyConflict},
		{"SameKey", testCSSameKey},
		{"ConcurrentConsumers", testCSConcurrent},
		{"ConcurrentRecordWriters", testCSRecordWriters},
		{"ContextAndClose", testCSContextAndClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kv := open(t)
			t.Cleanup(func() {
				if err := kv.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			cs, ok := kv.(store.ConsumeSetter)
			if !ok {
				t.Fatalf("%T does not implement store.ConsumeSetter", kv)
			}
			tc.fn(t, kv, cs)
		})
	}
}

// testCSBoth: the consumed key is gone, the record written (created, then
// updated with a TTL), and the feed has the removal, then the write.
func testCSBoth(t *testing.T, kv store.Backend, cs store.ConsumeSetter) {
	ctx := t.Context()
	tv := mustSetOpt(t, kv, "ceremony/1", []byte("challenge"), store.WriteOptions{TTL: time.Hour})
	h := mustHead(t, kv)
	ver, err := cs.ConsumeAndSet(ctx, "ceremony/1", tv, "user/alice", []byte("count=1"), 0, store.WriteOptions{})
	if err != nil {
		t.Fatalf("ConsumeAndSet(create): %v", err)
	}
	if ver == 0 || ver == tv {
		t.Fatalf("ConsumeAndSet returned version %d (consumed key had %d)", ver, tv)
	}
	mustGet(t, kv, "user/alice", []byte("count=1"), ver)
	if _, err := kv.Get(ctx, "ceremony/1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("consumed key: Get error = %v, want ErrNotFound", err)
	}
	got, _ := drain(t, kv, "", h, 0)
	checkChanges(t, got, h, []want{{"ceremony/1", nil, 0}, {"user/alice", []byte("count=1"), ver}})

	// Again, on the existing record and with a TTL for it.
	tv2 := mustSet(t, kv, "ceremony/2", []byte("challenge 2"))
	h = mustHead(t, kv)
	ver2, err := cs.ConsumeAndSet(ctx, "ceremony/2", tv2, "user/alice", []byte("count=2"), ver, store.WriteOptions{TTL: time.Hour})
	if err != nil {
		t.Fatalf("ConsumeAndSet(update): %v", err)
	}
	it := mustGet(t, kv, "user/alice", []byte("count=2"), ver2)
	if it.ExpiresAt.Before(time.Now().Add(time.Hour-time.Second)) || it.ExpiresAt.After(time.Now().Add(time.Hour+ttlSlack)) {
		t.Errorf("record written with a 1 h TTL expires at %v", it.ExpiresAt)
	}
	if _, err := kv.Consume(ctx, "ceremony/2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("consumed key consumed again: error = %v, want ErrNotFound", err)
	}
	got, _ = drain(t, kv, "", h, 0)
	checkChanges(t, got, h, []want{{"ceremony/2", nil, 0}, {"user/alice", []byte("count=2"), ver2}})
}

// testCSTakeGone: a consumed key that is missing, was consumed already or
// was written again since it was read is ErrNotFound, and nothing changes:
// not the record, not the consumed key, not the feed.
func testCSTakeGone(t *testing.T, kv store.Backend, cs store.ConsumeSetter) {
	ctx := t.Context()
	rv := mustSet(t, kv, "user/alice", []byte("count=1"))
	old := mustSet(t, kv, "ceremony/rewritten", []byte("first"))
	cur := mustSet(t, kv, "ceremony/rewritten", []byte("second"))
	used := mustSet(t, kv, "ceremony/used", []byte("x"))
	if _, err := kv.Consume(ctx, "ceremony/used"); err != nil {
		t.Fatal(err)
	}
	h := mustHead(t, kv)
	for _, tc := range []struct {
		name string
		take string
		ver  uint64
	}{
		{"missing", "ceremony/missing", 1},
		{"consumed already", "ceremony/used", used},
		{"written again", "ceremony/rewritten", old},
		{"version 0", "ceremony/rewritten", 0},
	} {
		_, err := cs.ConsumeAndSet(ctx, tc.take, tc.ver, "user/alice", []byte("count=2"), rv, store.WriteOptions{Durable: true})
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: error = %v, want ErrNotFound", tc.name, err)
		}
	}
	mustGet(t, kv, "user/alice", []byte("count=1"), rv)
	mustGet(t, kv, "ceremony/rewritten", []byte("second"), cur)
	if got, _ := drain(t, kv, "", h, 0); len(got) != 0 {
		t.Errorf("refused ConsumeAndSet calls made %d changes", len(got))
	}
}

// testCSKeyConflict: a stale version of the record, a record that exists
// when absence was expected, or one missing when a version was: ErrConflict,
// and the consumed key stays (same value, same version) for a retry.
func testCSKeyConflict(t *testing.T, kv store.Backend, cs store.ConsumeSetter) {
	ctx := t.Context()
	tv := mustSet(t, kv, "ceremony/1", []byte("challenge"))
	rv := mustSet(t, kv, "user/alice", []byte("count=1"))
	h := mustHead(t, kv)
	for _, tc := range []struct {
		name string
		key  string
		prev uint64
	}{
		{"stale version", "user/alice", rv + 1000},
		{"exists, absence expected", "user/alice", 0},
		{"missing, a version expected", "user/bob", rv},
	} {
		_, err := cs.ConsumeAndSet(ctx, "ceremony/1", tv, tc.key, []byte("count=2"), tc.prev, store.WriteOptions{})
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: error = %v, want ErrConflict", tc.name, err)
		}
	}
	mustGet(t, kv, "ceremony/1", []byte("challenge"), tv)
	mustGet(t, kv, "user/alice", []byte("count=1"), rv)
	if _, err := kv.Get(ctx, "user/bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("user/bob after a refused write: %v, want ErrNotFound", err)
	}
	if got, _ := drain(t, kv, "", h, 0); len(got) != 0 {
		t.Errorf("refused ConsumeAndSet calls made %d changes", len(got))
	}
	// The retry with the current version succeeds.
	if _, err := cs.ConsumeAndSet(ctx, "ceremony/1", tv, "user/alice", []byte("count=2"), rv, store.WriteOptions{}); err != nil {
		t.Fatalf("retry with the current version: %v", err)
	}
}

// testCSSameKey: consuming and writing one key is refused, and changes
// nothing.
func testCSSameKey(t *testing.T, kv store.Backend, cs store.ConsumeSetter) {
	v := mustSet(t, kv, "k", []byte("v"))
	if _, err := cs.ConsumeAndSet(t.Context(), "k", v, "k", []byte("new"), v, store.WriteOptions{}); err == nil {
		t.Fatal("ConsumeAndSet of one key: no error")
	}
	mustGet(t, kv, "k", []byte("v"), v)
}

// testCSConcurrent: 50 callers consume one key, each writing a record of
// its own: exactly one succeeds, and only its record exists (a loser's
// write is not left behind).
func testCSConcurrent(t *testing.T, kv store.Backend, cs store.ConsumeSetter) {
	const callers = 50
	for round := range 3 {
		take := fmt.Sprintf("once/%d", round)
		tv := mustSet(t, kv, take, []byte("secret"))
		var (
			start     = make(chan struct{})
			wg        sync.WaitGroup
			mu        sync.Mutex
			winners   []int
			otherErrs []error
		)
		for i := range callers {
			wg.Go(func() {
				<-start
				_, err := cs.ConsumeAndSet(t.Context(), take, tv, fmt.Sprintf("rec/%d/%d", round, i), []byte("won"), 0, store.WriteOptions{})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					winners = append(winners, i)
				case !errors.Is(err, store.ErrNotFound):
					otherErrs = append(otherErrs, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d of %d concurrent ConsumeAndSet calls succeeded, want exactly 1", round, len(winners), callers)
		}
		for _, err := range otherErrs {
			t.Errorf("round %d: error = %v, want nil or ErrNotFound", round, err)
		}
		var recs []string
		if err := kv.Scan(t.Context(), fmt.Sprintf("rec/%d/", round), func(it store.Item) error {
			recs = append(recs, it.Key)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("rec/%d/%d", round, winners[0]); len(recs) != 1 || recs[0] != want {
			t.Errorf("round %d: records %q after the race, want only %q", round, recs, want)
		}
	}
}

// testCSRecordWriters: callers with a key each to consume race on one
// record, each re-reading it after a conflict (the WebAuthn finish's
// loop): every consumed key is gone and every update counted, none lost.
func testCSRecordWriters(t *testing.T, kv store.Backend, cs store.ConsumeSetter) {
	const workers = 16
	ctx := t.Context()
	mustSet(t, kv, "counter", []byte("0"))
	takes := make([]uint64, workers)
	for i := range workers {
		takes[i] = mustSet(t, kv, fmt.Sprintf("take/%d", i), []byte("x"))
	}
	start := make(chan struct{})
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			<-start
			for range 10000 {
				it, err := kv.Get(ctx, "counter")
				if err != nil {
					errs <- err
					return
				}
				n, err := strconv.Atoi(string(it.Value))
				if err != nil {
					errs <- fmt.Errorf("counter value %q: %w", it.Value, err)
					return
				}
				_, err = cs.ConsumeAndSet(ctx, fmt.Sprintf("take/%d", i), takes[i], "counter", []byte(strconv.Itoa(n+1)), it.Version, store.WriteOptions{})
				if err == nil {
					return
				}
				if !errors.Is(err, store.ErrConflict) {
					errs <- fmt.Errorf("worker %d: %w", i, err)
					return
				}
			}
			errs <- fmt.Errorf("worker %d: still conflicting", i)
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	it, err := kv.Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if string(it.Value) != fmt.Sprint(workers) {
		t.Errorf("counter = %s after %d updates, want %d (lost updates)", it.Value, workers, workers)
	}
	for i := range workers {
		if _, err := kv.Get(ctx, fmt.Sprintf("take/%d", i)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("take/%d after its update: %v, want ErrNotFound", i, err)
		}
	}
}

// testCSContextAndClose: a done context and a closed store refuse the call
// and change nothing.
func testCSContextAndClose(t *testing.T, kv store.Backend, cs store.ConsumeSetter) {
	tv := mustSet(t, kv, "ceremony/1", []byte("challenge"))
	rv := mustSet(t, kv, "user/alice", []byte("count=1"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := cs.ConsumeAndSet(ctx, "ceremony/1", tv, "user/alice", []byte("count=2"), rv, store.WriteOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: error = %v, want context.Canceled", err)
	}
	mustGet(t, kv, "ceremony/1", []byte("challenge"), tv)
	mustGet(t, kv, "user/alice", []byte("count=1"), rv)
	if err := kv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.ConsumeAndSet(t.Context(), "ceremony/1", tv, "user/alice", []byte("count=2"), rv, store.WriteOptions{}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("closed store: error = %v, want ErrClosed", err)
	}
}
