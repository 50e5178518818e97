package web

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/policy"
)

// countingUpstream is a real HTTP app that counts its open connections
// (and the most it ever had) and echoes the body it got.
type countingUpstream struct {
	srv        *httptest.Server
	open, peak atomic.Int64
	delay      time.Duration // before answering, after the body is read
}

func newCountingUpstream(t *testing.T) *countingUpstream {
	u := &countingUpstream{}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		time.Sleep(u.delay)
		fmt.Fprintf(w, "got %d bytes: %s", len(b), b[:min(len(b), 32)])
	}))
	u.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			n := u.open.Add(1)
			for {
				p := u.peak.Load()
				if n <= p || u.peak.CompareAndSwap(p, n) {
					break
				}
			}
		case http.StateClosed, http.StateHijacked:
			u.open.Add(-1)
		}
	}
	u.srv.Start()
	t.Cleanup(u.srv.Close)
	return u
}

// newBodyServer runs keygate (bypass policy, real store) in front of up on
// a real listener: app.example.com with the server-wide limits,
// uploads.example.com with a long timeout of its own.
func newBodyServer(t *testing.T, up *countingUpstream, def BodyLimits, portal time.Duration) string {
	t.Helper()
	p, err := policy.Parse([]byte("default: bypass\n"))
	if err != nil {
		t.Fatal(err)
	}
	compiled, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	holder := &policy.Holder{}
	holder.Store(compiled)
	kv, err := badgerstore.Open(badgerstore.Options{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Close() })
	users := authn.NewUsers(kv, authn.UserOptions{Hasher: authn.NewHasher(authn.Argon2Params{MemoryKiB: 8 << 10}, 2)})
	sessions, err := authn.NewSessions(context.Background(), kv, authn.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(up.srv.URL)
	s, err := New(Options{
		Upstreams: []Upstream{
			{Host: "app.example.com", URL: target},
			{Host: "uploads.example.com", URL: target, Body: BodyLimits{Timeout: 10 * time.Second}},
		},
		Policy: holder, Users: users, Sessions: sessions,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Body:              def,
		PortalBodyTimeout: portal,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// slowPost opens a raw connection and sends a request whose body of n
// bytes arrives one byte every gap; it returns the status line keygate
// answered (or the error) and when.
func slowPost(addr, host, path string, n int, gap time.Duration) (string, time.Duration, error) {
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, host, n); err != nil {
		return "", 0, err
	}
	go func() {
		for range n {
			time.Sleep(gap)
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), time.Since(start), err
}

// 300 clients sending bodies a byte a second hold no upstream connection,
// and are cut at the body deadline.
func TestSlowBodiesHoldNoUpstreamConnection(t *testing.T) {
	up := newCountingUpstream(t)
	addr := newBodyServer(t, up, BodyLimits{Timeout: 2 * time.Second}, 0)
	const clients = 300
	var wg sync.WaitGroup
	statuses := make([]string, clients)
	took := make([]time.Duration, clients)
	for i := range clients {
		wg.Go(func() {
			var err error
			statuses[i], took[i], err = slowPost(addr, "app.example.com", "/upload", 100, time.Second)
			if err != nil {
				statuses[i] = err.Error()
			}
		})
	}
	wg.Wait()
	cut := 0
	var slowest time.Duration
	for i, st := range statuses {
		if strings.HasPrefix(st, "HTTP/1.1 408") {
			cut++
		} else {
			t.Errorf("client %d: %q, want 408", i, st)
		}
		slowest = max(slowest, took[i])
	}
	t.Logf("%d of %d slow clients cut with 408 (slowest answer after %v); upstream connections at most %d", cut, clients, slowest, up.peak.Load())
	if up.peak.Load() != 0 {
		t.Fatalf("slow bodies held %d upstream connections, want 0", up.peak.Load())
	}
	if slowest > 6*time.Second {
		t.Fatalf("a slow client was answered only after %v; the deadline is 2s", slowest)
	}
	// The path itself works: a body that arrives in time is forwarded.
	resp, err := postTo(addr, "app.example.com", "/upload", strings.NewReader(`{"a":1}`))
	if err != nil || resp != "got 7 bytes: {\"a\":1}" {
		t.Fatalf("a normal post: %q %v", resp, err)
	}
}

func postTo(addr, host, path string, body io.Reader) (string, error) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, body)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("%d %s", resp.StatusCode, b), err
	}
	return string(b), err
}

// A longer timeout per upstream lets real slow uploads through; the
// server-wide one cuts the same upload elsewhere. A large body streams,
// and a slow answer after the body is not cut by the body's deadline.
func TestBodyTimeoutPerUpstreamAndStreaming(t *testing.T) {
	up := newCountingUpstream(t)
	addr := newBodyServer(t, up, BodyLimits{Timeout: time.Second, Buffer: 1 << 10}, 0)
	for _, tc := range []struct {
		host, want string
	}{
		{"app.example.com", "HTTP/1.1 408"},
		{"uploads.example.com", "HTTP/1.1 200"},
	} {
		st, took, err := slowPost(addr, tc.host, "/u", 8, 250*time.Millisecond)
		if err != nil || !strings.HasPrefix(st, tc.want) {
			t.Errorf("%s: a 2 s upload got %q after %v (%v), want %s", tc.host, st, took, err, tc.want)
		}
	}
	// 200 KiB with a 1 KiB buffer: streamed, all of it arrives; the app
	// answers 1.5 s after the body (beyond the 1 s body deadline).
	up.delay = 1500 * time.Millisecond
	big := bytes.Repeat([]byte("y"), 200<<10)
	resp, err := postTo(addr, "app.example.com", "/big", bytes.NewReader(big))
	if err != nil || !strings.HasPrefix(resp, fmt.Sprintf("got %d bytes", len(big))) {
		t.Fatalf("streamed body: %.60q %v", resp, err)
	}
	resp, err = postTo(addr, "app.example.com", "/small", strings.NewReader("small"))
	if err != nil || resp != "got 5 bytes: small" {
		t.Fatalf("buffered body with a slow answer: %q %v", resp, err)
	}
}

// Bodies to keygate's own endpoints have a deadline of their own.
func TestPortalBodyDeadline(t *testing.T) {
	up := newCountingUpstream(t)
	addr := newBodyServer(t, up, BodyLimits{}, time.Second)
	st, took, err := slowPost(addr, "app.example.com", "/.keygate/api/login", 40, 200*time.Millisecond)
	if err != nil || !strings.HasPrefix(st, "HTTP/1.1 408") {
		t.Fatalf("slow sign-in body: %q after %v (%v), want 408", st, took, err)
	}
	if took > 3*time.Second {
		t.Fatalf("cut only after %v", took)
	}
	// A body in time reaches the handler (which refuses the unknown user).
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/.keygate/api/login", strings.NewReader(`{"username":"nobody","password":"whatever-it-is-1"}`))
	req.Host = "app.example.com"
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("sign-in with a body in time: %d, want 401", resp.StatusCode)
	}
	// Larger than the portal's bound: 413, whatever the speed.
	req, _ = http.NewRequest(http.MethodPost, "http://"+addr+"/.keygate/api/login", bytes.NewReader(bytes.Repeat([]byte("z"), maxPortalBody+10)))
	req.Host = "app.example.com"
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized portal body: %d, want 413", resp.StatusCode)
	}
}

// A form that meets a challenge is parked under the portal's body deadline:
// one trickling in is cut, not parked, and its connection is closed.
func TestParkedFormBodyDeadline(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: one_factor\n", portalBody: time.Second})
	addr := h.srv.Listener.Addr().String()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	const n = 40
	fmt.Fprintf(c, "POST /transfer HTTP/1.1\r\nHost: app.example.com\r\nSec-Fetch-Site: same-origin\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n", n)
	go func() {
		for range n {
			time.Sleep(200 * time.Millisecond)
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("answered after %v; the deadline is 1s", took)
	}
	for _, ck := range resp.Cookies() {
		if strings.Contains(ck.Name, "resume") && ck.Value != "" {
			t.Fatalf("a form cut by the deadline was parked: %v", ck)
		}
	}
	if !resp.Close {
		t.Errorf("the connection stays open with the rest of the body on its way (status %d)", resp.StatusCode)
	}
}
