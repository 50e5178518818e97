package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/web/nginxtest"
)

// A real nginx runs the round-robin snippet of docs/high-availability.md in
// front of several replicas. The snippet is read from the page, so the page
// and the tests cannot drift apart: only the replica addresses, the
// listener and the certificate lines are replaced.

// haDoc is the page whose nginx snippet the load-balancer tests run.
const haDoc = "../../docs/high-availability.md"

// lbOptions tunes startNginxLB.
type lbOptions struct {
	// Listen is nginx's loopback host:port; "" = a free port. Set it when
	// the replicas' configuration must name the address people use (the
	// WebAuthn origin) before nginx starts.
	Listen string
	// Pinned locations are sent to one backend only, ahead of the round
	// robin, with the same proxy settings as the snippet's "location /":
	// a test uses them to make a flow cross replicas on purpose.
	Pinned []lbPin
}

// lbPin sends what Location matches to Backend (host:port). Location is
// what follows nginx's "location" keyword, e.g.
// "= /.keygate/api/factors/webauthn/begin" or "^~ /.keygate/api/x/".
type lbPin struct {
	Location, Backend string
}

// nginxLB is a running nginx in front of replicas.
type nginxLB struct {
	Base string // http://localhost:PORT, what a browser opens
	Addr string // 127.0.0.1:PORT
	dir  string // prefix, logs, temp files
}

// lbHit is one line of the load balancer's access log.
type lbHit struct {
	Method, Path string
	Status       string
	// Upstream is the replica that answered (the last one nginx tried);
	// Tried lists every one in order, more than one when a replica was
	// skipped. Empty when nginx answered by itself.
	Upstream string
	Tried    []string
}

// startNginxLB runs nginx as a round-robin load balancer over backends
// (host:port each) until the test ends and returns its base URL
// (http://localhost:PORT).
func startNginxLB(t *testing.T, backends []string, opts lbOptions) string {
	t.Helper()
	return runNginxLB(t, backends, opts).Base
}

// runNginxLB is startNginxLB for tests that also read the access log.
func runNginxLB(t *testing.T, backends []string, opts lbOptions) *nginxLB {
	t.Helper()
	bin := nginxtest.Binary(t, "the load-balancer test")
	if len(backends) == 0 {
		t.Fatal("startNginxLB: no backends")
	}
	dir := t.TempDir()
	addr := opts.Listen
	if addr == "" {
		addr = freeAddr(t)
	}
	port := addr[strings.LastIndex(addr, ":")+1:]
	site, err := renderLBSnippet(haSnippet(t), addr, backends, opts.Pinned)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "site.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	temps := nginxtest.TempPaths(dir)
	// The access log names the replica that answered each request
	// ($upstream_addr), which is how the tests prove requests spread.
	conf := fmt.Sprintf(`worker_processes 1;
error_log %[1]s/error.log info;
pid %[1]s/nginx.pid;
events { worker_connections 256; }
http {
    log_format lb '$request_method|$uri|$status|$upstream_addr';
    access_log %[1]s/access.log lb;
%[2]s    # Never buffer to temp files: as root, nginx's worker runs as nobody,
    # which cannot enter the test's temp dir.
    proxy_max_temp_file_size 0;
    client_body_buffer_size 64k;
    include %[1]s/site.conf;
}
`, dir, temps)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-e", filepath.Join(dir, "error.log"), "-p", dir + "/", "-c", confPath}
	if out, err := exec.Command(bin, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t refuses the rendered snippet of %s: %v\n%s\n%s", haDoc, err, out, site)
	}
	cmd := exec.Command(bin, append(args, "-g", "daemon off;")...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", out.String(), tail(string(log), 40))
		}
		_ = cmd.Process.Signal(syscall.SIGTERM) // fast shutdown
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	if err := nginxtest.WaitAccept(addr, done, 15*time.Second); err != nil {
		t.Fatalf("nginx: %v\n%s", err, out.String())
	}
	return &nginxLB{Base: "http://localhost:" + port, Addr: addr, dir: dir}
}

// hits reads the access log so far. nginx writes each line when the
// request ends, unbuffered.
func (lb *nginxLB) hits(t *testing.T) []lbHit {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(lb.dir, "access.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []lbHit
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		f := strings.SplitN(line, "|", 4)
		if len(f) != 4 {
			continue
		}
		h := lbHit{Method: f[0], Path: f[1], Status: f[2]}
		if f[3] != "-" && f[3] != "" {
			// "a, b" when nginx went on to the next replica; "a : b" when
			// an internal redirect went to another upstream.
			h.Tried = upstreamSep.Split(f[3], -1)
			h.Upstream = h.Tried[len(h.Tried)-1]
		}
		out = append(out, h)
	}
	return out
}

// hitsSince waits (up to 5 s) until the access log has at least want
// lines after the first mark ones, and returns those lines. nginx logs a
// request just after answering it, so a test that has its answer may not
// see the line at once.
func (lb *nginxLB) hitsSince(t *testing.T, mark, want int) []lbHit {
	t.Helper()
	var hs []lbHit
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if hs = lb.hits(t); len(hs) >= mark+want {
			return hs[mark:]
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log: %d lines after %d, want %d: %+v", len(hs)-mark, mark, want, hs[min(mark, len(hs)):])
		}
	}
}

// upstreamSep separates the replicas nginx tried in $upstream_addr.
var upstreamSep = regexp.MustCompile(`\s*[,:]\s+`)

// haSnippet is the one nginx block of docs/high-availability.md.
func haSnippet(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(haDoc)
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```nginx\n(.*?)```").FindAllStringSubmatch(string(raw), -1)
	if len(blocks) != 1 {
		t.Fatalf("%s: %d nginx blocks, the load-balancer tests expect exactly one", haDoc, len(blocks))
	}
	return blocks[0][1]
}

// The parts of the documented snippet the tests replace.
const (
	haUpstreamServers = "    server 10.0.0.11:9091;\n    server 10.0.0.12:9091;\n    server 10.0.0.13:9091;\n"
	haListen          = "    listen 443 ssl;\n"
	haCert            = "    ssl_certificate     /etc/ssl/app.example.com.pem;\n"
	haCertKey         = "    ssl_certificate_key /etc/ssl/app.example.com.key;\n"
	haServerName      = "    server_name app.example.com;\n"
	haRootLocation    = "    location / {\n"
	haProxyPass       = "        proxy_pass http://keygate;\n"
)

// renderLBSnippet makes the documented snippet run on loopback: plain HTTP
// on listen (host:port), any server name, backends instead of the example
// addresses, and the pinned locations (each its own one-server upstream,
// with the body of "location /") ahead of "location /".
func renderLBSnippet(snippet, listen string, backends []string, pins []lbPin) (string, error) {
	var servers strings.Builder
	for _, b := range backends {
		fmt.Fprintf(&servers, "    server %s;\n", b)
	}
	repl := []struct{ old, new string }{
		{haUpstreamServers, servers.String()},
		{haListen, "    listen " + listen + ";\n"},
		{haCert, ""},
		{haCertKey, ""},
		{haServerName, "    server_name _;\n"},
	}
	for _, r := range repl {
		if n := strings.Count(snippet, r.old); n != 1 {
			return "", fmt.Errorf("%s: %q found %d times, want once: the test's templating and the page disagree", haDoc, r.old, n)
		}
		snippet = strings.Replace(snippet, r.old, r.new, 1)
	}
	if len(pins) == 0 {
		return snippet, nil
	}
	// The body of "location /", up to its closing brace.
	start := strings.Index(snippet, haRootLocation)
	if start < 0 || strings.Count(snippet, haRootLocation) != 1 {
		return "", fmt.Errorf("%s: %q must appear once to pin locations", haDoc, haRootLocation)
	}
	rest := snippet[start+len(haRootLocation):]
	end := strings.Index(rest, "\n    }\n")
	if end < 0 {
		return "", fmt.Errorf("%s: no closing brace for %q", haDoc, haRootLocation)
	}
	body := rest[:end+1]
	if strings.Count(body, haProxyPass) != 1 {
		return "", fmt.Errorf("%s: %q must appear once in \"location /\"", haDoc, haProxyPass)
	}
	var upstreams, locations strings.Builder
	for i, p := range pins {
		if p.Location == "" || p.Backend == "" || strings.ContainsAny(p.Location+p.Backend, "{};\n") {
			return "", fmt.Errorf("pin %d: bad location %q or backend %q", i, p.Location, p.Backend)
		}
		fmt.Fprintf(&upstreams, "upstream keygate_pin%d {\n    server %s;\n    keepalive 4;\n}\n", i, p.Backend)
		fmt.Fprintf(&locations, "    location %s {\n%s    }\n", p.Location,
			strings.Replace(body, haProxyPass, fmt.Sprintf("        proxy_pass http://keygate_pin%d;\n", i), 1))
	}
	snippet = strings.Replace(snippet, haRootLocation, locations.String()+haRootLocation, 1)
	return upstreams.String() + snippet, nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// The load balancer spreads requests round robin over its backends, skips
// one that refuses connections, and sends pinned locations to their
// backend only.
func TestReplicasNginxLB(t *testing.T) {
	var backends []string
	for i := range 3 {
		backends = append(backends, startEcho(t, fmt.Sprintf("b%d", i)))
	}
	dead := freeAddr(t) // nobody listens: refused
	lb := runNginxLB(t, append(backends, dead), lbOptions{Pinned: []lbPin{
		{Location: "= /pinned", Backend: backends[2]},
	}})
	seen := map[string]int{}
	for range 12 {
		st, body := getWithCookie(t, lb.Base+"/x", nil)
		if st != http.StatusOK {
			t.Fatalf("through the LB: %d %q", st, body)
		}
		seen[body]++
	}
	for i := range 3 {
		// Four backends in the ring, one dead: its turns go to the next.
		if n := seen[fmt.Sprintf("b%d /x", i)]; n < 3 {
			t.Errorf("backend %d answered %d of 12 requests, want at least 3: %v", i, n, seen)
		}
	}
	for range 4 {
		if st, body := getWithCookie(t, lb.Base+"/pinned", nil); st != http.StatusOK || body != "b2 /pinned" {
			t.Fatalf("pinned location: %d %q, want b2's answer", st, body)
		}
	}
	var upstreams, skipped int
	for _, h := range lb.hitsSince(t, 0, 16) {
		if h.Path == "/pinned" && h.Upstream != backends[2] {
			t.Errorf("access log: /pinned answered by %q", h.Upstream)
		}
		if h.Upstream != "" {
			upstreams++
		}
		if len(h.Tried) > 1 && h.Tried[0] == dead {
			skipped++
		}
	}
	if upstreams != 16 || skipped == 0 {
		t.Errorf("access log: %d lines naming a replica (want 16), %d skipping the dead one (want > 0)", upstreams, skipped)
	}

	// A dead replica first in the ring: every request still answered.
	only := startNginxLB(t, []string{dead, backends[0]}, lbOptions{})
	for range 4 {
		if st, body := getWithCookie(t, only+"/y", nil); st != http.StatusOK || body != "b0 /y" {
			t.Fatalf("past a dead replica: %d %q", st, body)
		}
	}

	// Bad pins are refused before nginx starts.
	if _, err := renderLBSnippet(haSnippet(t), "127.0.0.1:1", backends, []lbPin{{Location: "/x { }", Backend: backends[0]}}); err == nil {
		t.Error("a pin with braces was accepted")
	}
}

// startEcho is an HTTP server answering "name path".
func startEcho(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}
