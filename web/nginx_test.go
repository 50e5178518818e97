package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A real nginx (Debian's) runs the shipped examples/nginx/keygate.conf in
// front of the harness: keygate on loopback answers the auth subrequests and
// serves the portal, the harness's recorder is the app. Only the listen port
// and the two upstream addresses of the snippet are replaced.

const nginxSnippet = "../examples/nginx/keygate.conf"

// nginxBinary finds nginx, or fails in CI (which installs it) and skips
// loudly elsewhere.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx" // not on a non-root user's PATH
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx missing: .ci/run installs it")
	}
	t.Skip("SKIPPED: nginx is not installed (apt-get install nginx); the nginx integration test did not run")
	return ""
}

// renderNginxConf puts the shipped snippet into a complete nginx.conf whose
// every path is under dir.
func renderNginxConf(t *testing.T, dir string, port int, keygateAddr, appAddr string) string {
	t.Helper()
	raw, err := os.ReadFile(nginxSnippet)
	if err != nil {
		t.Fatal(err)
	}
	snippet := string(raw)
	for old, repl := range map[string]string{
		"listen 80;":             fmt.Sprintf("listen 127.0.0.1:%d;", port),
		"server 127.0.0.1:9091;": "server " + keygateAddr + ";",
		"server 127.0.0.1:8080;": "server " + appAddr + ";",
	} {
		if strings.Count(snippet, old) != 1 {
			t.Fatalf("%s: expected %q exactly once; the test's templating and the snippet disagree", nginxSnippet, old)
		}
		snippet = strings.Replace(snippet, old, repl, 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "keygate.conf"), []byte(snippet), 0o644); err != nil {
		t.Fatal(err)
	}
	var temps strings.Builder
	for _, name := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&temps, "    %s_temp_path %s;\n", name, filepath.Join(dir, name))
	}
	conf := fmt.Sprintf(`worker_processes 1;
error_log %[1]s/error.log info;
pid %[1]s/nginx.pid;
events { worker_connections 64; }
http {
    access_log %[1]s/access.log;
%[2]s    # Never buffer to temp files: as root, nginx's worker runs as nobody,
    # which cannot enter the test's temp dir.
    proxy_max_temp_file_size 0;
    client_body_buffer_size 64k;
    include %[1]s/keygate.conf;
}
`, dir, temps.String())
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startNginx runs nginx in the foreground until the test ends and returns
// its port.
func startNginx(t *testing.T, keygateAddr, appAddr string) int {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := renderNginxConf(t, dir, port, keygateAddr, appAddr)
	args := []string{"-e", filepath.Join(dir, "error.log"), "-p", dir + "/", "-c", conf}
	if out, err := exec.Command(bin, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t refuses the rendered snippet: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, append(args, "-g", "daemon off;")...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // fast shutdown; the master waits for its worker
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error.log:\n%s", log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return port
		}
		select {
		case err := <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %v\n%s\n%s", err, stderr.String(), log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not accept on port %d", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nginxClient is a browser-like client whose every connection goes to nginx.
func nginxClient(port int) *http.Client {
	jar, _ := cookiejar.New(nil)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return &http.Client{
		Jar: jar,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

func TestNginxAuthRequestSnippet(t *testing.T) {
	// nginx connects to keygate from loopback: it is the trusted proxy.
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}})
	keygateAddr := h.srv.Listener.Addr().String()
	appAddr := strings.TrimPrefix(h.up.srv.URL, "http://")
	port := startNginx(t, keygateAddr, appAddr)
	browser := nginxClient(port)
	const app = "http://app.example.com"

	// 1. Unauthenticated browser: redirected to the portal with rd = the URL.
	target := app + "/reports?q=1&x=a%20b"
	resp, body := h.do(browser, http.MethodGet, target, "")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("unauthenticated: %d %s", resp.StatusCode, body)
	}
	checkLoginURL(t, resp.Header.Get("Location"), target)
	if h.up.count() != 0 {
		t.Fatal("an unauthenticated request reached the app")
	}
	// The portal's page is reachable through nginx on the same host.
	resp, body = h.do(browser, http.MethodGet, resp.Header.Get("Location"), "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="password"`) {
		t.Fatalf("login page through nginx: %d %q", resp.StatusCode, body)
	}
	// An API client is told 401 with the login URL, not redirected.
	resp, body = h.do(nginxClient(port), http.MethodGet, app+"/api/items", "", setHeader("X-Requested-With", "XMLHttpRequest"))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("XHR: %d %s", resp.StatusCode, body)
	}
	lu, _ := decodeBody(t, body)["login_url"].(string)
	checkLoginURL(t, lu, app+"/api/items")

	// 2. Sign-in through nginx; the upstream then receives the identity
	// headers, and never what the client claims itself.
	payload, _ := json.Marshal(map[string]string{"username": testUser, "password": testPassword, "rd": target})
	resp, body = h.do(browser, http.MethodPost, app+"/.keygate/api/login", string(payload), setHeader("Content-Type", "application/json"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in through nginx: %d %s", resp.StatusCode, body)
	}
	if out := decodeBody(t, body); out["status"] != "ok" || out["redirect"] != target {
		t.Fatalf("sign-in answer %v", out)
	}
	ck := sessionCookie(resp)
	if ck == nil {
		t.Fatal("no session cookie through nginx")
	}
	browser.Jar.SetCookies(&url.URL{Scheme: "http", Host: "app.example.com"}, []*http.Cookie{{Name: "theme", Value: "dark"}})
	resp, body = h.do(browser, http.MethodGet, target, "",
		setHeader("Remote-User", "mallory"), setHeader("Remote-Groups", "root"), setHeader("Remote_User", "mallory"),
		setHeader("Remote-Factors", "webauthn"), setHeader("X-Original-URL", app+"/static/x"))
	if resp.StatusCode != http.StatusOK || body != "upstream:/reports" {
		t.Fatalf("signed in: %d %q", resp.StatusCode, body)
	}
	got := h.up.last(t)
	for k, v := range map[string]string{
		HeaderUser: testUser, HeaderEmail: "alice@example.com", HeaderGroups: "admins,dev",
		HeaderName: "Alice Example", HeaderFactors: "password",
	} {
		if vals := got.Header.Values(k); len(vals) != 1 || vals[0] != v {
			t.Errorf("upstream %s = %q, want exactly %q", k, vals, v)
		}
	}
	if v := got.Header.Values("Remote_User"); len(v) > 0 {
		t.Errorf("upstream received the client's Remote_User: %q", v)
	}
	if got.URL.RequestURI() != "/reports?q=1&x=a%20b" {
		t.Errorf("upstream URI %q", got.URL.RequestURI())
	}
	if ck := got.Header.Get("Cookie"); strings.Contains(ck, CookieName) || !strings.Contains(ck, "theme=dark") {
		t.Errorf("upstream Cookie %q: want the app's cookies without %s", ck, CookieName)
	}

	// The app gets its own cookies and never keygate's, wherever it stands.
	sid := CookieName + "=" + ck.Value
	for sent, want := range map[string]string{
		"a=1; " + sid + "; b=2": "a=1; b=2",
		sid:                     "",
		sid + "; a=1; " + CookieName + "=stale-session": "a=1",
	} {
		resp, body = h.do(nginxClient(port), http.MethodGet, app+"/reports", "", setHeader("Cookie", sent))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Cookie %q: %d %q", sent, resp.StatusCode, body)
		}
		if got := h.up.last(t).Header.Get("Cookie"); got != want {
			t.Errorf("Cookie %q reached the app as %q, want %q", sent, got, want)
		}
	}

	// A bypass path: anonymous, and a client-sent Remote-User is removed.
	n := h.up.count()
	resp, body = h.do(nginxClient(port), http.MethodGet, app+"/static/app.css", "", setHeader("Remote-User", "admin"))
	if resp.StatusCode != http.StatusOK || h.up.count() != n+1 {
		t.Fatalf("bypass: %d %q", resp.StatusCode, body)
	}
	if v := h.up.last(t).Header.Values(HeaderUser); len(v) > 0 {
		t.Fatalf("anonymous bypass: the upstream received Remote-User %q", v)
	}

	// 3. A deny rule gives 403 through nginx — also when the client tries to
	// have a bypass URL judged instead.
	n = h.up.count()
	for _, opts := range [][]reqOpt{
		nil,
		{setHeader("X-Original-URL", app+"/static/x"), setHeader("X-Original-Method", "GET")},
		{setHeader("X-Forwarded-Uri", "/static/x"), setHeader("X-Forwarded-Host", "app.example.com")},
	} {
		resp, _ = h.do(browser, http.MethodGet, app+"/closed/x", "", opts...)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("deny rule through nginx (%d spoofed headers): %d", len(opts), resp.StatusCode)
		}
	}
	if h.up.count() != n {
		t.Fatal("a denied request reached the app")
	}
	// A spoofed URL cannot open a protected path anonymously either.
	resp, _ = h.do(nginxClient(port), http.MethodGet, app+"/reports", "",
		setHeader("X-Forwarded-Uri", "/static/x"), setHeader("X-Forwarded-Host", "app.example.com"))
	if resp.StatusCode != http.StatusFound || h.up.count() != n {
		t.Fatalf("spoofed X-Forwarded-Uri: %d", resp.StatusCode)
	}

	// 4. After logout through nginx the app is closed again.
	resp, _ = h.do(browser, http.MethodPost, app+"/.keygate/api/logout", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logout through nginx: %d", resp.StatusCode)
	}
	if resp, _ = h.do(browser, http.MethodGet, target, ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("after logout: %d", resp.StatusCode)
	}
}
