package authn

import (
	"context"
	"fmt"
	"html"
	"log/slog"
	"strings"
	"time"

	"github.com/keygate/keygate/factors/emailcode"
)

// Notices are the emails keygate sends about an account's security (not
// one-time codes): people expect to hear when something happens to their
// account, and it is how they notice someone else did it.
type Notices struct {
	send    emailcode.Sender
	product string
	log     *slog.Logger
	now     func() time.Time
}

// NewNotices builds the notice mailer; a nil sender makes it a no-op.
func NewNotices(s emailcode.Sender, product string, log *slog.Logger, now func() time.Time) *Notices {
	if product == "" {
		product = "keygate"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Notices{send: s, product: product, log: log, now: now}
}

// Notice kinds.
const (
	NoticeRecoveryUsed = "recovery_used"
)

var noticeText = map[string]map[string][2]string{
	NoticeRecoveryUsed: {
		"en": {"A recovery code was used to sign in to %s",
			"A recovery code was used to sign in to your account on %s (%s, from %s). You have %d recovery codes left.\n\n" +
				"If you lost your phone or security key, add a new one on your security page and create new recovery codes.\n\n" +
				"If this was not you, change your password now and tell your administrator."},
		"ru": {"Для входа в %s использован код восстановления",
			"Для входа в вашу учётную запись %s использован код восстановления (%s, с адреса %s). Осталось кодов восстановления: %d.\n\n" +
				"Если вы потеряли телефон или ключ безопасности, добавьте новый на странице безопасности и создайте новые коды восстановления.\n\n" +
				"Если это были не вы, сейчас же смените пароль и сообщите администратору."},
	},
}

// RecoveryUsed tells the user a recovery code was used. Delivery failures
// are logged, not returned: the sign-in already happened and must not
// fail because mail is down.
func (n *Notices) RecoveryUsed(ctx context.Context, u User, lang, ip string, left int) {
	if n == nil || n.send == nil || u.Email == "" {
		return
	}
	t, ok := noticeText[NoticeRecoveryUsed][lang]
	if !ok {
		t = noticeText[NoticeRecoveryUsed]["en"]
	}
	when := n.now().UTC().Format("2006-01-02 15:04 UTC")
	body := fmt.Sprintf(t[1], n.product, when, ip, left)
	msg := emailcode.Message{
		To:      u.Email,
		Subject: fmt.Sprintf(t[0], n.product),
		Text:    body,
		HTML:    "<p>" + strings.ReplaceAll(html.EscapeString(body), "\n\n", "</p><p>") + "</p>",
	}
	if err := n.send.Send(ctx, msg); err != nil {
		n.log.Warn("security notice not delivered", "notice", NoticeRecoveryUsed, "user", u.Username, "err", err)
	}
}
