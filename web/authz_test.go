package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The forward-auth endpoint tested the way proxies call it: nginx style
// (X-Original-URL) and Traefik/Caddy style (X-Forwarded-*), from a trusted
// peer (the test client on loopback) and from an untrusted one.

const authzURL = "http://auth.example.com/.keygate/api/authz"

// authzHeaders builds what a proxy sends for a request to target.
type authzHeaders func(method, target string) []reqOpt

func nginxHeaders(method, target string) []reqOpt {
	opts := []reqOpt{setHeader("X-Original-URL", target)}
	if method != "" {
		opts = append(opts, setHeader("X-Original-Method", method))
	}
	return opts
}

func forwardedHeaders(method, target string) []reqOpt {
	u, err := url.Parse(target)
	if err != nil {
		panic(err)
	}
	opts := []reqOpt{
		setHeader("X-Forwarded-Proto", u.Scheme),
		setHeader("X-Forwarded-Host", u.Host),
		// As the proxy received it: u.RequestURI() would re-escape it.
		setHeader("X-Forwarded-Uri", targetAfterHost(target)),
	}
	if method != "" {
		opts = append(opts, setHeader("X-Forwarded-Method", method))
	}
	return opts
}

var authzStyles = []struct {
	name    string
	headers authzHeaders
	nginx   bool
}{
	{"nginx", nginxHeaders, true},
	{"traefik-caddy", forwardedHeaders, false},
}

func decodeBody(t *testing.T, body string) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("answer is not JSON: %q", body)
	}
	return out
}

// checkLoginURL asserts that loc is the portal's login page on the
// original host with rd = the original URL.
func checkLoginURL(t *testing.T, loc, target string) {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("login URL %q: %v", loc, err)
	}
	orig, _ := url.Parse(target)
	if u.Scheme != orig.Scheme || u.Host != orig.Host || u.Path != "/.keygate/login" {
		t.Fatalf("login URL %q, want %s://%s/.keygate/login?rd=…", loc, orig.Scheme, orig.Host)
	}
	if rd := u.Query().Get("rd"); rd != target {
		t.Fatalf("rd = %q, want %q", rd, target)
	}
}

func TestAuthzDecisionsForBothHeaderStyles(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1", "::1"},
		protectedHosts: []string{"other.example.com", "*.listed.example.net"}})
	anon := h.client()
	alice := h.client()
	if resp, out := h.login(alice, testUser, testPassword, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice login: %d %v", resp.StatusCode, out)
	}
	bob := h.client()
	if resp, out := h.login(bob, "bob", "violet-harbour-lantern-9", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob login: %d %v", resp.StatusCode, out)
	}

	const (
		allow     = "allow"
		challenge = "challenge"
		deny      = "deny"
	)
	cases := []struct {
		name     string
		client   *http.Client
		method   string
		target   string
		extra    []reqOpt
		want     string
		identity string // Remote-User expected on allow ("" = none)
		code     string // JSON error code expected on a nginx-style challenge
	}{
		{name: "bypass anonymous", client: anon, target: "http://app.example.com/static/app.css", want: allow},
		{name: "bypass ignores a client's Remote-User", client: anon, target: "http://app.example.com/static/app.css",
			extra: []reqOpt{setHeader("Remote-User", "admin")}, want: allow},
		{name: "bypass signed in carries identity", client: alice, target: "http://app.example.com/favicon.ico", want: allow, identity: testUser},
		{name: "one factor anonymous", client: anon, target: "http://app.example.com/reports?q=1&x=a%20b", want: challenge, code: "authentication_required"},
		{name: "one factor signed in", client: alice, target: "http://app.example.com/reports?q=1", want: allow, identity: testUser},
		{name: "one factor over https with a port", client: anon, target: "https://app.example.com:8443/r", want: challenge, code: "authentication_required"},
		{name: "wildcard host", client: alice, target: "http://x.apps.example.com/", want: allow, identity: testUser},
		{name: "deny anonymous", client: anon, target: "http://app.example.com/closed/x", want: deny},
		{name: "deny signed in", client: alice, target: "http://app.example.com/closed/x", want: deny},
		{name: "group rule needs identity first", client: anon, target: "http://app.example.com/admin/", want: challenge, code: "authentication_required"},
		{name: "group rule member", client: alice, target: "http://app.example.com/admin/", want: allow, identity: testUser},
		{name: "group rule non-member", client: bob, target: "http://app.example.com/admin/", want: deny},
		{name: "two factor default", client: alice, target: "http://other.example.com/", want: challenge, code: "second_factor_required"},
		{name: "protected_hosts wildcard, default rule", client: alice, target: "http://a.listed.example.net/", want: challenge, code: "second_factor_required"},
		{name: "absolute-form host with a trailing dot", client: alice, target: "http://app.example.com./reports", want: allow, identity: testUser},
		{name: "POST judged as POST", client: anon, method: http.MethodPost, target: "http://app.example.com/reports", want: challenge, code: "authentication_required"},
		{name: "network rule from a trusted proxy's X-Forwarded-For", client: anon, target: "http://wiki.example.com/page",
			extra: []reqOpt{setHeader("X-Forwarded-For", "10.1.2.3")}, want: allow},
		{name: "network rule without it", client: anon, target: "http://wiki.example.com/page", want: challenge, code: "authentication_required"},
	}
	for _, st := range authzStyles {
		for _, tc := range cases {
			t.Run(st.name+"/"+tc.name, func(t *testing.T) {
				opts := append(st.headers(tc.method, tc.target), tc.extra...)
				resp, body := h.do(tc.client, http.MethodGet, authzURL, "", opts...)
				switch tc.want {
				case allow:
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
					}
					if got := resp.Header.Get(HeaderUser); got != tc.identity {
						t.Fatalf("Remote-User %q, want %q", got, tc.identity)
					}
					if tc.identity == testUser {
						for k, v := range map[string]string{
							HeaderEmail: "alice@example.com", HeaderGroups: "admins,dev",
							HeaderName: "Alice Example", HeaderFactors: "password",
						} {
							if got := resp.Header.Get(k); got != v {
								t.Errorf("%s = %q, want %q", k, got, v)
							}
						}
					} else {
						for _, k := range []string{HeaderEmail, HeaderGroups, HeaderName, HeaderFactors} {
							if v, ok := resp.Header[k]; ok {
								t.Errorf("anonymous allow carries %s: %q", k, v)
							}
						}
					}
				case deny:
					if resp.StatusCode != http.StatusForbidden {
						t.Fatalf("status %d, want 403: %s", resp.StatusCode, body)
					}
					if resp.Header.Get(HeaderUser) != "" {
						t.Fatal("a denial carries identity headers")
					}
				case challenge:
					if st.nginx {
						if resp.StatusCode != http.StatusUnauthorized {
							t.Fatalf("status %d, want 401: %s", resp.StatusCode, body)
						}
						out := decodeBody(t, body)
						if out["error"] != tc.code || out["message"] == "" {
							t.Fatalf("answer %v, want error %q", out, tc.code)
						}
						lu, _ := out["login_url"].(string)
						checkLoginURL(t, lu, tc.target)
						if resp.Header.Get("Location") != lu {
							t.Fatalf("Location %q differs from login_url %q", resp.Header.Get("Location"), lu)
						}
						return
					}
					want := http.StatusFound
					if tc.method == http.MethodPost {
						want = http.StatusSeeOther
					}
					if resp.StatusCode != want {
						t.Fatalf("status %d, want %d: %s", resp.StatusCode, want, body)
					}
					checkLoginURL(t, resp.Header.Get("Location"), tc.target)
				}
			})
		}
	}
	if h.up.count() != 0 {
		t.Fatal("forward-auth reached the upstream")
	}
}

func TestAuthzSessionCookieHonouredUntilLogout(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}})
	c := h.client()
	h.login(c, testUser, testPassword, "")
	target := "http://app.example.com/reports"
	for _, st := range authzStyles {
		resp, _ := h.do(c, http.MethodGet, authzURL, "", st.headers("", target)...)
		if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderUser) != testUser {
			t.Fatalf("%s: signed in: %d %q", st.name, resp.StatusCode, resp.Header.Get(HeaderUser))
		}
	}
	resp, _ := h.do(c, http.MethodPost, "http://app.example.com/.keygate/api/logout", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	// The old cookie value, replayed, no longer vouches for anyone.
	for _, st := range authzStyles {
		resp, _ := h.do(c, http.MethodGet, authzURL, "", st.headers("", target)...)
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("%s: a signed-out session still allowed", st.name)
		}
	}
}

func TestAuthzIgnoresHeadersFromUntrustedPeers(t *testing.T) {
	// The test client connects from loopback; only 10.9.9.9 is trusted.
	h := newHarness(t, harnessOptions{trustedProxies: []string{"10.9.9.9"}})
	anon := h.client()
	alice := h.client()
	h.login(alice, testUser, testPassword, "")
	bypass := "http://app.example.com/static/app.css"
	for _, st := range authzStyles {
		for name, c := range map[string]*http.Client{"anonymous": anon, "signed in": alice} {
			// A bypass URL is what an attacker would pick to get a 200 for a
			// request that is really for something else.
			resp, body := h.do(c, http.MethodGet, authzURL, "", st.headers("", bypass)...)
			if resp.StatusCode == http.StatusOK {
				t.Fatalf("%s/%s: an untrusted peer chose the judged URL and got 200", st.name, name)
			}
			if resp.StatusCode != http.StatusForbidden || decodeBody(t, body)["error"] != "untrusted_proxy" {
				t.Fatalf("%s/%s: %d %s, want 403 untrusted_proxy", st.name, name, resp.StatusCode, body)
			}
			if resp.Header.Get(HeaderUser) != "" || resp.Header.Get("Location") != "" {
				t.Fatalf("%s/%s: refusal carries identity or a redirect", st.name, name)
			}
		}
	}
	// No trusted proxies at all (the default) refuses just the same.
	h2 := newHarness(t, harnessOptions{})
	resp, _ := h2.do(h2.client(), http.MethodGet, authzURL, "", nginxHeaders("", bypass)...)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no trusted proxies: %d", resp.StatusCode)
	}
}

func TestAuthzRefusesMalformedHeaders(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}})
	c := h.client()
	h.login(c, testUser, testPassword, "") // a session must not make bad input pass
	cases := []struct {
		name   string
		opts   []reqOpt
		status int
		code   string
	}{
		{"no headers", nil, 400, "missing_original_url"},
		{"not a URL", nginxHeaders("", "http://app.example.com/%zz"), 400, "bad_original_url"},
		{"relative", nginxHeaders("", "/reports"), 400, "bad_original_url"},
		{"scheme-relative", nginxHeaders("", "//app.example.com/reports"), 400, "bad_original_url"},
		{"other scheme", nginxHeaders("", "ftp://app.example.com/reports"), 400, "bad_original_url"},
		{"no host", nginxHeaders("", "http:///reports"), 400, "bad_original_url"},
		{"userinfo", nginxHeaders("", "http://admin@app.example.com/reports"), 400, "bad_original_url"},
		{"bad host", nginxHeaders("", "http://app.example.com%2F@evil/x"), 400, "bad_original_url"},
		{"too long", nginxHeaders("", "http://app.example.com/"+strings.Repeat("a", 9000)), 400, "bad_original_url"},
		// A refused path is 403 in nginx style: auth_request turns a 400 or
		// 404 into a 500; the code stays in the body.
		{"dot segments", nginxHeaders("", "http://app.example.com/static/../admin/"), 403, "bad_path"},
		{"encoded dot segments", nginxHeaders("", "http://app.example.com/static/%2e%2e/admin/"), 403, "bad_path"},
		{"bad method", nginxHeaders("GE T", "http://app.example.com/static/x"), 400, "bad_method"},
		{"reserved prefix", nginxHeaders("", "http://app.example.com/.keygate/login"), 403, "not_found"},
		{"forwarded without host", []reqOpt{setHeader("X-Forwarded-Uri", "/static/x")}, 400, "missing_original_url"},
		{"forwarded uri not a path", []reqOpt{setHeader("X-Forwarded-Host", "app.example.com"), setHeader("X-Forwarded-Uri", "static/x")}, 400, "bad_forwarded_headers"},
		{"forwarded absolute uri", []reqOpt{setHeader("X-Forwarded-Host", "app.example.com"), setHeader("X-Forwarded-Uri", "http://evil/static/x")}, 400, "bad_forwarded_headers"},
		{"forwarded bad proto", append(forwardedHeaders("", "http://app.example.com/static/x"), setHeader("X-Forwarded-Proto", "gopher")), 400, "bad_forwarded_headers"},
		{"forwarded bad host", append(forwardedHeaders("", "http://app.example.com/static/x"), setHeader("X-Forwarded-Host", "evil.com/x")), 400, "bad_forwarded_headers"},
		{"forwarded dot segments", append(forwardedHeaders("", "http://app.example.com/static/%2E%2E/closed/"), setHeader("Accept", "application/json")), 400, "bad_path"},
		// A client behind Traefik adding its own X-Original-URL for a
		// bypass path: the request is refused, never judged by the spoof.
		{"conflicting styles", append(forwardedHeaders("", "http://app.example.com/closed/x"),
			setHeader("X-Original-URL", "http://app.example.com/static/x")), 400, "conflicting_headers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.do(c, http.MethodGet, authzURL, "", tc.opts...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("Content-Type %q, want JSON", ct)
			}
			if out := decodeBody(t, body); out["error"] != tc.code {
				t.Fatalf("error %v, want %q", out["error"], tc.code)
			}
			if resp.Header.Get(HeaderUser) != "" {
				t.Fatal("a refusal carries identity headers")
			}
		})
	}
	// Both styles naming the same request is fine (Traefik with a client
	// that happens to send the same URL).
	same := append(forwardedHeaders("", "http://app.example.com/reports"), setHeader("X-Original-URL", "http://app.example.com/reports"))
	if resp, body := h.do(c, http.MethodGet, authzURL, "", same...); resp.StatusCode != http.StatusOK {
		t.Fatalf("agreeing styles: %d %s", resp.StatusCode, body)
	}
}

func TestAuthzAnswersTheClientBehindTraefik(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}})
	c := h.client()
	// An XHR client gets the 401 JSON the proxy mode gives it, not a redirect
	// it cannot follow.
	resp, body := h.do(c, http.MethodGet, authzURL, "", append(forwardedHeaders("", "http://app.example.com/api/items"),
		setHeader("X-Requested-With", "XMLHttpRequest"))...)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("XHR challenge: %d %s", resp.StatusCode, body)
	}
	lu, _ := decodeBody(t, body)["login_url"].(string)
	checkLoginURL(t, lu, "http://app.example.com/api/items")
	// A browser denied gets the HTML page (Traefik and Caddy show it as is);
	// nginx, which drops the body, gets JSON.
	resp, body = h.do(c, http.MethodGet, authzURL, "", forwardedHeaders("", "http://app.example.com/closed/")...)
	if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "<html") {
		t.Fatalf("browser denial: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, _ = h.do(c, http.MethodGet, authzURL, "", nginxHeaders("", "http://app.example.com/closed/")...)
	if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("nginx denial: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestAuthzMethodRules(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}, policyYAML: `
default: deny
rules:
  - name: read-only-public
    hosts: [wiki.example.com]
    methods: [GET, HEAD]
    action: bypass
  - name: edits
    hosts: [wiki.example.com]
    action: one_factor
`})
	c := h.client()
	for _, st := range authzStyles {
		for _, tc := range []struct {
			method string
			want   int
		}{{"", 200}, {"GET", 200}, {"HEAD", 200}, {"POST", 0}, {"DELETE", 0}} {
			resp, body := h.do(c, http.MethodGet, authzURL, "", st.headers(tc.method, "http://wiki.example.com/page")...)
			if tc.want == 200 {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s %q: %d %s", st.name, tc.method, resp.StatusCode, body)
				}
				continue
			}
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusForbidden {
				t.Fatalf("%s %q: %d, want a challenge", st.name, tc.method, resp.StatusCode)
			}
		}
		// The default applies to hosts no rule names.
		// (to protected hosts: one that nothing names is not judged at all).
		if resp, body := h.do(c, http.MethodGet, authzURL, "", st.headers("", "http://elsewhere.example.org/")...); resp.StatusCode != http.StatusForbidden ||
			!strings.Contains(body, "unknown_host") && !strings.Contains(body, "does not protect") {
			t.Fatalf("%s: unknown host: %d %s", st.name, resp.StatusCode, body)
		}
	}
}

func TestProtectedHost(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: `
default: two_factor
rules:
  - name: a
    hosts: [Grafana.Example.NET., "*.apps.example.org", "[2001:db8::1]"]
    action: one_factor
`})
	s := h.web
	s.cookieDomain = ""
	for host, want := range map[string]bool{
		"app.example.com":      true, // an upstream
		"grafana.example.net":  true, // named by a rule (case and trailing dot folded)
		"x.apps.example.org":   true, // under a wildcard
		"a.b.apps.example.org": true,
		"apps.example.org":     false, // the wildcard does not cover its own suffix
		"2001:db8::1":          true,
		"evil.example":         false,
		"example.com":          false,
		"":                     false,
	} {
		if got := s.protectedHost(host); got != want {
			t.Errorf("protectedHost(%q) = %v, want %v", host, got, want)
		}
	}
	s.cookieDomain = ".example.com"
	for host, want := range map[string]bool{"example.com": true, "new.example.com": true, "example.com.evil": false, "notexample.com": false} {
		if got := s.protectedHost(host); got != want {
			t.Errorf("with cookie domain: protectedHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// FuzzAuthzTarget checks what matters about the headers a proxy sends,
// whatever they hold: parsing never panics, and an accepted target yields a
// login URL on the original host whose rd is the original URL, so keygate
// never hands a browser a link to somewhere else.
func FuzzAuthzTarget(f *testing.F) {
	for _, seed := range [][4]string{
		{"http://app.example.com/x?y=1", "", "", ""},
		{"https://app.example.com:8443/a%20b", "POST", "", ""},
		{"http://app.example.com@evil/", "", "", ""},
		{"http://[::1]:80/", "", "", ""},
		{"", "", "app.example.com", "/x?y"},
		{"", "", "evil.com/x", "/"},
		{"", "", "app.example.com", "//evil/x"},
		{"http://app.example.com/x", "", "app.example.com", "/y"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, origURL, method, fwdHost, fwdURI string) {
		h := http.Header{}
		for k, v := range map[string]string{"X-Original-URL": origURL, "X-Original-Method": method, "X-Forwarded-Host": fwdHost, "X-Forwarded-Uri": fwdURI, "X-Forwarded-Method": method} {
			if v != "" {
				h.Set(k, v)
			}
		}
		tg, err := authzTargetOf(h)
		if err != nil {
			return
		}
		if tg.name != hostOnly(tg.host) || !strings.HasPrefix(tg.uri, "/") || tg.method == "" {
			t.Fatalf("inconsistent target %+v", tg)
		}
		u, err := url.Parse(tg.loginURL())
		if err != nil {
			t.Fatalf("login URL %q does not parse: %v", tg.loginURL(), err)
		}
		if u.Host != tg.host || u.User != nil || u.Path != "/.keygate/login" || u.Query().Get("rd") != tg.url() {
			t.Fatalf("login URL %q for target %+v", tg.loginURL(), tg)
		}
		rd, err := url.Parse(tg.url())
		if err != nil || rd.Host != tg.host || rd.User != nil {
			t.Fatalf("rd %q leaves host %q", tg.url(), tg.host)
		}
	})
}

func TestAuthzRefusesHostsItDoesNotProtect(t *testing.T) {
	logs := &syncBuffer{}
	al := NewAccessLog(logs, "text")
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}, accessLog: al,
		protectedHosts: []string{"listed.example.org", "*.team.example.org"}, policyYAML: `
default: bypass
rules:
  - name: grafana
    hosts: [grafana.example.net, "*.apps.example.org"]
    action: one_factor
`})
	alice := h.client()
	h.login(alice, testUser, testPassword, "")
	cases := []struct {
		host      string
		protected bool
	}{
		{"app.example.com", true},      // an upstream
		{"grafana.example.net", true},  // named by a rule
		{"GRAFANA.example.net", true},  // in any case
		{"x.apps.example.org", true},   // under a rule's wildcard
		{"listed.example.org", true},   // server.protected_hosts
		{"a.b.team.example.org", true}, // under its wildcard
		{"apps.example.org", false},    // a wildcard does not cover its own suffix
		{"team.example.org", false},    //
		{"new.example.com", false},     // within session.cookie_domain is not enough
		{"bypass.example.test", false}, // what nginx's default server would ask about
		{"grafana.example.net.evil", false},
		{"127.0.0.1", false},
	}
	for _, st := range authzStyles {
		for _, tc := range cases {
			for name, c := range map[string]*http.Client{"anonymous": h.client(), "signed in": alice} {
				target := "http://" + tc.host + "/x"
				resp, body := h.do(c, http.MethodGet, authzURL, "", append(st.headers("", target), setHeader("Accept", "application/json"))...)
				if tc.protected {
					// The default is bypass: a protected host is judged
					// (one_factor rule or bypass), never refused as unknown.
					if strings.Contains(body, "unknown_host") {
						t.Errorf("%s %s %s: refused as unknown: %d", st.name, name, tc.host, resp.StatusCode)
					}
					continue
				}
				if resp.StatusCode != http.StatusForbidden || decodeBody(t, body)["error"] != "unknown_host" {
					t.Errorf("%s %s %s: %d %s, want 403 unknown_host", st.name, name, tc.host, resp.StatusCode, body)
				}
				if resp.Header.Get(HeaderUser) != "" || resp.Header.Get("Location") != "" || resp.Header.Get("Cookie") != "" {
					t.Errorf("%s %s %s: the refusal carries identity, a redirect or cookies", st.name, name, tc.host)
				}
			}
		}
	}
	// A browser behind Traefik/Caddy sees keygate's page saying what is wrong.
	resp, body := h.do(h.client(), http.MethodGet, authzURL, "", forwardedHeaders("", "http://unknown.example.test/")...)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "does not protect this address") {
		t.Fatalf("browser: %d %s", resp.StatusCode, body)
	}
	if h.up.count() != 0 {
		t.Fatal("forward-auth reached the upstream")
	}
	// Every decision is in the access log: the judged host, path and
	// method, the decision, never the query; refusals too.
	for _, tc := range []struct {
		opts []reqOpt
		want []string
	}{
		{nginxHeaders("POST", "http://grafana.example.net/dash/1?token=s3cret"),
			[]string{"method=POST host=grafana.example.net path=/dash/1 status=200", "user=alice decision=allow via=authz"}},
		{forwardedHeaders("", "http://bypass.example.test/open?code=314159"),
			[]string{"method=GET host=bypass.example.test path=/open status=403", "decision=refused via=authz"}},
		{nginxHeaders("", "http://app.example.com/.keygate/enroll/tok-should-not-appear"),
			[]string{"host=app.example.com path=/.keygate/ status=403", "decision=refused via=authz"}},
		{nil, []string{"path=/.keygate/api/authz status=400", "decision=refused via=authz"}},
	} {
		_ = al.Flush()
		n := strings.Count(logs.String(), "\n")
		resp, _ := h.do(alice, http.MethodGet, authzURL, "", tc.opts...)
		line := waitAccessLine(t, al, logs, n)
		for _, w := range tc.want {
			if !strings.Contains(line, w) {
				t.Errorf("access line %q lacks %q (answer %d)", line, w, resp.StatusCode)
			}
		}
		for _, secret := range []string{"s3cret", "314159", "tok-should-not-appear", "token=", "code="} {
			if strings.Contains(line, secret) {
				t.Errorf("access line %q leaks %q", line, secret)
			}
		}
	}
	_ = al.Flush()
	n := strings.Count(logs.String(), "\n")
	resp, _ = h.do(h.client(), http.MethodGet, authzURL, "", nginxHeaders("DELETE", "http://grafana.example.net/reports")...)
	if line := waitAccessLine(t, al, logs, n); resp.StatusCode != 401 ||
		!strings.Contains(line, "method=DELETE host=grafana.example.net path=/reports status=401") || !strings.Contains(line, "decision=challenge via=authz") ||
		strings.Contains(line, "user=") {
		t.Errorf("challenge line %q (answer %d)", line, resp.StatusCode)
	}
}

// waitAccessLine returns the first access line after the first n lines; the
// line is written just after the answer, so it may lag the client a little.
func waitAccessLine(t *testing.T, al *AccessLog, logs *syncBuffer, n int) string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		_ = al.Flush()
		if lines := strings.Split(logs.String(), "\n"); len(lines) > n+1 {
			return lines[n]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access line after line %d:\n%s", n, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAuthzAnswersWithTheCleanedCookie(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}})
	c := h.client()
	h.login(c, testUser, testPassword, "")
	var sid string
	for _, ck := range c.Jar.Cookies(mustURL(t, "http://app.example.com/")) {
		if ck.Name == CookieName {
			sid = CookieName + "=" + ck.Value
		}
	}
	for _, st := range authzStyles {
		for _, tc := range []struct {
			name, target, cookie string
			want                 string // "" = no Cookie in the answer
		}{
			{"signed in, app cookies around keygate's", "http://app.example.com/reports",
				"theme=dark; " + sid + "; keygate_device=d; __Host-keygate_session=x; keygate_factor=totp; lang=ru", "theme=dark; lang=ru"},
			{"signed in, only keygate's", "http://app.example.com/reports", sid + "; keygate_resume=r", ""},
			{"anonymous bypass, none of keygate's", "http://app.example.com/static/a.css", "a=1; b=2", "a=1; b=2"},
			{"anonymous bypass, stale keygate cookie", "http://app.example.com/static/a.css", "keygate_session=stale; a=1", "a=1"},
			{"anonymous bypass, no cookies", "http://app.example.com/static/a.css", "", ""},
		} {
			opts := st.headers("", tc.target)
			if tc.cookie != "" {
				opts = append(opts, setHeader("Cookie", tc.cookie))
			}
			resp, body := h.do(h.client(), http.MethodGet, authzURL, "", opts...)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s/%s: %d %s", st.name, tc.name, resp.StatusCode, body)
			}
			got, present := resp.Header["Cookie"]
			if tc.want == "" && present || tc.want != "" && (len(got) != 1 || got[0] != tc.want) {
				t.Errorf("%s/%s: answer Cookie %q (present %v), want %q", st.name, tc.name, got, present, tc.want)
			}
		}
	}
	// A refusal or challenge hands back no cookies (Traefik and Caddy show
	// those answers to the browser).
	resp, _ := h.do(h.client(), http.MethodGet, authzURL, "", append(nginxHeaders("", "http://app.example.com/reports"), setHeader("Cookie", "a=1"))...)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Cookie") != "" {
		t.Errorf("challenge: %d Cookie %q", resp.StatusCode, resp.Header.Get("Cookie"))
	}
}

// Forward-auth judges the path exactly as the front proxy received it. Go's
// url.URL.EscapedPath writes a path anew when its raw form holds a
// character Go would have escaped ("|" here), and "%2F" would then read as
// "/": an app that keeps "a%2Fb" as one segment routes to /api/{id}, which
// is denied, while the decoded reading alone falls to the bypass rule.
func TestAuthzJudgesTheTargetAsSent(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}, policyYAML: `
default: deny
rules:
  - {name: one-id, hosts: [app.example.com], paths: ["/api/*"], action: deny}
  - {name: rest, hosts: [app.example.com], action: bypass}
`})
	c := h.client()
	for _, tc := range []struct {
		target string
		status int
	}{
		{"http://app.example.com/api/a%2Fb|x", http.StatusForbidden},
		{"http://app.example.com/api/a%2Fb", http.StatusForbidden},
		{"http://app.example.com/api/a/b|x", http.StatusOK},
		{"http://app.example.com/other/a%2Fb|x?q=%2F", http.StatusOK},
	} {
		for _, opts := range [][]reqOpt{nginxHeaders("", tc.target), forwardedHeaders("", tc.target)} {
			resp, body := h.do(c, http.MethodGet, authzURL, "", append(opts, setHeader("Accept", "application/json"))...)
			if resp.StatusCode != tc.status {
				t.Errorf("%s: %d %s, want %d", tc.target, resp.StatusCode, body, tc.status)
			}
		}
	}
}
