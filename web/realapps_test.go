package web

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/policy"
)

// The real-app path battery (issue 11, part 1): keygate in front of real
// apps that route on paths — Tomcat 10, Express 5, Go's ServeMux and nginx
// serving static files (realapps_apps_test.go) — and the same apps behind
// real nginx with the shipped forward-auth snippet. A corpus of path
// spellings (realapps_corpus_test.go) is sent raw, byte for byte on the
// request line, by an anonymous client, a password-only session and a
// two-factor session.
//
// Pass: no answer was produced by an area whose rule the client does not
// satisfy; the deny area and the reserved prefix are never reached, and a
// spelling that reads as the reserved prefix is never forwarded at all. The
// area is read from what the app answered ("AREA=two"), not from what
// keygate decided.
//
// The policy's default is two_factor, keygate's shipped default: a spelling
// no rule matches is then judged two_factor, so a case-folded "/DENY/"
// reaching a case-insensitive app shows up as a two-factor client reaching
// the deny area, and the apps' catch-all ("none") needs two factors too.

const realappsPolicy = `
default: two_factor
rules:
  - name: public
    hosts: [app.example.com]
    paths: ["/public/**"]
    action: bypass
  - name: one
    hosts: [app.example.com]
    paths: ["/one/**"]
    action: one_factor
  - name: two
    hosts: [app.example.com]
    paths: ["/two/**"]
    action: two_factor
  - name: deny
    hosts: [app.example.com]
    paths: ["/deny/**"]
    action: deny
`

// Client levels, and what each area of the apps needs.
const (
	levelAnonymous = 0
	levelPassword  = 1
	levelTwoFactor = 2
	levelNobody    = 3
)

var areaNeeds = map[string]int{
	"public":   levelAnonymous,
	"one":      levelPassword,
	"two":      levelTwoFactor,
	"none":     levelTwoFactor, // the policy's default
	"deny":     levelNobody,
	"reserved": levelNobody,
	"error":    levelAnonymous, // an app's own error answer: no area's content
}

type realClient struct {
	name   string
	level  int
	cookie string // keygate_session value, "" for anonymous
}

// realClients signs alice in twice through the JSON API: one session stays
// password-only, the other gets a TOTP proof added in the session store
// (how a second factor is proven is other tests' subject; here only the
// session's level matters).
func realClients(t *testing.T, h *harness) []realClient {
	t.Helper()
	id := func() string {
		resp, out := h.login(h.client(), testUser, testPassword, "")
		ck := sessionCookie(resp)
		if resp.StatusCode != http.StatusOK || ck == nil {
			t.Fatalf("sign-in: %d %v", resp.StatusCode, out)
		}
		return ck.Value
	}
	pw := id()
	sess, err := h.sessions.AddProof(context.Background(), id(), policy.Proof{Kind: policy.FactorTOTP, At: h.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return []realClient{
		{name: "anonymous", level: levelAnonymous},
		{name: "password", level: levelPassword, cookie: pw},
		{name: "two-factor", level: levelTwoFactor, cookie: sess.ID},
	}
}

// rawAnswer is what came back for one spelling and client.
type rawAnswer struct {
	sp     spelling
	client realClient
	status int    // 0: no HTTP answer (connection closed, timeout)
	app    string // the app that answered, "" if it was not the app
	area   string // the area that answered, "" if none named itself
	err    error
}

var areaMark = regexp.MustCompile(`KG-REALAPP APP=(\S+) AREA=(\S+)`)

// rawGet sends one GET with target written on the request line as it is.
// Go's http.Client would clean or re-encode some spellings first.
func rawGet(addr, target, cookie string) (status int, hdr http.Header, body string, err error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, nil, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	var b strings.Builder
	b.WriteString("GET " + target + " HTTP/1.1\r\nHost: app.example.com\r\nAccept: text/html\r\nUser-Agent: keygate-realapps\r\nConnection: close\r\n")
	if cookie != "" {
		b.WriteString("Cookie: " + CookieName + "=" + cookie + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		return 0, nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, resp.Header, string(raw), nil
}

func (a *rawAnswer) forwarded() bool { return a.app != "" }

// leak says why the answer breaks the pass criterion, or "".
func (a *rawAnswer) leak() string {
	if !a.forwarded() {
		return ""
	}
	if a.sp.never {
		return fmt.Sprintf("reserved prefix forwarded (the app answered %d, area %q)", a.status, a.area)
	}
	if a.area == "" {
		return ""
	}
	need, ok := areaNeeds[a.area]
	if !ok {
		return fmt.Sprintf("unknown area %q answered", a.area)
	}
	if need > a.client.level {
		return "reached area " + a.area
	}
	return ""
}

// bucket is the answer's row in the counts: what keygate (or the front
// nginx) did.
func (a *rawAnswer) bucket() string {
	switch {
	case a.forwarded():
		return "forwarded"
	case a.status == http.StatusBadRequest:
		return "400"
	case a.status == http.StatusFound || a.status == http.StatusUnauthorized:
		return "challenged"
	case a.status == http.StatusForbidden || a.status == http.StatusNotFound:
		return "denied"
	default:
		return "other"
	}
}

// realRun is one app behind one front (keygate proxy or nginx forward-auth).
type realRun struct {
	name    string // "proxy/tomcat", "forward-auth/gomux"
	answers []rawAnswer
	took    time.Duration
}

// battery sends every spelling with every client to addr, a few at a time.
func battery(t *testing.T, name, addr string, corpus []spelling, clients []realClient, sem chan struct{}) *realRun {
	t.Helper()
	run := &realRun{name: name, answers: make([]rawAnswer, 0, len(corpus)*len(clients))}
	for _, c := range clients {
		for _, sp := range corpus {
			run.answers = append(run.answers, rawAnswer{sp: sp, client: c})
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range run.answers {
		a := &run.answers[i]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			status, hdr, body, err := rawGet(addr, a.sp.path, a.client.cookie)
			a.status, a.err = status, err
			if m := areaMark.FindStringSubmatch(body); m != nil {
				a.app, a.area = m[1], m[2]
			} else if hdr != nil && hdr.Get("X-Realapp") != "" {
				a.app = hdr.Get("X-Realapp")
			}
		})
	}
	wg.Wait()
	run.took = time.Since(start)
	return run
}

// check fails the test for every leak (grouped by class) and for a
// baseline the app did not serve as expected, and logs the counts.
func (run *realRun) check(t *testing.T, corpusSize int) {
	t.Helper()
	type group struct {
		n        int
		clients  map[string]bool
		examples []string
	}
	leaks := map[string]*group{}
	var blind []string
	for i := range run.answers {
		a := &run.answers[i]
		if why := a.leak(); why != "" {
			g := leaks[a.sp.class]
			if g == nil {
				g = &group{clients: map[string]bool{}}
				leaks[a.sp.class] = g
			}
			g.n++
			g.clients[a.client.name] = true
			if len(g.examples) < 4 {
				g.examples = append(g.examples, fmt.Sprintf("%s GET %q → %d, %s", a.client.name, a.sp.path, a.status, why))
			}
		}
		// The baseline proves the battery sees areas: a plain path of an
		// area the client may enter must be served by that area.
		if a.sp.class == "plain" && areaNeeds[a.sp.target] <= a.client.level && a.area != a.sp.target {
			blind = append(blind, fmt.Sprintf("%s GET %s → %d app=%q area=%q err=%v", a.client.name, a.sp.path, a.status, a.app, a.area, a.err))
		}
	}
	if len(blind) > 0 {
		t.Errorf("%s: plain paths the client may open were not served by their area (the battery is blind):\n  %s",
			run.name, strings.Join(blind, "\n  "))
	}
	classes := make([]string, 0, len(leaks))
	for c := range leaks {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	for _, c := range classes {
		g := leaks[c]
		cl := make([]string, 0, len(g.clients))
		for k := range g.clients {
			cl = append(cl, k)
		}
		sort.Strings(cl)
		t.Errorf("%s: LEAK class %q: %d answers from an area the client may not enter (clients: %s), e.g.\n  %s",
			run.name, c, g.n, strings.Join(cl, ", "), strings.Join(g.examples, "\n  "))
	}
	t.Logf("%s: %d spellings × %d clients in %v", run.name, corpusSize, len(run.answers)/max(corpusSize, 1), run.took.Round(time.Millisecond))
	t.Logf("%s", run.table())
	if dir := os.Getenv("KEYGATE_REALAPPS_OUT"); dir != "" {
		run.dump(t, dir)
	}
}

// table is the counts per client: answered 400, challenged, denied,
// forwarded (and by which area), other.
func (run *realRun) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-11s %6s %10s %7s %9s %6s  %s\n", "client", "400", "challenged", "denied", "forwarded", "other", "forwarded answers by area")
	byClient := map[string]map[string]int{}
	areas := map[string]map[string]int{}
	others := map[string]map[int]int{}
	var order []string
	for i := range run.answers {
		a := &run.answers[i]
		n := a.client.name
		if byClient[n] == nil {
			byClient[n], areas[n], others[n] = map[string]int{}, map[string]int{}, map[int]int{}
			order = append(order, n)
		}
		byClient[n][a.bucket()]++
		if a.forwarded() {
			ar := a.area
			if ar == "" {
				ar = fmt.Sprintf("app-own-%d", a.status)
			}
			areas[n][ar]++
		} else if a.bucket() == "other" {
			others[n][a.status]++
		}
	}
	for _, n := range order {
		c := byClient[n]
		var ar []string
		for k, v := range areas[n] {
			ar = append(ar, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(ar)
		var ot []string
		for k, v := range others[n] {
			ot = append(ot, fmt.Sprintf("status %d ×%d", k, v))
		}
		sort.Strings(ot)
		fmt.Fprintf(&b, "%-11s %6d %10d %7d %9d %6d  %s %s\n", n, c["400"], c["challenged"], c["denied"], c["forwarded"], c["other"],
			strings.Join(ar, " "), strings.Join(ot, ", "))
	}
	return b.String()
}

// dump writes every answer as a TSV line (for reports).
func (run *realRun) dump(t *testing.T, dir string) {
	var b strings.Builder
	for i := range run.answers {
		a := &run.answers[i]
		fmt.Fprintf(&b, "%s\t%s\t%q\t%s\t%d\t%s\t%s\t%s\n", a.client.name, a.sp.class, a.sp.path, a.bucket(), a.status, a.app, a.area, a.leak())
	}
	name := strings.ReplaceAll(run.name, "/", "-") + ".tsv"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
		t.Log(err)
	}
}

// TestRealAppsPathBattery runs the corpus through keygate's proxy mode in
// front of each app, and through real nginx with the shipped forward-auth
// snippet in front of the Go app, Tomcat and Express.
func TestRealAppsPathBattery(t *testing.T) {
	start := time.Now()
	corpus := realappCorpus()
	if len(corpus) < 300 {
		t.Fatalf("corpus of %d spellings, want at least 300", len(corpus))
	}
	apps := startRealApps(t)
	t.Logf("apps started in %v", time.Since(start).Round(time.Millisecond))
	// A modest number of requests in flight over all apps: the machine has
	// two cores, and keygate, the apps and nginx share them.
	sem := make(chan struct{}, 12)

	t.Run("proxy", func(t *testing.T) {
		for _, name := range []string{"tomcat", "express", "gomux", "nginx"} {
			app := apps[name]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				app.need(t)
				h := newHarness(t, harnessOptions{policyYAML: realappsPolicy, upstreamURL: "http://" + app.addr})
				clients := realClients(t, h)
				run := battery(t, "proxy/"+name, h.srv.Listener.Addr().String(), corpus, clients, sem)
				run.check(t, len(corpus))
			})
		}
	})

	t.Run("forward-auth", func(t *testing.T) {
		for _, name := range []string{"gomux", "tomcat", "express"} {
			app := apps[name]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				app.need(t)
				// nginx connects to keygate from loopback: it is the trusted
				// proxy. The harness's own upstream is not used here.
				h := newHarness(t, harnessOptions{policyYAML: realappsPolicy, trustedProxies: []string{"127.0.0.1"}})
				clients := realClients(t, h)
				addr := startSnippetNginx(t, h.srv.Listener.Addr().String(), app.addr)
				run := battery(t, "forward-auth/"+name, addr, corpus, clients, sem)
				run.check(t, len(corpus))
				// nginx sends what it routes to its /.keygate/ location to
				// keygate; keygate must serve it itself or refuse it, never
				// proxy it on to an app.
				h.up.mu.Lock()
				var proxied []string
				for _, r := range h.up.reqs {
					proxied = append(proxied, fmt.Sprintf("%q (%s)", r.RequestURI, r.Header.Get(HeaderUser)))
				}
				h.up.mu.Unlock()
				if len(proxied) > 0 {
					t.Errorf("forward-auth/%s: LEAK: keygate proxied %d requests that nginx routed to its /.keygate/ location on to its upstream: %s",
						name, len(proxied), strings.Join(proxied, ", "))
				}
			})
		}
	})
	t.Logf("battery wall time %v (corpus %d spellings, classes %v)", time.Since(start).Round(time.Millisecond), len(corpus), classCounts(corpus))
}

func classCounts(corpus []spelling) string {
	m := map[string]int{}
	var order []string
	for _, s := range corpus {
		if m[s.class] == 0 {
			order = append(order, s.class)
		}
		m[s.class]++
	}
	parts := make([]string, 0, len(order))
	for _, c := range order {
		parts = append(parts, fmt.Sprintf("%s=%d", c, m[c]))
	}
	return strings.Join(parts, " ")
}
