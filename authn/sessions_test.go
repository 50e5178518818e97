package authn

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/policy"
)

var (
	alice = User{Username: "alice", Email: "alice@example.com", DisplayName: "Alice", Groups: []string{"admins"}}
	bob   = User{Username: "bob", Email: "bob@example.com"}
)

func pwProof() policy.Proof { return policy.Proof{Kind: policy.FactorPassword} }

type sessEnv struct {
	dir string
	kv  *countingKV
	clk *clock
	s   *Sessions
	opt SessionOptions
}

func newSessEnv(t *testing.T, opt SessionOptions) *sessEnv {
	t.Helper()
	env := &sessEnv{dir: t.TempDir(), clk: newClock()}
	if opt.Now == nil {
		opt.Now = env.clk.Now
	}
	opt.Logger = quietLogger()
	env.opt = opt
	env.reopen(t)
	return env
}

// reopen closes the store (if open) and opens it and the Sessions anew, as
// a restart of the process would.
func (env *sessEnv) reopen(t *testing.T) {
	t.Helper()
	if env.kv != nil {
		if err := env.kv.Close(); err != nil {
			t.Fatal(err)
		}
	}
	env.kv = &countingKV{Store: openStore(t, env.dir)}
	s, err := NewSessions(context.Background(), env.kv, env.opt)
	if err != nil {
		t.Fatalf("NewSessions: %v", err)
	}
	env.s = s
}

func (env *sessEnv) create(t *testing.T, u User) *Session {
	t.Helper()
	s, err := env.s.Create(context.Background(), u, pwProof(), Meta{IP: "192.0.2.1", UserAgent: "test/1.0"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storedSession reads a session's record straight from the store.
func (env *sessEnv) storedSession(t *testing.T, id string) (sessionRecord, error) {
	t.Helper()
	it, err := env.kv.Store.Get(context.Background(), storeKey(keyOf(id)))
	if err != nil {
		return sessionRecord{}, err
	}
	var r sessionRecord
	if err := json.Unmarshal(it.Value, &r); err != nil {
		t.Fatal(err)
	}
	return r, nil
}

func randomID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func TestSessionCreateLookup(t *testing.T) {
	env := newSessEnv(t, SessionOptions{})
	created := env.create(t, alice)
	if len(created.ID) != 43 || strings.ContainsAny(created.ID, "+/=") {
		t.Fatalf("ID %q is not 256 bits of base64url", created.ID)
	}
	if b, err := base64.RawURLEncoding.DecodeString(created.ID); err != nil || len(b) != 32 {
		t.Fatalf("ID does not decode to 32 bytes: %v", err)
	}
	if created.Handle == "" || strings.Contains(created.ID, created.Handle) {
		t.Fatalf("handle %q", created.Handle)
	}
	now := env.clk.Now()
	if !created.CreatedAt.Equal(now) || !created.ExpiresAt.Equal(now.Add(DefaultLifetime)) ||
		len(created.Proofs) != 1 || !created.Proofs[0].At.Equal(now) || created.Proofs[0].Kind != policy.FactorPassword {
		t.Fatalf("created %+v", created)
	}

	got, ok := env.s.Lookup(created.ID)
	if !ok {
		t.Fatal("Lookup of a fresh session failed")
	}
	if got.ID != "" {
		t.Fatal("Lookup exposes the ID")
	}
	if got.Username != "alice" || got.Email != alice.Email || got.DisplayName != "Alice" || got.Groups[0] != "admins" ||
		got.IP != "192.0.2.1" || got.UserAgent != "test/1.0" || got.Handle != created.Handle {
		t.Fatalf("Lookup = %+v", got)
	}
	for _, id := range []string{"", "x", randomID(), created.ID[:42], created.ID + "A", strings.ToUpper(created.ID)} {
		if _, ok := env.s.Lookup(id); ok {
			t.Errorf("Lookup(%q) succeeded", id)
		}
	}

	// The store holds the hash, never the ID.
	var records int
	err := env.kv.Scan(context.Background(), sessionPrefix, func(it store.Item) error {
		records++
		if strings.Contains(it.Key, created.ID) || strings.Contains(string(it.Value), created.ID) {
			t.Error("the clear ID is in the store")
		}
		return nil
	})
	if err != nil || records != 1 {
		t.Fatalf("%d records, %v", records, err)
	}
	if _, err := env.s.Create(context.Background(), User{Username: "x", Disabled: true}, pwProof(), Meta{}); !errors.Is(err, ErrUserDisabled) {
		t.Fatalf("Create for a disabled user: %v", err)
	}
}

func TestSessionIdleExpiry(t *testing.T) {
	env := newSessEnv(t, SessionOptions{IdleTimeout: 10 * time.Minute, Lifetime: time.Hour})
	s := env.create(t, alice)
	for range 4 { // activity keeps it alive past the idle timeout
		env.clk.Advance(9 * time.Minute)
		if _, ok := env.s.Lookup(s.ID); !ok {
			t.Fatalf("active session expired at %v", env.clk.Now())
		}
	}
	env.clk.Advance(10 * time.Minute)
	if _, ok := env.s.Lookup(s.ID); ok {
		t.Fatal("idle session still valid")
	}
	if _, err := env.s.Rotate(context.Background(), s.ID); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("Rotate of an idle session: %v", err)
	}
}

func TestSessionAbsoluteExpiry(t *testing.T) {
	env := newSessEnv(t, SessionOptions{IdleTimeout: time.Hour, Lifetime: 2 * time.Hour})
	s := env.create(t, alice)
	env.clk.Advance(50 * time.Minute)
	env.s.Lookup(s.ID)
	s2, err := env.s.AddProof(context.Background(), s.ID, policy.Proof{Kind: policy.FactorTOTP})
	if err != nil {
		t.Fatal(err)
	}
	if !s2.ExpiresAt.Equal(s.ExpiresAt) {
		t.Fatal("a privilege change extended the lifetime")
	}
	env.clk.Advance(50 * time.Minute)
	if _, ok := env.s.Lookup(s2.ID); !ok {
		t.Fatal("expired early")
	}
	env.clk.Advance(20 * time.Minute) // 2h after creation, active 20 minutes ago
	if _, ok := env.s.Lookup(s2.ID); ok {
		t.Fatal("session outlived its lifetime")
	}
}

func TestSessionAddProofRotates(t *testing.T) {
	ctx := context.Background()
	env := newSessEnv(t, SessionOptions{})
	s := env.create(t, alice)
	env.clk.Advance(time.Minute)
	key := policy.Proof{Kind: policy.FactorWebAuthn, AAGUID: "ee882879-721c-4913-9775-3dfcce97072a", Attested: true, UserVerified: true}
	s2, err := env.s.AddProof(ctx, s.ID, key)
	if err != nil {
		t.Fatal(err)
	}
	if s2.ID == s.ID || s2.ID == "" || s2.Handle == s.Handle {
		t.Fatal("AddProof did not rotate the ID")
	}
	if _, ok := env.s.Lookup(s.ID); ok {
		t.Fatal("old ID still valid after AddProof")
	}
	if _, err := env.s.AddProof(ctx, s.ID, key); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("AddProof on the old ID: %v", err)
	}
	if err := env.s.Revoke(ctx, s.ID); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("Revoke of the old ID: %v", err)
	}
	got, ok := env.s.Lookup(s2.ID)
	if !ok || len(got.Proofs) != 2 || got.Proofs[1].Kind != policy.FactorWebAuthn || !got.Proofs[1].At.Equal(env.clk.Now()) ||
		!got.Proofs[1].Attested || got.Proofs[1].AAGUID != key.AAGUID || !got.CreatedAt.Equal(s.CreatedAt) {
		t.Fatalf("after AddProof: %+v", got)
	}
	if _, err := env.storedSession(t, s.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old record still stored: %v", err)
	}
	if r, err := env.storedSession(t, s2.ID); err != nil || len(r.Proofs) != 2 {
		t.Fatalf("new record: %+v %v", r, err)
	}
	// A step-up with the same key refreshes the proof instead of piling up.
	env.clk.Advance(time.Minute)
	s3, err := env.s.AddProof(ctx, s2.ID, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(s3.Proofs) != 2 || !s3.Proofs[1].At.Equal(env.clk.Now()) {
		t.Fatalf("step-up proofs: %+v", s3.Proofs)
	}
	s4, err := env.s.Rotate(ctx, s3.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := env.s.Lookup(s3.ID); ok {
		t.Fatal("old ID valid after Rotate")
	}
	if got, ok := env.s.Lookup(s4.ID); !ok || len(got.Proofs) != 2 {
		t.Fatal("rotated session lost")
	}
	if env.s.Len() != 1 {
		t.Fatalf("Len = %d", env.s.Len())
	}
}

func TestSessionRevoke(t *testing.T) {
	ctx := context.Background()
	env := newSessEnv(t, SessionOptions{})
	a1, a2, a3 := env.create(t, alice), env.create(t, alice), env.create(t, alice)
	b1 := env.create(t, bob)

	if err := env.s.Revoke(ctx, a1.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := env.s.Lookup(a1.ID); ok {
		t.Fatal("revoked session valid")
	}
	if err := env.s.Revoke(ctx, randomID()); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("Revoke(random) = %v", err)
	}
	if l := env.s.ListUser("alice"); len(l) != 2 || l[0].ID != "" {
		t.Fatalf("ListUser = %d sessions", len(l))
	}
	// One user cannot end another's session by handle.
	if err := env.s.RevokeHandle(ctx, "bob", a2.Handle); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("RevokeHandle across users: %v", err)
	}
	if err := env.s.RevokeHandle(ctx, "alice", a2.Handle); err != nil {
		t.Fatal(err)
	}
	if _, ok := env.s.Lookup(a2.ID); ok {
		t.Fatal("session valid after RevokeHandle")
	}

	a4 := env.create(t, alice)
	n, err := env.s.RevokeUser(ctx, "Alice")
	if err != nil || n != 2 {
		t.Fatalf("RevokeUser = %d, %v; want 2", n, err)
	}
	for _, s := range []*Session{a3, a4} {
		if _, ok := env.s.Lookup(s.ID); ok {
			t.Fatal("session valid after RevokeUser")
		}
	}
	if _, ok := env.s.Lookup(b1.ID); !ok {
		t.Fatal("RevokeUser(alice) ended bob's session")
	}
	if len(env.s.ListUser("alice")) != 0 {
		t.Fatal("ListUser after RevokeUser")
	}
	// Revocations are persistent: nothing comes back after a restart.
	env.reopen(t)
	for _, s := range []*Session{a1, a2, a3, a4} {
		if _, ok := env.s.Lookup(s.ID); ok {
			t.Fatal("revoked session back after restart")
		}
	}
	if _, ok := env.s.Lookup(b1.ID); !ok || env.s.Len() != 1 {
		t.Fatal("bob's session lost in restart")
	}
}

func TestSessionSyncUser(t *testing.T) {
	ctx := context.Background()
	env := newSessEnv(t, SessionOptions{})
	a1, a2, b1 := env.create(t, alice), env.create(t, alice), env.create(t, bob)
	changed := alice
	changed.Groups = []string{"users"}
	changed.DisplayName = "Alice L."
	if n, err := env.s.SyncUser(ctx, changed); err != nil || n != 2 {
		t.Fatalf("SyncUser = %d, %v", n, err)
	}
	for _, s := range []*Session{a1, a2} {
		got, ok := env.s.Lookup(s.ID)
		if !ok || got.DisplayName != "Alice L." || len(got.Groups) != 1 || got.Groups[0] != "users" {
			t.Fatalf("after SyncUser: %+v", got)
		}
	}
	env.reopen(t)
	if got, ok := env.s.Lookup(a1.ID); !ok || got.Groups[0] != "users" {
		t.Fatal("SyncUser not persisted")
	}
	changed.Disabled = true
	if n, err := env.s.SyncUser(ctx, changed); err != nil || n != 2 {
		t.Fatalf("SyncUser(disabled) = %d, %v", n, err)
	}
	if _, ok := env.s.Lookup(a2.ID); ok {
		t.Fatal("disabled user's session alive")
	}
	if _, ok := env.s.Lookup(b1.ID); !ok {
		t.Fatal("other user's session ended")
	}
}

func TestSessionsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	env := newSessEnv(t, SessionOptions{IdleTimeout: 30 * time.Minute, Lifetime: 12 * time.Hour})
	s := env.create(t, alice)
	s, err := env.s.AddProof(ctx, s.ID, policy.Proof{Kind: policy.FactorTOTP})
	if err != nil {
		t.Fatal(err)
	}
	idle := env.create(t, bob)

	env.clk.Advance(20 * time.Minute)
	if _, ok := env.s.Lookup(s.ID); !ok {
		t.Fatal("lookup")
	}
	seen := env.clk.Now()
	if err := env.s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	env.clk.Advance(15 * time.Minute) // bob idle for 35m, alice for 15m
	env.reopen(t)

	got, ok := env.s.Lookup(s.ID)
	if !ok {
		t.Fatal("session lost in restart")
	}
	if got.Username != "alice" || got.Handle != s.Handle || len(got.Proofs) != 2 || got.Proofs[1].Kind != policy.FactorTOTP ||
		!got.LastSeen.Equal(seen) || !got.ExpiresAt.Equal(s.ExpiresAt) || !got.CreatedAt.Equal(s.CreatedAt) {
		t.Fatalf("reloaded %+v", got)
	}
	if _, ok := env.s.Lookup(idle.ID); ok {
		t.Fatal("idle session came back")
	}
	if _, err := env.storedSession(t, idle.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("idle session not deleted at load: %v", err)
	}
	// The reloaded session is fully usable.
	if _, err := env.s.Rotate(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
}

func TestSessionLastSeenFlush(t *testing.T) {
	ctx := context.Background()
	env := newSessEnv(t, SessionOptions{})
	s := env.create(t, alice)
	created := env.clk.Now()
	env.clk.Advance(5 * time.Minute)
	env.s.Lookup(s.ID)
	if r, _ := env.storedSession(t, s.ID); !r.LastSeen.Equal(created) {
		t.Fatal("Lookup wrote to the store")
	}
	if l := env.s.ListUser("alice"); len(l) != 1 || !l[0].LastSeen.Equal(env.clk.Now()) {
		t.Fatal("ListUser does not show the current LastSeen")
	}
	if err := env.s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := env.storedSession(t, s.ID)
	if err != nil || !r.LastSeen.Equal(env.clk.Now()) {
		t.Fatalf("flushed LastSeen %v, want %v (%v)", r.LastSeen, env.clk.Now(), err)
	}
	if got, _ := env.s.Lookup(s.ID); !got.LastSeen.Equal(env.clk.Now()) {
		t.Fatal("snapshot not refreshed by Flush")
	}
	// Nothing changed: Flush writes nothing.
	before := env.kv.calls.Load()
	if err := env.s.Flush(ctx); err != nil || env.kv.calls.Load() != before {
		t.Fatalf("idle Flush did %d store calls (%v)", env.kv.calls.Load()-before, err)
	}
	// A flush racing a revocation cannot bring the record back (CAS).
	env.clk.Advance(time.Minute)
	env.s.Lookup(s.ID)
	if err := env.s.Revoke(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if err := env.s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := env.storedSession(t, s.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoked record back: %v", err)
	}
}

func TestLookupDoesNoStoreAccess(t *testing.T) {
	env := newSessEnv(t, SessionOptions{})
	s := env.create(t, alice)
	before := env.kv.calls.Load()
	for range 100 {
		env.s.Lookup(randomID())
		env.s.Lookup(s.ID)
	}
	if n := env.kv.calls.Load() - before; n != 0 {
		t.Fatalf("Lookup made %d store calls", n)
	}
	// With the store closed, lookups carry on as before.
	if err := env.kv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := env.s.Lookup(s.ID); !ok {
		t.Fatal("Lookup needs the store")
	}
	if _, ok := env.s.Lookup(randomID()); ok {
		t.Fatal("random ID found")
	}
	if err := env.s.Revoke(context.Background(), randomID()); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("Revoke(random) touched the closed store: %v", err)
	}
}

func TestLookupAllocs(t *testing.T) {
	env := newSessEnv(t, SessionOptions{})
	s := env.create(t, alice)
	miss := randomID()
	for name, id := range map[string]string{"hit": s.ID, "miss": miss} {
		allocs := testing.AllocsPerRun(1000, func() { env.s.Lookup(id) })
		t.Logf("Lookup(%s): %v allocs/op", name, allocs)
		if allocs > 2 {
			t.Errorf("Lookup(%s) = %v allocs/op, want <= 2", name, allocs)
		}
	}
}

func TestSessionEviction(t *testing.T) {
	env := newSessEnv(t, SessionOptions{MaxSessions: 10})
	var ids []string
	for range 10 {
		ids = append(ids, env.create(t, alice).ID)
		env.clk.Advance(time.Second)
	}
	env.clk.Advance(2 * time.Second)
	env.s.Lookup(ids[0]) // the oldest is now the most recently active
	extra := env.create(t, bob)
	if n := env.s.Len(); n != 10 {
		t.Fatalf("Len = %d, want 10", n)
	}
	if _, ok := env.s.Lookup(ids[1]); ok {
		t.Fatal("least recently active session not evicted")
	}
	for _, id := range []string{ids[0], ids[2], extra.ID} {
		if _, ok := env.s.Lookup(id); !ok {
			t.Fatal("wrong session evicted")
		}
	}
	env.reopen(t)
	if n := env.s.Len(); n != 10 {
		t.Fatalf("after restart Len = %d: evicted record left in the store", n)
	}
}

// TestRevokeUserDuringRotation: "sign out everywhere" landing while an
// AddProof is half way must win; the rotated session must not survive.
func TestRevokeUserDuringRotation(t *testing.T) {
	ctx := context.Background()
	env := newSessEnv(t, SessionOptions{})
	s := env.create(t, alice)
	var once sync.Once
	env.kv.beforeCS = func(string) {
		once.Do(func() {
			if n, err := env.s.RevokeUser(ctx, "alice"); err != nil || n != 1 {
				t.Errorf("RevokeUser during rotation = %d, %v", n, err)
			}
		})
	}
	if _, err := env.s.AddProof(ctx, s.ID, policy.Proof{Kind: policy.FactorTOTP}); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("AddProof across RevokeUser = %v", err)
	}
	env.kv.beforeCS = nil
	if env.s.Len() != 0 || len(env.s.ListUser("alice")) != 0 {
		t.Fatal("a session survived RevokeUser")
	}
	env.reopen(t)
	if env.s.Len() != 0 {
		t.Fatal("the rotated session was left in the store")
	}
}

func TestSessionsConcurrent(t *testing.T) {
	ctx := context.Background()
	env := newSessEnv(t, SessionOptions{})
	const n = 8
	ids := make([]string, n)
	for i := range ids {
		ids[i] = env.create(t, alice).ID
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, id := range ids {
					if s, ok := env.s.Lookup(id); ok && (s.Username != "alice" || len(s.Proofs) == 0) {
						t.Error("torn session")
					}
				}
				env.s.ListUser("alice")
			}
		})
	}
	var writers sync.WaitGroup
	results := make([]string, n)
	for i := range n {
		writers.Go(func() {
			s, err := env.s.AddProof(ctx, ids[i], policy.Proof{Kind: policy.FactorTOTP})
			if err != nil {
				t.Error(err)
				return
			}
			if i%2 == 0 {
				if err := env.s.Revoke(ctx, s.ID); err != nil {
					t.Error(err)
				}
				return
			}
			results[i] = s.ID
		})
	}
	writers.Go(func() { _ = env.s.Flush(ctx) })
	writers.Wait()
	close(stop)
	readers.Wait()
	for i := range n {
		if _, ok := env.s.Lookup(ids[i]); ok {
			t.Fatal("old ID alive")
		}
		if _, ok := env.s.Lookup(results[i]); ok != (i%2 == 1) {
			t.Fatalf("session %d: alive = %v", i, ok)
		}
	}
}

func TestSessionsRun(t *testing.T) {
	env := newSessEnv(t, SessionOptions{IdleTimeout: time.Minute})
	active, idle := env.create(t, alice), env.create(t, bob)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { env.s.Run(ctx, 5*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	env.clk.Advance(50 * time.Second)
	env.s.Lookup(active.ID)
	env.clk.Advance(20 * time.Second) // bob idle for 70s
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := env.storedSession(t, active.ID)
		_, idleErr := env.storedSession(t, idle.ID)
		if env.s.Len() == 1 && err == nil && r.LastSeen.Equal(env.clk.Now().Add(-20*time.Second)) && errors.Is(idleErr, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run did not sweep and flush: Len=%d, alice LastSeen=%v (%v), bob %v", env.s.Len(), r.LastSeen, err, idleErr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkLookup is the proxy hot path. Target: <= 1 µs, <= 2 allocs.
func BenchmarkLookup(b *testing.B) {
	dir := b.TempDir()
	kv := openStore(b, dir)
	// One user's 1000 sessions: above the default per-user cap.
	s, err := NewSessions(context.Background(), kv, SessionOptions{Logger: quietLogger(), MaxPerUser: 1000})
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	for range 1000 {
		sess, err := s.Create(context.Background(), alice, pwProof(), Meta{})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, sess.ID)
	}
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, ok := s.Lookup(ids[i%len(ids)]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		id := randomID()
		for b.Loop() {
			s.Lookup(id)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				s.Lookup(ids[i%len(ids)])
				i++
			}
		})
	})
}
