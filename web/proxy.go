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
}

// newTransport is tuned for a proxy: many idle keep-alive connections per
// upstream (the default of 2 makes every burst dial anew), bounded dials,
// no response-header timeout so long polls and streams keep working.
func newTransport() *http.Transport {
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

// bufferPool lends the proxy its copy buffers instead of allocating 32 KiB
// per response.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(v []byte) { b.p.Put(&v) }

func (s *Server) newUpstream(target *url.URL, transport http.RoundTripper) *upstream {
	u := &upstream{target: target}
	u.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Keep the Host the person asked for, as Traefik and nginx
			// setups usually do, so apps build correct absolute links.
			pr.Out.Host = pr.In.Host
			// ReverseProxy dropped every client-sent X-Forwarded-* from Out;
			// the gate already replaced In's with values it vouches for.
			for _, h := range forwardedOut {
				if v := pr.In.Header[h]; len(v) > 0 {
					pr.Out.Header[h] = v
				}
			}
		},
		Transport:  transport,
		BufferPool: s.buffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				// The client went away; nobody is left to read an answer.
				return
			}
			s.failHTTP(w, r, errf(http.StatusBadGateway, "upstream_unavailable", "err.upstream_down", err))
		},
	}
	return u
}

var forwardedOut = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// scrubInbound removes, in place, every header a client could use to pose
// as someone or somewhere else: identity headers (Remote-*) and forwarding
// headers, in any spelling a server might read as the same name — case is
// already folded by net/http, and CGI-style servers read "_" as "-".
func scrubInbound(h http.Header) {
	for k := range h {
		if isSpoofable(k) {
			delete(h, k)
		}
	}
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
