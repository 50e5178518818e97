package badgerstore

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/authn/store"
)

// The change feed (store.Feed) of a Badger store lives in memory: Badger is
// the embedded, one-process backend, so every writer is in this process and
// a follower only needs the changes since Open. A follower that asks for
// older ones gets store.ErrGap and re-reads with Scan.
//
// # Sequence numbers
//
// A change's Seq is the version its write took (a removal takes a version
// of its own, which no key ever carries). Versions come from one counter
// that hands them out contiguously within a process, so the feed knows
// every number that is in flight: each one is either committed (a change),
// or abandoned (a lost compare, a removal of a missing key, a failed
// commit). Writers commit out of the order they took their numbers in, so
// the feed holds a resolved number back until every lower one is resolved
// too (feed.pending) and publishes them in order: a follower never sees a
// lower Seq appear after a higher one.
//
// Writes of one key run one at a time: each takes its number and commits
// under a lock of the key (Store.keyLocks, striped by a hash), so two
// writes of one key carry numbers in their commit order. Without this, Set
// A taking 10 and Set B taking 11 could commit B then A, leaving the key
// at version 10 while the feed's last word on it is 11. (Making every
// write read its key, so Badger's conflict detection orders them, made a
// plain Set fail with a conflict under contention.) Writes of different
// keys still commit concurrently.

const (
	// DefaultFeedRetention and DefaultFeedBytes bound the changes kept in
	// memory: a follower more than this far behind re-reads with Scan.
	// 4096 changes cover minutes of sign-ins; 16 MiB bounds the heap when
	// values are large (a parked POST body).
	DefaultFeedRetention = 4096
	DefaultFeedBytes     = 16 << 20

	// defaultChangesLimit is the page size of Changes for limit <= 0.
	defaultChangesLimit = 1000

	// changeOverhead approximates the bytes of a retained change besides
	// its key and value (the struct and the slice headers).
	changeOverhead = 96
)

type feed struct {
	mu sync.Mutex
	// next is the lowest number not yet published; the head is next-1.
	next uint64
	// pending holds numbers resolved before a lower one: a change, or nil
	// for an abandoned number.
	pending map[uint64]*store.Change
	// ring[start:] are the retained changes, by increasing Seq.
	ring  []store.Change
	start int
	bytes int
	// floor: changes with Seq <= floor are not retained.
	floor uint64

	maxN, maxBytes int

	// wake is closed (and cleared) when the head moves; nil while nobody
	// waits, so a write without followers allocates nothing for it.
	wake   chan struct{}
	closed chan struct{}

	// beforePublish, when set (tests only), runs after a write committed
	// and before its number is resolved: it lets a test hold a commit back
	// and check that the higher numbers wait for it.
	beforePublish func(seq uint64)
}

func newFeed(first uint64, maxN, maxBytes int) *feed {
	if maxN <= 0 {
		maxN = DefaultFeedRetention
	}
	if maxBytes <= 0 {
		maxBytes = DefaultFeedBytes
	}
	return &feed{next: first, floor: first - 1, maxN: maxN, maxBytes: maxBytes, closed: make(chan struct{})}
}

// resolve records what became of number seq: ch is its committed change,
// nil if it was abandoned. Every number handed out must be resolved
// exactly once, or the feed stalls at it.
func (f *feed) resolve(seq uint64, ch *store.Change) {
	if ch != nil && f.beforePublish != nil {
		f.beforePublish(seq)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq != f.next {
		if f.pending == nil {
			f.pending = make(map[uint64]*store.Change)
		}
		f.pending[seq] = ch
		return
	}
	f.publish(ch)
	for {
		c, ok := f.pending[f.next]
		if !ok {
			break
		}
		delete(f.pending, f.next)
		f.publish(c)
	}
	if f.wake != nil {
		close(f.wake)
		f.wake = nil
	}
}

// publish appends the change for number f.next (nil: none) and evicts the
// oldest changes beyond the bounds. f.mu is held.
func (f *feed) publish(ch *store.Change) {
	f.next++
	if ch == nil {
		return
	}
	f.ring = append(f.ring, *ch)
	f.bytes += changeSize(ch)
	for len(f.ring)-f.start > f.maxN || (f.bytes > f.maxBytes && len(f.ring)-f.start > 1) {
		old := &f.ring[f.start]
		f.floor = old.Seq
		f.bytes -= changeSize(old)
		*old = store.Change{} // let the value go
		f.start++
	}
	// Move the retained changes down once the evicted ones are half the
	// slice, so append reuses the space: amortised O(1) per change.
	if f.start > 64 && f.start >= len(f.ring)/2 {
		n := copy(f.ring, f.ring[f.start:])
		clear(f.ring[n:])
		f.ring = f.ring[:n]
		f.start = 0
	}
}

func changeSize(ch *store.Change) int { return len(ch.Key) + len(ch.Value) + changeOverhead }

func (f *feed) head() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.next - 1
}

func (f *feed) changes(prefix string, after uint64, limit int) ([]store.Change, uint64, error) {
	if limit <= 0 {
		limit = defaultChangesLimit
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	head := f.next - 1
	if after >= head {
		return nil, after, nil
	}
	if after < f.floor {
		return nil, after, fmt.Errorf("badgerstore: changes after %d: the oldest retained follows %d: %w", after, f.floor, store.ErrGap)
	}
	live := f.ring[f.start:]
	i := sort.Search(len(live), func(i int) bool { return live[i].Seq > after })
	var out []store.Change
	for ; i < len(live); i++ {
		c := live[i]
		if !strings.HasPrefix(c.Key, prefix) {
			continue
		}
		if c.Value != nil {
			c.Value = bytes.Clone(c.Value)
		}
		out = append(out, c)
		if len(out) == limit {
			return out, c.Seq, nil
		}
	}
	return out, head, nil
}

func (f *feed) wait(ctx context.Context, after uint64) (uint64, error) {
	for {
		f.mu.Lock()
		head := f.next - 1
		if head > after {
			f.mu.Unlock()
			return head, nil
		}
		if f.wake == nil {
			f.wake = make(chan struct{})
		}
		wake := f.wake
		f.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-f.closed:
			return 0, store.ErrClosed
		}
	}
}

// Head returns the Seq of the newest change a follower may see. After Open
// it is the highest version a previous run may have used, so a follower
// from an earlier run gets store.ErrGap rather than a silent skip.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.leave()
	return s.feed.head(), nil
}

// Changes returns up to limit changes after after under prefix, oldest
// first, and the cursor for the next call (see store.Feed).
func (s *Store) Changes(ctx context.Context, prefix string, after uint64, limit int) ([]store.Change, uint64, error) {
	if err := s.enter(ctx); err != nil {
		return nil, after, err
	}
	defer s.leave()
	return s.feed.changes(prefix, after, limit)
}

// Wait blocks until the head passes after, ctx ends or the store closes.
// It does not count as an operation in flight: Close does not wait for it,
// it ends it with store.ErrClosed.
func (s *Store) Wait(ctx context.Context, after uint64) (uint64, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	s.leave()
	return s.feed.wait(ctx, after)
}

// changeOf builds the feed entry of a write: value is copied, since the
// caller may reuse it once the write returns.
func changeOf(key string, value []byte, ver uint64, expiresAt uint64) *store.Change {
	ch := &store.Change{Seq: ver, Key: key, Value: bytes.Clone(value), Version: ver}
	if ch.Value == nil {
		ch.Value = []byte{}
	}
	if expiresAt > 0 {
		ch.ExpiresAt = time.Unix(int64(expiresAt), 0)
	}
	return ch
}

func deletionOf(key string, seq uint64) *store.Change {
	return &store.Change{Seq: seq, Key: key, Deleted: true}
}

// Interface guards
var (
	_ store.Backend   = (*Store)(nil)
	_ store.Backuper  = (*Store)(nil)
	_ store.Sizer     = (*Store)(nil)
	_ store.Collector = (*Store)(nil)
)
