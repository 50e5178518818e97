package web

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func TestUnauthenticatedBrowserIsSentToLogin(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client()
	resp, _ := h.do(c, http.MethodGet, "http://app.example.com/reports?q=1", "")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d, want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Path != "/.keygate/login" {
		t.Fatalf("Location %q, want /.keygate/login?rd=…", resp.Header.Get("Location"))
	}
	if got := loc.Query().Get("rd"); got != "http://app.example.com/reports?q=1" {
		t.Fatalf("rd = %q", got)
	}
	if h.up.count() != 0 {
		t.Fatal("an unauthenticated request reached the upstream")
	}
	// The login page itself renders the form with the rd carried through.
	resp, body := h.do(c, http.MethodGet, "http://app.example.com"+loc.String(), "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="password"`) || !strings.Contains(body, "reports?q=1") {
		t.Fatalf("login page: %d %q", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("login page CSP %q", csp)
	}
}

func TestUnauthenticatedAPIClientGets401JSON(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, opt := range []reqOpt{
		func(r *http.Request) { r.Header.Set("Accept", "application/json") },
		withHeader("X-Requested-With", "XMLHttpRequest"),
	} {
		resp, body := h.do(h.client(), http.MethodGet, "http://app.example.com/api/items", "", opt)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("not JSON: %q", body)
		}
		if out["error"] != "authentication_required" || out["message"] == "" {
			t.Fatalf("answer %v", out)
		}
		if lu, _ := out["login_url"].(string); !strings.HasPrefix(lu, "http://app.example.com/.keygate/login?rd=") {
			t.Fatalf("login_url %q", lu)
		}
	}
	if h.up.count() != 0 {
		t.Fatal("upstream reached")
	}
}

func TestSignInForwardsWithIdentityAndDropsSpoofedHeaders(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client()
	resp, out := h.login(c, testUser, testPassword, "http://app.example.com/dashboard")
	if resp.StatusCode != http.StatusOK || out["status"] != "ok" || out["redirect"] != "http://app.example.com/dashboard" {
		t.Fatalf("login: %d %v", resp.StatusCode, out)
	}
	ck := sessionCookie(resp)
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || len(ck.Value) < 43 {
		t.Fatalf("session cookie %+v", ck)
	}
	if ck.Secure {
		t.Fatal("cookie marked Secure on a plain-HTTP request from an untrusted peer")
	}
	spoof := []reqOpt{
		withHeader("Remote-User", "admin"),
		withHeader("remote-user", "admin2"),
		withHeader("REMOTE-GROUPS", "root"),
		withHeader("Remote_User", "admin3"),
		withHeader("remote_email", "evil@example.com"),
		withHeader("X-Forwarded-For", "10.9.9.9"),
		withHeader("X_Forwarded_For", "10.9.9.8"),
		withHeader("X-Forwarded-Proto", "https"),
		withHeader("Cookie", "app_pref=dark"),
	}
	resp, body := h.do(c, http.MethodGet, "http://app.example.com/dashboard", "", spoof...)
	if resp.StatusCode != http.StatusOK || body != "upstream:/dashboard" {
		t.Fatalf("forwarded: %d %q", resp.StatusCode, body)
	}
	got := h.up.last(t)
	want := map[string]string{
		"Remote-User":    testUser,
		"Remote-Email":   "alice@example.com",
		"Remote-Name":    "Alice Example",
		"Remote-Groups":  "admins,dev",
		"Remote-Factors": "password",
	}
	for k, v := range want {
		if vals := got.Header.Values(k); len(vals) != 1 || vals[0] != v {
			t.Errorf("upstream %s = %q, want exactly [%q]", k, vals, v)
		}
	}
	for name := range got.Header {
		n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if strings.HasPrefix(n, "remote-") {
			if _, ours := want[name]; !ours {
				t.Errorf("spoofed header %q reached the upstream", name)
			}
		}
		if n == "x-forwarded-for" && name != "X-Forwarded-For" {
			t.Errorf("spoofed header %q reached the upstream", name)
		}
	}
	if xff := got.Header.Get("X-Forwarded-For"); xff != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want the real peer 127.0.0.1", xff)
	}
	if p := got.Header.Get("X-Forwarded-Proto"); p != "http" {
		t.Errorf("X-Forwarded-Proto = %q from an untrusted peer", p)
	}
	if got.Host != "app.example.com" {
		t.Errorf("upstream Host = %q", got.Host)
	}
	if ck := got.Header.Get("Cookie"); strings.Contains(ck, CookieName) || !strings.Contains(ck, "app_pref=dark") {
		t.Errorf("upstream Cookie = %q: keygate's cookie must be stripped, the app's kept", ck)
	}
}

func TestSignInWithEmailAndHTMLForm(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client()
	form := url.Values{"username": {"Alice@Example.com"}, "password": {testPassword}, "rd": {"http://app.example.com/x"}}
	resp, _ := h.do(c, http.MethodPost, "http://app.example.com/.keygate/login", form.Encode(),
		withHeader("Content-Type", "application/x-www-form-urlencoded"))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "http://app.example.com/x" {
		t.Fatalf("form login: %d → %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := h.do(c, http.MethodGet, "http://app.example.com/x", "")
	if resp.StatusCode != http.StatusOK || body != "upstream:/x" {
		t.Fatalf("after login: %d %q", resp.StatusCode, body)
	}
}

func TestWrongPasswordAndUnknownUserLookTheSame(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	type answer struct {
		status int
		body   string
		cookie bool
	}
	try := func(user, pw string) answer {
		resp, out := h.login(h.client(), user, pw, "")
		b, _ := json.Marshal(out)
		return answer{resp.StatusCode, string(b), sessionCookie(resp) != nil}
	}
	wrong := try(testUser, "not-the-password-123")
	unknown := try("mallory", "not-the-password-123")
	byEmail := try("alice@example.com", "not-the-password-123")
	if wrong.status != http.StatusUnauthorized || wrong.cookie {
		t.Fatalf("wrong password: %+v", wrong)
	}
	if wrong != unknown || wrong != byEmail {
		t.Fatalf("answers differ:\nwrong   %+v\nunknown %+v\nemail   %+v", wrong, unknown, byEmail)
	}
	if !strings.Contains(wrong.body, `"error":"invalid_credentials"`) {
		t.Fatalf("body %s", wrong.body)
	}
	// The HTML form says the same for both, with status 401 and no cookie.
	for _, user := range []string{testUser, "mallory"} {
		form := url.Values{"username": {user}, "password": {"not-the-password-123"}}
		resp, body := h.do(h.client(), http.MethodPost, "http://app.example.com/.keygate/login", form.Encode(),
			withHeader("Content-Type", "application/x-www-form-urlencoded"))
		if resp.StatusCode != http.StatusUnauthorized || sessionCookie(resp) != nil ||
			!strings.Contains(body, "The username or password is incorrect") {
			t.Fatalf("form for %s: %d cookie=%v", user, resp.StatusCode, sessionCookie(resp) != nil)
		}
	}
	if h.up.count() != 0 {
		t.Fatal("upstream reached")
	}
}

func TestPolicyOutcomesThroughTheProxy(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	alice := h.client()
	h.login(alice, testUser, testPassword, "")
	bob := h.client()
	h.login(bob, "bob", "violet-harbour-lantern-9", "")
	anon := h.client()

	cases := []struct {
		name   string
		c      *http.Client
		method string
		url    string
		status int
	}{
		{"bypass needs nothing", anon, "GET", "http://app.example.com/static/app.css", 200},
		{"bypass exact file", anon, "GET", "http://app.example.com/favicon.ico", 200},
		{"glob does not cross segments", anon, "GET", "http://app.example.com/static/a/b.css", 302},
		{"deny rule is 403 even signed in", alice, "GET", "http://app.example.com/closed/x", 403},
		{"deny rule anonymous", anon, "GET", "http://app.example.com/closed/x", 403},
		{"group rule allows admins", alice, "GET", "http://app.example.com/admin/panel", 200},
		{"group rule falls through to deny for others", bob, "GET", "http://app.example.com/admin/panel", 403},
		{"group rule asks anonymous to sign in first", anon, "GET", "http://app.example.com/admin/panel", 302},
		{"one_factor with a session", bob, "POST", "http://app.example.com/form", 200},
		{"wildcard host", alice, "GET", "http://x.apps.example.com/", 200},
		{"host keygate does not protect", alice, "GET", "http://unlisted.example.com/", 421},
		{"dot segments refused", alice, "GET", "http://app.example.com/static/%2e%2e/admin/panel", 400},
		{"reserved prefix never forwarded", alice, "GET", "http://app.example.com/.keygate/nothing-here", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.up.count()
			resp, _ := h.do(tc.c, tc.method, tc.url, "")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if forwarded := h.up.count() > before; forwarded != (tc.status == 200) {
				t.Fatalf("forwarded=%v for status %d", forwarded, tc.status)
			}
		})
	}
}

func TestTwoFactorRuleExplainsMissingSecondFactor(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n", noMFA: true})
	c := h.client()
	resp, out := h.login(c, testUser, testPassword, "http://app.example.com/secret")
	if out["status"] != "second_factor_required" {
		t.Fatalf("login answer %v", out)
	}
	redirect, _ := out["redirect"].(string)
	if !strings.HasPrefix(redirect, "/.keygate/second-factor?rd=") || resp.StatusCode != 200 {
		t.Fatalf("redirect %q", redirect)
	}
	resp, _ = h.do(c, http.MethodGet, "http://app.example.com/secret", "")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("two_factor path with one factor: %d", resp.StatusCode)
	}
	resp, body := h.do(c, http.MethodGet, "http://app.example.com"+redirect, "")
	if resp.StatusCode != 200 || !strings.Contains(body, "has none yet") {
		t.Fatalf("second-factor page: %d %q", resp.StatusCode, body)
	}
	if h.up.count() != 0 {
		t.Fatal("upstream reached with one factor on a two_factor rule")
	}
}

func TestNetworkRuleBelievesForwardedForOnlyFromTrustedProxies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []string
		status  int
	}{
		{"untrusted peer: header ignored", nil, http.StatusFound},
		{"other proxy trusted: header ignored", []string{"192.0.2.0/24"}, http.StatusFound},
		{"loopback proxy trusted: header believed", []string{"127.0.0.1/32"}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{trustedProxies: tc.trusted})
			resp, _ := h.do(h.client(), http.MethodGet, "http://wiki.example.com/page", "", withHeader("X-Forwarded-For", "10.1.2.3"))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == http.StatusOK {
				if xff := h.up.last(t).Header.Get("X-Forwarded-For"); xff != "10.1.2.3" {
					t.Fatalf("upstream X-Forwarded-For %q", xff)
				}
			}
		})
	}
	// From the office network itself (no proxy) the peer address decides.
	h := newHarness(t, harnessOptions{})
	resp, _ := h.do(h.client(), http.MethodGet, "http://wiki.example.com/page", "")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("loopback is not in 10.0.0.0/8: %d", resp.StatusCode)
	}
}

func TestSecureCookieBehindTrustedTLSProxy(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}})
	b, _ := json.Marshal(map[string]string{"username": testUser, "password": testPassword})
	resp, _ := h.do(h.client(), http.MethodPost, "http://app.example.com/.keygate/api/login", string(b),
		withHeader("Content-Type", "application/json"), withHeader("X-Forwarded-Proto", "https"))
	ck := sessionCookie(resp)
	if ck == nil || !ck.Secure {
		t.Fatalf("cookie behind a trusted HTTPS proxy must be Secure: %+v", ck)
	}
	if ck.Domain != "example.com" {
		t.Fatalf("cookie domain %q", ck.Domain)
	}
}

func TestOpenRedirectsAreNeverFollowed(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: one_factor\n"})
	for _, rd := range []string{
		"https://evil.example/",
		"//evil.example",
		"///evil.example",
		"/\\evil.example",
		"\\\\evil.example",
		"javascript:alert(1)",
		"JaVaScRiPt:alert(1)",
		"data:text/html,<script>alert(1)</script>",
		"https://app.example.com@evil.example/",
		"https://user:pw@app.example.com/",
		"http://app.example.com.evil.example/",
		"ftp://app.example.com/",
		"https://app.example.com\t.evil.example/",
		"http:evil.example",
	} {
		t.Run(rd, func(t *testing.T) {
			if got := h.web.safeRedirect(rd); got != "" {
				t.Fatalf("safeRedirect(%q) = %q, want refusal", rd, got)
			}
			_, out := h.login(h.client(), testUser, testPassword, rd)
			if out["redirect"] != portalPrefix {
				t.Fatalf("login redirect %v for rd %q", out["redirect"], rd)
			}
		})
	}
	for _, rd := range []string{"http://app.example.com/x?y=1", "https://wiki.example.com/", "/relative/path?q=1"} {
		if got := h.web.safeRedirect(rd); got != rd {
			t.Errorf("safeRedirect(%q) = %q, want it kept", rd, got)
		}
	}
}

func TestPortalRefusesBadInputWithoutSideEffects(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	cases := []struct {
		name   string
		body   string
		hdrs   []reqOpt
		status int
		code   string
	}{
		{"malformed JSON", `{"username":`, nil, 400, "bad_request"},
		{"unknown field", `{"username":"alice","password":"x","admin":true}`, nil, 400, "bad_request"},
		{"trailing data", `{"username":"alice","password":"` + testPassword + `"} {}`, nil, 400, "bad_request"},
		{"missing password", `{"username":"alice"}`, nil, 400, "missing_credentials"},
		{"oversized body", `{"username":"` + strings.Repeat("a", 100<<10) + `","password":"x"}`, nil, 413, "too_large"},
		{"cross-origin POST", `{"username":"alice","password":"` + testPassword + `"}`,
			[]reqOpt{withHeader("Origin", "https://evil.example"), withHeader("Sec-Fetch-Site", "cross-site")}, 403, "cross_origin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]reqOpt{withHeader("Content-Type", "application/json")}, tc.hdrs...)
			resp, body := h.do(h.client(), http.MethodPost, "http://app.example.com/.keygate/api/login", tc.body, opts...)
			var out map[string]any
			_ = json.Unmarshal([]byte(body), &out)
			if resp.StatusCode != tc.status || out["error"] != tc.code || out["message"] == "" {
				t.Fatalf("got %d %q, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
			if sessionCookie(resp) != nil {
				t.Fatal("a refused request set a session cookie")
			}
			if n := len(h.sessions.ListUser(testUser)); n != 0 {
				t.Fatalf("%d session(s) created by a refused request", n)
			}
		})
	}
}

func TestSessionRotatesAtSignInAndLogoutEnds(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: one_factor\n"})
	c := h.client()
	resp, _ := h.login(c, testUser, testPassword, "")
	first := sessionCookie(resp).Value
	resp, _ = h.login(c, testUser, testPassword, "")
	second := sessionCookie(resp).Value
	if first == second {
		t.Fatal("a new sign-in reused the session ID")
	}
	if _, ok := h.sessions.Lookup(first); ok {
		t.Fatal("the session before sign-in is still alive")
	}
	resp, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/api/session", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"user":"alice"`) || !strings.Contains(body, `"kind":"password"`) {
		t.Fatalf("session API: %d %q", resp.StatusCode, body)
	}
	resp, _ = h.do(c, http.MethodPost, "http://app.example.com/.keygate/api/logout", "")
	if resp.StatusCode != 200 {
		t.Fatalf("logout %d", resp.StatusCode)
	}
	if _, ok := h.sessions.Lookup(second); ok {
		t.Fatal("logout left the session alive")
	}
	resp, _ = h.do(c, http.MethodGet, "http://app.example.com/x", "")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("after logout: %d", resp.StatusCode)
	}
}

func TestSignOutEverywhere(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: one_factor\n"})
	a, b := h.client(), h.client()
	h.login(a, testUser, testPassword, "")
	h.login(b, testUser, testPassword, "")
	if n := len(h.sessions.ListUser(testUser)); n != 2 {
		t.Fatalf("%d sessions, want 2", n)
	}
	resp, _ := h.do(a, http.MethodPost, "http://app.example.com/.keygate/logout", "everywhere=1",
		withHeader("Content-Type", "application/x-www-form-urlencoded"))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout form: %d", resp.StatusCode)
	}
	if resp, _ := h.do(b, http.MethodGet, "http://app.example.com/x", ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("other browser still signed in: %d", resp.StatusCode)
	}
}

func TestSessionsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, harnessOptions{dir: dir, policyYAML: "default: one_factor\n"})
	c := h.client()
	resp, _ := h.login(c, testUser, testPassword, "")
	ck := sessionCookie(resp)
	h.close()

	h2 := newHarness(t, harnessOptions{dir: dir, policyYAML: "default: one_factor\n"})
	c2 := h2.client()
	c2.Jar.SetCookies(&url.URL{Scheme: "http", Host: "app.example.com"}, []*http.Cookie{ck})
	resp, body := h2.do(c2, http.MethodGet, "http://app.example.com/after-restart", "")
	if resp.StatusCode != 200 || body != "upstream:/after-restart" {
		t.Fatalf("after restart: %d %q", resp.StatusCode, body)
	}
	if u := h2.up.last(t).Header.Get("Remote-User"); u != testUser {
		t.Fatalf("Remote-User %q", u)
	}
}

func TestLanguageFollowsAcceptLanguage(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, tc := range []struct{ lang, want, htmlLang string }{
		{"ru-RU,ru;q=0.9,en;q=0.5", "Войдите, чтобы продолжить", `lang="ru"`},
		{"en-GB", "Sign in to continue", `lang="en"`},
		{"de-DE", "Sign in to continue", `lang="en"`},
		{"", "Sign in to continue", `lang="en"`},
	} {
		resp, body := h.do(h.client(), http.MethodGet, "http://app.example.com/.keygate/login", "", withHeader("Accept-Language", tc.lang))
		if resp.StatusCode != 200 || !strings.Contains(body, tc.want) || !strings.Contains(body, tc.htmlLang) {
			t.Errorf("Accept-Language %q: %d, want %q and %s", tc.lang, resp.StatusCode, tc.want, tc.htmlLang)
		}
	}
	// API errors are translated too.
	resp, body := h.do(h.client(), http.MethodGet, "http://app.example.com/.keygate/api/session", "", withHeader("Accept-Language", "ru"))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Вы не вошли") {
		t.Fatalf("ru API error: %d %q", resp.StatusCode, body)
	}
}

func TestCatalogParsing(t *testing.T) {
	for _, tc := range []struct {
		raw string
		ok  bool
	}{
		{`{"a": "x", "b": "y"}`, true},
		{`{"a": "x", "a": "x"}`, false},
		{`{"a": 1}`, false},
		{`["a"]`, false},
		{`{"a": "x"`, false},
	} {
		msgs, err := parseCatalog([]byte(tc.raw))
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, %v", tc.raw, msgs, err)
		}
	}
}

func TestCatalogsAreComplete(t *testing.T) {
	tr, err := loadTranslator()
	if err != nil {
		t.Fatal(err)
	}
	en := tr.cats[0]
	for _, c := range tr.cats[1:] {
		for k := range en.msgs {
			if _, ok := c.msgs[k]; !ok {
				t.Errorf("%s lacks %q", c.Lang(), k)
			}
		}
		for k := range c.msgs {
			if _, ok := en.msgs[k]; !ok && !pluralFormKey.MatchString(k) {
				t.Errorf("%s has %q, which English lacks", c.Lang(), k)
			}
		}
	}
}

func TestOnlySameOriginFormsAreParked(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: one_factor\n"})
	for _, tc := range []struct {
		name   string
		hdrs   []reqOpt
		parked bool
	}{
		{"same-origin form", []reqOpt{setHeader("Sec-Fetch-Site", "same-origin")}, true},
		{"cross-site form", []reqOpt{setHeader("Sec-Fetch-Site", "cross-site")}, false},
		{"old browser, own Origin", []reqOpt{setHeader("Origin", "http://app.example.com")}, true},
		{"old browser, other Origin", []reqOpt{setHeader("Origin", "https://evil.example")}, false},
		{"no origin information", nil, false},
		{"JSON body", []reqOpt{setHeader("Sec-Fetch-Site", "same-origin"), setHeader("Content-Type", "application/json")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]reqOpt{formHeader}, tc.hdrs...)
			resp, _ := h.do(h.client(), http.MethodPost, "http://app.example.com/transfer", "to=mallory&amount=1000", opts...)
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("challenge: %d", resp.StatusCode)
			}
			parked := false
			for _, ck := range resp.Cookies() {
				parked = parked || (ck.Name == resumeCookie && ck.Value != "")
			}
			if parked != tc.parked {
				t.Fatalf("parked=%v, want %v", parked, tc.parked)
			}
		})
	}
	if h.up.count() != 0 {
		t.Fatal("a challenged POST reached the upstream")
	}
}

func TestHealthAndReadiness(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, path := range []string{"/.keygate/healthz", "/.keygate/readyz"} {
		resp, body := h.do(h.client(), http.MethodGet, "http://app.example.com"+path, "")
		if resp.StatusCode != 200 || body == "" {
			t.Errorf("%s: %d %q", path, resp.StatusCode, body)
		}
	}
	if h.up.count() != 0 {
		t.Fatal("health checks reached the upstream")
	}
}

func TestTrustedProxyInIPv4MappedForm(t *testing.T) {
	tp, err := parseTrusted([]string{"::ffff:127.0.0.0/104", "::ffff:10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"127.0.0.1", "::ffff:127.0.0.1", "10.1.2.3"} {
		if !tp.contains(netip.MustParseAddr(a)) {
			t.Errorf("%s not trusted", a)
		}
	}
	if tp.contains(netip.MustParseAddr("10.1.2.4")) {
		t.Error("10.1.2.4 trusted")
	}
}
