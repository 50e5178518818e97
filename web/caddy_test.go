package web

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A real Caddy runs the shipped examples/caddy/Caddyfile in front of the
// harness, with only its addresses replaced, and must pass the same checks
// as the nginx snippet (checkFrontProxy).

const caddySnippet = "../examples/caddy/Caddyfile"

// caddyBinary finds caddy ($(go env GOPATH)/bin/caddy, where .ci/run's go
// install puts it, or PATH), or fails in CI and skips loudly elsewhere.
func caddyBinary(t *testing.T) string {
	t.Helper()
	var candidates []string
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			candidates = append(candidates, filepath.Join(dir, "bin", "caddy"))
		}
	}
	if p, err := exec.LookPath("caddy"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("caddy missing: .ci/run installs it (go install github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9)")
	}
	t.Skip("SKIPPED: caddy is not installed (go install github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9); the Caddy forward-auth test did not run")
	return ""
}

// renderCaddyfile writes the shipped Caddyfile with the test's addresses:
// the protected site on every name in hosts, the catch-all on the same
// port, keygate's and the app's addresses. A global block keeps Caddy off
// the admin port, the network and the home directory.
func renderCaddyfile(t *testing.T, dir string, port int, keygateAddr, appAddr string, hosts []string) string {
	t.Helper()
	raw, err := os.ReadFile(caddySnippet)
	if err != nil {
		t.Fatal(err)
	}
	snippet := string(raw)
	var sites []string
	for _, h := range hosts {
		sites = append(sites, fmt.Sprintf("http://%s:%d", h, port))
	}
	for old, repl := range map[string]string{
		"\napp.example.com {":          "\n" + strings.Join(sites, ", ") + " {",
		"\nhttp:// {":                  fmt.Sprintf("\nhttp://:%d {", port),
		"reverse_proxy 127.0.0.1:8080": "reverse_proxy " + appAddr,
	} {
		if strings.Count(snippet, old) != 1 {
			t.Fatalf("%s: expected %q exactly once; the test's templating and the snippet disagree", caddySnippet, old)
		}
		snippet = strings.Replace(snippet, old, repl, 1)
	}
	if n := strings.Count(snippet, "127.0.0.1:9091"); n != 2 {
		t.Fatalf("%s: expected keygate's address twice, found %d", caddySnippet, n)
	}
	snippet = strings.ReplaceAll(snippet, "127.0.0.1:9091", keygateAddr)
	global := "{\n\tadmin off\n\tauto_https off\n\tpersist_config off\n\tstorage file_system " + filepath.Join(dir, "data") + "\n}\n\n"
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(global+snippet), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startCaddy runs caddy until the test ends and returns its address.
func startCaddy(t *testing.T, keygateAddr, appAddr string, hosts []string) string {
	t.Helper()
	bin := caddyBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	conf := renderCaddyfile(t, dir, port, keygateAddr, appAddr, hosts)
	env := append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	validate := exec.Command(bin, "validate", "--adapter", "caddyfile", "--config", conf)
	validate.Env = env
	if out, err := validate.CombinedOutput(); err != nil {
		t.Fatalf("caddy validate refuses the rendered Caddyfile: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "run", "--adapter", "caddyfile", "--config", conf)
	cmd.Env = env
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	runServer(t, cmd, "caddy", addr, nil)
	return addr
}

func TestCaddyForwardAuthSnippet(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}, policyYAML: frontProxyPolicy})
	addr := startCaddy(t, h.srv.Listener.Addr().String(), strings.TrimPrefix(h.up.srv.URL, "http://"), frontProxyHosts)

	// The flow a browser goes through: redirected to the portal on the
	// same host, signed in there, then let through with identity.
	st, body := rawExchange(t, addr, "GET /reports?q=1 HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n")
	if st != http.StatusFound {
		t.Fatalf("anonymous: %d %s", st, body)
	}
	checkFrontProxy(t, h, addr)

	t.Run("h2c upgrade refused", func(t *testing.T) {
		n := h.up.count()
		st, body := rawExchange(t, addr, "GET /static/x HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\n"+
			"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
		if st != http.StatusBadRequest || h.up.count() != n {
			t.Fatalf("h2c upgrade: %d %s", st, body)
		}
	})
}
