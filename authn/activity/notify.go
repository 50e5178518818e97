package activity

import (
	"context"
	"fmt"
	"html"
	"log/slog"
	"strings"
	"time"

	"github.com/keygate/keygate/authn/mail"
)

// Notices are the emails keygate sends about an account's security (not
// one-time codes): people expect to hear when something happens to their
// account, and it is how they notice someone else did it.
type Notices struct {
	send    mail.Sender
	product string
	log     *slog.Logger
	now     func() time.Time
}

// NewNotices builds the notice mailer; a nil sender makes it a no-op.
func NewNotices(s mail.Sender, product string, log *slog.Logger, now func() time.Time) *Notices {
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
	NoticeRecoveryUsed   = "recovery_used"
	NoticeNewSignIn      = "new_sign_in"
	NoticeSecurityChange = "security_change"
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
func (n *Notices) RecoveryUsed(ctx context.Context, u Person, lang, ip string, left int) {
	if n == nil || n.send == nil || u.Email == "" {
		return
	}
	t, ok := noticeText[NoticeRecoveryUsed][lang]
	if !ok {
		t = noticeText[NoticeRecoveryUsed]["en"]
	}
	when := n.now().UTC().Format("2006-01-02 15:04 UTC")
	body := fmt.Sprintf(t[1], n.product, when, ip, left)
	msg := mail.Message{
		To:      u.Email,
		Subject: fmt.Sprintf(t[0], n.product),
		Text:    body,
		HTML:    "<p>" + strings.ReplaceAll(html.EscapeString(body), "\n\n", "</p><p>") + "</p>",
	}
	if err := n.send.Send(ctx, msg); err != nil {
		n.log.Warn("security notice not delivered", "notice", NoticeRecoveryUsed, "user", u.Username, "err", err)
	}
}

// activityText holds the notices about activity: [subject, intro,
// if-it-was-you, if-it-was-not-you, link text]; the subject's %s is the
// product (and, for a change, what changed).
var activityText = map[string]map[string][5]string{
	NoticeNewSignIn: {
		"en": {"New sign-in to your %s account",
			"Your account was signed in to from a browser or a network it has not used recently.",
			"If this was you, there is nothing to do.",
			"If it was not you, someone knows your password. Open the link below: it signs your account out everywhere, forgets its remembered devices and locks it. You can unlock it with a code sent to this address (or ask your administrator), then change your password.",
			"This wasn't me — secure my account"},
		"ru": {"Новый вход в учётную запись %s",
			"В вашу учётную запись вошли из браузера или сети, которые в последнее время не использовались.",
			"Если это были вы, ничего делать не нужно.",
			"Если это были не вы, кто-то знает ваш пароль. Откройте ссылку ниже: она завершит все сеансы вашей учётной записи, забудет запомненные устройства и заблокирует её. Разблокировать её можно кодом, отправленным на этот адрес (или через администратора); затем смените пароль.",
			"Это был не я — защитить учётную запись"},
	},
	NoticeSecurityChange: {
		"en": {"Security change on your %s account: %s",
			"The security settings of your account were changed: %s.",
			"If this was you, there is nothing to do.",
			"If it was not you, open the link below: it signs your account out everywhere, forgets its remembered devices and locks it. You can unlock it with a code sent to this address (or ask your administrator), then change your password.",
			"This wasn't me — secure my account"},
		"ru": {"Изменение безопасности учётной записи %s: %s",
			"Настройки безопасности вашей учётной записи изменены: %s.",
			"Если это были вы, ничего делать не нужно.",
			"Если это были не вы, откройте ссылку ниже: она завершит все сеансы вашей учётной записи, забудет запомненные устройства и заблокирует её. Разблокировать её можно кодом, отправленным на этот адрес (или через администратора); затем смените пароль.",
			"Это был не я — защитить учётную запись"},
	},
}

// changeText says in words what changed, per event kind; %s is the
// credential's or device's name where there is one.
var changeText = map[string]map[string][2]string{
	EventFactorAdded:     {"en": {"a second factor was added", "a second factor was added (%s)"}, "ru": {"добавлен второй фактор", "добавлен второй фактор (%s)"}},
	EventFactorRemoved:   {"en": {"a second factor was removed", "a second factor was removed (%s)"}, "ru": {"удалён второй фактор", "удалён второй фактор (%s)"}},
	EventRecoveryCreated: {"en": {"new recovery codes were created", "new recovery codes were created"}, "ru": {"созданы новые коды восстановления", "созданы новые коды восстановления"}},
	EventPasswordChanged: {"en": {"the password was changed", "the password was changed"}, "ru": {"изменён пароль", "изменён пароль"}},
	EventDeviceTrusted:   {"en": {"a device is now remembered", "a device is now remembered (%s)"}, "ru": {"запомнено устройство", "запомнено устройство (%s)"}},
	EventEmailVerified:   {"en": {"the email address was confirmed", "the email address was confirmed"}, "ru": {"подтверждён адрес электронной почты", "подтверждён адрес электронной почты"}},
	EventUnlocked:        {"en": {"the account was unlocked", "the account was unlocked"}, "ru": {"учётная запись разблокирована", "учётная запись разблокирована"}},
	EventFactorsReset:    {"en": {"all second factors were removed by an administrator", "all second factors were removed by an administrator"}, "ru": {"администратор удалил все вторые факторы", "администратор удалил все вторые факторы"}},
	EventFactorRenamed:   {"en": {"a second factor was renamed", "a second factor was renamed (%s)"}, "ru": {"второй фактор переименован", "второй фактор переименован (%s)"}},
	// Account recovery (authn/recovery.go); the detail is not shown (who
	// cancelled is in the activity log).
	EventRecoveryCancelled: {"en": {"the account recovery was cancelled", "the account recovery was cancelled"}, "ru": {"восстановление учётной записи отменено", "восстановление учётной записи отменено"}},
	EventRecoveryApproved:  {"en": {"an administrator approved the account recovery: it can be completed now", "an administrator approved the account recovery: it can be completed now"}, "ru": {"администратор одобрил восстановление учётной записи: его можно завершить сейчас", "администратор одобрил восстановление учётной записи: его можно завершить сейчас"}},
	EventRecoveryCompleted: {"en": {"the account was recovered: every earlier second factor was removed and a new one added", "the account was recovered: every earlier second factor was removed and a new one added (%s)"}, "ru": {"учётная запись восстановлена: все прежние вторые факторы удалены, добавлен новый", "учётная запись восстановлена: все прежние вторые факторы удалены, добавлен новый (%s)"}},
}

// factorName names a factor or sign-in method in a notice.
var factorName = map[string]map[string]string{
	"en": {"password": "password", "passkey": "passkey", "webauthn": "security key", "totp": "authenticator app", "email": "email code", "recovery": "recovery code"},
	"ru": {"password": "пароль", "passkey": "ключ доступа", "webauthn": "ключ безопасности", "totp": "приложение-аутентификатор", "email": "код по почте", "recovery": "код восстановления"},
}

var factsText = map[string][4]string{
	"en": {"When", "Browser", "Address", "Method"},
	"ru": {"Когда", "Браузер", "Адрес", "Способ"},
}

// Activity mails a notice about an event (a new sign-in, a security
// change) with the "This wasn't me" link. Delivery failures are logged,
// not returned: what the notice is about already happened.
func (n *Notices) Activity(ctx context.Context, u Person, notice string, e Event, notMeURL string) {
	if n == nil || n.send == nil || u.Email == "" {
		return
	}
	lang := e.Lang
	if _, ok := activityText[notice][lang]; !ok {
		lang = "en"
	}
	t := activityText[notice][lang]
	subject, intro := fmt.Sprintf(t[0], n.product), t[1]
	if notice == NoticeSecurityChange {
		what := changeDescription(lang, e)
		subject, intro = fmt.Sprintf(t[0], n.product, what), fmt.Sprintf(t[1], what)
	}
	facts := factsText[lang]
	rows := [][2]string{{facts[0], e.At.UTC().Format("2006-01-02 15:04 UTC")}, {facts[1], orDash(e.Browser)}, {facts[2], orDash(e.IP)}}
	if e.Factor != "" {
		name := factorName[lang][e.Factor]
		rows = append(rows, [2]string{facts[3], orDash(name)})
	}
	var text, body strings.Builder
	text.WriteString(intro + "\n\n")
	body.WriteString("<p>" + html.EscapeString(intro) + "</p><table>")
	for _, r := range rows {
		fmt.Fprintf(&text, "%s: %s\n", r[0], r[1])
		fmt.Fprintf(&body, "<tr><th align=\"left\">%s</th><td>%s</td></tr>", html.EscapeString(r[0]), html.EscapeString(r[1]))
	}
	fmt.Fprintf(&text, "\n%s\n\n%s\n%s: %s\n", t[2], t[3], t[4], notMeURL)
	fmt.Fprintf(&body, "</table><p>%s</p><p>%s</p><p><a href=\"%s\">%s</a></p>",
		html.EscapeString(t[2]), html.EscapeString(t[3]), html.EscapeString(notMeURL), html.EscapeString(t[4]))
	msg := mail.Message{To: u.Email, Subject: subject, Text: text.String(), HTML: body.String()}
	if err := n.send.Send(ctx, msg); err != nil {
		n.log.Warn("security notice not delivered", "notice", notice, "user", u.Username, "err", err)
	}
}

func changeDescription(lang string, e Event) string {
	t, ok := changeText[e.Kind][lang]
	if !ok {
		return e.Kind
	}
	if e.Detail != "" && strings.Contains(t[1], "%s") {
		return fmt.Sprintf(t[1], e.Detail)
	}
	return t[0]
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
