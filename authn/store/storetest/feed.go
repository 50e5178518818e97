package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
)

// FeedOptions are what RunFeed asks of the backend it opens.
type FeedOptions struct {
	// Retention is the number of changes the backend must keep at least
	// (it may then trim older ones): the gap case sets it small to force
	// ErrGap. 0 means the backend's default.
	Retention int
}

// gapRetention is the retention the gap case asks for.
const gapRetention = 16

// RunFeed runs the change-feed cases of the suite (store.Feed). open must
// return a new, empty store each time, retaining changes as opt asks; the
// suite closes it. A backend that trims its change log in the background
// should implement store.Collector: the gap case runs RunGC every 50 ms
// while it waits for the gap, for at most 10 s.
//
//	func TestFeed(t *testing.T) {
//		storetest.RunFeed(t, func(t *testing.T, opt storetest.FeedOptions) store.Backend {
//			return openMyBackend(t, opt.Retention)
//		})
//	}
func RunFeed(t *testing.T, open func(t *testing.T, opt FeedOptions) store.Backend) {
	t.Helper()
	tests := []struct {
		name     string
		opt      FeedOptions
		parallel bool
		fn       func(t *testing.T, kv store.Backend)
	}{
		{"Order", FeedOptions{}, false, testFeedOrder},
		{"NoChangeForNothing", FeedOptions{}, false, testFeedNoChange},
		{"Copies", FeedOptions{}, false, testFeedCopies},
		{"Prefix", FeedOptions{}, false, testFeedPrefix},
		{"PagingAndReconnect", FeedOptions{}, false, testFeedReconnect},
		{"GapAndCatchUp", FeedOptions{Retention: gapRetention}, false, testFeedGap},
		{"Wait", FeedOptions{}, false, testFeedWait},
		{"ConcurrentWriters", FeedOptions{}, false, testFeedConcurrent},
		{"ContextCanceled", FeedOptions{}, false, testFeedContext},
		{"Closed", FeedOptions{}, false, testFeedClosed},
		// The only case that waits for time to pass.
		{"Expiry", FeedOptions{}, true, testFeedExpiry},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.parallel {
				t.Parallel()
			}
			kv := open(t, tc.opt)
			t.Cleanup(func() {
				if err := kv.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, kv)
		})
	}
}

// want is an expected change: the key, the value (nil: a removal) and the
// version the write returned (0 for a removal).
type want struct {
	key     string
	value   []byte
	version uint64
}

func (w want) String() string {
	if w.value == nil {
		return fmt.Sprintf("delete %q", w.key)
	}
	return fmt.Sprintf("set %q=%q v%d", w.key, trunc(w.value), w.version)
}

func changeString(c store.Change) string {
	if c.Deleted {
		return fmt.Sprintf("delete %q", c.Key)
	}
	return fmt.Sprintf("set %q=%q v%d", c.Key, trunc(c.Value), c.Version)
}

// checkChanges compares a page of changes with the expected ones, and
// checks what holds for every change: increasing Seqs above after, a
// removal without value or version, a write with both.
func checkChanges(t *testing.T, got []store.Change, after uint64, wants []want) {
	t.Helper()
	var gs, ws []string
	for _, c := range got {
		gs = append(gs, changeString(c))
	}
	for _, w := range wants {
		ws = append(ws, w.String())
	}
	if !slices.Equal(gs, ws) {
		t.Fatalf("changes:\n got  %q\n want %q", gs, ws)
	}
	prev := after
	for _, c := range got {
		if c.Seq <= prev {
			t.Errorf("change %s has Seq %d after %d: Seqs must increase", changeString(c), c.Seq, prev)
		}
		prev = c.Seq
		switch {
		case c.Deleted && (c.Value != nil || c.Version != 0):
			t.Errorf("removal of %q carries value %q, version %d; want nil and 0", c.Key, c.Value, c.Version)
		case !c.Deleted && (c.Value == nil || c.Version == 0):
			t.Errorf("write of %q carries value %v, version %d; want a non-nil value and a version", c.Key, c.Value, c.Version)
		}
	}
}

func mustHead(t testing.TB, f store.Feed) uint64 {
	t.Helper()
	h, err := f.Head(context.Background())
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return h
}

// drain reads every change after after under prefix, page by page, and
// returns them with the cursor to continue from.
func drain(t testing.TB, f store.Feed, prefix string, after uint64, limit int) ([]store.Change, uint64) {
	t.Helper()
	var all []store.Change
	for {
		chs, next, err := f.Changes(context.Background(), prefix, after, limit)
		if err != nil {
			t.Fatalf("Changes(%q, %d, %d): %v", prefix, after, limit, err)
		}
		if next < after {
			t.Fatalf("Changes(%q, %d): cursor went back to %d", prefix, after, next)
		}
		if len(chs) > limit && limit > 0 {
			t.Fatalf("Changes(limit %d) returned %d changes", limit, len(chs))
		}
		for _, c := range chs {
			if c.Seq > next {
				t.Fatalf("Changes returned Seq %d beyond its cursor %d", c.Seq, next)
			}
		}
		all = append(all, chs...)
		if len(chs) == 0 || (limit > 0 && len(chs) < limit) {
			return all, next
		}
		after = next
	}
}

func testFeedOrder(t *testing.T, kv store.Backend) {
	ctx := t.Context()
	h0 := mustHead(t, kv)
	if h0 != 0 {
		t.Errorf("Head of a new store = %d, want 0", h0)
	}
	va1 := mustSet(t, kv, "a", []byte("1"))
	va2, err := kv.CompareAndSet(ctx, "a", []byte("2"), va1, store.WriteOptions{Durable: true})
	if err != nil {
		t.Fatalf("CompareAndSet: %v", err)
	}
	vb, err := kv.CompareAndSet(ctx, "b", []byte{}, 0, store.WriteOptions{})
	if err != nil {
		t.Fatalf("CompareAndSet(create): %v", err)
	}
	if err := kv.CompareAndDelete(ctx, "b", vb); err != nil {
		t.Fatalf("CompareAndDelete: %v", err)
	}
	vc := mustSetOpt(t, kv, "c", []byte("once"), store.WriteOptions{TTL: time.Hour})
	if _, err := kv.Consume(ctx, "c"); err != nil {
		t.Fatalf("Consume: %v", err)
	}
	mustDelete(t, kv, "a")
	vd := mustSet(t, kv, "d", nil)

	wants := []want{
		{"a", []byte("1"), va1}, {"a", []byte("2"), va2},
		{"b", []byte{}, vb}, {"b", nil, 0},
		{"c", []byte("once"), vc}, {"c", nil, 0},
		{"a", nil, 0},
		{"d", []byte{}, vd},
	}
	for _, limit := range []int{0, 1, 3, 100} {
		got, next := drain(t, kv, "", h0, limit)
		checkChanges(t, got, h0, wants)
		head := mustHead(t, kv)
		if next != head || head != got[len(got)-1].Seq {
			t.Errorf("limit %d: cursor %d, head %d, last Seq %d; want all three equal", limit, next, head, got[len(got)-1].Seq)
		}
	}
	got, _ := drain(t, kv, "", h0, 0)
	if exp := got[4].ExpiresAt; exp.Before(time.Now().Add(time.Hour-time.Second)) || exp.After(time.Now().Add(time.Hour+ttlSlack)) {
		t.Errorf("change of a key with a 1 h TTL has ExpiresAt %v, want about an hour from now", exp)
	}
	if !got[0].ExpiresAt.IsZero() {
		t.Errorf("change of a key without TTL has ExpiresAt %v, want zero", got[0].ExpiresAt)
	}

	// At the head, and past it: an empty page and the cursor as given.
	head := mustHead(t, kv)
	for _, after := range []uint64{head, head + 1000} {
		chs, next, err := kv.Changes(ctx, "", after, 10)
		if err != nil || len(chs) != 0 || next != after {
			t.Errorf("Changes(after %d, head %d) = %d changes, next %d, %v; want none, %d, nil", after, head, len(chs), next, err, after)
		}
	}
}

// testFeedNoChange: writes that change nothing (a lost compare, removing a
// missing key, consuming it) make no entry; the head stays where it was.
func testFeedNoChange(t *testing.T, kv store.Backend) {
	ctx := t.Context()
	v := mustSet(t, kv, "k", []byte("v"))
	h := mustHead(t, kv)
	if _, err := kv.CompareAndSet(ctx, "k", []byte("x"), v+1000, store.WriteOptions{}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale CompareAndSet error = %v, want ErrConflict", err)
	}
	if _, err := kv.CompareAndSet(ctx, "k", []byte("x"), 0, store.WriteOptions{}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("create-if-absent of a present key error = %v, want ErrConflict", err)
	}
	if err := kv.CompareAndDelete(ctx, "k", v+1000); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale CompareAndDelete error = %v, want ErrConflict", err)
	}
	if err := kv.CompareAndDelete(ctx, "missing", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CompareAndDelete(missing) error = %v, want ErrNotFound", err)
	}
	if _, err := kv.Consume(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Consume(missing) error = %v, want ErrNotFound", err)
	}
	mustDelete(t, kv, "missing")
	if got, _ := drain(t, kv, "", h, 0); len(got) != 0 {
		var gs []string
		for _, c := range got {
			gs = append(gs, changeString(c))
		}
		t.Errorf("writes that changed nothing made changes %q", gs)
	}
	mustGet(t, kv, "k", []byte("v"), v)
}

// testFeedCopies: the feed keeps its own copy of a written value and hands
// out copies.
func testFeedCopies(t *testing.T, kv store.Backend) {
	h := mustHead(t, kv)
	val := []byte("original")
	v := mustSet(t, kv, "k", val)
	copy(val, "CHANGED!")
	chs, _ := drain(t, kv, "", h, 0)
	checkChanges(t, chs, h, []want{{"k", []byte("original"), v}})
	copy(chs[0].Value, "mutated!")
	chs, _ = drain(t, kv, "", h, 0)
	checkChanges(t, chs, h, []want{{"k", []byte("original"), v}})
}

func testFeedPrefix(t *testing.T, kv store.Backend) {
	h := mustHead(t, kv)
	vs1 := mustSet(t, kv, "s/1", []byte("a"))
	mustSet(t, kv, "p/1", []byte("b"))
	mustSet(t, kv, "s", []byte("not under s/"))
	vs2 := mustSet(t, kv, "s/2", []byte("c"))
	mustSet(t, kv, "p/2", []byte("d"))
	mustDelete(t, kv, "s/1")
	mustSet(t, kv, "q/1", []byte("e"))
	head := mustHead(t, kv)

	got, next := drain(t, kv, "s/", h, 0)
	checkChanges(t, got, h, []want{{"s/1", []byte("a"), vs1}, {"s/2", []byte("c"), vs2}, {"s/1", nil, 0}})
	// The cursor covers what the prefix filtered out, so a follower of a
	// quiet prefix does not examine the same changes again.
	if next != head {
		t.Errorf("Changes(s/) cursor = %d, want the head %d (it examined every change)", next, head)
	}
	chs, next, err := kv.Changes(t.Context(), "none/", h, 10)
	if err != nil || len(chs) != 0 || next != head {
		t.Errorf("Changes(none/) = %d changes, next %d, %v; want none, %d, nil", len(chs), next, err, head)
	}
	// A full page stops at its last change, not at the head.
	chs, next, err = kv.Changes(t.Context(), "s/", h, 1)
	if err != nil || len(chs) != 1 || next != chs[0].Seq {
		t.Errorf("Changes(s/, limit 1) = %d changes, next %d, %v; want 1 and its Seq", len(chs), next, err)
	}
}

// testFeedReconnect: a follower that reads in small pages, stops and
// resumes from its cursor while writes go on, sees each change once.
func testFeedReconnect(t *testing.T, kv store.Backend) {
	ctx := t.Context()
	cur := mustHead(t, kv)
	var wants []want
	write := func(i int) {
		key := fmt.Sprintf("r/%03d", i)
		if i%5 == 4 {
			mustDelete(t, kv, fmt.Sprintf("r/%03d", i-1))
			wants = append(wants, want{key: fmt.Sprintf("r/%03d", i-1)})
			return
		}
		v := mustSet(t, kv, key, []byte(key))
		wants = append(wants, want{key, []byte(key), v})
	}
	i := 0
	for ; i < 10; i++ {
		write(i)
	}
	var got []store.Change
	for round := 0; ; round++ {
		chs, next, err := kv.Changes(ctx, "r/", cur, 3)
		if err != nil {
			t.Fatalf("Changes: %v", err)
		}
		got = append(got, chs...)
		cur = next
		// Writes while the follower is away, for a while.
		if round < 8 {
			write(i)
			write(i + 1)
			i += 2
		} else if len(chs) == 0 {
			break
		}
	}
	checkChanges(t, got, 0, wants)
}

func testFeedGap(t *testing.T, kv store.Backend) {
	ctx := t.Context()
	if c, ok := kv.(store.Collector); ok {
		gcCtx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { c.RunGC(gcCtx, 50*time.Millisecond) })
		defer wg.Wait()
		defer stop()
	}
	h0 := mustHead(t, kv)
	for i := range 3 * gapRetention {
		mustSet(t, kv, fmt.Sprintf("g/%03d", i%(gapRetention/2)), []byte(fmt.Sprint(i)))
	}
	// Within retention: no gap.
	h := mustHead(t, kv)
	var wants []want
	for i := range gapRetention / 2 {
		key := fmt.Sprintf("late/%d", i)
		wants = append(wants, want{key, []byte("x"), mustSet(t, kv, key, []byte("x"))})
	}
	got, _ := drain(t, kv, "", h, 0)
	checkChanges(t, got, h, wants)

	// From the start, more than three times the retention ago: ErrGap,
	// once the backend has trimmed (at once, or by its collector).
	deadline := time.Now().Add(10 * time.Second)
	for {
		chs, _, err := kv.Changes(ctx, "g/", h0, 0)
		if errors.Is(err, store.ErrGap) {
			if len(chs) != 0 {
				t.Errorf("Changes with ErrGap returned %d changes, want none", len(chs))
			}
			break
		}
		if err != nil {
			t.Fatalf("Changes from the start: %v, want ErrGap", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Changes from %d after %d changes with retention %d: no ErrGap within 10 s", h0, 3*gapRetention+gapRetention/2, gapRetention)
		}
		time.Sleep(pollEvery)
	}

	// Catch-up: Head, then Scan, then follow from that head; writes racing
	// with the Scan are seen once more (harmless) or by the feed.
	state := map[string]store.Item{}
	head := mustHead(t, kv)
	if err := kv.Scan(ctx, "g/", func(it store.Item) error { state[it.Key] = it; return nil }); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	mustSet(t, kv, "g/new", []byte("new"))
	mustDelete(t, kv, "g/000")
	v, err := kv.CompareAndSet(ctx, "g/001", []byte("cas"), state["g/001"].Version, store.WriteOptions{})
	if err != nil {
		t.Fatalf("CompareAndSet: %v", err)
	}
	chs, _ := drain(t, kv, "g/", head, 0)
	for _, c := range chs {
		if c.Deleted {
			delete(state, c.Key)
		} else if old, ok := state[c.Key]; !ok || old.Version != c.Version {
			state[c.Key] = store.Item{Key: c.Key, Value: c.Value, Version: c.Version}
		}
	}
	if state["g/001"].Version != v {
		t.Errorf("after catch-up g/001 has version %d, want %d", state["g/001"].Version, v)
	}
	truth := map[string]store.Item{}
	if err := kv.Scan(ctx, "g/", func(it store.Item) error { truth[it.Key] = it; return nil }); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if len(state) != len(truth) {
		t.Errorf("caught-up state has %d keys, the store %d", len(state), len(truth))
	}
	for k, it := range truth {
		if s := state[k]; s.Version != it.Version || !bytes.Equal(s.Value, it.Value) {
			t.Errorf("caught-up %q = %q v%d, store has %q v%d", k, s.Value, s.Version, it.Value, it.Version)
		}
	}
}

func testFeedWait(t *testing.T, kv store.Backend) {
	ctx := t.Context()
	mustSet(t, kv, "w/0", []byte("x"))
	h := mustHead(t, kv)

	// Already past: at once.
	if got, err := kv.Wait(ctx, h-1); err != nil || got != h {
		t.Errorf("Wait(head-1) = %d, %v; want %d at once", got, err, h)
	}
	// Nothing happens: the context decides.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if got, err := kv.Wait(short, h); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with nothing written = %d, %v; want context.DeadlineExceeded", got, err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Errorf("Wait returned after %v, before its context ended", d)
	}

	// A write wakes it, with the new head.
	type result struct {
		head uint64
		err  error
	}
	done := make(chan result, 1)
	go func() {
		h, err := kv.Wait(ctx, h)
		done <- result{h, err}
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("Wait returned %d, %v before anything was written", r.head, r.err)
	default:
	}
	v := mustSet(t, kv, "w/1", []byte("y"))
	select {
	case r := <-done:
		if r.err != nil || r.head <= h {
			t.Errorf("Wait after a write = %d, %v; want a head > %d", r.head, r.err, h)
		}
		chs, _ := drain(t, kv, "w/", h, 0)
		checkChanges(t, chs, h, []want{{"w/1", []byte("y"), v}})
	case <-time.After(2 * time.Second):
		t.Fatal("Wait did not wake within 2 s of a write")
	}
}

// testFeedConcurrent: 20 writers (sets, compare-and-set increments of one
// shared key, removals) while a follower reads: it sees every committed
// change exactly once, in Seq order, and its state ends equal to the store.
func testFeedConcurrent(t *testing.T, kv store.Backend) {
	const (
		writers = 20
		each    = 25
	)
	ctx := t.Context()
	vShared := mustSet(t, kv, "c/shared", []byte("0"))
	start := mustHead(t, kv)
	var (
		mu      sync.Mutex
		written = map[uint64]string{} // version -> key
		deletes = map[string]int{}
		wg      sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for j := range each {
				key := fmt.Sprintf("c/%02d/%02d", w, j%7)
				v, err := kv.Set(ctx, key, []byte(key), store.WriteOptions{})
				if err != nil {
					t.Errorf("Set: %v", err)
					return
				}
				mu.Lock()
				written[v] = key
				mu.Unlock()
				if j%4 == 3 {
					if _, err := kv.Consume(ctx, key); err != nil {
						t.Errorf("Consume: %v", err)
						return
					}
					mu.Lock()
					deletes[key]++
					mu.Unlock()
				}
				if j%3 == 0 {
					// Blind writes racing on one key: the feed's last
					// word on it must be what the store holds.
					v, err := kv.Set(ctx, "c/hot", []byte(fmt.Sprintf("%d/%d", w, j)), store.WriteOptions{})
					if err != nil {
						t.Errorf("Set: %v", err)
						return
					}
					mu.Lock()
					written[v] = "c/hot"
					mu.Unlock()
				}
				if j%5 == 0 {
					if err := increment(ctx, kv, "c/shared", 1000); err != nil {
						t.Errorf("increment: %v", err)
						return
					}
				}
			}
		})
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()

	var (
		got   []store.Change
		cur   = start
		state = map[string]store.Item{"c/shared": {Key: "c/shared", Value: []byte("0"), Version: vShared}}
	)
	follow := func() {
		for {
			chs, next, err := kv.Changes(ctx, "c/", cur, 16)
			if err != nil {
				t.Fatalf("Changes: %v", err)
			}
			got = append(got, chs...)
			for _, c := range chs {
				if c.Deleted {
					delete(state, c.Key)
				} else {
					state[c.Key] = store.Item{Key: c.Key, Value: c.Value, Version: c.Version}
				}
			}
			cur = next
			if len(chs) < 16 {
				return
			}
		}
	}
	for running := true; running; {
		select {
		case <-writersDone:
			running = false
		default:
		}
		follow()
		wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err := kv.Wait(wctx, cur)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait: %v", err)
		}
	}
	follow()

	seenVersions := map[uint64]bool{}
	seenDeletes := map[string]int{}
	sharedWrites := 0
	prev := start
	for _, c := range got {
		if c.Seq <= prev {
			t.Fatalf("Seq %d after %d: the follower saw changes out of order", c.Seq, prev)
		}
		prev = c.Seq
		switch {
		case c.Deleted:
			seenDeletes[c.Key]++
		case c.Key == "c/shared":
			sharedWrites++
		default:
			if seenVersions[c.Version] {
				t.Errorf("version %d of %q seen twice", c.Version, c.Key)
			}
			seenVersions[c.Version] = true
			if written[c.Version] != c.Key {
				t.Errorf("change %s: no writer wrote it", changeString(c))
			}
		}
	}
	if len(seenVersions) != len(written) {
		t.Errorf("follower saw %d of the %d writes", len(seenVersions), len(written))
	}
	if !mapsEqual(seenDeletes, deletes) {
		t.Errorf("follower saw removals %v, writers made %v", seenDeletes, deletes)
	}
	if want := writers * ((each + 4) / 5); sharedWrites != want {
		t.Errorf("follower saw %d writes of the shared counter, want %d", sharedWrites, want)
	}
	truth := map[string]store.Item{}
	if err := kv.Scan(ctx, "c/", func(it store.Item) error { truth[it.Key] = it; return nil }); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if len(truth) != len(state) {
		t.Errorf("state from the feed has %d keys, the store %d", len(state), len(truth))
	}
	for k, it := range truth {
		if s := state[k]; s.Version != it.Version || !bytes.Equal(s.Value, it.Value) {
			t.Errorf("from the feed %q = %q v%d, store has %q v%d", k, s.Value, s.Version, it.Value, it.Version)
		}
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func testFeedContext(t *testing.T, kv store.Backend) {
	mustSet(t, kv, "k", []byte("v"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := kv.Head(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Head(canceled) error = %v, want context.Canceled", err)
	}
	if chs, _, err := kv.Changes(ctx, "", 0, 0); !errors.Is(err, context.Canceled) || len(chs) != 0 {
		t.Errorf("Changes(canceled) = %d changes, %v; want none, context.Canceled", len(chs), err)
	}
	if _, err := kv.Wait(ctx, 1<<62); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait(canceled) error = %v, want context.Canceled", err)
	}
}

func testFeedClosed(t *testing.T, kv store.Backend) {
	h := mustHead(t, kv)
	done := make(chan error, 1)
	go func() {
		_, err := kv.Wait(t.Context(), h+1000)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := kv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("Wait across Close error = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait still blocked 5 s after Close")
	}
	ctx := context.Background()
	if _, err := kv.Head(ctx); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Head after Close error = %v, want ErrClosed", err)
	}
	if _, _, err := kv.Changes(ctx, "", 0, 0); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Changes after Close error = %v, want ErrClosed", err)
	}
	if _, err := kv.Wait(ctx, 0); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Wait after Close error = %v, want ErrClosed", err)
	}
}

// testFeedExpiry: a change carries its key's expiry; the expiry itself
// makes no change, nor does removing the expired key.
func testFeedExpiry(t *testing.T, kv store.Backend) {
	ctx := t.Context()
	h := mustHead(t, kv)
	before := time.Now()
	v := mustSetOpt(t, kv, "x/ttl", []byte("short"), store.WriteOptions{TTL: shortTTL})
	chs, _ := drain(t, kv, "x/", h, 0)
	checkChanges(t, chs, h, []want{{"x/ttl", []byte("short"), v}})
	if lo, hi := before.Add(shortTTL).Truncate(time.Second), time.Now().Add(shortTTL+ttlSlack); chs[0].ExpiresAt.Before(lo) || chs[0].ExpiresAt.After(hi) {
		t.Errorf("Change.ExpiresAt = %v, want within [%v, %v]", chs[0].ExpiresAt, lo, hi)
	}
	it, err := kv.Get(ctx, "x/ttl")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !it.ExpiresAt.Equal(chs[0].ExpiresAt) {
		t.Errorf("Change.ExpiresAt = %v, Get says %v", chs[0].ExpiresAt, it.ExpiresAt)
	}

	h = mustHead(t, kv)
	deadline := before.Add(shortTTL + ttlSlack)
	for {
		_, err := kv.Get(ctx, "x/ttl")
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("x/ttl still readable %v after it was written with TTL %v", time.Since(before), shortTTL)
		}
		time.Sleep(pollEvery)
	}
	mustDelete(t, kv, "x/ttl") // expired: nothing to remove
	if _, err := kv.Consume(ctx, "x/ttl"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Consume(expired) error = %v, want ErrNotFound", err)
	}
	vm := mustSet(t, kv, "x/marker", []byte("m"))
	chs, _ = drain(t, kv, "x/", h, 0)
	checkChanges(t, chs, h, []want{{"x/marker", []byte("m"), vm}})
	if strings.Contains(fmt.Sprint(chs), "x/ttl") {
		t.Errorf("expiry made a change: %v", chs)
	}
}
