package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writeKeyFile writes a fresh random key as an operator would
// (openssl rand -hex 32 > FILE).
func writeKeyFile(t *testing.T, path string) {
	t.Helper()
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestBackupWhileServingAndRestore(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	d := startDemo(t, data)
	cfg := demoConfigFile(t, data)
	if _, errOut, rc := run(t, "violet-harbour-lantern-9\n", "user", "add", "bob", "--email", "bob@example.com",
		"--groups", "dev", "--password-stdin", "--config", cfg); rc != 0 {
		t.Fatalf("user add: %s", errOut)
	}

	// A load of sign-ins (each a session write) while the backup runs.
	var (
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		ok, other atomic.Int64
	)
	body, _ := json.Marshal(map[string]string{"username": demoUser, "password": demoPassword})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Post(d.base+"/.keygate/api/login", "application/json", bytes.NewReader(body))
				if err != nil {
					other.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else {
					other.Add(1)
				}
			}
		}()
	}
	for ok.Load() == 0 && other.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	backup := filepath.Join(root, "keygate.backup")
	out, errOut, rc := run(t, "", "backup", "--out", backup, "--config", cfg)
	close(stop)
	wg.Wait()
	if rc != 0 || !strings.Contains(out, "taken by the running keygate") {
		t.Fatalf("backup while serving: rc=%d %q %q", rc, out, errOut)
	}
	if ok.Load() == 0 || other.Load() != 0 {
		t.Fatalf("sign-ins during the backup: %d ok, %d failed", ok.Load(), other.Load())
	}
	raw, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"alice@example.com", "bob@example.com", "Alice Demo", "argon2id"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatalf("the backup contains %q in plain text", secret)
		}
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file mode: %v %v", err, fi.Mode())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(root, ".keygate.backup.partial-*")); len(leftovers) > 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}

	// Restore into a new directory (same storage key) and start keygate there.
	data2 := filepath.Join(root, "data2")
	copyFile(t, data+".key", data2+".key")
	cfg2 := demoConfigFile(t, data2)
	out, errOut, rc = run(t, "", "restore", backup, "--config", cfg2)
	if rc != 0 || !strings.Contains(out, "restored") {
		t.Fatalf("restore: rc=%d %q %q", rc, out, errOut)
	}
	d2 := startDemo(t, data2)
	signIn(t, d2.base, demoUser, demoPassword)
	bobCookie := signIn(t, d2.base, "bob", "violet-harbour-lantern-9")
	if code, page := getWithCookie(t, d2.base+"/", bobCookie); code != http.StatusOK || !strings.Contains(page, "bob@example.com") {
		t.Fatalf("bob on the restored keygate: %d", code)
	}
	out, _, rc = run(t, "", "user", "list", "--config", cfg2)
	if rc != 0 || !strings.Contains(out, "bob") || !strings.Contains(out, demoUser) {
		t.Fatalf("users after restore: rc=%d %q", rc, out)
	}
	// Restoring over data is refused, and leaves it alone.
	d2.stop(t)
	_, errOut, rc = run(t, "", "restore", backup, "--config", cfg2)
	if rc == 0 || !strings.Contains(errOut, "empty") {
		t.Fatalf("restore over data: rc=%d %q", rc, errOut)
	}
	// Another installation's storage key does not open the backup, and
	// nothing is written.
	data3 := filepath.Join(root, "data3")
	writeKeyFile(t, data3+".key")
	_, errOut, rc = run(t, "", "restore", backup, "--config", demoConfigFile(t, data3))
	if rc == 0 || !strings.Contains(errOut, "another key") {
		t.Fatalf("restore with the wrong key: rc=%d %q", rc, errOut)
	}
	if entries, _ := os.ReadDir(data3); len(entries) > 0 {
		t.Fatalf("a refused restore wrote %d entries", len(entries))
	}

	// With keygate stopped, backup opens the directory itself; a separate
	// backup key and a new storage key on restore (key rotation).
	d.stop(t)
	backupKey := filepath.Join(root, "backup.key")
	writeKeyFile(t, backupKey)
	offline := filepath.Join(root, "offline.backup")
	out, errOut, rc = run(t, "", "backup", "--out", offline, "--key-file", backupKey, "--config", cfg)
	if rc != 0 || !strings.Contains(out, "not running") {
		t.Fatalf("offline backup: rc=%d %q %q", rc, out, errOut)
	}
	data4 := filepath.Join(root, "data4")
	writeKeyFile(t, data4+".key")
	cfg4 := demoConfigFile(t, data4)
	if _, errOut, rc := run(t, "", "restore", offline, "--config", cfg4); rc == 0 {
		t.Fatalf("restore without the backup key succeeded: %q", errOut)
	}
	if out, errOut, rc := run(t, "", "restore", offline, "--key-file", backupKey, "--config", cfg4); rc != 0 {
		t.Fatalf("restore with --key-file: rc=%d %q %q", rc, out, errOut)
	}
	d4 := startDemo(t, data4)
	signIn(t, d4.base, "bob", "violet-harbour-lantern-9")
}
