package badgerstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
)

var backupKey = bytes.Repeat([]byte{0x5a}, KeySize)

// fillStore writes a mix of records: plain, durable, with a TTL, empty,
// binary keys, a value big enough for the value log, and enough bulk to
// span several backup frames; one key is deleted and one consumed, which
// must not come back.
func fillStore(t *testing.T, s *Store) map[string]store.Item {
	t.Helper()
	ctx := t.Context()
	set := func(k string, v []byte, opt store.WriteOptions) {
		if _, err := s.Set(ctx, k, v, opt); err != nil {
			t.Fatal(err)
		}
	}
	set("user/alice", []byte(`{"email":"alice-secret-marker@example.com"}`), store.WriteOptions{Durable: true})
	set("session/1", []byte("s1"), store.WriteOptions{TTL: time.Hour})
	set("empty", []byte{}, store.WriteOptions{})
	set("bin/\x00\xff", []byte{0, 1, 2}, store.WriteOptions{})
	big := make([]byte, 200<<10) // > ValueThreshold: lives in the value log
	_, _ = rand.Read(big)
	set("big", big, store.WriteOptions{})
	for i := range 300 {
		v := make([]byte, 1024)
		_, _ = rand.Read(v)
		set(fmt.Sprintf("bulk/%04d", i), v, store.WriteOptions{})
	}
	set("gone", []byte("deleted"), store.WriteOptions{})
	if err := s.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	set("once", []byte("consumed"), store.WriteOptions{})
	if _, err := s.Consume(ctx, "once"); err != nil {
		t.Fatal(err)
	}
	return scanAll(t, s)
}

func scanAll(t *testing.T, s *Store) map[string]store.Item {
	t.Helper()
	out := map[string]store.Item{}
	if err := s.Scan(t.Context(), "", func(it store.Item) error { out[it.Key] = it; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func takeBackup(t *testing.T, s *Store, key []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Backup(&buf, key); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	return buf.Bytes()
}

// assertEmpty fails unless dir is missing or empty: nothing half-restored.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		t.Fatalf("%s holds %d entries after a failed restore (%s, …)", dir, len(entries), entries[0].Name())
	}
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name           string
		srcKey, dstKey []byte
	}{
		{"encrypted, same storage key", testKey, testKey},
		{"storage key changed on restore", testKey, otherKey},
		{"plain store", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := mustOpen(t, t.TempDir(), tc.srcKey)
			defer src.Close()
			want := fillStore(t, src)
			raw := takeBackup(t, src, backupKey)
			if len(raw) < 5*backupFrame {
				t.Fatalf("backup of %d bytes; the test wants several frames", len(raw))
			}
			info, err := VerifyBackup(bytes.NewReader(raw), backupKey)
			if err != nil {
				t.Fatalf("VerifyBackup: %v", err)
			}
			if info.Records < uint64(len(want)) || time.Since(info.Created) > time.Minute {
				t.Fatalf("info %+v for %d user records", info, len(want))
			}

			dir := filepath.Join(t.TempDir(), "restored") // missing: Restore creates it
			if err := Restore(Options{Path: dir, EncryptionKey: tc.dstKey}, bytes.NewReader(raw), backupKey); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, restoreStaging)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("staging directory left behind: %v", err)
			}
			dst := mustOpen(t, dir, tc.dstKey)
			defer dst.Close()
			got := scanAll(t, dst)
			if len(got) != len(want) {
				t.Fatalf("restored %d records, want %d", len(got), len(want))
			}
			var maxVer uint64
			for k, w := range want {
				g, ok := got[k]
				if !ok || !bytes.Equal(g.Value, w.Value) || g.Version != w.Version || !g.ExpiresAt.Equal(w.ExpiresAt) {
					t.Fatalf("record %q: got %+v ok=%v, want version %d expiry %v", k, g.Version, ok, w.Version, w.ExpiresAt)
				}
				maxVer = max(maxVer, w.Version)
			}
			for _, k := range []string{"gone", "once"} {
				if _, ok := got[k]; ok {
					t.Fatalf("removed key %q came back", k)
				}
			}
			// The version counter continues above every restored version, so
			// compare-and-set stays sound after a restore.
			ver, err := dst.Set(t.Context(), "after", []byte("x"), store.WriteOptions{})
			if err != nil || ver <= maxVer {
				t.Fatalf("first write after restore: version %d (max restored %d), %v", ver, maxVer, err)
			}
			if _, err := dst.CompareAndSet(t.Context(), "user/alice", []byte("v2"), want["user/alice"].Version, store.WriteOptions{}); err != nil {
				t.Fatalf("CAS on a restored record: %v", err)
			}
		})
	}
}

func TestBackupIsEncrypted(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testKey)
	defer s.Close()
	fillStore(t, s)
	marker := []byte("alice-secret-marker@example.com")
	// The trap this guards against: Badger's own backup of an encrypted
	// database is plaintext.
	var plain bytes.Buffer
	if _, err := s.db.Backup(&plain, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(plain.Bytes(), marker) {
		t.Fatal("the marker is not in Badger's plaintext backup; the test would prove nothing")
	}
	a := takeBackup(t, s, testKey) // the storage key itself as backup key
	b := takeBackup(t, s, testKey)
	for _, raw := range [][]byte{a, b} {
		if bytes.Contains(raw, marker) || bytes.Contains(raw, []byte("user/alice")) {
			t.Fatal("the backup contains a stored value or key in plain text")
		}
		if bytes.Contains(raw, testKey[:16]) {
			t.Fatal("the backup contains key bytes")
		}
	}
	// A fresh salt each time: the same data never encrypts the same way.
	if bytes.Equal(a[:backupHeaderLen], b[:backupHeaderLen]) || bytes.Equal(a[backupHeaderLen:backupHeaderLen+64], b[backupHeaderLen:backupHeaderLen+64]) {
		t.Fatal("two backups share salt or ciphertext")
	}
}

func TestRestoreWrongKey(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testKey)
	defer s.Close()
	fillStore(t, s)
	raw := takeBackup(t, s, backupKey)
	dir := filepath.Join(t.TempDir(), "restored")
	err := Restore(Options{Path: dir, EncryptionKey: testKey}, bytes.NewReader(raw), testKey)
	if !errors.Is(err, ErrBackupKey) || errors.Is(err, ErrBackupCorrupt) {
		t.Fatalf("wrong key: %v, want ErrBackupKey", err)
	}
	assertEmpty(t, dir)
	if _, err := VerifyBackup(bytes.NewReader(raw), otherKey); !errors.Is(err, ErrBackupKey) {
		t.Fatalf("VerifyBackup with a wrong key: %v", err)
	}
	// Keys too short to be keys are refused, not stretched.
	if err := s.Backup(&bytes.Buffer{}, []byte("short")); err == nil {
		t.Fatal("Backup accepted a 5-byte key")
	}
}

// frames returns the offsets of each frame's length word.
func frames(t *testing.T, raw []byte) []int {
	t.Helper()
	var offs []int
	for off := backupHeaderLen; off < len(raw); {
		offs = append(offs, off)
		n := int(binary.BigEndian.Uint32(raw[off:]) &^ backupFinalBit)
		off += 4 + n
	}
	return offs
}

func TestRestoreDetectsDamage(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testKey)
	defer s.Close()
	fillStore(t, s)
	raw := takeBackup(t, s, backupKey)
	offs := frames(t, raw)
	if len(offs) < 4 {
		t.Fatalf("%d frames; the test wants at least 4", len(offs))
	}
	last := offs[len(offs)-1]
	frameAt := func(i int) []byte {
		end := len(raw)
		if i+1 < len(offs) {
			end = offs[i+1]
		}
		return raw[offs[i]:end]
	}
	flip := func(at int) []byte {
		b := bytes.Clone(raw)
		b[at] ^= 0x01
		return b
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	cases := map[string][]byte{
		"empty":                  {},
		"not a backup":           bytes.Repeat([]byte("garbage!"), 100),
		"cut in the header":      raw[:40],
		"header only":            raw[:backupHeaderLen],
		"cut inside a frame":     raw[:offs[1]+100],
		"cut at a frame border":  raw[:offs[2]],
		"final frame dropped":    raw[:last],
		"cut inside final frame": raw[:len(raw)-1],
		"header date changed":    flip(len(backupMagic) + 5),
		"first frame changed":    flip(offs[0] + 50),
		"middle frame changed":   flip(offs[2] + 4 + 1000),
		"final frame changed":    flip(len(raw) - 3),
		"frames swapped":         join(raw[:offs[1]], frameAt(2), frameAt(1), raw[offs[3]:]),
		"frame repeated":         join(raw[:offs[2]], frameAt(1), raw[offs[2]:]),
		"frame from elsewhere":   join(raw[:offs[1]], takeBackup(t, s, backupKey)[offs[1]:offs[2]], raw[offs[2]:]),
		"data appended":          join(raw, []byte{0}),
		"backup appended":        join(raw, raw),
	}
	// Frame 1 claims to be the last one.
	early := bytes.Clone(raw)
	early[offs[1]] |= 0x80
	cases["final flag set early"] = early

	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "restored")
			err := Restore(Options{Path: dir, EncryptionKey: testKey}, bytes.NewReader(b), backupKey)
			if !errors.Is(err, ErrBackupCorrupt) {
				t.Fatalf("Restore: %v, want ErrBackupCorrupt", err)
			}
			assertEmpty(t, dir)
			if _, err := VerifyBackup(bytes.NewReader(b), backupKey); !errors.Is(err, ErrBackupCorrupt) {
				t.Fatalf("VerifyBackup: %v, want ErrBackupCorrupt", err)
			}
		})
	}
	// An existing empty target stays, and stays empty.
	dir := t.TempDir()
	if err := Restore(Options{Path: dir, EncryptionKey: testKey}, bytes.NewReader(raw[:last]), backupKey); !errors.Is(err, ErrBackupCorrupt) {
		t.Fatalf("truncated into an existing dir: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("the existing target was removed: %v", err)
	}
	assertEmpty(t, dir)
}

func TestRestoreRefusesNonEmptyTarget(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testKey)
	defer s.Close()
	fillStore(t, s)
	raw := takeBackup(t, s, backupKey)
	dir := t.TempDir()
	keep := filepath.Join(dir, "MANIFEST")
	if err := os.WriteFile(keep, []byte("live data"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Restore(Options{Path: dir, EncryptionKey: testKey}, bytes.NewReader(raw), backupKey)
	if !errors.Is(err, ErrRestoreNotEmpty) {
		t.Fatalf("non-empty target: %v", err)
	}
	if b, _ := os.ReadFile(keep); string(b) != "live data" {
		t.Fatal("restore touched the existing file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("restore left %d entries", len(entries))
	}
	// The live store's own directory is refused the same way.
	if err := Restore(Options{Path: s.path, EncryptionKey: testKey}, bytes.NewReader(raw), backupKey); !errors.Is(err, ErrRestoreNotEmpty) {
		t.Fatalf("restore over a live store: %v", err)
	}
	// A file is not a directory.
	if err := Restore(Options{Path: keep, EncryptionKey: testKey}, bytes.NewReader(raw), backupKey); err == nil {
		t.Fatal("restore into a file")
	}
}

func TestBackupWhileWriting(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testKey)
	defer s.Close()
	ctx := t.Context()
	var (
		written atomic.Int64 // keys w/0..written-1 are committed
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		werr    error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		val := make([]byte, 512)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			binary.BigEndian.PutUint64(val, uint64(i))
			if _, err := s.Set(ctx, fmt.Sprintf("w/%08d", i), val, store.WriteOptions{}); err != nil {
				werr = err
				return
			}
			written.Store(int64(i + 1))
		}
	}()
	for written.Load() < 2000 {
		time.Sleep(time.Millisecond)
	}
	before := written.Load()
	raw := takeBackup(t, s, backupKey)
	after := written.Load()
	close(stop)
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
	if after == before {
		t.Log("no write landed during the backup; consistency was not exercised this run")
	}

	dir := filepath.Join(t.TempDir(), "restored")
	if err := Restore(Options{Path: dir, EncryptionKey: testKey}, bytes.NewReader(raw), backupKey); err != nil {
		t.Fatal(err)
	}
	dst := mustOpen(t, dir, testKey)
	defer dst.Close()
	got := scanAll(t, dst)
	// One read timestamp: the keys of a sequential writer form a prefix —
	// everything written before the backup began, nothing with a gap.
	n := int64(len(got))
	if n < before || n > after {
		t.Fatalf("restored %d keys; %d were written before the backup began, %d when it ended", n, before, after)
	}
	for i := range n {
		it, ok := got[fmt.Sprintf("w/%08d", i)]
		if !ok || binary.BigEndian.Uint64(it.Value) != uint64(i) {
			t.Fatalf("key %d missing or wrong in a backup of %d keys", i, n)
		}
	}
}

func TestBackupOfClosedStore(t *testing.T) {
	s := mustOpen(t, t.TempDir(), nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Backup(&bytes.Buffer{}, backupKey); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("backup of a closed store: %v", err)
	}
}

// failingWriter fails after n bytes, like a full disk or a closed socket.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		return 0, errors.New("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestBackupReportsWriteErrors(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testKey)
	defer s.Close()
	fillStore(t, s)
	for _, n := range []int{0, backupHeaderLen + 10, 3 * backupFrame} {
		if err := s.Backup(&failingWriter{n: n}, backupKey); err == nil {
			t.Fatalf("a writer failing after %d bytes: no error", n)
		}
	}
	// The store is still fine afterwards.
	if _, err := s.Get(context.Background(), "user/alice"); err != nil {
		t.Fatal(err)
	}
}
