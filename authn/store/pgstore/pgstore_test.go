package pgstore_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/pgstore"
	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
	"github.com/keygate/keygate/authn/store/storetest"
)

var testKey = bytes.Repeat([]byte{0x42}, 32)

func open(t testing.TB, dsn string, retention int) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn, Key: testKey, MaxConns: 8, Retention: retention})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	c := pgtest.Start(t)
	storetest.Run(t, func(t *testing.T) store.KV { return open(t, c.NewDatabase(t), 0) })
}

func TestFeedConformance(t *testing.T) {
	c := pgtest.Start(t)
	storetest.RunFeed(t, func(t *testing.T, opt storetest.FeedOptions) store.Backend {
		return open(t, c.NewDatabase(t), opt.Retention)
	})
}

func TestConsumeAndSetConformance(t *testing.T) {
	c := pgtest.Start(t)
	storetest.RunConsumeAndSet(t, func(t *testing.T) store.Backend { return open(t, c.NewDatabase(t), 0) })
}

// Five replicas starting at once on an empty database: each migration runs
// once, every Open succeeds, and they share one store.
func TestConcurrentOpen(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	const n = 5
	stores := make([]*pgstore.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = pgstore.Open(t.Context(), pgstore.Options{DSN: dsn, Key: testKey, MaxConns: 2})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open #%d: %v", i, err)
		}
		t.Cleanup(func() { _ = stores[i].Close() })
	}
	var rows, max int
	q(t, dsn, `SELECT count(*), max(version) FROM keygate_schema`, &rows, &max)
	if rows != pgstore.SchemaVersion() || max != pgstore.SchemaVersion() {
		t.Fatalf("keygate_schema has %d rows up to %d, want each of 1..%d once", rows, max, pgstore.SchemaVersion())
	}
	v, err := stores[0].Set(t.Context(), "k", []byte("shared"), store.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := stores[4].Get(t.Context(), "k")
	if err != nil || string(it.Value) != "shared" || it.Version != v {
		t.Fatalf("another replica reads %q v%d, %v; want shared v%d", it.Value, it.Version, err, v)
	}
}

func TestSchemaTooNew(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	s := open(t, dsn, 0)
	_ = s.Close()
	exec(t, dsn, `INSERT INTO keygate_schema (version, name) VALUES (999, 'from the future')`)
	_, err := pgstore.Open(t.Context(), pgstore.Options{DSN: dsn, Key: testKey})
	if !errors.Is(err, pgstore.ErrSchemaTooNew) {
		t.Fatalf("Open on a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

func TestBadOptions(t *testing.T) {
	if _, err := pgstore.Open(t.Context(), pgstore.Options{DSN: "host=/nonexistent", Key: []byte("short")}); err == nil {
		t.Fatal("Open with a 5-byte key succeeded")
	}
	if _, err := pgstore.Open(t.Context(), pgstore.Options{DSN: "::not a dsn", Key: testKey}); err == nil {
		t.Fatal("Open with a bad DSN succeeded")
	}
}

// What a dump or a DBA sees: no value, no address, no bearer ID; a value
// moved to another row does not open; another key does not open the
// database.
func TestSealed(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	s := open(t, dsn, 0)
	ctx := t.Context()
	secrets := map[string]string{
		"totp/cred/alice":                  "JBSWY3DPEHPK3PXPTOTPSECRET",
		"user/alice":                       `{"email":"alice.secret@example.org"}`,
		"user_email/bob@example.net":       "bob",
		"parked/PARKEDBEARERID123":         "body",
		"webauthn/ceremony/CEREMONYBEARER": "challenge",
		"regulate/ip/203.0.113.77":         "3",
		"regulate/user/password/#8d2c3f":   "2",
	}
	for k, v := range secrets {
		if _, err := s.Set(ctx, k, []byte(v), store.WriteOptions{Durable: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "parked/PARKEDBEARERID123"); err != nil { // leaves a change row
		t.Fatal(err)
	}
	dump := c.Dump(t, dsn)
	for _, needle := range []string{"JBSWY3DPEHPK3PXP", "alice.secret@example.org", "bob@example.net", "PARKEDBEARERID123", "CEREMONYBEARER", "203.0.113.77", "#8d2c3f"} {
		// bytea columns are dumped in hex: look for both spellings.
		if bytes.Contains(dump, []byte(needle)) || bytes.Contains(dump, []byte(hex.EncodeToString([]byte(needle)))) {
			t.Errorf("pg_dump contains %q in clear", needle)
		}
	}
	if !bytes.Contains(dump, []byte(hex.EncodeToString([]byte("user_email/")))) {
		t.Error("pg_dump does not show the blinded namespace user_email/; the row key should keep it")
	}
	// Blinded keys still read, scan (in byte order, merged with clear
	// keys) and consume.
	if it, err := s.Get(ctx, "user_email/bob@example.net"); err != nil || string(it.Value) != "bob" {
		t.Fatalf("Get(blinded key) = %q, %v", it.Value, err)
	}
	if _, err := s.Set(ctx, "user_email/amy@example.net", []byte("amy"), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "user_emails", []byte("clear neighbour"), store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := s.Scan(ctx, "user", func(it store.Item) error { keys = append(keys, it.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"user/alice", "user_email/amy@example.net", "user_email/bob@example.net", "user_emails"}; fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Fatalf("Scan(user) = %q, want %q", keys, want)
	}
	keys = nil
	if err := s.Scan(ctx, "user_email/b", func(it store.Item) error { keys = append(keys, it.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"user_email/bob@example.net"}; fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Fatalf("Scan(user_email/b) = %q, want %q", keys, want)
	}

	// A value copied onto another row does not open there, and the
	// victim row reads as an error, not as the copied value.
	exec(t, dsn, `UPDATE kv SET v = (SELECT v FROM kv WHERE k = 'totp/cred/alice'::bytea) WHERE k = 'user/alice'::bytea`)
	if it, err := s.Get(ctx, "user/alice"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a row holding another row's value = %q, %v; want an error", it.Value, err)
	}

	// Another storage key: Open refuses.
	_, err := pgstore.Open(ctx, pgstore.Options{DSN: dsn, Key: bytes.Repeat([]byte{7}, 32)})
	if !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("Open with another key: %v, want ErrWrongKey", err)
	}
}

// A replica with another storage key is refused even while the store is
// still empty, and writes nothing.
func TestWrongKeyOnEmptyStore(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	_ = open(t, dsn, 0).Close()
	_, err := pgstore.Open(t.Context(), pgstore.Options{DSN: dsn, Key: bytes.Repeat([]byte{7}, 32)})
	if !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("Open of an empty store with another key: %v, want ErrWrongKey", err)
	}
	var rows int
	q(t, dsn, `SELECT (SELECT count(*) FROM kv) + (SELECT count(*) FROM kv_changes)`, &rows)
	if rows != 0 {
		t.Fatalf("the refused Open left %d rows", rows)
	}
	// The right key still opens it.
	_ = open(t, dsn, 0)
}

// The trap of change sequences: numbers taken in one order, commits in
// another. Many writers at once; a follower paging through the feed while
// they write must see every write exactly once, in increasing Seq.
func TestFeedConcurrentWriters(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	w := open(t, dsn, 0)
	r := open(t, dsn, 0) // another replica follows
	ctx := t.Context()
	const writers, each = 8, 40
	written := make(chan store.Change, writers*each)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := range each {
				key := fmt.Sprintf("f/%d/%d", i, j)
				opt := store.WriteOptions{Durable: j%2 == 0}
				v, err := w.Set(ctx, key, []byte("x"), opt)
				if err != nil {
					t.Error(err)
					return
				}
				written <- store.Change{Key: key, Version: v}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	seen := map[string]uint64{}
	var cur, lastSeq uint64
	follow := func() {
		for {
			chs, next, err := r.Changes(ctx, "f/", cur, 7)
			if err != nil {
				t.Fatalf("Changes: %v", err)
			}
			for _, ch := range chs {
				if ch.Seq <= lastSeq {
					t.Fatalf("change %d after %d: not increasing", ch.Seq, lastSeq)
				}
				lastSeq = ch.Seq
				if _, dup := seen[ch.Key]; dup {
					t.Fatalf("change of %s seen twice", ch.Key)
				}
				seen[ch.Key] = ch.Version
			}
			if next < cur {
				t.Fatalf("cursor went back from %d to %d", cur, next)
			}
			if cur = next; len(chs) == 0 {
				return
			}
		}
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		follow()
		wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, _ = r.Wait(wctx, cur)
		cancel()
	}
	follow()
	close(written)
	n := 0
	for ch := range written {
		n++
		if got, ok := seen[ch.Key]; !ok || got != ch.Version {
			t.Errorf("follower saw %s at version %d (seen %v), written at %d", ch.Key, got, ok, ch.Version)
		}
	}
	if len(seen) != n {
		t.Errorf("follower saw %d changes, %d were written", len(seen), n)
	}
}

// LISTEN/NOTIFY: a write on one replica wakes Wait on another at once.
func TestWaitAcrossReplicas(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	a, b := open(t, dsn, 0), open(t, dsn, 0)
	ctx := t.Context()
	head, err := b.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		got := make(chan uint64, 1)
		go func() {
			h, err := b.Wait(ctx, head)
			if err != nil {
				t.Error(err)
			}
			got <- h
		}()
		time.Sleep(20 * time.Millisecond) // let it block
		start := time.Now()
		if _, err := a.Set(ctx, "session/x", []byte("v"), store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		select {
		case h := <-got:
			if h <= head {
				t.Fatalf("Wait returned head %d, not past %d", h, head)
			}
			// Far below the 2 s poll: the notification woke it.
			if d := time.Since(start); d > time.Second {
				t.Fatalf("Wait woke %v after the write on another replica", d)
			}
			head = h
		case <-time.After(5 * time.Second):
			t.Fatal("Wait did not wake after a write on another replica")
		}
	}
	// Close wakes a Wait with ErrClosed.
	errc := make(chan error, 1)
	go func() { _, err := b.Wait(ctx, head+1000); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	_ = b.Close()
	if err := <-errc; !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Wait across Close: %v, want ErrClosed", err)
	}
}

// ConsumeAndSet's one statement notifies too: another replica's Wait wakes
// and its feed has the removal, then the write.
func TestConsumeAndSetWakesOtherReplicas(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	a, b := open(t, dsn, 0), open(t, dsn, 0)
	ctx := t.Context()
	tv, err := a.Set(ctx, "webauthn/ceremony/x", []byte("challenge"), store.WriteOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rv, err := a.Set(ctx, "webauthn/user/alice", []byte("count=1"), store.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	head, err := b.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan uint64, 1)
	go func() {
		h, err := b.Wait(ctx, head)
		if err != nil {
			t.Error(err)
		}
		got <- h
	}()
	time.Sleep(20 * time.Millisecond) // let it block
	start := time.Now()
	ver, err := a.ConsumeAndSet(ctx, "webauthn/ceremony/x", tv, "webauthn/user/alice", []byte("count=2"), rv, store.WriteOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case h := <-got:
		if d := time.Since(start); h <= head || d > time.Second {
			t.Fatalf("Wait returned head %d (from %d) after %v", h, head, d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not wake after a ConsumeAndSet on another replica")
	}
	chs, _, err := b.Changes(ctx, "webauthn/", head, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(chs) != 2 || chs[0].Key != "webauthn/ceremony/x" || !chs[0].Deleted ||
		chs[1].Key != "webauthn/user/alice" || string(chs[1].Value) != "count=2" || chs[1].Version != ver || chs[1].Seq != chs[0].Seq+1 {
		t.Fatalf("changes seen by the other replica: %+v", chs)
	}
}

// A follower behind the retention gets ErrGap, never a silent skip; one
// within it reads on.
func TestFeedGap(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	s := open(t, dsn, 4)
	ctx := t.Context()
	for i := range 20 {
		if _, err := s.Set(ctx, fmt.Sprintf("g/%d", i), []byte("v"), store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Changes(ctx, "g/", 0, 100); !errors.Is(err, store.ErrGap) {
		t.Fatalf("Changes from 0 after trimming: %v, want ErrGap", err)
	}
	head, _ := s.Head(ctx)
	chs, next, err := s.Changes(ctx, "g/", head-4, 100)
	if err != nil || len(chs) != 4 || next != head {
		t.Fatalf("Changes within retention = %d changes, next %d, %v; want 4, %d, nil", len(chs), next, err, head)
	}
}

// Expired rows read as absent at once and are swept by GC; expiry makes
// no change entry.
func TestSweep(t *testing.T) {
	c := pgtest.Start(t)
	dsn := c.NewDatabase(t)
	s := open(t, dsn, 0)
	ctx := t.Context()
	if _, err := s.Set(ctx, "short", []byte("v"), store.WriteOptions{TTL: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "long", []byte("v"), store.WriteOptions{TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	head, _ := s.Head(ctx)
	time.Sleep(100 * time.Millisecond)
	if _, err := s.Get(ctx, "short"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(expired) = %v, want ErrNotFound", err)
	}
	if err := s.GC(ctx); err != nil {
		t.Fatalf("GC: %v", err)
	}
	var n int
	q(t, dsn, `SELECT count(*) FROM kv`, &n)
	if n != 1 {
		t.Fatalf("%d rows after GC, want 1 (the long one)", n)
	}
	if h, _ := s.Head(ctx); h != head {
		t.Fatalf("head moved from %d to %d by expiry and sweep", head, h)
	}
	parts, err := s.StorageSize(ctx)
	if err != nil || len(parts) != 2 || parts[0].Bytes <= 0 {
		t.Fatalf("StorageSize = %v, %v", parts, err)
	}
}

func exec(t *testing.T, dsn, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func q(t *testing.T, dsn, sql string, dest ...any) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if err := conn.QueryRow(t.Context(), sql).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
