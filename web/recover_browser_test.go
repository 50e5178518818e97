package web

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	delivery "github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// "Lost every factor" walked in headless Chromium, in English and Russian:
// a person with an authenticator app signs in with the password, asks for
// a recovery with the mailed code and sees the wait; the cancel link from
// the notice cancels it; a second request is approved by an admin on the
// admin page; the person then signs in with the password and a new code,
// adds a security key, and the old app is gone. Every page is kept as a
// screenshot and checked with axe-core.

// recoveryMail is what find finds (a code, a cancel link) in the newest
// mail to carol it finds anything in, in any language.
func (h *harness) recoveryMail(t *testing.T, find func(string) string) string {
	t.Helper()
	return h.findMail(t, recAddr, func(m delivery.OutboxMail) string { return find(m.Text) })
}

// noForm says whether the page has no form posting to action.
func noForm(t *testing.T, p *browsertest.Page, action string) bool {
	t.Helper()
	var none bool
	p.EvalInto(t, &none, `a => document.querySelector("form[action='" + a + "']") === null`, action)
	return none
}

// askRecoveryInBrowser sends a code from the recovery page and types it.
func (h *harness) askRecoveryInBrowser(t *testing.T, p *browsertest.Page, shot string) {
	t.Helper()
	sent := h.mailCount(recAddr, "")
	p.Click(t, "form[action='/.keygate/recover/send'] button[type=submit]")
	waitSelector(t, p, "#recovery-code")
	keepPage(t, p, shot)
	for deadline := time.Now().Add(5 * time.Second); h.mailCount(recAddr, "") == sent && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	p.Fill(t, "#recovery-code", h.recoveryMail(t, codeRe.FindString))
	p.Click(t, "form[action='/.keygate/recover/code'] button[type=submit]")
}

func TestRecoveryInBrowser(t *testing.T) {
	b := browser.Get(t)
	for _, lang := range []string{"en", "ru"} {
		t.Run(lang, func(t *testing.T) {
			h, _ := newAdminHarness(t, browserAdminPolicy)
			ctx := context.Background()
			tr := h.web.tr.pick(lang)
			if _, err := h.users.Add(ctx, authn.NewUser{Username: recUser, Email: recAddr, Password: recPassword, EmailVerified: true}); err != nil {
				t.Fatal(err)
			}
			// Carol has an authenticator app.
			c := h.passwordSession()
			h.redeemLink(c, recUser)
			h.addTOTP(c, "Phone")
			p := b.NewPage(t, "about:blank")
			setBrowserLanguage(t, p, lang)
			key := p.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"})
			defer p.RemoveAuthenticator(t, key)
			clearCookies(t, p)

			// 1. The phone is lost: from the sign-in page's link, the
			// password, then the recovery page.
			p.Navigate(t, h.origin+"/.keygate/login")
			p.Click(t, "a[href='/.keygate/recover']")
			waitExact(t, p, "/.keygate/login")
			browserSignIn(t, p, recUser, recPassword)
			waitExact(t, p, "/.keygate/recover")
			waitTitle(t, p, tr.T("recover.title"))
			keepPage(t, p, "recover-start")
			h.askRecoveryInBrowser(t, p, "recover-code")
			p.WaitURL(t, func(u string) bool { return strings.Contains(u, "done=started") })
			waitSelector(t, p, ".notice")
			if !strings.Contains(p.Text(t, "main"), tr.T("recover.waiting_found")) || !noForm(t, p, "/.keygate/recover/send") {
				t.Fatalf("waiting page: %q", p.Text(t, "main"))
			}
			keepPage(t, p, "recover-waiting")
			if list, _ := h.mfa.PendingRecoveries(ctx); len(list) != 1 || list[0].Username != recUser {
				t.Fatalf("pending: %+v", list)
			}

			// 2. The cancel link from the notice: a page that asks, then
			// the button.
			link := h.recoveryMail(t, func(s string) string {
				if l := cancelLinkRe.FindString(s); l != "" && strings.Contains(s, h.origin+l) {
					return h.origin + l
				}
				return ""
			})
			p.Navigate(t, link)
			waitTitle(t, p, tr.T("recover.cancel_title"))
			keepPage(t, p, "recover-cancel")
			if list, _ := h.mfa.PendingRecoveries(ctx); len(list) != 1 {
				t.Fatal("opening the link cancelled")
			}
			p.Click(t, "form[action='/.keygate/recover/cancel'] button[type=submit]")
			p.WaitURL(t, func(u string) bool { return strings.HasSuffix(u, "/.keygate/recover/cancel") })
			waitSelector(t, p, "main p")
			if !strings.Contains(p.Text(t, "main"), tr.T("recover.cancelled")) {
				t.Fatalf("cancelled page: %q", p.Text(t, "main"))
			}
			keepPage(t, p, "recover-cancelled")
			if list, _ := h.mfa.PendingRecoveries(ctx); len(list) != 0 {
				t.Fatalf("still pending after the cancel: %+v", list)
			}
			// The link is used up: the page says so.
			p.Navigate(t, link)
			waitSelector(t, p, "main p")
			if !strings.Contains(p.Text(t, "main"), tr.T("err.recovery_link_invalid")) || !noForm(t, p, "/.keygate/recover/cancel") {
				t.Fatalf("used link's page: %q", p.Text(t, "main"))
			}
			keepPage(t, p, "recover-cancel-used")

			// 3. Asked again (a minute on: codes have a cooldown).
			h.clock.Add(time.Minute)
			p.Navigate(t, h.origin+"/.keygate/recover")
			waitTitle(t, p, tr.T("recover.title"))
			h.askRecoveryInBrowser(t, p, "recover-code-again")
			p.WaitURL(t, func(u string) bool { return strings.Contains(u, "done=started") })

			// 4. The admin approves it on the admin page (with her key).
			h.enrolInBrowser(t, p, testUser, testPassword, "security_key")
			p.Navigate(t, h.origin+"/.keygate/second-factor/webauthn?rd="+url.QueryEscape("/.keygate/admin"))
			p.Click(t, "#webauthn-start")
			waitExact(t, p, "/.keygate/admin")
			if rows := p.Text(t, "#recoveries-table"); !strings.Contains(rows, recUser) {
				t.Fatalf("admin page lists %q", rows)
			}
			p.Eval(t, `() => document.getElementById("recoveries").scrollIntoView()`)
			keepPage(t, p, "admin-recoveries")
			p.Click(t, "#recoveries-table a[href='/.keygate/admin/users/"+recUser+"']")
			waitExact(t, p, "/.keygate/admin/users/"+recUser)
			waitSelector(t, p, "#recovery-pending")
			keepPage(t, p, "admin-user-recovery")
			p.Click(t, "button[data-action='recovery/approve']")
			deadline := time.Now().Add(10 * time.Second)
			for {
				list, _ := h.mfa.PendingRecoveries(ctx)
				if len(list) == 1 && list[0].ApprovedBy == testUser {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not approved: %+v", list)
				}
				time.Sleep(50 * time.Millisecond)
			}
			waitJS(t, p, "the approval on the page", `() => { const e = document.getElementById("recovery-pending"); return !!e && e.textContent.includes("`+testUser+`"); }`)
			keepPage(t, p, "admin-user-approved")

			// 5. Carol completes it: the password, a new code, a new key.
			h.clock.Add(time.Minute)
			clearCookies(t, p)
			p.Navigate(t, h.origin+"/.keygate/login?rd="+url.QueryEscape("/.keygate/recover"))
			browserSignIn(t, p, recUser, recPassword)
			waitExact(t, p, "/.keygate/recover")
			if !strings.Contains(p.Text(t, "main"), tr.T("recover.ready")) {
				t.Fatalf("ready page: %q", p.Text(t, "main"))
			}
			keepPage(t, p, "recover-ready")
			h.askRecoveryInBrowser(t, p, "recover-code-finish")
			p.WaitURL(t, func(u string) bool { return strings.Contains(u, "done=recovery_granted") })
			waitSelector(t, p, "#key-name")
			keepPage(t, p, "settings-recovery-granted")
			p.Fill(t, "#key-name", "New key")
			p.Click(t, "button[data-kind=security_key]")
			p.WaitURL(t, func(u string) bool { return strings.Contains(u, "done=key_added") })
			keepPage(t, p, "recovered")
			creds, err := h.mfa.Credentials(ctx, recUser)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, c := range creds {
				kinds = append(kinds, c.Kind+":"+c.Name)
			}
			if !slices.Equal(kinds, []string{"webauthn:New key"}) {
				t.Fatalf("after the recovery carol has %v", kinds)
			}
			if list, _ := h.mfa.PendingRecoveries(ctx); len(list) != 0 {
				t.Fatalf("still pending after completing: %+v", list)
			}
		})
	}
}
