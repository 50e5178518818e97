package web

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// upstream is one protected app and the reverse proxy in front of it.
type upstream struct {
	target *url.URL
	proxy  *httputil.ReverseProxy
	m      *hostMetrics // nil without metrics
}

func newTransport() *http.Transport { return NewTransport() }

// NewTransport is the transport to the upstreams, tuned for a proxy: many
// idle keep-alive connections per upstream (the default of 2 makes every
// burst dial anew), bounded dials, no response-header timeout so long polls
// and streams keep working. Exported so that benchmarks compare keygate
// with a bare proxy on equal terms.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // never send upstream traffic through an environment proxy
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false,
	}
}

const copyBufferSize = 32 << 10

// bufferPool lends the proxy its copy buffers instead of allocating 32 KiB
// per response. It pools array pointers: putting a []byte back would box a
// new slice header (an allocation per request), while a slice converts
// back to its array pointer for free.
type bufferPool struct{ p sync.Pool }

// NewBufferPool is the proxy's copy-buffer pool (see NewTransport).
func NewBufferPool() httputil.BufferPool { return newBufferPool() }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

func (b *bufferPool) Put(v []byte) {
	if cap(v) >= copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(v[:copyBufferSize]))
	}
}

func (s *Server) newUpstream(host string, target *url.URL, transport http.RoundTripper) *upstream {
	u := &upstream{target: target, m: s.metrics.forHost(host)}
	u.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Keep the Host the person asked for, as Traefik and nginx
			// setups usually do, so apps build correct absolute links.
			pr.Out.Host = pr.In.Host
			// One new header map, sized for the client's headers and
			// ours: the client's without anything spoofable and without
			// keygate's cookie, then the values the gate vouches for.
			// Adding ours to the cloned map instead would grow it (a
			// rehash) on most requests.
			vouched := pr.In.Header[vouchedKey]
			h := scrubbedCopy(pr.Out.Header, len(vouched)+1) // +1: ReverseProxy may add User-Agent
			stripOwnCookie(h)
			for i := range vouched {
				h[vouchedHeaders[i]] = vouched[i : i+1 : i+1]
			}
			pr.Out.Header = h
		},
		Transport:  transport,
		BufferPool: s.buffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				// The client went away; nobody is left to read an answer.
				return
			}
			u.m.upstreamError()
			s.failHTTP(w, r, errf(http.StatusBadGateway, "upstream_unavailable", "err.upstream_down", err))
		},
	}
	return u
}

// vouchedKey carries, in the inbound request's header map, the values the
// gate vouches for to the Rewrite function (ReverseProxy offers no other
// per-request channel without an allocation). No client can send it: a
// header name with a space fails net/http's parser. Rewrite never copies
// it to the upstream request (scrubbedCopy drops it).
const vouchedKey = "keygate vouched"

// vouchedHeaders names the values under vouchedKey, in order; the identity
// headers are there only for a signed-in session.
var vouchedHeaders = [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", HeaderRequestID,
	HeaderUser, HeaderEmail, HeaderGroups, HeaderName, HeaderFactors}

// scrubbedCopy copies the headers a client may pass on, with room for extra
// more: not one a client could use to pose as someone or somewhere else —
// identity headers (Remote-*) and forwarding headers in any spelling a
// server might read as the same name (case is already folded by net/http,
// and CGI-style servers read "_" as "-") — and not vouchedKey.
func scrubbedCopy(src http.Header, extra int) http.Header {
	h := make(http.Header, len(src)+extra)
	for k, v := range src {
		if k != vouchedKey && !isSpoofable(k) {
			h[k] = v
		}
	}
	return h
}

func isSpoofable(k string) bool {
	return hasFoldPrefix(k, "remote-") || hasFoldPrefix(k, "x-forwarded-") ||
		foldEqual(k, "forwarded") || foldEqual(k, "x-real-ip") || foldEqual(k, "x-forwarded-for")
}

// foldEqual compares ASCII case-insensitively with '_' read as '-'.
func foldEqual(s, lower string) bool {
	return len(s) == len(lower) && hasFoldPrefix(s, lower)
}

func hasFoldPrefix(s, lower string) bool {
	if len(s) < len(lower) {
		return false
	}
	for i := 0; i < len(lower); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// stripOwnCookie removes keygate's session cookie from what goes upstream:
// the app must never be able to replay it.
func stripOwnCookie(h http.Header) {
	vals := h["Cookie"]
	found := false
	for _, v := range vals {
		if strings.Contains(v, CookieName) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	var kept []string
	for _, v := range vals {
		for part := range strings.SplitSeq(v, ";") {
			p := strings.TrimSpace(part)
			if p == "" {
				continue
			}
			name, _, _ := strings.Cut(p, "=")
			if strings.TrimSpace(name) == CookieName {
				continue
			}
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{strings.Join(kept, "; ")}
}
