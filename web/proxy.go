package web

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/policy"
)

// upstream is one protected app and the reverse proxy in front of it.
type upstream struct {
	host   string // the protected host, lower case: the key in the upstream set
	target *url.URL
	proxy  *httputil.ReverseProxy
	m      *hostMetrics // nil without metrics
	paths  pathOptions  // how the app reads paths (paths.go)
	body   BodyLimits   // how its request bodies may arrive (body.go)
	// resolved is host resolved against the policy last in force
	// (policyHost, paths.go).
	resolved atomic.Pointer[policy.Host]
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
	u := &upstream{host: host, target: target, m: s.metrics.forHost(host)}
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
			stripKeygateCookies(h)
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
			s.failHTTP(w, r, errUpstreamDown.because(err))
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
var vouchedHeaders = [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", HeaderRequestID, "X-Real-Ip",
	HeaderUser, HeaderEmail, HeaderGroups, HeaderName, HeaderFactors}

// scrubbedCopy copies the headers a client may pass on, with room for extra
// more: not one a client could use to pose as someone or somewhere else,
// nor vouchedKey (see isSpoofable).
func scrubbedCopy(src http.Header, extra int) http.Header {
	h := make(http.Header, len(src)+extra)
	for k, v := range src {
		if k != vouchedKey && !isSpoofable(k) {
			h[k] = v
		}
	}
	if ref := h["Referer"]; len(ref) > 0 && portalReferer(ref[0]) {
		delete(h, "Referer")
	}
	return h
}

// portalReferer reports whether a Referer names a page of keygate's portal.
// The portal sends Referrer-Policy: same-origin so that browsers' form posts
// carry an Origin (see render.go), and some portal addresses hold a token
// (/.keygate/enroll/…, /.keygate/not-me/…): a link from such a page to the
// app must not hand the token to the app.
func portalReferer(ref string) bool {
	_, rest, ok := strings.Cut(ref, "://")
	if !ok {
		return false
	}
	i := strings.IndexByte(rest, '/')
	return i >= 0 && (rest[i:] == "/.keygate" || hasFoldPrefix(rest[i:], portalPrefix))
}

// isSpoofable reports whether an app could read header k as something the
// gate vouches for or has already judged, in any spelling a server might
// read as the same name (case is folded by net/http already; CGI-style
// servers read "_" as "-"). The principle: the app must act on the request
// the policy judged — the same identity, path, method and client address —
// so every header that common frameworks and servers let re-state one of
// those is dropped:
//
//   - identity: Remote-* (keygate sets its own);
//   - where the request goes: X-Forwarded-* and Forwarded (keygate sets its
//     own X-Forwarded-*), X-Original-* (IIS/ASP.NET, Symfony and Zend read
//     X-Original-URL as the path), X-Rewrite-URL, X-Host,
//     X-HTTP-Host-Override;
//   - which method it is: X-HTTP-Method-Override, X-HTTP-Method,
//     X-Method-Override (Express method-override, Symfony, Rails, OData);
//   - who sent it: X-Real-IP (keygate sets its own), True-Client-IP,
//     X-Client-IP, Client-IP, CF-Connecting-IP, Fastly-Client-IP,
//     X-Cluster-Client-IP, X-Originating-IP, X-Remote-IP, X-Remote-Addr
//     (read by IP-based allow lists and rate limits).
//
// Stripping rather than refusing: honest clients send some of these
// (browsers behind corporate proxies, SDKs that always add a method
// override), and without them the app sees exactly what was judged.
func isSpoofable(k string) bool {
	if len(k) < 4 {
		return false
	}
	switch k[0] | 0x20 { // a cheap first-letter filter for the hot path
	case 'r':
		return hasFoldPrefix(k, "remote-")
	case 'x':
		if hasFoldPrefix(k, "x-forwarded-") || hasFoldPrefix(k, "x-original-") {
			return true
		}
		for _, name := range spoofableX {
			if foldEqual(k, name) {
				return true
			}
		}
		return false
	case 'f':
		return foldEqual(k, "forwarded") || foldEqual(k, "fastly-client-ip")
	case 't':
		return foldEqual(k, "true-client-ip")
	case 'c':
		return foldEqual(k, "cf-connecting-ip") || foldEqual(k, "client-ip")
	}
	return false
}

// spoofableX are isSpoofable's exact names starting with "x-".
var spoofableX = [...]string{
	"x-real-ip", "x-rewrite-url", "x-host", "x-http-host-override",
	"x-http-method-override", "x-http-method", "x-method-override",
	"x-client-ip", "x-cluster-client-ip", "x-originating-ip", "x-remote-ip", "x-remote-addr",
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

// keygateCookiePrefix starts the name of every cookie keygate sets
// (keygate_session, keygate_device, keygate_factor, keygate_resume, and
// whatever comes next).
const keygateCookiePrefix = "keygate_"

// isKeygateCookie reports whether a cookie name is keygate's: after an
// optional __Host- or __Secure- prefix, it starts with "keygate_". Case is
// ignored throughout: browsers treat the prefixes case-insensitively, and an
// app that reads cookie names loosely must not find keygate's secrets
// either. The principle is the name space, not a list, so a cookie keygate
// adds later is never forwarded by mistake.
func isKeygateCookie(name string) bool {
	name = textproto.TrimString(name)
	if hasASCIIFoldPrefix(name, "__host-") {
		name = name[len("__host-"):]
	} else if hasASCIIFoldPrefix(name, "__secure-") {
		name = name[len("__secure-"):]
	}
	return hasASCIIFoldPrefix(name, keygateCookiePrefix)
}

func hasASCIIFoldPrefix(s, lower string) bool {
	return len(s) >= len(lower) && strings.EqualFold(s[:len(lower)], lower)
}

// mayHoldKeygateCookie is a quick test that a Cookie value contains no
// keygate cookie, so that the usual request is not split and rebuilt.
func mayHoldKeygateCookie(v string) bool {
	for i := 0; i+len(keygateCookiePrefix) <= len(v); i++ {
		if (v[i]|0x20) == 'k' && strings.EqualFold(v[i:i+len(keygateCookiePrefix)], keygateCookiePrefix) {
			return true
		}
	}
	return false
}

// cleanCookies returns the Cookie header lines without any of keygate's
// cookies (see isKeygateCookie), as one line, and whether anything is left.
// Proxy mode and forward-auth both use it, so that no keygate cookie
// reaches an app in either mode. Several Cookie lines (HTTP/2 sends one per
// cookie) are joined with "; ", as net/http's server would read them.
func cleanCookies(lines []string) (string, bool) {
	found := false
	for _, v := range lines {
		if mayHoldKeygateCookie(v) {
			found = true
			break
		}
	}
	if !found {
		switch len(lines) {
		case 0:
			return "", false
		case 1:
			return lines[0], strings.TrimSpace(lines[0]) != ""
		}
	}
	var b strings.Builder
	for _, v := range lines {
		for part := range strings.SplitSeq(v, ";") {
			p := textproto.TrimString(part)
			if p == "" {
				continue
			}
			name, _, _ := strings.Cut(p, "=")
			if isKeygateCookie(name) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(p)
		}
	}
	return b.String(), b.Len() > 0
}

// stripKeygateCookies removes keygate's cookies from what goes upstream:
// the app must never be able to replay them. When no cookie is left the
// header goes too: an empty "Cookie:" confuses some frameworks.
func stripKeygateCookies(h http.Header) {
	lines, ok := h["Cookie"]
	if !ok {
		return
	}
	if len(lines) == 1 && !mayHoldKeygateCookie(lines[0]) && strings.TrimSpace(lines[0]) != "" {
		return // the common case: nothing to do, nothing allocated
	}
	v, ok := cleanCookies(lines)
	if !ok {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{v}
}

// isH2CUpgrade reports a request asking to switch the connection to
// cleartext HTTP/2. Forwarded, it would give the client a raw HTTP/2
// connection to the app on which every later request bypasses the gate
// (h2c smuggling); no browser sends it.
func isH2CUpgrade(h http.Header) bool {
	if _, ok := h["Http2-Settings"]; ok {
		return true
	}
	for _, v := range h["Upgrade"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(tok), "h2c") {
				return true
			}
		}
	}
	return false
}
