package web

import (
	"fmt"
	"strings"
	"testing"
)

// The path corpus of the real-app battery (realapps_test.go): spellings of
// the one-factor, two-factor and deny areas (and of keygate's reserved
// prefix) generated from the classes of issue 11, part 1 — each class is a
// way some common upstream reads a path differently from a plain reading.
// The spellings are written as they go on the request line, byte for byte.

// spelling is one request target of the corpus.
type spelling struct {
	class  string // the class of issue 11 it comes from
	target string // the area it aims at: public, one, two, deny, reserved
	path   string // the request target, raw
	// never: a reading of the reserved prefix under the readings keygate
	// must apply (parameters stripped, case folded, backslash or %2f as
	// slash, slashes merged, dot segments): keygate must not forward it at
	// all, whatever the app would make of it.
	never bool
}

// The areas every app of the battery has.
var realAreas = []string{"public", "one", "two", "deny"}

// dotdotSpellings are ways to write a ".." segment that some stack reads as
// "..": servlet parameters, percent-encoding, double encoding, overlong
// UTF-8, full-width dots, a trailing NUL or space.
var dotdotSpellings = []string{
	"..", "%2e%2e", ".%2e", "%2e.", "%2E%2E", "..;", "..;x",
	"%252e%252e", "%c0%ae%c0%ae", "%e0%80%ae%e0%80%ae",
	"．．", "%ef%bc%8e%ef%bc%8e", "..%00", "..%20",
}

// separatorSpellings are ways to write "/" that some stack reads as one:
// backslash raw and encoded, encoded and double-encoded slash and
// backslash, overlong UTF-8, full-width slash.
var separatorSpellings = []string{
	"/", `\`, "%5c", "%5C", "%2f", "%2F", "%252f", "%255c",
	"%c0%af", "%e0%80%af", "%c1%9c", "／", "%ef%bc%8f",
}

var controlBytes = []string{"%00", "%01", "%09", "%0a", "%0d", "%0b", "%0c", "%1b", "%1f", "%7f"}

// caseVariants are upper, title and two alternating spellings of name.
func caseVariants(name string) []string {
	alt := func(odd bool) string {
		b := []byte(name)
		for i := range b {
			if (i%2 == 1) == odd {
				b[i] = b[i] - 'a' + 'A'
			}
		}
		return string(b)
	}
	return []string{strings.ToUpper(name), strings.ToUpper(name[:1]) + name[1:], alt(true), alt(false)}
}

// fullWidth spells name in full-width letters (U+FF41…): raw UTF-8 and
// percent-encoded.
func fullWidth(name string) (raw, encoded string) {
	var r, e strings.Builder
	for _, c := range name {
		fw := string(rune(0xFF41 + (c - 'a')))
		r.WriteString(fw)
		for _, b := range []byte(fw) {
			fmt.Fprintf(&e, "%%%02x", b)
		}
	}
	return r.String(), e.String()
}

// realappCorpus generates the corpus: a baseline (plain paths, whose
// answers prove the battery can see each area), then every class applied
// to each protected area, traversal from the public area in every
// combination of dot-dot and separator spellings, and the reserved prefix
// in other spellings.
func realappCorpus() []spelling {
	var out []spelling
	seen := map[string]bool{}
	add := func(class, target, path string, never bool) {
		if seen[path] {
			return
		}
		seen[path] = true
		out = append(out, spelling{class: class, target: target, path: path, never: never})
	}
	each := func(class, target string, patterns ...string) {
		for _, p := range patterns {
			add(class, target, strings.ReplaceAll(p, "{T}", target), false)
		}
	}
	for _, a := range realAreas {
		each("plain", a, "/{T}/", "/{T}/file.txt", "/{T}/x/", "/{T}/x/file.txt")
	}
	add("plain", "none", "/", false)

	for _, t := range []string{"one", "two", "deny"} {
		each(";params", t,
			"/{T};x/file.txt", "/{T};/file.txt", "/{T};jsessionid=0/", "/{T};x/",
			"/{T}/file.txt;x", "/{T}/x;y/", "/{T};a=b/x;c/file.txt;d",
			"/public;x/../{T}/")
		each("..;", t,
			"/public/..;/{T}/file.txt", "/public/..;x/{T}/", "/public;x/..;/{T}/",
			"/public/x/..;/..;/{T}/file.txt", "/public/.;/..;/{T}/", "/public/x;y/..;/..;/{T}/",
			"/public/..;/..;/{T}/", "/..;/{T}/", "/public/..;/{T};x/file.txt", "/public/..;jsessionid=0/{T}/")
		for _, v := range caseVariants(t) {
			each("case", t, "/"+v+"/", "/"+v+"/file.txt", "/"+v+"/x/", "/public/..;/"+v+"/")
		}
		each("backslash", t,
			`/public\..\{T}\file.txt`, `/public\..\{T}/`, `/public/..\{T}/file.txt`,
			`/{T}\file.txt`, `/public/x\..\..\{T}/`, `/\{T}/`, `/public\{T}/`)
		for _, bs := range []string{"%5c", "%5C"} {
			each("%5c", t,
				"/public"+bs+".."+bs+"{T}"+bs+"file.txt", "/public/.."+bs+"{T}/", "/{T}"+bs+"file.txt",
				"/public/x"+bs+".."+bs+".."+bs+"{T}/", "/"+bs+"{T}/")
		}
		for _, c := range controlBytes {
			each("control", t, "/{T}"+c+"/file.txt", "/public/.."+c+"/{T}/", "/{T}/file.txt"+c)
		}
		for _, s := range []string{".", "...", "%20", "%2e", ".%20", "%20.", "%2e%20", "%2e%2e%2e", "::$DATA"} {
			each("trailing dot/space", t, "/{T}"+s+"/", "/{T}"+s+"/file.txt")
		}
		each("trailing dot/space", t, "/{T}/file.txt.", "/{T}/file.txt%20", "/{T}/x./", "/{T}/x%20/")
		for _, d := range []string{"%2e%2e", ".%2e", "%2e.", "%2E%2E", "%2E."} {
			each("%2e", t, "/public/"+d+"/{T}/file.txt", "/public/x/"+d+"/"+d+"/{T}/", "/public/"+d+"/{T}/")
		}
		each("%2e", t, "/%2e/{T}/", "/public/%2e/../{T}/", "/%2e%2e/{T}/")
		each("%2f", t,
			"/public%2f..%2f{T}/file.txt", "/public/..%2f{T}/", "/public%2F..%2F{T}%2Ffile.txt",
			"/{T}%2ffile.txt", "/public%2f%2e%2e%2f{T}/", "/public/x%2f..%2f..%2f{T}/", "/%2f{T}/", "/%2F{T}/x/")
		each("%25 double", t,
			"/public/%252e%252e/{T}/", "/public/..%252f{T}/", "/public/..%255c{T}/",
			"/public%252f..%252f{T}/", "/public/%252E%252E/{T}/file.txt", "/public/%25%32%65%25%32%65/{T}/",
			"/public/%252e%252e%252f{T}/", "/public%255c..%255c{T}/",
			fmt.Sprintf("/%%25%02x%s/", t[0], t[1:]), fmt.Sprintf("/%%25%02X%s/file.txt", t[0], t[1:]))
		each("encoded letters", t,
			fmt.Sprintf("/%%%02x%s/", t[0], t[1:]), fmt.Sprintf("/%s%%%02X/file.txt", t[:len(t)-1], t[len(t)-1]),
			fmt.Sprintf("/%%%02X%s/x/", t[0]-'a'+'A', t[1:]))
		each("overlong UTF-8", t,
			"/public/%c0%ae%c0%ae/{T}/", "/public/..%c0%af{T}/", "/public/%e0%80%ae%e0%80%ae/{T}/",
			"/public%c0%af..%c0%af{T}/", "/public/..%c1%9c{T}/", "/public/..%e0%80%af{T}/",
			"/public/%c0%ae%c0%ae%c0%af{T}/file.txt", "/public/%f0%80%80%ae%f0%80%80%ae/{T}/",
			"/{T}%c0%ae/", "/%c0%af{T}/")
		fwRaw, fwEnc := fullWidth(t)
		each("full-width", t,
			"/public/．．/{T}/", "/public/%ef%bc%8e%ef%bc%8e/{T}/", "/public/..／{T}/", "/public/..%ef%bc%8f{T}/",
			"/public／..／{T}/", "/public%ef%bc%8f%ef%bc%8e%ef%bc%8e%ef%bc%8f{T}/", "/{T}．/", "/{T}%ef%bc%8e/file.txt",
			"/"+fwRaw+"/", "/"+fwEnc+"/file.txt", "/public/..＼{T}/", "/public/..%ef%bc%bc{T}/")
		each("look-alike", t,
			"/public/․․/{T}/", "/public/%e2%80%a4%e2%80%a4/{T}/", "/public/..∕{T}/", "/public/..%e2%88%95{T}/",
			"/public/..%e2%a7%b5{T}/", "/public/..%e2%81%84{T}/")
		each("//", t,
			"//{T}/", "///{T}/file.txt", "//{T}//file.txt", "/{T}//x/", "//public/..;/{T}/",
			"/.//{T}/", "//./{T}/", "/public//..;/{T}/", "//{T};x/", "////{T}/x/")
		for _, d := range dotdotSpellings {
			for _, s := range separatorSpellings {
				each("traversal", t,
					"/public"+s+d+s+"{T}"+s+"file.txt",
					"/public/"+d+s+"{T}/file.txt")
			}
			each("traversal", t, "/public/x/"+d+"/"+d+"/{T}/", "/public/"+d+"/"+d+"/{T}/x/")
		}
	}

	never := func(patterns ...string) {
		for _, p := range patterns {
			add("reserved prefix", "reserved", p, true)
		}
	}
	never("/.keygate/x", "/.keygate",
		"/.KEYGATE/api/session", "/.Keygate/x", "/.kEYGATE/", "/.KEYGATE",
		"//.keygate/x", "///.keygate/api/session", "//.KEYGATE/x",
		"/.keygate;x/x", "/.keygate;/api/session", "/.KEYGATE;x/", "/.keygate;jsessionid=0/api/session",
		"/public/..;/.keygate/x", "/public/..;/.KEYGATE/x", "/public/%2e%2e/.keygate/x", "/public/../.keygate/x",
		"/%2ekeygate/x", "/%2Ekeygate/x", "/%2eKEYGATE/x", "/.keygate%2fx", "/.keygate%2Fapi%2Fsession",
		`/.keygate\x`, "/.keygate%5cx", `/public\..\.keygate\x`, "/public/..%2f.keygate/x", "/./.keygate/x",
		`/\.keygate/x`)
	for _, p := range []string{
		"/.keygate./x", "/.keygate%20/x", "/.keygate%00/x", "/.keygate%2e/x", "/%252ekeygate/x",
		"/.keygate%252fx", "/%ef%bc%8ekeygate/x", "/．keygate/x", "/%c0%aekeygate/x",
		"/public/%252e%252e/.keygate/x", "/public/%c0%ae%c0%ae/.keygate/x", "/public/．．/.keygate/x",
		"/.keygate%09/x", "/.keygate::$DATA/x",
	} {
		add("reserved prefix", "reserved", p, false)
	}
	return out
}

// TestRealAppCorpus checks the corpus itself: big enough, every class of
// issue 11 present, every spelling a request target an HTTP/1.1 request
// line can carry (no space, no raw control byte), and no duplicates.
func TestRealAppCorpus(t *testing.T) {
	corpus := realappCorpus()
	if len(corpus) < 300 {
		t.Fatalf("the corpus has %d spellings, issue 11 asks for at least 300", len(corpus))
	}
	classes := map[string]int{}
	seen := map[string]bool{}
	for _, s := range corpus {
		classes[s.class]++
		if seen[s.path] {
			t.Errorf("duplicate spelling %q", s.path)
		}
		seen[s.path] = true
		if s.path == "" || s.path[0] != '/' {
			t.Errorf("%q: not an origin-form target", s.path)
		}
		for i := 0; i < len(s.path); i++ {
			if c := s.path[i]; c <= ' ' || c == 0x7f {
				t.Errorf("%q: raw byte %#x cannot go on a request line", s.path, c)
			}
		}
	}
	for _, c := range []string{"plain", ";params", "..;", "case", "backslash", "%5c", "control",
		"trailing dot/space", "%2e", "%2f", "%25 double", "overlong UTF-8", "full-width", "//",
		"traversal", "reserved prefix"} {
		if classes[c] == 0 {
			t.Errorf("class %q has no spelling", c)
		}
	}
	t.Logf("corpus: %d spellings: %v", len(corpus), classes)
}
