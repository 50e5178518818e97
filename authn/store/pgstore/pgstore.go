// Package pgstore is keygate's shared storage backend: store.KV and
// store.Feed on PostgreSQL, for several replicas behind a load balancer.
//
// # Tables
//
// kv holds the records (bytea keys, so ORDER BY k is byte order whatever the
// collation), kv_changes the change log, kv_clock the feed's clock. The
// schema is created and upgraded by the embedded, numbered migrations in
// migrations/, applied at Open under an advisory lock (see migrate.go).
//
// # Sealing
//
// Every value is sealed with AES-256-GCM under a key derived from the
// storage key, the row key as additional data (seal.go): a dump or a DBA
// sees no TOTP secret, code or address. Keys are record names and stay in
// clear, except under the few prefixes whose keys hold an address or a
// bearer ID (blindPrefixes): there the row key is a keyed HMAC.
//
// # Versions and expiry
//
// Versions come from a PostgreSQL sequence, which never hands a number out
// twice (not even after a rollback): unique for the database's life. Expiry
// is judged by the database's clock (now()), the one clock every replica
// shares; expired rows read as absent and are deleted by RunGC.
//
// # The feed
//
// Every write appends a row to kv_changes numbered by kv_clock.seq, bumped
// as the transaction's last statement before COMMIT. A sequence would not
// do: its numbers are taken at insert time while transactions commit in
// another order, so a follower reading "seq > after" could pass a change
// that commits later with a lower number. The clock row is locked by the
// UPDATE until COMMIT, so the next writer gets its number only after this
// one committed: numbers follow commit order, and the visible clock value
// is a head below which everything is visible. The price is that writers
// serialize for the span of one UPDATE plus the COMMIT (a WAL flush for
// durable writes); keygate's write rate is far below that. NOTIFY (sent at
// commit) wakes Wait on every replica at once.
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/authn/store"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

const (
	// notifyChannel is the LISTEN/NOTIFY channel of the feed.
	notifyChannel = "keygate_feed"
	// DefaultRetention is how many changes the log keeps when Options
	// does not say: minutes of traffic, enough for a replica restart.
	DefaultRetention = 100_000
	// scanPage is how many rows one Scan query fetches. Scan calls fn
	// between pages with no connection held, so fn may use the store even
	// with a pool of one connection.
	scanPage = 256
	// defaultGCInterval is how often RunGC sweeps by default.
	defaultGCInterval = time.Minute
)

// Options configure Open.
type Options struct {
	// DSN is a libpq connection string or URL.
	DSN string
	// Key is the storage key (at least 16 bytes, 32 recommended); values
	// are sealed with a key derived from it. Every replica needs the same.
	Key []byte
	// MaxConns caps the pool (0: pgx's default, max(4, CPUs)).
	MaxConns int32
	// Retention is how many changes the log keeps at least (0:
	// DefaultRetention). A follower further behind gets store.ErrGap.
	Retention int
	// Logger gets the background work's problems (nil: slog.Default()).
	Logger *slog.Logger
}

// Store is store.Backend on PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool      *pgxpool.Pool
	seal      *sealer
	log       *slog.Logger
	retention int64
	trimEvery int64

	gateMu   sync.Mutex
	closed   bool
	inflight sync.WaitGroup

	// headMu guards head and headCh: the newest seq this process knows is
	// committed, and a channel closed (and replaced) when it moves.
	headMu sync.Mutex
	head   uint64
	headCh chan struct{}

	stop     context.CancelFunc // ends the listener
	listener sync.WaitGroup

	// beforeCommit, when set (by tests only), runs in a writing
	// transaction after its seq was taken and before COMMIT.
	beforeCommit func(seq int64)
}

var (
	_ store.Backend   = (*Store)(nil)
	_ store.Collector = (*Store)(nil)
	_ store.Sizer     = (*Store)(nil)
)

// Open connects, applies the migrations this binary knows (waiting for
// another replica doing the same) and starts listening for changes.
func Open(ctx context.Context, opts Options) (*Store, error) {
	seal, err := newSealer(opts.Key)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		// The DSN may hold a password: pgx's parse errors redact it.
		return nil, fmt.Errorf("pgstore: connection string: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	retention := int64(opts.Retention)
	if retention <= 0 {
		retention = DefaultRetention
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{
		pool:      pool,
		seal:      seal,
		log:       logger.With("component", "pgstore"),
		retention: retention,
		// Trim once per this many writes, so the log holds at most
		// retention + trimEvery rows and trimming stays a rare batch.
		trimEvery: max(1, retention/8),
		headCh:    make(chan struct{}),
	}
	if err := s.checkKey(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	lctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	ready := make(chan error, 1)
	s.listener.Add(1)
	go s.listen(lctx, cfg.ConnConfig, ready)
	if err := <-ready; err != nil {
		stop()
		s.listener.Wait()
		pool.Close()
		return nil, err
	}
	return s, nil
}

// keyCheckAAD binds the key-check value to its purpose.
var keyCheckAAD = []byte("kv_meta/key_check")

// checkKey compares the storage key with the one the database was first
// opened with: the first Open stores a value sealed with its key, every
// later Open must open it. Without it a replica with another key would
// write rows the others cannot read.
func (s *Store) checkKey(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO kv_meta (name, v) VALUES ('key_check', $1) ON CONFLICT (name) DO NOTHING`,
		s.seal.seal(keyCheckAAD, false, "", []byte("keygate"))); err != nil {
		return fmt.Errorf("pgstore: key check: %w", err)
	}
	var v []byte
	if err := s.pool.QueryRow(ctx, `SELECT v FROM kv_meta WHERE name = 'key_check'`).Scan(&v); err != nil {
		return fmt.Errorf("pgstore: key check: %w", err)
	}
	if _, _, err := s.seal.open(keyCheckAAD, v); err != nil {
		return fmt.Errorf("pgstore: the storage key is not the one this database was created with: %w", store.ErrWrongKey)
	}
	return nil
}

// enter registers an operation in flight, or refuses once closed.
func (s *Store) enter(ctx context.Context) error {
	s.gateMu.Lock()
	defer s.gateMu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.inflight.Add(1)
	return nil
}

func (s *Store) leave() { s.inflight.Done() }

// Close waits for the calls in flight, then stops the listener and the pool.
func (s *Store) Close() error {
	s.gateMu.Lock()
	if s.closed {
		s.gateMu.Unlock()
		return nil
	}
	s.closed = true
	s.gateMu.Unlock()
	// Wake the long polls first (they see closed and return ErrClosed),
	// or waiting for the calls in flight would wait for them.
	s.headMu.Lock()
	close(s.headCh)
	s.headCh = make(chan struct{})
	s.headMu.Unlock()
	s.inflight.Wait()
	s.stop()
	s.listener.Wait()
	s.pool.Close()
	return nil
}

// Ping checks that the database answers, for a readiness probe.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	return wrap("ping", s.pool.Ping(ctx))
}

// live is the SQL condition of a row that has not expired.
const live = `(expires_at IS NULL OR expires_at > now())`

// ttlExpr turns a TTL in microseconds (parameter n) into an expiry: NULL
// for no TTL. now() is the database's clock, shared by every replica.
func ttlExpr(n int) string {
	return fmt.Sprintf(`CASE WHEN $%[1]d::bigint > 0 THEN now() + $%[1]d::bigint * interval '1 microsecond' END`, n)
}

func ttlMicros(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	// Round up: a key lives at least its TTL.
	return int64((d + time.Microsecond - 1) / time.Microsecond)
}

func item(key string, value []byte, version int64, exp *time.Time) store.Item {
	it := store.Item{Key: key, Value: value, Version: uint64(version)}
	if exp != nil {
		it.ExpiresAt = *exp
	}
	return it
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if unreachable(err) {
		return fmt.Errorf("pgstore: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

// unreachable says whether err means the server could not be reached or
// went away (a refused or broken connection, a server shutting down or
// starting), rather than a refusal of the statement.
func unreachable(err error) bool {
	var ce *pgconn.ConnectError
	var ne net.Error
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &ce), errors.As(err, &ne):
		return true
	case errors.As(err, &pe):
		// 08: connection exception; 57P: operator intervention (admin
		// shutdown, crash shutdown, cannot connect now).
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P")
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.Timeout(err)
}

// Get returns the live item or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (store.Item, error) {
	if err := s.enter(ctx); err != nil {
		return store.Item{}, err
	}
	defer s.leave()
	rk, _ := s.seal.rowKey(key)
	var (
		v   []byte
		ver int64
		exp *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT v, version, expires_at FROM kv WHERE k = $1 AND `+live, rk).Scan(&v, &ver, &exp)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Item{}, fmt.Errorf("pgstore: get: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Item{}, wrap("get", err)
	}
	_, value, err := s.seal.open(rk, v)
	if err != nil {
		return store.Item{}, wrap("get", err)
	}
	return item(key, value, ver, exp), nil
}

// change is what a write appends to the log.
type change struct {
	rk      []byte
	blind   bool
	deleted bool
	version int64
	exp     *time.Time
	sealed  []byte
}

// write runs fn in a transaction and, when fn reports a change, appends it
// to the log as the transaction's last statement (see "The feed").
func (s *Store) write(ctx context.Context, op string, durable bool, fn func(tx pgx.Tx) (*change, error)) error {
	// One round trip to begin (and to relax the commit of a write that
	// need not survive a crash: challenges and counters may lose their
	// last few on a crash, which the contract allows, and the commit then
	// does not wait for a WAL flush).
	begin := "BEGIN"
	if !durable {
		begin = "BEGIN; SET LOCAL synchronous_commit TO off"
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: begin})
	if err != nil {
		return wrap(op, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	ch, err := fn(tx)
	if err != nil {
		return err
	}
	var seq int64
	if ch != nil {
		// The clock bump, the log row and the NOTIFY (delivered at commit
		// to every replica's listener) in one statement, the last before
		// COMMIT: the clock row stays locked only until the commit.
		err = tx.QueryRow(ctx, `WITH c AS (UPDATE kv_clock SET seq = seq + 1 RETURNING seq),
			i AS (INSERT INTO kv_changes (seq, k, blind, deleted, version, expires_at, v)
				SELECT c.seq, $1, $2, $3, $4, $5, $6 FROM c RETURNING seq)
			SELECT i.seq FROM i, LATERAL (SELECT pg_notify($7, i.seq::text)) n`,
			ch.rk, ch.blind, ch.deleted, ch.version, ch.exp, ch.sealed, notifyChannel).Scan(&seq)
		if err != nil {
			return wrap(op, err)
		}
	}
	if s.beforeCommit != nil && ch != nil {
		s.beforeCommit(seq)
	}
	if err := tx.Commit(ctx); err != nil {
		return wrap(op, err)
	}
	if ch != nil {
		s.committed(ctx, seq, 1)
	}
	return nil
}

// committed moves the head to seq, the last number of the n changes a
// transaction just committed, and trims the log when the numbers crossed
// a multiple of trimEvery.
func (s *Store) committed(ctx context.Context, seq, n int64) {
	if n == 0 {
		return
	}
	s.advance(uint64(seq))
	if seq/s.trimEvery != (seq-n)/s.trimEvery {
		if err := s.trim(context.WithoutCancel(ctx)); err != nil {
			s.log.Warn("trimming the change log failed", "err", err)
		}
	}
}

// Set writes the value unconditionally.
func (s *Store) Set(ctx context.Context, key string, value []byte, opt store.WriteOptions) (uint64, error) {
	return s.put(ctx, "set", key, value, nil, opt)
}

// CompareAndSet writes the value only if the live version equals prev (0:
// only if there is no live value).
func (s *Store) CompareAndSet(ctx context.Context, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error) {
	return s.put(ctx, "compare-and-set", key, value, &prev, opt)
}

func (s *Store) put(ctx context.Context, op, key string, value []byte, prev *uint64, opt store.WriteOptions) (uint64, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.leave()
	rk, blind := s.seal.rowKey(key)
	sealed := s.seal.seal(rk, blind, key, value)
	ttl := ttlMicros(opt.TTL)
	var q string
	args := []any{rk, blind, sealed, ttl}
	switch {
	case prev == nil:
		q = `INSERT INTO kv (k, blind, v, version, expires_at) VALUES ($1, $2, $3, nextval('kv_version'), ` + ttlExpr(4) + `)
			ON CONFLICT (k) DO UPDATE SET v = excluded.v, version = excluded.version, expires_at = excluded.expires_at
			RETURNING version, expires_at`
	case *prev == 0:
		// An expired row counts as absent: it is overwritten.
		q = `INSERT INTO kv (k, blind, v, version, expires_at) VALUES ($1, $2, $3, nextval('kv_version'), ` + ttlExpr(4) + `)
			ON CONFLICT (k) DO UPDATE SET v = excluded.v, version = excluded.version, expires_at = excluded.expires_at
			WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()
			RETURNING version, expires_at`
	default:
		q = `UPDATE kv SET v = $3, version = nextval('kv_version'), expires_at = ` + ttlExpr(4) + `
			WHERE k = $1 AND blind = $2 AND version = $5 AND ` + live + `
			RETURNING version, expires_at`
		args = append(args, int64(*prev))
	}
	var ver int64
	err := s.write(ctx, op, opt.Durable, func(tx pgx.Tx) (*change, error) {
		var exp *time.Time
		err := tx.QueryRow(ctx, q, args...).Scan(&ver, &exp)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("pgstore: %s %q: %w", op, clip(key), store.ErrConflict)
		}
		if err != nil {
			return nil, wrap(op, err)
		}
		return &change{rk: rk, blind: blind, version: ver, exp: exp, sealed: sealed}, nil
	})
	if err != nil {
		return 0, err
	}
	return uint64(ver), nil
}

// clip shortens a key for an error message; blinded keys (addresses,
// bearer IDs) are not shown at all.
func clip(key string) string {
	if b := blindPrefixOf(key); b != "" {
		return b + "…"
	}
	if len(key) > 64 {
		return key[:64] + "…"
	}
	return key
}

// removal is the change a live key's removal appends.
func (s *Store) removal(rk []byte, blind bool, key string) *change {
	return &change{rk: rk, blind: blind, deleted: true, sealed: s.seal.seal(rk, blind, key, nil)}
}

// Delete removes the key. Removals are always durable.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	rk, blind := s.seal.rowKey(key)
	return s.write(ctx, "delete", true, func(tx pgx.Tx) (*change, error) {
		var wasLive bool
		err := tx.QueryRow(ctx, `DELETE FROM kv WHERE k = $1 RETURNING `+live, rk).Scan(&wasLive)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, wrap("delete", err)
		}
		if !wasLive { // an expired row swept early: no change
			return nil, nil
		}
		return s.removal(rk, blind, key), nil
	})
}

// CompareAndDelete removes the key only if its live version is prev.
func (s *Store) CompareAndDelete(ctx context.Context, key string, prev uint64) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	rk, blind := s.seal.rowKey(key)
	return s.write(ctx, "compare-and-delete", true, func(tx pgx.Tx) (*change, error) {
		tag, err := tx.Exec(ctx, `DELETE FROM kv WHERE k = $1 AND version = $2 AND `+live, rk, int64(prev))
		if err != nil {
			return nil, wrap("compare-and-delete", err)
		}
		if tag.RowsAffected() == 1 {
			return s.removal(rk, blind, key), nil
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kv WHERE k = $1 AND `+live+`)`, rk).Scan(&exists); err != nil {
			return nil, wrap("compare-and-delete", err)
		}
		if exists {
			return nil, fmt.Errorf("pgstore: compare-and-delete %q: %w", clip(key), store.ErrConflict)
		}
		return nil, fmt.Errorf("pgstore: compare-and-delete %q: %w", clip(key), store.ErrNotFound)
	})
}

// Consume reads and deletes the key in one statement. Of concurrent
// callers the first DELETE takes the row lock; the others wait for it and
// then find the row gone (READ COMMITTED re-checks the row), so exactly one
// gets the value.
func (s *Store) Consume(ctx context.Context, key string) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.leave()
	rk, blind := s.seal.rowKey(key)
	var value []byte
	err := s.write(ctx, "consume", true, func(tx pgx.Tx) (*change, error) {
		var (
			v       []byte
			wasLive bool
		)
		err := tx.QueryRow(ctx, `DELETE FROM kv WHERE k = $1 RETURNING v, `+live, rk).Scan(&v, &wasLive)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && !wasLive) {
			return nil, fmt.Errorf("pgstore: consume: %w", store.ErrNotFound)
		}
		if err != nil {
			return nil, wrap("consume", err)
		}
		if _, value, err = s.seal.open(rk, v); err != nil {
			return nil, wrap("consume", err)
		}
		return s.removal(rk, blind, key), nil
	})
	if err != nil {
		return nil, err
	}
	return value, nil
}

// ConsumeAndSet removes take (while its live version is takeVer) and
// writes key by CompareAndSet's rule in one transaction, one commit and one
// WAL flush (see store.ConsumeSetter). It is the WebAuthn finish's write,
// so it costs two round trips, not the five of write's way: the removal,
// the write, the clock bump and both log rows are one statement
// (consumeAndSetSQL), sent with BEGIN, then COMMIT. The write and the clock
// bump happen only if the removal did; when the write loses its compare
// the transaction is rolled back, which restores take. Of concurrent
// consumers of one take the first DELETE holds its row lock and the others
// find it gone when it commits (READ COMMITTED re-checks the row).
func (s *Store) ConsumeAndSet(ctx context.Context, take string, takeVer uint64, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error) {
	const op = "consume-and-set"
	if take == key {
		return 0, errors.New("pgstore: consume-and-set: the consumed key and the written key are one key; they must differ")
	}
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.leave()
	trk, tblind := s.seal.rowKey(take)
	rk, blind := s.seal.rowKey(key)
	sealed := s.seal.seal(rk, blind, key, value)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, wrap(op, err)
	}
	// A connection given back inside a transaction (an error or a done
	// ctx below) is closed by the pool, never reused.
	defer conn.Release()
	var (
		taken    bool
		ver, seq *int64
		notified int
	)
	// BEGIN and the statement in one round trip (a pipeline), COMMIT in
	// the second.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(consumeAndSetSQL(prev == 0),
		trk, int64(takeVer), rk, blind, sealed, ttlMicros(opt.TTL), int64(prev),
		tblind, s.seal.seal(trk, tblind, take, nil), notifyChannel).QueryRow(func(row pgx.Row) error {
		return row.Scan(&taken, &ver, &seq, &notified)
	})
	err = conn.SendBatch(ctx, b).Close()
	switch {
	case err != nil:
		err = wrap(op, err)
	case !taken:
		// Gone, expired, or written again since it was read.
		err = fmt.Errorf("pgstore: %s: %w", op, store.ErrNotFound)
	case ver == nil || seq == nil:
		err = fmt.Errorf("pgstore: %s %q: %w", op, clip(key), store.ErrConflict)
	}
	if err != nil {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		return 0, err
	}
	if s.beforeCommit != nil {
		s.beforeCommit(*seq)
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		return 0, wrap(op, err)
	}
	s.committed(ctx, *seq, 2)
	return uint64(*ver), nil
}

// consumeAndSetSQL is ConsumeAndSet's statement. Parameters: $1 take's row
// key, $2 its version; $3 key's row key, $4 blind, $5 the sealed value, $6
// the TTL in microseconds, $7 prev (0: create if absent); $8 take's blind
// flag, $9 its removal's sealed log value, $10 the NOTIFY channel. It
// returns whether take was removed, key's new version and the last log
// number (NULL both when the write lost its compare), and the NOTIFYs
// sent (selected so that the CTE runs: one that is not data-modifying
// runs only when referenced). The clock moves by
// two and the log gets the removal, then the write, in that order, as
// writeAll would number them.
func consumeAndSetSQL(create bool) string {
	write := `UPDATE kv SET v = $5, version = nextval('kv_version'), expires_at = ` + ttlExpr(6) + `
			WHERE k = $3 AND blind = $4 AND version = $7 AND ` + live + ` AND EXISTS (SELECT 1 FROM d)
			RETURNING version, expires_at`
	if create {
		// An expired row counts as absent: it is overwritten. ($7 is 0.)
		write = `INSERT INTO kv (k, blind, v, version, expires_at)
			SELECT $3::bytea, $4::boolean, $5::bytea, nextval('kv_version'), ` + ttlExpr(6) + `
			WHERE EXISTS (SELECT 1 FROM d) AND $7::bigint = 0
			ON CONFLICT (k) DO UPDATE SET v = excluded.v, version = excluded.version, expires_at = excluded.expires_at
			WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now()
			RETURNING version, expires_at`
	}
	return `WITH d AS (DELETE FROM kv WHERE k = $1 AND version = $2 AND ` + live + ` RETURNING 1),
		w AS (` + write + `),
		c AS (UPDATE kv_clock SET seq = seq + 2 WHERE EXISTS (SELECT 1 FROM w) RETURNING seq),
		i AS (INSERT INTO kv_changes (seq, k, blind, deleted, version, expires_at, v)
			SELECT c.seq - 1, $1::bytea, $8::boolean, true, 0::bigint, NULL::timestamptz, $9::bytea FROM c
			UNION ALL
			SELECT c.seq, $3::bytea, $4::boolean, false, w.version, w.expires_at, $5::bytea FROM c, w
			RETURNING seq),
		n AS (SELECT pg_notify($10, m.seq::text) FROM (SELECT max(seq) AS seq FROM i) m WHERE m.seq IS NOT NULL)
		SELECT EXISTS (SELECT 1 FROM d), (SELECT version FROM w), (SELECT max(seq) FROM i), (SELECT count(*) FROM n)`
}

// Interface guards
var _ store.ConsumeSetter = (*Store)(nil)

// succ is the smallest byte string greater than every string with prefix
// p, or nil when there is none (p empty or all 0xff).
func succ(p []byte) []byte {
	q := slices.Clone(p)
	for len(q) > 0 && q[len(q)-1] == 0xff {
		q = q[:len(q)-1]
	}
	if len(q) == 0 {
		return nil
	}
	q[len(q)-1]++
	return q
}

// Scan calls fn for every live key with the prefix in byte order. Clear
// rows come from the primary key in pages; rows of a blinded namespace the
// prefix reaches are loaded, opened and sorted in memory (those namespaces
// are index entries and short-lived IDs, not bulk data) and merged in.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(store.Item) error) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	var blinded []store.Item
	for _, b := range blindPrefixes {
		if strings.HasPrefix(b, prefix) || strings.HasPrefix(prefix, b) {
			items, err := s.loadBlinded(ctx, b, prefix)
			if err != nil {
				return err
			}
			blinded = append(blinded, items...)
		}
	}
	slices.SortFunc(blinded, func(a, b store.Item) int { return strings.Compare(a.Key, b.Key) })

	emit := func(it store.Item) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(it)
	}
	lo, hi := []byte(prefix), succ([]byte(prefix))
	after := false
	for {
		page, err := s.page(ctx, lo, after, hi)
		if err != nil {
			return err
		}
		for _, it := range page {
			for len(blinded) > 0 && blinded[0].Key < it.Key {
				if err := emit(blinded[0]); err != nil {
					return err
				}
				blinded = blinded[1:]
			}
			if err := emit(it); err != nil {
				return err
			}
		}
		if len(page) < scanPage {
			break
		}
		lo, after = []byte(page[len(page)-1].Key), true
	}
	for _, it := range blinded {
		if err := emit(it); err != nil {
			return err
		}
	}
	return nil
}

// page reads up to scanPage live clear rows from lo (exclusive when after)
// below hi (nil: no bound).
func (s *Store) page(ctx context.Context, lo []byte, after bool, hi []byte) ([]store.Item, error) {
	cmp := ">="
	if after {
		cmp = ">"
	}
	q := `SELECT k, v, version, expires_at FROM kv WHERE NOT blind AND k ` + cmp + ` $1 AND ($2::bytea IS NULL OR k < $2) AND ` + live + ` ORDER BY k LIMIT $3`
	rows, err := s.pool.Query(ctx, q, lo, hi, scanPage)
	if err != nil {
		return nil, wrap("scan", err)
	}
	return s.openRows(rows, func(string) bool { return true })
}

// openRows reads (k, v, version, expires_at) rows, opens each sealed row
// and keeps the items whose key keep accepts.
func (s *Store) openRows(rows pgx.Rows, keep func(key string) bool) ([]store.Item, error) {
	defer rows.Close()
	var out []store.Item
	for rows.Next() {
		var (
			k, v []byte
			ver  int64
			exp  *time.Time
		)
		if err := rows.Scan(&k, &v, &ver, &exp); err != nil {
			return nil, wrap("scan", err)
		}
		key, value, err := s.seal.open(k, v)
		if err != nil {
			return nil, wrap("scan", err)
		}
		if keep(key) {
			out = append(out, item(key, value, ver, exp))
		}
	}
	return out, wrap("scan", rows.Err())
}

// loadBlinded returns the live items of blinded namespace b whose key has
// the prefix.
func (s *Store) loadBlinded(ctx context.Context, b, prefix string) ([]store.Item, error) {
	rows, err := s.pool.Query(ctx, `SELECT k, v, version, expires_at FROM kv WHERE blind AND k >= $1 AND k < $2 AND `+live,
		[]byte(b), succ([]byte(b)))
	if err != nil {
		return nil, wrap("scan", err)
	}
	return s.openRows(rows, func(key string) bool { return strings.HasPrefix(key, prefix) })
}
