package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// keygate demo serves only loopback addresses: its password is public.
func TestDemoRefusesNonLoopbackListen(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:9091"} {
		data := filepath.Join(t.TempDir(), "data")
		_, errOut, rc := run(t, "", "demo", "--listen", addr, "--data", data)
		if rc == 0 || !strings.Contains(errOut, "loopback") {
			t.Errorf("demo --listen %s: rc=%d %q; want a refusal naming loopback", addr, rc, errOut)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Errorf("demo --listen %s created its data directory before refusing", addr)
		}
	}
}

// procStatus reads a kB figure (VmRSS, VmHWM) of a process.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// The real binary with TLS and JSON logs, production argon2 parameters
// (64 MiB, 4 concurrent hashes) and the default memory limit:
//   - HTTP/2 is offered on the TLS listener;
//   - net/http's own errors (a TLS handshake error) reach the JSON log;
//   - 200 concurrent sign-ins with wrong passwords, each from its own
//     address (so every one is hashed: the worst case for memory), keep
//     RSS within the documented bound (docs/operations.md).
func TestServeTLSHTTP2ErrorLogAndMemoryBound(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") }))
	defer up.Close()
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir, "tls", 1)
	addr := freeAddr(t)
	cfgFile := filepath.Join(dir, "keygate.yaml")
	yml := fmt.Sprintf(`server:
  listen: %q
  trusted_proxies: ["127.0.0.1"]
  tls:
    cert_file: %q
    key_file: %q
storage:
  path: %q
log:
  format: json
  access: false
policy:
  default: bypass
upstreams:
  - host: localhost
    url: %s
`, addr, certFile, keyFile, filepath.Join(dir, "data"), up.URL)
	if err := os.WriteFile(cfgFile, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(keygateBin(t), "serve", "--config", cfgFile)
	cmd.Env = slicesWithout(os.Environ(), "GOMEMLIMIT=", "GOGC=")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitFor(t, "keygate to serve", func() bool { return strings.Contains(stderr.String(), "keygate is serving") })

	// HTTP/2.
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}, ForceAttemptHTTP2: true} //nolint:gosec // self-signed test certificate
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	resp, err := hc.Get("https://" + addr + "/.keygate/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("TLS listener answered over %s, want HTTP/2", resp.Proto)
	}

	// A plain-HTTP request to the TLS port: net/http logs a handshake
	// error, which must come out as a JSON line of the app's log.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
	_, _ = io.ReadAll(c)
	c.Close()
	waitFor(t, "the handshake error in the log", func() bool { return strings.Contains(stderr.String(), "TLS handshake error") })
	for line := range strings.SplitSeq(stderr.String(), "\n") {
		if strings.Contains(line, "TLS handshake error") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["level"] != "WARN" {
				t.Fatalf("net/http's error log is not a JSON log line at WARN: %q (%v)", line, err)
			}
		}
	}
	if !strings.Contains(stderr.String(), `"memory_limit":"416MiB"`) {
		t.Fatalf("default memory limit not applied or not logged:\n%s", stderr.String())
	}

	// Memory under 200 concurrent wrong passwords.
	pid := cmd.Process.Pid
	idle := procStatus(t, pid, "VmRSS")
	var wg sync.WaitGroup
	codes := make([]int, 200)
	start := time.Now()
	for i := range 200 {
		wg.Go(func() {
			body := fmt.Sprintf(`{"username":"guess%d","password":"not-the-password-%d"}`, i, i)
			req, _ := http.NewRequest(http.MethodPost, "https://"+addr+"/.keygate/api/login", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.9.%d.%d", i/250, i%250+1))
			resp, err := hc.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	var peakRSS int64
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(20 * time.Millisecond):
			peakRSS = max(peakRSS, procStatus(t, pid, "VmRSS"))
		}
	}
	took := time.Since(start)
	hwm := procStatus(t, pid, "VmHWM")
	for i, code := range codes {
		if code != http.StatusUnauthorized {
			t.Fatalf("sign-in %d: %d, want 401", i, code)
		}
	}
	// The documented bound (docs/operations.md): the default memory limit
	// (160 MiB baseline + 4 × 64 MiB of hashing) plus 128 MiB for what the
	// limit does not govern (Badger's maps, freed pages not yet returned)
	// and a soft limit's overshoot while the collector runs behind four
	// fresh 64 MiB argon2 areas. 420 MiB here, 481 measured on a CI machine.
	const bound = 416<<20 + 128<<20
	t.Logf("200 concurrent wrong sign-ins in %v: RSS idle %d MiB, peak sampled %d MiB, VmHWM %d MiB (bound %d MiB)",
		took, idle>>20, peakRSS>>20, hwm>>20, bound>>20)
	if hwm > bound {
		t.Fatalf("VmHWM %d MiB beyond the documented bound of %d MiB", hwm>>20, bound>>20)
	}
}

func slicesWithout(env []string, prefixes ...string) []string {
	var out []string
	for _, e := range env {
		keep := true
		for _, p := range prefixes {
			if strings.HasPrefix(e, p) {
				keep = false
			}
		}
		if keep {
			out = append(out, e)
		}
	}
	return out
}
