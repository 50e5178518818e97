//go:build interop

package web

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A real Traefik v2 runs the shipped examples/traefik/dynamic.yml in front
// of the harness and must pass the checks every snippet passes
// (checkFrontProxy). Traefik is a large build, so this runs only with
// `make interop` (build tag interop), which builds it and names the binary
// in KEYGATE_TRAEFIK.

const traefikSnippet = "../examples/traefik/dynamic.yml"

func TestTraefikForwardAuthSnippet(t *testing.T) {
	bin := os.Getenv("KEYGATE_TRAEFIK")
	if bin == "" {
		t.Fatal("KEYGATE_TRAEFIK must name a Traefik v2 binary (make interop builds one)")
	}
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}, policyYAML: frontProxyPolicy})
	dir := t.TempDir()
	port := freePort(t)

	raw, err := os.ReadFile(traefikSnippet)
	if err != nil {
		t.Fatal(err)
	}
	dyn := string(raw)
	var hosts []string
	for _, name := range frontProxyHosts {
		hosts = append(hosts, "`"+name+"`")
	}
	keygate := "http://" + h.srv.Listener.Addr().String()
	for old, repl := range map[string]string{
		"Host(`app.example.com`)":  "Host(" + strings.Join(hosts, ", ") + ")",
		"entryPoints: [websecure]": "entryPoints: [web]",
		"tls: {}":                  "",
		"http://127.0.0.1:9091":    keygate,
		"http://127.0.0.1:8080":    h.up.srv.URL,
	} {
		if !strings.Contains(dyn, old) {
			t.Fatalf("%s lacks %q; the test's templating and the snippet disagree", traefikSnippet, old)
		}
		dyn = strings.ReplaceAll(dyn, old, repl)
	}
	dynPath := filepath.Join(dir, "dynamic.yml")
	static := fmt.Sprintf(`entryPoints:
  web:
    address: "127.0.0.1:%d"
providers:
  file:
    filename: %q
log:
  level: INFO
`, port, dynPath)
	staticPath := filepath.Join(dir, "traefik.yml")
	for p, c := range map[string]string{dynPath: dyn, staticPath: static} {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "--configFile="+staticPath)
	cmd.Dir = dir
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	runServer(t, cmd, "traefik", addr, nil)
	// Traefik loads the file provider after it listens: wait until a
	// protected host answers with keygate's redirect, not Traefik's 404.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if st, _ := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n"); st == 302 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("traefik never routed app.example.com to keygate")
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkFrontProxy(t, h, addr)
}
