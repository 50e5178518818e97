package web

import (
	"strings"
	"testing"
	"time"
)

// The email address change walked in headless Chromium, in English and
// Russian: alice (whose mailbox is her only second factor) sees the way to
// a fresh factor first; bob (no factor) goes from the security page
// through his own address (refused), a wrong code and the right one to the
// security page's confirmation. Every page is kept as a screenshot and
// checked with axe-core.

// changeCodeFromOutbox waits for the code mailed to addr to move an
// account there (it goes out after the answer).
func (h *harness) changeCodeFromOutbox(t *testing.T, addr string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mails, err := h.outbox.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mails {
			if m.To == addr && (strings.Contains(m.Subject, "new email address") || strings.Contains(m.Subject, "смены адреса")) {
				return codeRe.FindString(m.Text)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no code to %s in the outbox", addr)
	return ""
}

func TestEmailChangeInBrowser(t *testing.T) {
	b := browser.Get(t)
	texts := map[string]struct{ same, wrong, done string }{
		"en": {"already your email address", "not correct", "Your email address was changed"},
		"ru": {"Это уже ваш адрес", "неверн", "Адрес электронной почты изменён"},
	}
	for _, lang := range []string{"en", "ru"} {
		t.Run(lang, func(t *testing.T) {
			want := texts[lang]
			h := newHarness(t, harnessOptions{policyYAML: browserPolicy})
			p := b.NewPage(t, "about:blank")
			setBrowserLanguage(t, p, lang)
			clearCookies(t, p)

			// Alice's only second factor is her mailbox: a fresh code to
			// it comes first, and the page says so.
			p.Navigate(t, h.origin+"/.keygate/login")
			browserSignIn(t, p, testUser, testPassword)
			waitExact(t, p, "/.keygate/")
			p.Navigate(t, h.origin+"/.keygate/settings")
			p.Click(t, "#change-email")
			waitExact(t, p, "/.keygate/email")
			waitSelector(t, p, "#email-elevate")
			keepPage(t, p, "email-elevate")

			// Bob has no second factor: the form at once.
			clearCookies(t, p)
			p.Navigate(t, h.origin+"/.keygate/login")
			browserSignIn(t, p, "bob", "violet-harbour-lantern-9")
			waitExact(t, p, "/.keygate/")
			p.Navigate(t, h.origin+"/.keygate/settings")
			p.Click(t, "#change-email")
			waitSelector(t, p, "#email-new")
			keepPage(t, p, "email-form")
			addrBefore := func() {
				t.Helper()
				if addr, _ := h.addressOf("bob"); addr != "bob@example.com" {
					t.Fatalf("the address changed: %s", addr)
				}
			}
			p.Fill(t, "#email-new", "Bob@Example.com")
			p.Click(t, "form[action='/.keygate/email'] button[type=submit]")
			waitSelector(t, p, ".alert")
			if msg := p.Text(t, ".alert"); !strings.Contains(msg, want.same) {
				t.Fatalf("the same address says %q", msg)
			}
			keepPage(t, p, "email-same-address")
			addrBefore()

			p.Fill(t, "#email-new", "bob.new@example.org")
			p.Click(t, "form[action='/.keygate/email'] button[type=submit]")
			waitSelector(t, p, "#email-sent")
			keepPage(t, p, "email-code")
			code := h.changeCodeFromOutbox(t, "bob.new@example.org")
			wrong := "000000"
			if code == wrong {
				wrong = "111111"
			}
			p.Fill(t, "#email-code", wrong)
			p.Click(t, "form[action='/.keygate/email/confirm'] button[type=submit]")
			waitSelector(t, p, ".alert")
			if msg := p.Text(t, ".alert"); !strings.Contains(msg, want.wrong) {
				t.Fatalf("a wrong code says %q", msg)
			}
			keepPage(t, p, "email-wrong-code")
			addrBefore()

			p.Navigate(t, h.origin+"/.keygate/email")
			waitSelector(t, p, "#email-code")
			p.Fill(t, "#email-code", code)
			p.Click(t, "form[action='/.keygate/email/confirm'] button[type=submit]")
			p.WaitURL(t, func(u string) bool { return strings.Contains(u, "done=email_changed") })
			waitSelector(t, p, "#change-email")
			if body := p.Text(t, "main"); !strings.Contains(body, want.done) || !strings.Contains(body, "bob.new@example.org") {
				t.Fatalf("the security page after the change: %q", body)
			}
			keepPage(t, p, "email-changed")
			if addr, ok := h.addressOf("bob"); addr != "bob.new@example.org" || !ok {
				t.Fatalf("after: %s %v", addr, ok)
			}
		})
	}
}
