package store_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/authn/store/pgstore"
	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
)

var testKey = bytes.Repeat([]byte{0x5a}, 32)

func openBadger(t *testing.T, dir string) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(badgerstore.Options{Path: dir, EncryptionKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type seedRec struct {
	key   string
	value string
	ttl   time.Duration
}

// seed is a bit of everything keygate keeps: durable records, records with
// a TTL, keys of the namespaces pgstore blinds, an empty value, a binary
// key and a key with no '/'.
var seed = []seedRec{
	{"user/alice", `{"name":"alice"}`, 0},
	{"user/bob", `{"name":"bob"}`, 0},
	{"user_email/alice@example.com", "alice", 0},
	{"session/3f9a", "sess", time.Hour},
	{"session/77aa", "sess2", 2 * time.Hour},
	{"policy/v/0000000001", "default: one_factor", 0},
	{"policy/head", "1", 0},
	{"audit/0001", "added alice", 0},
	{"regulate/ip/192.0.2.7", "3", 15 * time.Minute},
	{"parked/abc", "", 10 * time.Minute},
	{"webauthn/ceremony/xyz", "challenge", 5 * time.Minute},
	{"bin/\x00\xff\x01", "\x00\x01", 0},
	{"standalone", "x", 0},
}

func seedStore(t *testing.T, kv store.KV) {
	t.Helper()
	for _, r := range seed {
		if _, err := kv.Set(context.Background(), r.key, []byte(r.value), store.WriteOptions{TTL: r.ttl, Durable: true}); err != nil {
			t.Fatal(err)
		}
	}
}

func all(t *testing.T, kv store.KV) map[string]store.Item {
	t.Helper()
	out := map[string]store.Item{}
	if err := kv.Scan(context.Background(), "", func(it store.Item) error { out[it.Key] = it; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameContents fails unless dst holds src's records: same keys, values and
// (within two seconds: Badger rounds up to whole seconds) expiry.
func sameContents(t *testing.T, dst, src store.KV) {
	t.Helper()
	want, got := all(t, src), all(t, dst)
	if len(want) != len(got) {
		t.Errorf("target holds %d records, source %d", len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%q missing in the target", k)
		case !bytes.Equal(g.Value, w.Value):
			t.Errorf("%q: value %q, want %q", k, g.Value, w.Value)
		case g.ExpiresAt.IsZero() != w.ExpiresAt.IsZero():
			t.Errorf("%q: expiry %v, want %v", k, g.ExpiresAt, w.ExpiresAt)
		case !w.ExpiresAt.IsZero() && (g.ExpiresAt.Sub(w.ExpiresAt) > 2*time.Second || w.ExpiresAt.Sub(g.ExpiresAt) > 2*time.Second):
			t.Errorf("%q: expires %v, want about %v", k, g.ExpiresAt, w.ExpiresAt)
		}
	}
}

func prefixOf(r *store.CopyReport, p string) store.PrefixCount {
	for _, c := range r.Prefixes {
		if c.Prefix == p {
			return c
		}
	}
	return store.PrefixCount{}
}

func TestCopyKeepsRecordsAndTTLs(t *testing.T) {
	ctx := context.Background()
	src := openBadger(t, filepath.Join(t.TempDir(), "src"))
	seedStore(t, src)
	dst := openBadger(t, filepath.Join(t.TempDir(), "dst"))

	r, err := store.Copy(ctx, dst, src, store.CopyOptions{})
	if err != nil {
		t.Fatalf("copy: %v (%+v)", err, r)
	}
	sameContents(t, dst, src)
	tot := r.Total()
	if tot.Source != len(seed) || tot.Copied != len(seed) || tot.Target != len(seed) || !tot.OK() || tot.Expired != 0 {
		t.Fatalf("totals %+v, want %d everywhere", tot, len(seed))
	}
	if s := prefixOf(r, "session/"); s.Source != 2 || s.Copied != 2 || s.Target != 2 {
		t.Errorf("session/ counts %+v", s)
	}
	if s := prefixOf(r, "(other)"); s.Copied != 1 {
		t.Errorf("a key without '/' is counted under %+v", r.Prefixes)
	}
	if s := prefixOf(r, "user/"); s.Copied != 2 {
		t.Errorf("user/ counts %+v", s)
	}
}

// A record whose TTL has passed is not copied; the others keep the time
// they have left.
func TestCopySkipsExpired(t *testing.T) {
	ctx := context.Background()
	src := openBadger(t, filepath.Join(t.TempDir(), "src"))
	seedStore(t, src)
	if _, err := src.Set(ctx, "email_code/alice", []byte("123456"), store.WriteOptions{TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	// Badger keeps expiry in whole seconds, rounded up.
	time.Sleep(2100 * time.Millisecond)
	dst := openBadger(t, filepath.Join(t.TempDir(), "dst"))
	r, err := store.Copy(ctx, dst, src, store.CopyOptions{})
	if err != nil {
		t.Fatalf("copy: %v (%+v)", err, r)
	}
	if tot := r.Total(); tot.Copied != len(seed) || tot.Target != len(seed) || !tot.OK() {
		t.Fatalf("totals %+v", tot)
	}
	if _, err := dst.Get(ctx, "email_code/alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the expired code was copied: %v", err)
	}
	it, err := dst.Get(ctx, "session/3f9a")
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(it.ExpiresAt); left < time.Hour-5*time.Second || left > time.Hour+time.Second {
		t.Errorf("session's remaining TTL %v, want about 1h less the seconds gone", left)
	}
}

func TestCopyRefusesNonEmptyTarget(t *testing.T) {
	ctx := context.Background()
	src := openBadger(t, filepath.Join(t.TempDir(), "src"))
	seedStore(t, src)
	dst := openBadger(t, filepath.Join(t.TempDir(), "dst"))
	ver, err := dst.Set(ctx, "user/alice", []byte("the target's own alice"), store.WriteOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := store.Copy(ctx, dst, src, store.CopyOptions{})
	if !errors.Is(err, store.ErrNotEmpty) || !strings.Contains(err.Error(), "1 records") {
		t.Fatalf("copy into a non-empty target: %v", err)
	}
	if r != nil {
		t.Errorf("a report for a refused copy: %+v", r)
	}
	got := all(t, dst)
	if it := got["user/alice"]; len(got) != 1 || it.Version != ver || string(it.Value) != "the target's own alice" {
		t.Fatalf("the refused copy changed the target: %+v", got)
	}

	// Replace: the target ends up holding exactly the source's records.
	if _, err := dst.Set(ctx, "session/only-here", []byte("x"), store.WriteOptions{TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	r, err = store.Copy(ctx, dst, src, store.CopyOptions{Replace: true})
	if err != nil {
		t.Fatalf("copy with Replace: %v", err)
	}
	sameContents(t, dst, src)
	if s := prefixOf(r, "session/"); s.Removed != 1 || s.Target != 2 {
		t.Errorf("session/ after Replace: %+v", s)
	}
}

// lossyKV is a real store that silently loses the writes of one key: the
// check must notice.
type lossyKV struct {
	*badgerstore.Store
	lose string
}

func (l lossyKV) Set(ctx context.Context, key string, value []byte, opt store.WriteOptions) (uint64, error) {
	if key == l.lose {
		return 1, nil
	}
	return l.Store.Set(ctx, key, value, opt)
}

func TestCopyCheckFindsALostWrite(t *testing.T) {
	ctx := context.Background()
	src := openBadger(t, filepath.Join(t.TempDir(), "src"))
	seedStore(t, src)
	dst := openBadger(t, filepath.Join(t.TempDir(), "dst"))
	r, err := store.Copy(ctx, lossyKV{dst, "audit/0001"}, src, store.CopyOptions{})
	if !errors.Is(err, store.ErrMismatch) {
		t.Fatalf("a lost write passed the check: %v", err)
	}
	if a := prefixOf(r, "audit/"); a.Missing != 1 || a.Copied != 1 || a.Target != 0 || a.OK() {
		t.Fatalf("audit/ counts %+v", a)
	}
	if u := prefixOf(r, "user/"); !u.OK() {
		t.Fatalf("user/ counts %+v", u)
	}
}

func TestCopyContextCancelled(t *testing.T) {
	src := openBadger(t, filepath.Join(t.TempDir(), "src"))
	seedStore(t, src)
	dst := openBadger(t, filepath.Join(t.TempDir(), "dst"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := store.Copy(ctx, dst, src, store.CopyOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("copy with a done context: %v", err)
	}
	if n := len(all(t, dst)); n != 0 {
		t.Fatalf("a cancelled copy wrote %d records", n)
	}
}

// Badger to PostgreSQL and back: the blinded namespaces, binary keys and
// TTLs survive both ways.
func TestCopyBetweenBadgerAndPostgres(t *testing.T) {
	ctx := context.Background()
	cluster := pgtest.Start(t)
	src := openBadger(t, filepath.Join(t.TempDir(), "src"))
	seedStore(t, src)
	pg, err := pgstore.Open(ctx, pgstore.Options{DSN: cluster.NewDatabase(t), Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	r, err := store.Copy(ctx, pg, src, store.CopyOptions{})
	if err != nil {
		t.Fatalf("badger to postgres: %v (%+v)", err, r)
	}
	sameContents(t, pg, src)
	if u := prefixOf(r, "user_email/"); u.Copied != 1 || u.Target != 1 {
		t.Errorf("user_email/ (blinded in PostgreSQL): %+v", u)
	}

	back := openBadger(t, filepath.Join(t.TempDir(), "back"))
	r, err = store.Copy(ctx, back, pg, store.CopyOptions{})
	if err != nil {
		t.Fatalf("postgres to badger: %v (%+v)", err, r)
	}
	sameContents(t, back, src)
	if tot := r.Total(); tot.Copied != len(seed) || tot.Target != len(seed) {
		t.Errorf("totals back: %+v", tot)
	}
}

// NoCheck (a backup of a store in use): the copy is made, the check and
// its counts are not.
func TestCopyNoCheck(t *testing.T) {
	src := openBadger(t, filepath.Join(t.TempDir(), "src"))
	seedStore(t, src)
	dst := openBadger(t, filepath.Join(t.TempDir(), "dst"))
	r, err := store.Copy(context.Background(), dst, src, store.CopyOptions{NoCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	if tot := r.Total(); tot.Copied != len(seed) || tot.Target != 0 {
		t.Fatalf("totals %+v", tot)
	}
	sameContents(t, dst, src)
}
