package policy

import (
	"encoding/hex"
	"errors"
	"strings"
)

// keygate serves its portal and API under /.keygate/ on every protected
// host; no request for that prefix, in any spelling an upstream could read
// as it, is ever judged by a policy or forwarded to an app.

// ReservedPrefix is keygate's own path prefix.
const ReservedPrefix = "/.keygate/"

// reservedName is the reserved prefix's segment.
const reservedName = ".keygate"

// ErrReserved: the path is keygate's reserved prefix in some spelling.
var ErrReserved = errors.New("policy: the path is keygate's reserved prefix /.keygate/")

// ReadPath appends the readings of raw (the escaped path, without query)
// to dst as the gate judges them: ErrReserved for keygate's own prefix in
// any spelling (never vouched for on the way to an app), a *PathError for a
// form no honest client sends. A plain path costs one pass over its bytes
// and no allocation.
func ReadPath(dst []Reading, raw string, o PathOptions) ([]Reading, error) {
	rs, err := AppendReadings(dst, raw, o)
	if err != nil {
		// A refused spelling of the reserved prefix ("/.keygate;x/" where
		// the app takes no parameters, "%5C.keygate") is still the portal's
		// and answers as it does.
		if ReservedSpelling(raw) {
			return dst, ErrReserved
		}
		return dst, err
	}
	for _, r := range rs {
		if ReservedReading(r.Path) {
			return dst, ErrReserved
		}
	}
	return rs, nil
}

// ReservedReading reports whether a reading's first segment is the reserved
// prefix, in any case: a case-sensitive app has no folded reading, and
// keygate's own router would not take "/.KEYGATE/" either, so it must be
// caught here, not forwarded.
func ReservedReading(p string) bool {
	const n = len(reservedName)
	return len(p) > n && strings.EqualFold(p[1:1+n], reservedName) && (len(p) == 1+n || p[1+n] == '/')
}

// ReservedSpelling is the lenient test for paths the readings refused: the
// first segment, after any run of separators ("/", "\", %2F, %5C), decoded
// as far as it decodes, up to a separator or ";", compared without case and
// without trailing dots and spaces.
func ReservedSpelling(raw string) bool {
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

// HostOnly is a Host header's host: without its port and brackets, lower
// case (the form policies and upstreams name hosts in).
func HostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}
