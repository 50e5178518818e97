// Package browsertest drives a real headless Chromium for WebAuthn tests,
// with DevTools virtual authenticators standing in for security keys and
// platform authenticators. It is a test helper: importable by any package's
// tests (the factor's, the web end-to-end suites), never by production code.
//
// Pages must be loaded from http://localhost:PORT: localhost is a secure
// context (WebAuthn refuses insecure ones) and "localhost" is a valid RP ID,
// while 127.0.0.1 is neither a domain nor accepted as an RP ID.
//
// Chromium is never downloaded: the binary at ChromiumPath is used or the
// tests are skipped (failed when CI=true, where .ci/run installs it).
//
// One browser per test binary, a page per test:
//
//	var browser browsertest.Shared
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		_ = browser.Close()
//		os.Exit(code)
//	}
//
//	func TestEnrolKey(t *testing.T) {
//		p := browser.Get(t).NewPage(t, "http://localhost:"+port+"/.keygate/settings")
//		p.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"})
//		p.Fill(t, "#key-name", "YubiKey")
//		p.Click(t, `button[data-kind="security_key"]`)
//		p.WaitURL(t, func(u string) bool { return strings.Contains(u, "done=key_added") })
//	}
package browsertest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/launcher"
	"github.com/go-rod/rod/lib/proto"
)

// ChromiumPath is the browser binary (Debian's chromium package).
const ChromiumPath = "/usr/bin/chromium"

// DefaultTimeout bounds each DevTools call and page evaluation, so a
// ceremony no authenticator answers fails the test instead of hanging it.
const DefaultTimeout = 30 * time.Second

// Available reports whether Chromium can be started here.
func Available() error {
	fi, err := os.Stat(ChromiumPath)
	if err != nil {
		return fmt.Errorf("chromium not found at %s: %w", ChromiumPath, err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable", ChromiumPath)
	}
	return nil
}

// Require stops the test when Chromium is missing: a failure on CI
// (CI=true), where it must be installed, and a loud skip elsewhere.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium missing: .ci/run installs it (%v)", err)
		}
		t.Skipf("SKIPPED: browser test needs Chromium (apt-get install -y chromium): %v", err)
	}
}

// Browser is one headless Chromium with its own fresh profile.
type Browser struct {
	rod *rod.Browser
	l   *launcher.Launcher

	closeOnce sync.Once
	closeErr  error
}

// Launch starts Chromium; Close must be called. Start is the usual entry
// for a single test; Launch is for TestMain and Shared.
func Launch() (*Browser, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "keygate-chromium-")
	if err != nil {
		return nil, fmt.Errorf("browsertest: profile dir: %w", err)
	}
	l := launcher.New().
		Bin(ChromiumPath). // never let the launcher download a browser
		Headless(true).
		NoSandbox(true).
		UserDataDir(dir).
		Set("disable-gpu").
		Set("disable-quic").
		Set("no-first-run").
		Set("disable-background-networking").
		Set("disable-component-update").
		Set("disable-sync")
	u, err := l.Launch()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("browsertest: launch %s: %w", ChromiumPath, err)
	}
	b := rod.New().ControlURL(u)
	if err := b.Connect(); err != nil {
		l.Kill()
		l.Cleanup()
		return nil, fmt.Errorf("browsertest: connect to chromium: %w", err)
	}
	return &Browser{rod: b, l: l}, nil
}

// Start launches a browser for t and closes it (and removes its profile)
// when t ends. Skips or fails like Require when Chromium is missing.
func Start(t testing.TB) *Browser {
	t.Helper()
	Require(t)
	b, err := Launch()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("browsertest: close: %v", err)
		}
	})
	return b
}

// Close ends the browser, waits for the process to exit and removes its
// profile directory. It is idempotent.
func (b *Browser) Close() error {
	b.closeOnce.Do(func() {
		closeErr := b.rod.Close() // asks Chromium to exit cleanly
		exited := make(chan struct{})
		go func() {
			b.l.Cleanup() // waits for the process, then removes the profile
			close(exited)
		}()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			b.l.Kill()
			<-exited
		}
		if closeErr != nil && !errors.Is(closeErr, os.ErrClosed) {
			b.closeErr = fmt.Errorf("browsertest: close chromium: %w", closeErr)
		}
	})
	return b.closeErr
}

// Rod is the underlying go-rod browser, for what this package lacks.
func (b *Browser) Rod() *rod.Browser { return b.rod }

// Shared is one browser for all the tests of a package (starting Chromium
// takes about a second; a test binary should pay it once). Declare a
// package-level Shared in the test package, call Get in tests and Close
// from TestMain after m.Run.
type Shared struct {
	once sync.Once
	b    *Browser
	err  error
}

// Get returns the shared browser, launching it on first use. It skips or
// fails like Require when Chromium is missing.
func (s *Shared) Get(t testing.TB) *Browser {
	t.Helper()
	Require(t)
	s.once.Do(func() { s.b, s.err = Launch() })
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.b
}

// Close closes the browser if one was launched.
func (s *Shared) Close() error {
	if s.b == nil {
		return nil
	}
	return s.b.Close()
}

// Page is one tab with the WebAuthn DevTools domain enabled. Its virtual
// authenticators belong to it: a new page starts with none.
type Page struct {
	rod *rod.Page
	// Timeout bounds each call (DefaultTimeout).
	Timeout time.Duration
}

// NewPage opens a tab at url (http://localhost:PORT/…), enables WebAuthn
// (virtual authenticators only, no UI) and waits for the page to load. The
// tab is closed when t ends.
func (b *Browser) NewPage(t testing.TB, url string) *Page {
	t.Helper()
	rp, err := b.rod.Page(proto.TargetCreateTarget{URL: "about:blank"})
	if err != nil {
		t.Fatalf("browsertest: new page: %v", err)
	}
	t.Cleanup(func() { _ = rp.Close() })
	p := &Page{rod: rp, Timeout: DefaultTimeout}
	if err := (proto.WebAuthnEnable{EnableUI: false}).Call(p.ctx()); err != nil {
		t.Fatalf("browsertest: WebAuthn.enable: %v", err)
	}
	p.Navigate(t, url)
	return p
}

// ctx is the page bounded by the timeout.
func (p *Page) ctx() *rod.Page { return p.rod.Timeout(p.Timeout) }

// front brings the tab to the front: WebAuthn runs only in the focused
// tab ("the page does not have focus"), and of several tabs one has focus.
func (p *Page) front() (*rod.Page, error) {
	pg := p.ctx()
	if _, err := pg.Activate(); err != nil {
		return nil, fmt.Errorf("browsertest: activate page: %w", err)
	}
	return pg, nil
}

// Rod is the underlying go-rod page.
func (p *Page) Rod() *rod.Page { return p.rod }

// Navigate loads url and waits for the load event.
func (p *Page) Navigate(t testing.TB, url string) {
	t.Helper()
	pg := p.ctx()
	if err := pg.Navigate(url); err != nil {
		t.Fatalf("browsertest: navigate %s: %v", url, err)
	}
	if err := pg.WaitLoad(); err != nil {
		t.Fatalf("browsertest: load %s: %v", url, err)
	}
}

// AuthenticatorOptions describe a virtual authenticator.
type AuthenticatorOptions struct {
	// Protocol is "ctap2" (default) or "u2f".
	Protocol string
	// Transport is "usb" (default: a roaming security key), "nfc", "ble"
	// or "internal" (a platform authenticator).
	Transport string
	// ResidentKey: can store discoverable credentials (passkeys).
	ResidentKey bool
	// UserVerification: has a PIN/biometric; IsUserVerified: it succeeds.
	UserVerification bool
	IsUserVerified   bool
	// BackupEligible / BackupState: flags of the credentials it creates
	// (a synced passkey provider sets both).
	BackupEligible bool
	BackupState    bool
	// Ctap2Version is "ctap2_0" (default) or "ctap2_1".
	Ctap2Version string
}

// AddAuthenticator attaches a virtual authenticator that answers every
// request at once (user presence is simulated) and returns its ID.
func (p *Page) AddAuthenticator(t testing.TB, o AuthenticatorOptions) string {
	t.Helper()
	if o.Protocol == "" {
		o.Protocol = "ctap2"
	}
	if o.Transport == "" {
		o.Transport = "usb"
	}
	res, err := proto.WebAuthnAddVirtualAuthenticator{Options: &proto.WebAuthnVirtualAuthenticatorOptions{
		Protocol:                    proto.WebAuthnAuthenticatorProtocol(o.Protocol),
		Transport:                   proto.WebAuthnAuthenticatorTransport(o.Transport),
		HasResidentKey:              o.ResidentKey,
		HasUserVerification:         o.UserVerification,
		IsUserVerified:              o.IsUserVerified,
		AutomaticPresenceSimulation: true,
		DefaultBackupEligibility:    o.BackupEligible,
		DefaultBackupState:          o.BackupState,
		Ctap2Version:                proto.WebAuthnCtap2Version(o.Ctap2Version),
	}}.Call(p.ctx())
	if err != nil {
		t.Fatalf("browsertest: add authenticator %+v: %v", o, err)
	}
	return string(res.AuthenticatorID)
}

// RemoveAuthenticator detaches an authenticator (and its credentials).
func (p *Page) RemoveAuthenticator(t testing.TB, id string) {
	t.Helper()
	if err := (proto.WebAuthnRemoveVirtualAuthenticator{AuthenticatorID: proto.WebAuthnAuthenticatorID(id)}).Call(p.ctx()); err != nil {
		t.Fatalf("browsertest: remove authenticator: %v", err)
	}
}

// SetUserVerified makes the authenticator's user verification succeed or
// fail from now on.
func (p *Page) SetUserVerified(t testing.TB, id string, verified bool) {
	t.Helper()
	if err := (proto.WebAuthnSetUserVerified{AuthenticatorID: proto.WebAuthnAuthenticatorID(id), IsUserVerified: verified}).Call(p.ctx()); err != nil {
		t.Fatalf("browsertest: set user verified: %v", err)
	}
}

// Credential is a credential held by a virtual authenticator. Exported
// credentials (PrivateKey included) can be imported into another
// authenticator with AddCredential, e.g. to replay an old counter.
type Credential struct {
	ID         []byte
	Resident   bool
	RPID       string
	UserHandle []byte
	PrivateKey []byte // PKCS#8
	SignCount  int
	// BackupEligible / BackupState: flags of its assertions.
	BackupEligible bool
	BackupState    bool
}

// Credentials lists the authenticator's credentials.
func (p *Page) Credentials(t testing.TB, id string) []Credential {
	t.Helper()
	res, err := proto.WebAuthnGetCredentials{AuthenticatorID: proto.WebAuthnAuthenticatorID(id)}.Call(p.ctx())
	if err != nil {
		t.Fatalf("browsertest: get credentials: %v", err)
	}
	out := make([]Credential, len(res.Credentials))
	for i, c := range res.Credentials {
		out[i] = Credential{
			ID: c.CredentialID, Resident: c.IsResidentCredential, RPID: c.RpID, UserHandle: c.UserHandle,
			PrivateKey: c.PrivateKey, SignCount: c.SignCount, BackupEligible: c.BackupEligibility, BackupState: c.BackupState,
		}
	}
	return out
}

// AddCredential imports a credential into the authenticator.
func (p *Page) AddCredential(t testing.TB, id string, c Credential) {
	t.Helper()
	err := proto.WebAuthnAddCredential{AuthenticatorID: proto.WebAuthnAuthenticatorID(id), Credential: &proto.WebAuthnCredential{
		CredentialID: c.ID, IsResidentCredential: c.Resident, RpID: c.RPID, UserHandle: c.UserHandle,
		PrivateKey: c.PrivateKey, SignCount: c.SignCount, BackupEligibility: c.BackupEligible, BackupState: c.BackupState,
	}}.Call(p.ctx())
	if err != nil {
		t.Fatalf("browsertest: add credential: %v", err)
	}
}

// RemoveCredential deletes one credential from the authenticator.
func (p *Page) RemoveCredential(t testing.TB, id string, credentialID []byte) {
	t.Helper()
	if err := (proto.WebAuthnRemoveCredential{AuthenticatorID: proto.WebAuthnAuthenticatorID(id), CredentialID: credentialID}).Call(p.ctx()); err != nil {
		t.Fatalf("browsertest: remove credential: %v", err)
	}
}

// ClearCredentials deletes every credential of the authenticator.
func (p *Page) ClearCredentials(t testing.TB, id string) {
	t.Helper()
	if err := (proto.WebAuthnClearCredentials{AuthenticatorID: proto.WebAuthnAuthenticatorID(id)}).Call(p.ctx()); err != nil {
		t.Fatalf("browsertest: clear credentials: %v", err)
	}
}

// Eval runs a JavaScript function expression on the page with args (JSON
// values), awaiting a returned promise, as a user gesture (some browsers
// want one for WebAuthn), and returns its result as JSON.
//
//	p.Eval(t, `(a, b) => a + b`, 1, 2) // 3
func (p *Page) Eval(t testing.TB, js string, args ...any) json.RawMessage {
	t.Helper()
	raw, err := p.TryEval(js, args...)
	if err != nil {
		t.Fatalf("browsertest: eval: %v", err)
	}
	return raw
}

// EvalInto is Eval decoding the result into out.
func (p *Page) EvalInto(t testing.TB, out any, js string, args ...any) {
	t.Helper()
	if err := json.Unmarshal(p.Eval(t, js, args...), out); err != nil {
		t.Fatalf("browsertest: eval result: %v", err)
	}
}

// TryEval is Eval returning the error (a thrown exception, a timeout)
// instead of failing the test.
func (p *Page) TryEval(js string, args ...any) (json.RawMessage, error) {
	pg, err := p.front()
	if err != nil {
		return nil, err
	}
	res, err := pg.Evaluate(rod.Eval(js, args...).ByPromise().ByUser())
	if err != nil {
		return nil, err
	}
	return json.RawMessage(res.Value.JSON("", "")), nil
}

// Click clicks the element matching the CSS selector.
func (p *Page) Click(t testing.TB, selector string) {
	t.Helper()
	pg, err := p.front()
	if err != nil {
		t.Fatal(err)
	}
	el, err := pg.Element(selector)
	if err != nil {
		t.Fatalf("browsertest: find %s: %v", selector, err)
	}
	if err := el.Click(proto.InputMouseButtonLeft, 1); err != nil {
		t.Fatalf("browsertest: click %s: %v", selector, err)
	}
}

// Fill replaces the text of the input matching the CSS selector.
func (p *Page) Fill(t testing.TB, selector, text string) {
	t.Helper()
	pg, err := p.front()
	if err != nil {
		t.Fatal(err)
	}
	el, err := pg.Element(selector)
	if err != nil {
		t.Fatalf("browsertest: find %s: %v", selector, err)
	}
	if err := el.SelectAllText(); err != nil {
		t.Fatalf("browsertest: select %s: %v", selector, err)
	}
	if err := el.Input(text); err != nil {
		t.Fatalf("browsertest: fill %s: %v", selector, err)
	}
}

// Text returns the visible text of the element matching the selector.
func (p *Page) Text(t testing.TB, selector string) string {
	t.Helper()
	el, err := p.ctx().Element(selector)
	if err != nil {
		t.Fatalf("browsertest: find %s: %v", selector, err)
	}
	s, err := el.Text()
	if err != nil {
		t.Fatalf("browsertest: text of %s: %v", selector, err)
	}
	return s
}

// WaitURL waits until the page's URL satisfies ok (after a redirect).
func (p *Page) WaitURL(t testing.TB, ok func(url string) bool) string {
	t.Helper()
	deadline := time.Now().Add(p.Timeout)
	for {
		info, err := p.rod.Info()
		if err == nil && ok(info.URL) {
			return info.URL
		}
		if time.Now().After(deadline) {
			url := ""
			if info != nil {
				url = info.URL
			}
			t.Fatalf("browsertest: URL still %q after %v", url, p.Timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
