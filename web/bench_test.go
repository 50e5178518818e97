package web

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/policy"
	"github.com/prometheus/client_golang/prometheus"
)

// The proxy benchmarks compare keygate's handler with a bare
// httputil.ReverseProxy using the same transport and buffer pool, in the
// same run: the difference is the figure to watch, not the absolute ns/op.
// "loopback" goes to a real upstream on 127.0.0.1 (system calls dominate);
// "memory" answers from a RoundTripper in memory, which leaves exactly
// keygate's own work plus ReverseProxy's. `make bench` runs them;
// bench/cmd/proxybench measures the same with wrk against real processes.

const benchBody = 1024

func benchUpstream(b *testing.B) *httptest.Server {
	body := strings.Repeat("x", benchBody)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, body)
	}))
	b.Cleanup(up.Close)
	return up
}

// memTransport answers every request with 1 KiB, without a network.
type memTransport struct{ body string }

func (m memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, ProtoMajor: 1, ProtoMinor: 1, Request: r, ContentLength: int64(len(m.body)),
		Header: http.Header{"Content-Type": {"text/plain"}}, Body: io.NopCloser(strings.NewReader(m.body))}, nil
}

// recorder2 adds CloseNotify, which Gin's writer forwards to and which
// net/http's real ResponseWriter has.
type recorder2 struct{ *httptest.ResponseRecorder }

func (recorder2) CloseNotify() <-chan bool { return nil }

func benchServe(b *testing.B, h http.Handler, req *http.Request) {
	b.ReportAllocs()
	b.ResetTimer()
	// A cancellable context, as a real server's request has: with
	// context.Background ReverseProxy would start a goroutine per request
	// to watch CloseNotify.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cpu := startCPU()
	for b.Loop() {
		rec := recorder2{httptest.NewRecorder()}
		r := req.Clone(ctx)
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	}
	cpu.report(b)
}

// cpuClock reads the process's CPU time (user+system, every thread,
// including the garbage collector's). On a machine shared with other work
// wall-clock ns/op swings with the neighbours; CPU time per operation
// hardly does, so the benchmarks report it as cpu-ns/op beside ns/op.
type cpuClock struct{ start time.Duration }

func startCPU() cpuClock { return cpuClock{processCPU()} }

func (c cpuClock) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-c.start)/float64(b.N), "cpu-ns/op")
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func bareProxy(target *url.URL, tr http.RoundTripper) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host; pr.SetXForwarded() },
		Transport:  tr,
		BufferPool: newBufferPool(),
	}
}

// benchKeygate is keygate's handler with the real parts (Badger, sessions,
// a compiled policy, metrics, an access log to io.Discard unless off) and
// a request carrying a two-factor session cookie.
func benchKeygate(b *testing.B, target *url.URL, tr http.RoundTripper, access bool) (*Server, *http.Request) {
	b.Helper()
	kv, err := badgerstore.Open(badgerstore.Options{Path: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = kv.Close() })
	ctx := context.Background()
	sessions, err := authn.NewSessions(ctx, kv, authn.SessionOptions{IdleTimeout: time.Hour, Lifetime: 12 * time.Hour, Now: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	hasher := authn.NewHasher(authn.Argon2Params{MemoryKiB: 8 << 10, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, 2)
	users := authn.NewUsers(kv, authn.UserOptions{Hasher: hasher, Policy: authn.PasswordPolicy{MinLength: 12}, Now: time.Now})
	u := authn.User{Username: "alice", Email: "alice@example.com", DisplayName: "Alice", Groups: []string{"admins"}}
	sess, err := sessions.Create(ctx, u, policy.Proof{Kind: policy.FactorPassword, At: time.Now()}, authn.Meta{IP: "127.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	sess, err = sessions.AddProof(ctx, sess.ID, policy.Proof{Kind: policy.FactorTOTP, At: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	p, err := policy.Parse([]byte("default: two_factor\nrules:\n  - name: public\n    paths: [\"/static/*\"]\n    action: bypass\n"))
	if err != nil {
		b.Fatal(err)
	}
	compiled, err := policy.Compile(p)
	if err != nil {
		b.Fatal(err)
	}
	holder := &policy.Holder{}
	holder.Store(compiled)
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	var al *AccessLog
	if access {
		al = NewAccessLog(io.Discard, "text")
	}
	srv, err := New(Options{
		Upstreams: []Upstream{{Host: "app.example.com", URL: target}},
		Policy:    holder, Users: users, Sessions: sessions, Transport: tr,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics: m, AccessLog: al,
	})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "http://app.example.com/page", nil)
	req.Header.Set("User-Agent", "wrk")
	req.AddCookie(&http.Cookie{Name: CookieName, Value: sess.ID})
	return srv, req
}

func BenchmarkProxy(b *testing.B) {
	b.Run("loopback", func(b *testing.B) {
		up := benchUpstream(b)
		target, _ := url.Parse(up.URL)
		b.Run("bare", func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://app.example.com/page", nil)
			benchServe(b, bareProxy(target, newTransport()), req)
		})
		b.Run("keygate", func(b *testing.B) {
			srv, req := benchKeygate(b, target, newTransport(), true)
			benchServe(b, srv, req)
		})
	})
	b.Run("memory", func(b *testing.B) {
		target, _ := url.Parse("http://127.0.0.1:1")
		tr := memTransport{body: strings.Repeat("x", benchBody)}
		b.Run("bare", func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://app.example.com/page", nil)
			req.Header.Set("User-Agent", "wrk")
			req.AddCookie(&http.Cookie{Name: CookieName, Value: strings.Repeat("s", 43)})
			benchServe(b, bareProxy(target, tr), req)
		})
		b.Run("keygate", func(b *testing.B) {
			srv, req := benchKeygate(b, target, tr, true)
			benchServe(b, srv, req)
		})
		b.Run("keygate-no-access-log", func(b *testing.B) {
			srv, req := benchKeygate(b, target, tr, false)
			benchServe(b, srv, req)
		})
	})
}

// BenchmarkCookieSession is the cookie → session step of the gate: read
// the cookie, hash the ID, find the session. Budget: ≤ 1 µs, ≤ 2 allocs.
func BenchmarkCookieSession(b *testing.B) {
	target, _ := url.Parse("http://127.0.0.1:1")
	srv, req := benchKeygate(b, target, memTransport{}, false)
	req.Header.Set("Cookie", "theme=dark; lang=en; "+req.Header.Get("Cookie")+"; _ga=GA1.2.3")
	b.ReportAllocs()
	for b.Loop() {
		if srv.session(req) == nil {
			b.Fatal("no session")
		}
	}
}

// BenchmarkAccessLine formats and buffers one access line.
func BenchmarkAccessLine(b *testing.B) {
	for _, format := range []string{"text", "json"} {
		b.Run(format, func(b *testing.B) {
			al := NewAccessLog(io.Discard, format)
			e := accessEntry{start: time.Now(), id: newRequestIDs().next(), method: "GET", host: "app.example.com", path: "/some/page",
				ip: "192.0.2.10", user: "alice", decision: "allow", status: 200, bytes: 1024}
			b.ReportAllocs()
			for b.Loop() {
				al.write(&e, time.Now())
			}
		})
	}
}

// BenchmarkAccessLineParallel: the lines of two cores contending for the
// buffer's lock.
func BenchmarkAccessLineParallel(b *testing.B) {
	al := NewAccessLog(bufio.NewWriter(io.Discard), "text")
	e := accessEntry{start: time.Now(), id: newRequestIDs().next(), method: "GET", host: "app.example.com", path: "/some/page",
		ip: "192.0.2.10", user: "alice", decision: "allow", status: 200, bytes: 1024}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			al.write(&e, time.Now())
		}
	})
}
