package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

	"github.com/keygate/keygate/web/nginxtest"
)

// A real nginx (Debian's) runs the shipped examples/nginx/keygate.conf in
// front of the harness: keygate on loopback answers the auth subrequests and
// serves the portal, the harness's recorder is the app. Only the listen port
// and the two upstream addresses of the snippet are replaced.

const nginxSnippet = "../examples/nginx/keygate.conf"

// renderNginxConf puts the shipped snippet into a complete nginx.conf whose
// every path is under dir.
func renderNginxConf(t *testing.T, dir string, port int, keygateAddr, appAddr string, serverNames ...string) string {
	t.Helper()
	raw, err := os.ReadFile(nginxSnippet)
	if err != nil {
		t.Fatal(err)
	}
	snippet := string(raw)
	repl := map[string]string{
		"listen 80;":                fmt.Sprintf("listen 127.0.0.1:%d;", port),
		"listen 80 default_server;": fmt.Sprintf("listen 127.0.0.1:%d default_server;", port),
		"server 127.0.0.1:9091;":    "server " + keygateAddr + ";",
		"server 127.0.0.1:8080;":    "server " + appAddr + ";",
	}
	if len(serverNames) > 0 {
		repl["server_name app.example.com;"] = "server_name " + strings.Join(serverNames, " ") + ";"
	}
	for old, repl := range repl {
		if strings.Count(snippet, old) != 1 {
			t.Fatalf("%s: expected %q exactly once; the test's templating and the snippet disagree", nginxSnippet, old)
		}
		snippet = strings.Replace(snippet, old, repl, 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "keygate.conf"), []byte(snippet), 0o644); err != nil {
		t.Fatal(err)
	}
	temps := nginxtest.TempPaths(dir)
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
`, dir, temps)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startNginx runs nginx in the foreground until the test ends and returns
// its port.
func startNginx(t *testing.T, keygateAddr, appAddr string, serverNames ...string) int {
	t.Helper()
	bin := nginxtest.Binary(t, "the nginx integration test")
	dir := t.TempDir()
	port := freePort(t)
	conf := renderNginxConf(t, dir, port, keygateAddr, appAddr, serverNames...)
	args := []string{"-e", filepath.Join(dir, "error.log"), "-p", dir + "/", "-c", conf}
	if out, err := exec.Command(bin, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t refuses the rendered snippet: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, append(args, "-g", "daemon off;")...)
	runServer(t, cmd, "nginx", fmt.Sprintf("127.0.0.1:%d", port), func() string {
		// The tail only: the path batteries make nginx log a line per
		// refused request.
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		lines := strings.Split(strings.TrimSpace(string(log)), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		return "error.log, last lines:\n" + strings.Join(lines, "\n")
	})
	return port
}

// runServer starts a server process for the rest of the test and returns
// once it accepts on addr. On failure the test log gets its output and
// what moreLog says (nil = nothing more).
func runServer(t *testing.T, cmd *exec.Cmd, name, addr string, moreLog func() string) {
	t.Helper()
	var out syncBuffer // written by exec's copying goroutine
	cmd.Stdout, cmd.Stderr = &out, &out
	done, err := startUntilCleanup(t, cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			more := ""
			if moreLog != nil {
				more = moreLog()
			}
			t.Logf("%s output:\n%s\n%s", name, out.String(), more)
		}
	})
	if err := nginxtest.WaitAccept(addr, done, 15*time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out.String())
	}
}

// startUntilCleanup starts cmd and stops it when the test ends: SIGTERM,
// then a kill after 10 s. The channel is closed when the process exits.
// (Cleanups run last-registered first, so a log cleanup registered after
// this one still sees the process running.)
func startUntilCleanup(t *testing.T, cmd *exec.Cmd) (<-chan struct{}, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return done, nil
}

// freePort is a loopback port nobody listens on right now, for a server
// the test starts as another process.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
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

// frontProxyPolicy is the policy of the front-proxy checks: the harness's
// usual rules plus a bypass host and a two-factor host, both served by the
// proxy's one protected site.
const frontProxyPolicy = `
default: two_factor
rules:
  - name: open-host
    hosts: [bypass.example.test]
    action: bypass
  - name: two-host
    hosts: [two.example.test]
    action: two_factor
  - name: public
    hosts: [app.example.com]
    paths: ["/static/*"]
    action: bypass
  - name: app
    hosts: [app.example.com]
    action: one_factor
`

// frontProxyHosts are the names the proxy's protected site answers to.
var frontProxyHosts = []string{"app.example.com", "bypass.example.test", "two.example.test"}

// rawExchange sends one raw HTTP/1.1 request (so that nothing normalises
// the request line) and returns the status code and body.
func rawExchange(t *testing.T, addr, req string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		// A proxy may close the connection without an answer (nginx 444):
		// that is a refusal too.
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// checkFrontProxy runs the checks every shipped forward-auth snippet must
// pass, through the real proxy listening on addr in front of h (policy
// frontProxyPolicy): the URL judged is the one routed, unknown hosts are
// refused, clients cannot ask the authz endpoint, and the app sees neither
// keygate's cookies nor an empty Cookie header nor any header that re-routes,
// re-methods or re-addresses the request.
func checkFrontProxy(t *testing.T, h *harness, addr string) {
	n := h.up.count()
	reached := func(t *testing.T, what string) {
		t.Helper()
		if h.up.count() != n {
			t.Errorf("%s reached the app: %s", what, h.up.last(t).URL)
			n = h.up.count()
		}
	}
	// Sanity: the two hosts are judged by their own rules.
	if st, body := rawExchange(t, addr, "GET /secret HTTP/1.1\r\nHost: bypass.example.test\r\nConnection: close\r\n\r\n"); st != http.StatusOK {
		t.Fatalf("bypass host: %d %s", st, body)
	}
	n = h.up.count()
	if st, body := rawExchange(t, addr, "GET /secret HTTP/1.1\r\nHost: two.example.test\r\nConnection: close\r\n\r\n"); st == http.StatusOK {
		t.Fatalf("two-factor host, anonymous: %d %s", st, body)
	}
	reached(t, "an anonymous request for the two-factor host")

	t.Run("absolute-form request line", func(t *testing.T) {
		// The proxy routes by the request line's host; a Host header of the
		// bypass host must not get it judged as that.
		for _, req := range []string{
			"GET http://two.example.test/secret HTTP/1.1\r\nHost: bypass.example.test\r\nConnection: close\r\n\r\n",
			"GET http://two.example.test/secret HTTP/1.1\r\nHost: BYPASS.example.test\r\nConnection: close\r\n\r\n",
			"GET http://two.example.test/secret HTTP/1.1\r\nHost: two.example.test\r\nConnection: close\r\n\r\n",
			"GET http://TWO.example.test/secret HTTP/1.1\r\nHost: bypass.example.test\r\nConnection: close\r\n\r\n",
		} {
			st, body := rawExchange(t, addr, req)
			if st == http.StatusOK {
				t.Errorf("%q: 200 %s", strings.SplitN(req, "\r\n", 3)[:2], body)
			}
			reached(t, fmt.Sprintf("%q", req))
		}
	})

	t.Run("unknown host", func(t *testing.T) {
		for _, host := range []string{"unknown.example.test", "new.example.com", "127.0.0.1"} {
			st, body := rawExchange(t, addr, "GET /secret HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n")
			if st == http.StatusOK || st == http.StatusFound {
				t.Errorf("Host %s: %d %s, want a refusal", host, st, body)
			}
			reached(t, "Host "+host)
		}
	})

	t.Run("clients cannot ask the authz endpoint", func(t *testing.T) {
		// A bypass URL to have judged, from a client with a session: what
		// the proxy's own subrequest would send.
		for _, p := range []string{"/.keygate/api/authz", "/.keygate/api/authz?x=1", "/.keygate//api/authz", "/.keygate/api/authz/",
			"/.keygate/api/%61uthz", "/.keygate/./api/authz", "/.keygate/api/../api/authz", "/.KEYGATE/api/authz"} {
			for _, host := range []string{"app.example.com", "bypass.example.test"} {
				st, body := rawExchange(t, addr, "GET "+p+" HTTP/1.1\r\nHost: "+host+"\r\nX-Original-URL: http://app.example.com/static/x\r\n"+
					"X-Forwarded-Uri: /static/x\r\nX-Forwarded-Host: app.example.com\r\nX-Forwarded-Method: GET\r\nConnection: close\r\n\r\n")
				// keygate's authz answers 200 with an empty body, or names
				// the headers it read; the app's answers start "upstream:"
				// (fine on the bypass host, which sends every path there).
				fromAuthz := st == http.StatusOK && !strings.HasPrefix(body, "upstream:") ||
					strings.Contains(body, "original_url") || strings.Contains(body, "forwarded_headers") || strings.Contains(body, "conflicting_headers")
				if fromAuthz {
					t.Errorf("%s on %s: the client reached keygate's authz: %d %s", p, host, st, body)
				}
				if strings.HasPrefix(body, "upstream:") && host != "bypass.example.test" {
					t.Errorf("%s on %s: an anonymous request reached the app: %s", p, host, body)
				}
			}
		}
		n = h.up.count()
	})

	t.Run("what the app receives", func(t *testing.T) {
		c := h.client()
		h.login(c, testUser, testPassword, "")
		var sid string
		for _, ck := range c.Jar.Cookies(&url.URL{Scheme: "http", Host: "app.example.com"}) {
			if ck.Name == CookieName {
				sid = CookieName + "=" + ck.Value
			}
		}
		if sid == "" {
			t.Fatal("no session")
		}
		spoof := "X-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\n" +
			"X-Method-Override: DELETE\r\nTrue-Client-IP: 10.0.0.1\r\nX-Client-IP: 10.0.0.1\r\nCF-Connecting-IP: 10.0.0.1\r\n" +
			"X-Real-IP: 10.0.0.1\r\nForwarded: for=10.0.0.1;host=admin.example.com\r\nRemote-User: mallory\r\n"
		for _, tc := range []struct {
			name, host, cookies, want string // want "" = no Cookie header at all
		}{
			{"signed in, app cookies kept", "app.example.com", "theme=dark; " + sid + "; keygate_device=d; __Host-keygate_session=x; lang=ru", "theme=dark; lang=ru"},
			{"signed in, only keygate's", "app.example.com", sid + "; keygate_factor=totp", ""},
			{"bypass, only a stale keygate cookie", "bypass.example.test", "keygate_session=stale", ""},
			{"bypass, no cookies", "bypass.example.test", "", ""},
		} {
			before := h.up.count()
			ck := ""
			if tc.cookies != "" {
				ck = "Cookie: " + tc.cookies + "\r\n"
			}
			st, body := rawExchange(t, addr, "GET /page?q=1 HTTP/1.1\r\nHost: "+tc.host+"\r\n"+ck+spoof+"Connection: close\r\n\r\n")
			if st != http.StatusOK || h.up.count() != before+1 {
				t.Fatalf("%s: %d %s", tc.name, st, body)
			}
			got := h.up.last(t)
			if v, ok := got.Header["Cookie"]; tc.want == "" && ok || tc.want != "" && (len(v) != 1 || v[0] != tc.want) {
				t.Errorf("%s: the app's Cookie %q (present %v), want %q", tc.name, v, ok, tc.want)
			}
			if got.Method != http.MethodGet || got.URL.Path != "/page" {
				t.Errorf("%s: the app saw %s %s", tc.name, got.Method, got.URL.Path)
			}
			for _, k := range []string{"X-Original-Url", "X-Rewrite-Url", "X-Http-Method-Override", "X-Http-Method", "X-Method-Override",
				"True-Client-Ip", "X-Client-Ip", "Cf-Connecting-Ip", "Forwarded"} {
				if v, ok := got.Header[k]; ok {
					t.Errorf("%s: the app received %s %q", tc.name, k, v)
				}
			}
			if v := got.Header.Values("X-Real-Ip"); len(v) > 1 || len(v) == 1 && v[0] != "127.0.0.1" {
				t.Errorf("%s: X-Real-IP %q, want the proxy's own 127.0.0.1 or none", tc.name, v)
			}
			wantUser := ""
			if tc.host == "app.example.com" {
				wantUser = testUser
			}
			if v := got.Header.Values(HeaderUser); wantUser == "" && len(v) > 0 || wantUser != "" && (len(v) != 1 || v[0] != wantUser) {
				t.Errorf("%s: Remote-User %q, want %q", tc.name, v, wantUser)
			}
		}
	})
}

func TestNginxJudgesTheRoutedRequest(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}, policyYAML: frontProxyPolicy})
	port := startNginx(t, h.srv.Listener.Addr().String(), strings.TrimPrefix(h.up.srv.URL, "http://"), frontProxyHosts...)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	checkFrontProxy(t, h, addr)

	// A long URL still gets the sign-in redirect, not nginx's 500: the
	// login URL in keygate's Location holds the request's URL encoded
	// (each "/" three bytes), more than nginx's default header buffer.
	for _, n := range []int{100, 3000, 7000} {
		target := "/two" + strings.Repeat("/", n) + "x"
		st, body := rawExchange(t, addr, "GET "+target+" HTTP/1.1\r\nHost: two.example.test\r\nConnection: close\r\n\r\n")
		if st != http.StatusFound {
			t.Errorf("%d slashes: %d %.200s, want the 302 to sign-in", n, st, body)
		}
	}
}
