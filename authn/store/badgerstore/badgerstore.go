// Package badgerstore is keygate's embedded storage backend: store.KV on a
// Badger database in one local directory, optionally encrypted at rest.
//
// # Record layout
//
// Every user key is stored under a one-byte namespace (dataNS) so that our own
// bookkeeping (metaNS) can never collide with, or show up in a Scan of, user
// keys, and so that an empty or "!badger!"-prefixed user key stays legal.
//
// Every value is stored in a small envelope:
//
//	[1 byte format = 1][8 bytes version, big endian][value]
//
// # Versions
//
// store.KV returns the new version from Set and CompareAndSet. Badger's own
// item.Version() (the commit timestamp) cannot serve: it is assigned inside
// Commit and not reported back, and reading it back in a second transaction
// races with other writers (we could hand out another writer's version and
// let a stale CAS through). So we keep our own version in the envelope,
// taken from a per-store counter before the write. Versions are unique over
// the life of the directory, which rules out ABA: a key can never get back a
// version it had before. Uniqueness across restarts comes from leasing:
// the counter persists an upper bound (metaVersionLease) and fsyncs it before
// handing out any version below it, and a reopened store starts at that bound.
// Numbers leased but unused before a restart are skipped, which is harmless.
package badgerstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/keygate/keygate/authn/store"
)

// KeyEnv is the environment variable that may carry the storage encryption
// key (see LoadKey).
const KeyEnv = "KEYGATE_STORAGE_ENCRYPTION_KEY"

// KeySize is the size of the keys LoadKey and GenerateKeyFile deal in
// (AES-256). Open also accepts 16 and 24 bytes, as Badger does.
const KeySize = 32

const (
	dataNS = 'd' // user keys
	metaNS = 'm' // the store's own bookkeeping

	envelopeFormat = 1
	headerLen      = 1 + 8

	// versionLease is how many versions one fsynced lease covers: one extra
	// small synced write per versionLease writes.
	versionLease = 1024

	// maxRetries bounds the retries of a transaction that lost a Badger
	// conflict. A retry re-reads the key, so it decides on fresh data; the
	// bound only matters under a storm of writes to one key.
	maxRetries = 8

	// keyLockStripes is the number of key locks: writers of different keys
	// share one with a chance of 1 in this.
	keyLockStripes = 256

	defaultGCInterval = 10 * time.Minute
)

var metaVersionLease = []byte{metaNS, 'v', 'e', 'r', 's', 'i', 'o', 'n', '-', 'l', 'e', 'a', 's', 'e'}

// Options configure Open.
type Options struct {
	// Path is the data directory; it is created (mode 0700) if missing.
	Path string
	// EncryptionKey turns on encryption at rest: 32 bytes (AES-256; 16 and
	// 24 are accepted too). nil means no encryption. A directory is encrypted
	// or not for life: the key must be given (or not) on every Open.
	EncryptionKey []byte
	// Logger receives Badger's warnings and errors (its info and debug
	// lines are dropped). nil means slog.Default().
	Logger *slog.Logger
	// FeedRetention and FeedBytes bound the changes the feed keeps in
	// memory (0: DefaultFeedRetention, DefaultFeedBytes): a follower
	// further behind gets store.ErrGap and re-reads with Scan.
	FeedRetention int
	FeedBytes     int
}

// Store is store.KV on Badger. It is safe for concurrent use.
type Store struct {
	db   *badger.DB
	path string
	log  *slog.Logger

	// gate lets Close wait for the operations in flight without a
	// read-write lock: an operation started from inside a Scan callback
	// while Close waits would deadlock on an RWMutex, here it gets ErrClosed.
	gateMu   sync.Mutex
	closed   bool
	inflight sync.WaitGroup

	verMu     sync.Mutex
	nextVer   uint64
	leasedVer uint64 // versions < leasedVer are covered by a synced lease

	feed *feed // see feed.go
	// keyLocks serialise the writes of one key (by a hash of it), so that
	// they take their versions in the order they commit (see feed.go).
	keyLocks [keyLockStripes]sync.Mutex
}

// Open opens (or creates) the store in opts.Path. Errors wrap
// store.ErrLocked when another process (or another Open in this process)
// holds the directory, and store.ErrWrongKey when the encryption key does
// not match the directory (wrong key, missing key, or a key for a plain
// directory).
func Open(opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("badgerstore: no data directory given")
	}
	switch len(opts.EncryptionKey) {
	case 0, 16, 24, 32:
	default:
		return nil, fmt.Errorf("badgerstore: encryption key is %d bytes; want 32 (AES-256), or 16 or 24", len(opts.EncryptionKey))
	}
	path, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: data directory %q: %w", opts.Path, err)
	}
	// Badger would create the directory itself; we do it first so that the
	// mode is ours: the directory holds credentials and sessions.
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("badgerstore: create data directory: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}

	db, err := badger.Open(badgerOptions(path, opts.EncryptionKey, logger))
	if err != nil {
		return nil, openError(path, opts.EncryptionKey, err)
	}
	s := &Store{db: db, path: path, log: logger}
	if err := s.loadVersionLease(); err != nil {
		_ = db.Close()
		return nil, err
	}
	s.feed = newFeed(s.nextVer, opts.FeedRetention, opts.FeedBytes)
	return s, nil
}

// badgerOptions are tuned for a small process: keygate's data set is users,
// credentials, sessions and short-lived challenges, megabytes not gigabytes.
// Badger's defaults (64 MiB memtables × 5, 256 MiB block cache, 1 GiB value
// log files) cost ~85 MiB of heap at Open; these cost a few MiB.
func badgerOptions(path string, key []byte, logger *slog.Logger) badger.Options {
	const (
		memTable = 4 << 20
		// Values up to this size live in the LSM tree next to their key
		// (one read); bigger ones go to the value log. Badger requires it
		// to be at most 15% of the memtable (its maximal batch size).
		valueThreshold = 64 << 10
	)
	return badger.DefaultOptions(path).
		WithLogger(slogLogger{logger.With("component", "badger")}).
		WithMemTableSize(memTable).
		WithNumMemtables(2).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(16 << 20).
		WithNumCompactors(2). // Badger's minimum
		WithBlockCacheSize(4 << 20).
		// With encryption the index cache must be > 0, or the first table
		// read panics; it holds decrypted table indexes.
		WithIndexCacheSize(2 << 20).
		WithEncryptionKey(key).
		WithMetricsEnabled(false).
		WithNumGoroutines(2).
		// Writes are not fsynced one by one: writes that must survive a
		// crash ask for it (WriteOptions.Durable) and get a db.Sync()
		// after their commit. See Store.sync.
		WithSyncWrites(false).
		WithDetectConflicts(true)
}

// openError maps Badger's Open errors onto the store sentinels with a
// message an operator can act on.
func openError(path string, key []byte, err error) error {
	switch {
	// Badger formats the flock error with %+v, not %w, so errors.Is cannot
	// see EWOULDBLOCK; its message is all there is. TestOpenLocked pins it,
	// so a Badger upgrade that rewords it fails a test rather than silently.
	case strings.Contains(err.Error(), "Cannot acquire directory lock"):
		return fmt.Errorf("badgerstore: another keygate is using %s; stop it or use the admin socket: %w", path, store.ErrLocked)
	case errors.Is(err, badger.ErrEncryptionKeyMismatch):
		// Badger says "mismatch" for all three cases; tell them apart.
		switch {
		case len(key) == 0:
			return fmt.Errorf("badgerstore: %s is encrypted but no encryption key was given (storage.encryption_key_file or %s): %w", path, KeyEnv, store.ErrWrongKey)
		case registryIsPlain(path):
			return fmt.Errorf("badgerstore: %s is not encrypted but an encryption key was given; open it without a key (encrypting existing data needs a backup and restore): %w", path, store.ErrWrongKey)
		default:
			return fmt.Errorf("badgerstore: the encryption key does not open %s (wrong key file or %s?): %w", path, KeyEnv, store.ErrWrongKey)
		}
	default:
		return fmt.Errorf("badgerstore: open %s: %w", path, err)
	}
}

// registryIsPlain reports whether Badger's key registry in dir was written
// without encryption. Its file starts with a 16-byte IV followed by a sanity
// text that is XORed with the key stream only when a key is set (Badger's
// on-disk format, key_registry.go), so a plain registry shows the text as is.
func registryIsPlain(dir string) bool {
	const ivLen = 16
	sanity := []byte("Hello Badger")
	f, err := os.Open(filepath.Join(dir, badger.KeyRegistryFileName))
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, ivLen+len(sanity))
	if _, err := io.ReadFull(f, buf); err != nil {
		return false
	}
	return bytes.Equal(buf[ivLen:], sanity)
}

// loadVersionLease starts the version counter above every version a
// previous run may have handed out (see the package comment).
func (s *Store) loadVersionLease() error {
	var bound uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(metaVersionLease)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("version lease record is %d bytes, want 8", len(v))
			}
			bound = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("badgerstore: read version lease: %w", err)
	}
	// Version 0 means "absent" in CompareAndSet, so never hand it out.
	s.nextVer = max(bound, 1)
	s.leasedVer = s.nextVer
	return nil
}

// nextVersion returns a version no write of this directory has had before.
func (s *Store) nextVersion() (uint64, error) {
	s.verMu.Lock()
	defer s.verMu.Unlock()
	if s.nextVer >= s.leasedVer {
		bound := s.nextVer + versionLease
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], bound)
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(metaVersionLease, b[:]) }); err != nil {
			return 0, fmt.Errorf("badgerstore: lease versions: %w", err)
		}
		// The lease must be on disk before any version below it is used:
		// otherwise a crash could lose the lease but keep a write that
		// used it, and versions would repeat after the restart.
		if err := s.db.Sync(); err != nil {
			return 0, fmt.Errorf("badgerstore: sync version lease: %w", err)
		}
		s.leasedVer = bound
	}
	v := s.nextVer
	s.nextVer++
	return v, nil
}

// enter admits an operation unless the store is closed; leave ends it.
func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.gateMu.Lock()
	defer s.gateMu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.inflight.Add(1)
	return nil
}

func (s *Store) leave() { s.inflight.Done() }

// Get returns the item or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (store.Item, error) {
	if err := s.enter(ctx); err != nil {
		return store.Item{}, err
	}
	defer s.leave()
	var it store.Item
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		it, err = getItem(txn, key)
		return err
	})
	if err != nil {
		return store.Item{}, fmt.Errorf("badgerstore: get: %w", err)
	}
	return it, nil
}

// Set writes the value unconditionally and returns its new version.
func (s *Store) Set(ctx context.Context, key string, value []byte, opt store.WriteOptions) (uint64, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.leave()
	ver, err := s.write(ctx, key, func(txn *badger.Txn, ver uint64) (*store.Change, error) {
		e := newEntry(key, value, ver, opt.TTL)
		if err := txn.SetEntry(e); err != nil {
			return nil, err
		}
		return changeOf(key, value, ver, e.ExpiresAt), nil
	})
	if err != nil {
		return 0, fmt.Errorf("badgerstore: set: %w", err)
	}
	if opt.Durable {
		if err := s.sync("set"); err != nil {
			return 0, err
		}
	}
	return ver, nil
}

// CompareAndSet writes the value only if the stored version equals prev
// (prev 0: only if the key is absent or expired). A mismatch, including a
// missing key when prev != 0, returns store.ErrConflict and writes nothing.
func (s *Store) CompareAndSet(ctx context.Context, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.leave()
	ver, err := s.write(ctx, key, func(txn *badger.Txn, ver uint64) (*store.Change, error) {
		cur, err := getItem(txn, key)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if prev != 0 {
				return nil, store.ErrConflict
			}
		case err != nil:
			return nil, err
		case cur.Version != prev:
			return nil, store.ErrConflict
		}
		e := newEntry(key, value, ver, opt.TTL)
		if err := txn.SetEntry(e); err != nil {
			return nil, err
		}
		return changeOf(key, value, ver, e.ExpiresAt), nil
	})
	if err != nil {
		return 0, fmt.Errorf("badgerstore: compare-and-set: %w", err)
	}
	if opt.Durable {
		if err := s.sync("compare-and-set"); err != nil {
			return 0, err
		}
	}
	return ver, nil
}

// Delete removes the key; a missing key is not an error (and no change in
// the feed). Like every removal it is synced to disk before it returns (see
// Store.sync).
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	_, err := s.write(ctx, key, func(txn *badger.Txn, seq uint64) (*store.Change, error) {
		_, err := txn.Get(dataKey(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if err := txn.Delete(dataKey(key)); err != nil {
			return nil, err
		}
		return deletionOf(key, seq), nil
	})
	if err != nil {
		return fmt.Errorf("badgerstore: delete: %w", err)
	}
	return s.sync("delete")
}

// CompareAndDelete removes the key only if its version equals prev:
// store.ErrNotFound if it does not exist, store.ErrConflict if it changed.
func (s *Store) CompareAndDelete(ctx context.Context, key string, prev uint64) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	_, err := s.write(ctx, key, func(txn *badger.Txn, seq uint64) (*store.Change, error) {
		cur, err := getItem(txn, key)
		if err != nil {
			return nil, err
		}
		if cur.Version != prev {
			return nil, store.ErrConflict
		}
		if err := txn.Delete(dataKey(key)); err != nil {
			return nil, err
		}
		return deletionOf(key, seq), nil
	})
	if err != nil {
		return fmt.Errorf("badgerstore: compare-and-delete: %w", err)
	}
	return s.sync("compare-and-delete")
}

// Consume reads and deletes the key in one transaction. Of concurrent
// callers exactly one commits the delete; the others lose a Badger conflict,
// retry on fresh data, find the key gone and get store.ErrNotFound. (A retry
// cannot consume twice: each attempt is one atomic read-and-delete, and a
// value written again in the meantime is a new value, consumed once.)
// Only a storm of rewrites of the same key can exhaust the retries; that
// returns store.ErrConflict.
func (s *Store) Consume(ctx context.Context, key string) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.leave()
	var val []byte
	_, err := s.write(ctx, key, func(txn *badger.Txn, seq uint64) (*store.Change, error) {
		cur, err := getItem(txn, key)
		if err != nil {
			return nil, err
		}
		val = cur.Value
		if err := txn.Delete(dataKey(key)); err != nil {
			return nil, err
		}
		return deletionOf(key, seq), nil
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: consume: %w", err)
	}
	// A consumed one-time value (a recovery code, a challenge) must not
	// come back after a crash.
	if err := s.sync("consume"); err != nil {
		return nil, err
	}
	return val, nil
}

// Scan calls fn for every live key with the prefix, in byte order of the
// keys. The read is one consistent snapshot; fn may call back into the
// store (it sees its own writes in later Gets, not in this Scan).
func (s *Store) Scan(ctx context.Context, prefix string, fn func(store.Item) error) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	return s.db.View(func(txn *badger.Txn) error {
		iopt := badger.DefaultIteratorOptions
		iopt.Prefix = dataKey(prefix)
		it := txn.NewIterator(iopt)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item, err := decodeItem(it.Item())
			if err != nil {
				return fmt.Errorf("badgerstore: scan: %w", err)
			}
			if err := fn(item); err != nil {
				return err
			}
		}
		return nil
	})
}

// Close waits for the operations in flight and closes the database.
// It is idempotent; afterwards every method returns store.ErrClosed.
func (s *Store) Close() error {
	s.gateMu.Lock()
	if s.closed {
		s.gateMu.Unlock()
		return nil
	}
	s.closed = true
	s.gateMu.Unlock()
	close(s.feed.closed) // ends the long polls (Wait)
	s.inflight.Wait()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("badgerstore: close %s: %w", s.path, err)
	}
	return nil
}

// RunGC reclaims value-log space every interval (<= 0: every 10 minutes)
// until ctx is done or the store is closed. Each tick it calls Badger's
// RunValueLogGC(0.5) until that reports there is nothing (more) to rewrite.
// Run it in its own goroutine.
func (s *Store) RunGC(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = defaultGCInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.gcOnce(ctx) {
			return
		}
	}
}

// gcOnce runs one GC round; false means the store is closed.
func (s *Store) gcOnce(ctx context.Context) bool {
	for ctx.Err() == nil {
		if err := s.enter(ctx); err != nil {
			return !errors.Is(err, store.ErrClosed)
		}
		err := s.db.RunValueLogGC(0.5)
		s.leave()
		switch {
		case err == nil:
			continue // a file was rewritten; there may be more
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			// Nothing worth rewriting, or a GC is already running.
		default:
			s.log.Warn("badger value log GC failed", "path", s.path, "err", err)
		}
		return true
	}
	return true
}

// write runs fn in a read-write transaction with a fresh version, and
// retries it when the commit loses a Badger conflict (another transaction
// wrote a key fn read). The retry re-reads, so fn's own checks decide: with
// unique versions a changed key can never pass a version compare again, and
// a false conflict (Badger tracks reads by a 64-bit hash) is simply redone.
//
// key is the key fn writes: writes of one key run one at a time, each
// taking its version and committing under the key's lock (see feed.go for
// why). Each attempt takes a new version; write returns the one of the
// attempt that committed. Every version taken is resolved in the feed: with
// fn's change once the commit succeeded, as abandoned otherwise (fn returns
// a nil change for a write that turns out to change nothing).
func (s *Store) write(ctx context.Context, key string, fn func(txn *badger.Txn, ver uint64) (*store.Change, error)) (uint64, error) {
	mu := &s.keyLocks[keyStripe(key)]
	mu.Lock()
	defer mu.Unlock()
	for range maxRetries {
		var (
			ver uint64
			ch  *store.Change
		)
		err := s.db.Update(func(txn *badger.Txn) error {
			v, err := s.nextVersion()
			if err != nil {
				return err
			}
			ver = v
			ch, err = fn(txn, v)
			return err
		})
		if ver != 0 {
			if err != nil {
				ch = nil
			}
			s.feed.resolve(ver, ch)
		}
		if !errors.Is(err, badger.ErrConflict) {
			return ver, err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
	return 0, store.ErrConflict
}

// sync makes every commit so far durable. We open Badger with SyncWrites
// off and sync per operation instead because most writes do not need it
// (challenges, rate-limit counters: losing them in a crash is harmless) while
// credentials, sessions and every removal (a revocation or a used one-time
// value must not come back) do. The write is visible to readers before the
// sync ends; an error here means "committed, maybe not on disk".
func (s *Store) sync(op string) error {
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("badgerstore: %s: committed but not synced to disk: %w", op, err)
	}
	return nil
}

// keyStripe hashes key (FNV-1a) onto a key lock.
func keyStripe(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % keyLockStripes)
}

func dataKey(key string) []byte {
	k := make([]byte, 1+len(key))
	k[0] = dataNS
	copy(k[1:], key)
	return k
}

// newEntry builds the Badger entry for a write. The TTL is rounded up to the
// next whole second: Badger stores expiry as Unix seconds and its WithTTL
// truncates, so a 1 s TTL could expire almost at once. A key lives at least
// its TTL and at most a second longer.
func newEntry(key string, value []byte, ver uint64, ttl time.Duration) *badger.Entry {
	v := make([]byte, headerLen+len(value))
	v[0] = envelopeFormat
	binary.BigEndian.PutUint64(v[1:headerLen], ver)
	copy(v[headerLen:], value)
	e := badger.NewEntry(dataKey(key), v)
	if ttl > 0 {
		exp := time.Now().Add(ttl)
		secs := exp.Unix()
		if exp.Nanosecond() > 0 {
			secs++
		}
		e.ExpiresAt = uint64(secs)
	}
	return e
}

// getItem reads key in txn; a missing or expired key is store.ErrNotFound.
// In a read-write txn the read is tracked for conflict detection, also when
// the key is missing, which is what makes "create if absent" safe.
func getItem(txn *badger.Txn, key string) (store.Item, error) {
	item, err := txn.Get(dataKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return store.Item{}, store.ErrNotFound
	}
	if err != nil {
		return store.Item{}, err
	}
	return decodeItem(item)
}

// decodeItem unwraps the envelope into a store.Item whose Value is a copy
// (Badger's value slices are only valid inside the transaction).
func decodeItem(item *badger.Item) (store.Item, error) {
	it := store.Item{Key: string(item.Key()[1:])}
	if exp := item.ExpiresAt(); exp > 0 {
		it.ExpiresAt = time.Unix(int64(exp), 0)
	}
	err := item.Value(func(v []byte) error {
		if len(v) < headerLen || v[0] != envelopeFormat {
			return fmt.Errorf("corrupt record (%d bytes, format %d)", len(v), firstByte(v))
		}
		it.Version = binary.BigEndian.Uint64(v[1:headerLen])
		it.Value = bytes.Clone(v[headerLen:])
		if it.Value == nil {
			it.Value = []byte{}
		}
		return nil
	})
	return it, err
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// slogLogger routes Badger's log lines to slog. Only warnings and errors
// pass: Badger's info lines (table and compaction chatter) are noise to an
// operator.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Errorf(f string, a ...any) {
	s.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)))
}

func (s slogLogger) Warningf(f string, a ...any) {
	s.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)))
}

func (slogLogger) Infof(string, ...any)  {}
func (slogLogger) Debugf(string, ...any) {}

// LoadKey returns the storage encryption key from a key file or from the
// value of the KeyEnv environment variable (the caller reads the variable,
// so tests and other wiring need not touch the environment). Either holds
// KeySize random bytes as 64 hex characters or as base64; surrounding
// whitespace is ignored. Both empty: nil, nil (storage is not encrypted; the
// caller decides whether to warn). Both set is an error rather than a silent
// pick, because opening a new directory with the unexpected key would
// encrypt it with that key. Errors name the source but never echo the key.
func LoadKey(file, envValue string) ([]byte, error) {
	switch {
	case file != "" && envValue != "":
		return nil, fmt.Errorf("encryption key: both the key file %s and %s are set; use one", file, KeyEnv)
	case envValue != "":
		k, err := parseKey(envValue)
		if err != nil {
			return nil, fmt.Errorf("encryption key from %s: %w", KeyEnv, err)
		}
		return k, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("encryption key file: %w", err)
		}
		k, err := parseKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("encryption key file %s: %w", file, err)
		}
		return k, nil
	default:
		return nil, nil
	}
}

func parseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty; want 64 hex characters or base64 of 32 random bytes")
	}
	if len(s) == 2*KeySize {
		// Base64 of 32 bytes is 43 or 44 characters, so 64 means hex. The
		// decoder's error is not shown: it quotes the offending character.
		k, err := hex.DecodeString(s)
		if err != nil {
			return nil, errors.New("64 characters but not valid hex")
		}
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		k, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(k) != KeySize {
			return nil, fmt.Errorf("base64 decodes to %d bytes; want %d (or 64 hex characters)", len(k), KeySize)
		}
		return k, nil
	}
	return nil, fmt.Errorf("neither 64 hex characters nor base64 (%d characters); generate one with: openssl rand -hex 32", len(s))
}

// GenerateKeyFile writes a new random key to path as hex with mode 0600 and
// returns it. It never overwrites: an existing file is an error wrapping
// fs.ErrExist, because replacing a key makes its data unreadable.
func GenerateKeyFile(path string) ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate encryption key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("generate encryption key: %s already exists; not overwriting a key: %w", path, err)
		}
		return nil, fmt.Errorf("generate encryption key: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("generate encryption key: write %s: %w", path, err)
	}
	return key, nil
}

// Interface guards
var _ store.KV = (*Store)(nil)
