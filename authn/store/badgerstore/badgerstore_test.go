package badgerstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/storetest"
)

var (
	testKey  = bytes.Repeat([]byte{0x42}, KeySize)
	otherKey = bytes.Repeat([]byte{0x24}, KeySize)
)

func mustOpen(t testing.TB, dir string, key []byte) *Store {
	t.Helper()
	s, err := Open(Options{Path: dir, EncryptionKey: key})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"plain", nil},
		{"encrypted", testKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, func(t *testing.T) store.KV {
				// The suite closes the store; t.TempDir's cleanup runs
				// after that (cleanups run last registered first).
				return mustOpen(t, t.TempDir(), tc.key)
			})
		})
	}
}

func BenchmarkBadger(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.KV {
		return mustOpen(b, b.TempDir(), testKey)
	})
}

func TestReopen(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"plain", nil},
		{"encrypted", testKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			dir := t.TempDir()
			s := mustOpen(t, dir, tc.key)
			want := map[string]store.Item{}
			var maxVer uint64
			for i, opt := range []store.WriteOptions{{}, {Durable: true}, {TTL: time.Hour}} {
				k := fmt.Sprintf("k/%d", i)
				v := []byte(fmt.Sprintf("value %d", i))
				ver, err := s.Set(ctx, k, v, opt)
				if err != nil {
					t.Fatalf("Set: %v", err)
				}
				it, err := s.Get(ctx, k)
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				want[k] = it
				maxVer = max(maxVer, ver)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}

			s = mustOpen(t, dir, tc.key)
			defer s.Close()
			for k, w := range want {
				got, err := s.Get(ctx, k)
				if err != nil {
					t.Fatalf("after reopen, Get(%s): %v", k, err)
				}
				if !bytes.Equal(got.Value, w.Value) || got.Version != w.Version || !got.ExpiresAt.Equal(w.ExpiresAt) {
					t.Errorf("after reopen, Get(%s) = %+v, want %+v", k, got, w)
				}
			}
			// Versions never repeat across restarts (see the package
			// comment): a new write gets one above all earlier ones.
			ver, err := s.Set(ctx, "k/new", []byte("x"), store.WriteOptions{})
			if err != nil {
				t.Fatalf("Set after reopen: %v", err)
			}
			if ver <= maxVer {
				t.Errorf("version after reopen = %d, want > %d (versions handed out before the restart)", ver, maxVer)
			}
		})
	}
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, nil)

	s2, err := Open(Options{Path: dir})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open error = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "another keygate") {
		t.Errorf("error %q should name the directory %s and say what holds it", err, dir)
	}
	t.Logf("locked: %v", err)

	// The failed Open did not disturb the first store.
	if _, err := s.Set(t.Context(), "k", []byte("v"), store.WriteOptions{}); err != nil {
		t.Fatalf("first store after a refused Open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Once released, the directory opens again.
	mustOpen(t, dir, nil).Close()
}

func TestOpenKeyMismatch(t *testing.T) {
	plainDir, encDir := t.TempDir(), t.TempDir()
	mustOpen(t, plainDir, nil).Close()
	mustOpen(t, encDir, testKey).Close()

	tests := []struct {
		name     string
		dir      string
		key      []byte
		rightKey []byte
		wantMsg  string
	}{
		{"wrong key", encDir, otherKey, testKey, "does not open"},
		{"wrong key size too", encDir, testKey[:16], testKey, "does not open"},
		{"encrypted without key", encDir, nil, testKey, "is encrypted but no encryption key"},
		{"plain with key", plainDir, testKey, nil, "is not encrypted but an encryption key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Badger logs its own error line too; keep it out of the
			// test output unless the test fails.
			var badgerLog bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&badgerLog, nil))
			s, err := Open(Options{Path: tc.dir, EncryptionKey: tc.key, Logger: logger})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			defer func() {
				if t.Failed() {
					t.Logf("Badger's log:\n%s", badgerLog.String())
				}
			}()
			if !errors.Is(err, store.ErrWrongKey) {
				t.Fatalf("Open error = %v, want ErrWrongKey", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) || !strings.Contains(err.Error(), tc.dir) {
				t.Errorf("Open error = %q, want it to name %s and say %q", err, tc.dir, tc.wantMsg)
			}
			t.Logf("%s: %v", tc.name, err)
			// The refused Open left the directory as it was.
			mustOpen(t, tc.dir, tc.rightKey).Close()
		})
	}
}

func TestOpenBadOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantMsg string
	}{
		{"no path", Options{}, "no data directory"},
		{"short key", Options{Path: t.TempDir(), EncryptionKey: []byte("short")}, "5 bytes; want 32"},
		{"long key", Options{Path: t.TempDir(), EncryptionKey: make([]byte, 33)}, "33 bytes; want 32"},
		{"path is a file", Options{Path: writeFile(t, "not-a-dir", "x")}, "not-a-dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if errors.Is(err, store.ErrWrongKey) || errors.Is(err, store.ErrLocked) {
				t.Errorf("Open error = %v: a configuration error, not a key mismatch or lock", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Open error = %q, want it to mention %q", err, tc.wantMsg)
			}
		})
	}
}

// TestCloseWhileBusy: Close waits for operations in flight, later ones get
// ErrClosed, nothing panics, and a Scan callback that calls into the store
// while Close waits does not deadlock.
func TestCloseWhileBusy(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testKey)
	ctx := t.Context()
	for i := range 3 {
		if _, err := s.Set(ctx, fmt.Sprintf("s/%d", i), []byte("v"), store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	var writers sync.WaitGroup
	stopped := make(chan error, 4)
	for w := range 4 {
		writers.Go(func() {
			for i := 0; ; i++ {
				_, err := s.Set(ctx, fmt.Sprintf("w/%d/%d", w, i%100), []byte("v"), store.WriteOptions{})
				if err != nil {
					stopped <- err
					return
				}
			}
		})
	}

	inScan := make(chan struct{})
	scanDone := make(chan error, 1)
	go func() {
		first := true
		scanDone <- s.Scan(ctx, "s/", func(store.Item) error {
			if first {
				first = false
				close(inScan)
				// Call into the store until Close has begun.
				deadline := time.Now().Add(5 * time.Second)
				for time.Now().Before(deadline) {
					if _, err := s.Get(ctx, "s/0"); errors.Is(err, store.ErrClosed) {
						return nil
					}
					time.Sleep(time.Millisecond)
				}
				return errors.New("Close never began")
			}
			return nil
		})
	}()
	<-inScan
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()

	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: deadlock with a Scan in flight")
	}
	if err := <-scanDone; err != nil {
		t.Errorf("Scan: %v", err)
	}
	writers.Wait()
	close(stopped)
	for err := range stopped {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("writer stopped with %v, want ErrClosed", err)
		}
	}
}

func TestRunGCStops(t *testing.T) {
	s := mustOpen(t, t.TempDir(), testKey)
	defer s.Close()
	// Values above the value threshold go to the value log, and rewriting
	// them leaves garbage for the GC to look at.
	big := bytes.Repeat([]byte("g"), 128<<10)
	for i := range 20 {
		if _, err := s.Set(t.Context(), fmt.Sprintf("big/%d", i%4), big, store.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.RunGC(ctx, 10*time.Millisecond); close(done) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunGC did not stop when its context was canceled")
	}

	// It also stops once the store is closed.
	s2 := mustOpen(t, t.TempDir(), nil)
	done2 := make(chan struct{})
	go func() { s2.RunGC(t.Context(), 10*time.Millisecond); close(done2) }()
	time.Sleep(20 * time.Millisecond)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done2:
	case <-time.After(5 * time.Second):
		t.Fatal("RunGC did not stop when the store was closed")
	}
}

// TestMemory keeps the footprint honest: Badger's defaults cost ~85 MiB of
// heap at Open, our options a few MiB.
func TestMemory(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"plain", nil},
		{"encrypted", testKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := heapAlloc()
			s := mustOpen(t, t.TempDir(), tc.key)
			defer s.Close()
			atOpen := heapAlloc() - before

			for i := range 5000 {
				if _, err := s.Set(t.Context(), fmt.Sprintf("session/%05d", i), bytes.Repeat([]byte("s"), 200), store.WriteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			after := heapAlloc() - before
			t.Logf("heap in use: %.1f MiB after Open, %.1f MiB after 5000 writes of 200 bytes", mib(atOpen), mib(after))
			if atOpen > 30<<20 {
				t.Errorf("heap after Open = %.1f MiB, want < 30 MiB", mib(atOpen))
			}
		})
	}
}

func heapAlloc() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func TestSlogLogger(t *testing.T) {
	var buf bytes.Buffer
	l := slogLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l.Debugf("debug %d\n", 1)
	l.Infof("info %d\n", 2)
	l.Warningf("warn %d\n", 3)
	l.Errorf("error %d\n", 4)
	out := buf.String()
	for _, dropped := range []string{"debug 1", "info 2"} {
		if strings.Contains(out, dropped) {
			t.Errorf("Badger %q reached slog; only warnings and errors should", dropped)
		}
	}
	for _, kept := range []string{`level=WARN msg="warn 3"`, `level=ERROR msg="error 4"`} {
		if !strings.Contains(out, kept) {
			t.Errorf("log output %q lacks %q", out, kept)
		}
	}
}

func TestLoadKey(t *testing.T) {
	key := make([]byte, KeySize)
	for i := range key {
		key[i] = byte(i * 7)
	}
	hexKey := hex.EncodeToString(key)
	const secretLooking = "c0ffee-this-is-not-a-key-c0ffee"

	tests := []struct {
		name    string
		file    string // file content; "" = no file
		env     string
		want    []byte
		wantErr string // substring; "" = no error
	}{
		{"hex file", hexKey + "\n", "", key, ""},
		{"hex upper case with spaces", "  " + strings.ToUpper(hexKey) + " \r\n", "", key, ""},
		{"base64 file", base64.StdEncoding.EncodeToString(key), "", key, ""},
		{"base64 raw url", base64.RawURLEncoding.EncodeToString(key), "", key, ""},
		{"hex env", "", hexKey, key, ""},
		{"base64 env", "", " " + base64.StdEncoding.EncodeToString(key) + "\n", key, ""},
		{"neither", "", "", nil, ""},
		{"both", hexKey, hexKey, nil, "use one"},
		{"empty file", "\n  \n", "", nil, "empty"},
		{"short hex", hexKey[:32], "", nil, "base64 decodes to 24 bytes; want 32"},
		{"bad hex", hexKey[:63] + "g", "", nil, "not valid hex"},
		{"base64 of 16 bytes", base64.StdEncoding.EncodeToString(key[:16]), "", nil, "16 bytes; want 32"},
		{"garbage env", "", secretLooking, nil, KeyEnv},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := ""
			if tc.file != "" {
				file = writeFile(t, "key", tc.file)
			}
			got, err := LoadKey(file, tc.env)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("LoadKey = %x, want an error", got)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("LoadKey error = %q, want it to mention %q", err, tc.wantErr)
				}
				if file != "" && tc.env == "" && !strings.Contains(err.Error(), file) {
					t.Errorf("LoadKey error = %q, want it to name the file %s", err, file)
				}
				for _, secret := range []string{secretLooking, hexKey, hexKey[:32]} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("LoadKey error %q echoes the key material", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadKey: %v", err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("LoadKey = %x, want %x", got, tc.want)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		_, err := LoadKey(filepath.Join(t.TempDir(), "nope"), "")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("LoadKey error = %v, want fs.ErrNotExist", err)
		}
	})
}

func TestGenerateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.key")
	key, err := GenerateKeyFile(path)
	if err != nil {
		t.Fatalf("GenerateKeyFile: %v", err)
	}
	if len(key) != KeySize || bytes.Equal(key, make([]byte, KeySize)) {
		t.Fatalf("GenerateKeyFile key = %x, want %d random bytes", key, KeySize)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("key file mode = %v, want 0600", mode)
	}
	loaded, err := LoadKey(path, "")
	if err != nil || !bytes.Equal(loaded, key) {
		t.Fatalf("LoadKey(generated file) = %x, %v; want %x", loaded, err, key)
	}
	// The key opens a store.
	mustOpen(t, t.TempDir(), key).Close()

	// Never overwrite an existing key: its data would be lost.
	if _, err := GenerateKeyFile(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second GenerateKeyFile error = %v, want fs.ErrExist", err)
	}
	if again, _ := LoadKey(path, ""); !bytes.Equal(again, key) {
		t.Fatal("second GenerateKeyFile changed the key file")
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFeedConformance(t *testing.T) {
	t.Parallel()
	storetest.RunFeed(t, func(t *testing.T, opt storetest.FeedOptions) store.Backend {
		s, err := Open(Options{Path: t.TempDir(), EncryptionKey: testKey, FeedRetention: opt.Retention})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func TestConsumeAndSetConformance(t *testing.T) {
	t.Parallel()
	storetest.RunConsumeAndSet(t, func(t *testing.T) store.Backend { return mustOpen(t, t.TempDir(), testKey) })
}
