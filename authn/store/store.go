// Package store is the leaf storage contract of keygate: a small ordered
// key-value interface with versions (for compare-and-swap on durable records),
// TTLs (for short-lived values) and an atomic Consume (for one-time values).
//
// Domain packages declare the narrower interfaces they actually use; every
// backend passes the shared conformance suite in store/storetest, so a
// backend can be added without touching domain code. A backend also serves
// a change feed (Feed, in feed.go) so that state kept in memory follows
// writes made by other replicas; Backend is the two together.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Backends wrap them with %w; callers branch with errors.Is.
var (
	// ErrNotFound: the key does not exist (or its TTL has passed).
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a compare-and-swap lost, the stored version differs from
	// the expected one (or the key exists when absence was expected).
	ErrConflict = errors.New("store: version conflict")
	// ErrLocked: the data directory is in use by another process.
	ErrLocked = errors.New("store: data directory is in use by another process")
	// ErrWrongKey: the encryption key does not open this data directory.
	ErrWrongKey = errors.New("store: encryption key does not match the data directory")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrUnavailable: the backend cannot be reached right now (a database
	// server down or unreachable); the same call may work in a moment.
	// Backends that run over the network wrap such failures with it, so
	// callers can say "try again shortly" instead of failing blindly.
	ErrUnavailable = errors.New("store: the database cannot be reached right now")
)

// Item is one stored value with its version. Version is never 0 for an
// existing key and changes on every write, so it can be used for
// compare-and-swap.
type Item struct {
	Key     string
	Value   []byte
	Version uint64
	// ExpiresAt is zero for keys without a TTL.
	ExpiresAt time.Time
}

// WriteOptions tune a write.
type WriteOptions struct {
	// TTL > 0 makes the key expire; expired keys read as ErrNotFound, are
	// skipped by Scan and count as absent for CompareAndSet with prev 0.
	// Every write sets the TTL anew: a write without TTL makes the key
	// permanent. A key lives at least TTL; backends with a coarse clock may
	// keep it up to a second longer (Badger stores expiry in seconds).
	TTL time.Duration
	// Durable asks the backend to make the write survive a crash before it
	// returns (fsync). Credentials, counters, users and sessions set it;
	// challenges and rate-limit counters usually do not.
	Durable bool
}

// KV is the contract every backend implements.
//
// Keys are arbitrary byte strings (binary is fine) and values may be empty.
// Values passed in may be reused by the caller once a method returns, and
// values handed out are the caller's own copies. A ctx that is already done
// makes a method return ctx.Err() without changing anything. Versions are
// unique per store for its whole life, so a key never gets back a version it
// had before.
//
// Removals (Delete, CompareAndDelete, Consume) are as durable as writes with
// Durable set: a revoked session or a used one-time code must not come back
// after a crash.
type KV interface {
	// Get returns the item or ErrNotFound.
	Get(ctx context.Context, key string) (Item, error)
	// Set writes the value unconditionally and returns the new version.
	Set(ctx context.Context, key string, value []byte, opt WriteOptions) (uint64, error)
	// CompareAndSet writes the value only if the stored version equals prev;
	// prev == 0 means "only if the key does not exist". A mismatch (including
	// a concurrent writer, and prev != 0 on a missing key) returns
	// ErrConflict and writes nothing.
	CompareAndSet(ctx context.Context, key string, value []byte, prev uint64, opt WriteOptions) (uint64, error)
	// Delete removes the key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// CompareAndDelete removes the key only if its version equals prev,
	// else ErrConflict (ErrNotFound when it does not exist).
	CompareAndDelete(ctx context.Context, key string, prev uint64) error
	// Consume reads and deletes the key in one atomic step: of any number of
	// concurrent callers exactly one gets the value, the others ErrNotFound.
	Consume(ctx context.Context, key string) ([]byte, error)
	// Scan calls fn for every live key with the prefix, in byte order of
	// the keys. Returning an error from fn stops the scan and is returned.
	// fn may call the store's other methods.
	Scan(ctx context.Context, prefix string, fn func(Item) error) error
	// Close releases the store after the calls in flight. It is idempotent;
	// afterwards every other method returns ErrClosed.
	Close() error
}

// ConsumeSetter is an optional capability: a one-time value consumed and a
// durable record updated in one atomic, durable write, where Consume and
// then CompareAndSet would cost two commits and two syncs (a WebAuthn
// finish: the ceremony and the sign counter). Callers check for it with a
// type assertion and fall back to the two calls.
type ConsumeSetter interface {
	// ConsumeAndSet removes take, but only while its live version is still
	// takeVer (the Item a Get returned), and writes value under key by
	// CompareAndSet's rule (prev 0: only if key is absent or expired), as
	// one transaction: both happen or neither.
	//
	// take gone, expired or written again since it was read is
	// ErrNotFound: the value read is no longer there to consume; of any
	// number of concurrent callers consuming one take, at most one
	// succeeds. A mismatch of key's version is ErrConflict, with take left
	// as it was, so the caller may re-read key and try again. take and key
	// must differ. The write is durable whatever opt says (a removal
	// always is); opt.TTL applies to key. It returns key's new version.
	// The feed reports the removal of take and then the write of key.
	ConsumeAndSet(ctx context.Context, take string, takeVer uint64, key string, value []byte, prev uint64, opt WriteOptions) (uint64, error)
}
