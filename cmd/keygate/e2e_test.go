package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests build the real binary once and drive it as an operator would:
// separate processes, signals, the admin socket, the data directory on disk.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func keygateBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keygate-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "keygate")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// run executes keygate to completion.
func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(keygateBin(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run keygate %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// demoProc is a running `keygate demo`.
type demoProc struct {
	cmd    *exec.Cmd
	base   string
	stderr *bytes.Buffer
	done   chan error
}

var demoURL = regexp.MustCompile(`Your session\s+(http://localhost:\d+)/\.keygate/`)

func startDemo(t *testing.T, data string) *demoProc {
	t.Helper()
	cmd := exec.Command(keygateBin(t), "demo", "--listen", "127.0.0.1:0", "--data", data)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &demoProc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var all strings.Builder
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if m := demoURL.FindStringSubmatch(all.String()); m != nil {
				found <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { p.done <- cmd.Wait() }()
	select {
	case p.base = <-found:
	case err := <-p.done:
		t.Fatalf("demo exited early: %v\n%s", err, p.stderr)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("demo did not start\n%s", p.stderr)
	}
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *demoProc) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("demo exit: %v\n%s", err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Error("demo did not stop on SIGTERM")
	}
}

// demoConfigFile writes a config that points the CLI at a demo data dir.
func demoConfigFile(t *testing.T, data string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "demo.yaml")
	yml := fmt.Sprintf(`
storage:
  path: %q
  encryption_key_file: %q
upstreams:
  - host: localhost
    url: http://127.0.0.1:1
`, data, data+".key")
	if err := os.WriteFile(f, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func signIn(t *testing.T, base, user, password string) *http.Cookie {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	resp, err := http.Post(base+"/.keygate/api/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("sign-in as %s: %d %s", user, resp.StatusCode, b)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "keygate_session" {
			return c
		}
	}
	t.Fatal("no session cookie")
	return nil
}

func signInStatus(t *testing.T, base, user, password string) int {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	resp, err := http.Post(base+"/.keygate/api/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func getWithCookie(t *testing.T, url string, ck *http.Cookie) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/html")
	if ck != nil {
		req.AddCookie(ck)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDemoLifecycle(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	d := startDemo(t, data)

	// The demo's three kinds of path.
	if code, body := getWithCookie(t, d.base+"/public/", nil); code != 200 || !strings.Contains(body, "keygate demo app") {
		t.Fatalf("public page: %d", code)
	}
	if code, _ := getWithCookie(t, d.base+"/", nil); code != http.StatusFound {
		t.Fatalf("one_factor page without session: %d", code)
	}
	ck := signIn(t, d.base, demoUser, demoPassword)
	code, body := getWithCookie(t, d.base+"/", ck)
	if code != 200 || !strings.Contains(body, "Remote-User") || !strings.Contains(body, demoUser) {
		t.Fatalf("signed-in page: %d %q", code, body)
	}
	if code, _ := getWithCookie(t, d.base+"/closed/", ck); code != http.StatusForbidden {
		t.Fatalf("deny rule: %d", code)
	}

	// User commands work while keygate serves, through the admin socket.
	cfg := demoConfigFile(t, data)
	out, errOut, rc := run(t, "another-long-passphrase\n", "user", "add", "bob", "--email", "bob@example.com", "--groups", "dev", "--password-stdin", "--config", cfg)
	if rc != 0 || !strings.Contains(out, "user bob added") {
		t.Fatalf("user add while serving: rc=%d %q %q", rc, out, errOut)
	}
	out, _, rc = run(t, "", "user", "list", "--config", cfg)
	if rc != 0 || !strings.Contains(out, "bob") || !strings.Contains(out, demoUser) {
		t.Fatalf("user list: rc=%d %q", rc, out)
	}
	_, errOut, rc = run(t, "password\n", "user", "add", "carol", "--email", "carol@example.com", "--password-stdin", "--config", cfg)
	if rc == 0 || !strings.Contains(errOut, "password refused") {
		t.Fatalf("weak password accepted: rc=%d %q", rc, errOut)
	}
	bobCookie := signIn(t, d.base, "bob", "another-long-passphrase")
	if code, _ := getWithCookie(t, d.base+"/", bobCookie); code != 200 {
		t.Fatalf("bob signed in: %d", code)
	}
	// The socket is the owner's only.
	if fi, err := os.Stat(filepath.Join(data, "keygate.sock")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v mode %v", err, fi.Mode())
	}
	// Disabling ends the running gateway's sessions of that user at once.
	if _, errOut, rc := run(t, "", "user", "disable", "bob", "--config", cfg); rc != 0 {
		t.Fatalf("disable: %s", errOut)
	}
	if code, _ := getWithCookie(t, d.base+"/", bobCookie); code != http.StatusFound {
		t.Fatalf("disabled user's session still works: %d", code)
	}
	if code := signInStatus(t, d.base, "bob", "another-long-passphrase"); code != http.StatusUnauthorized {
		t.Fatalf("disabled user signed in: %d", code)
	}
	if _, errOut, rc := run(t, "", "user", "enable", "bob", "--config", cfg); rc != 0 {
		t.Fatalf("enable: %s", errOut)
	}
	if _, errOut, rc := run(t, "a-brand-new-passphrase\n", "user", "passwd", "bob", "--password-stdin", "--config", cfg); rc != 0 {
		t.Fatalf("passwd: %s", errOut)
	}
	if code := signInStatus(t, d.base, "bob", "another-long-passphrase"); code != http.StatusUnauthorized {
		t.Fatalf("old password still works: %d", code)
	}
	signIn(t, d.base, "bob", "a-brand-new-passphrase")
	if _, errOut, rc := run(t, "", "user", "delete", "bob", "--config", cfg); rc != 0 {
		t.Fatalf("delete: %s", errOut)
	}
	if code := signInStatus(t, d.base, "bob", "a-brand-new-passphrase"); code != http.StatusUnauthorized {
		t.Fatalf("deleted user signed in: %d", code)
	}
	if _, errOut, rc := run(t, "", "user", "show", "bob", "--config", cfg); rc == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("show deleted user: rc=%d %q", rc, errOut)
	}
	run(t, "another-long-passphrase\n", "user", "add", "bob", "--email", "bob@example.com", "--password-stdin", "--config", cfg)

	// Second-factor administration through the socket.
	out, errOut, rc = run(t, "", "user", "enroll-link", demoUser, "--config", cfg)
	if rc != 0 || !strings.Contains(out, d.base+"/.keygate/enroll/") || !strings.Contains(out, "works once") {
		t.Fatalf("enroll-link: rc=%d %q %q", rc, out, errOut)
	}
	out, _, rc = run(t, "", "user", "factors", demoUser, "--config", cfg)
	if rc != 0 || !strings.Contains(out, "KIND") {
		t.Fatalf("user factors: rc=%d %q", rc, out)
	}
	out, _, rc = run(t, "", "user", "reset-factors", demoUser, "--config", cfg)
	if rc != 0 || !strings.Contains(out, "removed 0 second factor(s)") {
		t.Fatalf("reset-factors: rc=%d %q", rc, out)
	}
	if code, _ := getWithCookie(t, d.base+"/", ck); code != http.StatusFound {
		t.Fatalf("a reset left the user's session alive: %d", code)
	}
	ck = signIn(t, d.base, demoUser, demoPassword)
	// The demo app shows keygate's outbox.
	if code, body := getWithCookie(t, d.base+"/outbox", ck); code != 200 || !strings.Contains(body, "Demo outbox") {
		t.Fatalf("demo outbox: %d", code)
	}

	// A second keygate on the same data directory fails clearly.
	_, errOut, rc = run(t, "", "demo", "--listen", "127.0.0.1:0", "--data", data)
	if rc == 0 || !strings.Contains(errOut, "another keygate") {
		t.Fatalf("second instance: rc=%d %q", rc, errOut)
	}

	// Restart: users and sessions survive.
	d.stop(t)
	d2 := startDemo(t, data)
	if code, body := getWithCookie(t, d2.base+"/", ck); code != 200 || !strings.Contains(body, demoUser) {
		t.Fatalf("session after restart: %d", code)
	}
	d2.stop(t)

	// With the gateway stopped the CLI opens the data directory itself.
	out, _, rc = run(t, "", "user", "show", "bob", "--config", cfg)
	if rc != 0 || !strings.Contains(out, "bob@example.com") {
		t.Fatalf("user show offline: rc=%d %q", rc, out)
	}

	// A wrong encryption key is a clear error, not a panic.
	if err := os.WriteFile(data+".key", []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, rc = run(t, "", "demo", "--listen", "127.0.0.1:0", "--data", data)
	if rc == 0 || !strings.Contains(strings.ToLower(errOut), "encryption key") || strings.Contains(errOut, "panic") {
		t.Fatalf("wrong key: rc=%d %q", rc, errOut)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	f := filepath.Join(t.TempDir(), "bad.yaml")
	yml := `
server:
  listn: "127.0.0.1:9091"
session:
  idle_timeout: soon
upstreams:
  - host: app.example.com
    url: "ftp://10.0.0.1"
`
	if err := os.WriteFile(f, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, rc := run(t, "", "config", "validate", "--config", f)
	if rc == 0 {
		t.Fatal("validate accepted a broken file")
	}
	for _, path := range []string{"server.listn", "session.idle_timeout", "upstreams[0].url"} {
		if !strings.Contains(errOut, path) {
			t.Errorf("validate output lacks %s:\n%s", path, errOut)
		}
	}
	// serve refuses the same file.
	_, errOut, rc = run(t, "", "serve", "--config", f)
	if rc == 0 || !strings.Contains(errOut, "upstreams[0].url") {
		t.Fatalf("serve started with a broken config: rc=%d %q", rc, errOut)
	}
	good := filepath.Join("..", "..", "examples", "keygate.yaml")
	out, errOut, rc := run(t, "", "config", "validate", "--config", good)
	if rc != 0 {
		t.Fatalf("examples/keygate.yaml: rc=%d %s %s", rc, out, errOut)
	}
}

func TestPolicyCommands(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("default: two_factor\nrules:\n  - name: a\n    networks: [\"10.0.0.0/33\"]\n    action: maybe\n"), 0o600)
	_, errOut, rc := run(t, "", "policy", "check", bad)
	if rc == 0 || !strings.Contains(errOut, "rules[0].networks[0]") || !strings.Contains(errOut, "rules[0].action") {
		t.Fatalf("policy check: rc=%d %q", rc, errOut)
	}
	good := filepath.Join(dir, "good.yaml")
	_ = os.WriteFile(good, []byte("default: deny\nrules:\n  - name: admin\n    hosts: [admin.example.com]\n    groups: [admins]\n    action: two_factor\n"), 0o600)
	out, _, rc := run(t, "", "policy", "check", good)
	if rc != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("policy check good: rc=%d %q", rc, out)
	}
	out, errOut, rc = run(t, "", "policy", "check", filepath.Join("..", "..", "examples", "keygate.yaml"))
	if rc != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("policy check of a whole config: rc=%d %q %q", rc, out, errOut)
	}
	out, _, rc = run(t, "", "policy", "explain", "--policy", good, "--user", "alice", "--groups", "admins", "GET", "https://admin.example.com/x")
	if rc != 0 || !strings.Contains(out, "admin") {
		t.Fatalf("explain: rc=%d %q", rc, out)
	}
}
