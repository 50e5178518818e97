package authn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/authn/store"
)

// Several replicas on one store.
//
// Every replica keeps all sessions in memory (Lookup stays a map read), and
// Follow keeps that memory current with the store's change feed: a session
// created, rotated (old key removed, new key written), elevated (AddProof
// is a rotation) or revoked on any replica appears here within the feed's
// delay. Writes this replica made come back through the feed too; they are
// harmless because an update is applied only when its version is newer than
// the one held, and a key removed here is remembered (a tombstone) so that
// its older write, still on its way through the feed, cannot bring it back.
//
// The feed's delay leaves one hole: a cookie signed in on another replica
// a moment ago may arrive here before its change does. A cookie unknown to
// memory is therefore looked up once in the store (fetch), but only while
// following (a single replica holds every session already, so a miss needs
// no store read), and bounded: unknown keys are remembered for a few
// seconds (a bounded negative cache) and the reads are token buckets: one
// per client (LookupAtFrom names it; the gateway passes the client's
// address), so a flood of random cookies from one address uses up only its
// own, and a global one, so many addresses together never turn into
// unbounded store load. Running out only delays a fresh cross-replica
// session by at most the feed's delay: the feed delivers it anyway.

// Bounds of the store fallback for unknown cookies.
const (
	missTTL       = 5 * time.Second        // how long an unknown key is remembered
	missCap       = 8192                   // unknown keys remembered at most
	fetchRate     = 100                    // store reads per second, sustained
	fetchBurst    = 200                    // store reads at once
	clientRate    = 5                      // store reads per second and client, sustained
	clientBurst   = 20                     // store reads at once per client
	clientCap     = 4096                   // clients whose bucket is remembered
	fetchTimeout  = 500 * time.Millisecond // one read's budget on the request path
	tombTTL       = time.Minute            // how long a local removal is remembered
	followPage    = 512                    // changes per Changes call
	followBackoff = 2 * time.Second        // longest pause after a failed feed call
	catchUpWait   = time.Second            // see catchUp
)

// remote is the state of the store fallback and of the follower.
type remote struct {
	mu sync.Mutex
	// miss maps unknown keys to when they are forgotten (unix ns); ring is
	// their insertion order, so the oldest goes first when it is full.
	miss   map[skey]int64
	ring   [missCap]skey
	next   int
	tokens float64
	refill int64 // unix ns of the last refill
	// clients: the per-client buckets of unknown-cookie reads.
	clients map[string]*bucket
	// tombs: keys removed here whose removal the follower has not seen
	// yet (unix ns of the removal). Guarded by Sessions.mu, not remote.mu.
	tombs  map[skey]int64
	pruned int64 // unix ns of the last pruning of tombs

	feed   store.Feed
	cursor atomic.Uint64 // the feed point applied up to (see catchUp)
}

func newRemote(feed store.Feed) *remote {
	return &remote{miss: make(map[skey]int64), tokens: fetchBurst, tombs: make(map[skey]int64), feed: feed,
		clients: make(map[string]*bucket)}
}

// bucket is one client's token bucket.
type bucket struct {
	tokens float64
	refill int64
}

// clientTake takes a token from client's bucket (r.mu held). When the
// table is full, buckets that have refilled completely are forgotten
// (their clients lose nothing); if none has, the client is refused: a
// table full of busy buckets is itself a flood.
func (r *remote) clientTake(client string, now int64) bool {
	b := r.clients[client]
	if b == nil {
		if len(r.clients) >= clientCap {
			for k, o := range r.clients {
				if o.tokens+float64(now-o.refill)*clientRate/float64(time.Second) >= clientBurst {
					delete(r.clients, k)
				}
			}
			if len(r.clients) >= clientCap {
				return false
			}
		}
		b = &bucket{tokens: clientBurst, refill: now}
		r.clients[client] = b
	}
	b.tokens = min(clientBurst, b.tokens+float64(now-b.refill)*clientRate/float64(time.Second))
	b.refill = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Follow keeps this replica's sessions current with the changes other
// replicas (and this one) make, until ctx ends; it returns ctx's error.
// Run it in its own goroutine once per Sessions, next to Run. Failed feed
// calls (the database away) are logged and retried with a growing pause;
// on store.ErrGap (this replica fell behind the feed's retention) it
// re-reads every session with Scan and goes on.
func (s *Sessions) Follow(ctx context.Context, feed store.Feed) error {
	if !s.following.CompareAndSwap(nil, newRemote(feed)) {
		return errors.New("sessions: Follow is already running")
	}
	return s.follow(ctx, feed)
}

// StartFollowing is Follow in a goroutine of its own, registered before it
// returns: from then on a cookie this replica has not seen is looked up in
// the store, even if the goroutine starts late (requests served right
// after start-up must not miss sessions other replicas created).
func (s *Sessions) StartFollowing(ctx context.Context, feed store.Feed) error {
	if !s.following.CompareAndSwap(nil, newRemote(feed)) {
		return errors.New("sessions: Follow is already running")
	}
	go func() { _ = s.follow(ctx, feed) }()
	return nil
}

func (s *Sessions) follow(ctx context.Context, feed store.Feed) error {
	pause := 50 * time.Millisecond
	fail := func(what string, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Error("sessions: following the store", "step", what, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, followBackoff)
		return nil
	}
	for {
		// (Re)start: the head before the Scan, so nothing between them is
		// missed; changes after head that the Scan already saw are old news.
		cur, err := feed.Head(ctx)
		if err == nil {
			err = s.resync(ctx)
		}
		if err != nil {
			if e := fail("resync", err); e != nil {
				return e
			}
			continue
		}
		pause = 50 * time.Millisecond
		s.following.Load().cursor.Store(cur)
		for {
			chs, next, err := feed.Changes(ctx, sessionPrefix, cur, followPage)
			if errors.Is(err, store.ErrGap) {
				s.log.Warn("sessions: fell behind the change feed; re-reading all sessions")
				break
			}
			if err != nil {
				if e := fail("changes", err); e != nil {
					return e
				}
				continue
			}
			for _, ch := range chs {
				s.apply(ctx, ch)
			}
			cur = next
			s.following.Load().cursor.Store(cur)
			if len(chs) == 0 {
				if _, err := feed.Wait(ctx, cur); err != nil {
					if e := fail("wait", err); e != nil {
						return e
					}
				}
			}
			pause = 50 * time.Millisecond
		}
	}
}

// resync re-reads every session: records in the store are applied like
// changes, and sessions held in memory before the Scan that the Scan did
// not find were removed meanwhile. (A session that appears in memory
// during the Scan is not a candidate: it may have been created after the
// Scan passed its key.)
func (s *Sessions) resync(ctx context.Context) error {
	s.mu.Lock()
	before := make(map[skey]bool, s.count)
	for i := range s.shards {
		for k := range s.shards[i].m {
			before[k] = true
		}
	}
	s.mu.Unlock()
	err := s.kv.Scan(ctx, sessionPrefix, func(it store.Item) error {
		if key, ok := parseStoreKey(it.Key); ok {
			delete(before, key)
			s.apply(ctx, store.Change{Key: it.Key, Value: it.Value, Version: it.Version, ExpiresAt: it.ExpiresAt})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("re-read sessions: %w", err)
	}
	s.mu.Lock()
	for k := range before {
		if e := s.shards[shardOf(&k)].m[k]; e != nil && !e.rotating {
			e.revoked = true
			s.removeLocked(e)
		}
	}
	s.mu.Unlock()
	return nil
}

// apply brings one change of the feed into memory.
func (s *Sessions) apply(ctx context.Context, ch store.Change) {
	key, ok := parseStoreKey(ch.Key)
	if !ok {
		return
	}
	r := s.following.Load()
	if ch.Deleted {
		s.mu.Lock()
		delete(r.tombs, key) // its removal is through: the key cannot come back
		// A rotation under way owns its old entry: the removal is its own
		// (a foreign one makes its CompareAndDelete fail, see replace).
		if e := s.shards[shardOf(&key)].m[key]; e != nil && !e.rotating {
			e.revoked = true
			s.removeLocked(e)
			delete(r.tombs, key)
		}
		s.mu.Unlock()
		return
	}
	if !ch.ExpiresAt.IsZero() && !ch.ExpiresAt.After(s.now()) {
		return
	}
	sess, err := decodeSession(ch.Value)
	if err != nil {
		s.log.Warn("sessions: skipping undecodable record from the feed", "handle", handleOf(key), "err", err)
		return
	}
	sess.Handle = handleOf(key)
	s.adopt(ctx, key, sess, ch.Version)
}

// adopt puts a session read from the store (feed, Scan or fetch) into
// memory, or updates the one held if version is newer, and returns the
// entry (nil: the key was removed here meanwhile).
func (s *Sessions) adopt(ctx context.Context, key skey, sess *Session, version uint64) *entry {
	s.mu.Lock()
	if _, gone := s.following.Load().tombs[key]; gone {
		s.mu.Unlock()
		return nil
	}
	if e := s.shards[shardOf(&key)].m[key]; e != nil {
		s.mu.Unlock()
		if e.publish(version, sess) {
			// Another replica's flush: its LastSeen counts here too, and
			// need not be written again by this one.
			seen := sess.LastSeen.UnixNano()
			raise(&e.lastSeen, seen)
			raise(&e.flushed, seen)
		}
		return e
	}
	e := newEntry(key, sess, version)
	s.insertLocked(e)
	// The per-user cap is the creating replica's job (its removals arrive
	// here); the memory bound is this replica's own.
	victims := s.evictLocked()
	s.mu.Unlock()
	if len(victims) > 0 {
		keys := make([]skey, len(victims))
		for i, v := range victims {
			keys[i] = v.key
		}
		if err := s.deleteStored(context.WithoutCancel(ctx), keys); err != nil {
			s.log.Error("sessions: deleting evicted sessions", "err", err)
		}
	}
	return e
}

// fetch looks a key unknown to memory up in the store, within the bounds
// described at the top of this file. It runs on the request path, so it
// has its own short deadline.
func (s *Sessions) fetch(key skey, at time.Time, client string) *entry {
	r := s.following.Load()
	if r == nil {
		return nil
	}
	now := at.UnixNano()
	r.mu.Lock()
	if until, ok := r.miss[key]; ok && now < until {
		r.mu.Unlock()
		return nil
	}
	if client != "" && !r.clientTake(client, now) {
		r.mu.Unlock()
		return nil
	}
	r.tokens = min(fetchBurst, r.tokens+float64(now-r.refill)*fetchRate/float64(time.Second))
	r.refill = now
	if r.tokens < 1 {
		r.mu.Unlock()
		return nil
	}
	r.tokens--
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	it, err := s.kv.Get(ctx, storeKey(key))
	if errors.Is(err, store.ErrNotFound) {
		r.mu.Lock()
		if old := r.ring[r.next]; r.miss[old] != 0 {
			delete(r.miss, old)
		}
		r.ring[r.next] = key
		r.next = (r.next + 1) % missCap
		r.miss[key] = now + int64(missTTL)
		r.mu.Unlock()
		return nil
	}
	if err != nil {
		return nil // the store is away: unknown for now, not remembered
	}
	sess, err := decodeSession(it.Value)
	if err != nil {
		return nil
	}
	sess.Handle = handleOf(key)
	return s.adopt(ctx, key, sess, it.Version)
}

// known returns the entry of key, fetching it from the store when this
// replica follows others and does not hold it (nil: no such session).
func (s *Sessions) known(key skey) *entry {
	sh := &s.shards[shardOf(&key)]
	sh.mu.RLock()
	e := sh.m[key]
	sh.mu.RUnlock()
	if e == nil {
		e = s.fetch(key, s.now(), "")
	}
	return e
}

// catchUp waits (up to catchUpWait) until the follower has applied every
// change committed before it was called. Revocations by user or handle
// find sessions through this replica's memory: without it, a session
// signed in on another replica a moment ago, still on its way through the
// feed, would survive "sign out everywhere". A no-op when not following;
// when the feed is away it gives up and the revocation acts on what is
// held (the error is logged).
func (s *Sessions) catchUp(ctx context.Context) {
	r := s.following.Load()
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, catchUpWait)
	defer cancel()
	head, err := r.feed.Head(ctx)
	if err != nil {
		s.log.Warn("sessions: cannot catch up with the feed before a revocation", "err", err)
		return
	}
	for r.cursor.Load() < head {
		select {
		case <-ctx.Done():
			s.log.Warn("sessions: the follower did not catch up before a revocation", "behind", head-r.cursor.Load())
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// tombLocked remembers a key removed here (see Follow); s.mu must be held.
// Old tombstones go when the map grows: a removal whose change never came
// back (a failed delete) must not pin memory.
func (s *Sessions) tombLocked(k skey) {
	r := s.following.Load()
	if r == nil {
		return
	}
	now := s.now().UnixNano()
	if now-r.pruned > int64(tombTTL)/4 {
		r.pruned = now
		for t, at := range r.tombs {
			if now-at > int64(tombTTL) {
				delete(r.tombs, t)
			}
		}
	}
	r.tombs[k] = now
}

// publish replaces the snapshot and version if version is newer than the
// one held; the pair changes together (pub), so a reader of both never
// sees one without the other.
func (e *entry) publish(version uint64, sess *Session) bool {
	e.pub.Lock()
	defer e.pub.Unlock()
	if version <= e.version.Load() {
		return false
	}
	e.version.Store(version)
	e.sess.Store(sess)
	return true
}

func raise(v interface {
	Load() int64
	CompareAndSwap(old, new int64) bool
}, to int64) {
	for {
		cur := v.Load()
		if cur >= to || v.CompareAndSwap(cur, to) {
			return
		}
	}
}
