package policies

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/authn/store/pgstore"
	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
	"github.com/keygate/keygate/policy"
)

// These tests run two policy stores ("replicas" A and B) over ONE store:
// on Badger the same open store (the feed is in-process), on PostgreSQL two
// connections pools to one database of a cluster the test starts, so B
// learns of A's saves through the change log and LISTEN/NOTIFY.

// recorder is an Events that remembers every version it was told of.
type recorder struct {
	mu sync.Mutex
	vs []int
}

func (r *recorder) PolicyInForce(v int) {
	r.mu.Lock()
	r.vs = append(r.vs, v)
	r.mu.Unlock()
}

func (r *recorder) told() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.vs)
}

// syncBuffer is a log sink safe for the follower's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type replica struct {
	ps  *Store
	h   *policy.Holder
	ev  *recorder
	log *syncBuffer
}

func newReplica(t *testing.T, kv KV, compile policy.CompileOptions) *replica {
	t.Helper()
	r := &replica{h: &policy.Holder{}, ev: &recorder{}, log: &syncBuffer{}}
	r.ps = New(kv, r.h, Options{Now: newClock().Now, Events: r.ev, Compile: compile,
		Logger: slog.New(slog.NewTextHandler(r.log, nil))})
	if _, _, err := r.ps.Load(t.Context(), mustParsePolicy(t, storeV1), "config"); err != nil {
		t.Fatalf("load: %v", err)
	}
	return r
}

// follow runs r's follower until the test ends, and checks that it stops
// the way Follow promises: with the context's error.
func (r *replica) follow(t *testing.T, feed store.Feed) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.ps.Follow(ctx, feed) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Follow returned %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Follow did not return within 5s of its context ending")
		}
	})
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// inForceWithin waits until r holds version v (by number, and by what
// Events heard).
func inForceWithin(t *testing.T, r *replica, v int, d time.Duration) {
	t.Helper()
	waitFor(t, d, fmt.Sprintf("version %d in force (holding %d, events %v)", v, r.ps.InForce(), r.ev.told()), func() bool {
		evs := r.ev.told()
		return r.ps.InForce() == v && len(evs) > 0 && evs[len(evs)-1] == v
	})
}

// twoFactorApp is storeV1 with the app rule tightened.
func twoFactorApp(t *testing.T) policy.Policy {
	return mustParsePolicy(t, strings.Replace(storeV1, "action: one_factor", "action: two_factor", 1))
}

type backend struct {
	name string
	// pair opens the two replicas' connections to one fresh store.
	pair func(t *testing.T) (a, b store.Backend)
}

func backends() []backend {
	badger := backend{name: "badger", pair: func(t *testing.T) (store.Backend, store.Backend) {
		s := openStore(t, t.TempDir())
		return s, s
	}}
	pg := backend{name: "postgres", pair: func(t *testing.T) (store.Backend, store.Backend) {
		dsn := pgtest.Start(t).NewDatabase(t)
		open := func() store.Backend {
			s, err := pgstore.Open(t.Context(), pgstore.Options{DSN: dsn, Key: bytes.Repeat([]byte{7}, 32), MaxConns: 4, Logger: quietLogger()})
			if err != nil {
				t.Fatalf("pgstore.Open: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
		return open(), open()
	}}
	return []backend{badger, pg}
}

func TestFollowSaveAndRollbackOnOneReplicaInForceOnTheOther(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			kvA, kvB := be.pair(t)
			a := newReplica(t, kvA, policy.CompileOptions{})
			b := newReplica(t, kvB, policy.CompileOptions{})
			a.follow(t, kvA)
			b.follow(t, kvB)
			ctx := t.Context()

			start := time.Now()
			if _, err := a.ps.Update(ctx, twoFactorApp(t), 1, "alice", "tighten"); err != nil {
				t.Fatal(err)
			}
			inForceWithin(t, b, 2, time.Second)
			took := time.Since(start)
			if got := decide(b.h, "/x"); got != policy.ActionTwoFactor {
				t.Fatalf("B decides %s after A saved version 2", got)
			}
			if took > time.Second {
				t.Fatalf("save on A in force on B only after %v", took)
			}
			t.Logf("save on A (from the call) in force on B after %v", took)

			start = time.Now()
			if _, err := a.ps.Rollback(ctx, 1, 2, "alice", ""); err != nil {
				t.Fatal(err)
			}
			inForceWithin(t, b, 3, time.Second)
			took = time.Since(start)
			if got := decide(b.h, "/x"); got != policy.ActionOneFactor {
				t.Fatalf("B decides %s after A rolled back to version 1", got)
			}
			if took > time.Second {
				t.Fatalf("rollback on A in force on B only after %v", took)
			}
			t.Logf("rollback on A (from the call) in force on B after %v", took)

			// And the other way round: B saves, A follows.
			if _, err := b.ps.Update(ctx, twoFactorApp(t), 3, "bob", "again"); err != nil {
				t.Fatal(err)
			}
			inForceWithin(t, a, 4, time.Second)
			if got := decide(a.h, "/x"); got != policy.ActionTwoFactor {
				t.Fatalf("A decides %s after B saved version 4", got)
			}

			// Each replica was told each version once: its own save at
			// once, the feed's later report of it ignored as old news.
			time.Sleep(100 * time.Millisecond)
			for name, r := range map[string]*replica{"A": a, "B": b} {
				if got, want := r.ev.told(), []int{1, 2, 3, 4}; !slices.Equal(got, want) {
					t.Errorf("%s's Events heard %v, want %v", name, got, want)
				}
			}
		})
	}
}

func TestFollowConcurrentSavesEndOnTheSameLatestVersion(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			kvA, kvB := be.pair(t)
			a := newReplica(t, kvA, policy.CompileOptions{})
			b := newReplica(t, kvB, policy.CompileOptions{})
			a.follow(t, kvA)
			b.follow(t, kvB)

			// Every save puts first a rule that lets one marker path through,
			// so a holder shows which save it has in force.
			marked := func(marker string) policy.Policy {
				return mustParsePolicy(t, strings.Replace(storeV1, "rules:\n", fmt.Sprintf(`rules:
  - name: %s
    hosts: [app.example.com]
    paths: ["/%s"]
    action: bypass
`, marker, marker), 1))
			}
			const perReplica = 8
			var wg sync.WaitGroup
			var mu sync.Mutex
			saved := map[int]string{} // version -> marker
			for name, r := range map[string]*replica{"a": a, "b": b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perReplica {
						marker := fmt.Sprintf("%s%d", name, i)
						v, err := r.ps.Update(context.Background(), marked(marker), -1, name, "race")
						if errors.Is(err, ErrConflict) {
							continue // the other replica's save won this round
						}
						if err != nil {
							t.Errorf("%s: %v", marker, err)
							return
						}
						mu.Lock()
						saved[v.Version] = marker
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			cur, err := a.ps.Current(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(saved) != cur.Version-1 || saved[cur.Version] == "" {
				t.Fatalf("saves %v do not add up to the current version %d", saved, cur.Version)
			}
			last := saved[cur.Version]
			for name, r := range map[string]*replica{"A": a, "B": b} {
				inForceWithin(t, r, cur.Version, time.Second)
				if got := decide(r.h, "/"+last); got != policy.ActionBypass {
					t.Errorf("%s holds version %d but decides %s for the latest save's marker /%s", name, r.ps.InForce(), got, last)
				}
				evs := r.ev.told()
				if !strictlyIncreasing(evs) {
					t.Errorf("%s's Events went back or repeated: %v", name, evs)
				}
			}
		})
	}
}

func TestFollowKeepsTheRunningVersionWhenASavedOneDoesNotCompileHere(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			kvA, kvB := be.pair(t)
			// A registers SMS; B does not, so a rule asking for SMS does
			// not compile on B.
			a := newReplica(t, kvA, policy.CompileOptions{Factors: []string{"webauthn", "totp", "email", "recovery", "sms"}})
			b := newReplica(t, kvB, policy.CompileOptions{})
			b.follow(t, kvB)
			ctx := t.Context()

			sms := mustParsePolicy(t, strings.Replace(storeV1, "action: one_factor", "action: two_factor\n    factors: [sms]", 1))
			if _, err := a.ps.Update(ctx, sms, 1, "alice", "sms only"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, time.Second, "B logs the version it refuses", func() bool {
				return strings.Contains(b.log.String(), "does not compile here")
			})
			if got := b.ps.InForce(); got != 1 {
				t.Fatalf("B holds version %d, want 1 still", got)
			}
			if got := decide(b.h, "/x"); got != policy.ActionOneFactor {
				t.Fatalf("B decides %s, want version 1's one_factor", got)
			}
			if got := b.ev.told(); !slices.Equal(got, []int{1}) {
				t.Fatalf("B's Events heard %v, want only 1", got)
			}

			// The next version that compiles is put in force.
			if _, err := a.ps.Update(ctx, twoFactorApp(t), 2, "alice", "back to every factor"); err != nil {
				t.Fatal(err)
			}
			inForceWithin(t, b, 3, time.Second)
			if got := decide(b.h, "/x"); got != policy.ActionTwoFactor {
				t.Fatalf("B decides %s after version 3", got)
			}
			if got := b.ev.told(); !slices.Equal(got, []int{1, 3}) {
				t.Fatalf("B's Events heard %v, want [1 3]", got)
			}
			if n := strings.Count(b.log.String(), "does not compile here"); n != 1 {
				t.Errorf("the refused version was logged %d times, want once", n)
			}
		})
	}
}

func strictlyIncreasing(vs []int) bool {
	for i := 1; i < len(vs); i++ {
		if vs[i] <= vs[i-1] {
			return false
		}
	}
	return true
}

// gatedFeed is the real store's feed with the follower's first Changes
// call held until the test releases it, so that the test can let the
// store trim the changes the follower still needs.
type gatedFeed struct {
	store.Feed
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gatedFeed) Changes(ctx context.Context, prefix string, after uint64, limit int) ([]store.Change, uint64, error) {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	return g.Feed.Changes(ctx, prefix, after, limit)
}

func TestFollowRereadsAfterAGap(t *testing.T) {
	// Badger keeps only the newest FeedRetention changes: a follower
	// further behind gets store.ErrGap from the real store.
	kv, err := badgerstore.Open(badgerstore.Options{Path: t.TempDir(), Logger: quietLogger(), FeedRetention: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Close() })
	a := newReplica(t, kv, policy.CompileOptions{})
	b := newReplica(t, kv, policy.CompileOptions{})
	feed := &gatedFeed{Feed: kv, entered: make(chan struct{}), release: make(chan struct{})}
	b.follow(t, feed)
	<-feed.entered // B has read head and is about to ask for changes

	ctx := t.Context()
	if _, err := a.ps.Update(ctx, twoFactorApp(t), 1, "alice", "tighten"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 { // push version 2's change out of the feed
		if _, err := kv.Set(ctx, fmt.Sprintf("noise/%d", i), []byte("x"), store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := kv.Changes(ctx, policyHeadKey, 0, 1); !errors.Is(err, store.ErrGap) {
		t.Fatalf("the store did not trim its feed (err %v): the test proves nothing", err)
	}
	close(feed.release)
	inForceWithin(t, b, 2, time.Second)
	if got := decide(b.h, "/x"); got != policy.ActionTwoFactor {
		t.Fatalf("B decides %s after the gap", got)
	}
	if !strings.Contains(b.log.String(), "no longer holds") {
		t.Errorf("B's log does not say it re-read after a gap:\n%s", b.log.String())
	}
}

func TestFollowStopsWhenTheStoreCloses(t *testing.T) {
	kv, err := badgerstore.Open(badgerstore.Options{Path: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r := newReplica(t, kv, policy.CompileOptions{})
	done := make(chan error, 1)
	go func() { done <- r.ps.Follow(context.Background(), kv) }()
	time.Sleep(50 * time.Millisecond) // let it reach Wait
	_ = kv.Close()
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrClosed) {
			t.Fatalf("Follow returned %v, want store.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return within 5s of the store closing")
	}
}

func TestFollowSurvivesADatabaseOutage(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	open := func() *pgstore.Store {
		s, err := pgstore.Open(t.Context(), pgstore.Options{DSN: dsn, Key: bytes.Repeat([]byte{7}, 32), MaxConns: 4, Logger: quietLogger()})
		if err != nil {
			t.Fatalf("pgstore.Open: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	kvA, kvB := open(), open()
	a := newReplica(t, kvA, policy.CompileOptions{})
	b := newReplica(t, kvB, policy.CompileOptions{})
	b.follow(t, kvB)

	c.Stop(t)
	time.Sleep(time.Second) // B's follower meets the outage and backs off
	c.Resume(t)
	var err error
	for range 50 { // A's pool reconnects on its own; give it a moment
		if _, err = a.ps.Update(t.Context(), twoFactorApp(t), 1, "alice", "after the outage"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("save after the outage: %v", err)
	}
	// The follower's backoff is at most a few seconds after a short
	// outage; LISTEN reconnects and the slow poll cover the rest.
	inForceWithin(t, b, 2, 5*time.Second)
	if got := decide(b.h, "/x"); got != policy.ActionTwoFactor {
		t.Fatalf("B decides %s after the outage", got)
	}
}
