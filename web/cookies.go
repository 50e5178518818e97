package web

import (
	"context"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
)

// Every cookie keygate sets is named "keygate_…" or, host-only over HTTPS,
// "__Host-keygate_…": the proxy strips both forms before a request reaches
// an app, so a new cookie must keep to them.
const (
	// hostPrefix makes a browser refuse the cookie unless it is Secure,
	// Path=/ and has no Domain: no sibling subdomain and no plain-HTTP
	// answer can plant or overwrite it.
	hostPrefix = "__Host-"
	// HostCookieName is the session cookie's name when it is host-only
	// and the request came over HTTPS; part of the external contract.
	HostCookieName = hostPrefix + CookieName
	// maxSessionCookies bounds the session lookups one request can cause:
	// an honest browser sends one, two or three (a stale host-only cookie
	// besides the domain one); a header stuffed with thousands must not
	// make keygate hash thousands of IDs.
	maxSessionCookies = 8
)

// cookieFor builds a keygate cookie named base ("keygate_…"). It is scoped
// to session.cookie_domain when that covers the request's host (one
// sign-in for every protected subdomain). Otherwise it is host-only, and
// over HTTPS it is named __Host-base: a browser then refuses the same name
// from a sibling subdomain or from plain HTTP, so nobody can plant one
// that shadows ours. Without HTTPS the prefix cannot be used (browsers
// refuse a __Host- cookie without Secure).
func (s *Server) cookieFor(r *http.Request, base, value string, maxAge int) *http.Cookie {
	https := s.isHTTPS(r)
	ck := &http.Cookie{
		Name: base, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: https, SameSite: http.SameSiteLaxMode,
	}
	if d := s.domainFor(r); d != "" {
		ck.Domain = d
	} else if https {
		ck.Name = hostPrefix + base
	}
	return ck
}

// domainFor is the Domain attribute for this request's cookies, or "" for
// host-only. A browser drops a cookie whose Domain does not cover the host
// it came from; then fall back to a host-only cookie instead of failing.
func (s *Server) domainFor(r *http.Request) string {
	d := strings.TrimPrefix(s.cookieDomain, ".")
	if d == "" {
		return ""
	}
	if h := hostOnly(r.Host); h == d || strings.HasSuffix(h, "."+d) {
		return d
	}
	return ""
}

// expireStale tells the browser to drop the session cookie variants other
// than the one keygate sets now (keep): a host-only keygate_session left
// from before session.cookie_domain was set, or planted to shadow the
// domain cookie; a __Host- one when the domain cookie is in use. Sent only
// when the request carried a session cookie, so ordinary answers keep
// their single Set-Cookie. A cookie planted with another Path cannot be
// named here; sessionAt copes with those by picking the live session.
func (s *Server) expireStale(w http.ResponseWriter, r *http.Request, keep *http.Cookie) {
	if !hasSessionCookie(r) {
		return
	}
	https := s.isHTTPS(r)
	if keep.Name != CookieName || keep.Domain != "" {
		// The host-only keygate_session (Path=/).
		http.SetCookie(w, &http.Cookie{Name: CookieName, Path: "/", MaxAge: -1, HttpOnly: true, Secure: https, SameSite: http.SameSiteLaxMode})
	}
	if https && keep.Name != HostCookieName {
		http.SetCookie(w, &http.Cookie{Name: HostCookieName, Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	}
}

// readCookie is the value of the keygate cookie named base, under either
// of its names (the __Host- one first: only this host can have set it).
func readCookie(r *http.Request, base string) (string, bool) {
	if ck, err := r.Cookie(hostPrefix + base); err == nil && ck.Value != "" {
		return ck.Value, true
	}
	if ck, err := r.Cookie(base); err == nil && ck.Value != "" {
		return ck.Value, true
	}
	return "", false
}

// cookieScan walks the session cookies of a request (both names, header
// order) without allocating: it is on the hot path.
type cookieScan struct {
	lines []string
	line  string
	n     int
}

func scanSessionCookies(r *http.Request) cookieScan {
	return cookieScan{lines: r.Header["Cookie"]}
}

// next returns the next well-formed session cookie value. The rules are
// net/http's: pairs split at ';', names and values trimmed, one pair of
// surrounding double quotes removed, bad values skipped.
func (sc *cookieScan) next() (string, bool) {
	for sc.n < maxSessionCookies {
		for sc.line == "" {
			if len(sc.lines) == 0 {
				return "", false
			}
			sc.line, sc.lines = sc.lines[0], sc.lines[1:]
		}
		var part string
		part, sc.line, _ = strings.Cut(sc.line, ";")
		name, val, _ := strings.Cut(textproto.TrimString(part), "=")
		if name = textproto.TrimString(name); name != CookieName && name != HostCookieName {
			continue
		}
		if v, ok := cookieValue(val); ok {
			sc.n++
			return v, true
		}
	}
	return "", false
}

// hasSessionCookie says whether the request names any session.
func hasSessionCookie(r *http.Request) bool {
	sc := scanSessionCookies(r)
	_, ok := sc.next()
	return ok
}

// sessionCookieIDs lists every session ID the browser sent (for ending
// them all at sign-in).
func sessionCookieIDs(r *http.Request) []string {
	var ids []string
	sc := scanSessionCookies(r)
	for id, ok := sc.next(); ok; id, ok = sc.next() {
		if id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// liveIDKey carries the ID of the live session in a portal request's
// context when the browser sent several session cookies (see pickSession).
type liveIDKey struct{}

// cookieID is the ID of the session this request acts on, or "": the live
// one when the browser sent several session cookies (pickSession resolved
// it), else the one it sent. It reads the Cookie header itself because
// r.Cookie allocates a slice and a *Cookie for the match; with one cookie
// of each name the plain keygate_session wins, as net/http's r.Cookie
// would say.
func cookieID(r *http.Request) string {
	if id, ok := r.Context().Value(liveIDKey{}).(string); ok {
		return id
	}
	hostID := ""
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			name, val, _ := strings.Cut(textproto.TrimString(part), "=")
			name = textproto.TrimString(name)
			if name != CookieName && (name != HostCookieName || hostID != "") {
				continue
			}
			if v, ok := cookieValue(val); ok {
				if name == CookieName {
					return v
				}
				hostID = v
			}
		}
	}
	return hostID
}

// cookieValue is net/http's parseCookieValue (quotes allowed).
func cookieValue(v string) (string, bool) {
	if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '"' || c == ';' || c == '\\' {
			return "", false
		}
	}
	return v, true
}

// session returns the live session named by the cookie, or nil. (Sessions
// from Lookup carry no ID; use cookieID to act on the session.)
func (s *Server) session(r *http.Request) *authn.Session {
	return s.sessionAt(r, s.now())
}

// sessionAt is session with the clock already read.
func (s *Server) sessionAt(r *http.Request, now time.Time) *authn.Session {
	sess, _ := s.liveSession(r, now)
	return sess
}

// liveSession finds the session among the cookies the browser sent.
// Several arrive when a stale or planted host-only cookie sits beside the
// domain cookie (or under another Path): taking the first would sign the
// person out for good, or, if an attacker planted their own live session,
// make the person act in the attacker's account. So every candidate is
// looked up: dead ones are ignored; two live sessions of one user give the
// newer; live sessions of different users give none at all, and the next
// sign-in ends them all (signIn revokes every ID sent).
func (s *Server) liveSession(r *http.Request, now time.Time) (*authn.Session, string) {
	var found *authn.Session
	foundID, client := "", ""
	sc := scanSessionCookies(r)
	for id, ok := sc.next(); ok; id, ok = sc.next() {
		if id == "" || id == foundID {
			continue
		}
		if client == "" {
			client = s.lookupClient(r)
		}
		sess, live := s.sessions.LookupAtFrom(id, now, client)
		switch {
		case !live:
		case found == nil:
			found, foundID = sess, id
		case sess.Username != found.Username:
			return nil, ""
		case sess.CreatedAt.After(found.CreatedAt):
			found, foundID = sess, id
		}
	}
	return found, foundID
}

// pickSession runs before every portal handler. When the browser sent
// several session cookies it resolves which one names the live session
// and hands that ID to cookieID through the request context, so logout,
// step-up and settings act on the session that is actually in use. The
// one-cookie case costs a header scan and nothing more.
func (s *Server) pickSession(c *gin.Context) {
	r := c.Request
	sc := scanSessionCookies(r)
	_, one := sc.next()
	_, two := sc.next()
	if one && two {
		_, id := s.liveSession(r, s.now())
		c.Request = r.WithContext(context.WithValue(r.Context(), liveIDKey{}, id))
	}
	c.Next()
}

// maxShadowPaths bounds the cookies expireShadows names.
const maxShadowPaths = 8

// expireShadows, at sign-in, expires session cookies that a browser would
// send with ours to the sign-in's target but not to the sign-in itself: a
// cookie planted on the target's path (Path=/app) is never seen by
// /.keygate/ and so cannot be revoked there, yet it reaches /app/x beside
// the new session and, naming another person's live session, makes the
// sessions ambiguous (see liveSession) on every visit. A cookie is
// expired by naming its name, domain and path exactly, so each path a
// cookie sent to the target can have is named, host-only and under
// session.cookie_domain. Only for a target on this host: other hosts'
// cookies are not this answer's to change.
func (s *Server) expireShadows(w http.ResponseWriter, r *http.Request, target string) {
	u, err := url.Parse(target)
	if err != nil || (u.Host != "" && !strings.EqualFold(u.Host, r.Host)) {
		return
	}
	https, domain := s.isHTTPS(r), s.domainFor(r)
	for _, p := range shadowPaths(u.Path) {
		http.SetCookie(w, &http.Cookie{Name: CookieName, Path: p, MaxAge: -1, HttpOnly: true, Secure: https, SameSite: http.SameSiteLaxMode})
		if domain != "" {
			http.SetCookie(w, &http.Cookie{Name: CookieName, Path: p, Domain: domain, MaxAge: -1, HttpOnly: true, Secure: https, SameSite: http.SameSiteLaxMode})
		}
	}
}

// shadowPaths are the cookie paths other than "/" that match path (RFC
// 6265 5.1.4: a prefix ending at a "/" boundary, with or without that
// slash, or the path itself), shortest first, at most maxShadowPaths.
func shadowPaths(path string) []string {
	var out []string
	add := func(p string) {
		if p != "/" && !strings.HasPrefix(p, portalPrefix) && len(out) < maxShadowPaths && (len(out) == 0 || out[len(out)-1] != p) {
			out = append(out, p)
		}
	}
	for i := 1; i <= len(path); i++ {
		if i < len(path) && path[i] != '/' {
			continue
		}
		add(path[:i])
		if i < len(path) {
			add(path[:i+1])
		}
	}
	return out
}
