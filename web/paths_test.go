package web

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/policy"
)

// The gate judges a path the way the upstream will read it: every pathSpelling
// below reaches the real upstream only when the client satisfies the rule
// of every area an upstream could route it to. The requests are written on
// the wire byte for byte (no client library cleans them first), and the
// upstream records the request line it received.

const pathsPolicy = `
default: deny
rules:
  - {name: public, hosts: [app.example.com], paths: ["/public/**", "/files/*"], action: bypass}
  - {name: files-deep, hosts: [app.example.com], paths: ["/files/**"], action: one_factor}
  - {name: members, hosts: [app.example.com], paths: ["/members/**"], action: one_factor}
  - {name: secure, hosts: [app.example.com], paths: ["/secure/**"], action: two_factor}
  - {name: closed, hosts: [app.example.com], paths: ["/Closed/**", "/private/**"], action: deny}
  - {name: rest, hosts: [app.example.com], action: bypass}
`

// What a pathSpelling is, for the upstream that reads it most strictly.
type pathArea int

const (
	inPublic   pathArea = iota // bypass
	inMembers                  // one_factor
	inSecure                   // two_factor
	inClosed                   // deny
	isRefused                  // 400 bad_path
	isReserved                 // 404: keygate's own prefix
	// isPortal: the decoded path is a portal page, so keygate's own
	// router answers it in proxy mode (never the upstream); forward-auth
	// answers 404 as for any reserved spelling.
	isPortal
)

// A client's level: how many factors its session has.
const (
	lvAnon = iota
	lvPassword
	lvTwoFactor
)

type pathSpelling struct {
	raw  string
	area pathArea
}

// pathCorpus is the spellings by class, for an upstream with the default
// path options (case-insensitive, no ";" parameters).
var pathCorpus = []pathSpelling{
	// Plain spellings of each area.
	{"/public/x", inPublic}, {"/files/a", inPublic}, {"/elsewhere", inPublic},
	{"/members/x", inMembers}, {"/secure/x", inSecure}, {"/private/x", inClosed},
	// Case: Express, ASP.NET and IIS route case-insensitively.
	{"/MEMBERS/x", inMembers}, {"/Members/x", inMembers}, {"/SECURE/x", inSecure}, {"/sEcUrE/x", inSecure},
	{"/PRIVATE/x", inClosed}, {"/Closed/x", inClosed}, {"/closed/x", inClosed}, {"/CLOSED/x", inClosed},
	{"/pr%C4%B1vate/x", inClosed}, // dotless ı: .NET upper-cases it to I
	// Repeated slashes: collapsed (nginx), and kept (Express routes
	// "//members/" to its catch-all; here the "rest" rule, a bypass).
	{"//members//x", inMembers}, {"///private/x", inClosed}, {"//public/x", inPublic},
	// Encoded slashes: judged as separators and as part of the segment.
	{"/files/a%2Fb", inMembers}, {"/members%2Fx", inMembers}, {"/MEMBERS%2fx", inMembers}, {"/private%2Fx", inClosed},
	// Escaped letters (Express routes the escape, others the letter: no
	// honest client sends them), one more decoding, compatibility forms.
	{"/m%65mbers/x", isRefused}, {"/pr%69vate/x", isRefused}, {"/%256dembers/x", isRefused}, {"/%2570rivate/x", isRefused},
	{"/members%2520/x", inMembers}, {"/private%2520/x", inClosed},
	{"/%EF%BD%8Dembers/x", inMembers}, {"/%EF%BD%90rivate/x", inClosed}, // full-width m, p
	// Trailing dots and spaces (Windows).
	{"/members./x", inMembers}, {"/members%20/x", inMembers}, {"/secure./x", inSecure}, {"/private./x", inClosed},
	{"/private.%20./x", inClosed}, {"/private%20%20/x", inClosed},
	// Parameters, where the app takes none.
	{"/public/..;/private/x", isRefused}, {"/private;x/y", isRefused}, {"/public;x/../private", isRefused},
	{"/members;jsessionid=1/x", isRefused}, {"/public%3Bx/y", isRefused},
	// Dot segments in any reading.
	{"/public/../private/x", isRefused}, {"/public/%2e%2e/private/x", isRefused}, {"/public/.%2E/private", isRefused},
	{"/public%2F..%2Fprivate", isRefused}, {"/public/.../private", isRefused}, {"/public/.%20./private", isRefused},
	{"/public/./private", isRefused},
	// Backslashes, raw and encoded.
	{`/public\..\private`, isRefused}, {"/public%5c..%5cprivate", isRefused}, {`/members\x`, isRefused},
	// Double encoding of ".", "/", "\".
	{"/public/%252e%252e/private", isRefused}, {"/public%252fprivate", isRefused}, {"/public%255cprivate", isRefused},
	{"/public/%25c0%25ae", isRefused},
	// Overlong and invalid UTF-8, full-width dots and slashes, look-alikes.
	{"/public/%c0%ae%c0%ae/private", isRefused}, {"/public/%e0%80%ae%e0%80%ae/private", isRefused}, {"/public/%c0%af", isRefused},
	{"/public/%ff", isRefused}, {"/public/%ef%bc%8e%ef%bc%8e/private", isRefused}, {"/public%ef%bc%8fprivate", isRefused},
	{"/public%e2%88%95private", isRefused}, {"/public/\xef\xbc\x8e\xef\xbc\x8e/private", isRefused},
	// NUL, control bytes, bad escapes.
	{"/public/%00/private", isRefused}, {"/public/%0d%0aX:%201", isRefused}, {"/public/%", isRefused}, {"/public/%zz", isRefused},
	// The reserved prefix in every pathSpelling.
	{"/.keygate/nothing-here", isReserved}, {"/.keygate", isReserved}, {"//.keygate/", isReserved}, {"/.KEYGATE/", isReserved},
	{"/.Keygate/api/session", isReserved}, {"/.keygate;x/", isReserved}, {"/.keygate%2f", isPortal},
	{"/.keygate%2F..%2Fx", isReserved}, {"/%5C.keygate%5C", isReserved}, {`/\.keygate\`, isReserved},
	{"/.keygate./", isReserved}, {"/%2ekeygate/", isPortal}, {"/.keygate%20/", isReserved},
	{"/.%EF%BD%8Beygate/", isReserved}, {"/.keygate%3bx/", isReserved},
}

// gateAnswer is what the gate answers a client of the level for a
// pathSpelling, and whether the upstream sees the request.
func gateAnswer(a pathArea, level int) (int, bool) {
	switch {
	case a == isRefused:
		return http.StatusBadRequest, false
	case a == isReserved:
		return http.StatusNotFound, false
	case a == isPortal:
		return 0, false // whatever the portal page answers
	case a == inClosed:
		return http.StatusForbidden, false
	case int(a) > level:
		return http.StatusFound, false
	}
	return http.StatusOK, true
}

// rawGet writes a GET for rawPath on the request line as it is and returns
// the status.
func (h *harness) rawPathGet(t *testing.T, host, rawPath string, cookies []*http.Cookie) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", h.srv.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/html\r\nConnection: close\r\n", rawPath, host)
	for _, c := range cookies {
		fmt.Fprintf(&b, "Cookie: %s=%s\r\n", c.Name, c.Value)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %q: %v", rawPath, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// pathClients signs in a password-only client (bob) and a two-factor
// client (alice: enrolment link, then an authenticator app) and returns
// their cookies by level.
func pathClients(h *harness) [3][]*http.Cookie {
	var out [3][]*http.Cookie
	app := &url.URL{Scheme: "http", Host: "app.example.com", Path: "/"}
	bob := h.client()
	if resp, _ := h.login(bob, "bob", "violet-harbour-lantern-9", ""); resp.StatusCode != http.StatusOK {
		h.t.Fatalf("login bob: %d", resp.StatusCode)
	}
	out[lvPassword] = bob.Jar.Cookies(app)
	alice := h.adminClient(testUser, testPassword)
	out[lvTwoFactor] = alice.Jar.Cookies(app)
	if len(out[lvPassword]) == 0 || len(out[lvTwoFactor]) == 0 {
		h.t.Fatal("no session cookies")
	}
	return out
}

// The corpus through the proxy, for an anonymous, a password-only and a
// two-factor client: no response comes from an area whose rule the client
// does not satisfy, and what the upstream receives is byte for byte what
// was judged.
func TestPathReadingsThroughTheGate(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: pathsPolicy})
	cookies := pathClients(h)
	for level, name := range []string{"anonymous", "password", "two-factor"} {
		for _, sp := range pathCorpus {
			status, forwarded := gateAnswer(sp.area, level)
			before := h.up.count()
			got := h.rawPathGet(t, "app.example.com", sp.raw, cookies[level])
			reached := h.up.count() > before
			if reached != forwarded || (got != status && status != 0) {
				t.Errorf("%s GET %q: status %d (want %d), upstream reached %v (want %v)", name, sp.raw, got, status, reached, forwarded)
				continue
			}
			if reached {
				if uri := h.up.last(t).RequestURI; uri != sp.raw {
					t.Errorf("%s GET %q: the upstream received %q", name, sp.raw, uri)
				}
			}
		}
	}
	// The reserved prefix is refused before the host is looked at.
	for _, p := range []string{"/.KEYGATE/", "//.keygate/x", "/.keygate;x/"} {
		if got := h.rawPathGet(t, "unlisted.example.com", p, nil); got != http.StatusNotFound {
			t.Errorf("unlisted host, %q: %d", p, got)
		}
	}
}

// The two per-upstream knobs: an app declared case-sensitive is judged on
// the exact pathSpelling only; an app that takes ";" parameters gets them, and
// they are judged stripped.
func TestPathOptionsPerUpstream(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: pathsPolicy})
	cookies := pathClients(h)
	up := h.up.srv.URL
	target, _ := url.Parse(up)
	if err := h.web.SetUpstreams([]Upstream{
		{Host: "app.example.com", URL: target, Paths: policy.PathOptions{CaseSensitive: true}},
		{Host: "wiki.example.com", URL: target, Paths: policy.PathOptions{PathParameters: true}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host  string
		raw   string
		area  pathArea
		level int
	}{
		// Case-sensitive app: another case is another resource.
		{"app.example.com", "/PRIVATE/x", inPublic, lvAnon},
		{"app.example.com", "/closed/x", inPublic, lvAnon},
		{"app.example.com", "/Closed/x", inClosed, lvTwoFactor},
		{"app.example.com", "/private/x", inClosed, lvTwoFactor},
		{"app.example.com", "/MEMBERS/x", inPublic, lvAnon},
		// Its other readings still count, and ";" is still refused.
		{"app.example.com", "/private./x", inClosed, lvTwoFactor},
		{"app.example.com", "/private%2Fx", inClosed, lvTwoFactor},
		{"app.example.com", "/members;x/y", isRefused, lvTwoFactor},
		{"app.example.com", "/.KEYGATE/", isReserved, lvTwoFactor},
		// wiki: ";" parameters allowed and stripped (the policy names app
		// hosts only, so wiki has the default: deny, except the paths
		// below, which none match: it is all deny).
		{"wiki.example.com", "/x;jsessionid=1", inClosed, lvTwoFactor},
		{"wiki.example.com", "/x/..;/y", isRefused, lvTwoFactor},
		{"wiki.example.com", "/.keygate;x/", isReserved, lvTwoFactor},
	} {
		status, forwarded := gateAnswer(tc.area, tc.level)
		before := h.up.count()
		got := h.rawPathGet(t, tc.host, tc.raw, cookies[tc.level])
		if reached := h.up.count() > before; got != status || reached != forwarded {
			t.Errorf("%s GET %q as level %d: %d, reached %v; want %d, %v", tc.host, tc.raw, tc.level, got, reached, status, forwarded)
		}
	}

	// Parameters on an app that takes them: judged stripped, sent as they
	// came.
	h.web.policy.Store(mustCompile(t, `
default: deny
rules:
  - {name: members, hosts: [wiki.example.com], paths: ["/members/**"], action: one_factor}
  - {name: closed, hosts: [wiki.example.com], paths: ["/private/**"], action: deny}
  - {name: rest, hosts: [wiki.example.com], action: bypass}
`))
	for _, tc := range []struct {
		raw   string
		area  pathArea
		level int
	}{
		{"/members;jsessionid=1/x", inMembers, lvAnon},
		{"/members;jsessionid=1/x", inMembers, lvPassword},
		{"/MEMBERS;x/y", inMembers, lvAnon},
		{"/private;x/y", inClosed, lvTwoFactor},
		{"/public;x/..;/private", isRefused, lvTwoFactor},
		{"/public/..;/private", isRefused, lvTwoFactor},
		// An encoded ";" is refused even here: Tomcat strips only a raw one.
		{"/members%3Bx/y", isRefused, lvAnon},
		{"/pub;a=b/x", inPublic, lvAnon},
	} {
		status, forwarded := gateAnswer(tc.area, tc.level)
		before := h.up.count()
		got := h.rawPathGet(t, "wiki.example.com", tc.raw, cookies[tc.level])
		reached := h.up.count() > before
		if got != status || reached != forwarded {
			t.Errorf("wiki GET %q as level %d: %d, reached %v; want %d, %v", tc.raw, tc.level, got, reached, status, forwarded)
			continue
		}
		if reached && h.up.last(t).RequestURI != tc.raw {
			t.Errorf("wiki GET %q: upstream received %q", tc.raw, h.up.last(t).RequestURI)
		}
	}
}

func mustCompile(t *testing.T, doc string) *policy.Compiled {
	t.Helper()
	p, err := policy.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	c, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// forwardAuthArea: where forward-auth judges a spelling differently from
// proxy mode because the app receives other bytes. In proxy mode Go's
// ReverseProxy sends a raw backslash as %5C (refused); behind nginx the app
// receives the backslash itself, which is judged as "/" and as part of the
// segment.
var forwardAuthArea = map[string]pathArea{`/members\x`: inMembers}

// The same corpus through forward-auth (nginx style, X-Original-URL): 200
// exactly when the proxy mode forwards, and the same refusals (as 403: the
// only refusal nginx's auth_request passes on).
func TestPathReadingsThroughForwardAuth(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: pathsPolicy, trustedProxies: []string{"127.0.0.1/32"}})
	cookies := pathClients(h)
	c := h.client()
	for level, name := range []string{"anonymous", "password", "two-factor"} {
		for _, sp := range pathCorpus {
			area := sp.area
			if a, ok := forwardAuthArea[sp.raw]; ok {
				area = a
			}
			want, _ := gateAnswer(area, level)
			if area == isPortal {
				want = http.StatusNotFound
			}
			switch want {
			case http.StatusFound:
				want = http.StatusUnauthorized // nginx style
			case http.StatusBadRequest, http.StatusNotFound:
				want = http.StatusForbidden // nginx would show anything else as a 500
			}
			if _, err := url.Parse("http://app.example.com" + sp.raw); err != nil {
				// Not a URL: the proxy sent nothing keygate can judge
				// (nginx itself refuses such a request line first).
				want = http.StatusBadRequest
			}
			req, _ := http.NewRequest(http.MethodGet, "http://app.example.com/.keygate/api/authz", nil)
			req.Header.Set(headerOriginalURL, "http://app.example.com"+sp.raw)
			for _, ck := range cookies[level] {
				req.AddCookie(ck)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s authz %q: %d, want %d", name, sp.raw, resp.StatusCode, want)
			}
		}
	}
}

// The gate's path step on a plain path allocates nothing (the hot path).
func TestReadPathPlainDoesNotAllocate(t *testing.T) {
	up := &upstream{}
	for _, p := range []string{"/page", "/static/app.css", "/a/b/c/d.js"} {
		if n := testing.AllocsPerRun(100, func() {
			var buf [policy.MaxReadings]policy.Reading
			rs, err := readings(up, p, buf[:0])
			if err != nil || len(rs) == 0 {
				t.Fatal("refused")
			}
		}); n != 0 {
			t.Errorf("%q: %v allocations", p, n)
		}
	}
}

// BenchmarkGatePaths is the whole gate (session, policy, proxy to an
// in-memory upstream) for a plain path and for one with several readings.
func BenchmarkGatePaths(b *testing.B) {
	target, _ := url.Parse("http://127.0.0.1:1")
	tr := memTransport{body: strings.Repeat("x", benchBody)}
	for _, bc := range []struct{ name, path string }{
		{"plain", "/page"},
		{"several-readings", "/Page.%2FSub%2520/x"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv, req := benchKeygate(b, target, tr, false)
			req.URL, _ = url.ParseRequestURI(bc.path)
			req.RequestURI = bc.path
			benchServe(b, srv, req)
		})
	}
}

// decide, as the gate calls it (readings on its stack) and as the portal
// does (decide reads them), allocates nothing for a plain path: the
// readings buffer must not escape through the question.
func TestDecidePlainDoesNotAllocate(t *testing.T) {
	pol, err := policy.Compile(policy.Policy{Default: policy.ActionDeny, Rules: []policy.Rule{
		{Name: "public", Paths: []string{"/static/**"}, Action: policy.ActionBypass},
	}})
	if err != nil {
		t.Fatal(err)
	}
	up, now := &upstream{}, time.Now()
	for _, p := range []string{"/page", "/static/app.css"} {
		if n := testing.AllocsPerRun(100, func() {
			var buf [policy.MaxReadings]policy.Reading
			rs, err := readings(up, p, buf[:0])
			if err != nil {
				t.Fatal(err)
			}
			q := question{pol: pol, up: up, host: "app.test", path: p, method: http.MethodGet, now: now}
			if _, err := decide(&q, rs); err != nil {
				t.Fatal(err)
			}
			if _, err := decide(&q, nil); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%q: %v allocations", p, n)
		}
	}
}

// The upstream's resolved host follows live policy swaps: each decision is
// the policy's own, whichever policy resolved the host last, and a warm
// handle costs no allocation.
func TestDecideFollowsPolicySwaps(t *testing.T) {
	open, err := policy.Compile(policy.Policy{Default: policy.ActionDeny, Rules: []policy.Rule{
		{Name: "open", Hosts: []string{"app.test"}, Action: policy.ActionBypass},
	}})
	if err != nil {
		t.Fatal(err)
	}
	closed, err := policy.Compile(policy.Policy{Default: policy.ActionBypass, Rules: []policy.Rule{
		{Name: "other", Hosts: []string{"other.test"}, Action: policy.ActionBypass},
		{Name: "closed", Hosts: []string{"app.test"}, Paths: []string{"/**"}, Action: policy.ActionDeny},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var holder policy.Holder
	up := &upstream{host: "app.test"}
	ask := func() policy.Decision {
		t.Helper()
		q := question{pol: holder.Load(), up: up, host: "app.test", path: "/page", method: http.MethodGet, now: time.Now()}
		d, err := decide(&q, nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for i, want := range []struct {
		pol  *policy.Compiled
		rule string
	}{{open, "open"}, {closed, "closed"}, {open, "open"}, {nil, "default"}, {closed, "closed"}} {
		holder.Store(want.pol)
		if d := ask(); d.RuleName != want.rule {
			t.Fatalf("swap %d: decided by %q, want %q", i, d.RuleName, want.rule)
		}
		if want.pol != nil && !up.resolved.Load().Of(want.pol) {
			t.Fatalf("swap %d: the upstream kept another policy's handle", i)
		}
	}
	if n := testing.AllocsPerRun(50, func() { ask() }); n != 0 {
		t.Errorf("%v allocations with a warm handle", n)
	}
	// A handle resolved for another host is not used for this one.
	up.resolved.Store(closed.ResolveHost("other.test"))
	if d := ask(); d.RuleName != "closed" {
		t.Errorf("with another host's handle: decided by %q", d.RuleName)
	}
}
