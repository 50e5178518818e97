package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod/lib/proto"
	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// A WebAuthn ceremony begun on one replica finishes on another, in
// headless Chromium through the portal's own pages and JS. nginx sends
// every begin route to replica A and every finish route to replica B, so
// each ceremony crosses replicas by construction (the access log shows
// it); a second nginx, plain round robin, shows the same ceremonies
// working wherever its turns fall.

const (
	wa = "/.keygate/api/factors/webauthn/"
	// The pinned routes: the generic {kind} routes and the portal JS's
	// aliases (web/server.go factorRoutes).
	waEnrolBegin    = wa + "enroll/begin"
	waEnrolFinish   = wa + "enroll/finish"
	waLoginBegin    = wa + "login/begin"
	waLoginFinish   = wa + "login/finish"
	waPasskeyBegin  = wa + "passkey/begin"
	waPasskeyFinish = wa + "passkey/finish"
)

// webauthnPins: begin on a, finish on b.
func webauthnPins(a, b replica) []lbPin {
	var pins []lbPin
	for _, p := range []string{wa + "begin", waEnrolBegin, waLoginBegin, waPasskeyBegin} {
		pins = append(pins, lbPin{Location: "= " + p, Backend: a.addr})
	}
	for _, p := range []string{wa + "verify", waEnrolFinish, waLoginFinish, waPasskeyFinish} {
		pins = append(pins, lbPin{Location: "= " + p, Backend: b.addr})
	}
	return pins
}

// signInPage fills the portal's sign-in form.
func signInPage(t *testing.T, p *browsertest.Page, user, password string) {
	t.Helper()
	p.Fill(t, "#username", user)
	p.Fill(t, "#password", password)
	p.Click(t, "form[action='/.keygate/login'] button[type=submit]")
}

// waitPagePath waits until the page's path is path (exact) or, when
// path ends with "*", starts with the rest.
func waitPagePath(t *testing.T, p *browsertest.Page, want string) string {
	t.Helper()
	return p.WaitURL(t, func(u string) bool {
		pu, err := url.Parse(u)
		if err != nil {
			return false
		}
		if prefix, ok := strings.CutSuffix(want, "*"); ok {
			return strings.HasPrefix(pu.Path, prefix)
		}
		return pu.Path == want
	})
}

// signOutBrowser drops every cookie: the tabs (and both load balancers,
// all on localhost) share them.
func signOutBrowser(t *testing.T, p *browsertest.Page) {
	t.Helper()
	if err := (proto.NetworkClearBrowserCookies{}).Call(p.Rod()); err != nil {
		t.Fatal(err)
	}
}

// ceremony finds the begin and finish requests of one ceremony in the
// access log and checks both succeeded and where they landed (want "" =
// anywhere). It returns the two replicas.
func ceremony(t *testing.T, hs []lbHit, begin, finish, wantBegin, wantFinish string) (string, string) {
	t.Helper()
	var got [2]*lbHit
	for i := range hs {
		for j, p := range []string{begin, finish} {
			if hs[i].Method == http.MethodPost && hs[i].Path == p {
				got[j] = &hs[i]
			}
		}
	}
	for j, want := range []string{wantBegin, wantFinish} {
		h := got[j]
		if h == nil {
			t.Fatalf("no %s in the access log: %+v", []string{begin, finish}[j], hs)
		}
		if h.Status != "200" || (want != "" && h.Upstream != want) {
			t.Errorf("%s: %s on %s, want 200 on %s", h.Path, h.Status, h.Upstream, want)
		}
	}
	return got[0].Upstream, got[1].Upstream
}

func TestReplicasWebAuthnAcrossReplicas(t *testing.T) {
	browsertest.Require(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app:%s", r.URL.Path)
	}))
	defer up.Close()
	rs, lbs := startReplicasBehindLB(t, 3, up.URL, lbReplicas{
		// Both load balancers' origins are the RP's: the browser runs the
		// ceremonies from either.
		More: func(origins []string) string {
			return fmt.Sprintf("webauthn:\n  rp_id: localhost\n  rp_name: keygate test\n  origins: [%q, %q]\n", origins[0], origins[1])
		},
		Pins:  func(rs []replica) []lbPin { return webauthnPins(rs[0], rs[1]) },
		Extra: 1,
	})
	a, b, c := rs[0], rs[1], rs[2]
	pinned, rr := lbs[0], lbs[1]

	// Admin pages need a second factor; imported through C.
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte("default: one_factor\nrules:\n  - name: admin\n    paths: [\"/admin/**\"]\n    action: two_factor\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, rc := run(t, "", "policy", "import", pol, "--config", c.cfg); rc != 0 {
		t.Fatalf("policy import on C: %s %s", out, errOut)
	}
	for _, r := range rs {
		if _, ok := within(5*time.Second, func() bool {
			_, body := getWithCookie(t, r.base+"/.keygate/readyz", nil)
			return body == "ready policy_version=2"
		}); !ok {
			t.Fatalf("the policy is not in force on %s", r.base)
		}
	}
	const password = "violet-harbour-lantern-9"
	for _, user := range []string{"alice", "bob"} {
		if _, errOut, rc := run(t, password+"\n", "user", "add", user, "--email", user+"@example.com", "--password-stdin", "--config", c.cfg); rc != 0 {
			t.Fatalf("user add %s: %s", user, errOut)
		}
	}

	br := browsertest.Start(t)
	// enrol signs user in through lb, redeems an enrolment link issued
	// through C's CLI and adds an authenticator of kind on the security
	// page; it returns the enrolment's access-log lines.
	enrol := func(p *browsertest.Page, lb *nginxLB, user, kind string) []lbHit {
		t.Helper()
		signOutBrowser(t, p)
		p.Navigate(t, lb.Base+"/.keygate/login")
		signInPage(t, p, user, password)
		waitPagePath(t, p, "/.keygate/")
		out, errOut, rc := run(t, "", "user", "enroll-link", user, "--config", c.cfg)
		if rc != 0 || len(strings.Fields(out)) == 0 {
			t.Fatalf("enroll-link: %q %q", out, errOut)
		}
		mark := len(lb.hits(t))
		p.Navigate(t, lb.Base+"/.keygate/enroll/"+path.Base(strings.Fields(out)[0]))
		p.Click(t, "form[action='/.keygate/enroll'] button")
		waitPagePath(t, p, "/.keygate/settings")
		p.Fill(t, "#key-name", "Key of "+user)
		p.Click(t, "button[data-kind="+kind+"]")
		p.WaitURL(t, func(u string) bool { return strings.Contains(u, "done=key_added") })
		return lb.hitsSince(t, mark, 2)
	}
	// landed waits for the app's page at target and checks what it shows.
	landed := func(p *browsertest.Page, target string) {
		t.Helper()
		u, _ := url.Parse(target)
		waitPagePath(t, p, u.Path)
		if got := p.Text(t, "body"); got != "app:"+u.Path {
			t.Fatalf("after the ceremony, %s shows %q", target, got)
		}
	}
	// keySignIn: password, then the security key, for target.
	keySignIn := func(p *browsertest.Page, lb *nginxLB, user, target string) []lbHit {
		t.Helper()
		signOutBrowser(t, p)
		p.Navigate(t, target)
		waitPagePath(t, p, "/.keygate/login")
		signInPage(t, p, user, password)
		waitPagePath(t, p, "/.keygate/second-factor")
		mark := len(lb.hits(t))
		p.Navigate(t, lb.Base+"/.keygate/second-factor/webauthn?rd="+url.QueryEscape(target))
		p.Click(t, "#webauthn-start")
		landed(p, target)
		return lb.hitsSince(t, mark, 2)
	}
	// passkeySignIn: no username, no password, the passkey only.
	passkeySignIn := func(p *browsertest.Page, lb *nginxLB, target string) []lbHit {
		t.Helper()
		signOutBrowser(t, p)
		p.Navigate(t, lb.Base+"/.keygate/login?rd="+url.QueryEscape(target))
		mark := len(lb.hits(t))
		p.Click(t, "#passkey-login")
		landed(p, target)
		return lb.hitsSince(t, mark, 2)
	}

	// A roaming security key: enrolment begun on A, finished on B.
	pk := br.NewPage(t, pinned.Base+"/.keygate/login")
	pk.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"})
	ceremony(t, enrol(pk, pinned, "alice", "security_key"), waEnrolBegin, waEnrolFinish, a.addr, b.addr)
	if out, errOut, rc := run(t, "", "user", "factors", "alice", "--config", c.cfg); rc != 0 || !strings.Contains(out, "Key of alice") || !strings.Contains(out, "webauthn") {
		t.Fatalf("alice's factors, read through C: rc=%d %q %q", rc, out, errOut)
	}
	// Sign-in with it: the assertion begun on A, verified on B.
	ceremony(t, keySignIn(pk, pinned, "alice", pinned.Base+"/admin/panel"), waLoginBegin, waLoginFinish, a.addr, b.addr)

	// A platform passkey (resident key, user verification): enrolled and
	// used across replicas the same way.
	pp := br.NewPage(t, pinned.Base+"/.keygate/login")
	pp.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "internal",
		ResidentKey: true, UserVerification: true, IsUserVerified: true})
	ceremony(t, enrol(pp, pinned, "bob", "platform"), waEnrolBegin, waEnrolFinish, a.addr, b.addr)
	ceremony(t, passkeySignIn(pp, pinned, pinned.Base+"/admin/by-passkey"), waPasskeyBegin, waPasskeyFinish, a.addr, b.addr)

	// Through the plain round robin: both sign-ins again, wherever the
	// steps land.
	kb, kf := ceremony(t, keySignIn(pk, rr, "alice", rr.Base+"/admin/rr-key"), waLoginBegin, waLoginFinish, "", "")
	pb, pf := ceremony(t, passkeySignIn(pp, rr, rr.Base+"/admin/rr-passkey"), waPasskeyBegin, waPasskeyFinish, "", "")
	t.Logf("round robin: security key begun on %s, finished on %s; passkey begun on %s, finished on %s", kb, kf, pb, pf)

	// A finish naming a ceremony nobody began is refused clearly (4xx,
	// not a 500) on every replica.
	for _, r := range rs {
		st, body := postJSON(t, r.base+waPasskeyFinish, `{"ceremony":"not-a-ceremony","credential":{}}`)
		if st == http.StatusOK || st >= 500 {
			t.Errorf("a finish for an unknown ceremony on %s: %d %s", r.base, st, body)
		}
	}
}

// postJSON posts body to target and returns the status and the answer.
func postJSON(t *testing.T, target, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(target, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
