package authn

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/authn/store/pgstore"
	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
	"github.com/keygate/keygate/policy"
)

// Two replicas over one store: on Badger two Sessions share one store in
// process; on PostgreSQL each replica opens its own pool (and LISTEN
// connection) on one database of a real cluster.
type replicaStores func(t *testing.T, retention int) (a, b store.Backend)

func followBackends(t *testing.T) map[string]replicaStores {
	return map[string]replicaStores{
		"badger": func(t *testing.T, retention int) (store.Backend, store.Backend) {
			s, err := badgerstore.Open(badgerstore.Options{Path: t.TempDir(), Logger: quietLogger(), FeedRetention: retention})
			if err != nil {
				t.Fatalf("open badger: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s, s
		},
		"postgres": func(t *testing.T, retention int) (store.Backend, store.Backend) {
			c := pgtest.Start(t) // fails under CI=true without PostgreSQL, skips loudly otherwise
			dsn := c.NewDatabase(t)
			key := []byte("0123456789abcdef0123456789abcdef")
			open := func() store.Backend {
				s, err := pgstore.Open(t.Context(), pgstore.Options{DSN: dsn, Key: key, MaxConns: 4, Retention: retention, Logger: quietLogger()})
				if err != nil {
					t.Fatalf("open postgres: %v", err)
				}
				t.Cleanup(func() { _ = s.Close() })
				return s
			}
			return open(), open()
		},
	}
}

// getCounter is the real store counting Gets: the store reads an unknown
// cookie can cause.
type getCounter struct {
	store.Backend
	gets atomic.Int64
}

func (g *getCounter) Get(ctx context.Context, key string) (store.Item, error) {
	g.gets.Add(1)
	return g.Backend.Get(ctx, key)
}

// gatedFeed holds Changes back until opened: a replica whose feed lags.
type gatedFeed struct {
	store.Feed
	gate chan struct{}
}

func (g *gatedFeed) Changes(ctx context.Context, prefix string, after uint64, limit int) ([]store.Change, uint64, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, after, ctx.Err()
	}
	return g.Feed.Changes(ctx, prefix, after, limit)
}

func newReplica(t *testing.T, kv KV) *Sessions {
	t.Helper()
	s, err := NewSessions(t.Context(), kv, SessionOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatalf("NewSessions: %v", err)
	}
	return s
}

// follow runs s.Follow until the test ends (before its store closes). It
// returns once s is following (Follow runs in a goroutine, which a loaded
// machine may start late; until then a miss reads no store).
func follow(t *testing.T, s *Sessions, f store.Feed) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Follow(ctx, f) }()
	for s.following.Load() == nil {
		time.Sleep(time.Millisecond)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Follow returned %v, want context.Canceled", err)
		}
	})
}

// eventually polls cond every millisecond for up to d and returns how long
// it took, failing the test if it never held.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// consistent checks a Sessions' bookkeeping: count, shards and byUser
// agree (a replayed own write must not insert a session twice).
func consistent(t *testing.T, s *Sessions) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	inShards, inUsers := 0, 0
	for i := range s.shards {
		inShards += len(s.shards[i].m)
	}
	for name, list := range s.byUser {
		for i, e := range list {
			inUsers++
			if e.userIdx != i || e.username != name || s.shards[shardOf(&e.key)].m[e.key] != e {
				t.Errorf("byUser[%q][%d] is not the entry in its shard", name, i)
			}
		}
	}
	if inShards != s.count || inUsers != s.count {
		t.Errorf("count %d, shards hold %d, byUser lists %d", s.count, inShards, inUsers)
	}
}

func followUser() User { return User{Username: "alice", Groups: []string{"staff"}} }

func pw() policy.Proof { return policy.Proof{Kind: "password"} }

func TestSessionsFollow(t *testing.T) {
	for name, open := range followBackends(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("CreateSeenViaStoreAndFeed", func(t *testing.T) { testFollowCreate(t, open) })
			t.Run("RevocationLatency", func(t *testing.T) { testFollowRevoke(t, open) })
			t.Run("RotateAndAddProof", func(t *testing.T) { testFollowRotate(t, open) })
			t.Run("GapRecovers", func(t *testing.T) { testFollowGap(t, open) })
			t.Run("UnknownCookiesBounded", func(t *testing.T) { testFollowUnknown(t, open) })
			t.Run("UnknownCookiesPerClient", func(t *testing.T) { testFollowUnknownPerClient(t, open) })
			t.Run("SignOutEverywhereWaitsForFeed", func(t *testing.T) { testFollowRevokeUserLag(t, open) })
		})
	}
}

// A session created on A: B finds it at once although B's feed is held
// back (one store read), and without any Lookup once the feed delivers.
func testFollowCreate(t *testing.T, open replicaStores) {
	ka, kb := open(t, 0)
	a := newReplica(t, ka)
	gb := &getCounter{Backend: kb}
	b := newReplica(t, gb)
	follow(t, a, ka)
	gate := &gatedFeed{Feed: kb, gate: make(chan struct{})}
	follow(t, b, gate)

	s1, err := a.Create(t.Context(), followUser(), pw(), Meta{IP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	before := gb.gets.Load()
	got, ok := b.Lookup(s1.ID)
	if !ok || got.Username != "alice" || got.Handle != s1.Handle {
		t.Fatalf("B.Lookup of A's fresh session = %+v, %v", got, ok)
	}
	if n := gb.gets.Load() - before; n != 1 {
		t.Errorf("first lookup on B: %d store reads, want 1", n)
	}
	for range 100 {
		b.Lookup(s1.ID)
	}
	if n := gb.gets.Load() - before; n != 1 {
		t.Errorf("100 more lookups of a now known session: %d store reads in all, want 1", n)
	}

	// Through the feed: B holds A's next session without being asked.
	close(gate.gate)
	s2, err := a.Create(t.Context(), followUser(), pw(), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "B holds A's session from the feed", func() bool { return len(b.ListUser("alice")) == 2 })
	before = gb.gets.Load()
	if _, ok := b.Lookup(s2.ID); !ok {
		t.Fatal("B refuses a session the feed delivered")
	}
	if n := gb.gets.Load() - before; n != 0 {
		t.Errorf("lookup of a session the feed delivered: %d store reads, want 0", n)
	}
	// A's own writes came back through its feed: nothing doubled.
	eventually(t, 5*time.Second, "A settles", func() bool { return a.Len() == 2 && b.Len() == 2 })
	time.Sleep(100 * time.Millisecond)
	consistent(t, a)
	consistent(t, b)
	if a.Len() != 2 || b.Len() != 2 {
		t.Errorf("Len: A %d, B %d, want 2 and 2", a.Len(), b.Len())
	}
}

// Revocations on B reach A: 200 sign-outs, each timed from Revoke's
// return until A refuses the cookie; p99 must be within a second.
func testFollowRevoke(t *testing.T, open replicaStores) {
	ka, kb := open(t, 0)
	a, b := newReplica(t, ka), newReplica(t, kb)
	follow(t, a, ka)
	follow(t, b, kb)

	const n = 200
	ids := make([]string, n)
	for i := range ids {
		u := User{Username: fmt.Sprintf("user%03d", i)}
		s, err := a.Create(t.Context(), u, pw(), Meta{})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = s.ID
	}
	eventually(t, 10*time.Second, "B holds A's sessions", func() bool { return b.Len() == n })
	lat := make([]time.Duration, n)
	for i, id := range ids {
		if err := b.Revoke(t.Context(), id); err != nil {
			t.Fatalf("B.Revoke: %v", err)
		}
		lat[i] = eventually(t, 5*time.Second, "A refuses a cookie revoked on B", func() bool {
			_, ok := a.Lookup(id)
			return !ok
		})
	}
	slices.Sort(lat)
	p50, p99 := lat[n/2], lat[n*99/100]
	t.Logf("revocation on B refused on A, over %d: p50 %v, p99 %v, max %v", n, p50, p99, lat[n-1])
	if p99 > time.Second {
		t.Errorf("p99 %v > 1s", p99)
	}
	// Sign out everywhere on B, for sessions B learnt of from the feed.
	var mine []string
	for range 3 {
		s, err := a.Create(t.Context(), followUser(), pw(), Meta{})
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, s.ID)
	}
	eventually(t, 5*time.Second, "B holds alice's sessions", func() bool { return len(b.ListUser("alice")) == 3 })
	if got, err := b.RevokeUser(t.Context(), "alice"); err != nil || got != 3 {
		t.Fatalf("B.RevokeUser = %d, %v; want 3", got, err)
	}
	for _, id := range mine {
		eventually(t, time.Second, "A refuses after sign-out everywhere on B", func() bool {
			_, ok := a.Lookup(id)
			return !ok
		})
	}
	time.Sleep(100 * time.Millisecond)
	consistent(t, a)
	consistent(t, b)
	if a.Len() != 0 || b.Len() != 0 {
		t.Errorf("after revoking everything: A holds %d, B %d", a.Len(), b.Len())
	}
}

// Rotate on A and AddProof on B are seen on the other replica: the old ID
// refused, the new one live with its proofs.
func testFollowRotate(t *testing.T, open replicaStores) {
	ka, kb := open(t, 0)
	a, b := newReplica(t, ka), newReplica(t, kb)
	follow(t, a, ka)
	follow(t, b, kb)

	s0, err := a.Create(t.Context(), followUser(), pw(), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	s1, err := a.Rotate(t.Context(), s0.ID)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "B refuses the rotated-away ID", func() bool { _, ok := b.Lookup(s0.ID); return !ok })
	if _, ok := b.Lookup(s1.ID); !ok {
		t.Fatal("B refuses the rotated session")
	}
	// Elevation on B (the second factor landed there).
	s2, err := b.AddProof(t.Context(), s1.ID, policy.Proof{Kind: "totp"})
	if err != nil {
		t.Fatalf("B.AddProof: %v", err)
	}
	eventually(t, time.Second, "A refuses the pre-elevation ID", func() bool { _, ok := a.Lookup(s1.ID); return !ok })
	eventually(t, time.Second, "A sees the elevated session", func() bool {
		got, ok := a.Lookup(s2.ID)
		return ok && len(got.Proofs) == 2 && got.Proofs[1].Kind == "totp"
	})
	// A rotation on A of a session B revoked a moment ago must fail, not
	// revive it under a new ID (even if A has not heard of the revocation).
	s3, err := a.Create(t.Context(), followUser(), pw(), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Lookup(s3.ID); !ok {
		t.Fatal("B refuses A's fresh session")
	}
	if err := kb.Delete(t.Context(), storeKey(keyOf(s3.ID))); err != nil { // B's revocation, as the store sees it
		t.Fatal(err)
	}
	if got, err := a.Rotate(t.Context(), s3.ID); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("A.Rotate of a session revoked elsewhere = %v, %v; want ErrSessionNotFound", got, err)
	}
	eventually(t, time.Second, "B drops it", func() bool { _, ok := b.Lookup(s3.ID); return !ok })
	n := 0
	_ = ka.Scan(t.Context(), sessionPrefix, func(store.Item) error { n++; return nil })
	if n != 1 {
		t.Errorf("store holds %d sessions, want 1 (the elevated one)", n)
	}
	time.Sleep(100 * time.Millisecond)
	for _, s := range []*Sessions{a, b} {
		consistent(t, s)
		if s.Len() != 1 {
			t.Errorf("Len %d, want 1", s.Len())
		}
	}
}

// B's feed falls further behind than the retention: B re-reads with Scan
// and ends with exactly the store's sessions.
func testFollowGap(t *testing.T, open replicaStores) {
	const retention = 16
	ka, kb := open(t, retention)
	a, b := newReplica(t, ka), newReplica(t, kb)
	follow(t, a, ka)
	gate := &gatedFeed{Feed: kb, gate: make(chan struct{})}
	follow(t, b, gate)

	early, err := a.Create(t.Context(), followUser(), pw(), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Lookup(early.ID); !ok { // B holds it (fetched)
		t.Fatal("B refuses A's session")
	}
	if err := a.Revoke(t.Context(), early.ID); err != nil {
		t.Fatal(err)
	}
	var live []string
	for i := range 4 * retention {
		s, err := a.Create(t.Context(), User{Username: fmt.Sprintf("g%02d", i)}, pw(), Meta{})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			live = append(live, s.ID)
		} else if err := a.Revoke(t.Context(), s.ID); err != nil {
			t.Fatal(err)
		}
	}
	if c, ok := kb.(store.Collector); ok { // PostgreSQL trims in the collector too
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { c.RunGC(ctx, 20*time.Millisecond) })
		t.Cleanup(func() { cancel(); wg.Wait() })
	}
	eventually(t, 10*time.Second, "the feed trims", func() bool {
		_, _, err := kb.Changes(t.Context(), sessionPrefix, 0, 1)
		return errors.Is(err, store.ErrGap)
	})
	close(gate.gate)
	eventually(t, 5*time.Second, "B catches up after the gap", func() bool { return b.Len() == len(live) })
	for _, id := range live {
		b.mu.Lock()
		k := keyOf(id)
		e := b.shards[shardOf(&k)].m[k]
		b.mu.Unlock()
		if e == nil {
			t.Fatal("a live session is missing on B after the re-read")
		}
	}
	if _, ok := b.Lookup(early.ID); ok {
		t.Error("B still accepts a session revoked during the gap")
	}
	consistent(t, b)
}

// Random cookies cost a bounded number of store reads: the same unknown
// cookie at most once in the negative cache's lifetime, and many different
// ones no more than the token bucket allows.
func testFollowUnknown(t *testing.T, open replicaStores) {
	_, kb := open(t, 0)
	gb := &getCounter{Backend: kb}
	b := newReplica(t, gb)

	randomID := func() string {
		var x [idBytes]byte
		_, _ = rand.Read(x[:])
		return base64.RawURLEncoding.EncodeToString(x[:])
	}
	// Not following: a single replica never reads the store for a miss.
	for range 100 {
		b.Lookup(randomID())
	}
	if n := gb.gets.Load(); n != 0 {
		t.Fatalf("a replica that does not follow read the store %d times", n)
	}
	follow(t, b, kb)
	eventually(t, time.Second, "Follow starts", func() bool { return b.following.Load() != nil })

	same := randomID()
	for range 1000 {
		if _, ok := b.Lookup(same); ok {
			t.Fatal("a random cookie was accepted")
		}
	}
	if n := gb.gets.Load(); n != 1 {
		t.Errorf("1000 lookups of one unknown cookie: %d store reads, want 1", n)
	}
	start := time.Now()
	const tries = 20000
	for range tries {
		if _, ok := b.Lookup(randomID()); ok {
			t.Fatal("a random cookie was accepted")
		}
	}
	elapsed := time.Since(start)
	limit := int64(fetchBurst + fetchRate*elapsed.Seconds() + 2)
	n := gb.gets.Load() - 1
	t.Logf("%d random cookies in %v: %d store reads (bound %d)", tries, elapsed, n, limit)
	if n > limit {
		t.Errorf("%d store reads for %d random cookies in %v, bound %d", n, tries, elapsed, limit)
	}
	// Malformed cookies never reach the store.
	before := gb.gets.Load()
	for _, id := range []string{"", "short", randomID() + "x"} {
		b.Lookup(id)
	}
	if gb.gets.Load() != before {
		t.Error("a malformed cookie caused a store read")
	}
	if b.Len() != 0 {
		t.Errorf("unknown cookies left %d sessions in memory", b.Len())
	}
}

// "Sign out everywhere" on B while B's feed lags behind a sign-in on A:
// RevokeUser catches up with the feed first, so that session ends too.
func testFollowRevokeUserLag(t *testing.T, open replicaStores) {
	ka, kb := open(t, 0)
	a, b := newReplica(t, ka), newReplica(t, kb)
	follow(t, a, ka)
	gate := &gatedFeed{Feed: kb, gate: make(chan struct{})}
	follow(t, b, gate)

	s, err := a.Create(t.Context(), followUser(), pw(), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.ListUser("alice")) != 0 {
		t.Fatal("B holds the session although its feed is held back")
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := b.RevokeUser(t.Context(), "alice")
		done <- result{n, err}
	}()
	time.Sleep(50 * time.Millisecond)
	close(gate.gate) // the feed arrives while RevokeUser waits for it
	r := <-done
	if r.err != nil || r.n != 1 {
		t.Fatalf("B.RevokeUser = %d, %v; want 1", r.n, r.err)
	}
	eventually(t, time.Second, "A refuses after sign-out everywhere on B", func() bool {
		_, ok := a.Lookup(s.ID)
		return !ok
	})
	if _, err := ka.Get(t.Context(), storeKey(keyOf(s.ID))); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the record is still in the store: %v", err)
	}
}

// A flood of random cookies from one address uses up that address's own
// budget of store reads, not everyone's: meanwhile a person who signed in
// on replica A a moment ago is still found on B (before B's feed brings the
// session) when their request comes from another address.
func testFollowUnknownPerClient(t *testing.T, open replicaStores) {
	ka, kb := open(t, 0)
	gb := &getCounter{Backend: kb}
	a, b := newReplica(t, ka), newReplica(t, gb)
	gate := &gatedFeed{Feed: kb, gate: make(chan struct{})}
	follow(t, b, gate) // B's feed is held back: only the store read can find A's session

	randomID := func() string {
		var x [idBytes]byte
		_, _ = rand.Read(x[:])
		return base64.RawURLEncoding.EncodeToString(x[:])
	}
	const flooder, person = "203.0.113.66", "198.51.100.7"
	start := time.Now()
	for range 5000 {
		if _, ok := b.LookupAtFrom(randomID(), time.Now(), flooder); ok {
			t.Fatal("a random cookie was accepted")
		}
	}
	elapsed := time.Since(start)
	n := gb.gets.Load()
	limit := int64(clientBurst + clientRate*elapsed.Seconds() + 1)
	t.Logf("5000 random cookies from one address in %v: %d store reads (bound %d)", elapsed, n, limit)
	if n > limit {
		t.Errorf("one address caused %d store reads, bound %d", n, limit)
	}
	if n == 0 {
		t.Error("no store read at all: the fallback is off")
	}
	// The flooder stays refused without a store read.
	before := gb.gets.Load()
	b.LookupAtFrom(randomID(), time.Now(), flooder)
	if gb.gets.Load() != before {
		t.Error("the flooder's budget was not spent")
	}
	s, err := a.Create(t.Context(), followUser(), pw(), Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.LookupAtFrom(s.ID, time.Now(), person); !ok {
		t.Fatal("a fresh session from A was refused on B while another address flooded")
	}
	close(gate.gate)
}
