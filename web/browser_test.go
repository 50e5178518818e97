package web

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod/lib/proto"
	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// WebAuthn through the real portal pages in headless Chromium with the
// DevTools virtual authenticator: the browser runs keygate's own JS, the
// server runs go-webauthn; nothing in between is faked.

var browser browsertest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	_ = browser.Close()
	os.Exit(code)
}

const browserPolicy = `
default: one_factor
rules:
  - name: admin
    hosts: [localhost]
    paths: ["/admin/**"]
    action: two_factor
  - name: hardware-only
    hosts: [localhost]
    paths: ["/hw/**"]
    action: two_factor
    factors: [webauthn]
    webauthn: {hardware: true}
  - name: fresh
    hosts: [localhost]
    paths: ["/fresh/**"]
    action: two_factor
    factors: [webauthn]
    max_age: 1m
`

// browserSignIn fills the portal's sign-in form.
func browserSignIn(t *testing.T, p *browsertest.Page, user, password string) {
	t.Helper()
	p.Fill(t, "#username", user)
	p.Fill(t, "#password", password)
	p.Click(t, "form[action='/.keygate/login'] button[type=submit]")
}

// waitExact waits until the page's path is exactly path.
func waitExact(t *testing.T, p *browsertest.Page, path string) string {
	t.Helper()
	return p.WaitURL(t, func(u string) bool {
		pu, err := url.Parse(u)
		return err == nil && pu.Path == path
	})
}

func clearCookies(t *testing.T, p *browsertest.Page) {
	t.Helper()
	if err := (proto.NetworkClearBrowserCookies{}).Call(p.Rod()); err != nil {
		t.Fatal(err)
	}
}

func waitPath(t *testing.T, p *browsertest.Page, prefix string) string {
	t.Helper()
	return p.WaitURL(t, func(u string) bool {
		pu, err := url.Parse(u)
		return err == nil && strings.HasPrefix(pu.Path, prefix)
	})
}

// enrolInBrowser signs user in, redeems an admin's enrolment link and adds
// an authenticator of kind through the security page.
func (h *harness) enrolInBrowser(t *testing.T, p *browsertest.Page, user, password, kind string) {
	t.Helper()
	clearCookies(t, p) // tabs share cookies: start signed out
	p.Navigate(t, h.origin+"/.keygate/login")
	browserSignIn(t, p, user, password)
	waitExact(t, p, "/.keygate/")
	token, _, err := h.mfa.IssueEnrollLink(context.Background(), user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p.Navigate(t, h.origin+"/.keygate/enroll/"+token)
	p.Click(t, "form[action='/.keygate/enroll'] button")
	waitPath(t, p, "/.keygate/settings")
	p.Fill(t, "#key-name", "Test "+kind)
	p.Click(t, "button[data-kind="+kind+"]")
	p.WaitURL(t, func(u string) bool { return strings.Contains(u, "done=key_added") })
}

func TestBrowserSecurityKeyAndPasskey(t *testing.T) {
	b := browser.Get(t)
	h := newHarness(t, harnessOptions{policyYAML: browserPolicy})
	ctx := context.Background()

	// A roaming security key (ctap2 over USB), enrolled by alice.
	p := b.NewPage(t, h.origin+"/public")
	key := p.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"})
	h.enrolInBrowser(t, p, testUser, testPassword, "security_key")
	creds, err := h.mfa.Credentials(ctx, testUser)
	if err != nil || len(creds) != 1 || creds[0].Kind != "webauthn" || creds[0].Name != "Test security_key" {
		t.Fatalf("after enrolment: %v %+v", err, creds)
	}

	// The same key cannot be enrolled twice: the page says so.
	p.Fill(t, "#key-name", "Again")
	p.Click(t, "button[data-kind=security_key]")
	deadline := time.Now().Add(10 * time.Second)
	for {
		var hidden bool
		p.EvalInto(t, &hidden, `() => document.getElementById("enroll-error").hidden`)
		if !hidden {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no message for a key enrolled twice")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if msg := p.Text(t, "#enroll-error"); !strings.Contains(msg, "already registered") {
		t.Fatalf("enrolling twice says %q", msg)
	}

	// A new session: password, then the key, and the upstream is reached.
	clearCookies(t, p)
	p.Navigate(t, h.origin+"/admin/panel")
	waitPath(t, p, "/.keygate/login")
	browserSignIn(t, p, testUser, testPassword)
	waitExact(t, p, "/.keygate/second-factor")
	p.Navigate(t, h.origin+"/.keygate/second-factor/webauthn?rd="+url.QueryEscape(h.origin+"/admin/panel"))
	p.Click(t, "#webauthn-start")
	waitPath(t, p, "/admin/panel")
	if got := h.up.last(t); got.Header.Get("Remote-User") != testUser || got.Header.Get("Remote-Factors") != "password,webauthn" {
		t.Fatalf("upstream saw %q / %q", got.Header.Get("Remote-User"), got.Header.Get("Remote-Factors"))
	}

	// hardware: true refuses the virtual authenticator's self-made
	// attestation: the person is sent back to the chooser.
	p.Navigate(t, h.origin+"/hw/x")
	waitExact(t, p, "/.keygate/second-factor")

	// Step-up: one minute later the key is asked for again, and the
	// original URL is where the person lands after it.
	p.Navigate(t, h.origin+"/fresh/report?q=1")
	waitPath(t, p, "/fresh/report")
	h.clock.Add(2 * time.Minute)
	p.Navigate(t, h.origin+"/fresh/report?q=1")
	waitExact(t, p, "/.keygate/second-factor")
	p.Navigate(t, h.origin+"/.keygate/second-factor/webauthn?rd="+url.QueryEscape(h.origin+"/fresh/report?q=1"))
	p.Click(t, "#webauthn-start")
	final := waitPath(t, p, "/fresh/report")
	if !strings.HasSuffix(final, "q=1") {
		t.Fatalf("after step-up landed on %s", final)
	}

	// A form typed while the window passed is not lost: after the key, it
	// is sent on, same method, same fields.
	h.clock.Add(2 * time.Minute)
	p.Eval(t, `() => {
		const f = document.createElement("form");
		f.method = "POST"; f.action = "/fresh/submit";
		for (const [k, v] of [["note", "hello world & more"], ["amount", "5"]]) {
			const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i);
		}
		document.body.appendChild(f); f.submit();
	}`)
	waitExact(t, p, "/.keygate/second-factor")
	if n := h.up.count(); n == 0 || h.up.last(t).URL.Path == "/fresh/submit" {
		t.Fatal("the form reached the upstream without the step-up")
	}
	p.Navigate(t, h.origin+"/.keygate/second-factor/webauthn?rd="+url.QueryEscape(h.origin+"/fresh/submit"))
	p.Click(t, "#webauthn-start")
	waitExact(t, p, "/fresh/submit")
	got, body := h.up.lastTo(t, "/fresh/submit")
	if got.Method != "POST" {
		t.Fatalf("replayed as %s %s", got.Method, got.URL.Path)
	}
	if body != "note=hello+world+%26+more&amount=5" {
		t.Fatalf("replayed body %q", body)
	}
	p.RemoveAuthenticator(t, key)

	// A platform authenticator with user verification and a resident key
	// (Touch ID, Windows Hello), enrolled by bob, then a passkey sign-in
	// with no username typed.
	clearCookies(t, p)
	p2 := b.NewPage(t, h.origin+"/public")
	p2.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "internal",
		ResidentKey: true, UserVerification: true, IsUserVerified: true})
	h.enrolInBrowser(t, p2, "bob", "violet-harbour-lantern-9", "platform")
	clearCookies(t, p2)
	p2.Navigate(t, h.origin+"/.keygate/login?rd="+url.QueryEscape(h.origin+"/admin/by-passkey"))
	p2.Click(t, "#passkey-login")
	waitPath(t, p2, "/admin/by-passkey")
	if got := h.up.last(t); got.Header.Get("Remote-User") != "bob" {
		t.Fatalf("passkey sign-in reached the upstream as %q", got.Header.Get("Remote-User"))
	}
}

func TestBrowserPolicyChecksWhatTheKeyProved(t *testing.T) {
	b := browser.Get(t)
	h := newHarness(t, harnessOptions{policyYAML: `
default: one_factor
rules:
  - {name: admin, hosts: [localhost], paths: ["/admin/**"], action: two_factor}
  - {name: no-synced, hosts: [localhost], paths: ["/nosync/**"], action: two_factor, factors: [webauthn], webauthn: {synced: false}}
  - {name: uv, hosts: [localhost], paths: ["/uv/**"], action: two_factor, factors: [webauthn], webauthn: {user_verification: required}}
`})
	signInWithKey := func(p *browsertest.Page, user, password string) {
		t.Helper()
		clearCookies(t, p)
		p.Navigate(t, h.origin+"/.keygate/login?rd="+url.QueryEscape(h.origin+"/admin/x"))
		browserSignIn(t, p, user, password)
		waitExact(t, p, "/.keygate/second-factor")
		p.Navigate(t, h.origin+"/.keygate/second-factor/webauthn?rd="+url.QueryEscape(h.origin+"/admin/x"))
		p.Click(t, "#webauthn-start")
		waitExact(t, p, "/admin/x")
	}

	// A synced passkey (backup eligible): fine for the admin area, refused
	// where synced: false.
	p := b.NewPage(t, h.origin+"/public")
	p.AddAuthenticator(t, browsertest.AuthenticatorOptions{Transport: "internal", ResidentKey: true,
		UserVerification: true, IsUserVerified: true, BackupEligible: true, BackupState: true})
	h.enrolInBrowser(t, p, testUser, testPassword, "platform")
	signInWithKey(p, testUser, testPassword)
	p.Navigate(t, h.origin+"/uv/x")
	waitExact(t, p, "/uv/x")
	p.Navigate(t, h.origin+"/nosync/x")
	waitExact(t, p, "/.keygate/second-factor")

	// A security key without user verification: refused where the rule
	// requires it.
	p2 := b.NewPage(t, h.origin+"/public")
	p2.AddAuthenticator(t, browsertest.AuthenticatorOptions{Transport: "usb"})
	h.enrolInBrowser(t, p2, "bob", "violet-harbour-lantern-9", "security_key")
	signInWithKey(p2, "bob", "violet-harbour-lantern-9")
	p2.Navigate(t, h.origin+"/nosync/x")
	waitExact(t, p2, "/nosync/x")
	p2.Navigate(t, h.origin+"/uv/x")
	waitExact(t, p2, "/.keygate/second-factor")
}
