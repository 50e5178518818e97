package web

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/policy"
)

// Forward-auth: a reverse proxy that carries the traffic itself (nginx,
// Traefik, Caddy) asks keygate whether a request it holds may pass. The
// answer is the proxy mode's decision for the same host, path, method, client
// address and session, taken by the same policy engine:
//
//	allow      200 with the identity headers (Remote-User, …) for the proxy to copy upstream
//	challenge  nginx style: 401 JSON {error, message, login_url} plus Location: login_url
//	           Traefik/Caddy style: 302 (303 for non-GET) to login_url; 401 JSON for API clients
//	deny       403
//
// The two header styles:
//
//   - nginx auth_request sends the original URL in X-Original-URL (and the
//     method in X-Original-Method). A 401 is the only way nginx lets the
//     subrequest say "sign in": it turns any other status but 2xx/401/403
//     into a 500. The snippet (examples/nginx/keygate.conf) redirects 401s to
//     the Location it took from this answer, so nginx never has to
//     URL-encode rd itself (it cannot).
//   - Traefik ForwardAuth and Caddy forward_auth send X-Forwarded-Proto,
//     -Host, -Uri and -Method and pass any non-2xx answer to the browser as it
//     is, so a challenge is a real redirect.
//
// Trust: these headers choose the URL that gets judged, so they are read
// only from server.trusted_proxies (the TCP peer, not X-Forwarded-For). From
// anyone else the endpoint answers 403 untrusted_proxy without looking at
// them. Not 401: a 401 sends nginx users to the portal, they sign in, come
// back, get 401 again — an endless loop that hides the real problem (a
// proxy missing from trusted_proxies), which the 403 and the warning in the
// log name.
//
// Ambiguity is refused, not resolved: the proxies copy client headers into
// the auth request (nginx and Caddy all of them, Traefik unless
// authRequestHeaders is set), so a client behind Traefik can add its own
// X-Original-URL. X-Forwarded-Uri therefore wins whenever it is present, and
// an X-Original-URL next to it must name the same request or the answer is
// 400. The nginx snippet clears X-Forwarded-Uri for the same reason.

// authzStyle is the protocol of the asking proxy.
type authzStyle uint8

const (
	styleNginx     authzStyle = iota + 1 // X-Original-URL; challenge = 401
	styleForwarded                       // X-Forwarded-*; challenge = 302
)

const (
	headerOriginalURL    = "X-Original-URL"
	headerOriginalMethod = "X-Original-Method"
	headerFwdProto       = "X-Forwarded-Proto"
	headerFwdHost        = "X-Forwarded-Host"
	headerFwdURI         = "X-Forwarded-Uri"
	headerFwdMethod      = "X-Forwarded-Method"
	// headerAuthzCookie carries, on an allow, the client's Cookie header
	// without keygate's cookies. It is named Cookie so that Traefik's
	// authResponseHeaders (which cannot rename) replaces the request's
	// Cookie with it; nginx and Caddy copy it the same way.
	headerAuthzCookie = "Cookie"
	// maxOriginalURL bounds what keygate parses; nginx's default
	// large_client_header_buffers (8k) bounds real request lines anyway.
	maxOriginalURL = 8 << 10
)

// authzTarget is the request the proxy asks about.
type authzTarget struct {
	style  authzStyle
	scheme string // "http" or "https"
	host   string // Host as the client sent it, port included: for URLs
	name   string // lower-case host without port: for the policy
	path   string // decoded path, as the policy judges it
	uri    string // path and query as the client sent them: for rd
	method string
}

// url is the original URL, the rd of the login link.
func (t *authzTarget) url() string { return t.scheme + "://" + t.host + t.uri }

// loginURL is the portal's sign-in page on the original host: the portal
// lives under /.keygate/ on every protected host, so the session cookie it
// sets is one the browser sends back there.
func (t *authzTarget) loginURL() string {
	return t.scheme + "://" + t.host + portalPrefix + "login?rd=" + url.QueryEscape(t.url())
}

// authz is the forward-auth endpoint (GET /.keygate/api/authz).
func (s *Server) authz(c *gin.Context) error {
	r := c.Request
	al := s.authzAccessOf(c)
	if peer := peerAddr(r); !s.trusted.contains(peer) {
		s.log.Warn("forward-auth request from a peer not in server.trusted_proxies; refused without reading its headers",
			"peer", peer.String())
		return errUntrustedProxy
	}
	t, err := authzTargetOf(r.Header)
	if err != nil {
		return err
	}
	al.judged(&t)
	if !s.forwardAuthHost(t.name) {
		// Judging it by the default rule would vouch for whatever the proxy
		// routes there — a default server, a typo'd name — which the admin
		// never meant to protect. 403, not 421: nginx turns any answer but
		// 2xx, 401 and 403 into a 500 that hides the reason.
		s.log.Warn("forward-auth asked about a host keygate does not protect; refused. Name it in an upstream, a policy rule's hosts or server.protected_hosts, or make the proxy refuse it (the shipped snippets have a catch-all server)",
			"host", t.name)
		s.authzFail(c, &t, errUnknownAuthHost)
		return nil
	}
	// As in proxy mode (paths.go): the path the proxy will send, in every
	// reading; the reserved prefix in any spelling is keygate's own and
	// never vouched for on the way to an app (404); forms no honest
	// client sends are 400.
	sess := s.session(r)
	q := question{pol: s.policy.Load(), up: s.upstream(t.name), host: t.name, path: rawPathOf(t.uri), method: t.method,
		ip: clientAddr(c), subject: subjectOf(sess), now: s.now(), ask: s.askOf(sess)}
	d, err := decide(&q, nil)
	if err != nil {
		s.authzFail(c, &t, err)
		return nil
	}
	s.metrics.lookupHost(t.name).count(decisionOf(d.Outcome))
	al.decided(decisionOf(d.Outcome), sess)
	h := c.Writer.Header()
	h.Set("Cache-Control", "no-store")
	switch d.Outcome {
	case policy.Allow:
		if sess != nil {
			h.Set(HeaderUser, sess.Username)
			h.Set(HeaderEmail, sess.Email)
			h.Set(HeaderGroups, strings.Join(sess.Groups, ","))
			h.Set(HeaderName, sess.DisplayName)
			h.Set(HeaderFactors, factorList(sess.Proofs))
		}
		// The Cookie header for the proxy to forward instead of the
		// client's: the same cookies without keygate's (see
		// cleanCookies). Absent when none is left, so that the snippets'
		// copy removes the header rather than leave an empty one.
		if v, ok := cleanCookies(r.Header["Cookie"]); ok {
			h.Set(headerAuthzCookie, v)
		}
		c.Status(http.StatusOK)
		c.Abort()
	case policy.Challenge:
		s.authzChallenge(c, &t, d)
	default:
		s.authzFail(c, &t, errForbidden)
	}
	return nil
}

// authzChallenge tells the proxy to send the person to the portal.
func (s *Server) authzChallenge(c *gin.Context, t *authzTarget, d policy.Decision) {
	r := c.Request
	login := t.loginURL()
	if t.style == styleForwarded && !clientWantsJSON(r) {
		status := http.StatusFound
		if t.method != http.MethodGet && t.method != http.MethodHead {
			status = http.StatusSeeOther // the portal is a GET page, whatever the original method
		}
		c.Redirect(status, login)
		c.Abort()
		return
	}
	// nginx copies it with auth_request_set and redirects there.
	c.Header("Location", login)
	s.fail(c, challengeError(d, login))
}

// authzFail answers a refusal for the client behind the proxy, through
// the one renderer. The nginx style always gets JSON (nginx drops the
// body); Traefik and Caddy hand the answer to the browser, so it gets the
// page or JSON its original request asked for.
func (s *Server) authzFail(c *gin.Context, t *authzTarget, err error) {
	e := s.problem(err)
	if t.style != styleForwarded {
		if e.Status != http.StatusUnauthorized && e.Status != http.StatusForbidden {
			// nginx's auth_request turns every answer but 2xx, 401 and
			// 403 into a 500 for the client, hiding a refusal (a refused
			// path spelling, the reserved prefix) as a server fault: say
			// 403, keeping the code in the body and the access log.
			cp := *e
			cp.Status = http.StatusForbidden
			e = &cp
		}
		s.fail(c, e)
		return
	}
	c.Abort()
	// failHTTP picks JSON or HTML from the request path and headers; show it
	// the original path rather than keygate's API path.
	shadow := *c.Request
	shadow.URL = &url.URL{Path: t.path}
	s.failHTTP(c.Writer, &shadow, e)
}

// clientWantsJSON is wantsJSON for the client behind the proxy: the proxy
// copies the client's Accept and X-Requested-With, while the path is always
// keygate's API path.
func clientWantsJSON(r *http.Request) bool {
	if r.Header.Get("X-Requested-With") != "" {
		return true
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

// authzTargetOf reads the original request from a trusted proxy's headers.
// Errors are 400s: a proxy that sends nothing usable is misconfigured, and
// judging a guessed URL instead could allow the wrong request.
func authzTargetOf(h http.Header) (authzTarget, error) {
	orig := h.Get(headerOriginalURL)
	if fwdURI := h.Get(headerFwdURI); fwdURI != "" {
		t, err := forwardedTarget(h, fwdURI)
		if err != nil {
			return t, err
		}
		if orig != "" {
			o, err := originalTarget(orig, h.Get(headerOriginalMethod))
			if err != nil || o.name != t.name || o.uri != t.uri {
				return authzTarget{}, badAuthzHeaders("conflicting_headers", "X-Original-URL and X-Forwarded-Host/-Uri name different requests")
			}
		}
		return t, nil
	}
	if orig == "" {
		return authzTarget{}, badAuthzHeaders("missing_original_url", "neither X-Original-URL nor X-Forwarded-Host and X-Forwarded-Uri were sent")
	}
	return originalTarget(orig, h.Get(headerOriginalMethod))
}

// originalTarget parses nginx's X-Original-URL ($scheme://$http_host$request_uri).
func originalTarget(raw, method string) (authzTarget, error) {
	t := authzTarget{style: styleNginx}
	if len(raw) > maxOriginalURL {
		return t, badAuthzHeaders("bad_original_url", "X-Original-URL is too long")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return t, badAuthzHeaders("bad_original_url", "X-Original-URL is not a URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.User != nil || u.Host == "" {
		return t, badAuthzHeaders("bad_original_url", "X-Original-URL must be an absolute http(s) URL with a host and no userinfo")
	}
	if !validHostHeader(u.Host) {
		return t, badAuthzHeaders("bad_original_url", "X-Original-URL has an invalid host")
	}
	t.scheme, t.host, t.name = u.Scheme, u.Host, hostOnly(u.Host)
	t.path, t.uri = u.Path, targetAfterHost(raw)
	if t.path == "" {
		t.path = "/"
	}
	if t.uri == "" || t.uri[0] != '/' {
		t.uri = "/" + t.uri
	}
	if t.method, err = authzMethod(method, headerOriginalMethod); err != nil {
		return t, err
	}
	return t, nil
}

// targetAfterHost is the request target of an absolute URL exactly as it
// was written: everything after the authority. The path is judged in this
// form (the app behind the proxy routes on it), not as url.URL re-escapes
// it: EscapedPath writes the decoded path anew whenever the raw form holds a
// character it would have escaped itself, and "%2F" then becomes "/".
func targetAfterHost(raw string) string {
	_, rest, _ := strings.Cut(raw, "://")
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		return rest[i:]
	}
	return ""
}

// forwardedTarget reads Traefik's and Caddy's X-Forwarded-* headers.
func forwardedTarget(h http.Header, rawURI string) (authzTarget, error) {
	t := authzTarget{style: styleForwarded}
	switch p := strings.ToLower(firstListValue(h.Get(headerFwdProto))); p {
	case "", "http", "ws":
		t.scheme = "http"
	case "https", "wss":
		t.scheme = "https"
	default:
		return t, badAuthzHeaders("bad_forwarded_headers", "X-Forwarded-Proto is neither http nor https")
	}
	t.host = firstListValue(h.Get(headerFwdHost))
	if t.host == "" {
		return t, badAuthzHeaders("missing_original_url", "X-Forwarded-Uri was sent without X-Forwarded-Host")
	}
	if !validHostHeader(t.host) {
		return t, badAuthzHeaders("bad_forwarded_headers", "X-Forwarded-Host is not a host")
	}
	t.name = hostOnly(t.host)
	if len(rawURI) > maxOriginalURL || rawURI[0] != '/' {
		return t, badAuthzHeaders("bad_forwarded_headers", "X-Forwarded-Uri must be a path starting with /")
	}
	u, err := url.ParseRequestURI(rawURI)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return t, badAuthzHeaders("bad_forwarded_headers", "X-Forwarded-Uri is not a request URI")
	}
	t.path, t.uri = u.Path, rawURI
	if t.method, err = authzMethod(h.Get(headerFwdMethod), headerFwdMethod); err != nil {
		return t, err
	}
	return t, nil
}

// authzMethod checks the original method; absent means GET (nginx sends no
// X-Original-Method unless the snippet sets it).
func authzMethod(m, header string) (string, error) {
	if m == "" {
		return http.MethodGet, nil
	}
	if len(m) > 32 {
		return "", badAuthzHeaders("bad_method", header+" is not an HTTP method")
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return "", badAuthzHeaders("bad_method", header+" is not an HTTP method")
		}
	}
	return m, nil
}

// validHostHeader accepts host[:port] built from the characters DNS names,
// IPv4 and bracketed IPv6 literals use. The host goes into URLs keygate
// hands to browsers, so nothing that could end the authority ("/", "@",
// "?", "#", "\") or a header may pass.
func validHostHeader(h string) bool {
	if h == "" || len(h) > 300 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return hostOnly(h) != ""
}

// firstListValue is the first element of a comma-separated header value
// (a chain of proxies may append theirs).
func firstListValue(v string) string {
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

func badAuthzHeaders(code, why string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Key: "err.bad_request", Cause: errors.New(why)}
}

// forwardAuthHost reports whether keygate protects host (lower case, no
// port), which is what forward-auth demands before judging a request for
// it:
//
//   - a host with an upstream (proxy mode),
//   - a host some policy rule names, exactly or under a "*.suffix"
//     pattern (a rule without hosts names none), or
//   - a host in server.protected_hosts (exact or "*.suffix"), for hosts
//     that the default rule alone should judge.
//
// It reads the policy in force, so a reload that names a new host counts at
// once. It walks the rules without allocating; forward-auth asks on every
// request, but a policy has tens of rules, not thousands.
func (s *Server) forwardAuthHost(host string) bool {
	host = strings.TrimSuffix(host, ".") // the absolute form names the same host
	if host == "" {
		return false
	}
	if s.upstream(host) != nil {
		return true
	}
	for _, p := range s.protectedHosts {
		if hostPatternMatches(p, host) {
			return true
		}
	}
	// The compiled policy's host index, not a walk over a copy of the
	// rules: this runs on every forward-auth request.
	return s.policy != nil && s.policy.Load().NamesHost(host)
}

// protectedHost reports whether host is an acceptable rd target: a host
// forward-auth judges (forwardAuthHost), or a host within
// session.cookie_domain (it receives the session cookie anyway, so sending
// the browser there after sign-in gives nothing away).
func (s *Server) protectedHost(host string) bool {
	if host == "" {
		return false
	}
	if d := strings.Trim(s.cookieDomain, "."); d != "" && (strings.EqualFold(host, d) || hasFoldSuffix(host, "."+d)) {
		return true
	}
	return s.forwardAuthHost(host)
}

// hostPatternMatches matches a lower-case host against a policy-style host
// pattern: a name (case and one trailing dot ignored, IPv6 brackets
// optional) or "*.suffix", which covers every name under suffix but not
// suffix itself.
func hostPatternMatches(p, host string) bool {
	p = strings.TrimSuffix(p, ".")
	if len(p) > 1 && p[0] == '[' && p[len(p)-1] == ']' {
		p = p[1 : len(p)-1]
	}
	if suffix, ok := strings.CutPrefix(p, "*."); ok {
		return len(host) > len(suffix)+1 && host[len(host)-len(suffix)-1] == '.' && hasFoldSuffix(host, suffix)
	}
	return strings.EqualFold(p, host)
}

func hasFoldSuffix(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}
