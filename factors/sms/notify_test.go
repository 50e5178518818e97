package sms_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sms"
)

// A recovery under way is texted to the person's confirmed number, in
// their language, in one SMS with no link; without a number, or for a
// kind with no text, nothing is sent; a failed send says so without the
// number.
func TestNoticeTextsThePhone(t *testing.T) {
	e := newPhoneEnv(t, sms.Options{})
	if err := e.f.Notify(ctx, alice, factors.NoticeRecoveryRequested); err != nil || e.phone.count() != 0 {
		t.Fatalf("no number: %v, %d texts", err, e.phone.count())
	}
	e.enroll(t, alice, number)
	sent := e.phone.count()
	for _, tc := range []struct {
		lang, want string
	}{
		{"en", "someone asked to recover your account"},
		{"ru-RU", "начато восстановление доступа"},
	} {
		s := factors.Subject{Username: "alice", Lang: tc.lang}
		if err := e.f.Notify(ctx, s, factors.NoticeRecoveryRequested); err != nil {
			t.Fatal(err)
		}
		m := e.phone.last(t)
		if m.To != number || !strings.Contains(m.Text, tc.want) || strings.Contains(m.Text, "http") {
			t.Errorf("%s notice %+v", tc.lang, m)
		}
		if limit := 70; sms.GSM7(m.Text) && len(m.Text) > 160 || !sms.GSM7(m.Text) && len(utf16.Encode([]rune(m.Text))) > limit {
			t.Errorf("%s notice does not fit one SMS: %q", tc.lang, m.Text)
		}
	}
	if e.phone.count() != sent+2 {
		t.Fatalf("%d texts, want %d", e.phone.count(), sent+2)
	}
	if err := e.f.Notify(ctx, alice, factors.NoticeKind("something_else")); err != nil || e.phone.count() != sent+2 {
		t.Errorf("an unknown kind: %v, %d texts", err, e.phone.count())
	}
	e.phone.fail(http.StatusServiceUnavailable)
	err := e.f.Notify(ctx, alice, factors.NoticeRecoveryRequested)
	if !errors.Is(err, factors.ErrSendFailed) || strings.Contains(err.Error(), "900123") {
		t.Errorf("failed send: %v", err)
	}
}
