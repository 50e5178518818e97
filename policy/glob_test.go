package policy

import (
	"strings"
	"testing"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern string
		yes, no []string
	}{
		{"/", []string{"/"}, []string{"", "/a", "//"}},
		{"/favicon.ico", []string{"/favicon.ico"}, []string{"/favicon.ico/", "/x/favicon.ico", "/Favicon.ico"}},
		{"/static/*", []string{"/static/", "/static/a", "/static/a.css"}, []string{"/static", "/static/a/", "/static/a/b", "/staticx/a"}},
		{"/*", []string{"/", "/a"}, []string{"/a/", "/a/b"}},
		{"/**", []string{"/", "/a", "/a/b/c", "//"}, []string{"", "a", "*"}},
		{"/api/**", []string{"/api", "/api/", "/api/v1", "/api/v1/x/"}, []string{"/ap", "/apix", "/apix/y", "/v1/api"}},
		{"/**/*.js", []string{"/a.js", "/x/a.js", "/x/y/.js"}, []string{"/a.jsx", "/x/a.js/", "/"}},
		{"/a/**/z", []string{"/a/z", "/a/b/z", "/a/b/c/z"}, []string{"/a", "/a/z/b", "/z", "/a/zz"}},
		{"/a/**/b/**/c", []string{"/a/b/c", "/a/x/b/y/c", "/a/b/b/c", "/a/x/b/c/c"}, []string{"/a/c/b", "/a/b", "/a/x/c"}},
		{"/img/*-*.png", []string{"/img/a-b.png", "/img/-.png", "/img/a-b-c.png"}, []string{"/img/ab.png", "/img/a-b.png/x"}},
		{"/a/*/c", []string{"/a/b/c", "/a//c"}, []string{"/a/c", "/a/b/b/c"}},
		{"/a//**", []string{"/a/", "/a//", "/a//x"}, []string{"/a", "/a/x"}},
		{"/x/**/**", []string{"/x", "/x/y/z"}, []string{"/xy"}},
		{"/*/**", []string{"/", "/a", "/a/b"}, nil},
	}
	for _, tc := range tests {
		g, msg := compileGlob(tc.pattern)
		if msg != "" {
			t.Fatalf("%s: %s", tc.pattern, msg)
		}
		for _, p := range tc.yes {
			if !g.match(p) {
				t.Errorf("%s should match %q", tc.pattern, p)
			}
			if !refMatch(tc.pattern, p) {
				t.Errorf("reference: %s should match %q", tc.pattern, p)
			}
		}
		for _, p := range tc.no {
			if g.match(p) {
				t.Errorf("%s should not match %q", tc.pattern, p)
			}
			if refMatch(tc.pattern, p) {
				t.Errorf("reference: %s should not match %q", tc.pattern, p)
			}
		}
	}
}

func TestGlobRejects(t *testing.T) {
	for _, p := range []string{"", "static/*", "*.js", "**/x", "/a**", "/**a", "/a/***", "/x?y=1", "/x#top", "/a/./b", "/a/.."} {
		if _, msg := compileGlob(p); msg == "" {
			t.Errorf("%q accepted", p)
		}
	}
}

// refMatch is the obvious recursive definition the fast matcher must agree
// with: split into segments; "**" takes zero or more; "*" stays within one.
func refMatch(pattern, path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	return refSegs(strings.Split(pattern[1:], "/"), strings.Split(path[1:], "/"))
}

func refSegs(pat, segs []string) bool {
	if len(pat) == 0 {
		return len(segs) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(segs); i++ {
			if refSegs(pat[1:], segs[i:]) {
				return true
			}
		}
		return false
	}
	if len(segs) == 0 || !refStar(pat[0], segs[0]) {
		return false
	}
	return refSegs(pat[1:], segs[1:])
}

func refStar(pat, s string) bool {
	if pat == "" {
		return s == ""
	}
	if pat[0] == '*' {
		for i := 0; i <= len(s); i++ {
			if refStar(pat[1:], s[i:]) {
				return true
			}
		}
		return false
	}
	return s != "" && s[0] == pat[0] && refStar(pat[1:], s[1:])
}

// FuzzGlob holds the single-backtrack matcher (and its exact and prefix fast
// paths) to the recursive definition.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{
		{"/api/**", "/api/x"}, {"/**/*.js", "/a/b.js"}, {"/a/**/b/**/c", "/a/b/x/c"}, {"/*", "/"},
		{"/**", ""}, {"/a//**", "/a//b"}, {"/x/*y*z", "/x/ayyz"}, {"/", "/"}, {"/a/**/**/b", "/a/b"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		if len(pattern) > 64 || len(path) > 64 {
			return // keeps the exponential reference quick
		}
		g, msg := compileGlob(pattern)
		if msg != "" {
			return
		}
		if got, want := g.match(path), refMatch(pattern, path); got != want {
			t.Fatalf("%q vs %q: got %v, reference %v (mode %d)", pattern, path, got, want, g.mode)
		}
	})
}
