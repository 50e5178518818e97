package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrGap: the changes a follower asked for are no longer retained (the
// backend trimmed them, or they happened before the process that serves the
// feed started). The follower cannot catch up from the feed; it must re-read
// the state it follows with Scan and continue from the head taken before
// that Scan (see Feed).
var ErrGap = errors.New("store: changes no longer retained; re-read with Scan")

// Change is one committed write or removal, as the feed reports it.
type Change struct {
	// Seq is the change's place in the feed: unique per store and
	// increasing in commit order (see Feed). Seqs need not be contiguous: a
	// follower must not infer a lost change from a gap in the numbers (only
	// ErrGap says changes are lost).
	Seq uint64
	// Key is the key written or removed.
	Key string
	// Value is the value written (empty, never nil, for an empty value),
	// the caller's own copy. nil for a removal.
	Value []byte
	// Version is the version the write gave the key (the one Get returns
	// and CompareAndSet compares); 0 for a removal. On Badger it equals
	// Seq; other backends may number them apart.
	Version uint64
	// Deleted marks a removal: Delete, CompareAndDelete or Consume of a
	// live key. Removing a missing or expired key is no change.
	Deleted bool
	// ExpiresAt is the written key's expiry (zero: no TTL), with the
	// backend's granularity (Badger: whole seconds, rounded up). Expiry
	// itself makes no change entry, so state built from the feed must
	// drop a key whose ExpiresAt has passed by itself.
	ExpiresAt time.Time
}

// Feed lets a process follow every change under a key prefix from a known
// point, so state kept in memory (sessions, the compiled policy) can stay
// current with writes made elsewhere (another replica, the admin socket).
//
// The contract every backend honours, and storetest.RunFeed checks:
//
//   - Commit order. Changes are reported in the order their writes
//     committed, by increasing Seq. Once a change with Seq n has been
//     returned (by Changes, or as a head by Head or Wait), no change with a
//     Seq <= n may become visible later: a backend whose writers commit
//     out of the order they took their numbers in (Badger's versions taken
//     before the commit, PostgreSQL's sequences) holds back the head until
//     every lower number has committed or been abandoned. In particular
//     two writes of one key carry Seqs in the order they committed, so the
//     last change of a key the feed reports is what Get returns.
//   - Only committed changes. A write that fails (a lost compare, a
//     rolled-back transaction) is never reported. A change is reported
//     as soon as its write is visible to Get, which may be before a
//     Durable write's sync has finished.
//   - Every change, once. A follower that passes the cursor it was given
//     back to the next call sees every change exactly once, in Seq order,
//     however it pages (limit) or pauses between calls ("reconnects"), as
//     long as the changes are retained; otherwise it gets ErrGap, never a
//     silent skip.
//   - Expiry is not a change. A key whose TTL passes reads as absent but
//     makes no entry; use Change.ExpiresAt.
//   - Retention is bounded: a backend keeps at least the newest changes up
//     to its configured retention (Badger: in memory, since the store was
//     opened; PostgreSQL: a change table trimmed by the collector).
//
// The follower's loop:
//
//	head, _ := f.Head(ctx)             // before the Scan, not after
//	kv.Scan(ctx, prefix, load)         // the state as of at least head
//	for cur := head; ; {
//		chs, next, err := f.Changes(ctx, prefix, cur, 512)
//		if errors.Is(err, store.ErrGap) { /* start over with Head + Scan */ }
//		apply(chs)                     // idempotent: compare versions
//		if cur = next; len(chs) == 0 { f.Wait(ctx, cur) }
//	}
//
// Changes after head may already be in the Scan; applying them again must
// be harmless (a change whose Version is not newer than the one held is
// old news, a removal of an absent key is nothing).
type Feed interface {
	// Head returns the point up to which the feed is complete: every
	// change with a Seq lower than or equal to it is visible to Changes
	// (or trimmed), and no such change can appear later. It may move
	// without a change a follower sees (a number burned by a lost
	// compare). It is 0 for a new, empty store.
	Head(ctx context.Context) (uint64, error)
	// Changes returns up to limit changes with Seq > after whose key has
	// the prefix, oldest first, and the cursor to pass as after next time.
	// The cursor covers the changes examined, also those the prefix
	// filtered out, so a follower of a quiet prefix does not re-examine a
	// busy one's changes: next >= after, and next >= the Seq of every
	// change returned. limit <= 0 means a backend default (at least 1).
	// It returns ErrGap (wrapped) when changes after after are no longer
	// retained, and an empty page with next == after when after is at or
	// past the head.
	Changes(ctx context.Context, prefix string, after uint64, limit int) (changes []Change, next uint64, err error)
	// Wait blocks until the head passes after and returns the new head: a
	// long poll. It returns at once if the head is already past after, and
	// ctx.Err() when ctx ends first, ErrClosed when the store closes. It
	// does not filter by prefix: the follower calls Changes to see
	// whether its prefix moved.
	Wait(ctx context.Context, after uint64) (uint64, error)
}

// Backend is what cmd wires domain code to: the key-value contract plus the
// change feed. Every backend (badgerstore, pgstore) implements it and passes
// storetest.Run and storetest.RunFeed.
type Backend interface {
	KV
	Feed
}

// Optional capabilities. cmd checks for them with a type assertion, so a
// backend without one (a test double, a future backend) still serves.

// Backuper writes a consistent, encrypted backup of the whole store while
// it stays in use. key (at least 16 bytes) is needed to restore it. The
// backup is complete only when Backup returns nil. Restoring is backend
// specific (the store must not be open), so it is not part of this
// interface.
type Backuper interface {
	Backup(w io.Writer, key []byte) error
}

// SizePart is one part of a store's footprint for the store-size metric:
// Badger reports "lsm" and "vlog", PostgreSQL its tables.
type SizePart struct {
	Part  string
	Bytes int64
}

// Sizer reports the store's footprint. It is a gauge read at scrape time:
// an approximate figure is fine, and a backend skips what it cannot measure
// rather than fail the scrape.
type Sizer interface {
	StorageSize(ctx context.Context) ([]SizePart, error)
}

// Collector reclaims space in the background: Badger's value-log GC,
// PostgreSQL's sweep of expired rows and trimming of the change log. RunGC
// runs every interval (<= 0: the backend's default) until ctx is done or
// the store is closed; run it in its own goroutine.
type Collector interface {
	RunGC(ctx context.Context, every time.Duration)
}
