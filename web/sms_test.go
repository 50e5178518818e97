package web

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/factors/sms/gateway"
	"github.com/keygate/keygate/factors/sms/kanneltest"
)

var smsCodeRe = regexp.MustCompile(`\b(\d{6})\b`)

// nextSMSCode waits for the next text at the fake SMSC and reads its code.
func nextSMSCode(t *testing.T, k *kanneltest.Kannel, to string) string {
	t.Helper()
	m := k.Next(t, 15*time.Second)
	if strings.TrimPrefix(m.To, "+") != strings.TrimPrefix(to, "+") {
		t.Fatalf("text went to %q, want %q", m.To, to)
	}
	c := smsCodeRe.FindStringSubmatch(m.Text)
	if c == nil {
		t.Fatalf("no code in %q", m.Text)
	}
	return c[1]
}

// The SMS factor through the portal's pages, without script, with real
// Kannel: the security page offers a phone number (the form comes from
// the factor's AddressEnroller capability, not from a list in web), the
// confirmation page keeps its enrolment after a wrong code, and a sign-in
// then goes through the chooser, the generic code page and its send
// button into an area whose rule asks for SMS.
func TestSMSThroughThePortalPages(t *testing.T) {
	k := kanneltest.Start(t)
	snd, err := gateway.NewKannel(gateway.KannelOptions{URL: k.SendURL, Username: k.Username, Password: k.Password})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOptions{sms: snd, policyYAML: `
default: deny
rules:
  - name: texts
    hosts: [app.example.com]
    paths: ["/texts/**"]
    action: two_factor
    factors: [sms]
  - name: app
    hosts: [app.example.com]
    action: one_factor
`})
	c := h.client()
	if resp, _ := h.login(c, testUser, testPassword, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	h.redeemLink(c, testUser)

	resp, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/settings", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `action="/.keygate/settings/enroll/sms"`) || !strings.Contains(body, `type="tel"`) {
		t.Fatalf("security page without the phone form: %d", resp.StatusCode)
	}
	const phone = "+447700900123"
	resp, body = h.postForm(c, "/.keygate/settings/enroll/sms", "address", "+44 7700 900123")
	m := enrollRe.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil || strings.Contains(body, "900123") || !strings.Contains(html.UnescapeString(body), "We texted a confirmation code to +44") {
		t.Fatalf("enrolment page: %d %.300q", resp.StatusCode, body)
	}
	id := m[1]
	code := nextSMSCode(t, k, phone)
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	resp, body = h.postForm(c, "/.keygate/settings/enroll/sms/confirm", "id", id, "to", "+44 •••• ••01 23", "code", wrong)
	if m := enrollRe.FindStringSubmatch(body); resp.StatusCode != http.StatusUnauthorized || m == nil || m[1] != id || !strings.Contains(body, `aria-invalid="true"`) {
		t.Fatalf("wrong confirmation code: %d (the page must ask again for the same enrolment) %.300q", resp.StatusCode, body)
	}
	resp, _ = h.postForm(c, "/.keygate/settings/enroll/sms/confirm", "id", id, "code", code, "name", "Work phone")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "done=sms_added") {
		t.Fatalf("confirmation: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// A new browser: the password, then the chooser offers the phone.
	c = h.client()
	target := "http://app.example.com/texts/report"
	h.login(c, testUser, testPassword, target)
	if resp, _ := h.do(c, http.MethodGet, target, ""); resp.StatusCode == http.StatusOK {
		t.Fatal("the SMS area answered on a password alone")
	}
	rd := url.QueryEscape(target)
	_, body = h.do(c, http.MethodGet, "http://app.example.com/.keygate/second-factor?rd="+rd, "")
	if !strings.Contains(body, `href="/.keygate/second-factor/sms?rd=`) || strings.Contains(body, `/second-factor/totp`) {
		t.Fatalf("chooser: %.400q", body)
	}
	resp, _ = h.postForm(c, "/.keygate/second-factor/sms/send", "rd", target)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/.keygate/second-factor/sms?rd=") {
		t.Fatalf("send: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, body = h.do(c, http.MethodGet, "http://app.example.com"+resp.Header.Get("Location"), "")
	if !strings.Contains(html.UnescapeString(body), "We texted a code to +44") || strings.Contains(body, "900123") || !strings.Contains(body, `id="resend"`) {
		t.Fatalf("code page: %.400q", body)
	}
	code = nextSMSCode(t, k, phone)
	resp, _ = h.postForm(c, "/.keygate/second-factor/sms", "rd", target, "code", code)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != target {
		t.Fatalf("code: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := h.do(c, http.MethodGet, target, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("the SMS area after the code: %d", resp.StatusCode)
	}
}
