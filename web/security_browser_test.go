package web

import (
	"net/url"
	"strings"
	"testing"

	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// The security check-up and "always ask me for a second factor" walked in
// headless Chromium, in English and Russian: from the home page to the
// check-up (its next step), always ask turned on (even a password-only
// path then asks for the key), turning it off refused without a fresh
// factor, then done after the key. Every page is kept as a screenshot and
// checked with axe-core.
func TestSecurityCheckupInBrowser(t *testing.T) {
	b := browser.Get(t)
	texts := map[string]struct{ next, on, elevate, off string }{
		"en": {"You have no backup", "You will always be asked", "Confirm", "no longer be asked"},
		"ru": {"нет запасного способа", "будет запрашиваться всегда", "Подтвердите", "больше не запрашивается"},
	}
	for _, lang := range []string{"en", "ru"} {
		t.Run(lang, func(t *testing.T) {
			want := texts[lang]
			h := newHarness(t, harnessOptions{policyYAML: browserPolicy})
			p := b.NewPage(t, "about:blank")
			setBrowserLanguage(t, p, lang)
			key := p.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"})
			defer p.RemoveAuthenticator(t, key)
			h.enrolInBrowser(t, p, testUser, testPassword, "security_key")

			// From the home page to the check-up: a key and no backup.
			p.Navigate(t, h.origin+"/.keygate/")
			p.Click(t, "#security-checkup")
			waitExact(t, p, "/.keygate/security")
			waitSelector(t, p, "#next-step[data-step=add_recovery]")
			if msg := p.Text(t, "#next-step"); !strings.Contains(msg, want.next) {
				t.Fatalf("next step says %q", msg)
			}
			keepPage(t, p, "checkup")

			// Always ask: on with the session alone.
			p.Click(t, "#always-ask form button[type=submit]")
			p.WaitURL(t, func(u string) bool { return strings.Contains(u, "done=always_ask_on") })
			if msg := p.Text(t, ".notice"); !strings.Contains(msg, want.on) || !h.alwaysAsk(testUser) {
				t.Fatalf("turned on says %q", msg)
			}
			keepPage(t, p, "always-ask-on")

			// A password-only path now asks this session for the key.
			p.Navigate(t, h.origin+"/app")
			waitExact(t, p, "/.keygate/second-factor")

			// Off without a fresh second factor: refused, with the way
			// to one; still on.
			p.Navigate(t, h.origin+"/.keygate/security")
			p.Click(t, "#always-ask form button[type=submit]")
			waitSelector(t, p, "#always-ask-elevate")
			if msg := p.Text(t, ".alert"); msg == "" || !h.alwaysAsk(testUser) {
				t.Fatalf("off without a fresh factor: %q", msg)
			}
			keepPage(t, p, "always-ask-off-refused")

			// The key, then off.
			p.Navigate(t, h.origin+"/.keygate/second-factor/webauthn?rd="+url.QueryEscape(h.origin+"/app"))
			p.Click(t, "#webauthn-start")
			waitPath(t, p, "/app")
			p.Navigate(t, h.origin+"/.keygate/security")
			waitSelector(t, p, "#always-ask form")
			p.Click(t, "#always-ask form button[type=submit]")
			p.WaitURL(t, func(u string) bool { return strings.Contains(u, "done=always_ask_off") })
			if msg := p.Text(t, ".notice"); !strings.Contains(msg, want.off) || h.alwaysAsk(testUser) {
				t.Fatalf("turned off says %q", msg)
			}
			keepPage(t, p, "always-ask-off")
		})
	}
}
