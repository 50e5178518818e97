// Package storetest is the conformance suite of store.KV: every backend runs
// Run from its own tests, so domain code may rely on the behaviour checked
// here whatever backend is wired in.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.KV { return openMyBackend(t) })
//	}
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
)

// Timing of the TTL test. TTLs are whole seconds because Badger's expiry has
// a granularity of one second; a backend may keep a key up to that much
// longer than its TTL, never shorter.
const (
	shortTTL  = time.Second
	ttlSlack  = 2 * time.Second // how long after shortTTL a key may still be seen
	pollEvery = 50 * time.Millisecond
)

// Run runs the suite. open must return a new, empty store each time it is
// called (every subtest gets its own); the suite closes it itself at the end
// of the subtest, so Close must be idempotent. Directories and the like are
// for open to clean up (t.TempDir, t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) store.KV) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, kv store.KV)
	}{
		{"GetMissing", testGetMissing},
		{"SetGet", testSetGet},
		{"VersionChangesOnEveryWrite", testVersionChanges},
		{"CompareAndSetCreate", testCASCreate},
		{"CompareAndSetStale", testCASStale},
		{"CompareAndSetCurrent", testCASCurrent},
		{"CompareAndSetMissing", testCASMissing},
		{"Delete", testDelete},
		{"CompareAndDelete", testCompareAndDelete},
		{"Consume", testConsume},
		{"ConsumeConcurrent", testConsumeConcurrent},
		{"CompareAndSetConcurrent", testCASConcurrent},
		{"Scan", testScan},
		{"ScanStops", testScanStops},
		{"ScanCallsBack", testScanCallsBack},
		{"ReturnsCopies", testCopies},
		{"ContextCanceled", testContextCanceled},
		{"Closed", testClosed},
		{"TTL", testTTL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "TTL" {
				// The only test that waits: let it overlap with the
				// other backends' suites when they run in parallel.
				t.Parallel()
			}
			kv := open(t)
			t.Cleanup(func() {
				if err := kv.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, kv)
		})
	}
}

func testGetMissing(t *testing.T, kv store.KV) {
	ctx := t.Context()
	if _, err := kv.Get(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(missing) error = %v, want ErrNotFound", err)
	}
	// A key that is only a prefix of another is missing too.
	mustSet(t, kv, "abc", []byte("v"))
	if _, err := kv.Get(ctx, "ab"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(prefix of a key) error = %v, want ErrNotFound", err)
	}
}

func testSetGet(t *testing.T, kv store.KV) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB
	tests := []struct {
		name  string
		key   string
		value []byte
	}{
		{"text", "user/alice", []byte(`{"name":"Alice"}`)},
		{"empty value", "empty", []byte{}},
		{"nil value", "nil", nil},
		{"binary value", "bin", []byte{0, 1, 2, 0xff, 0xfe, 0, '\n'}},
		{"binary key", "k\x00\xff\x01/\xfe", []byte("binary key")},
		{"non-UTF-8 key", "\xc3\x28", []byte("x")},
		{"large value", "large", big},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			ver, err := kv.Set(ctx, tc.key, tc.value, store.WriteOptions{})
			if err != nil {
				t.Fatalf("Set: %v", err)
			}
			if ver == 0 {
				t.Fatal("Set returned version 0")
			}
			it, err := kv.Get(ctx, tc.key)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if it.Key != tc.key {
				t.Errorf("Item.Key = %q, want %q", it.Key, tc.key)
			}
			if !bytes.Equal(it.Value, tc.value) {
				t.Errorf("Item.Value = %q, want %q", trunc(it.Value), trunc(tc.value))
			}
			if it.Version != ver {
				t.Errorf("Item.Version = %d, Set returned %d", it.Version, ver)
			}
			if !it.ExpiresAt.IsZero() {
				t.Errorf("Item.ExpiresAt = %v for a key without TTL, want zero", it.ExpiresAt)
			}
		})
	}
	t.Run("durable", func(t *testing.T) {
		ver, err := kv.Set(t.Context(), "durable", []byte("d"), store.WriteOptions{Durable: true})
		if err != nil {
			t.Fatalf("Set(Durable): %v", err)
		}
		mustGet(t, kv, "durable", []byte("d"), ver)
	})
}

func testVersionChanges(t *testing.T, kv store.KV) {
	ctx := t.Context()
	seen := map[uint64]string{}
	record := func(op string, v uint64) {
		t.Helper()
		if v == 0 {
			t.Fatalf("%s returned version 0", op)
		}
		if prev, dup := seen[v]; dup {
			t.Fatalf("%s returned version %d, already returned by %s", op, v, prev)
		}
		seen[v] = op
	}
	// The same value written again is still a new write.
	for i := range 3 {
		record(fmt.Sprintf("Set #%d", i+1), mustSet(t, kv, "k", []byte("same")))
	}
	v := mustSet(t, kv, "k", []byte("same"))
	record("Set #4", v)
	v2, err := kv.CompareAndSet(ctx, "k", []byte("same"), v, store.WriteOptions{})
	if err != nil {
		t.Fatalf("CompareAndSet: %v", err)
	}
	record("CompareAndSet", v2)
	mustGet(t, kv, "k", []byte("same"), v2)
	// A key deleted and created again must not get back an old version,
	// or a holder of that version could overwrite the new value.
	mustDelete(t, kv, "k")
	v3, err := kv.CompareAndSet(ctx, "k", []byte("again"), 0, store.WriteOptions{})
	if err != nil {
		t.Fatalf("CompareAndSet after Delete: %v", err)
	}
	record("CompareAndSet after Delete", v3)
	// Versions are per store, not per key: other keys do not reuse them.
	record("Set other key", mustSet(t, kv, "other", []byte("same")))
}

func testCASCreate(t *testing.T, kv store.KV) {
	ctx := t.Context()
	ver, err := kv.CompareAndSet(ctx, "k", []byte("first"), 0, store.WriteOptions{})
	if err != nil {
		t.Fatalf("CompareAndSet(prev 0) on an absent key: %v", err)
	}
	if ver == 0 {
		t.Fatal("CompareAndSet returned version 0")
	}
	mustGet(t, kv, "k", []byte("first"), ver)

	_, err = kv.CompareAndSet(ctx, "k", []byte("second"), 0, store.WriteOptions{})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CompareAndSet(prev 0) on an existing key error = %v, want ErrConflict", err)
	}
	mustGet(t, kv, "k", []byte("first"), ver)
}

func testCASStale(t *testing.T, kv store.KV) {
	ctx := t.Context()
	v1 := mustSet(t, kv, "k", []byte("one"))
	v2 := mustSet(t, kv, "k", []byte("two"))
	_, err := kv.CompareAndSet(ctx, "k", []byte("three"), v1, store.WriteOptions{})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CompareAndSet(stale version) error = %v, want ErrConflict", err)
	}
	mustGet(t, kv, "k", []byte("two"), v2)
	// A version that was never handed out conflicts too.
	if _, err := kv.CompareAndSet(ctx, "k", []byte("x"), v2+1000, store.WriteOptions{}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CompareAndSet(made-up version) error = %v, want ErrConflict", err)
	}
	mustGet(t, kv, "k", []byte("two"), v2)
}

func testCASCurrent(t *testing.T, kv store.KV) {
	ctx := t.Context()
	v1 := mustSet(t, kv, "k", []byte("one"))
	v2, err := kv.CompareAndSet(ctx, "k", []byte("two"), v1, store.WriteOptions{Durable: true})
	if err != nil {
		t.Fatalf("CompareAndSet(current version): %v", err)
	}
	if v2 == 0 || v2 == v1 {
		t.Fatalf("CompareAndSet returned version %d after %d, want a new non-zero one", v2, v1)
	}
	mustGet(t, kv, "k", []byte("two"), v2)
	// The old version is now stale.
	if _, err := kv.CompareAndSet(ctx, "k", []byte("x"), v1, store.WriteOptions{}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CompareAndSet(replaced version) error = %v, want ErrConflict", err)
	}
}

func testCASMissing(t *testing.T, kv store.KV) {
	ctx := t.Context()
	v := mustSet(t, kv, "k", []byte("v"))
	mustDelete(t, kv, "k")
	// The key was deleted behind the caller's back: its version is gone.
	if _, err := kv.CompareAndSet(ctx, "k", []byte("x"), v, store.WriteOptions{}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CompareAndSet(prev != 0) on a missing key error = %v, want ErrConflict", err)
	}
	if _, err := kv.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after a failed CompareAndSet, Get error = %v, want ErrNotFound", err)
	}
}

func testDelete(t *testing.T, kv store.KV) {
	ctx := t.Context()
	mustDelete(t, kv, "never-existed")
	mustSet(t, kv, "k", []byte("v"))
	mustSet(t, kv, "k2", []byte("v2"))
	mustDelete(t, kv, "k")
	if _, err := kv.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete error = %v, want ErrNotFound", err)
	}
	mustDelete(t, kv, "k") // again: still not an error
	if _, err := kv.Get(ctx, "k2"); err != nil {
		t.Fatalf("Delete removed another key: Get(k2): %v", err)
	}
}

func testCompareAndDelete(t *testing.T, kv store.KV) {
	ctx := t.Context()
	if err := kv.CompareAndDelete(ctx, "missing", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CompareAndDelete(missing) error = %v, want ErrNotFound", err)
	}
	v1 := mustSet(t, kv, "k", []byte("one"))
	v2 := mustSet(t, kv, "k", []byte("two"))
	if err := kv.CompareAndDelete(ctx, "k", v1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CompareAndDelete(stale version) error = %v, want ErrConflict", err)
	}
	mustGet(t, kv, "k", []byte("two"), v2)
	if err := kv.CompareAndDelete(ctx, "k", v2); err != nil {
		t.Fatalf("CompareAndDelete(current version): %v", err)
	}
	if _, err := kv.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after CompareAndDelete error = %v, want ErrNotFound", err)
	}
	if err := kv.CompareAndDelete(ctx, "k", v2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second CompareAndDelete error = %v, want ErrNotFound", err)
	}
}

func testConsume(t *testing.T, kv store.KV) {
	ctx := t.Context()
	if _, err := kv.Consume(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Consume(missing) error = %v, want ErrNotFound", err)
	}
	mustSet(t, kv, "challenge", []byte("nonce"))
	got, err := kv.Consume(ctx, "challenge")
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	if string(got) != "nonce" {
		t.Fatalf("Consume = %q, want %q", got, "nonce")
	}
	if _, err := kv.Consume(ctx, "challenge"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Consume error = %v, want ErrNotFound", err)
	}
	if _, err := kv.Get(ctx, "challenge"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Consume error = %v, want ErrNotFound", err)
	}
	// An empty value is consumed like any other.
	mustSet(t, kv, "empty", nil)
	if got, err := kv.Consume(ctx, "empty"); err != nil || len(got) != 0 {
		t.Fatalf("Consume(empty value) = %q, %v; want empty, nil", got, err)
	}
}

// testConsumeConcurrent is the single-use guarantee WebAuthn ceremonies,
// email codes and recovery codes rest on.
func testConsumeConcurrent(t *testing.T, kv store.KV) {
	const callers = 50
	for round := range 3 {
		key := fmt.Sprintf("once/%d", round)
		mustSet(t, kv, key, []byte("secret"))
		var (
			start     = make(chan struct{})
			wg        sync.WaitGroup
			mu        sync.Mutex
			successes int
			otherErrs []error
		)
		for range callers {
			wg.Go(func() {
				<-start
				v, err := kv.Consume(t.Context(), key)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && string(v) == "secret":
					successes++
				case err == nil:
					otherErrs = append(otherErrs, fmt.Errorf("consumed value %q", v))
				case !errors.Is(err, store.ErrNotFound):
					otherErrs = append(otherErrs, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if successes != 1 {
			t.Errorf("round %d: %d of %d concurrent Consume calls got the value, want exactly 1", round, successes, callers)
		}
		for _, err := range otherErrs {
			t.Errorf("round %d: Consume error = %v, want nil or ErrNotFound", round, err)
		}
	}
}

// testCASConcurrent is the read-modify-write loop every durable record update
// uses: no update may be lost however the writers interleave.
func testCASConcurrent(t *testing.T, kv store.KV) {
	const (
		workers   = 16
		perWorker = 5
		maxTries  = 10000
	)
	ctx := t.Context()
	mustSet(t, kv, "counter", []byte("0"))
	start := make(chan struct{})
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			<-start
			for range perWorker {
				if err := increment(ctx, kv, "counter", maxTries); err != nil {
					errs <- err
					return
				}
			}
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
		t.Fatalf("Get(counter): %v", err)
	}
	if got, want := string(it.Value), strconv.Itoa(workers*perWorker); got != want {
		t.Fatalf("counter = %s after %d concurrent increments, want %s (lost updates)", got, workers*perWorker, want)
	}
}

func increment(ctx context.Context, kv store.KV, key string, maxTries int) error {
	for range maxTries {
		it, err := kv.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("get: %w", err)
		}
		n, err := strconv.Atoi(string(it.Value))
		if err != nil {
			return fmt.Errorf("counter value %q: %w", it.Value, err)
		}
		_, err = kv.CompareAndSet(ctx, key, []byte(strconv.Itoa(n+1)), it.Version, store.WriteOptions{})
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("CompareAndSet: %w", err)
		}
	}
	return fmt.Errorf("increment: still conflicting after %d tries", maxTries)
}

func testScan(t *testing.T, kv store.KV) {
	// Inserted out of order; "a/" must not match "a", "ab/1" or "b/…".
	keys := []string{"b/1", "a/2", "ab/1", "a/10", "a", "a/1", "a/\xff", "a/\x00", "c"}
	versions := map[string]uint64{}
	for _, k := range keys {
		versions[k] = mustSet(t, kv, k, []byte("v:"+k))
	}
	mustSet(t, kv, "a/deleted", []byte("x"))
	mustDelete(t, kv, "a/deleted")

	tests := []struct {
		prefix string
		want   []string
	}{
		{"a/", []string{"a/\x00", "a/1", "a/10", "a/2", "a/\xff"}},
		{"a", []string{"a", "a/\x00", "a/1", "a/10", "a/2", "a/\xff", "ab/1"}},
		{"ab", []string{"ab/1"}},
		{"b/1", []string{"b/1"}},
		{"", []string{"a", "a/\x00", "a/1", "a/10", "a/2", "a/\xff", "ab/1", "b/1", "c"}},
		{"zzz", nil},
		{"a/1/", nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("prefix %q", tc.prefix), func(t *testing.T) {
			var got []string
			err := kv.Scan(t.Context(), tc.prefix, func(it store.Item) error {
				got = append(got, it.Key)
				if want := "v:" + it.Key; string(it.Value) != want {
					t.Errorf("Scan item %q value = %q, want %q", it.Key, it.Value, want)
				}
				if it.Version != versions[it.Key] {
					t.Errorf("Scan item %q version = %d, Set returned %d", it.Key, it.Version, versions[it.Key])
				}
				return nil
			})
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Scan(%q) keys = %q, want %q", tc.prefix, got, tc.want)
			}
		})
	}
}

func testScanStops(t *testing.T, kv store.KV) {
	for i := range 5 {
		mustSet(t, kv, fmt.Sprintf("k/%d", i), []byte("v"))
	}
	stop := errors.New("stop here")
	calls := 0
	err := kv.Scan(t.Context(), "k/", func(store.Item) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Scan error = %v, want the callback's error", err)
	}
	if calls != 2 {
		t.Fatalf("callback called %d times after returning an error on call 2", calls)
	}
}

// testScanCallsBack is the sweep pattern (delete what a scan finds): fn may
// use the store while the scan runs.
func testScanCallsBack(t *testing.T, kv store.KV) {
	ctx := t.Context()
	for i := range 10 {
		mustSet(t, kv, fmt.Sprintf("sweep/%02d", i), []byte(strconv.Itoa(i%2)))
	}
	keep := mustSet(t, kv, "sweepx", []byte("other prefix"))
	err := kv.Scan(ctx, "sweep/", func(it store.Item) error {
		if string(it.Value) == "1" {
			return kv.CompareAndDelete(ctx, it.Key, it.Version)
		}
		_, err := kv.Get(ctx, it.Key)
		return err
	})
	if err != nil {
		t.Fatalf("Scan with a callback that uses the store: %v", err)
	}
	var left []string
	if err := kv.Scan(ctx, "sweep", func(it store.Item) error {
		left = append(left, it.Key)
		return nil
	}); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if want := []string{"sweep/00", "sweep/02", "sweep/04", "sweep/06", "sweep/08", "sweepx"}; !slices.Equal(left, want) {
		t.Fatalf("after the sweep, keys = %q, want %q", left, want)
	}
	mustGet(t, kv, "sweepx", []byte("other prefix"), keep)
}

func testCopies(t *testing.T, kv store.KV) {
	ctx := t.Context()
	in := []byte("original")
	ver := mustSet(t, kv, "k", in)
	copy(in, "XXXXXXXX") // the caller reuses its buffer after Set
	mustGet(t, kv, "k", []byte("original"), ver)

	it, err := kv.Get(ctx, "k")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	copy(it.Value, "YYYYYYYY")
	mustGet(t, kv, "k", []byte("original"), ver)

	err = kv.Scan(ctx, "", func(it store.Item) error {
		copy(it.Value, "ZZZZZZZZ")
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	mustGet(t, kv, "k", []byte("original"), ver)

	got, err := kv.Consume(ctx, "k")
	if err != nil {
		t.Fatalf("Consume: %v", err)
	}
	if string(got) != "original" {
		t.Fatalf("Consume = %q, want %q", got, "original")
	}
}

func testContextCanceled(t *testing.T, kv store.KV) {
	ver := mustSet(t, kv, "k", []byte("v"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ops := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := kv.Get(ctx, "k"); return err }},
		{"Set", func() error { _, err := kv.Set(ctx, "k", []byte("new"), store.WriteOptions{}); return err }},
		{"CompareAndSet", func() error {
			_, err := kv.CompareAndSet(ctx, "k", []byte("new"), ver, store.WriteOptions{})
			return err
		}},
		{"Delete", func() error { return kv.Delete(ctx, "k") }},
		{"CompareAndDelete", func() error { return kv.CompareAndDelete(ctx, "k", ver) }},
		{"Consume", func() error { _, err := kv.Consume(ctx, "k"); return err }},
		{"Scan", func() error {
			return kv.Scan(ctx, "", func(store.Item) error { return nil })
		}},
	}
	for _, op := range ops {
		if err := op.call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: error = %v, want context.Canceled", op.name, err)
		}
	}
	// None of them changed anything.
	mustGet(t, kv, "k", []byte("v"), ver)

	// A context canceled during a Scan stops it.
	for i := range 5 {
		mustSet(t, kv, fmt.Sprintf("s/%d", i), []byte("v"))
	}
	ctx2, cancel2 := context.WithCancel(t.Context())
	defer cancel2()
	calls := 0
	err := kv.Scan(ctx2, "s/", func(store.Item) error {
		calls++
		cancel2()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Scan canceled by its callback: error = %v, want context.Canceled", err)
	}
	if calls != 1 {
		t.Errorf("Scan went on for %d callbacks after its context was canceled", calls)
	}
}

func testClosed(t *testing.T, kv store.KV) {
	ver := mustSet(t, kv, "k", []byte("v"))
	if err := kv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	ops := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := kv.Get(ctx, "k"); return err }},
		{"Set", func() error { _, err := kv.Set(ctx, "k", []byte("new"), store.WriteOptions{}); return err }},
		{"CompareAndSet", func() error {
			_, err := kv.CompareAndSet(ctx, "k", []byte("new"), ver, store.WriteOptions{})
			return err
		}},
		{"Delete", func() error { return kv.Delete(ctx, "k") }},
		{"CompareAndDelete", func() error { return kv.CompareAndDelete(ctx, "k", ver) }},
		{"Consume", func() error { _, err := kv.Consume(ctx, "k"); return err }},
		{"Scan", func() error {
			return kv.Scan(ctx, "", func(store.Item) error { return nil })
		}},
	}
	for _, op := range ops {
		if err := op.call(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: error = %v, want ErrClosed", op.name, err)
		}
	}
	if err := kv.Close(); err != nil {
		t.Errorf("second Close: %v, want nil (Close is idempotent)", err)
	}
}

func testTTL(t *testing.T, kv store.KV) {
	ctx := t.Context()
	short := store.WriteOptions{TTL: shortTTL}
	before := time.Now()
	vShort := mustSetOpt(t, kv, "ttl/short", []byte("gone soon"), short)
	mustSetOpt(t, kv, "ttl/cas", []byte("gone soon"), short)
	mustSetOpt(t, kv, "ttl/consume", []byte("gone soon"), short)
	// A later write without TTL makes a key permanent again.
	mustSetOpt(t, kv, "ttl/renewed", []byte("old"), short)
	vRenewed := mustSet(t, kv, "ttl/renewed", []byte("kept"))
	vLong := mustSetOpt(t, kv, "ttl/long", []byte("kept"), store.WriteOptions{TTL: time.Hour})
	vKeep := mustSet(t, kv, "keep", []byte("kept"))

	// Readable right away, with an expiry that is at least the TTL.
	it := mustGet(t, kv, "ttl/short", []byte("gone soon"), vShort)
	if lo, hi := before.Add(shortTTL).Truncate(time.Second), time.Now().Add(shortTTL+ttlSlack); it.ExpiresAt.Before(lo) || it.ExpiresAt.After(hi) {
		t.Errorf("ExpiresAt = %v, want within [%v, %v]", it.ExpiresAt, lo, hi)
	}
	if it := mustGet(t, kv, "ttl/renewed", []byte("kept"), vRenewed); !it.ExpiresAt.IsZero() {
		t.Errorf("rewritten without TTL: ExpiresAt = %v, want zero", it.ExpiresAt)
	}

	// Wait for every short key to expire; each may outlive its TTL by up
	// to ttlSlack, never by more.
	deadline := before.Add(shortTTL + ttlSlack)
	for _, k := range []string{"ttl/short", "ttl/cas", "ttl/consume"} {
		for {
			_, err := kv.Get(ctx, k)
			if errors.Is(err, store.ErrNotFound) {
				break
			}
			if err != nil {
				t.Fatalf("Get(%s): %v", k, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s (TTL %v) still readable %v after it was written", k, shortTTL, time.Since(before))
			}
			time.Sleep(pollEvery)
		}
	}

	var scanned []string
	if err := kv.Scan(ctx, "", func(it store.Item) error {
		scanned = append(scanned, it.Key)
		return nil
	}); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if want := []string{"keep", "ttl/long", "ttl/renewed"}; !slices.Equal(scanned, want) {
		t.Errorf("Scan after expiry = %q, want %q", scanned, want)
	}
	if _, err := kv.Consume(ctx, "ttl/consume"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Consume(expired) error = %v, want ErrNotFound", err)
	}
	if err := kv.CompareAndDelete(ctx, "ttl/short", vShort); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CompareAndDelete(expired) error = %v, want ErrNotFound", err)
	}
	// An expired key counts as absent for "create if absent".
	if _, err := kv.CompareAndSet(ctx, "ttl/cas", []byte("new"), 0, store.WriteOptions{}); err != nil {
		t.Errorf("CompareAndSet(prev 0) on an expired key: %v", err)
	}
	mustGet(t, kv, "ttl/long", []byte("kept"), vLong)
	mustGet(t, kv, "keep", []byte("kept"), vKeep)
}

func mustSet(t testing.TB, kv store.KV, key string, value []byte) uint64 {
	t.Helper()
	return mustSetOpt(t, kv, key, value, store.WriteOptions{})
}

func mustSetOpt(t testing.TB, kv store.KV, key string, value []byte, opt store.WriteOptions) uint64 {
	t.Helper()
	ver, err := kv.Set(context.Background(), key, value, opt)
	if err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
	if ver == 0 {
		t.Fatalf("Set(%q) returned version 0", key)
	}
	return ver
}

func mustDelete(t testing.TB, kv store.KV, key string) {
	t.Helper()
	if err := kv.Delete(context.Background(), key); err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
}

// mustGet checks the key holds value at version ver and returns the item.
func mustGet(t testing.TB, kv store.KV, key string, value []byte, ver uint64) store.Item {
	t.Helper()
	it, err := kv.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(it.Value, value) {
		t.Fatalf("Get(%q) value = %q, want %q", key, trunc(it.Value), trunc(value))
	}
	if it.Version != ver {
		t.Fatalf("Get(%q) version = %d, want %d", key, it.Version, ver)
	}
	return it
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return append(b[:40:40], "…"...)
	}
	return b
}

// Bench measures the operations domain code uses on the hot paths. open
// follows the rules of Run; the store is closed when the benchmark ends.
func Bench(b *testing.B, open func(b *testing.B) store.KV) {
	run := func(name string, fn func(b *testing.B, kv store.KV)) {
		b.Run(name, func(b *testing.B) {
			kv := open(b)
			b.Cleanup(func() {
				if err := kv.Close(); err != nil {
					b.Errorf("Close: %v", err)
				}
			})
			b.ReportAllocs()
			fn(b, kv)
		})
	}
	value := bytes.Repeat([]byte("x"), 256) // about a session record
	ctx := context.Background()

	run("Get", func(b *testing.B, kv store.KV) {
		mustSet(b, kv, "k", value)
		for b.Loop() {
			if _, err := kv.Get(ctx, "k"); err != nil {
				b.Fatal(err)
			}
		}
	})
	run("Set", func(b *testing.B, kv store.KV) {
		i := 0
		for b.Loop() {
			i++
			if _, err := kv.Set(ctx, "k/"+strconv.Itoa(i%1024), value, store.WriteOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	run("SetDurable", func(b *testing.B, kv store.KV) {
		for b.Loop() {
			if _, err := kv.Set(ctx, "k", value, store.WriteOptions{Durable: true}); err != nil {
				b.Fatal(err)
			}
		}
	})
	run("CompareAndSet", func(b *testing.B, kv store.KV) {
		ver := mustSet(b, kv, "k", value)
		for b.Loop() {
			var err error
			if ver, err = kv.CompareAndSet(ctx, "k", value, ver, store.WriteOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	run("SetConsume", func(b *testing.B, kv store.KV) {
		for b.Loop() {
			if _, err := kv.Set(ctx, "challenge", value, store.WriteOptions{TTL: time.Minute}); err != nil {
				b.Fatal(err)
			}
			if _, err := kv.Consume(ctx, "challenge"); err != nil {
				b.Fatal(err)
			}
		}
	})
	run("Scan100", func(b *testing.B, kv store.KV) {
		for i := range 100 {
			mustSet(b, kv, fmt.Sprintf("s/%03d", i), value)
		}
		for b.Loop() {
			n := 0
			if err := kv.Scan(ctx, "s/", func(store.Item) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
			if n != 100 {
				b.Fatalf("scanned %d items, want 100", n)
			}
		}
	})
}
