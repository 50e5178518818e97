package web

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/policy"
)

// liveSessionOf starts a password session for user straight in the store,
// as an attacker with their own account gets one.
func (h *harness) liveSessionOf(t *testing.T, user string) string {
	t.Helper()
	u, err := h.users.Get(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	s, err := h.sessions.Create(context.Background(), u, policy.Proof{Kind: policy.FactorPassword, At: h.clock.Now()}, authn.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	return s.ID
}

// plant puts a host-only session cookie for app.example.com into the jar,
// as a sibling app, an XSS or a plain-HTTP answer can.
func plant(c *http.Client, id, path string) {
	c.Jar.SetCookies(&url.URL{Scheme: "http", Host: "app.example.com", Path: path},
		[]*http.Cookie{{Name: CookieName, Value: id, Path: path}})
}

func sessionCookies(c *http.Client, rawURL string) []string {
	u, _ := url.Parse(rawURL)
	var out []string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == CookieName || ck.Name == HostCookieName {
			out = append(out, ck.Value)
		}
	}
	return out
}

// The shadowing attack: a host-only keygate_session planted before
// sign-in sits beside the domain cookie keygate sets, and browsers send
// the older (or longer-path) one first. Whatever it names, the person who
// signed in is the one the app sees, and a planted live session (the
// attacker's own account) is ended by the sign-in.
func TestPlantedSessionCookieDoesNotShadowTheSignIn(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, tc := range []struct {
		name, path string
		live       bool // the planted ID is the attacker's live session
	}{
		{"garbage at /", "/", false},
		{"attacker's live session at /", "/", true},
		{"garbage on a longer path", "/app", false},
		{"attacker's live session on a longer path", "/app", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.client()
			planted := strings.Repeat("A", 43)
			if tc.live {
				planted = h.liveSessionOf(t, "bob")
			}
			plant(c, planted, tc.path)
			target := "http://app.example.com/app/x"
			if resp, out := h.login(c, testUser, testPassword, target); resp.StatusCode != http.StatusOK {
				t.Fatalf("sign-in: %d %v", resp.StatusCode, out)
			}
			// A cookie the sign-in saw names a session that ends there;
			// one on the target's path is expired in the browser.
			if _, ok := h.sessions.Lookup(planted); ok && tc.path == "/" {
				t.Fatal("the planted session outlived the sign-in")
			}
			if got := sessionCookies(c, target); len(got) != 1 || got[0] == planted {
				t.Errorf("cookies for the target after sign-in: %v", got)
			}
			resp, _ := h.do(c, http.MethodGet, target, "")
			if resp.StatusCode != http.StatusOK || h.up.last(t).Header.Get(HeaderUser) != testUser {
				t.Fatalf("after sign-in: %d as %q", resp.StatusCode, h.up.last(t).Header.Get(HeaderUser))
			}
		})
	}
}

// Live sessions of two people in one browser (a cookie planted after
// sign-in): neither is used, so the person is never silently working in
// the attacker's account; signing in again clears it up.
func TestTwoUsersSessionsInOneBrowserCountAsNone(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client()
	if resp, _ := h.login(c, testUser, testPassword, ""); resp.StatusCode != http.StatusOK {
		t.Fatal("sign-in failed")
	}
	alice := sessionCookies(c, "http://app.example.com/")[0]
	bob := h.liveSessionOf(t, "bob")
	plant(c, bob, "/app")
	forwarded := h.up.count()
	resp, _ := h.do(c, http.MethodGet, "http://app.example.com/app/x", "")
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "/.keygate/login") || h.up.count() != forwarded {
		t.Fatalf("with two people's sessions: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Signing in again (to the page the person wanted) ends the old
	// session and drops bob's cookie from the browser, though the sign-in
	// itself never saw it (its path is /app).
	if resp, _ := h.login(c, testUser, testPassword, "http://app.example.com/app/x"); resp.StatusCode != http.StatusOK {
		t.Fatal("second sign-in failed")
	}
	if _, ok := h.sessions.Lookup(alice); ok {
		t.Error("alice's old session is still live")
	}
	for _, id := range sessionCookies(c, "http://app.example.com/app/x") {
		if id == bob {
			t.Error("the browser still sends bob's session")
		}
	}
	resp, _ = h.do(c, http.MethodGet, "http://app.example.com/app/x", "")
	if resp.StatusCode != http.StatusOK || h.up.last(t).Header.Get(HeaderUser) != testUser {
		t.Fatalf("after signing in again: %d as %q", resp.StatusCode, h.up.last(t).Header.Get(HeaderUser))
	}
}

// What acts on "the session's ID" acts on the live one, even when a stale
// cookie is sent first: the step-up code is sent for it, sign-out ends it.
func TestPortalActsOnTheLiveSession(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client()
	if resp, _ := h.login(c, testUser, testPassword, ""); resp.StatusCode != http.StatusOK {
		t.Fatal("sign-in failed")
	}
	live := sessionCookies(c, "http://app.example.com/")[0]
	// A stale cookie on the portal's path: sent first on every portal
	// request.
	stale := h.liveSessionOf(t, testUser)
	if err := h.sessions.Revoke(context.Background(), stale); err != nil {
		t.Fatal(err)
	}
	plant(c, stale, "/.keygate")
	if got := sessionCookies(c, "http://app.example.com/.keygate/api/session"); len(got) != 2 || got[0] != stale {
		t.Fatalf("the jar should send the stale cookie first: %v", got)
	}
	resp, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/api/session", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"user":"alice"`) {
		t.Fatalf("session: %d %s", resp.StatusCode, body)
	}
	resp, body = h.do(c, http.MethodPost, "http://app.example.com/.keygate/api/factors/email/send", "{}",
		withHeader("Content-Type", "application/json"))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"status":"sent"`) {
		t.Fatalf("step-up code: %d %s", resp.StatusCode, body)
	}
	resp, body = h.do(c, http.MethodPost, "http://app.example.com/.keygate/api/logout", "{}",
		withHeader("Content-Type", "application/json"))
	if resp.StatusCode >= 300 {
		t.Fatalf("logout: %d %s", resp.StatusCode, body)
	}
	if _, ok := h.sessions.Lookup(live); ok {
		t.Fatal("logout left the live session running")
	}
}

// Two live sessions of one person (a host-only one from before
// session.cookie_domain was set, and a newer domain one): the newer is
// used.
func TestSamePersonTwoSessionsTheNewerWins(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	older := h.liveSessionOf(t, testUser)
	h.clock.Add(time.Minute)
	newer := h.liveSessionOf(t, testUser)
	for _, order := range [][2]string{{older, newer}, {newer, older}} {
		r := httptest.NewRequest(http.MethodGet, "http://app.example.com/app/x", nil)
		r.Header.Set("Cookie", CookieName+"="+order[0]+"; "+HostCookieName+"="+order[1])
		if sess, id := h.web.liveSession(r, h.clock.Now()); sess == nil || id != newer {
			t.Errorf("cookies %v: picked %q, want the newer %q", order, id, newer)
		}
	}
}

// The hot path's session lookup for the ordinary one-cookie request
// allocates nothing.
func TestLiveSessionOneCookieDoesNotAllocate(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	id := h.liveSessionOf(t, testUser)
	r := httptest.NewRequest(http.MethodGet, "http://app.example.com/x", nil)
	r.Header.Set("Cookie", "theme=dark; "+CookieName+"="+id+"; lang=en")
	now := h.clock.Now()
	if n := testing.AllocsPerRun(100, func() {
		if h.web.sessionAt(r, now) == nil {
			t.Fatal("no session")
		}
	}); n != 0 {
		t.Errorf("%v allocations per lookup", n)
	}
}

// Every cookie keygate sets: its name, scope and flags for each way a
// request can arrive. __Host- exactly when the cookie is host-only and the
// request came over HTTPS; every name starts with keygate_ or
// __Host-keygate_ (the proxy strips cookies by that rule).
func TestCookieNamesAndScopes(t *testing.T) {
	trusted, err := parseTrusted([]string{"10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		name, domain, path string
		secure             bool
	}
	for _, tc := range []struct {
		name, cookieDomain, host string
		tls, proxyHTTPS          bool
		session, resume          want
	}{
		{"https, no cookie domain", "", "app.example.com", true, false,
			want{HostCookieName, "", "/", true}, want{"__Host-keygate_resume", "", "/", true}},
		{"https via a trusted proxy, no cookie domain", "", "app.example.com", false, true,
			want{HostCookieName, "", "/", true}, want{"__Host-keygate_resume", "", "/", true}},
		{"plain http, no cookie domain", "", "app.example.com", false, false,
			want{CookieName, "", "/", false}, want{"keygate_resume", "", portalPrefix, false}},
		{"https, cookie domain covers the host", "example.com", "app.example.com", true, false,
			want{CookieName, "example.com", "/", true}, want{"__Host-keygate_resume", "", "/", true}},
		{"https, cookie domain does not cover the host", "example.com", "www.example.test", true, false,
			want{HostCookieName, "", "/", true}, want{"__Host-keygate_resume", "", "/", true}},
		{"plain http, cookie domain covers the host", "example.com", "app.example.com", false, false,
			want{CookieName, "example.com", "/", false}, want{"keygate_resume", "", portalPrefix, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{cookieDomain: tc.cookieDomain, trusted: trusted}
			r := httptest.NewRequest(http.MethodGet, "http://"+tc.host+"/", nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if tc.proxyHTTPS {
				r.RemoteAddr = "10.0.0.1:4000"
				r.Header.Set("X-Forwarded-Proto", "https")
			}
			check := func(ck *http.Cookie, base string, w want) {
				t.Helper()
				if ck.Name != w.name || ck.Domain != w.domain || ck.Path != w.path || ck.Secure != w.secure || !ck.HttpOnly {
					t.Errorf("%s: got %s domain=%q path=%q secure=%v httponly=%v, want %+v", base, ck.Name, ck.Domain, ck.Path, ck.Secure, ck.HttpOnly, w)
				}
				if !strings.HasPrefix(ck.Name, "keygate_") && !strings.HasPrefix(ck.Name, "__Host-keygate_") {
					t.Errorf("cookie %q does not follow the keygate_ naming rule", ck.Name)
				}
				if strings.HasPrefix(ck.Name, hostPrefix) && (!ck.Secure || ck.Path != "/" || ck.Domain != "") {
					t.Errorf("%s would be refused by browsers: %+v", ck.Name, ck)
				}
			}
			check(s.cookie(r, "v", 0), CookieName, tc.session)
			for _, base := range []string{deviceCookie, lastFactorCookie} {
				w := tc.session
				w.name = strings.Replace(w.name, CookieName, base, 1)
				check(s.plainCookie(r, base, "v", 60), base, w)
			}
			check(s.resumeCookieFor(r, "v", 60), resumeCookie, tc.resume)
		})
	}
}

// Reading accepts both names, and the __Host- one wins for the cookies
// keygate reads by name (a sibling cannot have set it).
func TestReadCookieBothNames(t *testing.T) {
	for _, tc := range []struct{ header, want string }{
		{"keygate_device=plain", "plain"},
		{"__Host-keygate_device=host", "host"},
		{"keygate_device=plain; __Host-keygate_device=host", "host"},
		{"keygate_devicex=no; x_keygate_device=no", ""},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", tc.header)
		if got, _ := readCookie(r, deviceCookie); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.header, got, tc.want)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Cookie", HostCookieName+"=abc")
	if got := cookieID(r); got != "abc" {
		t.Errorf("cookieID with the __Host- name: %q", got)
	}
}

// Over HTTPS with no cookie domain the whole sign-in uses the __Host- name
// and the gate accepts it.
func TestHostPrefixedSessionOverHTTPS(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	s, err := New(Options{Policy: h.web.policy, Users: h.users, Sessions: h.sessions, Now: h.clock.Now,
		Upstreams: []Upstream{{Host: "app.example.com", URL: mustParseURL(t, h.up.srv.URL)}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(s)
	t.Cleanup(srv.Close)
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	login := func(extra ...*http.Cookie) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/.keygate/api/login", strings.NewReader(`{"username":"alice","password":"`+testPassword+`"}`))
		req.Host = "app.example.com"
		req.Header.Set("Content-Type", "application/json")
		for _, ck := range extra {
			req.AddCookie(ck)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := login(&http.Cookie{Name: CookieName, Value: strings.Repeat("B", 43)})
	var got *http.Cookie
	expired := map[string]bool{}
	for _, ck := range resp.Cookies() {
		if ck.MaxAge < 0 {
			expired[ck.Name] = true
		} else if ck.Name == HostCookieName {
			got = ck
		}
	}
	if resp.StatusCode != http.StatusOK || got == nil || !got.Secure || got.Domain != "" || got.Path != "/" {
		t.Fatalf("sign-in over HTTPS: %d, cookie %+v", resp.StatusCode, got)
	}
	if !expired[CookieName] {
		t.Error("the plain keygate_session the browser sent was not expired")
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/x", nil)
	req.Host = "app.example.com"
	req.AddCookie(got)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || h.up.last(t).Header.Get(HeaderUser) != testUser {
		t.Fatalf("with the __Host- cookie: %d", resp.StatusCode)
	}
}

func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// HSTS on every answer over keygate's own TLS listener (portal and app),
// never over plain HTTP, even when a trusted proxy says the client used
// HTTPS (the proxy owns that promise).
func TestHSTSOnlyOverKeygatesTLS(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}})
	for _, sub := range []bool{false, true} {
		s, err := New(Options{Policy: h.web.policy, Users: h.users, Sessions: h.sessions, Now: h.clock.Now,
			TrustedProxies: []string{"127.0.0.1"}, HSTSIncludeSubdomains: sub,
			Upstreams: []Upstream{{Host: "app.example.com", URL: mustParseURL(t, h.up.srv.URL)}}})
		if err != nil {
			t.Fatal(err)
		}
		want := "max-age=31536000"
		if sub {
			want += "; includeSubDomains"
		}
		tlsSrv, plainSrv := httptest.NewTLSServer(s), httptest.NewServer(s)
		defer tlsSrv.Close()
		defer plainSrv.Close()
		for _, path := range []string{"/.keygate/login", "/.keygate/api/session", "/static/app.css"} {
			for _, tc := range []struct {
				srv  *httptest.Server
				want string
			}{{tlsSrv, want}, {plainSrv, ""}} {
				req, _ := http.NewRequest(http.MethodGet, tc.srv.URL+path, nil)
				req.Host = "app.example.com"
				req.Header.Set("X-Forwarded-Proto", "https")
				resp, err := tc.srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if got := resp.Header.Values("Strict-Transport-Security"); len(got) > 1 || resp.Header.Get("Strict-Transport-Security") != tc.want {
					t.Errorf("%s %s: Strict-Transport-Security %q, want %q", tc.srv.URL, path, got, tc.want)
				}
			}
		}
	}
}

// Portal pages send the real Origin on their own form posts.
func TestPortalReferrerPolicy(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	resp, _ := h.do(h.client(), http.MethodGet, "http://app.example.com/.keygate/login", "")
	if got := resp.Header.Get("Referrer-Policy"); got != "same-origin" {
		t.Fatalf("Referrer-Policy %q", got)
	}
}
