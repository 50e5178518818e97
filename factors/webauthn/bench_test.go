package webauthn

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/pgstore"
	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
)

// BenchmarkFinishLogin measures a second-factor assertion's finish: parse,
// verify the ES256 signature, and consume the ceremony and write the new
// counter in one durable write (store.ConsumeSetter), on a real Badger store
// and on a real PostgreSQL cluster (pgtest). The "-two-writes" runs hide the
// capability: the ceremony is consumed first and the counter written
// second, two durable writes, as before it. Begin and the authenticator's
// signing are outside the timer. Reports the median and 99th percentile
// besides the mean (budget: p50 ≤ 1 ms on both backends).
func BenchmarkFinishLogin(b *testing.B) {
	e := softEnv(b, nil)
	b.Run("badger", func(b *testing.B) { benchFinishLogin(b, e.f) })
	b.Run("badger-two-writes", func(b *testing.B) { benchFinishLogin(b, softFactor(b, plainKV{e.kv}, e.origin)) })
	b.Run("postgres", func(b *testing.B) {
		// Fails under CI=true without PostgreSQL, skips loudly otherwise.
		pg := openPostgres(b)
		benchFinishLogin(b, softFactor(b, pg, e.origin))
	})
	b.Run("postgres-two-writes", func(b *testing.B) {
		pg := openPostgres(b)
		benchFinishLogin(b, softFactor(b, plainKV{pg}, e.origin))
	})
	// The same on a map: what is left is our and go-webauthn's CPU time,
	// and the difference is the store's durable write.
	b.Run("memory", func(b *testing.B) { benchFinishLogin(b, softFactor(b, &memKV{}, e.origin)) })
}

// softFactor is a factor for the soft key on kv.
func softFactor(b *testing.B, kv KV, origin string) *Factor {
	b.Helper()
	f, err := New(kv, Options{RPID: "localhost", Origins: []string{origin}})
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// openPostgres is a pgstore on a fresh database of a cluster the benchmark
// starts (pgtest) with fsync on, as in production, closed at its end.
func openPostgres(b *testing.B) *pgstore.Store {
	b.Helper()
	dsn := pgtest.StartDurable(b).NewDatabase(b)
	s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn, Key: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func benchFinishLogin(b *testing.B, f *Factor) {
	k := newSoftKey(b, "https://app.example.test")
	softEnrol(b, f, "alice", k, "")
	e := &env{f: f}
	durs := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		opts, id, err := e.f.BeginLogin(ctx, "alice")
		if err != nil {
			b.Fatal(err)
		}
		resp := k.get(opts)
		b.StartTimer()
		start := time.Now()
		if _, err := e.f.FinishLogin(ctx, "alice", id, resp); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkBeginLogin: load the user, make the options, store the ceremony.
func BenchmarkBeginLogin(b *testing.B) {
	e := softEnv(b, nil)
	softEnrol(b, e.f, "alice", newSoftKey(b, e.origin), "")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := e.f.BeginLogin(ctx, "alice"); err != nil {
			b.Fatal(err)
		}
	}
}

// memKV is the narrow KV on a map (no TTL: ceremonies are consumed).
type memKV struct {
	mu  sync.Mutex
	m   map[string]store.Item
	ver uint64
}

func (m *memKV) Get(_ context.Context, key string) (store.Item, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.m[key]
	if !ok {
		return store.Item{}, store.ErrNotFound
	}
	it.Value = slices.Clone(it.Value)
	return it, nil
}

func (m *memKV) CompareAndSet(_ context.Context, key string, value []byte, prev uint64, _ store.WriteOptions) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]store.Item{}
	}
	if m.m[key].Version != prev {
		return 0, store.ErrConflict
	}
	m.ver++
	m.m[key] = store.Item{Key: key, Value: slices.Clone(value), Version: m.ver}
	return m.ver, nil
}

func (m *memKV) CompareAndDelete(_ context.Context, key string, prev uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.m[key]
	if !ok {
		return store.ErrNotFound
	}
	if it.Version != prev {
		return store.ErrConflict
	}
	delete(m.m, key)
	return nil
}

func (m *memKV) Consume(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.m[key]
	if !ok {
		return nil, store.ErrNotFound
	}
	delete(m.m, key)
	return it.Value, nil
}

func (m *memKV) Scan(_ context.Context, prefix string, fn func(store.Item) error) error {
	m.mu.Lock()
	var items []store.Item
	for k, it := range m.m {
		if strings.HasPrefix(k, prefix) {
			it.Value = slices.Clone(it.Value)
			items = append(items, it)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(items, func(a, b store.Item) int { return strings.Compare(a.Key, b.Key) })
	for _, it := range items {
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

var _ KV = (*memKV)(nil)
