package web

import (
	"context"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	delivery "github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/authn/mail/mailpittest"
)

// The email factor through the portal, delivered by real SMTP to a real
// Mailpit.

var codeRe = regexp.MustCompile(`\b(\d{6})\b`)

func smtpTo(t *testing.T, host string, port int) *delivery.SMTP {
	t.Helper()
	s, err := delivery.NewSMTP(delivery.SMTPOptions{From: "keygate <keygate@example.com>", Host: host, Port: port,
		TLS: "none", Timeout: 2 * time.Second, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEmailCodeThroughThePortal(t *testing.T) {
	mp := mailpittest.Start(t)
	h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n", mail: smtpTo(t, mp.SMTPHost, mp.SMTPPort)})
	c := h.client()
	h.login(c, testUser, testPassword, "http://app.example.com/x")

	start := time.Now()
	resp, out := h.postJSON(c, "/.keygate/api/factors/email/send", nil)
	if resp.StatusCode != 200 || out["to"] != "a***e@e*****e.com" {
		t.Fatalf("send: %d %v", resp.StatusCode, out)
	}
	mail := mp.WaitFor("alice@example.com", 5*time.Second)
	t.Logf("email code arrived in Mailpit %s after the request", time.Since(start).Round(time.Millisecond))
	code := codeRe.FindString(mail.Text)
	if code == "" || strings.Contains(mail.Subject, code) {
		t.Fatalf("mail: subject %q text %q", mail.Subject, mail.Text)
	}

	// The page says where it went, reminds of the spam folder, counts down.
	_, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/second-factor/email", "")
	for _, want := range []string{"a***e@e*****e.com", "spam", `data-resend-in="`} {
		if !strings.Contains(body, want) {
			t.Errorf("email page lacks %q", want)
		}
	}
	// "Send a new code" before the cooldown: refused with the seconds left.
	resp, out = h.postJSON(c, "/.keygate/api/factors/email/send", nil)
	if resp.StatusCode != http.StatusTooManyRequests || out["error"] != "cooldown" || out["retry_after"] == nil {
		t.Fatalf("resend in cooldown: %d %v", resp.StatusCode, out)
	}
	// The message says the wait as people do: "42 seconds", "1 minute".
	secs := int(out["retry_after"].(float64))
	said := strconv.Itoa(secs) + " seconds"
	if secs == 60 {
		said = "1 minute"
	}
	if secs < 55 || secs > 60 || !strings.Contains(out["message"].(string), said) {
		t.Fatalf("cooldown says %d s: %v", secs, out["message"])
	}

	// Wrong code, then the right one: in once.
	resp, out = h.postJSON(c, "/.keygate/api/factors/email/verify", map[string]any{"code": "000000"})
	if resp.StatusCode != http.StatusUnauthorized || out["error"] != "wrong_code" {
		t.Fatalf("wrong code: %d %v", resp.StatusCode, out)
	}
	resp, out = h.postJSON(c, "/.keygate/api/factors/email/verify", map[string]any{"code": code, "rd": "http://app.example.com/x"})
	if resp.StatusCode != 200 || out["status"] != "ok" {
		t.Fatalf("right code: %d %v", resp.StatusCode, out)
	}
	if r, _ := h.do(c, http.MethodGet, "http://app.example.com/x", ""); r.StatusCode != 200 {
		t.Fatalf("two_factor path after the email code: %d", r.StatusCode)
	}
	// Reuse from another browser: refused.
	other := h.client()
	h.login(other, testUser, testPassword, "")
	resp, out = h.postJSON(other, "/.keygate/api/factors/email/verify", map[string]any{"code": code})
	if resp.StatusCode == 200 {
		t.Fatalf("a used email code worked again: %v", out)
	}

	// Expired: after ten minutes the code says so.
	h.clock.Add(61 * time.Second)
	h.postJSON(other, "/.keygate/api/factors/email/send", nil)
	fresh := codeRe.FindString(mp.WaitFor("alice@example.com", 5*time.Second).Text)
	h.clock.Add(11 * time.Minute)
	resp, out = h.postJSON(other, "/.keygate/api/factors/email/verify", map[string]any{"code": fresh})
	if resp.StatusCode != http.StatusUnauthorized || out["error"] != "code_expired" || !strings.Contains(out["message"].(string), "Request a new one") {
		t.Fatalf("expired code: %d %v", resp.StatusCode, out)
	}
}

func TestEmailCodeDeliveryFailureIsNeverSuccess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens: the SMTP server is down
	h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n", mail: smtpTo(t, "127.0.0.1", port)})
	c := h.client()
	h.login(c, testUser, testPassword, "")
	resp, out := h.postJSON(c, "/.keygate/api/factors/email/send", nil)
	if resp.StatusCode != http.StatusBadGateway || out["error"] != "email_failed" || !strings.Contains(out["message"].(string), "could not send") {
		t.Fatalf("SMTP down: %d %v", resp.StatusCode, out)
	}
	// Nothing was marked sent: the page offers "send", not a countdown.
	_, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/second-factor/email", "")
	if strings.Contains(body, "data-resend-in") || strings.Contains(body, "We sent a code") {
		t.Fatal("the page claims a code was sent after a delivery failure")
	}
	// The no-JS form says the same, in Russian too.
	resp, body = h.do(c, http.MethodPost, "http://app.example.com/.keygate/second-factor/email/send", "", formHeader, setHeader("Accept-Language", "ru"))
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Не удалось отправить письмо") {
		t.Fatalf("ru form on SMTP down: %d", resp.StatusCode)
	}
}

// latestCode reads the newest code from the harness's outbox.
func (h *harness) latestCode(to string) string {
	h.t.Helper()
	mails, err := h.outbox.List()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, m := range mails {
		if m.To == to {
			if code := codeRe.FindString(m.Text); code != "" {
				return code
			}
		}
	}
	h.t.Fatalf("no code mailed to %s", to)
	return ""
}

func TestEmailAddressVerifiedBeforeUseAndEmailEnrolment(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: two_factor\n"})
	// bob's address is not verified: email is not offered as a factor.
	c := h.client()
	h.login(c, "bob", "violet-harbour-lantern-9", "")
	resp, out := h.postJSON(c, "/.keygate/api/factors/email/send", nil)
	if resp.StatusCode != http.StatusConflict || out["error"] != "email_not_verified" {
		t.Fatalf("code to an unverified address: %d %v", resp.StatusCode, out)
	}
	_, body := h.do(c, http.MethodGet, "http://app.example.com/.keygate/second-factor", "")
	if strings.Contains(body, "Code by email") {
		t.Fatal("the chooser offers email for an unverified address")
	}
	_, body = h.do(c, http.MethodGet, "http://app.example.com/.keygate/settings", "")
	if !strings.Contains(body, "not confirmed yet") {
		t.Fatal("the security page does not say the address is unconfirmed")
	}
	// Confirm the address with a code.
	resp, _ = h.postForm(c, "/.keygate/settings/email/send")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("send verification code: %d", resp.StatusCode)
	}
	resp, body = h.postForm(c, "/.keygate/settings/email/verify", "code", "000000")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "This code is not correct") {
		t.Fatalf("wrong verification code: %d", resp.StatusCode)
	}
	resp, _ = h.postForm(c, "/.keygate/settings/email/verify", "code", h.latestCode("bob@example.com"))
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "code_ok_verify_address") {
		t.Fatalf("verify address: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if u, _ := h.mfa.User(context.Background(), "bob"); !u.EmailVerified {
		t.Fatal("address not marked verified")
	}
	// A confirmed address can stand in for the admin's link: enrolment
	// after a code to it.
	if resp, _ := h.postForm(c, "/.keygate/settings/totp"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("enrolment before the enrolment code: %d", resp.StatusCode)
	}
	h.clock.Add(2 * time.Minute) // past the resend cooldown
	resp, _ = h.postForm(c, "/.keygate/settings/enroll-code/send")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("send enrolment code: %d", resp.StatusCode)
	}
	resp, _ = h.postForm(c, "/.keygate/settings/enroll-code/verify", "code", h.latestCode("bob@example.com"))
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "code_ok_enroll") {
		t.Fatalf("enrolment code: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	h.enrolTOTP(c)
	if creds, _ := h.mfa.Credentials(context.Background(), "bob"); len(creds) != 1 {
		t.Fatalf("bob's factors after email enrolment: %v", creds)
	}
}
