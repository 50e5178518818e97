package web

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// The password flows walked in headless Chromium, in English and Russian:
// the change on the security page (a wrong current password first), and
// "Forgot your password?" from the sign-in page through the code, a
// security key (the account has one) and a refused common password.
// Every page is kept as a screenshot and checked with axe-core.

// waitSelector waits until an element matching sel is on the page (the
// page after a form's redirect).
func waitSelector(t *testing.T, p *browsertest.Page, sel string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		if raw, err := p.TryEval(`s => document.querySelector(s) !== null`, sel); err == nil {
			_ = json.Unmarshal(raw, &ok)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s on the page", sel)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitTitle waits until the page's heading contains title.
func waitTitle(t *testing.T, p *browsertest.Page, title string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var h1 string
		if raw, err := p.TryEval(`() => document.querySelector("h1")?.textContent ?? ""`); err == nil {
			_ = json.Unmarshal(raw, &h1)
		}
		if strings.Contains(h1, title) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page's heading is %q, not %q", h1, title)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// resetCodeFromOutbox waits for the reset code mailed to alice (it goes
// out after the answer).
func (h *harness) resetCodeFromOutbox(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mails, err := h.outbox.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mails {
			if m.To == "alice@example.com" && (strings.Contains(m.Subject, "reset your password") || strings.Contains(m.Subject, "сброса пароля")) {
				return codeRe.FindString(m.Text)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no reset code in the outbox")
	return ""
}

// keepPage keeps the page as a screenshot and checks it with axe.
func keepPage(t *testing.T, p *browsertest.Page, name string) {
	t.Helper()
	keepScreenshot(t, p, name)
	axeCheck(t, p)
}

func TestPasswordFlowsInBrowser(t *testing.T) {
	b := browser.Get(t)
	texts := map[string]struct{ wrong, common, done string }{
		"en": {"current password is not correct", "too common", "Your password was changed"},
		"ru": {"Текущий пароль неверен", "слишком распространён", "Пароль изменён"},
	}
	for _, lang := range []string{"en", "ru"} {
		t.Run(lang, func(t *testing.T) {
			want := texts[lang]
			h := newHarness(t, harnessOptions{policyYAML: browserPolicy})
			p := b.NewPage(t, "about:blank")
			setBrowserLanguage(t, p, lang)
			clearCookies(t, p)

			// Change: from the security page, a wrong current password,
			// then the right one.
			p.Navigate(t, h.origin+"/.keygate/login")
			browserSignIn(t, p, testUser, testPassword)
			waitExact(t, p, "/.keygate/")
			p.Navigate(t, h.origin+"/.keygate/settings")
			p.Click(t, "#change-password")
			waitExact(t, p, "/.keygate/password")
			waitSelector(t, p, "#current")
			keepPage(t, p, "change")
			before := h.hashOf(testUser)
			p.Fill(t, "#current", "not-the-password")
			p.Fill(t, "#new", "a-brand-new-passphrase")
			p.Fill(t, "#confirm", "a-brand-new-passphrase")
			p.Click(t, "form[action='/.keygate/password'] button[type=submit]")
			waitSelector(t, p, ".alert")
			if msg := p.Text(t, ".alert"); !strings.Contains(msg, want.wrong) {
				t.Fatalf("wrong current password says %q", msg)
			}
			keepPage(t, p, "change-wrong-current")
			if h.hashOf(testUser) != before {
				t.Fatal("a wrong current password changed it")
			}
			p.Fill(t, "#current", testPassword)
			p.Fill(t, "#new", "a-brand-new-passphrase")
			p.Fill(t, "#confirm", "a-brand-new-passphrase")
			p.Click(t, "form[action='/.keygate/password'] button[type=submit]")
			p.WaitURL(t, func(u string) bool { return strings.Contains(u, "done=password_changed") })
			keepPage(t, p, "changed")

			// Reset, for an account with a security key.
			key := p.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"})
			defer p.RemoveAuthenticator(t, key)
			h.enrolInBrowser(t, p, testUser, "a-brand-new-passphrase", "security_key")
			clearCookies(t, p)
			p.Navigate(t, h.origin+"/.keygate/login")
			p.Click(t, "#forgot")
			waitExact(t, p, "/.keygate/password/reset")
			waitSelector(t, p, "#login")
			keepPage(t, p, "reset-start")
			p.Fill(t, "#login", testUser)
			p.Click(t, "form[action='/.keygate/password/reset'] button[type=submit]")
			waitSelector(t, p, "#reset-sent")
			keepPage(t, p, "reset-code")
			p.Fill(t, "#reset-code", h.resetCodeFromOutbox(t))
			p.Click(t, "form[action='/.keygate/password/reset/code'] button[type=submit]")
			waitSelector(t, p, "#reset-factor")
			keepPage(t, p, "reset-second-factor")
			p.Click(t, "#reset-webauthn-start")
			waitSelector(t, p, "#reset-password")
			keepPage(t, p, "reset-new-password")
			before = h.hashOf(testUser)
			p.Fill(t, "#new", "Password123!")
			p.Fill(t, "#confirm", "Password123!")
			p.Click(t, "form[action='/.keygate/password/reset/finish'] button[type=submit]")
			waitSelector(t, p, "#password-reasons")
			if msg := p.Text(t, ".alert"); !strings.Contains(msg, want.common) {
				t.Fatalf("a common password says %q", msg)
			}
			keepPage(t, p, "reset-common-password")
			if h.hashOf(testUser) != before {
				t.Fatal("a common password was set")
			}
			p.Fill(t, "#new", "the-newest-passphrase-3")
			p.Fill(t, "#confirm", "the-newest-passphrase-3")
			p.Click(t, "form[action='/.keygate/password/reset/finish'] button[type=submit]")
			waitTitle(t, p, want.done)
			keepPage(t, p, "reset-done")
			if resp, _ := h.login(h.client(), testUser, "the-newest-passphrase-3", ""); resp.StatusCode != http.StatusOK {
				t.Fatalf("the reset password does not sign in: %d", resp.StatusCode)
			}
			if u, _ := h.users.Get(context.Background(), testUser); u.PasswordHash == before {
				t.Fatal("unchanged")
			}
		})
	}
}
