package authn

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/policy"
)

// Meta describes the client a session is created for.
type Meta struct {
	IP        string
	UserAgent string
}

// Session is what the gateway knows about a signed-in browser: who, which
// factors were proved (when and how), and its lifetime.
//
// A *Session handed out by Sessions is a read-only snapshot: it is never
// modified after it is published (changes publish a new one), so it can be
// read without locks; callers must not modify it or its slices.
type Session struct {
	// ID is the cookie value. It is set only on the *Session returned by
	// Create, AddProof and Rotate, the moments the caller must (re)set the
	// cookie. Sessions from Lookup and ListUser leave it empty: the store
	// keeps only its SHA-256 (so a copy of the database holds no usable
	// cookies) and nobody knows it after a restart, and a listing of
	// sessions can never leak another session's cookie.
	ID string `json:"-"`
	// Handle names the session in listings and for RevokeHandle. It is
	// derived from the ID's hash and cannot be used as a cookie.
	Handle      string         `json:"handle"`
	Username    string         `json:"username"`
	Email       string         `json:"email,omitempty"`
	DisplayName string         `json:"display_name,omitempty"`
	Groups      []string       `json:"groups"`
	Proofs      []policy.Proof `json:"proofs"`
	IP          string         `json:"ip,omitempty"`
	UserAgent   string         `json:"user_agent,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
	// LastSeen is the last activity. The copy in a snapshot from Lookup
	// may lag by up to one Flush interval (see Sessions); idle expiry
	// itself always uses the exact value.
	LastSeen time.Time `json:"last_seen"`
	// ExpiresAt is the end of the absolute lifetime; no activity and no
	// privilege change extends it.
	ExpiresAt time.Time `json:"expires_at"`
	// AlwaysAsk is the person's "always ask me for a second factor"
	// (User.AlwaysAsk), copied at sign-in and whenever it changes
	// (SyncUser), so that the gate applies it without reading the user.
	AlwaysAsk bool `json:"always_ask,omitempty"`
}

// SessionOptions configure Sessions. Zero values take the defaults.
type SessionOptions struct {
	// IdleTimeout ends a session this long after its last activity
	// (default 30m).
	IdleTimeout time.Duration
	// Lifetime ends a session this long after it was created, however
	// active (default 12h).
	Lifetime time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxSessions bounds the sessions held in memory (default 200 000;
	// roughly 1 KiB each). Beyond it the least recently active sessions
	// are ended.
	MaxSessions int
	// MaxPerUser bounds one user's sessions (default 20): creating one
	// more ends that user's oldest first. It never touches another user's
	// sessions, so nobody can sign someone else out by signing in a lot,
	// and one account cannot fill memory (MaxSessions) with its own.
	MaxPerUser int
	// Logger receives errors of the background work in Run and of best
	// effort clean-ups (default: discard). Nothing secret is logged.
	Logger *slog.Logger
}

// Defaults of SessionOptions.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultLifetime    = 12 * time.Hour
	DefaultMaxSessions = 200_000
	DefaultMaxPerUser  = 20
)

const (
	idBytes    = 32                  // 256 random bits
	idLen      = (idBytes*8 + 5) / 6 // unpadded base64url length: 43
	shardCount = 64                  // power of two; see shardOf
	maxProofs  = 16                  // bounds a session's proof list
	maxIPLen   = 64                  // an IPv6 address with zone fits
	maxUALen   = 512                 // user agents are rarely longer
	touchEvery = int64(time.Second)  // LastSeen resolution, see Lookup
	evictShare = 256                 // evict 1/evictShare of MaxSessions at once
	handleLen  = 12                  // bytes of the key hash in a Handle
	sessionV   = 1                   // schema version of sessionRecord
)

// Sessions keeps server-side sessions: persisted in the store (durable,
// TTL = time to absolute expiry) so they survive a restart, and all held in
// memory, which is authoritative for lookups.
//
// Why everything is in memory: Lookup runs on every proxied request, and
// the cookie it gets may be anything a client sends; a miss must not turn
// into disk reads an attacker can drive. Every live session is loaded once
// by NewSessions, and every change goes to the store and to memory, so the
// two hold the same set of sessions.
//
// Why the map key is SHA-256(ID), the same bytes as the store key: a fixed
// [32]byte key hashes and compares without allocating; the clear ID is
// never kept, so neither a heap dump nor a copy of the database yields a
// usable cookie; and a map lookup whose timing depends on the key leaks
// bits of a hash, not of the secret.
//
// Why LastSeen is kept in memory and flushed in batches: refreshing it on
// every request would make the hot path a disk write (and an fsync). Lookup
// updates an atomic in memory instead, and Flush writes the sessions that
// changed. A crash loses at most one flush interval of activity, which can
// only make a session look idle sooner: the failure is on the safe side.
type Sessions struct {
	kv       KV
	idle     int64 // ns
	lifetime time.Duration
	now      func() time.Time
	max      int
	perUser  int
	log      *slog.Logger

	// shards hold the sessions by key. Lookup takes only a shard's read
	// lock; writers take mu and then the shard's write lock, so anyone
	// holding mu may read every shard without its lock.
	shards [shardCount]shard

	mu sync.Mutex // serialises changes to the set of sessions
	// byUser lists each user's sessions (e.userIdx is e's index). A slice,
	// not a map: most users have one to three sessions, and an inner map
	// per user cost ~200 bytes a session.
	byUser  map[string][]*entry // guarded by mu
	count   int                 // guarded by mu
	flushMu sync.Mutex          // one Flush at a time

	// following is set while Follow runs (see sessions_follow.go): then
	// memory is a cache of the store kept current by the feed, and a
	// cookie unknown to memory is looked up in the store, within bounds.
	following atomic.Pointer[remote]
}

type skey = [sha256.Size]byte

type shard struct {
	mu sync.RWMutex
	m  map[skey]*entry
	// Keeps neighbouring shards' locks off one cache line, so readers on
	// different cores do not slow each other down.
	_ [64]byte
}

// entry is one session in memory. The Session snapshot is replaced, never
// modified; lastSeen, flushed, version and dead change in place.
type entry struct {
	key      skey
	username string
	expires  int64 // absolute expiry, unix ns; fixed for the entry's life

	sess     atomic.Pointer[Session]
	lastSeen atomic.Int64  // unix ns, refreshed by Lookup
	flushed  atomic.Int64  // the lastSeen value last written to the store
	version  atomic.Uint64 // store version of the record
	pub      sync.Mutex    // changes of version with sess (see publish)
	// dead makes Lookup treat the entry as gone at once: set when it is
	// revoked, expired, evicted or while it is being rotated away.
	dead atomic.Bool

	rotating bool // guarded by Sessions.mu: a Rotate/AddProof is under way
	revoked  bool // guarded by Sessions.mu: tells a rotation under way not to publish a successor
	userIdx  int  // guarded by Sessions.mu: index in Sessions.byUser
}

// sessionRecord is the stored form of a session (the ID is not in it; the
// store key is the hex SHA-256 of the ID).
type sessionRecord struct {
	V           int           `json:"v"`
	Username    string        `json:"username"`
	Email       string        `json:"email,omitempty"`
	DisplayName string        `json:"display_name,omitempty"`
	Groups      []string      `json:"groups,omitempty"`
	Proofs      []proofRecord `json:"proofs"`
	IP          string        `json:"ip,omitempty"`
	UserAgent   string        `json:"user_agent,omitempty"`
	CreatedAt   time.Time     `json:"created_at"`
	LastSeen    time.Time     `json:"last_seen"`
	ExpiresAt   time.Time     `json:"expires_at"`
	AlwaysAsk   bool          `json:"always_ask,omitempty"`
}

type proofRecord struct {
	Kind           string    `json:"kind"`
	At             time.Time `json:"at"`
	Ref            string    `json:"ref,omitempty"`
	AAGUID         string    `json:"aaguid,omitempty"`
	Attested       bool      `json:"attested,omitempty"`
	UserVerified   bool      `json:"uv,omitempty"`
	BackupEligible bool      `json:"be,omitempty"`
}

// NewSessions loads every live session from the store into memory, deletes
// the ones that have gone idle (or exceed MaxSessions), and returns the
// Sessions. Only a failed Scan is an error. Records that cannot be decoded
// are skipped and logged (their TTL removes them); a failed delete of a
// stale record is logged (it is not loaded either way).
func NewSessions(ctx context.Context, kv KV, opt SessionOptions) (*Sessions, error) {
	s := &Sessions{
		kv:       kv,
		idle:     int64(cmp.Or(max(opt.IdleTimeout, 0), DefaultIdleTimeout)),
		lifetime: cmp.Or(max(opt.Lifetime, 0), DefaultLifetime),
		now:      opt.Now,
		max:      cmp.Or(max(opt.MaxSessions, 0), DefaultMaxSessions),
		perUser:  cmp.Or(max(opt.MaxPerUser, 0), DefaultMaxPerUser),
		log:      opt.Logger,
		byUser:   make(map[string][]*entry),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for i := range s.shards {
		s.shards[i].m = make(map[skey]*entry)
	}

	now := s.now().UnixNano()
	var stale []skey
	in := newInterner()
	s.mu.Lock()
	err := kv.Scan(ctx, sessionPrefix, func(it store.Item) error {
		key, ok := parseStoreKey(it.Key)
		if !ok {
			s.log.Warn("sessions: skipping record with a malformed key", "key", it.Key)
			return nil
		}
		sess, err := decodeSession(it.Value)
		if err != nil {
			s.log.Warn("sessions: skipping undecodable record", "handle", handleOf(key), "err", err)
			return nil
		}
		sess.Handle = handleOf(key)
		in.session(sess)
		e := newEntry(key, sess, it.Version)
		if !s.live(e, now) {
			stale = append(stale, key)
			return nil
		}
		s.insertLocked(e)
		return nil
	})
	var victims []*entry
	for name := range s.byUser {
		victims = append(victims, s.capUserLocked(name, nil)...)
	}
	victims = append(victims, s.evictLocked()...)
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("load sessions: %w", err)
	}
	for _, e := range victims {
		stale = append(stale, e.key)
	}
	if err := s.deleteStored(ctx, stale); err != nil {
		s.log.Error("sessions: deleting stale sessions at load", "err", err)
	}
	return s, nil
}

// Create starts a session for u, proved by p (p.At zero = now), and returns
// it with its ID set. The ID is 256 bits from crypto/rand, base64url.
func (s *Sessions) Create(ctx context.Context, u User, p policy.Proof, m Meta) (*Session, error) {
	if u.Username == "" {
		return nil, fmt.Errorf("create session: %w: no username", ErrInvalidUser)
	}
	if u.Disabled {
		return nil, fmt.Errorf("create session for %q: %w", u.Username, ErrUserDisabled)
	}
	if p.Kind == "" {
		return nil, errors.New("create session: proof has no kind")
	}
	now := s.clock()
	if p.At.IsZero() {
		p.At = now
	}
	id, key := newID()
	sess := &Session{
		Handle:      handleOf(key),
		Username:    u.Username,
		Email:       u.Email,
		DisplayName: u.DisplayName,
		Groups:      append([]string{}, u.Groups...), // a copy, and [] rather than null in JSON
		Proofs:      []policy.Proof{p},
		IP:          activity.Clip(m.IP, maxIPLen),
		UserAgent:   activity.Clip(m.UserAgent, maxUALen),
		CreatedAt:   now,
		LastSeen:    now,
		ExpiresAt:   now.Add(s.lifetime),
		AlwaysAsk:   u.AlwaysAsk,
	}
	ver, err := s.kv.CompareAndSet(ctx, storeKey(key), encodeSession(sess), 0, store.WriteOptions{TTL: s.lifetime, Durable: true})
	if err != nil {
		return nil, fmt.Errorf("create session for %q: %w", u.Username, err)
	}
	e := newEntry(key, sess, ver)
	s.mu.Lock()
	s.insertLocked(e)
	victims := s.capUserLocked(e.username, e)
	victims = append(victims, s.evictLocked()...)
	s.mu.Unlock()
	if len(victims) > 0 {
		keys := make([]skey, len(victims))
		for i, v := range victims {
			keys[i] = v.key
		}
		// The new session exists either way; a failed delete only means an
		// evicted session may come back after a restart.
		if err := s.deleteStored(context.WithoutCancel(ctx), keys); err != nil {
			s.log.Error("sessions: deleting evicted sessions", "err", err)
		}
	}
	out := *sess
	out.ID = id
	return &out, nil
}

// Lookup returns the session whose cookie value is id, if it is live. It is
// the proxy's hot path: for a known session memory only, no allocation, a
// shard read lock and a few atomics. An unknown id costs no store access
// either, unless Follow runs: then it is looked up in the store once, within
// the bounds described in sessions_follow.go. It checks idle and
// absolute expiry against the clock and refreshes LastSeen in memory.
func (s *Sessions) Lookup(id string) (*Session, bool) {
	if len(id) != idLen {
		return nil, false
	}
	return s.LookupAt(id, s.now())
}

// LookupAt is Lookup at a time the caller already read from the same clock
// (SessionOptions.Now): the proxy reads the clock once per request for the
// policy and the session alike, a reading being a noticeable share of the
// lookup on virtual machines.
func (s *Sessions) LookupAt(id string, at time.Time) (*Session, bool) {
	return s.LookupAtFrom(id, at, "")
}

// LookupAtFrom is LookupAt for a request from client (its address, or ""
// for none): a cookie this replica has not seen is looked up in the store
// within client's own budget as well as the global one (see fetch).
func (s *Sessions) LookupAtFrom(id string, at time.Time, client string) (*Session, bool) {
	if len(id) != idLen {
		return nil, false
	}
	key := keyOf(id)
	sh := &s.shards[shardOf(&key)]
	sh.mu.RLock()
	e := sh.m[key]
	sh.mu.RUnlock()
	if e == nil {
		// Off the path of known cookies; a no-op unless following.
		e = s.fetch(key, at, client)
	}
	if e == nil || e.dead.Load() {
		return nil, false
	}
	now := at.UnixNano()
	if !s.live(e, now) {
		return nil, false
	}
	// Write LastSeen at most once a second per session: a busy session
	// then does not make every request write a shared cache line, and a
	// second is far below any idle timeout.
	for {
		last := e.lastSeen.Load()
		if now-last < touchEvery || e.lastSeen.CompareAndSwap(last, now) {
			break
		}
	}
	return e.sess.Load(), true
}

// AddProof records another satisfied factor. This is a privilege change, so
// the session gets a new ID (returned): the old ID stops working at once,
// which defeats session fixation. A proof of the same kind and properties
// as an earlier one replaces it (a step-up refreshes its time).
func (s *Sessions) AddProof(ctx context.Context, id string, p policy.Proof) (*Session, error) {
	if p.Kind == "" {
		return nil, errors.New("add proof: proof has no kind")
	}
	return s.replace(ctx, id, "add proof", func(ns *Session, now time.Time) {
		if p.At.IsZero() {
			p.At = now
		}
		ns.Proofs = mergeProof(ns.Proofs, p)
	})
}

// Rotate gives the session a new ID (returned) and kills the old one.
func (s *Sessions) Rotate(ctx context.Context, id string) (*Session, error) {
	return s.replace(ctx, id, "rotate", func(*Session, time.Time) {})
}

// replace moves the session of id to a new ID with mutate applied.
//
// Order: the old ID dies in memory first (no request can use it from then
// on), then the old record is deleted from the store, then the new one is
// written, then published. A crash or a failed write in between loses the
// session (the person signs in again) but can never leave the old ID alive
// next to the new one.
func (s *Sessions) replace(ctx context.Context, id, op string, mutate func(*Session, time.Time)) (*Session, error) {
	if len(id) != idLen {
		return nil, ErrSessionNotFound
	}
	oldKey := keyOf(id)
	now := s.clock()
	s.known(oldKey) // signed in on another replica a moment ago
	s.mu.Lock()
	old := s.shards[shardOf(&oldKey)].m[oldKey]
	if old == nil || old.rotating || old.dead.Load() || !s.live(old, now.UnixNano()) {
		s.mu.Unlock()
		return nil, ErrSessionNotFound
	}
	old.rotating = true
	old.dead.Store(true)
	s.mu.Unlock()

	ns := *old.sess.Load()
	ns.Proofs = slices.Clone(ns.Proofs)
	mutate(&ns, now)
	ns.LastSeen = now
	nid, newKey := newID()
	ns.Handle = handleOf(newKey)

	if err := s.deleteVersion(ctx, oldKey, old.version.Load()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// Revoked on another replica meanwhile.
			s.mu.Lock()
			old.revoked = true
			s.removeLocked(old)
			s.mu.Unlock()
			return nil, ErrSessionNotFound
		}
		// Nothing changed in the store: the old session stays valid.
		s.mu.Lock()
		old.rotating = false
		if !old.revoked {
			old.dead.Store(false)
		}
		s.mu.Unlock()
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	// Past this point a cancelled request would cost the session, so the
	// write goes ahead regardless of ctx.
	ver, err := s.kv.CompareAndSet(context.WithoutCancel(ctx), storeKey(newKey), encodeSession(&ns), 0,
		store.WriteOptions{TTL: ns.ExpiresAt.Sub(now), Durable: true})
	if err != nil {
		s.mu.Lock()
		s.removeLocked(old)
		s.mu.Unlock()
		return nil, fmt.Errorf("%s: session ended: %w", op, err)
	}
	e := newEntry(newKey, &ns, ver)
	s.mu.Lock()
	if old.revoked {
		// Revoke or RevokeUser ran meanwhile: they win.
		s.mu.Unlock()
		if err := s.kv.Delete(context.WithoutCancel(ctx), storeKey(newKey)); err != nil {
			s.log.Error("sessions: deleting a session revoked during rotation", "handle", ns.Handle, "err", err)
		}
		return nil, ErrSessionNotFound
	}
	s.removeLocked(old)
	s.insertLocked(e)
	s.mu.Unlock()
	out := ns
	out.ID = nid
	return &out, nil
}

// Revoke ends the session of id (sign-out). It returns ErrSessionNotFound
// when there is no such session, without touching the store.
func (s *Sessions) Revoke(ctx context.Context, id string) error {
	if len(id) != idLen {
		return ErrSessionNotFound
	}
	key := keyOf(id)
	s.known(key) // signed in on another replica a moment ago
	s.mu.Lock()
	e := s.shards[shardOf(&key)].m[key]
	if e != nil {
		e.revoked = true
		s.removeLocked(e)
	}
	s.mu.Unlock()
	if e == nil {
		return ErrSessionNotFound
	}
	if err := s.kv.Delete(ctx, storeKey(key)); err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	return nil
}

// RevokeHandle ends the session of username named by handle (a "sign out
// that device" button). Sessions of other users are out of reach.
func (s *Sessions) RevokeHandle(ctx context.Context, username, handle string) error {
	s.catchUp(ctx) // the handle may name a session signed in elsewhere a moment ago
	s.mu.Lock()
	var found *entry
	for _, e := range s.byUser[strings.ToLower(username)] {
		if e.sess.Load().Handle == handle {
			found = e
			break
		}
	}
	if found != nil {
		found.revoked = true
		s.removeLocked(found)
	}
	s.mu.Unlock()
	if found == nil {
		return ErrSessionNotFound
	}
	if err := s.kv.Delete(ctx, storeKey(found.key)); err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	return nil
}

// RevokeUser ends every session of username ("sign out everywhere", a
// password reset, a disabled or deleted user) and returns how many live
// sessions it ended. Memory is cleared first, so the sessions are dead even
// if deleting a record fails (the error says so).
func (s *Sessions) RevokeUser(ctx context.Context, username string) (int, error) {
	return s.revokeWhere(ctx, username, nil)
}

// RevokeRef ends the sessions of username that carry a proof with this Ref
// (a removed credential, a revoked trusted device): what it vouched for
// must not outlive it.
func (s *Sessions) RevokeRef(ctx context.Context, username, ref string) (int, error) {
	if ref == "" {
		return 0, nil
	}
	return s.revokeWhere(ctx, username, func(sess *Session) bool {
		for _, p := range sess.Proofs {
			if p.Ref == ref {
				return true
			}
		}
		return false
	})
}

// revokeWhere ends the sessions of username that match (nil = all).
func (s *Sessions) revokeWhere(ctx context.Context, username string, match func(*Session) bool) (int, error) {
	username = strings.ToLower(username)
	s.catchUp(ctx) // sessions signed in elsewhere a moment ago
	now := s.now().UnixNano()
	s.mu.Lock()
	var keys []skey
	n := 0
	for _, e := range slices.Clone(s.byUser[username]) { // removeLocked changes the list
		if match != nil && !match(e.sess.Load()) {
			continue
		}
		if s.live(e, now) {
			n++
		}
		e.revoked = true
		keys = append(keys, e.key)
		s.removeLocked(e)
	}
	s.mu.Unlock()
	if err := s.deleteStored(ctx, keys); err != nil {
		return n, fmt.Errorf("revoke sessions of %q: %w", username, err)
	}
	return n, nil
}

// SyncUser copies u's email, display name, groups and "always ask" into u's live
// sessions, so that an admin's change (a group removed, say) reaches the
// identity headers at once instead of at the next sign-in; a disabled u has
// its sessions revoked. It returns how many sessions it updated or ended.
// IDs are not rotated: the browser gained no privilege. (A rotation under
// way at the same moment may publish its successor with the old values.)
func (s *Sessions) SyncUser(ctx context.Context, u User) (int, error) {
	if u.Disabled {
		return s.RevokeUser(ctx, u.Username)
	}
	// flushMu, because this write also moves the records' versions.
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	var es []*entry
	for _, e := range s.byUser[strings.ToLower(u.Username)] {
		if !e.dead.Load() {
			es = append(es, e)
		}
	}
	s.mu.Unlock()
	now := s.now().UnixNano()
	n := 0
	for _, e := range es {
		ttl := time.Duration(e.expires - now)
		if ttl <= 0 {
			continue
		}
		seen := e.lastSeen.Load()
		ns := *e.sess.Load()
		ns.Email, ns.DisplayName, ns.Groups = u.Email, u.DisplayName, append([]string{}, u.Groups...)
		ns.AlwaysAsk = u.AlwaysAsk
		ns.LastSeen = time.Unix(0, seen).UTC()
		ver, err := s.kv.CompareAndSet(ctx, storeKey(e.key), encodeSession(&ns), e.version.Load(), store.WriteOptions{TTL: ttl, Durable: true})
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			continue // revoked or rotated meanwhile
		}
		if err != nil {
			return n, fmt.Errorf("sync sessions of %q: %w", u.Username, err)
		}
		e.publish(ver, &ns)
		raise(&e.flushed, seen)
		n++
	}
	return n, nil
}

// ListUser returns the live sessions of username, most recently active
// first, with current LastSeen values and without IDs.
func (s *Sessions) ListUser(username string) []*Session {
	username = strings.ToLower(username)
	now := s.now().UnixNano()
	s.mu.Lock()
	out := make([]*Session, 0, len(s.byUser[username]))
	for _, e := range s.byUser[username] {
		if e.dead.Load() || !s.live(e, now) {
			continue
		}
		c := *e.sess.Load()
		c.LastSeen = time.Unix(0, e.lastSeen.Load()).UTC()
		out = append(out, &c)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b *Session) int { return b.LastSeen.Compare(a.LastSeen) })
	return out
}

// Len returns the number of sessions in memory (including ones that expired
// since the last sweep).
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Flush writes the LastSeen of every session that was active since its
// last flush. Call it every few seconds (Run does) and at shutdown. The
// writes are not fsynced: losing them in a crash only makes sessions expire
// sooner, and a flush of thousands of sessions must not cost thousands of
// fsyncs.
func (s *Sessions) Flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	var dirty []*entry
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for _, e := range sh.m {
			if !e.dead.Load() && e.lastSeen.Load() > e.flushed.Load() {
				dirty = append(dirty, e)
			}
		}
		sh.mu.RUnlock()
	}
	now := s.now().UnixNano()
	var errs []error
	for _, e := range dirty {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("flush sessions: %w", err)
		}
		seen := e.lastSeen.Load()
		ttl := time.Duration(e.expires - now)
		if ttl <= 0 || e.dead.Load() {
			continue
		}
		ns := *e.sess.Load()
		ns.LastSeen = time.Unix(0, seen).UTC()
		ver, err := s.kv.CompareAndSet(ctx, storeKey(e.key), encodeSession(&ns), e.version.Load(), store.WriteOptions{TTL: ttl})
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			// Revoked or rotated meanwhile: the record must stay deleted,
			// which is exactly why this write is a compare-and-swap.
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.publish(ver, &ns)
		raise(&e.flushed, seen)
	}
	if len(errs) > 0 {
		return fmt.Errorf("flush sessions: %d of %d writes failed: %w", len(errs), len(dirty), errors.Join(errs...))
	}
	return nil
}

// Run sweeps expired sessions out of memory and the store and flushes
// LastSeen updates every interval (default 30s) until ctx is done. It does
// not flush on the way out: call Flush at shutdown, before closing the
// store.
func (s *Sessions) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("sessions: sweep", "err", err)
			}
			if err := s.Flush(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("sessions: flush", "err", err)
			}
		}
	}
}

// sweep drops expired sessions from memory and deletes their records
// (absolute expiry would also be handled by the TTL; idle expiry would not).
func (s *Sessions) sweep(ctx context.Context) error {
	now := s.now().UnixNano()
	var gone []skey
	s.mu.Lock()
	for i := range s.shards {
		for _, e := range s.shards[i].m {
			if !e.rotating && !s.live(e, now) {
				gone = append(gone, e.key)
			}
		}
	}
	for _, k := range gone {
		s.removeLocked(s.shards[shardOf(&k)].m[k])
	}
	s.mu.Unlock()
	return s.deleteStored(ctx, gone)
}

// live reports whether e is within its lifetime and idle timeout at now.
func (s *Sessions) live(e *entry, now int64) bool {
	return now < e.expires && now-e.lastSeen.Load() < s.idle
}

// insertLocked adds e; s.mu must be held.
func (s *Sessions) insertLocked(e *entry) {
	sh := &s.shards[shardOf(&e.key)]
	if old := sh.m[e.key]; old != nil {
		// The follower (or a fetch) got there first with the record this
		// replica just wrote: the caller's entry wins, it is the same.
		s.removeLocked(old)
	}
	sh.mu.Lock()
	sh.m[e.key] = e
	sh.mu.Unlock()
	if r := s.following.Load(); r != nil {
		delete(r.tombs, e.key) // a fresh key, or one adopt checked
	}
	u := s.byUser[e.username]
	e.userIdx = len(u)
	s.byUser[e.username] = append(u, e)
	s.count++
}

// removeLocked marks e dead and removes it if it is still present; s.mu
// must be held.
func (s *Sessions) removeLocked(e *entry) {
	e.dead.Store(true)
	sh := &s.shards[shardOf(&e.key)]
	if sh.m[e.key] != e {
		return
	}
	sh.mu.Lock()
	delete(sh.m, e.key)
	sh.mu.Unlock()
	s.tombLocked(e.key)
	if u := s.byUser[e.username]; e.userIdx < len(u) && u[e.userIdx] == e {
		// Swap with the last: O(1) whatever a user's number of sessions.
		last := len(u) - 1
		u[e.userIdx] = u[last]
		u[e.userIdx].userIdx = e.userIdx
		u[last] = nil
		if last == 0 {
			delete(s.byUser, e.username)
		} else {
			s.byUser[e.username] = u[:last]
		}
	}
	s.count--
}

// evictLocked removes the least recently active sessions when there are
// more than MaxSessions, a batch at a time so that the sort is paid rarely,
// and returns them for deletion from the store; s.mu must be held.
func (s *Sessions) evictLocked() []*entry {
	if s.count <= s.max {
		return nil
	}
	n := s.count - s.max + s.max/evictShare
	all := make([]*entry, 0, s.count)
	for i := range s.shards {
		for _, e := range s.shards[i].m {
			if !e.rotating {
				all = append(all, e)
			}
		}
	}
	slices.SortFunc(all, func(a, b *entry) int { return cmp.Compare(a.lastSeen.Load(), b.lastSeen.Load()) })
	victims := all[:min(n, len(all))]
	for _, e := range victims {
		s.removeLocked(e)
	}
	return victims
}

// capUserLocked ends name's oldest sessions (by creation) beyond
// MaxPerUser, never keep (the one just created) nor one being rotated (its
// successor replaces it), and returns them for deletion from the store;
// s.mu must be held. Only name's own list is read: other users' sessions
// are out of its reach by construction.
func (s *Sessions) capUserLocked(name string, keep *entry) []*entry {
	list := s.byUser[name]
	if len(list) <= s.perUser {
		return nil
	}
	cands := make([]*entry, 0, len(list))
	for _, e := range list {
		if e != keep && !e.rotating {
			cands = append(cands, e)
		}
	}
	slices.SortFunc(cands, func(a, b *entry) int {
		return a.sess.Load().CreatedAt.Compare(b.sess.Load().CreatedAt)
	})
	n := min(len(list)-s.perUser, len(cands))
	victims := cands[:n]
	for _, e := range victims {
		e.revoked = true // a rotation that starts later must not revive it
		s.removeLocked(e)
	}
	return victims
}

// deleteVersion deletes the record of k if it is the version held or a
// later one (another replica's flush moved it), so that a rotation of a
// session revoked elsewhere fails (store.ErrNotFound) instead of reviving
// it under a new key.
func (s *Sessions) deleteVersion(ctx context.Context, k skey, ver uint64) error {
	for range maxCASRetries {
		err := s.kv.CompareAndDelete(ctx, storeKey(k), ver)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
		it, err := s.kv.Get(ctx, storeKey(k))
		if err != nil {
			return err
		}
		ver = it.Version
	}
	return fmt.Errorf("delete session record: %w", store.ErrConflict)
}

// deleteStored deletes session records, carrying on past failures.
func (s *Sessions) deleteStored(ctx context.Context, keys []skey) error {
	var errs []error
	for _, k := range keys {
		if err := s.kv.Delete(ctx, storeKey(k)); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("delete %d session record(s): %w", len(errs), errors.Join(errs...))
	}
	return nil
}

// clock is the time without a monotonic reading, in UTC, so that what is
// stored and what is returned compare equal.
func (s *Sessions) clock() time.Time { return s.now().Round(0).UTC() }

func newEntry(key skey, sess *Session, version uint64) *entry {
	e := &entry{key: key, username: sess.Username, expires: sess.ExpiresAt.UnixNano()}
	e.sess.Store(sess)
	e.lastSeen.Store(sess.LastSeen.UnixNano())
	e.flushed.Store(sess.LastSeen.UnixNano())
	e.version.Store(version)
	return e
}

// newID returns a fresh session ID and its key.
func newID() (string, skey) {
	var b [idBytes]byte
	// crypto/rand.Read never fails; see randomBytes.
	_, _ = rand.Read(b[:])
	id := base64.RawURLEncoding.EncodeToString(b[:])
	return id, keyOf(id)
}

// keyOf hashes a session ID of idLen bytes. The copy into an array keeps
// the bytes on the stack: []byte(id) would be heap-allocated, because the
// compiler's stack buffer for such conversions is only 32 bytes.
func keyOf(id string) skey {
	var b [idLen]byte
	copy(b[:], id)
	return sha256.Sum256(b[:])
}

// shardOf picks a shard from the first byte of the key, which is uniformly
// distributed because it is a SHA-256 output.
func shardOf(k *skey) int { return int(k[0]) & (shardCount - 1) }

func storeKey(k skey) string { return sessionPrefix + hex.EncodeToString(k[:]) }

func parseStoreKey(s string) (skey, bool) {
	var k skey
	h, ok := strings.CutPrefix(s, sessionPrefix)
	if !ok || len(h) != 2*len(k) {
		return k, false
	}
	if _, err := hex.Decode(k[:], []byte(h)); err != nil {
		return k, false
	}
	return k, true
}

func handleOf(k skey) string { return hex.EncodeToString(k[:handleLen]) }

// mergeProof adds p to proofs (which the caller owns): a proof equal to an
// earlier one but for its time replaces it, and the list is capped by
// dropping the oldest proofs after the first (the sign-in).
func mergeProof(proofs []policy.Proof, p policy.Proof) []policy.Proof {
	for i, q := range proofs {
		q.At = p.At
		if q == p {
			proofs[i] = p
			return proofs
		}
	}
	if len(proofs) >= maxProofs {
		proofs = slices.Delete(proofs, 1, 2)
	}
	return append(proofs, p)
}

func encodeSession(s *Session) []byte {
	r := sessionRecord{
		V: sessionV, Username: s.Username, Email: s.Email, DisplayName: s.DisplayName,
		Groups: s.Groups, Proofs: make([]proofRecord, len(s.Proofs)), IP: s.IP, UserAgent: s.UserAgent,
		CreatedAt: s.CreatedAt, LastSeen: s.LastSeen, ExpiresAt: s.ExpiresAt, AlwaysAsk: s.AlwaysAsk,
	}
	for i, p := range s.Proofs {
		r.Proofs[i] = proofRecord{Kind: p.Kind, At: p.At, Ref: p.Ref, AAGUID: p.AAGUID, Attested: p.Attested,
			UserVerified: p.UserVerified, BackupEligible: p.BackupEligible}
	}
	b, err := json.Marshal(r)
	if err != nil {
		// Only strings, bools and times: marshalling cannot fail.
		panic("authn: encode session: " + err.Error())
	}
	return b
}

func decodeSession(b []byte) (*Session, error) {
	var r sessionRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode session record: %w", err)
	}
	if r.V != sessionV {
		return nil, fmt.Errorf("decode session record: unknown schema version %d", r.V)
	}
	s := &Session{
		Username: r.Username, Email: r.Email, DisplayName: r.DisplayName, Groups: append([]string{}, r.Groups...),
		Proofs: make([]policy.Proof, len(r.Proofs)), IP: r.IP, UserAgent: r.UserAgent,
		CreatedAt: r.CreatedAt, LastSeen: r.LastSeen, ExpiresAt: r.ExpiresAt, AlwaysAsk: r.AlwaysAsk,
	}
	for i, p := range r.Proofs {
		s.Proofs[i] = policy.Proof{Kind: p.Kind, At: p.At, Ref: p.Ref, AAGUID: p.AAGUID, Attested: p.Attested,
			UserVerified: p.UserVerified, BackupEligible: p.BackupEligible}
	}
	return s, nil
}

// interner makes equal strings of the sessions loaded at start share one
// copy: a user's sessions repeat its name, address and groups, proofs
// repeat a few kinds and credential IDs, and most browsers of a site send
// one of a few User-Agent strings. With 100k sessions that is a fifth of
// their memory. It lives only while NewSessions loads.
type interner struct {
	strs   map[string]string
	groups map[string][]string // by the list joined with NUL
}

func newInterner() *interner {
	return &interner{strs: map[string]string{}, groups: map[string][]string{}}
}

func (in *interner) str(v string) string {
	if v == "" {
		return ""
	}
	if w, ok := in.strs[v]; ok {
		return w
	}
	in.strs[v] = v
	return v
}

// session interns s's strings. Equal group lists share one backing array:
// a snapshot's slices are never modified (SyncUser and mergeProof build new
// ones).
func (in *interner) session(s *Session) {
	s.Username, s.Email, s.DisplayName = in.str(s.Username), in.str(s.Email), in.str(s.DisplayName)
	s.IP, s.UserAgent = in.str(s.IP), in.str(s.UserAgent)
	for i := range s.Proofs {
		p := &s.Proofs[i]
		p.Kind, p.Ref, p.AAGUID = in.str(p.Kind), in.str(p.Ref), in.str(p.AAGUID)
	}
	if len(s.Groups) == 0 {
		return
	}
	key := strings.Join(s.Groups, "\x00")
	if shared, ok := in.groups[key]; ok {
		s.Groups = shared
		return
	}
	for i := range s.Groups {
		s.Groups[i] = in.str(s.Groups[i])
	}
	in.groups[key] = s.Groups
}
