// Package bench holds keygate's benchmarks across packages: how the costs
// of a sign-in, a policy decision and a session lookup change with the
// number of users, sessions and rules. `make bench` runs them; the
// figures and their reading are in results.md.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/policy"
)

var ctx = context.Background()

// BenchmarkSessionLookup: the proxy's cookie → session step with 1k to
// 100k live sessions. A hash map keyed by SHA-256(ID): O(1), so the time
// must stay flat; 0 allocations whatever the count.
func BenchmarkSessionLookup(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			s, ids := sessionsWith(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := s.Lookup(ids[i%len(ids)]); !ok {
					b.Fatal("miss")
				}
				i++
			}
		})
	}
}

func sessionsWith(b *testing.B, n int) (*authn.Sessions, []string) {
	b.Helper()
	s, err := authn.NewSessions(ctx, newMemKV(), authn.SessionOptions{IdleTimeout: time.Hour, MaxSessions: n + 1})
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, 0, 4096)
	for i := range n {
		sess, err := s.Create(ctx, authn.User{Username: fmt.Sprintf("user%06d", i%5000), Groups: []string{"staff"}},
			policy.Proof{Kind: policy.FactorPassword}, authn.Meta{IP: "192.0.2.1"})
		if err != nil {
			b.Fatal(err)
		}
		// Look up a spread of sessions, not one hot entry.
		if i%(n/4096+1) == 0 && len(ids) < cap(ids) {
			ids = append(ids, sess.ID)
		}
	}
	return s, ids
}

// BenchmarkPolicyEvaluate: a decision with 10 to 10,000 rules over hosts
// that each carry five rules. The compiled host index hands Evaluate only
// the rules that can apply to the request's host (its exact rules, the
// wildcard rules of its parent domains, the host-less rules), so the cost
// follows the rules per host, not the rules in total.
func BenchmarkPolicyEvaluate(b *testing.B) {
	for _, n := range []int{10, 100, 1_000, 10_000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			c, reqs := policyWith(b, n)
			subj := policy.Subject{Authenticated: true, User: "alice", Groups: []string{"staff", "dev"},
				Proofs: []policy.Proof{{Kind: policy.FactorPassword, At: time.Now()}, {Kind: policy.FactorTOTP, At: time.Now()}}}
			now := time.Now()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c.Evaluate(reqs[i%len(reqs)], subj, now)
				i++
			}
		})
	}
}

func policyWith(b *testing.B, n int) (*policy.Compiled, []policy.Request) {
	b.Helper()
	var p policy.Policy
	hosts := max(n/5, 1)
	for i := 0; len(p.Rules) < n; i++ {
		h := []string{fmt.Sprintf("app%d.example.com", i%hosts)}
		add := func(r policy.Rule) {
			if len(p.Rules) < n {
				r.Name = fmt.Sprintf("r%d", len(p.Rules))
				p.Rules = append(p.Rules, r)
			}
		}
		add(policy.Rule{Hosts: h, Paths: []string{"/static/*"}, Action: policy.ActionBypass})
		add(policy.Rule{Hosts: h, Paths: []string{"/api/**"}, Methods: []string{"GET"}, Action: policy.ActionOneFactor})
		add(policy.Rule{Hosts: h, Paths: []string{"/admin/**"}, Groups: []string{"admins"}, Action: policy.ActionTwoFactor})
		add(policy.Rule{Hosts: h, Networks: []string{"10.0.0.0/8"}, Action: policy.ActionOneFactor})
		add(policy.Rule{Hosts: h, Paths: []string{fmt.Sprintf("/v%d/**", i)}, Action: policy.ActionTwoFactor})
	}
	c, err := policy.Compile(p)
	if err != nil {
		b.Fatal(err)
	}
	var reqs []policy.Request
	for i := range 64 {
		h := fmt.Sprintf("app%d.example.com", (i*37)%hosts)
		reqs = append(reqs,
			policy.Request{Host: h, Path: "/dashboard", Method: "GET", IP: netip.MustParseAddr("192.0.2.1")},
			policy.Request{Host: h, Path: "/api/items", Method: "POST", IP: netip.MustParseAddr("192.0.2.1")},
		)
	}
	return c, reqs
}

// BenchmarkSignInLookup: a password sign-in's work besides argon2id (which
// costs the same for every user) with 1k and 100k users in Badger: find
// the user by name and by email. Badger is an LSM tree, O(log n) a read,
// with a bloom filter per table, so the time may creep up by a table level,
// not grow with n. The hash here is the cheapest argon2id, to make the
// lookups visible.
func BenchmarkSignInLookup(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			users := usersWith(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				name := fmt.Sprintf("user%06d", (i*7919)%n)
				if i%2 == 1 {
					name += "@seed.example.com" // by email
				}
				if _, err := users.Authenticate(ctx, name, "seeded-password-not-for-people"); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// usersWith opens a Badger store in a temp dir with n users (cheap hashes,
// writes not fsynced one by one: this is a fixture).
func usersWith(b *testing.B, n int) *authn.Users {
	b.Helper()
	kv, err := badgerstore.Open(badgerstore.Options{Path: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = kv.Close() })
	users := authn.NewUsers(bulkKV{kv}, authn.UserOptions{Hasher: authn.NewHasher(authn.Argon2Params{MemoryKiB: 8, Iterations: 1, Parallelism: 1}, 4),
		Policy: authn.PasswordPolicy{MinLength: 12}, Now: time.Now})
	var wg sync.WaitGroup
	var once sync.Once
	var failed error
	workers := runtime.GOMAXPROCS(0) * 2
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				name := fmt.Sprintf("user%06d", i)
				if _, err := users.Add(ctx, authn.NewUser{Username: name, Email: name + "@seed.example.com",
					Password: "seeded-password-not-for-people"}); err != nil {
					once.Do(func() { failed = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if failed != nil {
		b.Fatal(failed)
	}
	return users
}

// BenchmarkSignInThroughput: sustained password sign-ins per second with
// the production argon2id parameters (64 MiB, t=1, p=2) and the default cap
// of 4 concurrent hashes, from 16 clients at once: the semaphore queues the
// rest, so memory stays at most 4 × 64 MiB. Reports sign-ins/s and the
// median and 99th percentile latency a client sees.
func BenchmarkSignInThroughput(b *testing.B) {
	kv, err := badgerstore.Open(badgerstore.Options{Path: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer kv.Close()
	users := authn.NewUsers(kv, authn.UserOptions{Hasher: authn.NewHasher(authn.DefaultArgon2Params(), 4), Policy: authn.PasswordPolicy{MinLength: 12}, Now: time.Now})
	if _, err := users.Add(ctx, authn.NewUser{Username: "alice", Password: "correct-staple-battery-7"}); err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(8) // 8 × GOMAXPROCS clients
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t := time.Now()
			if _, err := users.Authenticate(ctx, "alice", "correct-staple-battery-7"); err != nil {
				b.Error(err)
				return
			}
			d := time.Since(t)
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "signins/s")
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
	}
}

// bulkKV drops the fsync of durable writes while a fixture is filled.
type bulkKV struct{ *badgerstore.Store }

func (k bulkKV) Set(ctx context.Context, key string, v []byte, o store.WriteOptions) (uint64, error) {
	o.Durable = false
	return k.Store.Set(ctx, key, v, o)
}

func (k bulkKV) CompareAndSet(ctx context.Context, key string, v []byte, prev uint64, o store.WriteOptions) (uint64, error) {
	o.Durable = false
	return k.Store.CompareAndSet(ctx, key, v, prev, o)
}

// memKV is authn.KV on a map, for fixtures of many sessions (the lookup
// never touches the store; only filling it would wait for the disk).
type memKV struct {
	mu  sync.Mutex
	m   map[string]store.Item
	ver uint64
}

func newMemKV() *memKV { return &memKV{m: map[string]store.Item{}} }

func (m *memKV) Get(_ context.Context, key string) (store.Item, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.m[key]
	if !ok {
		return store.Item{}, store.ErrNotFound
	}
	return it, nil
}

func (m *memKV) Set(_ context.Context, key string, v []byte, _ store.WriteOptions) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ver++
	m.m[key] = store.Item{Key: key, Value: v, Version: m.ver}
	return m.ver, nil
}

func (m *memKV) CompareAndSet(_ context.Context, key string, v []byte, prev uint64, _ store.WriteOptions) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m[key].Version != prev {
		return 0, store.ErrConflict
	}
	m.ver++
	m.m[key] = store.Item{Key: key, Value: v, Version: m.ver}
	return m.ver, nil
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

func (m *memKV) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, key)
	return nil
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

func (m *memKV) Scan(_ context.Context, prefix string, fn func(store.Item) error) error {
	m.mu.Lock()
	var items []store.Item
	for k, it := range m.m {
		if strings.HasPrefix(k, prefix) {
			items = append(items, it)
		}
	}
	m.mu.Unlock()
	for _, it := range items {
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

var (
	_ authn.KV = (*memKV)(nil)
	_ authn.KV = bulkKV{}
)

// BenchmarkSessionMemory reports the heap that live sessions hold, per
// session, once 100k of them are loaded the way keygate loads them at
// start (decoded from their stored records), after a collection.
func BenchmarkSessionMemory(b *testing.B) {
	const n = 100_000
	kv := newMemKV()
	src, err := authn.NewSessions(ctx, kv, authn.SessionOptions{IdleTimeout: time.Hour, MaxSessions: n + 1})
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		u := authn.User{Username: fmt.Sprintf("user%06d", i%50_000), Email: fmt.Sprintf("user%06d@example.com", i%50_000),
			DisplayName: fmt.Sprintf("User %d", i%50_000), Groups: []string{"staff", "dev"}}
		s, err := src.Create(ctx, u, policy.Proof{Kind: policy.FactorPassword}, authn.Meta{IP: "192.0.2.1",
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := src.AddProof(ctx, s.ID, policy.Proof{Kind: policy.FactorTOTP, Ref: "cred-1"}); err != nil {
			b.Fatal(err)
		}
	}
	src = nil
	for b.Loop() {
		runtime.GC()
		before := heapInUse()
		loaded, err := authn.NewSessions(ctx, kv, authn.SessionOptions{IdleTimeout: time.Hour, MaxSessions: n + 1})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		b.ReportMetric(float64(heapInUse()-before)/n, "heap-B/session")
		runtime.KeepAlive(loaded)
	}
}

func heapInUse() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
