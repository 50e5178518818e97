package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a process writing and a test
// reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestServeReloadAndGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		fmt.Fprintf(w, "app:%s:%s", r.Host, r.URL.Path)
	}))
	defer up.Close()

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "storage.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("cd", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfgFile := filepath.Join(dir, "keygate.yaml")
	writeCfg := func(hosts ...string) {
		var b strings.Builder
		fmt.Fprintf(&b, "server:\n  listen: %q\nstorage:\n  path: %q\n  encryption_key_file: %q\nlog:\n  level: info\npolicy:\n  default: bypass\nupstreams:\n",
			addr, filepath.Join(dir, "data"), keyFile)
		for _, h := range hosts {
			fmt.Fprintf(&b, "  - host: %s\n    url: %s\n", h, up.URL)
		}
		if err := os.WriteFile(cfgFile, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("localhost")

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

	get := func(host, path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s%s: %v", host, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("localhost", "/x"); code != 200 || body != "app:localhost:/x" {
		t.Fatalf("before reload: %d %q", code, body)
	}
	if code, _ := get("other.localhost", "/x"); code != http.StatusMisdirectedRequest {
		t.Fatalf("unknown host before reload: %d", code)
	}

	// A broken file: still serving with the old configuration, and the
	// log says why.
	if err := os.WriteFile(cfgFile, []byte("server:\n  listn: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the failed reload to be logged", func() bool {
		return strings.Contains(stderr.String(), "configuration reload failed") && strings.Contains(stderr.String(), "server.listn")
	})
	if code, _ := get("localhost", "/x"); code != 200 {
		t.Fatalf("after a broken reload: %d", code)
	}

	// A good file: the new upstream is served without a restart.
	writeCfg("localhost", "other.localhost")
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return strings.Contains(stderr.String(), "configuration reloaded") })
	if code, body := get("other.localhost", "/y"); code != 200 || body != "app:other.localhost:/y" {
		t.Fatalf("new upstream after reload: %d %q", code, body)
	}

	// SIGTERM while a slow response is in flight: it completes, then the
	// process exits 0.
	slow := make(chan string, 1)
	go func() {
		_, body := get("localhost", "/slow")
		slow <- body
	}()
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	close(release)
	select {
	case body := <-slow:
		if body != "app:localhost:/slow" {
			t.Fatalf("in-flight response during shutdown: %q", body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the in-flight response never completed")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("keygate did not exit after SIGTERM")
	}
	// The data directory reopens cleanly.
	if out, errOut, rc := run(t, "", "user", "list", "--config", cfgFile); rc != 0 {
		t.Fatalf("reopen after shutdown: rc=%d %s %s", rc, out, errOut)
	}
}

// selfSigned writes a certificate for localhost and returns its files.
func selfSigned(t *testing.T, dir, name string, serial int64) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

func TestServeTLSAndCertificateReload(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") }))
	defer up.Close()
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir, "tls", 1)
	addr := freeAddr(t)
	cfgFile := filepath.Join(dir, "keygate.yaml")
	yml := fmt.Sprintf("server:\n  listen: %q\n  tls:\n    cert_file: %q\n    key_file: %q\nstorage:\n  path: %q\npolicy:\n  default: bypass\nupstreams:\n  - host: localhost\n    url: %s\n",
		addr, certFile, keyFile, filepath.Join(dir, "data"), up.URL)
	if err := os.WriteFile(cfgFile, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(keygateBin(t), "serve", "--config", cfgFile)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitFor(t, "keygate to serve", func() bool { return strings.Contains(stderr.String(), "keygate is serving") })
	serial := func() int64 {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}) //nolint:gosec // the test reads which certificate is served
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(); s != 1 {
		t.Fatalf("serial %d", s)
	}
	// A renewed certificate in the same files: SIGHUP, no restart.
	selfSigned(t, dir, "tls", 2)
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return strings.Contains(stderr.String(), "configuration reloaded") })
	if s := serial(); s != 2 {
		t.Fatalf("after reload serial %d, want 2", s)
	}
	if strings.Contains(stderr.String(), "serving plain HTTP") {
		t.Fatal("warned about plain HTTP while serving TLS")
	}
}
