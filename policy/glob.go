package policy

import (
	"fmt"
	"strings"
)

// Path patterns are matched segment by segment:
//
//	/favicon.ico   exactly that path
//	/static/*      one segment under /static ("*" never crosses "/"),
//	               including the empty one of "/static/"
//	/img/*.png     "*" may sit anywhere inside a segment
//	/api/**        /api itself and everything below it
//	/**/*.js       any .js file, at any depth
//
// "**" must be a whole segment and matches zero or more segments. There is
// no "?" or character class: paths are matched without their query, and the
// few wildcards keep the matcher a loop over the path with no allocation and
// no regexp at request time.

type segKind uint8

const (
	segLiteral segKind = iota // compared byte for byte
	segStar                   // contains '*', matches within one segment
	segAny                    // "**": zero or more whole segments
)

type segment struct {
	kind segKind
	text string
}

type globMode uint8

const (
	globExact   globMode = iota // no wildcard: string equality
	globPrefix                  // literal + "/**": prefix test
	globOneSeg                  // literal + "/*": prefix test and no further "/"
	globGeneral                 // anything else: literal prefix, then the segment matcher
)

// glob is a compiled path pattern. Most rules fail on the path, so every
// mode starts with a plain prefix test that rejects most paths at once.
type glob struct {
	mode globMode
	// globExact: the pattern; globPrefix: the pattern without "/**";
	// globOneSeg, globGeneral: the literal segments before the first
	// wildcard, with their trailing "/" ("/" at least).
	lit  string
	segs []segment // globGeneral: the segments after lit
}

// compileGlob checks a path pattern and compiles it. The message, when not
// empty, is meant for the person who wrote the pattern.
func compileGlob(s string) (glob, string) {
	switch {
	case s == "":
		return glob{}, "empty path pattern; patterns start with /, e.g. /static/*"
	case s[0] != '/':
		if strings.HasPrefix(s, "**") {
			return glob{}, fmt.Sprintf("%q does not start with /; write %q", s, "/"+s)
		}
		if s[0] == '*' {
			return glob{}, fmt.Sprintf("%q does not start with /; to match at any depth write %q", s, "/**/"+s)
		}
		return glob{}, fmt.Sprintf("%q does not start with /", s)
	case strings.ContainsAny(s, "?#"):
		return glob{}, fmt.Sprintf("%q contains ? or #; paths are matched without query or fragment and ? is not a wildcard", s)
	}
	var g glob
	wild, lastAny := 0, false
	for seg := range strings.SplitSeq(s[1:], "/") {
		switch {
		case seg == "." || seg == "..":
			return glob{}, fmt.Sprintf("%q has a %q segment; requests are matched on the cleaned path, so it would never match", s, seg)
		case seg == "**":
			// "/a/**/**/b" means the same as "/a/**/b"; one is enough for
			// the matcher.
			if lastAny {
				continue
			}
			g.segs = append(g.segs, segment{kind: segAny})
			wild++
			lastAny = true
			continue
		case strings.Contains(seg, "**"):
			return glob{}, fmt.Sprintf("%q: \"**\" must be a whole path segment, as in /api/** or /**/*.js", s)
		case strings.Contains(seg, "*"):
			g.segs = append(g.segs, segment{kind: segStar, text: seg})
			wild++
		default:
			g.segs = append(g.segs, segment{kind: segLiteral, text: seg})
		}
		lastAny = false
	}
	// Leading literal segments become a prefix test.
	lead := 0
	var lit strings.Builder
	lit.WriteByte('/')
	for lead < len(g.segs) && g.segs[lead].kind == segLiteral {
		lit.WriteString(g.segs[lead].text + "/")
		lead++
	}
	switch {
	case wild == 0:
		g.mode, g.lit, g.segs = globExact, s, nil
	case lead == len(g.segs)-1 && g.segs[lead].kind == segAny:
		// "/api/**": /api itself or anything under it. The literal drops
		// its last "/", which "/a//**" needs; that one goes the general way.
		g.mode, g.lit = globPrefix, strings.TrimSuffix(lit.String(), "/")
		if strings.HasSuffix(g.lit, "/") {
			g.mode, g.lit = globGeneral, "/"
			break
		}
		g.segs = nil
	case lead == len(g.segs)-1 && g.segs[lead].text == "*":
		// "/static/*": one more segment, whatever it is.
		g.mode, g.lit, g.segs = globOneSeg, lit.String(), nil
	default:
		g.mode, g.lit, g.segs = globGeneral, lit.String(), g.segs[lead:]
	}
	return g, ""
}

// match reports whether path matches. Paths that do not start with "/"
// (such as the "*" of OPTIONS *) match no pattern.
func (g *glob) match(path string) bool {
	switch g.mode {
	case globExact:
		return path == g.lit
	case globPrefix:
		if len(path) == 0 || path[0] != '/' || !strings.HasPrefix(path, g.lit) {
			return false
		}
		return len(path) == len(g.lit) || path[len(g.lit)] == '/'
	case globOneSeg:
		return strings.HasPrefix(path, g.lit) && strings.IndexByte(path[len(g.lit):], '/') < 0
	}
	if !strings.HasPrefix(path, g.lit) {
		return false
	}
	// Resume at the "/" that ends the literal part.
	return matchSegments(g.segs, path[len(g.lit)-1:])
}

// matchSegments is the classic wildcard loop lifted from bytes to path
// segments: a "**" remembers where it stands, and on a mismatch it swallows
// one more segment and the loop resumes after it. Only the latest "**" needs
// remembering, so the worst case is O(segments²) whatever the pattern, and
// nothing is allocated.
func matchSegments(segs []segment, path string) bool {
	if len(path) == 0 || path[0] != '/' {
		return false
	}
	p := path[1:]
	n := len(p)
	// pi is the start of the current path segment in p; pi == n+1 means all
	// segments are used up ("/" has one empty segment, so pi == n is not).
	si, pi := 0, 0
	backSi, backPi := -1, 0
	for si < len(segs) || pi <= n {
		if si < len(segs) {
			sg := &segs[si]
			if sg.kind == segAny {
				backSi, backPi = si, nextSegment(p, pi)
				si++
				continue
			}
			if pi <= n {
				end := segmentEnd(p, pi)
				if matchWithin(sg, p[pi:end]) {
					si++
					pi = end + 1
					continue
				}
			}
		}
		if backSi >= 0 && backPi <= n+1 {
			si, pi = backSi, backPi
			continue
		}
		return false
	}
	return true
}

// segmentEnd returns the index of the '/' ending the segment at pi, or len(p).
func segmentEnd(p string, pi int) int {
	if i := strings.IndexByte(p[pi:], '/'); i >= 0 {
		return pi + i
	}
	return len(p)
}

// nextSegment returns where the segment after the one at pi starts; past the
// last segment it returns len(p)+2, which the caller reads as "nothing left
// to swallow".
func nextSegment(p string, pi int) int {
	if pi > len(p) {
		return len(p) + 2
	}
	return segmentEnd(p, pi) + 1
}

func matchWithin(sg *segment, s string) bool {
	if sg.kind == segLiteral {
		return s == sg.text
	}
	return matchStar(sg.text, s)
}

// matchStar matches one segment against a pattern whose only wildcard is
// '*' (any run of bytes; the segment holds no '/'). Same single-backtrack
// loop as path.Match without the character classes.
func matchStar(pat, s string) bool {
	px, sx := 0, 0
	backPx, backSx := 0, 0
	for px < len(pat) || sx < len(s) {
		if px < len(pat) {
			c := pat[px]
			if c == '*' {
				backPx, backSx = px, sx+1
				px++
				continue
			}
			if sx < len(s) && s[sx] == c {
				px++
				sx++
				continue
			}
		}
		if 0 < backSx && backSx <= len(s) {
			px, sx = backPx, backSx
			continue
		}
		return false
	}
	return true
}
