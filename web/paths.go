package web

import (
	"encoding/hex"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/policy"
)

// A request is judged by the path its upstream will act on, in every
// reading a common upstream could give it (policy.Readings): it passes only
// if every reading passes. What is judged is exactly what is sent: in proxy
// mode the escaped path ReverseProxy puts on the upstream's request line
// (r.URL.EscapedPath(), which SetURL appends to the target's base path);
// in forward-auth mode the path of the URL the front proxy asks about.

// pathOptions is how an app reads paths; an alias so that the upstream
// struct can carry it without importing policy.
type pathOptions = policy.PathOptions

// judgePath decides a request for rawPath (escaped, without query) on host:
// 404 for keygate's reserved prefix in any spelling (never vouched for on
// the way to an app), 400 for a path no honest client sends, otherwise the
// strictest decision over the path's readings. up may be nil (forward-auth
// for a host without an upstream entry): the safe defaults then apply.
func (s *Server) judgePath(up *upstream, host, rawPath, method string, ip netip.Addr, sess *authn.Session, now time.Time) (policy.Decision, *Error) {
	var buf [policy.MaxReadings]policy.Reading
	rs, e := readPath(up, rawPath, buf[:0])
	if e != nil {
		return policy.Decision{}, e
	}
	return s.decideReadings(up, host, method, ip, rs, sess, now)
}

// decideReadings decides a request whose path has the readings rs: the
// strictest decision over every reading and every method the app may act
// on (a HEAD as GET; a POST, unless the upstream says method_override:
// false, as each method the rules name). A method some stack would read
// otherwise is refused (400).
func (s *Server) decideReadings(up *upstream, host, method string, ip netip.Addr, rs []policy.Reading, sess *authn.Session, now time.Time) (policy.Decision, *Error) {
	if !policy.ValidMethod(method) {
		// "delete" is an unknown method to the policy and DELETE to
		// Werkzeug or Symfony, which upper-case what they receive.
		return policy.Decision{}, errf(http.StatusBadRequest, "bad_method", "err.bad_request", nil)
	}
	req := policy.Request{Host: host, Method: method, IP: ip,
		Overridable: method == http.MethodPost && (up == nil || !up.paths.NoMethodOverride)}
	return s.policy.Load().EvaluateReadings(req, rs, subjectOf(sess), now), nil
}

// readPath appends the readings of rawPath to dst, or answers why the path
// is not judged: 404 for the reserved prefix, 400 (bad_path) for a refused
// form. A plain path costs one pass over its bytes and no allocation.
func readPath(up *upstream, rawPath string, dst []policy.Reading) ([]policy.Reading, *Error) {
	var o pathOptions
	if up != nil {
		o = up.paths
	}
	rs, err := policy.AppendReadings(dst, rawPath, o)
	if err != nil {
		// A refused spelling of the reserved prefix ("/.keygate;x/" where
		// the app takes no parameters, "%5C.keygate") is still the portal's
		// and answers as it does.
		if reservedSpelling(rawPath) {
			return dst, errNotFound()
		}
		return dst, errf(http.StatusBadRequest, "bad_path", "err.bad_path", err)
	}
	for _, r := range rs {
		if reservedReading(r.Path) {
			return dst, errNotFound()
		}
	}
	return rs, nil
}

func errNotFound() *Error { return errf(http.StatusNotFound, "not_found", "err.not_found", nil) }

// reservedName is the reserved prefix's segment.
const reservedName = ".keygate"

// reservedReading reports whether a reading's first segment is the reserved
// prefix, in any case: a case-sensitive app has no folded reading, and
// keygate's own router would not take "/.KEYGATE/" either, so it must be
// caught here, not forwarded.
func reservedReading(p string) bool {
	const n = len(reservedName)
	return len(p) > n && strings.EqualFold(p[1:1+n], reservedName) && (len(p) == 1+n || p[1+n] == '/')
}

// reservedSpelling is the lenient test for paths the readings refused: the
// first segment, after any run of separators ("/", "\", %2F, %5C), decoded
// as far as it decodes, up to a separator or ";", compared without case and
// without trailing dots and spaces.
func reservedSpelling(raw string) bool {
	i := 0
	// Skip the leading separators.
	for i < len(raw) {
		switch {
		case raw[i] == '/' || raw[i] == '\\':
			i++
			continue
		case raw[i] == '%' && i+2 < len(raw) && (strings.EqualFold(raw[i+1:i+3], "2f") || strings.EqualFold(raw[i+1:i+3], "5c")):
			i += 3
			continue
		}
		break
	}
	matched := 0 // bytes of reservedName seen so far
	for i < len(raw) {
		c := raw[i]
		i++
		if c == '%' && i+1 < len(raw) {
			// Only paths the readings refused come here: not the hot path.
			if b, err := hex.DecodeString(raw[i : i+2]); err == nil {
				c = b[0]
				i += 2
			}
		}
		if c == '/' || c == '\\' || c == ';' {
			break
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		switch {
		case matched < len(reservedName) && c == reservedName[matched]:
			matched++
		case matched == len(reservedName) && (c == '.' || c == ' '):
			// Windows drops trailing dots and spaces.
		default:
			return false
		}
	}
	return matched == len(reservedName)
}

// rawPathOf is the path part of a request URI as sent (path and query).
func rawPathOf(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		return uri[:i]
	}
	return uri
}
