package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
)

// replica is one `keygate serve` of several on one database.
type replica struct {
	cfg, base string
}

// pgReplicaConfig writes the configuration of one replica on the
// database of dsn into its own directory under dir (its listener and
// admin socket); every replica of dir shares the storage key.
func pgReplicaConfig(t *testing.T, dir, name, dsn, upstream string) replica {
	t.Helper()
	keyFile, dsnFile := filepath.Join(dir, "storage.key"), filepath.Join(dir, "dsn")
	for f, v := range map[string]string{keyFile: strings.Repeat("7c", 32) + "\n", dsnFile: dsn + "\n"} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rdir := filepath.Join(dir, name)
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfg := filepath.Join(rdir, "keygate.yaml")
	yml := fmt.Sprintf(`server:
  listen: %q
  admin_socket: %q
storage:
  backend: postgres
  path: %q
  encryption_key_file: %q
  postgres:
    dsn_file: %q
policy:
  default: one_factor
upstreams:
  - host: localhost
    url: %s
`, addr, filepath.Join(rdir, "admin.sock"), filepath.Join(rdir, "data"), keyFile, dsnFile, upstream)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return replica{cfg: cfg, base: "http://localhost:" + addr[strings.LastIndex(addr, ":")+1:]}
}

// serve starts `keygate serve` for r and returns once it serves; stop
// kills it (and logs its output if the test failed). Cleanup stops it too.
func (r replica) serve(t *testing.T) (stop func()) {
	t.Helper()
	cmd := exec.Command(keygateBin(t), "serve", "--config", r.cfg)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("%s's log:\n%s", r.base, stderr.String())
			}
		})
	}
	t.Cleanup(stop)
	waitFor(t, r.base+" to serve", func() bool { return strings.Contains(stderr.String(), "keygate is serving") })
	return stop
}

// startReplicas runs n keygate processes on one PostgreSQL database (a
// cluster the test starts), each with its own listener and admin socket.
func startReplicas(t *testing.T, n int, upstream string) []replica {
	t.Helper()
	cluster := pgtest.Start(t)
	dsn := cluster.NewDatabase(t)
	dir := t.TempDir()
	var out []replica
	for i := range n {
		r := pgReplicaConfig(t, dir, fmt.Sprintf("r%d", i), dsn, upstream)
		r.serve(t)
		out = append(out, r)
	}
	return out
}

// within polls cond for up to d and reports how long it took.
func within(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start), true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start), cond()
}

// Three replicas on one PostgreSQL behave as one: a person added through
// one replica's CLI signs in on another; the next request lands on a
// third and passes; a policy saved through one replica is in force on the
// others within a second; "sign out everywhere" on one ends the session on
// the others within a second.
func TestReplicasBehaveAsOne(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app:%s", r.URL.Path)
	}))
	defer up.Close()
	rs := startReplicas(t, 3, up.URL)
	a, b, c := rs[0], rs[1], rs[2]

	const password = "violet-harbour-lantern-9"
	if _, errOut, rc := run(t, password+"\n", "user", "add", "erin", "--email", "erin@example.com", "--password-stdin", "--config", a.cfg); rc != 0 {
		t.Fatalf("user add on A: %s", errOut)
	}
	ck := signIn(t, b.base, "erin", password)
	for _, r := range []replica{a, b, c} {
		if st, body := getWithCookie(t, r.base+"/x", ck); st != http.StatusOK || body != "app:/x" {
			t.Fatalf("a session from B on %s: %d %q", r.base, st, body)
		}
	}

	// A policy saved through A's CLI is in force on B and C.
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte("default: one_factor\nrules:\n  - name: closed\n    paths: [\"/closed/**\"]\n    action: deny\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, rc := run(t, "", "policy", "import", pol, "--config", a.cfg); rc != 0 {
		t.Fatalf("policy import on A: %s %s", out, errOut)
	}
	for _, r := range []replica{a, b, c} {
		took, ok := within(5*time.Second, func() bool { st, _ := getWithCookie(t, r.base+"/closed/x", ck); return st == http.StatusForbidden })
		if !ok || took > time.Second {
			t.Errorf("the new policy on %s: in force %v after %v", r.base, ok, took)
		}
	}

	// A TOTP code used through A is refused through B (the replay guard
	// is in the shared store); the next code works on C.
	secret := enrolTOTP(t, a.base, a.cfg, "erin", password)
	// The next step's code: within the allowed skew, and not the step the
	// enrolment confirmed with.
	code := totpCode(t, secret, time.Now().Add(30*time.Second))
	pa, pb := newPortal(t, a.base), newPortal(t, b.base)
	pa.post("/.keygate/api/login", map[string]string{"username": "erin", "password": password})
	pb.post("/.keygate/api/login", map[string]string{"username": "erin", "password": password})
	pa.post("/.keygate/api/factors/totp/verify", map[string]string{"code": code})
	if st, ans := pb.call(http.MethodPost, "/.keygate/api/factors/totp/verify", map[string]string{"code": code}); st == http.StatusOK {
		t.Errorf("a TOTP code used on A was accepted on B: %v", ans)
	}

	// Five wrong passwords spread over the three replicas lock the
	// account on all of them: the right password is refused next.
	if _, errOut, rc := run(t, "violet-harbour-lantern-9\n", "user", "add", "fred", "--email", "fred@example.com", "--password-stdin", "--config", b.cfg); rc != 0 {
		t.Fatalf("user add on B: %s", errOut)
	}
	for i := range 5 {
		if st := signInStatus(t, rs[i%3].base, "fred", "not-the-password"); st != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i+1, st)
		}
	}
	for _, r := range rs {
		if st := signInStatus(t, r.base, "fred", password); st == http.StatusOK {
			t.Errorf("the account was not locked on %s after 5 failures over 3 replicas", r.base)
		}
	}

	// Every replica names the same policy version in readyz.
	for _, r := range rs {
		if st, body := getWithCookie(t, r.base+"/.keygate/readyz", nil); st != http.StatusOK || body != "ready policy_version=2" {
			t.Errorf("readyz on %s: %d %q, want version 2 everywhere", r.base, st, body)
		}
	}

	// Sign out everywhere on C: A and B refuse the cookie.
	body, _ := json.Marshal(map[string]bool{"everywhere": true})
	req, _ := http.NewRequest(http.MethodPost, c.base+"/.keygate/api/logout", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(ck)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign out everywhere on C: %d", resp.StatusCode)
	}
	for _, r := range []replica{a, b} {
		took, ok := within(5*time.Second, func() bool { st, _ := getWithCookie(t, r.base+"/x", ck); return st != http.StatusOK })
		if !ok || took > time.Second {
			t.Errorf("the ended session on %s: refused %v after %v", r.base, ok, took)
		}
	}
}
