package sms

import (
	"context"
	"errors"
	"fmt"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sentcode"
)

var _ factors.Notifier = (*Factor)(nil)

// noticeText is what a notice's SMS says; it names no link (a text with a
// link is what phishing looks like) but where to act: the mail, or a
// sign-in with a factor the person still has.
func noticeText(lang, product string, kind factors.NoticeKind) (string, bool) {
	if kind != factors.NoticeRecoveryRequested {
		return "", false
	}
	if sentcode.PickLang(lang, languages[:]...) == "ru" {
		return fmt.Sprintf("%s: начато восстановление доступа. Не вы? Отмените в письме.", product), true
	}
	return fmt.Sprintf("%s: someone asked to recover your account. If it was not you, cancel it with the link in the email we sent, or sign in with a factor you have.", product), true
}

// Notify texts the person's confirmed number about kind. No number, or no
// text for kind: nothing is sent. A failed send wraps
// factors.ErrSendFailed and names neither the number nor the text.
func (f *Factor) Notify(ctx context.Context, s factors.Subject, kind factors.NoticeKind) error {
	msg, ok := noticeText(s.Lang, f.product, kind)
	if !ok {
		return nil
	}
	rec, _, err := f.load(ctx, s.Username)
	if errors.Is(err, factors.ErrNotEnrolled) {
		return nil
	}
	if err != nil {
		return err
	}
	phone, err := f.openPhone(rec.Phone, credAAD(s.Username, rec.ID))
	if err != nil {
		return err
	}
	if err := f.sender.Send(ctx, Message{To: phone, Text: msg}); err != nil {
		return fmt.Errorf("sms: notice %s: %w: %w", kind, factors.ErrSendFailed, err)
	}
	return nil
}
