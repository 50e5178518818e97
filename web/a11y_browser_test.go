package web

import (
	"net/url"
	"testing"

	"github.com/go-rod/rod/lib/proto"

	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// setBrowserLanguage makes the page's requests carry Accept-Language:
// lang, as a browser set to that language sends it.
func setBrowserLanguage(t *testing.T, p *browsertest.Page, lang string) {
	t.Helper()
	ua, err := (proto.BrowserGetVersion{}).Call(p.Rod())
	if err != nil {
		t.Fatal(err)
	}
	if err := (proto.EmulationSetUserAgentOverride{UserAgent: ua.UserAgent, AcceptLanguage: lang}).Call(p.Rod()); err != nil {
		t.Fatal(err)
	}
}

// The portal's existing pages, signed out and signed in, in both
// languages: axe-core finds no serious or critical violation, and each page
// is kept as a screenshot.
func TestPortalPagesAccessible(t *testing.T) {
	b := browser.Get(t)
	h := newHarness(t, harnessOptions{policyYAML: browserPolicy})
	for _, lang := range []string{"en", "ru"} {
		t.Run(lang, func(t *testing.T) {
			p := b.NewPage(t, "about:blank")
			setBrowserLanguage(t, p, lang)
			clearCookies(t, p)
			p.Navigate(t, h.origin+"/.keygate/login?rd="+url.QueryEscape(h.origin+"/admin/x"))
			if got := string(p.Eval(t, `() => document.documentElement.lang`)); got != `"`+lang+`"` {
				t.Fatalf("sign-in page in %s has <html lang=%s>", lang, got)
			}
			keepScreenshot(t, p, "login")
			axeCheck(t, p)
			browserSignIn(t, p, "bob", "violet-harbour-lantern-9")
			waitExact(t, p, "/.keygate/second-factor")
			keepScreenshot(t, p, "second-factor")
			axeCheck(t, p)
			for _, page := range []string{"settings", "sessions", "activity"} {
				p.Navigate(t, h.origin+"/.keygate/"+page)
				keepScreenshot(t, p, page)
				axeCheck(t, p)
			}
		})
	}
}

// The check itself can fail: a page with an unlabelled input and an image
// without text is reported with serious or critical violations.
func TestAxeFindsViolations(t *testing.T) {
	b := browser.Get(t)
	p := b.NewPage(t, "about:blank")
	p.Navigate(t, "data:text/html,<html><body><form><input type=text></form><img src=x.png></body></html>")
	found, ok := axeRun(t, p)
	if !ok {
		return
	}
	ids := map[string]string{}
	for _, v := range found {
		ids[v.ID] = v.Impact
	}
	for _, want := range []string{"label", "image-alt", "html-has-lang"} {
		if imp := ids[want]; imp != "serious" && imp != "critical" {
			t.Errorf("axe did not report %s as serious or critical (got %q); all: %v", want, imp, ids)
		}
	}
}
