package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
)

// The real binary: `keygate dev seed` fills a store, `keygate serve` serves
// /metrics on metrics.listen, and the counters move with sign-ins and
// proxied requests; the access line carries the ID the upstream got.
func TestServeMetricsAccessLogAndDevSeed(t *testing.T) {
	gotID := make(chan string, 8)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotID <- r.Header.Get("X-Request-Id")
		fmt.Fprint(w, "app")
	}))
	defer up.Close()

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "storage.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	cfgFile := filepath.Join(dir, "keygate.yaml")
	cfg := fmt.Sprintf(`server:
  listen: %q
  gogc: 300
  memory_limit: 256MiB
storage:
  path: %q
  encryption_key_file: %q
metrics:
  listen: %q
log:
  access: true
upstreams:
  - host: localhost
    url: %s
policy:
  default: two_factor
`, addr, filepath.Join(dir, "data"), keyFile, metricsAddr, up.URL)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cookieFile := filepath.Join(dir, "cookie")
	if out, errOut, rc := run(t, "", "dev", "seed", "--users", "20", "--sessions", "5", "--session-out", cookieFile, "--config", cfgFile); rc != 0 {
		t.Fatalf("dev seed: rc=%d %s %s", rc, out, errOut)
	}
	if _, errOut, rc := run(t, "", "dev", "seed", "--users", "1", "--config", cfgFile); rc == 0 || !strings.Contains(errOut, "--force") {
		t.Fatalf("seeding a seeded directory again: rc=%d %s", rc, errOut)
	}
	raw, err := os.ReadFile(cookieFile)
	if err != nil {
		t.Fatal(err)
	}
	cookie := strings.TrimSpace(string(raw))

	cmd := exec.Command(keygateBin(t), "serve", "--config", cfgFile)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()
	waitFor(t, "keygate to serve", func() bool { return strings.Contains(stderr.String(), "keygate is serving") })
	base := "http://" + addr

	scrape := func() string {
		t.Helper()
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/metrics: %d", resp.StatusCode)
		}
		return string(b)
	}
	before := scrape()
	for _, family := range []string{
		"keygate_requests_total", "keygate_upstream_duration_seconds", "keygate_sign_ins_total", "keygate_second_factor_total",
		"keygate_lockouts_total", "keygate_emails_total", "keygate_sessions_active 5", "keygate_policy_version 1",
		`keygate_store_size_bytes{part="lsm"}`, `keygate_store_size_bytes{part="vlog"}`, "keygate_build_info",
		"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes",
	} {
		if !strings.Contains(before, family) {
			t.Errorf("/metrics lacks %s", family)
		}
	}
	// The gateway does not serve the metrics.
	if resp, err := http.Get(base + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("/metrics answered on the gateway's own address")
		}
	}

	// A sign-in with a seeded user moves the sign-in counter.
	body, _ := json.Marshal(map[string]string{"username": "user000003", "password": SeedPassword})
	resp, err := http.Post(base+"/.keygate/api/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in as a seeded user: %d", resp.StatusCode)
	}
	// The seeded two-factor session passes a two_factor policy.
	req, _ := http.NewRequest(http.MethodGet, base+"/page?code=999111", nil)
	req.Host = "localhost"
	req.Header.Set("Cookie", "keygate_session="+cookie)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("seeded two-factor session through the proxy: %d", resp.StatusCode)
	}
	id := <-gotID

	after := scrape()
	for _, want := range []string{
		`keygate_sign_ins_total{factor="password",outcome="success"} 1`,
		`keygate_requests_total{decision="allow",host="localhost"} 1`,
		`keygate_upstream_duration_seconds_count{host="localhost"} 1`,
		"keygate_sessions_active 6",
	} {
		if !strings.Contains(after, want) {
			t.Errorf("after a sign-in and a request, /metrics lacks %q", want)
		}
	}

	// SIGTERM flushes the buffered access lines.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("keygate did not exit")
	}
	line := regexp.MustCompile(`(?m)^.*msg=access id=` + regexp.QuoteMeta(id) + ` .*$`).FindString(stderr.String())
	if line == "" || !strings.Contains(line, "path=/page ") || !strings.Contains(line, "user=user000000") || !strings.Contains(line, "decision=allow") {
		t.Errorf("no access line for request %s:\n%s", id, stderr.String())
	}
	if strings.Contains(stderr.String(), "999111") || strings.Contains(stderr.String(), cookie) {
		t.Error("the log holds a query string or a session cookie")
	}
}
