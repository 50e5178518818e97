package policy

import (
	"errors"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Paths are judged the way the upstream will read them. An app does not
// route the bytes of the request line: a servlet container drops
// ";parameters" from every segment, Express and IIS route case-insensitively,
// Windows servers read "\" as "/" and drop trailing dots and spaces, nginx
// decodes "%2F" into a separator, some stacks decode twice or fold Unicode
// compatibility forms. A rule written for /admin must hold for every one of
// those spellings, so a path is turned into all its readings and a request
// passes only if every reading passes (EvaluateReadings). Spellings no
// honest client produces are refused outright (*PathError), because the
// readings of a stack we did not think of are unknown.

// PathOptions say how an upstream app reads paths. The zero value is the
// safe default: the app may fold case, and it takes no ";" parameters.
type PathOptions struct {
	// CaseSensitive: the app routes case-sensitively, so no case-folded
	// reading is judged.
	CaseSensitive bool
	// PathParameters: the app uses ";name=value" segment parameters
	// (servlet containers' ;jsessionid). A ";" is then allowed and every
	// reading is judged with the parameters stripped; without this option a
	// path holding a ";" (raw or %3B) is refused. An encoded ";" is
	// refused either way: servlet containers strip parameters at a raw ";"
	// only.
	PathParameters bool
	// NoMethodOverride: the app never acts on a POST as another method
	// (no "_method" parameter or override header support), so a POST is
	// judged as a POST only. By default a POST is also judged under every
	// method the rules name (Request.Overridable).
	NoMethodOverride bool
}

// Reading is one way an upstream can read a path.
type Reading struct {
	// Path is decoded, starts with "/", holds no "." or ".." segment, no
	// "\" and no repeated "/". In the reading of a strict server that keeps
	// encoded separators inside a segment, those stay encoded as "%2F" (an
	// encoded slash) and "%5C" (a raw backslash).
	Path string `json:"path"`
	// Folded: Path is case-folded and is to be matched against the rules'
	// case-folded path patterns.
	Folded bool `json:"folded,omitempty"`
}

// MaxReadings bounds how many readings one path has, so that callers can
// keep them in an array on the stack (see AppendReadings).
const MaxReadings = 16

// maxPathLen bounds the paths that are decoded into readings: each reading
// is a copy, and no honest request line is longer (nginx's default buffer
// for the whole line is 8 KiB).
const maxPathLen = 8 << 10

// ErrBadPath is what every *PathError is (errors.Is): a path keygate refuses
// to judge (400).
var ErrBadPath = errors.New("path refused")

// PathProblem names the form a refused path had.
type PathProblem uint8

const (
	PathNotAbsolute       PathProblem = iota + 1 // does not start with "/"
	PathTooLong                                  // longer than 8 KiB and not plain
	PathControl                                  // NUL or another control character, raw or encoded
	PathBadEscape                                // "%" not followed by two hex digits
	PathEncodedBackslash                         // %5C: some servers read it as a separator, others not
	PathDoubleEncoding                           // %25 hiding an escape of ".", "/", "\", ";", a control, or another %25
	PathBadUTF8                                  // invalid or overlong UTF-8 (%C0%AE is an overlong ".")
	PathLookAlike                                // a character some stack turns into ".", "/", "\", ";" or "%" (full-width dot, division slash, …)
	PathDotSegment                               // "." or ".." in some reading (also "..;", "..." and ". ." on Windows)
	PathParameter                                // ";" where the upstream takes no path parameters
	PathEncodedUnreserved                        // a letter, digit, "-", "." or "_" percent-encoded: Express routes the escape, others the letter
	PathFragment                                 // a raw "#": a request line carries no fragment, and Node cuts the path there while others keep it
	PathEncodedSemicolon                         // %3B where the app takes ";" parameters: servlet containers strip only a raw ";"
)

func (p PathProblem) String() string {
	switch p {
	case PathNotAbsolute:
		return "not_absolute"
	case PathTooLong:
		return "too_long"
	case PathControl:
		return "control_character"
	case PathBadEscape:
		return "bad_escape"
	case PathEncodedBackslash:
		return "encoded_backslash"
	case PathDoubleEncoding:
		return "double_encoding"
	case PathBadUTF8:
		return "bad_utf8"
	case PathLookAlike:
		return "look_alike"
	case PathDotSegment:
		return "dot_segment"
	case PathParameter:
		return "path_parameter"
	case PathEncodedUnreserved:
		return "encoded_unreserved"
	case PathFragment:
		return "fragment"
	case PathEncodedSemicolon:
		return "encoded_semicolon"
	}
	return "unknown"
}

// PathError says why a path was refused. It does not quote the path: the
// path is the client's text and goes to logs.
type PathError struct {
	Problem PathProblem
}

func (e *PathError) Error() string { return "policy: path refused: " + e.Problem.String() }

// Is makes every PathError match ErrBadPath.
func (e *PathError) Is(target error) bool { return target == ErrBadPath }

func refuse(p PathProblem) error { return &PathError{Problem: p} }

// Readings returns the distinct readings of raw, the path as the upstream
// will receive it (escaped, without query), or a *PathError. The first
// reading is the plain decoded one, the reading most servers give.
func Readings(raw string, o PathOptions) ([]Reading, error) {
	return AppendReadings(make([]Reading, 0, MaxReadings), raw, o)
}

// AppendReadings is Readings appending to dst, for callers that keep the
// readings on the stack: a plain path (no upper-case letter, no "%", ";" or
// "\", no control or non-ASCII byte, no segment ending in ".") has one
// reading, itself, and appending it allocates nothing; with repeated
// slashes it has two, collapsed (nginx, Tomcat) and as it is (Express
// routes "//one/" to its catch-all, not to /one/). On error dst is returned
// unchanged.
func AppendReadings(dst []Reading, raw string, o PathOptions) ([]Reading, error) {
	if plainPath(raw) {
		p := collapseSlashes(raw)
		dst = append(dst, Reading{Path: p})
		if p != raw {
			dst = append(dst, Reading{Path: raw})
		}
		if !o.CaseSensitive {
			// A plain path is its own folded form; it is still judged
			// against the folded patterns (EvaluateReadings evaluates it
			// once when no pattern changes under folding).
			dst = append(dst, Reading{Path: p, Folded: true})
			if p != raw {
				dst = append(dst, Reading{Path: raw, Folded: true})
			}
		}
		return dst, nil
	}
	return appendSlow(dst, raw, o)
}

// plainPath reports whether p is read the same way by every upstream: the
// hot path's test, one pass over the bytes.
func plainPath(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for i := 1; i < len(p); i++ {
		c := p[i]
		switch {
		case c <= ' ' || c >= 0x7f, c-'A' < 26, c == '%', c == ';', c == '\\', c == '#':
			return false
		case c == '.' && (i+1 == len(p) || p[i+1] == '/'):
			// "." and "..", and "name." which Windows reads as "name".
			return false
		}
	}
	return true
}

// appendSlow computes the readings of a path that is not plain:
//
//	L  lenient: decoded, "%2F" and "\" read as "/"          (nginx, most servers)
//	S  strict: decoded, but "%2F" and "\" stay inside their segment (Go, Express, Tomcat)
//	T  L with trailing dots and spaces dropped from each segment (IIS, Windows)
//	D  L decoded once more, when it still holds escapes (double-decoding stacks)
//	N  L in Unicode compatibility form (NFKC: "ａｄｍｉｎ" is "admin")
//	M  D, then NFKC, then trimmed: everything at once
//
// each with ";" parameters stripped when the app takes them and repeated
// slashes collapsed; L and S also with repeated slashes kept (Express does
// not collapse them); and all of them case-folded too, unless the app is
// case-sensitive. A raw path whose escapes decode to letters, digits, "-",
// "." or "_" is refused rather than read twice (raw and decoded): no honest
// client encodes those, and Express routes the undecoded path.
func appendSlow(dst []Reading, raw string, o PathOptions) ([]Reading, error) {
	if len(raw) == 0 || raw[0] != '/' {
		return dst, refuse(PathNotAbsolute)
	}
	if len(raw) > maxPathLen {
		return dst, refuse(PathTooLong)
	}
	if strings.IndexByte(raw, '#') >= 0 {
		return dst, refuse(PathFragment)
	}
	if o.PathParameters && hasEncodedSemicolon(raw) {
		// Tomcat and Spring strip parameters at a raw ";" only, so
		// "/public%3B/two" is their "public;" segment while a reading
		// that strips at the decoded ";" would judge /public/two.
		return dst, refuse(PathEncodedSemicolon)
	}
	strict, lenient, err := decodeOnce(raw)
	if err != nil {
		return dst, err
	}
	if strings.IndexByte(lenient, ';') >= 0 && !o.PathParameters {
		return dst, refuse(PathParameter)
	}
	if !utf8.ValidString(lenient) {
		return dst, refuse(PathBadUTF8)
	}
	if p := oddRunes(lenient); p != 0 {
		return dst, refuse(p)
	}

	if o.PathParameters {
		lenient, strict = stripParams(lenient), stripParams(strict)
	}
	l := collapseSlashes(lenient)
	s := collapseSlashes(strict)
	d := l
	if hasEscape(l) {
		if d, err = decodeTwice(l); err != nil {
			return dst, err
		}
	}
	n := l
	if !isASCII(l) {
		n = norm.NFKC.String(l)
	}
	m := d
	if !isASCII(d) {
		m = norm.NFKC.String(d)
	}
	base := [...]string{l, s, trimSegments(l), d, n, trimSegments(m), lenient, strict}

	start := len(dst)
	for _, b := range base {
		if p := readingProblem(b); p != 0 {
			return dst[:start], refuse(p)
		}
		dst = appendReading(dst, start, Reading{Path: b})
	}
	if !o.CaseSensitive {
		// Fold each distinct reading once (the exact ones come first).
		exact := dst[start:]
		for _, r := range exact {
			dst = appendReading(dst, start, Reading{Path: foldPath(r.Path), Folded: true})
		}
	}
	return dst, nil
}

// appendReading appends r unless dst[start:] holds it already.
func appendReading(dst []Reading, start int, r Reading) []Reading {
	for _, x := range dst[start:] {
		if x == r {
			return dst
		}
	}
	return append(dst, r)
}

// decodeOnce decodes the escapes of raw into the strict and the lenient
// reading (see appendSlow) and refuses the forms no honest client sends.
func decodeOnce(raw string) (strict, lenient string, err error) {
	if strings.IndexByte(raw, '%') < 0 && strings.IndexByte(raw, '\\') < 0 {
		// Nothing to decode (a path with upper case or ";" only): both
		// readings are raw itself.
		for i := 0; i < len(raw); i++ {
			if c := raw[i]; c <= ' ' || c == 0x7f {
				return "", "", refuse(PathControl)
			}
		}
		return raw, raw, nil
	}
	var sb, lb strings.Builder
	sb.Grow(len(raw) + 8)
	lb.Grow(len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c <= ' ' || c == 0x7f:
			// A raw space or control byte cannot be in a valid request
			// line; whoever forwards it is being fooled.
			return "", "", refuse(PathControl)
		case c == '\\':
			sb.WriteString("%5C")
			lb.WriteByte('/')
		case c == '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return "", "", refuse(PathBadEscape)
			}
			v := unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
			switch {
			case v < ' ' || v == 0x7f:
				return "", "", refuse(PathControl)
			case unreserved(v):
				return "", "", refuse(PathEncodedUnreserved)
			case v == '\\':
				return "", "", refuse(PathEncodedBackslash)
			case v == '/':
				sb.WriteString("%2F")
				lb.WriteByte('/')
			default:
				sb.WriteByte(v)
				lb.WriteByte(v)
			}
		default:
			sb.WriteByte(c)
			lb.WriteByte(c)
		}
	}
	return sb.String(), lb.String(), nil
}

// decodeTwice is the reading of a stack that decodes once more. A second
// decoding that would yield a separator, a dot, a parameter, a control
// character or yet another escape is an attack, not a name.
func decodeTwice(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' || i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			b.WriteByte(c)
			continue
		}
		v := unhex(s[i+1])<<4 | unhex(s[i+2])
		i += 2
		switch v {
		case '/', '\\', ';':
			return "", refuse(PathDoubleEncoding)
		}
		if unreserved(v) { // "." among them
			return "", refuse(PathDoubleEncoding)
		}
		if v < ' ' || v == 0x7f {
			return "", refuse(PathDoubleEncoding)
		}
		b.WriteByte(v)
	}
	out := b.String()
	switch {
	case hasEscape(out):
		return "", refuse(PathDoubleEncoding) // a third decoding would change it again
	case !utf8.ValidString(out):
		return "", refuse(PathDoubleEncoding)
	}
	if p := oddRunes(out); p != 0 {
		return "", refuse(PathDoubleEncoding)
	}
	return out, nil
}

// oddRunes refuses the non-ASCII characters no honest path needs: Unicode
// control characters (C1, which some stacks read as line ends) and
// characters that some stack turns into ".", "/", "\", ";" or "%": those
// whose compatibility form (NFKC) holds one (full-width "．" "／" "＼" "；" "％",
// "․" U+2024, "‥", "﹒" U+FE52, "℀" = "a/c", …) and those that Windows'
// best-fit code-page conversion maps to one (division and fraction slash,
// set minus, the yen and won signs that Japanese and Korean code pages
// show as "\").
func oddRunes(s string) PathProblem {
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if unicode.IsControl(r) {
			return PathControl
		}
		if unicode.Is(unicode.Cf, r) {
			// Format characters (zero-width space and joiners, marks,
			// the BOM) are invisible, and some stacks drop them:
			// "/adm\u200bin" would be /admin there.
			return PathLookAlike
		}
		if bestFitSeparator(r) {
			return PathLookAlike
		}
		// The compatibility form, checked the same way: "¼" is "1⁄4" with
		// a fraction slash.
		for _, c := range string(norm.NFKC.PropertiesString(s[i:]).Decomposition()) {
			if c == '.' || c == '/' || c == '\\' || c == ';' || c == '%' || c < ' ' || c == 0x7f || bestFitSeparator(c) {
				return PathLookAlike
			}
		}
		i += size
	}
	return 0
}

// bestFitSeparator: characters without a compatibility form that Windows'
// best-fit conversion to a code page turns into "/" or "\".
func bestFitSeparator(r rune) bool {
	switch r {
	case '\u2215', '\u2044', '\u2216', '\u29F5', '\u29F8', '\u29F9', '\u2571', '\u2572', '\u00A5', '\u20A9':
		return true
	}
	return false
}

// readingProblem checks one reading: no dot segment, where a dot segment is
// also any segment made of dots and spaces only ("...", ". ."), which
// Windows reads as "." or "..".
func readingProblem(p string) PathProblem {
	if len(p) == 0 || p[0] != '/' {
		return PathNotAbsolute
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if dotLike(seg) {
			return PathDotSegment
		}
	}
	return 0
}

func dotLike(seg string) bool {
	dot := false
	for i := 0; i < len(seg); i++ {
		switch seg[i] {
		case '.':
			dot = true
		case ' ':
		default:
			return false
		}
	}
	return dot
}

// stripParams drops ";…" from every segment, as servlet containers do.
func stripParams(p string) string {
	if strings.IndexByte(p, ';') < 0 {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); {
		c := p[i]
		if c != ';' {
			b.WriteByte(c)
			i++
			continue
		}
		j := strings.IndexByte(p[i:], '/')
		if j < 0 {
			break
		}
		i += j
	}
	return b.String()
}

// trimSegments drops trailing dots and spaces from every segment, as
// Windows does with file names ("admin." and "admin%20" are "admin").
// Segments of dots and spaces only are refused before this is called.
func trimSegments(p string) string {
	if !strings.Contains(p, "./") && !strings.Contains(p, " /") && !strings.HasSuffix(p, ".") && !strings.HasSuffix(p, " ") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i, seg := range strings.Split(p, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(strings.TrimRight(seg, ". "))
	}
	return collapseSlashes(b.String())
}

// collapseSlashes turns every run of "/" into one, as most servers do.
func collapseSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// foldPath is the case-folded form of a path or a path pattern: ASCII
// letters in lower case, every other letter the same for all its case
// variants, and the letters whose case mappings reach ASCII (Kelvin sign
// K, long s ſ, dotted İ and dotless ı) as that ASCII letter, since .NET's
// and Java's case-insensitive comparisons treat them so.
func foldPath(p string) string {
	clean := true
	for i := 0; i < len(p); i++ {
		if c := p[i]; c-'A' < 26 || c >= utf8.RuneSelf {
			clean = false
			break
		}
	}
	if clean {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for _, r := range p {
		b.WriteRune(foldRune(r))
	}
	return b.String()
}

func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return r
	}
	switch r {
	case '\u0130', '\u0131': // İ, ı
		return 'i'
	case utf8.RuneError:
		return r
	}
	// The smallest member of the rune's case-folding orbit, lowered: K
	// (U+212A), K and k all give k; ſ, S and s give s; Σ, σ and ς give σ.
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		m = min(m, f)
	}
	return unicode.ToLower(m)
}

// unreserved reports whether an escape decodes to a character no client
// needs to encode: a letter, a digit, "-", "." or "_" ("~" is left out:
// older encoders escape it).
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_'
}

func hasEscape(s string) bool {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == '%' && isHex(s[i+1]) && isHex(s[i+2]) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// EvaluateReadings decides a request whose path has the given readings
// (AppendReadings; r.Path is ignored): it allows only when every distinct
// reading is allowed, and otherwise answers with the strictest decision
// (see stricter). Folded readings are matched against the case-folded path
// patterns. A reading that cannot change the answer is not evaluated again:
// when no pattern changes under folding, a path and its folded form are one
// evaluation. It allocates nothing. No readings at all is a caller's
// mistake and denies.
func (c *Compiled) EvaluateReadings(r Request, readings []Reading, s Subject, now time.Time) Decision {
	d, _, _, _ := c.strictest(nil, r, readings, s, now)
	return d
}

// EvaluateReadingsAt is EvaluateReadings with the request's host resolved
// beforehand (ResolveHost; see EvaluateAt for when h is used): the gate's
// call, which then hashes no host at all.
func (c *Compiled) EvaluateReadingsAt(h *Host, r Request, readings []Reading, s Subject, now time.Time) Decision {
	d, _, _, _ := c.strictest(h, r, readings, s, now)
	return d
}

// ExplainReadings explains the decision EvaluateReadings reaches: the
// evaluation of the reading (and method) that decided, with every reading
// listed.
func (c *Compiled) ExplainReadings(r Request, readings []Reading, s Subject, now time.Time) Explanation {
	_, rd, method, ok := c.strictest(nil, r, readings, s, now)
	if !ok {
		e := c.Explain(r, s, now)
		e.Decision = Decision{Outcome: Deny, Reason: ReasonDenied, RuleIndex: -1, RuleName: "default", Action: ActionDeny}
		e.Missing = "the path has no reading to judge"
		return e
	}
	r.Path, r.Method = rd.Path, method
	e := c.forReading(rd).Explain(r, s, now)
	e.Readings = readings
	return e
}

// strictest evaluates every distinct reading, under every method the app
// may act on, and returns the strictest decision with the reading and the
// method that gave it (ok false: no reading at all).
//
// Besides the readings themselves, a trailing slash is judged both ways:
// Express (strict: false), Spring and ASP.NET serve /admin/ from the
// /admin route and the other way round, while the patterns tell them apart.
// The reading without it costs no allocation and is judged whenever the
// path ends in "/"; the one with it is judged only when some rule that is
// not a bypass has a pattern the added slash can newly match (c.slashAdd).
//
// The host is looked up once (or not at all, given h) for every reading:
// the folded policy has the same rules in the same order, so the candidate
// list serves both.
func (c *Compiled) strictest(h *Host, r Request, readings []Reading, s Subject, now time.Time) (best Decision, bestRd Reading, bestMethod string, ok bool) {
	if c == nil || len(readings) == 0 {
		return denyAll, Reading{}, r.Method, false
	}
	cands := c.candidates(h, r.Host)
	own := r.Method
	judge := func(rd Reading, method string) {
		r.Path, r.Method = rd.Path, method
		d := c.forReading(rd).decision(cands, &r, &s, now)
		if !ok || stricter(&d, &best) {
			best, bestRd, bestMethod, ok = d, rd, method, true
		}
	}
	methods := func(rd Reading) {
		judge(rd, own)
		// Servers answer HEAD with their GET handler (net/http's mux,
		// Express, servlets): a HEAD is a GET without the body.
		if own == "HEAD" {
			judge(rd, "GET")
		}
		if r.Overridable {
			for _, m := range c.overrides {
				if m != own {
					judge(rd, m)
				}
			}
		}
	}
	for i, rd := range readings {
		if c.seenReading(readings[:i], rd) {
			continue
		}
		methods(rd)
		switch p := rd.Path; {
		case p == "/":
		case p[len(p)-1] == '/':
			methods(Reading{Path: p[:len(p)-1], Folded: rd.Folded})
		case c.slashAdd:
			methods(Reading{Path: p + "/", Folded: rd.Folded})
		}
		if best.Outcome == Deny {
			break // nothing is stricter
		}
	}
	return best, bestRd, bestMethod, ok
}

// hasEncodedSemicolon reports whether raw holds %3B in either case.
func hasEncodedSemicolon(raw string) bool {
	for i := strings.IndexByte(raw, '%'); i >= 0 && i+2 < len(raw); {
		if raw[i+1] == '3' && (raw[i+2] == 'b' || raw[i+2] == 'B') {
			return true
		}
		j := strings.IndexByte(raw[i+1:], '%')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// ValidMethod reports whether m is a method every server reads the same
// way: upper-case letters, "-" and "_", at most 32 bytes. Methods are
// case-sensitive in HTTP, but Werkzeug, Symfony and Laravel upper-case
// what they receive, so "delete" would be judged as an unknown method and
// run as DELETE.
func ValidMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; !('A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// forReading is the compiled policy that judges rd: the case-folded
// patterns for a folded reading.
func (c *Compiled) forReading(rd Reading) *Compiled {
	if rd.Folded && c.fold != nil {
		return c.fold
	}
	return c
}

// seenReading reports whether a reading evaluated before gives the same
// answer as rd: the same path matched against the same patterns.
func (c *Compiled) seenReading(before []Reading, rd Reading) bool {
	for _, x := range before {
		if x.Path == rd.Path && (x.Folded == rd.Folded || c.fold == nil) {
			return true
		}
	}
	return false
}

// stricter reports whether a demands more than b. The order: deny, then
// challenge, then allow. Between two challenges, one for a second factor
// (second_factor, stale, webauthn) demands more than one to sign in; then
// the matched rule's action (deny > two_factor > one_factor > bypass: a
// rule that names users or groups asks an anonymous client to sign in
// whatever its action); then the narrower list of acceptable factors; then
// the shorter max_age. On a tie the earlier reading stands.
func stricter(a, b *Decision) bool {
	if a.Outcome != b.Outcome {
		return outcomeRank(a.Outcome) > outcomeRank(b.Outcome)
	}
	if a.Outcome != Challenge {
		return false
	}
	if ca, cb := a.Reason != ReasonSignIn, b.Reason != ReasonSignIn; ca != cb {
		return ca
	}
	if ra, rb := actionRank(a.Action), actionRank(b.Action); ra != rb {
		return ra > rb
	}
	if la, lb := len(a.Acceptable), len(b.Acceptable); la != lb && la > 0 && lb > 0 {
		return la < lb
	}
	if a.MaxAge != b.MaxAge {
		return a.MaxAge != 0 && (b.MaxAge == 0 || a.MaxAge < b.MaxAge)
	}
	return false
}

func outcomeRank(o Outcome) int {
	switch o {
	case Allow:
		return 0
	case Challenge:
		return 1
	}
	return 2 // Deny, and anything unknown
}

func actionRank(a string) int {
	switch a {
	case ActionBypass:
		return 0
	case ActionOneFactor:
		return 1
	case ActionTwoFactor:
		return 2
	}
	return 3
}
