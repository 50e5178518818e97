package policy

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func exact(ps ...string) []Reading {
	out := make([]Reading, len(ps))
	for i, p := range ps {
		out[i] = Reading{Path: p}
	}
	return out
}

func folded(ps ...string) []Reading {
	out := make([]Reading, len(ps))
	for i, p := range ps {
		out[i] = Reading{Path: p, Folded: true}
	}
	return out
}

var (
	caseSensitive = PathOptions{CaseSensitive: true}
	withParams    = PathOptions{PathParameters: true}
)

// Each class of spelling an upstream reads differently, with the readings
// it must produce.
func TestReadings(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		o    PathOptions
		want []Reading
	}{
		{"plain", "/admin/users", PathOptions{}, append(exact("/admin/users"), folded("/admin/users")...)},
		{"plain, case-sensitive app", "/admin/users", caseSensitive, exact("/admin/users")},
		{"root", "/", PathOptions{}, append(exact("/"), folded("/")...)},
		{"repeated slashes: collapsed, and as they are (Express)", "//admin///x//", caseSensitive, exact("/admin/x/", "//admin///x//")},
		{"upper case folded", "/ADMIN/Users", PathOptions{}, append(exact("/ADMIN/Users"), folded("/admin/users")...)},
		{"upper case, case-sensitive app", "/ADMIN", caseSensitive, exact("/ADMIN")},
		{"servlet parameters stripped", "/admin;jsessionid=1/x;a=b", withParams, append(exact("/admin/x"), folded("/admin/x")...)},
		{"parameter in the first segment", "/;x/admin", PathOptions{PathParameters: true, CaseSensitive: true}, exact("/admin", "//admin")},
		{"backslash as slash", `/admin\x`, caseSensitive, exact("/admin/x", "/admin%5Cx")},
		{"encoded slash decoded and kept", "/api/a%2Fb", caseSensitive, exact("/api/a/b", "/api/a%2Fb")},
		{"encoded slash, folded", "/API/a%2fb", PathOptions{}, append(exact("/API/a/b", "/API/a%2Fb"), folded("/api/a/b", "/api/a%2fb")...)},
		{"trailing dot (Windows)", "/admin.", caseSensitive, exact("/admin.", "/admin")},
		{"trailing dots and spaces", "/admin.%20./x", caseSensitive, exact("/admin. ./x", "/admin/x")},
		{"segment of spaces only", "/a/%20/b", caseSensitive, exact("/a/ /b", "/a/b")},
		{"escaped space", "/a%20b", caseSensitive, exact("/a b")},
		{"double-encoded space", "/a%2520b", caseSensitive, exact("/a%20b", "/a b")},
		{"double-encoded percent", "/100%2525", caseSensitive, exact("/100%25", "/100%")},
		{"literal percent", "/100%25", caseSensitive, exact("/100%")},
		{"full-width letters (NFKC)", "/%EF%BD%81dmin", caseSensitive, exact("/ａdmin", "/admin")},
		{"Kelvin sign folds to k", "/%E2%84%AAey", PathOptions{}, append(exact("/\u212Aey", "/Key"), folded("/key")...)},
		{"dotless i folds to i", "/adm%C4%B1n", PathOptions{}, append(exact("/adm\u0131n"), folded("/admin")...)},
		{"long s folds to s", "/%C5%BFecret", PathOptions{}, append(exact("/\u017Fecret", "/secret"), folded("/secret")...)},
		{"non-ASCII upper case", "/CAF%C3%89", PathOptions{}, append(exact("/CAFÉ"), folded("/café")...)},
		{"raw UTF-8", "/caf\xc3\xa9", caseSensitive, exact("/café")},
		{"everything at once", `/API;v=1\Admin.%2F%2520`, PathOptions{PathParameters: true},
			// Tomcat strips ";v=1\Admin.%2F%2520" whole: no raw "/" ends the parameter.
			append(exact("/API/Admin./%20", "/API", "/API/Admin/%20", "/API/Admin./ ", "/API/Admin/"),
				folded("/api/admin./%20", "/api", "/api/admin/%20", "/api/admin./ ", "/api/admin/")...)},
		{"everything, one more decoding", "/x%2520.", caseSensitive, exact("/x%20.", "/x%20", "/x .", "/x")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Readings(tc.raw, tc.o)
			if err != nil {
				t.Fatalf("Readings(%q) = %v", tc.raw, err)
			}
			// The first reading is the plain decoded one; the rest may come
			// in any order.
			if len(got) == 0 || got[0] != tc.want[0] {
				t.Errorf("first reading %v, want %v", got, tc.want[0])
			}
			sortReadings(got)
			sortReadings(tc.want)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Readings(%q, %+v)\n got %v\nwant %v", tc.raw, tc.o, got, tc.want)
			}
		})
	}
}

func sortReadings(rs []Reading) {
	slices.SortFunc(rs, func(a, b Reading) int {
		if a.Folded != b.Folded {
			if a.Folded {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Path, b.Path)
	})
}

// Forms no honest client sends are refused with the problem they have,
// whatever the options.
func TestReadingsRefused(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want PathProblem
		// paramsToo: refused for the same reason with path_parameters on.
		paramsToo bool
	}{
		{"", PathNotAbsolute, true},
		{"admin", PathNotAbsolute, true},
		{"*", PathNotAbsolute, true},
		{"/" + strings.Repeat("%41", 3000), PathTooLong, true},
		// NUL and control bytes, raw and encoded, C0 and C1.
		{"/a%00b", PathControl, true},
		{"/a\x00b", PathControl, true},
		{"/a%0d%0aX:1", PathControl, true},
		{"/a\tb", PathControl, true},
		{"/a b", PathControl, true},
		{"/a%7f", PathControl, true},
		{"/a%C2%85", PathControl, true}, // U+0085 NEL
		// Letters, digits, "-", "." and "_" percent-encoded: Express routes
		// the escape, every other server the character.
		{"/%61dmin", PathEncodedUnreserved, true},
		{"/ADM%49N", PathEncodedUnreserved, true},
		{"/v%31/x", PathEncodedUnreserved, true},
		{"/a%2Db", PathEncodedUnreserved, true},
		{"/a%5fb", PathEncodedUnreserved, true},
		{"/a%2e", PathEncodedUnreserved, true},
		{"/a/%2e%2e/b", PathEncodedUnreserved, true},
		{"/a/.%2E/b", PathEncodedUnreserved, true},
		{"/%2e%2e;x/admin", PathEncodedUnreserved, true},
		// Bad escapes.
		{"/a%", PathBadEscape, true},
		{"/a%4", PathBadEscape, true},
		{"/a%zz", PathBadEscape, true},
		{"/a%u002e", PathBadEscape, true}, // IIS %u encoding
		// Invisible format characters some stacks drop.
		{"/adm%E2%80%8Bin", PathLookAlike, true},
		{"/admin%EF%BB%BF", PathLookAlike, true},
		// A raw "#": Node cuts the path there (/two#x routes as /two),
		// others keep it; an encoded one (%23) is an honest character.
		{"/two#x", PathFragment, true},
		{"/two#", PathFragment, true},
		{"/TWO#/x", PathFragment, true},
		// Encoded backslash.
		{"/a%5cb", PathEncodedBackslash, true},
		{"/a%5C..%5Cadmin", PathEncodedBackslash, true},
		// Double encoding of ".", "/", "\", ";", controls; triple encoding.
		{"/%252e%252e/admin", PathDoubleEncoding, true},
		{"/a%252fb", PathDoubleEncoding, true},
		{"/a%252Fb", PathDoubleEncoding, true},
		{"/a%255cb", PathDoubleEncoding, true},
		{"/a%253bb", PathDoubleEncoding, true},
		{"/a%2500", PathDoubleEncoding, true},
		{"/a%25252e", PathDoubleEncoding, true},
		{"/%2561dmin", PathDoubleEncoding, true}, // a double-encoded letter
		{"/a%252d", PathDoubleEncoding, true},
		{"/a%25ff", PathDoubleEncoding, true},           // second decoding is not UTF-8
		{"/a%25c0%25ae", PathDoubleEncoding, true},      // overlong "." behind %25
		{"/a%25ef%25bc%258e", PathDoubleEncoding, true}, // full-width "." behind %25
		// Overlong and otherwise invalid UTF-8.
		{"/%c0%ae%c0%ae/admin", PathBadUTF8, true},
		{"/%c0%af", PathBadUTF8, true},
		{"/%e0%80%ae", PathBadUTF8, true},
		{"/%f0%80%80%ae", PathBadUTF8, true},
		{"/%ed%a0%80", PathBadUTF8, true}, // a UTF-16 surrogate
		{"/%ff", PathBadUTF8, true},
		{"/a\xffb", PathBadUTF8, true},
		// Characters some stack turns into ".", "/", "\", ";" or "%".
		{"/%ef%bc%8e%ef%bc%8e/admin", PathLookAlike, true}, // U+FF0E full-width full stop
		{"/a\uff0fadmin", PathLookAlike, true},             // U+FF0F full-width solidus
		{"/a\uff3cadmin", PathLookAlike, true},             // U+FF3C full-width reverse solidus
		{"/a%E2%88%95admin", PathLookAlike, true},          // U+2215 division slash
		{"/a\u2044admin", PathLookAlike, true},             // U+2044 fraction slash
		{"/\u2024\u2024/admin", PathLookAlike, true},       // U+2024 one dot leader
		{"/\u2025/admin", PathLookAlike, true},             // U+2025 two dot leader
		{"/\ufe52\ufe52/admin", PathLookAlike, true},       // U+FE52 small full stop
		{"/a\ufe68b", PathLookAlike, true},                 // U+FE68 small reverse solidus
		{"/a\u2216b", PathLookAlike, true},                 // U+2216 set minus
		{"/a\u00a5b", PathLookAlike, true},                 // ¥, "\" in Japanese code pages
		{"/a\uff1bb", PathLookAlike, true},                 // U+FF1B full-width semicolon
		{"/a\uff05" + "2e", PathLookAlike, true},           // U+FF05 full-width percent
		{"/\u2100", PathLookAlike, true},                   // ℀ is "a/c" in NFKC
		{"/%C2%BC", PathLookAlike, true},                   // ¼ is "1⁄4" in NFKC, with a fraction slash
		// Dot segments in every reading, with and without parameters.
		{"/a/../b", PathDotSegment, true},
		{"/a/./b", PathDotSegment, true},
		{"/a/..", PathDotSegment, true},
		{`/a\..\b`, PathDotSegment, true},
		{"/a%2f..%2fb", PathDotSegment, true},
		{"/a/.../b", PathDotSegment, true},
		{"/a/.%20./b", PathDotSegment, true},
		{"/a/..%20/b", PathDotSegment, true},
		{"/a/%20../b", PathDotSegment, true},
		// ";" where the app takes no parameters; "..;" either way.
		{"/x;/../", PathParameter, false},
		{"/public/..;/admin", PathParameter, false},
		{"/admin;jsessionid=1", PathParameter, false},
		{"/admin%3b", PathParameter, false},
	} {
		for _, o := range []PathOptions{{}, caseSensitive, withParams} {
			want := tc.want
			if o.PathParameters && !tc.paramsToo {
				want = PathDotSegment
				if !strings.Contains(strings.ToLower(tc.raw), "..") && !strings.Contains(strings.ToLower(tc.raw), "%2e") {
					continue // accepted with parameters; see TestReadings
				}
			}
			dst := []Reading{{Path: "/kept"}}
			got, err := AppendReadings(dst, tc.raw, o)
			var pe *PathError
			if !errors.Is(err, ErrBadPath) || !errors.As(err, &pe) || pe.Problem != want {
				t.Errorf("AppendReadings(%q, %+v) = %v, %v; want %v", tc.raw, o, got, err, want)
				continue
			}
			if len(got) != 1 || got[0].Path != "/kept" {
				t.Errorf("AppendReadings(%q) changed dst on refusal: %v", tc.raw, got)
			}
			if strings.Contains(err.Error(), tc.raw) && len(tc.raw) > 1 {
				t.Errorf("error %q quotes the client's path", err)
			}
		}
	}
}

// The decision over readings: allowed only when every reading is, otherwise
// the strictest.
func TestEvaluateReadings(t *testing.T) {
	c := compileYAML(t, `
default: two_factor
rules:
  - {name: public, paths: ["/public/**", "/api/*"], action: bypass}
  - {name: members, paths: ["/members/**"], action: one_factor}
  - {name: Admin-area, paths: ["/Admin/**"], action: deny}
  - {name: hardware, paths: ["/vault/**"], action: two_factor, factors: [webauthn]}
  - {name: fresh, paths: ["/billing/**"], action: two_factor, max_age: 5m}
  - {name: staff-only, paths: ["/staff/**"], groups: [staff], action: bypass}
`)
	alice := user("alice", nil)
	totpOld := user("alice", nil, Proof{Kind: FactorTOTP, At: before(time.Hour)})
	for _, tc := range []struct {
		name   string
		raw    string
		o      PathOptions
		subj   Subject
		out    Outcome
		reason Reason
		rule   string
	}{
		{"plain public", "/public/x", PathOptions{}, anon, Allow, ReasonNone, "public"},
		{"encoded slash leaves the one-segment rule", "/api/a%2Fb", PathOptions{}, anon, Challenge, ReasonSignIn, "default"},
		{"encoded slash, signed in with a second factor: all allow, the first reading names the rule", "/api/a%2Fb", PathOptions{}, user("a", nil, totpNow), Allow, ReasonNone, "default"},
		{"upper case reaches the deny rule by folding", "/ADMIN/x", PathOptions{}, alice, Deny, ReasonDenied, "Admin-area"},
		{"lower case reaches it too", "/admin/x", PathOptions{}, alice, Deny, ReasonDenied, "Admin-area"},
		{"case-sensitive app: lower case is another path", "/admin/x", caseSensitive, alice, Challenge, ReasonSecondFactor, "default"},
		{"case-sensitive app: the exact spelling", "/Admin/x", caseSensitive, alice, Deny, ReasonDenied, "Admin-area"},
		{"public spelling of a members path", "/PUBLIC/../members", PathOptions{}, anon, 0, 0, ""},
		{"trailing dot: Windows reads /Admin", "/Admin./x", caseSensitive, alice, Deny, ReasonDenied, "Admin-area"},
		{"trailing dot and case", "/admin./x", PathOptions{}, alice, Deny, ReasonDenied, "Admin-area"},
		{"backslash: a strict server reads one public segment, others /api/a/b", `/api/a\b`, PathOptions{}, anon, Challenge, ReasonSignIn, "default"},
		{"parameters stripped reach members", "/members;x/y", withParams, anon, Challenge, ReasonSignIn, "members"},
		{"deny beats everything", "/public/x/..;/../Admin", withParams, alice, 0, 0, ""},
		{"encoded dot segment", "/Members%2F..%2Fx", PathOptions{}, alice, 0, 0, ""},
		// Between challenges (TestStricter has the whole order).
		{"sign-in challenges: the rule that demands more", "/MEMBERS/x", PathOptions{}, anon, Challenge, ReasonSignIn, "default"},
		{"narrower factors win", "/VAULT/x", PathOptions{}, alice, Challenge, ReasonSecondFactor, "hardware"},
		{"a stale factor for the folded reading", "/BILLING/x", PathOptions{}, totpOld, Challenge, ReasonStale, "fresh"},
		{"identity rule for anonymous: sign in", "/staff/x", PathOptions{}, anon, Challenge, ReasonSignIn, "staff-only"},
		// Express does not collapse slashes: "//members/x" is its catch-all,
		// which the default (two_factor) guards.
		{"repeated slashes kept: the default rule", "//members/x", PathOptions{}, alice, Challenge, ReasonSecondFactor, "default"},
		{"repeated slashes, anonymous: sign in for the rule that demands more", "//members/x", PathOptions{}, anon, Challenge, ReasonSignIn, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Readings(tc.raw, tc.o)
			if tc.out == 0 {
				if err == nil {
					t.Fatalf("%q accepted: %v", tc.raw, rs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d := c.EvaluateReadings(Request{Host: "app.example.com", Method: "GET"}, rs, tc.subj, testNow)
			if d.Outcome != tc.out || d.Reason != tc.reason || d.RuleName != tc.rule {
				t.Errorf("%q: %v/%v by %q, want %v/%v by %q (readings %v)", tc.raw, d.Outcome, d.Reason, d.RuleName, tc.out, tc.reason, tc.rule, rs)
			}
			// The explanation reaches the same decision, on a reading that
			// is one of them.
			e := c.ExplainReadings(Request{Host: "app.example.com", Method: "GET"}, rs, tc.subj, testNow)
			if e.Decision.Outcome != d.Outcome || e.Decision.Reason != d.Reason || e.Decision.RuleName != d.RuleName {
				t.Errorf("explained %v/%v by %q, evaluated %v/%v by %q", e.Decision.Outcome, e.Decision.Reason, e.Decision.RuleName, d.Outcome, d.Reason, d.RuleName)
			}
			if len(e.Readings) != len(rs) || !slices.ContainsFunc(rs, func(r Reading) bool { return r.Path == e.Request.Path }) {
				t.Errorf("explained path %q with readings %v, want one of %v", e.Request.Path, e.Readings, rs)
			}
			// Every reading evaluated alone is at most as strict.
			for _, r := range rs {
				one := c.EvaluateReadings(Request{Host: "app.example.com", Method: "GET"}, []Reading{r}, tc.subj, testNow)
				if stricter(&one, &d) {
					t.Errorf("reading %v alone gives %+v, stricter than the combined %+v", r, one, d)
				}
			}
		})
	}
}

// The order of strictness, pair by pair.
func TestStricter(t *testing.T) {
	allow := Decision{Outcome: Allow, Action: ActionBypass}
	deny := Decision{Outcome: Deny, Reason: ReasonDenied, Action: ActionDeny}
	signIn1 := Decision{Outcome: Challenge, Reason: ReasonSignIn, Action: ActionOneFactor}
	signIn2 := Decision{Outcome: Challenge, Reason: ReasonSignIn, Action: ActionTwoFactor}
	signInDeny := Decision{Outcome: Challenge, Reason: ReasonSignIn, Action: ActionDeny}
	anyFactor := Decision{Outcome: Challenge, Reason: ReasonSecondFactor, Action: ActionTwoFactor, Acceptable: defaultFactors()}
	keyOnly := Decision{Outcome: Challenge, Reason: ReasonSecondFactor, Action: ActionTwoFactor, Acceptable: []string{FactorWebAuthn}}
	fresh := Decision{Outcome: Challenge, Reason: ReasonStale, Action: ActionTwoFactor, Acceptable: []string{FactorWebAuthn}, MaxAge: time.Minute}
	fresher := fresh
	fresher.MaxAge = time.Second
	// Each is stricter than every one before it.
	order := []Decision{allow, signIn1, signIn2, signInDeny, anyFactor, keyOnly, fresh, fresher, deny}
	for i := range order {
		for j := range order {
			if got, want := stricter(&order[i], &order[j]), i > j; got != want {
				t.Errorf("stricter(%d %+v, %d %+v) = %v", i, order[i], j, order[j], got)
			}
		}
	}
}

// Folded patterns: a policy whose patterns have upper case gets a folded
// twin; a lower-case policy does not, and then a path and its folded
// reading are one evaluation.
func TestFoldedPatterns(t *testing.T) {
	lower := compileYAML(t, `{rules: [{name: a, paths: ["/admin/**"], action: deny}]}`)
	if lower.fold != nil {
		t.Error("a lower-case policy got a folded twin")
	}
	upper := compileYAML(t, `{rules: [{name: a, paths: ["/Admin/**", "/ÉTÉ/*"], action: deny}]}`)
	if upper.fold == nil || upper.fold.fold != nil {
		t.Fatalf("folded twin: %v", upper.fold)
	}
	if got := upper.fold.rules[0].pathsText; !slices.Equal(got, []string{"/admin/**", "/été/*"}) {
		t.Errorf("folded patterns %q", got)
	}
	for _, p := range []string{"/admin/x", "/ADMIN/x", "/aDmIn", "/%C3%89t%C3%A9/x", "/%C3%A9T%C3%89/y"} {
		rs, err := Readings(p, PathOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d := upper.EvaluateReadings(Request{Host: "h", Method: "GET"}, rs, anon, testNow); d.Outcome != Deny {
			t.Errorf("%q: %v", p, d.Outcome)
		}
		rs, _ = Readings(p, caseSensitive)
		if d := upper.EvaluateReadings(Request{Host: "h", Method: "GET"}, rs, anon, testNow); d.Outcome == Deny {
			t.Errorf("%q judged case-insensitively for a case-sensitive app", p)
		}
	}
}

// The hot path: a plain path costs no allocation, in readings or in the
// evaluation, and no second evaluation.
func TestPlainPathDoesNotAllocate(t *testing.T) {
	c, err := Compile(bigPolicy())
	if err != nil {
		t.Fatal(err)
	}
	s := user("alice", []string{"staff"}, totpNow)
	r := Request{Host: "app7.example.com", Method: "GET", IP: netip.MustParseAddr("192.0.2.1")}
	for _, p := range []string{"/billing/invoices/7", "/static/app.css", "/dashboard", "/"} {
		n := testing.AllocsPerRun(100, func() {
			var buf [MaxReadings]Reading
			rs, err := AppendReadings(buf[:0], p, PathOptions{})
			if err != nil || len(rs) != 2 {
				t.Fatalf("%q: %d readings, %v", p, len(rs), err) // (printing rs would move buf to the heap)
			}
			r.Path = p
			if d, want := c.EvaluateReadings(r, rs, s, testNow), c.Evaluate(r, s, testNow); d.RuleIndex != want.RuleIndex || d.Outcome != want.Outcome {
				t.Fatalf("%q: %+v, Evaluate says %+v", p, d, want)
			}
		})
		if n != 0 {
			t.Errorf("%q: %v allocations", p, n)
		}
	}
}

// FuzzReadings: whatever the path and options, Readings never panics, and
// when it accepts a path every reading
//   - starts with "/", holds no "." or ".." segment, no segment of dots and
//     spaces, no "\", no ";", no control character, and is UTF-8;
//   - when folded, is its own folding; and for a case-insensitive app the
//     folding of every reading is among the readings;
//   - is judged again the same way: a reading without "%" or " " (which a
//     request line cannot hold raw) is accepted as a path and is among its
//     own readings;
//
// and a case-sensitive app's readings are exactly the unfolded ones of the
// default options; path_parameters never refuses a path the default
// accepts, and gives the same readings for it.
func FuzzReadings(f *testing.F) {
	for _, s := range []string{
		"/", "/admin", "/Admin/x", "//a//b", "/a;x/b", "/..;/admin", `/a\b`, "/a%2Fb", "/a%5cb", "/a%252e", "/%2561",
		"/admin.", "/admin%20", "/%c0%ae", "/\uff0e", "/ａｄｍｉｎ", "/%E2%84%AAey", "/adm%C4%B1n", "/x%3By", "/a%2525", "/.keygate%2f",
	} {
		f.Add(s, false, false)
	}
	f.Fuzz(func(t *testing.T, raw string, cs, params bool) {
		o := PathOptions{CaseSensitive: cs, PathParameters: params}
		rs, err := Readings(raw, o)
		if err != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("%q: error %v is not ErrBadPath", raw, err)
			}
			if plainPath(raw) {
				t.Fatalf("plain path %q refused: %v", raw, err)
			}
			return
		}
		if len(rs) == 0 || len(rs) > MaxReadings {
			t.Fatalf("%q: %d readings", raw, len(rs))
		}
		set := map[Reading]bool{}
		for _, r := range rs {
			if set[r] {
				t.Fatalf("%q: reading %v twice", raw, r)
			}
			set[r] = true
			p := r.Path
			if readingProblem(p) != 0 || strings.ContainsAny(p, "\\;") || !utf8.ValidString(p) {
				t.Fatalf("%q → bad reading %q", raw, p)
			}
			for _, c := range p {
				if c < ' ' || c == 0x7f || (0x80 <= c && c < 0xa0) {
					t.Fatalf("%q → reading %q has a control character", raw, p)
				}
			}
			if r.Folded && foldPath(p) != p {
				t.Fatalf("%q → folded reading %q folds to %q", raw, p, foldPath(p))
			}
			// A reading read again as a raw path gives itself back, unless it
			// holds what only an escape can carry on a request line ("%",
			// " ", and "#", which raw is a fragment).
			if !strings.ContainsAny(p, "% #") && !r.Folded {
				again, err := Readings(p, o)
				if err != nil || !slices.Contains(again, Reading{Path: p}) {
					t.Fatalf("%q → reading %q read again: %v %v", raw, p, again, err)
				}
			}
		}
		for _, r := range rs {
			if !cs && !set[Reading{Path: foldPath(r.Path), Folded: true}] {
				t.Fatalf("%q: folding of %q missing from %v", raw, r.Path, rs)
			}
			if cs && r.Folded {
				t.Fatalf("%q: folded reading for a case-sensitive app", raw)
			}
		}
		if !cs {
			sens, err := Readings(raw, PathOptions{CaseSensitive: true, PathParameters: params})
			if err != nil {
				t.Fatalf("%q accepted case-insensitively, refused case-sensitively: %v", raw, err)
			}
			var unfolded []Reading
			for _, r := range rs {
				if !r.Folded {
					unfolded = append(unfolded, r)
				}
			}
			if !slices.Equal(sens, unfolded) {
				t.Fatalf("%q: case-sensitive readings %v, unfolded default ones %v", raw, sens, unfolded)
			}
		}
		if !params {
			with, err := Readings(raw, PathOptions{CaseSensitive: cs, PathParameters: true})
			if err != nil || !slices.Equal(with, rs) {
				t.Fatalf("%q: with path_parameters %v %v, without %v", raw, with, err, rs)
			}
		}
	})
}

func BenchmarkEvaluateReadings(b *testing.B) {
	c, err := Compile(bigPolicy())
	if err != nil {
		b.Fatal(err)
	}
	s := user("alice", []string{"staff", "dev"}, totpNow)
	r := Request{Host: "app7.example.com", Method: "GET", IP: netip.MustParseAddr("192.0.2.1")}
	b.Run("evaluate-only", func(b *testing.B) {
		// The same request through Evaluate alone, before readings.
		b.ReportAllocs()
		r := r
		r.Path = "/billing/invoices/7"
		for b.Loop() {
			c.Evaluate(r, s, testNow)
		}
	})
	for _, bc := range []struct{ name, path string }{
		{"plain", "/billing/invoices/7"},
		{"upper", "/Billing/Invoices/7"},
		{"several", `/API;v=1\Billing.%2Finvoices%2F7`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var buf [MaxReadings]Reading
				rs, err := AppendReadings(buf[:0], bc.path, PathOptions{PathParameters: true})
				if err != nil {
					b.Fatal(err)
				}
				c.EvaluateReadings(r, rs, s, testNow)
			}
		})
	}
}

// The methods a request is judged under: its own, GET for a HEAD (servers
// answer HEAD with the GET handler), and for a form POST every method the
// rules name (a "_method" parameter may make the app run any of them).
func TestEvaluateMethods(t *testing.T) {
	c := compileYAML(t, `
default: one_factor
rules:
  - {name: export, paths: ["/export/**"], methods: [GET], action: two_factor}
  - {name: no-delete, paths: ["/api/**"], methods: [DELETE], action: deny}
  - {name: api, paths: ["/api/**"], action: one_factor}
`)
	alice := user("alice", nil)
	for _, tc := range []struct {
		name     string
		method   string
		path     string
		override bool
		out      Outcome
		rule     string
	}{
		{"GET under the GET rule", "GET", "/export/x", false, Challenge, "export"},
		{"HEAD is judged as GET too", "HEAD", "/export/x", false, Challenge, "export"},
		{"POST is not GET", "POST", "/export/x", false, Allow, "default"},
		{"a JSON POST is only a POST", "POST", "/api/x", false, Allow, "api"},
		{"a form POST may be a DELETE", "POST", "/api/x", true, Deny, "no-delete"},
		{"a form POST may be a GET", "POST", "/export/x", true, Challenge, "export"},
		{"an overridable request with nothing stricter", "POST", "/other", true, Allow, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Readings(tc.path, PathOptions{})
			if err != nil {
				t.Fatal(err)
			}
			r := Request{Host: "app.example.com", Method: tc.method, Overridable: tc.override}
			d := c.EvaluateReadings(r, rs, alice, testNow)
			if d.Outcome != tc.out || d.RuleName != tc.rule {
				t.Errorf("%s %s: %v by %q, want %v by %q", tc.method, tc.path, d.Outcome, d.RuleName, tc.out, tc.rule)
			}
			if e := c.ExplainReadings(r, rs, alice, testNow); e.Decision.Outcome != d.Outcome || e.Decision.RuleName != d.RuleName {
				t.Errorf("explained %v by %q", e.Decision.Outcome, e.Decision.RuleName)
			}
		})
	}
}

func TestValidMethod(t *testing.T) {
	for m, ok := range map[string]bool{
		"GET": true, "DELETE": true, "VERSION-CONTROL": true, "M_SEARCH": true,
		"": false, "get": false, "Delete": false, "GE T": false, "GET\x00": false, strings.Repeat("A", 33): false,
	} {
		if ValidMethod(m) != ok {
			t.Errorf("ValidMethod(%q) = %v", m, !ok)
		}
	}
}

// With ";" parameters, an encoded ";" is refused: Tomcat and Spring strip
// parameters only at a raw ";", so "/public%3B/two/" is their "public;"
// segment while stripping at the decoded ";" would judge /public/two/.
func TestEncodedSemicolonWithParameters(t *testing.T) {
	for _, raw := range []string{"/public%3b/two/", "/admin%3Bx/y", "/a;x/b%3B", "/%3b"} {
		_, err := Readings(raw, withParams)
		var pe *PathError
		if !errors.As(err, &pe) || pe.Problem != PathEncodedSemicolon {
			t.Errorf("%q with parameters: %v, want encoded_semicolon", raw, err)
		}
	}
	if rs, err := Readings("/admin;jsessionid=1/x", withParams); err != nil || rs[0].Path != "/admin/x" {
		t.Errorf("a raw ; is still a parameter: %v, %v", rs, err)
	}
}

// A trailing slash is judged both ways: Express (non-strict), Spring and
// ASP.NET serve /admin/ from the /admin route and the other way round.
func TestEvaluateTrailingSlash(t *testing.T) {
	c := compileYAML(t, `
default: bypass
rules:
  - {name: admin, paths: ["/admin"], action: deny}
  - {name: dir, paths: ["/dir/"], action: deny}
  - {name: items, paths: ["/items/*"], action: two_factor}
  - {name: json, paths: ["/**/*.json"], action: deny}
`)
	alice := user("alice", nil)
	for _, tc := range []struct {
		raw  string
		out  Outcome
		rule string
	}{
		{"/admin", Deny, "admin"},
		{"/admin/", Deny, "admin"},
		{"/Admin/", Deny, "admin"},
		{"/admin//", Deny, "admin"},
		{"/dir", Deny, "dir"},
		{"/dir/", Deny, "dir"},
		{"/items/x/", Challenge, "items"},
		{"/items", Challenge, "items"}, // "/items/" is the empty segment of /items/*
		{"/x/config.json/", Deny, "json"},
		{"/", Allow, "default"},
		{"/other/", Allow, "default"},
	} {
		rs, err := Readings(tc.raw, PathOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d := c.EvaluateReadings(Request{Host: "app.example.com", Method: "GET"}, rs, alice, testNow)
		if d.Outcome != tc.out || d.RuleName != tc.rule {
			t.Errorf("%s: %v by %q, want %v by %q", tc.raw, d.Outcome, d.RuleName, tc.out, tc.rule)
		}
	}
	// A plain path still costs no allocation when no rule but a bypass
	// can newly match with a slash added.
	plain := compileYAML(t, `
default: two_factor
rules:
  - {name: static, paths: ["/static/*", "/favicon.ico"], action: bypass}
  - {name: api, paths: ["/api/**"], action: one_factor}
`)
	var buf [MaxReadings]Reading
	if n := testing.AllocsPerRun(100, func() {
		rs, _ := AppendReadings(buf[:0], "/api/users", PathOptions{})
		plain.EvaluateReadings(Request{Host: "app.example.com", Method: "GET"}, rs, alice, testNow)
	}); n != 0 {
		t.Errorf("%v allocations for a plain path", n)
	}
}

// An overridable POST is judged as a method no rule names, too: a POST-only
// bypass must not carry a "_method=DELETE" past the rule behind it.
func TestEvaluateOverrideUnnamedMethod(t *testing.T) {
	c := compileYAML(t, `
default: bypass
rules:
  - {name: hook, paths: ["/api/hook"], methods: [POST], action: bypass}
  - {name: api, paths: ["/api/**"], action: deny}
`)
	rs, _ := Readings("/api/hook", PathOptions{})
	r := Request{Host: "app.example.com", Method: "POST"}
	if d := c.EvaluateReadings(r, rs, anon, testNow); d.Outcome != Allow {
		t.Fatalf("a POST the app reads as a POST: %v", d.Outcome)
	}
	r.Overridable = true
	if d := c.EvaluateReadings(r, rs, anon, testNow); d.Outcome != Deny || d.RuleName != "api" {
		t.Fatalf("an overridable POST: %v by %q, want deny by api", d.Outcome, d.RuleName)
	}
}

func TestNamesHost(t *testing.T) {
	c := compileYAML(t, `
default: two_factor
rules:
  - {name: a, hosts: ["app.example.com", "[::1]"], action: one_factor}
  - {name: b, hosts: ["*.apps.example.com"], action: bypass}
  - {name: everywhere, paths: ["/health"], action: bypass}
`)
	for h, want := range map[string]bool{
		"app.example.com": true, "APP.example.com.": true, "x.apps.example.com": true, "a.b.apps.example.com": true,
		"::1": true, "[::1]": true,
		"apps.example.com": false, "example.com": false, "other.example.net": false, "": false,
	} {
		if got := c.NamesHost(h); got != want {
			t.Errorf("NamesHost(%q) = %v", h, got)
		}
	}
	var nilPolicy *Compiled
	if nilPolicy.NamesHost("app.example.com") {
		t.Error("no policy names a host")
	}
}
