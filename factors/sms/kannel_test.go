package sms_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sentcode"
	"github.com/keygate/keygate/factors/sms"
	"github.com/keygate/keygate/factors/sms/gateway"
)

// The whole path through real Kannel: a confirmation code and a sign-in
// code leave through smsbox's sendsms, arrive at the fake SMSC, and the
// codes read there enrol the number and sign in — once.
func TestCodeThroughKannelSignsIn(t *testing.T) {
	for _, method := range []string{"POST", "GET"} {
		t.Run(method, func(t *testing.T) {
			e := newKannelEnv(t, method, sms.Options{})
			alice := factors.Subject{Username: "alice", Lang: "en"}
			start := time.Now()
			en, err := e.f.Enroll(ctx, alice, factors.EnrollRequest{Address: "+44 7700 900123"})
			if err != nil {
				t.Fatal(err)
			}
			got := e.kannel.Next(t, 5*time.Second)
			t.Logf("Enroll → at the fake SMSC: %s", time.Since(start))
			if got.To != number || got.From != "keygate" || got.Coding != "text" {
				t.Errorf("received %+v", got)
			}
			c := code(t, got.Text)
			if want := "Your keygate code to confirm this phone number is " + c + ". It expires in 10 minutes."; got.Text != want {
				t.Errorf("text %q, want %q", got.Text, want)
			}
			if en.Sent == nil || en.Sent.To != "+44 •••• ••01 23" || en.ID == "" {
				t.Errorf("enrolment %+v", en)
			}
			cred, err := e.f.ConfirmEnroll(ctx, alice, en.ID, factors.Response{Code: c}, "Work phone")
			if err != nil {
				t.Fatal(err)
			}
			if cred.Kind != "sms" || cred.Name != "Work phone" || cred.Detail != "+44 •••• ••01 23" {
				t.Errorf("credential %+v", cred)
			}

			ch, err := e.f.Begin(ctx, alice)
			if err != nil || ch.Sent == nil || ch.Sent.To != cred.Detail {
				t.Fatalf("begin: %+v %v", ch, err)
			}
			got = e.kannel.Next(t, 5*time.Second)
			c = code(t, got.Text)
			if want := "Your keygate code is " + c + ". It expires in 10 minutes. Do not share it."; got.Text != want || got.To != number {
				t.Errorf("sign-in text %+v, want %q", got, want)
			}
			proof, err := e.f.Prove(ctx, alice, factors.Response{Code: c})
			if err != nil || proof.Kind != "sms" || proof.Ref != cred.ID || proof.Remaining != -1 {
				t.Fatalf("prove: %+v %v", proof, err)
			}
			if _, err := e.f.Prove(ctx, alice, factors.Response{Code: c}); !errors.Is(err, factors.ErrReplayed) {
				t.Errorf("reuse: %v, want ErrReplayed", err)
			}
			list, _ := e.f.List(ctx, "alice")
			if len(list) != 1 || !list[0].LastUsedAt.Equal(e.clock.Now()) {
				t.Errorf("list after sign-in: %+v", list)
			}
		})
	}
}

// Cyrillic goes as UCS-2 (coding=2) and arrives as written, in one SMS.
func TestCyrillicArrivesIntact(t *testing.T) {
	e := newKannelEnv(t, "POST", sms.Options{Limits: sentcode.Limits{TTL: 21 * time.Minute}})
	ivan := factors.Subject{Username: "ivan", Lang: "ru-RU"}
	en, err := e.f.Enroll(ctx, ivan, factors.EnrollRequest{Address: "+79161234567"})
	if err != nil {
		t.Fatal(err)
	}
	got := e.kannel.Next(t, 5*time.Second)
	c := code(t, got.Text)
	if want := "Код keygate для подтверждения номера: " + c + ". Действует 21 минуту."; got.Text != want || got.Coding != "ucs-2" || got.To != "+79161234567" {
		t.Errorf("received %+v\nwant text %q", got, want)
	}
	if _, err := e.f.ConfirmEnroll(ctx, ivan, en.ID, factors.Response{Code: c}, "Телефон"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.f.Begin(ctx, ivan); err != nil {
		t.Fatal(err)
	}
	got = e.kannel.Next(t, 5*time.Second)
	c = code(t, got.Text)
	if want := "Ваш код keygate: " + c + ". Действует 21 минуту. Никому не сообщайте."; got.Text != want || got.Coding != "ucs-2" {
		t.Errorf("received %+v\nwant text %q", got, want)
	}
	// The GET form carries the same coding.
	e.clock.Advance(time.Minute)
	get := e.factor(t, e.kannelGateway(t, "GET", e.kannel.Password), sms.Options{Limits: sentcode.Limits{TTL: 21 * time.Minute}})
	if _, err := get.Begin(ctx, ivan); err != nil {
		t.Fatal(err)
	}
	if got := e.kannel.Next(t, 5*time.Second); !strings.HasPrefix(got.Text, "Ваш код keygate: ") || got.Coding != "ucs-2" {
		t.Errorf("GET: %+v", got)
	}
}

// Kannel down, or refusing: a clear ErrSendFailed with nothing secret in
// it, nothing marked sent (the earlier code still works, no cooldown, the
// cap untouched), and a later send works once Kannel is back.
func TestKannelDownChangesNothing(t *testing.T) {
	e := newKannelEnv(t, "POST", sms.Options{})
	alice := factors.Subject{Username: "alice", Lang: "en"}
	en, err := e.f.Enroll(ctx, alice, factors.EnrollRequest{Address: number})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.f.ConfirmEnroll(ctx, alice, en.ID, factors.Response{Code: code(t, e.kannel.Next(t, 5*time.Second).Text)}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.f.Begin(ctx, alice); err != nil {
		t.Fatal(err)
	}
	earlier := code(t, e.kannel.Next(t, 5*time.Second).Text)
	e.clock.Advance(time.Minute) // past the cooldown
	before, ok, err := e.f.Pending(ctx, alice)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}

	e.kannel.StopSMSBox()
	// More tries than the hourly cap: none may count.
	for i := range 7 {
		_, err := e.f.Begin(ctx, alice)
		if !errors.Is(err, factors.ErrSendFailed) || errors.Is(err, factors.ErrCooldown) || errors.Is(err, factors.ErrHourlyCap) {
			t.Fatalf("send %d with Kannel down: %v, want only ErrSendFailed", i+1, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, "could not send") || !strings.Contains(msg, "connection refused") {
			t.Errorf("the error does not say what failed: %v", err)
		}
		for _, secret := range []string{"7700900123", e.kannel.Password, earlier} {
			if strings.Contains(msg, secret) {
				t.Errorf("the error shows %q: %v", secret, err)
			}
		}
	}
	after, ok, err := e.f.Pending(ctx, alice)
	if err != nil || !ok || after != before {
		t.Errorf("pending changed by failed sends:\nbefore %+v\nafter  %+v (%v %v)", before, after, ok, err)
	}

	// Wrong credentials: Kannel answers 403; the same, with its reason.
	e.kannel.StartSMSBox()
	bad := e.factor(t, e.kannelGateway(t, "POST", "not-the-password"), sms.Options{})
	_, err = bad.Begin(ctx, alice)
	var se *gateway.StatusError
	if !errors.As(err, &se) || se.Status != 403 || !strings.Contains(err.Error(), "Authorization failed") || !errors.Is(err, factors.ErrSendFailed) {
		t.Errorf("wrong password: %v", err)
	}
	if strings.Contains(err.Error(), "not-the-password") {
		t.Errorf("the error shows the password: %v", err)
	}

	// A port nobody listens on: the same.
	closed := closedPort(t)
	g, err := gateway.NewKannel(gateway.KannelOptions{URL: "http://" + closed + "/cgi-bin/sendsms", Username: "u", Password: "p", Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.factor(t, g, sms.Options{}).Begin(ctx, alice); !errors.Is(err, factors.ErrSendFailed) || strings.Contains(err.Error(), "password=") {
		t.Errorf("closed port: %v", err)
	}
	e.kannel.Quiet(t, 200*time.Millisecond)

	// The earlier code still works; then, Kannel back, the cap is intact:
	// four more codes fit in the hour (with the one delivered earlier and
	// the confirmation, six would be refused).
	if _, err := e.f.Prove(ctx, alice, factors.Response{Code: earlier}); err != nil {
		t.Errorf("the earlier code after failed sends: %v", err)
	}
	for i := range 3 {
		if _, err := e.f.Begin(ctx, alice); err != nil {
			t.Fatalf("send %d once Kannel is back: %v", i+1, err)
		}
		e.kannel.Next(t, 5*time.Second)
		e.clock.Advance(time.Minute)
	}
	if _, err := e.f.Begin(ctx, alice); !errors.Is(err, factors.ErrHourlyCap) {
		t.Errorf("sixth code of the hour: %v, want ErrHourlyCap", err)
	}
}

// closedPort is a loopback host:port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
