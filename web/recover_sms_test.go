package web

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/factors/sms/gateway"
	"github.com/keygate/keygate/factors/sms/kanneltest"
)

// A recovery request reaches every channel the person has: the mail with
// its cancel link, and a text to the confirmed phone (through real Kannel)
// that names no link and tells them where to act.
func TestRecoveryRequestTextsThePhone(t *testing.T) {
	k := kanneltest.Start(t)
	snd, err := gateway.NewKannel(gateway.KannelOptions{URL: k.SendURL, Username: k.Username, Password: k.Password})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOptions{sms: snd})
	if _, err := h.users.Add(context.Background(), authn.NewUser{Username: recUser, Email: recAddr, Password: recPassword, EmailVerified: true}); err != nil {
		t.Fatal(err)
	}
	// Carol's phone is her second factor.
	owner := h.passwordSession()
	h.redeemLink(owner, recUser)
	const phone = "+447700900123"
	resp, body := h.postForm(owner, "/.keygate/settings/enroll/sms", "address", phone)
	m := enrollRe.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("enrolment page: %d", resp.StatusCode)
	}
	resp, _ = h.postForm(owner, "/.keygate/settings/enroll/sms/confirm", "id", m[1], "code", nextSMSCode(t, k, phone), "name", "Phone")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("confirm the number: %d", resp.StatusCode)
	}

	// The phone is lost (or stolen): the password and the mailbox ask.
	lost := h.passwordSession()
	if st, out := h.askRecovery(lost); st != http.StatusOK || out["status"] != "waiting" {
		t.Fatalf("recovery request: %d %v", st, out)
	}
	if h.cancelToken() == "" {
		t.Fatal("no cancel link mailed")
	}
	text := k.Next(t, 15*time.Second)
	if strings.TrimPrefix(text.To, "+") != strings.TrimPrefix(phone, "+") ||
		!strings.Contains(text.Text, "someone asked to recover your account") || strings.Contains(text.Text, "http") {
		t.Fatalf("the phone was told %+v", text)
	}
}
