package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/authn/store"
)

const (
	// defaultPage is Changes' limit when the caller gives none.
	defaultPage = 512
	// listenerAppName is the application_name of the LISTEN connection.
	listenerAppName = "keygate-feed-listener"
)

// Head returns the feed's clock: every change up to it has committed (the
// clock row is bumped by a writer's last statement, under its lock).
func (s *Store) Head(ctx context.Context) (uint64, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.leave()
	var seq int64
	if err := s.pool.QueryRow(ctx, `SELECT seq FROM kv_clock`).Scan(&seq); err != nil {
		return 0, wrap("head", err)
	}
	s.advance(uint64(seq))
	return uint64(seq), nil
}

// Changes returns up to limit changes after after under prefix. The clock
// and the changes are read by one statement, so from one snapshot: when
// fewer than limit rows come back, the cursor can move to that head.
func (s *Store) Changes(ctx context.Context, prefix string, after uint64, limit int) ([]store.Change, uint64, error) {
	if err := s.enter(ctx); err != nil {
		return nil, after, err
	}
	defer s.leave()
	if limit <= 0 {
		limit = defaultPage
	}
	// Blinded rows cannot be filtered by their row key; they are fetched
	// whenever the prefix reaches a blinded namespace and filtered after
	// opening. Clear rows are filtered by the database.
	withBlind := false
	for _, b := range blindPrefixes {
		if strings.HasPrefix(b, prefix) || strings.HasPrefix(prefix, b) {
			withBlind = true
		}
	}
	lo, hi := []byte(prefix), succ([]byte(prefix))
	rows, err := s.pool.Query(ctx, `
		SELECT h.seq, h.trimmed, c.seq, c.k, c.blind, c.deleted, c.version, c.expires_at, c.v
		FROM kv_clock h LEFT JOIN LATERAL (
			SELECT * FROM kv_changes c
			WHERE c.seq > $1 AND c.seq <= h.seq
			  AND ((c.blind AND $4) OR (NOT c.blind AND c.k >= $2 AND ($3::bytea IS NULL OR c.k < $3)))
			ORDER BY c.seq LIMIT $5
		) c ON true`, int64(after), lo, hi, withBlind, limit)
	if err != nil {
		return nil, after, wrap("changes", err)
	}
	defer rows.Close()
	var (
		head, trimmed int64
		out           []store.Change
		examined      int
		last          int64
	)
	for rows.Next() {
		var (
			seq, ver      *int64
			k, v          []byte
			blind, delete *bool
			exp           *time.Time
		)
		if err := rows.Scan(&head, &trimmed, &seq, &k, &blind, &delete, &ver, &exp, &v); err != nil {
			return nil, after, wrap("changes", err)
		}
		if seq == nil { // no change row: the LEFT JOIN's empty side
			continue
		}
		examined++
		last = *seq
		key, value, err := s.seal.open(k, v)
		if err != nil {
			return nil, after, wrap("changes", err)
		}
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		ch := store.Change{Seq: uint64(*seq), Key: key, Version: uint64(*ver), Deleted: *delete}
		if !ch.Deleted {
			ch.Value = value
		}
		if exp != nil {
			ch.ExpiresAt = *exp
		}
		out = append(out, ch)
	}
	if err := rows.Err(); err != nil {
		return nil, after, wrap("changes", err)
	}
	// Trimmed changes the follower has not seen: it must start over.
	if after < uint64(trimmed) {
		return nil, after, fmt.Errorf("pgstore: changes after %d (retained from %d): %w", after, trimmed, store.ErrGap)
	}
	s.advance(uint64(head))
	if uint64(head) <= after {
		return nil, after, nil
	}
	next := uint64(head)
	if examined == limit {
		next = uint64(last) // a full page: there may be more below the head
	}
	return out, next, nil
}

// Wait blocks until the head passes after.
func (s *Store) Wait(ctx context.Context, after uint64) (uint64, error) {
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.leave()
	// The local head first; then the database, which also covers
	// notifications this process missed while its listener reconnected.
	if h, _ := s.local(); h > after {
		return h, nil
	}
	var seq int64
	if err := s.pool.QueryRow(ctx, `SELECT seq FROM kv_clock`).Scan(&seq); err != nil {
		return 0, wrap("wait", err)
	}
	s.advance(uint64(seq))
	// A slow poll as well: a notification is lost if the listener's
	// connection drops between the commit and the delivery.
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	for {
		h, ch := s.local()
		if h > after {
			return h, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-ch:
			if s.isClosed() {
				return 0, store.ErrClosed
			}
		case <-poll.C:
			if err := s.pool.QueryRow(ctx, `SELECT seq FROM kv_clock`).Scan(&seq); err == nil {
				s.advance(uint64(seq))
			}
		}
	}
}

func (s *Store) isClosed() bool {
	s.gateMu.Lock()
	defer s.gateMu.Unlock()
	return s.closed
}

func (s *Store) local() (uint64, <-chan struct{}) {
	s.headMu.Lock()
	defer s.headMu.Unlock()
	return s.head, s.headCh
}

// advance records a committed seq and wakes the waiters if it is new.
func (s *Store) advance(seq uint64) {
	s.headMu.Lock()
	defer s.headMu.Unlock()
	if seq <= s.head {
		return
	}
	s.head = seq
	close(s.headCh)
	s.headCh = make(chan struct{})
}

// listen keeps a connection of its own LISTENing on the feed channel,
// reconnecting with back-off, until ctx ends. ready gets the first
// connection's outcome, so Open fails on a database it cannot listen to.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig, ready chan<- error) {
	defer s.listener.Done()
	backoff := 100 * time.Millisecond
	first := true
	for {
		err := s.listenOnce(ctx, cfg, func() {
			if first {
				first = false
				ready <- nil
			}
			backoff = 100 * time.Millisecond
		})
		if ctx.Err() != nil {
			if first {
				ready <- ctx.Err()
			}
			return
		}
		if first {
			ready <- fmt.Errorf("pgstore: listen for changes: %w", err)
			return
		}
		s.log.Warn("change listener lost its connection; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, cfg *pgx.ConnConfig, up func()) error {
	cc := cfg.Copy()
	// Named, so an operator (or a test) can tell it in pg_stat_activity.
	cc.RuntimeParams["application_name"] = listenerAppName
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	// Read the clock after LISTEN: a change committed in between is
	// either in this read or notified.
	var seq int64
	if err := conn.QueryRow(ctx, `SELECT seq FROM kv_clock`).Scan(&seq); err != nil {
		return err
	}
	s.advance(uint64(seq))
	up()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if v, err := strconv.ParseUint(n.Payload, 10, 64); err == nil {
			s.advance(v)
		}
	}
}

// trim drops changes older than the retention and records how far it went,
// so a follower behind that point gets ErrGap instead of a silent skip.
func (s *Store) trim(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return wrap("trim", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// Reading the clock does not lock it: writers go on. The cut is
	// recorded with GREATEST so concurrent trims never move it back.
	var cut int64
	err = tx.QueryRow(ctx, `UPDATE kv_clock SET trimmed = GREATEST(trimmed, seq - $1) RETURNING trimmed`, s.retention).Scan(&cut)
	if err != nil {
		return wrap("trim", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM kv_changes WHERE seq <= $1`, cut); err != nil {
		return wrap("trim", err)
	}
	return wrap("trim", tx.Commit(ctx))
}

// sweep deletes expired rows. They already read as absent; this only
// reclaims the space. Expiry makes no change entry (store.Feed).
func (s *Store) sweep(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM kv WHERE expires_at <= now()`)
	if err != nil {
		return 0, wrap("sweep", err)
	}
	return tag.RowsAffected(), nil
}

// GC sweeps expired rows and trims the change log once.
func (s *Store) GC(ctx context.Context) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.leave()
	if _, err := s.sweep(ctx); err != nil {
		return err
	}
	return s.trim(ctx)
}

// RunGC runs GC every interval until ctx ends or the store closes.
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
		err := s.GC(ctx)
		switch {
		case errors.Is(err, store.ErrClosed):
			return
		case err != nil && ctx.Err() == nil:
			s.log.Warn("storage GC failed", "err", err)
		}
	}
}

// StorageSize reports the tables' sizes (with their indexes and TOAST).
func (s *Store) StorageSize(ctx context.Context) ([]store.SizePart, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	defer s.leave()
	var out []store.SizePart
	for _, table := range []string{"kv", "kv_changes"} {
		var n int64
		if err := s.pool.QueryRow(ctx, `SELECT pg_total_relation_size($1::regclass)`, table).Scan(&n); err != nil {
			return nil, wrap("size", err)
		}
		out = append(out, store.SizePart{Part: table, Bytes: n})
	}
	return out, nil
}
