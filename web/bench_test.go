package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/policy"
)

// The proxy benchmarks compare keygate's handler with a bare
// httputil.ReverseProxy using the same transport and buffer pool, against
// the same loopback upstream in the same run: the ratio is the figure to
// watch, not the absolute ns/op. `make bench` runs them.

func benchUpstream(b *testing.B) *httptest.Server {
	body := strings.Repeat("x", 1024)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, body)
	}))
	b.Cleanup(up.Close)
	return up
}

// recorder2 adds CloseNotify, which Gin's writer forwards to and which
// net/http's real ResponseWriter has.
type recorder2 struct{ *httptest.ResponseRecorder }

func (recorder2) CloseNotify() <-chan bool { return nil }

func benchServe(b *testing.B, h http.Handler, req *http.Request) {
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := recorder2{httptest.NewRecorder()}
		r := req.Clone(context.Background())
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	}
}

func BenchmarkProxyBare(b *testing.B) {
	up := benchUpstream(b)
	target, _ := url.Parse(up.URL)
	rp := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport:  newTransport(),
		BufferPool: newBufferPool(),
	}
	req := httptest.NewRequest(http.MethodGet, "http://app.example.com/page", nil)
	benchServe(b, rp, req)
}

func BenchmarkProxyKeygateTwoFactorSession(b *testing.B) {
	up := benchUpstream(b)
	target, _ := url.Parse(up.URL)
	kv, err := badgerstore.Open(badgerstore.Options{Path: b.TempDir()})
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
	users := authn.NewUsers(kv, hasher, authn.PasswordPolicy{MinLength: 12}, time.Now)
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
	srv, err := New(Options{
		Upstreams: []Upstream{{Host: "app.example.com", URL: target}},
		Policy:    holder, Users: users, Sessions: sessions,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "http://app.example.com/page", nil)
	req.AddCookie(&http.Cookie{Name: CookieName, Value: sess.ID})
	benchServe(b, srv, req)
}
