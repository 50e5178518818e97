package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
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

// portal is a browser-like JSON client of one keygate (cookie jar, no
// redirects followed).
type portal struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newPortal(t *testing.T, base string) *portal {
	jar, _ := cookiejar.New(nil)
	return &portal{t: t, base: base, hc: &http.Client{
		Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// post sends a JSON body and decodes the JSON answer; it fails the test
// unless the status is 200.
func (p *portal) post(path string, in any) map[string]any {
	p.t.Helper()
	b, _ := json.Marshal(in)
	resp, err := p.hc.Post(p.base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if resp.StatusCode != http.StatusOK {
		p.t.Fatalf("POST %s: %d %s", path, resp.StatusCode, raw)
	}
	return out
}

// totpCode is the code of secret for the time step around at.
func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrolTOTP gives user an authenticator app the way a person gets one: an
// admin's enrolment link, then the portal's TOTP enrolment. It returns the
// secret.
func enrolTOTP(t *testing.T, base, cfg, user, password string) string {
	t.Helper()
	out, errOut, rc := run(t, "", "user", "enroll-link", user, "--config", cfg)
	if rc != 0 {
		t.Fatalf("enroll-link: %q", errOut)
	}
	link := strings.Fields(out)[0]
	p := newPortal(t, base)
	p.post("/.keygate/api/login", map[string]string{"username": user, "password": password})
	p.post("/.keygate/api/enroll-link", map[string]string{"token": path.Base(link)})
	begin := p.post("/.keygate/api/factors/totp/enroll/begin", nil)
	secret, _ := begin["secret"].(string)
	id, _ := begin["id"].(string)
	if secret == "" || id == "" {
		t.Fatalf("TOTP enrolment began with %v", begin)
	}
	p.post("/.keygate/api/factors/totp/enroll/finish", map[string]string{"id": id, "code": totpCode(t, secret, time.Now()), "name": "phone"})
	return secret
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
	secret := enrolTOTP(t, d.base, cfg, "bob", "violet-harbour-lantern-9")

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
	t.Logf("%d sign-ins while the backup ran", ok.Load())
	raw, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	for _, known := range []string{"alice@example.com", "bob@example.com", "Alice Demo", "argon2id", secret} {
		if bytes.Contains(raw, []byte(known)) {
			t.Fatalf("the backup contains %q in plain text", known)
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
	// Bob's authenticator app still works there. The code of the next time
	// step: the enrolment used this one, and the restored store remembers
	// that (a TOTP step is accepted once).
	bob := newPortal(t, d2.base)
	bob.post("/.keygate/api/login", map[string]string{"username": "bob", "password": "violet-harbour-lantern-9"})
	bob.post("/.keygate/api/factors/totp/verify", map[string]string{"code": totpCode(t, secret, time.Now().Add(30*time.Second))})
	if out, _, rc := run(t, "", "user", "factors", "bob", "--config", cfg2); rc != 0 || !strings.Contains(out, "totp") {
		t.Fatalf("bob's factors after restore: rc=%d %q", rc, out)
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

// Backup and restore on PostgreSQL: a backup taken while keygate serves on
// one database restores onto an empty one, where the person and the
// session are back; a non-empty database and a wrong key are refused with
// nothing written; the same file restores onto Badger too (one format).
func TestBackupRestoreOnPostgres(t *testing.T) {
	cluster := pgtest.Start(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app:%s", r.URL.Path)
	}))
	defer up.Close()
	root := t.TempDir()
	// One directory per database: pgReplicaConfig writes the DSN file
	// there (the storage key is the same in each).
	cfgFor := func(name string) (replica, string) {
		dsn := cluster.NewDatabase(t)
		if err := os.MkdirAll(filepath.Join(root, name), 0o700); err != nil {
			t.Fatal(err)
		}
		return pgReplicaConfig(t, filepath.Join(root, name), "r", dsn, up.URL), dsn
	}
	a, _ := cfgFor("a")
	stop := a.serve(t)
	const pw = "violet-harbour-lantern-9"
	if _, errOut, rc := run(t, pw+"\n", "user", "add", "dora", "--email", "dora.secret@example.com", "--password-stdin", "--config", a.cfg); rc != 0 {
		t.Fatalf("user add: %s", errOut)
	}
	ck := signIn(t, a.base, "dora", pw)
	backup := filepath.Join(root, "pg.kgb")
	out, errOut, rc := run(t, "", "backup", "--out", backup, "--config", a.cfg)
	if rc != 0 || !strings.Contains(out, "read record by record from the postgres database") {
		t.Fatalf("backup while serving on postgres: rc=%d %q %q", rc, out, errOut)
	}
	stop()
	raw, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	for _, known := range []string{"dora.secret@example.com", "argon2id", ck.Value} {
		if bytes.Contains(raw, []byte(known)) {
			t.Fatalf("the backup shows %q in plain text", known)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(root, ".keygate-staging-*")); len(left) > 0 {
		t.Fatalf("staging left behind: %v", left)
	}

	// A wrong key: refused before the database is touched (the restore
	// with the right key afterwards needs an empty database).
	b, bDSN := cfgFor("b")
	otherKey := filepath.Join(root, "other.key")
	writeKeyFile(t, otherKey)
	if _, errOut, rc := run(t, "", "restore", backup, "--key-file", otherKey, "--config", b.cfg); rc == 0 || !strings.Contains(errOut, "another key") {
		t.Fatalf("restore with a wrong key: rc=%d %q", rc, errOut)
	}
	out, errOut, rc = run(t, "", "restore", backup, "--config", b.cfg)
	if rc != 0 || !strings.Contains(out, "restored") || !strings.Contains(out, "session/") {
		t.Fatalf("restore onto an empty database: rc=%d %q %q", rc, out, errOut)
	}
	t.Logf("restore:\n%s", out)
	var before map[string]int
	inPostgres(t, bDSN, func(kv store.KV) { before = prefixCounts(t, kv) })
	if _, errOut, rc := run(t, "", "restore", backup, "--config", b.cfg); rc == 0 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("restore onto a database with records: rc=%d %q", rc, errOut)
	}
	inPostgres(t, bDSN, func(kv store.KV) {
		if after := prefixCounts(t, kv); !reflect.DeepEqual(after, before) {
			t.Fatalf("a refused restore changed the database: %v, was %v", after, before)
		}
	})
	stopB := b.serve(t)
	if st, body := getWithCookie(t, b.base+"/x", ck); st != http.StatusOK || body != "app:/x" {
		t.Errorf("the session on the restored database: %d %q", st, body)
	}
	if st := signInStatus(t, b.base, "dora", pw); st != http.StatusOK {
		t.Errorf("sign-in on the restored database: %d", st)
	}
	stopB()

	// The same file onto Badger.
	bg, _ := badgerReplicaConfig(t, filepath.Join(root, "a"), "bg", up.URL)
	if out, errOut, rc := run(t, "", "restore", backup, "--config", bg.cfg); rc != 0 {
		t.Fatalf("restore a PostgreSQL backup onto Badger: rc=%d %q %q", rc, out, errOut)
	}
	if out, _, rc := run(t, "", "user", "list", "--config", bg.cfg); rc != 0 || !strings.Contains(out, "dora") {
		t.Fatalf("users on Badger: rc=%d %q", rc, out)
	}
}
