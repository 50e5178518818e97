package authn

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
)

// openStore opens a real Badger store in dir and closes it when the test
// ends (Close is idempotent, so tests may close it earlier).
func openStore(t testing.TB, dir string) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(badgerstore.Options{Path: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// cheapParams keep tests fast; TestHasherDefaults covers the real ones.
func cheapParams() Argon2Params {
	return Argon2Params{MemoryKiB: 8 * 1024, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}
}

func testHasher() *Hasher { return NewHasher(cheapParams(), 4) }

// clock is a settable clock for deterministic expiry tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// countingKV is the real store with a call counter and an optional hook run
// before each CompareAndSet. It instruments, it does not fake.
type countingKV struct {
	*badgerstore.Store
	calls    atomic.Int64
	beforeCS func(key string)
}

func (c *countingKV) Get(ctx context.Context, key string) (store.Item, error) {
	c.calls.Add(1)
	return c.Store.Get(ctx, key)
}

func (c *countingKV) CompareAndSet(ctx context.Context, key string, v []byte, prev uint64, o store.WriteOptions) (uint64, error) {
	c.calls.Add(1)
	if c.beforeCS != nil {
		c.beforeCS(key)
	}
	return c.Store.CompareAndSet(ctx, key, v, prev, o)
}

func (c *countingKV) Delete(ctx context.Context, key string) error {
	c.calls.Add(1)
	return c.Store.Delete(ctx, key)
}

func (c *countingKV) CompareAndDelete(ctx context.Context, key string, prev uint64) error {
	c.calls.Add(1)
	return c.Store.CompareAndDelete(ctx, key, prev)
}

func (c *countingKV) Scan(ctx context.Context, prefix string, fn func(store.Item) error) error {
	c.calls.Add(1)
	return c.Store.Scan(ctx, prefix, fn)
}

// Interface guards.
var (
	_ KV = (*badgerstore.Store)(nil)
	_ KV = (*countingKV)(nil)
)
