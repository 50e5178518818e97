package web

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/keygate/keygate/policy"
)

// FuzzSafeRedirect checks the property that matters, whatever the input:
// an accepted redirect is a same-host path or an http(s) URL of a protected
// host, and never something a browser could read as another host.
func FuzzSafeRedirect(f *testing.F) {
	for _, seed := range []string{
		"/", "/a?b=c", "//evil", "/\\evil", "https://app.example.com/x", "https://evil.example/",
		"javascript:alert(1)", "http://app.example.com@evil/", "http:/\\evil", " https://app.example.com/",
		"https://app.example.com:443/", "HTTPS://APP.EXAMPLE.COM/", "/%2F%2Fevil", "https://[::1]/",
	} {
		f.Add(seed)
	}
	s := &Server{}
	s.upstreams.Store(&upstreamSet{"app.example.com": {}})
	f.Fuzz(func(t *testing.T, rd string) {
		got := s.safeRedirect(rd)
		if got == "" {
			return
		}
		if strings.ContainsAny(got, "\\\t\r\n") {
			t.Fatalf("accepted %q with a backslash or control character", got)
		}
		if strings.HasPrefix(got, "/") {
			if strings.HasPrefix(got, "//") {
				t.Fatalf("accepted scheme-relative %q", got)
			}
			return
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("accepted unparsable %q", got)
		}
		// "app.example.com." (the absolute form) names the same host.
		if (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || strings.TrimSuffix(strings.ToLower(u.Hostname()), ".") != "app.example.com" {
			t.Fatalf("accepted %q (scheme %q, host %q)", got, u.Scheme, u.Hostname())
		}
	})
}

// FuzzPolicyPath: whatever raw path comes in, every reading the gate judges
// has no dot segment, so a bypass glob can never be walked out of, and none
// of them is keygate's reserved prefix. (Repeated slashes stay in one
// reading on purpose: Express routes "//x" as it is.)
func FuzzPolicyPath(f *testing.F) {
	for _, seed := range []string{"/", "/a/../b", "/./a", "//a//b/", "/a/..", "a", "/static/.../x",
		"/public/..;/deny/", "/.KEYGATE/x", "//.keygate/", "/a%2f..%2fb", "/a\\..\\b", "/%c0%ae%c0%ae/"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rs, err := readings(nil, p, nil)
		if err != nil {
			if !errors.Is(err, policy.ErrBadPath) && !errors.Is(err, policy.ErrReserved) {
				t.Fatalf("%q refused with %v", p, err)
			}
			return
		}
		for _, r := range rs {
			got := r.Path
			if !strings.HasPrefix(got, "/") {
				t.Fatalf("%q → %q does not start with /", p, got)
			}
			for seg := range strings.SplitSeq(got, "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("%q → %q keeps a dot segment", p, got)
				}
			}
			if policy.ReservedReading(got) {
				t.Fatalf("%q → %q is the reserved prefix but was not refused", p, got)
			}
		}
	})
}
