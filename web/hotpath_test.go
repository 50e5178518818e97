package web

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// cookieID reads the Cookie header itself (see there); it must agree with
// net/http's parser on every input.
func FuzzCookieID(f *testing.F) {
	for _, s := range []string{
		"keygate_session=abc", "a=1; keygate_session=abc; b=2", `keygate_session="abc"`, "keygate_session=a\\b; keygate_session=ok",
		"keygate_session", "keygate_session=", " keygate_session = x ", "xkeygate_session=1;keygate_session=2", ";;keygate_session=z;",
		`keygate_session="`, "keygate_session=a b",
	} {
		f.Add(s, "")
	}
	f.Add("a=1", "keygate_session=second-line")
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Cookie"] = []string{line1}
		if line2 != "" {
			r.Header["Cookie"] = append(r.Header["Cookie"], line2)
		}
		want := ""
		if ck, err := r.Cookie(CookieName); err == nil {
			want = ck.Value
		}
		if got := cookieID(r); got != want {
			t.Fatalf("cookieID(%q, %q) = %q, net/http says %q", line1, line2, got, want)
		}
	})
}

// The hot path's parsing allocates nothing.
func TestHotPathParsingDoesNotAllocate(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://app.example.com/x", nil)
	r.RemoteAddr = "192.0.2.7:51234"
	r.Header.Set("Cookie", "theme=dark; keygate_session=0123456789012345678901234567890123456789abc; lang=en")
	if n := testing.AllocsPerRun(100, func() {
		if cookieID(r) == "" {
			t.Fatal("no cookie")
		}
		if a, s := peerOf(r); !a.IsValid() || s != "192.0.2.7" {
			t.Fatalf("peer %v %q", a, s)
		}
	}); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
	r.RemoteAddr = "[::ffff:192.0.2.7]:1"
	if a, s := peerOf(r); !a.Is4() || s != "192.0.2.7" {
		t.Errorf("4in6 peer: %v %q", a, s)
	}
}
