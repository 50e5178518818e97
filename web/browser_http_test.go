package web

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/launcher"
	"github.com/go-rod/rod/lib/proto"
	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// Sign-in as real browsers do it where the shipped proxy snippets put
// keygate: a plain-HTTP host that is not localhost (Chromium then sends no
// Sec-Fetch-Site, so only the Origin header tells a same-origin form post
// from a forged one) and HTTPS (with a test certificate). Chromium maps
// *.example.test to the loopback listeners.

// launchMapped starts a Chromium of its own: browsertest's shared one has
// no host mapping and refuses test certificates.
func launchMapped(t *testing.T) *rod.Browser {
	t.Helper()
	browsertest.Require(t)
	dir := t.TempDir()
	l := launcher.New().
		Bin(browsertest.ChromiumPath). // never let the launcher download a browser
		Headless(true).
		NoSandbox(true).
		UserDataDir(dir).
		Set("disable-gpu").
		Set("disable-quic").
		Set("no-first-run").
		Set("disable-background-networking").
		Set("disable-component-update").
		Set("disable-sync").
		Set("host-resolver-rules", "MAP *.example.test 127.0.0.1").
		Set("ignore-certificate-errors").
		// Navigations to http:// stay http://: the test is about what a
		// browser does on a plain-HTTP site.
		Set("disable-features", "HttpsUpgrades,HttpsFirstBalancedModeAutoEnable")
	u, err := l.Launch()
	if err != nil {
		t.Fatalf("launch chromium: %v", err) // Require found the binary: it must start
	}
	b := rod.New().ControlURL(u)
	if err := b.Connect(); err != nil {
		l.Kill()
		t.Fatalf("connect to chromium: %v", err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		done := make(chan struct{})
		go func() { l.Cleanup(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			l.Kill()
			<-done
		}
	})
	return b
}

// rodPage is a tab with a bounded wait on every step.
type rodPage struct {
	t *testing.T
	p *rod.Page
}

func newRodPage(t *testing.T, b *rod.Browser) *rodPage {
	t.Helper()
	p, err := b.Page(proto.TargetCreateTarget{URL: "about:blank"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return &rodPage{t: t, p: p}
}

func (rp *rodPage) ctx() *rod.Page { return rp.p.Timeout(20 * time.Second) }

func (rp *rodPage) navigate(u string) {
	rp.t.Helper()
	if err := rp.ctx().Navigate(u); err != nil {
		rp.t.Fatalf("navigate %s: %v", u, err)
	}
	if err := rp.ctx().WaitLoad(); err != nil {
		rp.t.Fatalf("load %s: %v", u, err)
	}
}

func (rp *rodPage) fill(sel, v string) {
	rp.t.Helper()
	el, err := rp.ctx().Element(sel)
	if err != nil {
		rp.t.Fatalf("find %s on %s: %v", sel, rp.url(), err)
	}
	if err := el.Input(v); err != nil {
		rp.t.Fatalf("type into %s: %v", sel, err)
	}
}

func (rp *rodPage) click(sel string) {
	rp.t.Helper()
	el, err := rp.ctx().Element(sel)
	if err != nil {
		rp.t.Fatalf("find %s on %s: %v", sel, rp.url(), err)
	}
	if err := el.Click(proto.InputMouseButtonLeft, 1); err != nil {
		rp.t.Fatalf("click %s: %v", sel, err)
	}
}

func (rp *rodPage) url() string {
	info, err := rp.p.Info()
	if err != nil {
		return "?"
	}
	return info.URL
}

func (rp *rodPage) text() string {
	el, err := rp.ctx().Element("body")
	if err != nil {
		return ""
	}
	s, _ := el.Text()
	return s
}

// waitPath waits until the tab shows host's path (and its load finished).
func (rp *rodPage) waitPath(host, path string) {
	rp.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if u, err := url.Parse(rp.url()); err == nil && u.Host == host && u.Path == path {
			_ = rp.ctx().WaitLoad()
			return
		}
		if time.Now().After(deadline) {
			rp.t.Fatalf("waited for %s%s; the tab shows %s: %q", host, path, rp.url(), rp.text())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cookies are the cookies the browser holds for u.
func (rp *rodPage) cookies(u string) []*proto.NetworkCookie {
	rp.t.Helper()
	res, err := proto.NetworkGetCookies{Urls: []string{u}}.Call(rp.p)
	if err != nil {
		rp.t.Fatal(err)
	}
	return res.Cookies
}

func (rp *rodPage) clearCookies() {
	rp.t.Helper()
	if err := (proto.NetworkClearBrowserCookies{}).Call(rp.p); err != nil {
		rp.t.Fatal(err)
	}
}

// mappedGateway is a harness whose app lives at www.example.test, served
// over plain HTTP (the harness listener) and HTTPS (a second listener with
// httptest's certificate) by the same handler.
func mappedGateway(t *testing.T) (h *harness, plain, secure string) {
	h = newHarness(t, harnessOptions{policyYAML: `
default: deny
rules:
  - {name: app, hosts: [www.example.test], action: one_factor}
`})
	target, _ := url.Parse(h.up.srv.URL)
	if err := h.web.SetUpstreams([]Upstream{{Host: "www.example.test", URL: target}}); err != nil {
		t.Fatal(err)
	}
	tlsSrv := httptest.NewUnstartedServer(h.web)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	port := func(a net.Addr) string { return strconv.Itoa(a.(*net.TCPAddr).Port) }
	return h, "www.example.test:" + port(h.srv.Listener.Addr()), "www.example.test:" + port(tlsSrv.Listener.Addr())
}

func TestBrowserSignsInOnPlainHTTPAndHTTPSHosts(t *testing.T) {
	b := launchMapped(t)
	h, plain, secure := mappedGateway(t)
	for _, tc := range []struct {
		name, scheme, host, cookie string
	}{
		// No Sec-Fetch-Site here: the form post passes only because the
		// browser sends its real Origin (Referrer-Policy: same-origin).
		{"plain http", "http", plain, CookieName},
		// Host-only over HTTPS: the __Host- name.
		{"https", "https", secure, HostCookieName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := newRodPage(t, b)
			rp.clearCookies()
			origin := tc.scheme + "://" + tc.host
			rp.navigate(origin + "/app/report?q=1")
			rp.waitPath(tc.host, "/.keygate/login")
			rp.fill("#username", testUser)
			rp.fill("#password", testPassword)
			rp.click("form[action='/.keygate/login'] button[type=submit]")
			rp.waitPath(tc.host, "/app/report")
			if got := h.up.lastAt("/app/report"); got == nil || got.Header.Get(HeaderUser) != testUser || got.URL.RawQuery != "q=1" {
				t.Fatalf("the app got %+v", got)
			}
			var names []string
			for _, ck := range rp.cookies(origin + "/") {
				names = append(names, ck.Name)
				if ck.Name == HostCookieName && (!ck.Secure || ck.Path != "/" || !ck.HTTPOnly || strings.HasPrefix(ck.Domain, ".")) {
					t.Errorf("%s: secure=%v path=%q httponly=%v domain=%q", ck.Name, ck.Secure, ck.Path, ck.HTTPOnly, ck.Domain)
				}
			}
			if len(names) != 1 || names[0] != tc.cookie {
				t.Fatalf("the browser holds %v, want just %s", names, tc.cookie)
			}
		})
	}
}

// A page on another origin that posts the sign-in form with the right
// password (login CSRF: the victim would then work in the attacker's
// account) is refused, whatever referrer policy that page sets, and
// nothing changes: no session, no cookie, nothing forwarded.
func TestBrowserCrossSiteSignInIsRefused(t *testing.T) {
	b := launchMapped(t)
	h, plain, secure := mappedGateway(t)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rp := r.URL.Query().Get("rp"); rp != "" {
			w.Header().Set("Referrer-Policy", rp)
		}
		target := r.URL.Query().Get("to")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = fmt.Fprintf(w, `<!doctype html><form method="POST" action="%s/.keygate/login">
<input name="username" value="%s"><input name="password" value="%s"><input name="rd" value="%s/app/x">
</form><script>document.forms[0].submit()</script>`, target, testUser, testPassword, target)
	}))
	t.Cleanup(evil.Close)
	evilHost := "evil.example.test:" + strconv.Itoa(evil.Listener.Addr().(*net.TCPAddr).Port)
	refused := h.web.tr.pick("en").T("err.cross_origin")
	for _, tc := range []struct {
		name, target, host, rp string
	}{
		{"same site, plain http", "http://" + plain, plain, ""},
		{"same site, plain http, no-referrer page (Origin: null)", "http://" + plain, plain, "no-referrer"},
		{"same site, plain http, unsafe-url page", "http://" + plain, plain, "unsafe-url"},
		{"to https", "https://" + secure, secure, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := newRodPage(t, b)
			rp.clearCookies()
			before, forwarded := len(h.sessions.ListUser(testUser)), h.up.count()
			// The page submits itself while loading: its own load event
			// may never come, so only the navigation is waited for.
			if err := rp.ctx().Navigate("http://" + evilHost + "/?to=" + url.QueryEscape(tc.target) + "&rp=" + url.QueryEscape(tc.rp)); err != nil {
				t.Fatal(err)
			}
			rp.waitPath(tc.host, "/.keygate/login")
			if txt := rp.text(); !strings.Contains(txt, refused) {
				t.Fatalf("the forged sign-in was answered with %q", txt)
			}
			if n := len(h.sessions.ListUser(testUser)); n != before {
				t.Errorf("sessions of %s: %d before, %d after", testUser, before, n)
			}
			if cks := rp.cookies(tc.target + "/"); len(cks) != 0 {
				t.Errorf("the browser got cookies: %v", cks)
			}
			if h.up.count() != forwarded {
				t.Error("something was forwarded to the app")
			}
		})
	}
	// The same browser, on the real page, signs in: the refusals were the
	// forgery's, not the browser's.
	rp := newRodPage(t, b)
	rp.navigate("http://" + plain + "/.keygate/login")
	rp.fill("#username", testUser)
	rp.fill("#password", testPassword)
	rp.click("form[action='/.keygate/login'] button[type=submit]")
	rp.waitPath(plain, "/.keygate/")
}

// lastAt is the last request the app got for path, or nil.
func (r *recorder) lastAt(path string) *http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.reqs) - 1; i >= 0; i-- {
		if r.reqs[i].URL.Path == path {
			return r.reqs[i]
		}
	}
	return nil
}
