package activity

import (
	"context"
	"fmt"
	"html"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/keygate/keygate/authn/mail"
)

// Notices are the emails keygate sends about an account's security (not
// one-time codes): people expect to hear when something happens to their
// account, and it is how they notice someone else did it.
//
// Every kind of notice is one row of noticeTable, in every language, and
// every notice is written by one function (compose): the time in the
// person's zone, where it came from (address, browser and system), the
// person's language, and absolute links. A new kind is a new row and a call
// of Log.Notify; see NoticeNewSignIn for the words a row has.
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

// Notice kinds: each is a row of noticeTable.
const (
	NoticeNewSignIn      = "new_sign_in"
	NoticeSecurityChange = "security_change"
	NoticeRecoveryUsed   = "recovery_used"
	// NoticeRecoveryRequested: a self-service account recovery was asked
	// for (authn/recovery.go); {ready} is when it can be completed, and
	// Notice.Link cancels it.
	NoticeRecoveryRequested = "recovery_requested"
	// NoticeEmailChanged: sent to the NEW address once it replaced the
	// old one (authn/email_change.go); {address} is the new address. The
	// old address hears of the change through changeText's
	// "email_changed" row.
	NoticeEmailChanged = "email_changed"
)

// noticeWords are one kind's words in one language. Placeholders in
// braces are filled for every kind: {product}, {user} (the account's
// name), {what} (what changed, from changeText); a kind may use its own,
// filled from Notice.Vars and Notice.Times (a time is written in the
// person's zone, like "When").
type noticeWords struct {
	Subject string
	Intro   string
	IfYou   string // what to do if it was you ("" = say nothing)
	IfNot   string // what to do if it was not
	Link    string // the link's words; the mail shows it when Notice.Link is set
}

// noticeTable holds every kind's words, in every language keygate speaks
// (a test checks both languages have every kind and the same placeholders).
var noticeTable = map[string]map[string]noticeWords{
	NoticeNewSignIn: {
		"en": {
			Subject: "New sign-in to your {product} account",
			Intro:   "Your account {user} was signed in to from a browser or a network it has not used recently.",
			IfYou:   "If this was you, there is nothing to do.",
			IfNot:   "If it was not you, someone knows your password. Open the link below: it signs your account out everywhere, forgets its remembered devices and locks it. You can unlock it with a code sent to this address (or ask your administrator), then change your password.",
			Link:    "This wasn't me — secure my account",
		},
		"ru": {
			Subject: "Новый вход в учётную запись {product}",
			Intro:   "В вашу учётную запись {user} вошли из браузера или сети, которые в последнее время не использовались.",
			IfYou:   "Если это были вы, ничего делать не нужно.",
			IfNot:   "Если это были не вы, кто-то знает ваш пароль. Откройте ссылку ниже: она завершит все сеансы вашей учётной записи, забудет запомненные устройства и заблокирует её. Разблокировать её можно кодом, отправленным на этот адрес (или через администратора); затем смените пароль.",
			Link:    "Это был не я — защитить учётную запись",
		},
	},
	NoticeSecurityChange: {
		"en": {
			Subject: "Security change on your {product} account: {what}",
			Intro:   "The security settings of your account {user} were changed: {what}.",
			IfYou:   "If this was you, there is nothing to do.",
			IfNot:   "If it was not you, open the link below: it signs your account out everywhere, forgets its remembered devices and locks it. You can unlock it with a code sent to this address (or ask your administrator), then change your password.",
			Link:    "This wasn't me — secure my account",
		},
		"ru": {
			Subject: "Изменение безопасности учётной записи {product}: {what}",
			Intro:   "Настройки безопасности вашей учётной записи {user} изменены: {what}.",
			IfYou:   "Если это были вы, ничего делать не нужно.",
			IfNot:   "Если это были не вы, откройте ссылку ниже: она завершит все сеансы вашей учётной записи, забудет запомненные устройства и заблокирует её. Разблокировать её можно кодом, отправленным на этот адрес (или через администратора); затем смените пароль.",
			Link:    "Это был не я — защитить учётную запись",
		},
	},
	NoticeRecoveryUsed: {
		"en": {
			Subject: "A recovery code was used to sign in to {product}",
			Intro:   "A recovery code was used to sign in to your account {user}. Recovery codes left: {left}.",
			IfYou:   "If you lost your phone or security key, add a new one on your security page and create new recovery codes.",
			IfNot:   "If it was not you, someone has your password and a recovery code: open the link below (it signs your account out everywhere and locks it), then change your password and tell your administrator.",
			Link:    "This wasn't me — secure my account",
		},
		"ru": {
			Subject: "Для входа в {product} использован код восстановления",
			Intro:   "Для входа в вашу учётную запись {user} использован код восстановления. Осталось кодов восстановления: {left}.",
			IfYou:   "Если вы потеряли телефон или ключ безопасности, добавьте новый на странице безопасности и создайте новые коды восстановления.",
			IfNot:   "Если это были не вы, у кого-то есть ваш пароль и код восстановления: откройте ссылку ниже (она завершит все сеансы вашей учётной записи и заблокирует её), затем смените пароль и сообщите администратору.",
			Link:    "Это был не я — защитить учётную запись",
		},
	},
	NoticeRecoveryRequested: {
		"en": {
			Subject: "Account recovery requested for your {product} account",
			Intro:   "Someone who knows your password and can read this mailbox asked to recover your account {user}, saying every second factor (security key, phone, app) was lost. Unless it is cancelled, from {ready} whoever asked can sign in with the password and a code sent here, and replace every second factor of the account.",
			IfYou:   "If this was you, there is nothing to do: wait, then sign in again.",
			IfNot:   "If it was not you, cancel it now with the link below (signing in with one of your second factors cancels it too), then change your password and tell your administrator.",
			Link:    "Cancel the account recovery",
		},
		"ru": {
			Subject: "Запрошено восстановление учётной записи {product}",
			Intro:   "Кто-то, кто знает ваш пароль и читает этот почтовый ящик, запросил восстановление вашей учётной записи {user}, сообщив, что все вторые факторы (ключ безопасности, телефон, приложение) утеряны. Если запрос не отменить, начиная с {ready} запросивший сможет войти с паролем и кодом, отправленным на этот адрес, и заменить все вторые факторы учётной записи.",
			IfYou:   "Если это были вы, ничего делать не нужно: дождитесь этого времени и войдите снова.",
			IfNot:   "Если это были не вы, сейчас же отмените запрос по ссылке ниже (вход с одним из ваших вторых факторов тоже его отменит), затем смените пароль и сообщите администратору.",
			Link:    "Отменить восстановление учётной записи",
		},
	},
	NoticeEmailChanged: {
		"en": {
			Subject: "{address} is now the email address of your {product} account",
			Intro:   "{address} is now the email address of your account {user}: codes by email and notices about the account will come here, no longer to the old address.",
			IfYou:   "If this was you, there is nothing to do.",
			IfNot:   "If you did not ask for this, open the link below: it signs the account out everywhere, forgets its remembered devices and locks it; then tell your administrator.",
			Link:    "This wasn't me — secure my account",
		},
		"ru": {
			Subject: "{address} — теперь адрес электронной почты вашей учётной записи {product}",
			Intro:   "{address} — теперь адрес электронной почты вашей учётной записи {user}: коды по почте и уведомления об учётной записи будут приходить сюда, а не на прежний адрес.",
			IfYou:   "Если это были вы, ничего делать не нужно.",
			IfNot:   "Если вы этого не запрашивали, откройте ссылку ниже: она завершит все сеансы учётной записи, забудет запомненные устройства и заблокирует её; затем сообщите администратору.",
			Link:    "Это был не я — защитить учётную запись",
		},
	},
}

// changeText says in words what changed, per event kind; %s is the
// credential's or device's name where there is one. A new kind of change
// is a row here (en and ru); without one the mail names the kind.
var changeText = map[string]map[string][2]string{
	EventFactorAdded:     {"en": {"a second factor was added", "a second factor was added (%s)"}, "ru": {"добавлен второй фактор", "добавлен второй фактор (%s)"}},
	EventFactorRemoved:   {"en": {"a second factor was removed", "a second factor was removed (%s)"}, "ru": {"удалён второй фактор", "удалён второй фактор (%s)"}},
	EventRecoveryCreated: {"en": {"new recovery codes were created", "new recovery codes were created"}, "ru": {"созданы новые коды восстановления", "созданы новые коды восстановления"}},
	EventPasswordChanged: {"en": {"the password was changed", "the password was changed"}, "ru": {"изменён пароль", "изменён пароль"}},
	"password_reset":     {"en": {"the password was reset with a code sent to this address", "the password was reset with a code sent to this address"}, "ru": {"пароль сброшен с помощью кода, отправленного на этот адрес", "пароль сброшен с помощью кода, отправленного на этот адрес"}},
	"email_changed":      {"en": {"the email address was changed", "the email address was changed to %s; codes and notices no longer come to this address"}, "ru": {"изменён адрес электронной почты", "адрес электронной почты изменён на %s; коды и уведомления больше не будут приходить на этот адрес"}},
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
	// "Always ask me for a second factor" turned off (authn/always_ask.go):
	// the account is weaker, so the person hears of it.
	"always_ask_off": {"en": {"“Always ask me for a second factor” was turned off: where a password is enough, no second factor is asked for any more", "“Always ask me for a second factor” was turned off: where a password is enough, no second factor is asked for any more"}, "ru": {"отключено «Всегда запрашивать второй фактор»: там, где достаточно пароля, второй фактор больше не запрашивается", "отключено «Всегда запрашивать второй фактор»: там, где достаточно пароля, второй фактор больше не запрашивается"}},
}

// factorName names a factor or sign-in method in a notice.
var factorName = map[string]map[string]string{
	"en": {"password": "password", "passkey": "passkey", "webauthn": "security key", "totp": "authenticator app", "email": "email code", "sms": "text message code", "recovery": "recovery code"},
	"ru": {"password": "пароль", "passkey": "ключ доступа", "webauthn": "ключ безопасности", "totp": "приложение-аутентификатор", "email": "код по почте", "sms": "код в SMS", "recovery": "код восстановления"},
}

// mailWords are the words every notice shares: the facts' labels [when,
// IP address, browser, method], the security page's line, and the months.
var mailWords = map[string]struct {
	Facts    [4]string
	Security string
	Months   [12]string
}{
	"en": {
		Facts:    [4]string{"When", "IP address", "Browser", "Method"},
		Security: "Your security page",
		Months:   [12]string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"},
	},
	"ru": {
		Facts:    [4]string{"Когда", "IP-адрес", "Браузер", "Способ"},
		Security: "Страница безопасности",
		Months:   [12]string{"января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября", "ноября", "декабря"},
	},
}

// Notice is one mail about an account: which kind, about what, with which
// link.
type Notice struct {
	Kind string
	// Event is what happened: its time (stamped where it was made), where
	// it came from (IP, browser), the method (Factor) and, for a change,
	// what changed (Kind and Detail, see changeText).
	Event Event
	// Link is the absolute URL the mail offers with the kind's Link words
	// (a "This wasn't me" link, or a kind's own); "" = none.
	Link string
	// Vars and Times fill the kind's own placeholders; times are written
	// in the person's zone.
	Vars  map[string]string
	Times map[string]time.Time
	// Portal is the portal's origin ("https://app.example.com"): the mail
	// points to the security page there ("" = it does not).
	Portal string
}

// send writes n for to and hands it to the mail transport.
func (n *Notices) deliver(ctx context.Context, to Person, nt Notice) error {
	if n == nil || n.send == nil || to.Email == "" {
		return nil
	}
	msg, err := n.compose(to, nt)
	if err != nil {
		return err
	}
	if err := n.send.Send(ctx, msg); err != nil {
		return fmt.Errorf("notice %s: %w", nt.Kind, err)
	}
	return nil
}

// compose writes a notice: the person's language, the event's time in the
// person's zone, where it came from, and the links.
func (n *Notices) compose(to Person, nt Notice) (mail.Message, error) {
	kind, ok := noticeTable[nt.Kind]
	if !ok {
		return mail.Message{}, fmt.Errorf("notice: unknown kind %q", nt.Kind)
	}
	lang := noticeLang(kind, to.Lang, nt.Event.Lang)
	w, shared := kind[lang], mailWords[lang]
	e := nt.Event
	if e.At.IsZero() {
		// Events are stamped where they are made (Log.event); a mail must
		// still never say "year 1" if a caller forgot.
		n.log.Warn("notice about an event without a time", "notice", nt.Kind)
		e.At = n.now()
	}
	loc := zoneOf(to.TimeZone, e.tz)
	vars := map[string]string{"product": n.product, "user": to.Username, "what": changeDescription(lang, e)}
	for k, v := range nt.Vars {
		vars[k] = v
	}
	for k, t := range nt.Times {
		vars[k] = formatWhen(t, loc, lang)
	}
	fill := replacer(vars)
	subject, intro, ifYou, ifNot := fill.Replace(w.Subject), fill.Replace(w.Intro), fill.Replace(w.IfYou), fill.Replace(w.IfNot)

	browser := e.Browser
	if e.agent != (Agent{}) {
		browser = e.agent.Describe(lang)
	}
	rows := [][2]string{{shared.Facts[0], formatWhen(e.At, loc, lang)}, {shared.Facts[1], orDash(e.IP)}, {shared.Facts[2], orDash(browser)}}
	if e.Factor != "" {
		name := factorName[lang][e.Factor]
		if name == "" {
			name = e.Factor
		}
		rows = append(rows, [2]string{shared.Facts[3], name})
	}

	var text, body strings.Builder
	fmt.Fprintf(&body, "<div lang=\"%s\">", lang)
	text.WriteString(intro + "\n\n")
	body.WriteString("<p>" + html.EscapeString(intro) + "</p><table>")
	for _, r := range rows {
		fmt.Fprintf(&text, "%s: %s\n", r[0], r[1])
		fmt.Fprintf(&body, "<tr><th scope=\"row\" align=\"left\">%s</th><td>%s</td></tr>", html.EscapeString(r[0]), html.EscapeString(r[1]))
	}
	body.WriteString("</table>")
	for _, p := range []string{ifYou, ifNot} {
		if p != "" {
			text.WriteString("\n" + p + "\n")
			body.WriteString("<p>" + html.EscapeString(p) + "</p>")
		}
	}
	if nt.Link != "" {
		fmt.Fprintf(&text, "\n%s:\n%s\n", w.Link, nt.Link)
		fmt.Fprintf(&body, "<p><a href=\"%s\">%s</a></p>", html.EscapeString(nt.Link), html.EscapeString(w.Link))
	}
	if nt.Portal != "" {
		page := strings.TrimSuffix(nt.Portal, "/") + "/.keygate/settings"
		fmt.Fprintf(&text, "\n%s: %s\n", shared.Security, page)
		fmt.Fprintf(&body, "<p>%s: <a href=\"%s\">%s</a></p>", html.EscapeString(shared.Security), html.EscapeString(page), html.EscapeString(page))
	}
	body.WriteString("</div>")
	return mail.Message{To: to.Email, Subject: subject, Text: text.String(), HTML: body.String(), Lang: lang}, nil
}

// noticeLang is the language a notice is written in: the one the person
// chose on the portal (remembered at sign-in) before the one of the
// request that caused it. Someone else's request (a sign-in with a stolen
// password) must not turn the warning into a language the owner may not
// read. English when neither has words.
func noticeLang(kind map[string]noticeWords, langs ...string) string {
	for _, l := range langs {
		if _, ok := kind[l]; ok {
			return l
		}
	}
	return "en"
}

// zoneOf is the first of the zones that is a real one, else UTC.
func zoneOf(names ...string) *time.Location {
	for _, name := range names {
		if name = TimeZone(name); name != "" {
			if loc, err := time.LoadLocation(name); err == nil {
				return loc
			}
		}
	}
	return time.UTC
}

// formatWhen writes t for a person: "2 January 2030, 04:04 (Europe/Berlin,
// UTC+01:00)", or "2 January 2030, 03:04 UTC" when the zone is not known
// (or is UTC). The zone's name and offset are both written: an
// abbreviation like "CET" or "+03" means little to many people.
func formatWhen(t time.Time, loc *time.Location, lang string) string {
	words, ok := mailWords[lang]
	if !ok {
		words = mailWords["en"]
	}
	lt := t.In(loc)
	day := fmt.Sprintf("%d %s %d, %s", lt.Day(), words.Months[lt.Month()-1], lt.Year(), lt.Format("15:04"))
	if name := loc.String(); name != "UTC" && name != "Etc/UTC" {
		return day + " (" + name + ", UTC" + lt.Format("-07:00") + ")"
	}
	return day + " UTC"
}

// replacer fills {name} placeholders.
func replacer(vars map[string]string) *strings.Replacer {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		pairs = append(pairs, "{"+k+"}", vars[k])
	}
	return strings.NewReplacer(pairs...)
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

// Notify mails u the notice n about something c did just now, with a fresh
// "This wasn't me" link when n.Link is empty. It records nothing (the
// caller records the event, if it is one). Only a confirmed address gets a
// notice: the link locks the account, and an address nobody confirmed may
// belong to someone else. Delivery failures are logged, not returned: what
// the notice is about already happened.
//
// This is how a flow adds a notice: a kind in noticeTable (en and ru),
// then Notify(ctx, person, client, Notice{Kind: …, Vars: …}).
func (a *Log) Notify(ctx context.Context, u Person, c Client, n Notice) {
	if a == nil {
		return
	}
	if n.Event.At.IsZero() {
		n.Event = a.event(n.Kind, "", "", c)
	}
	a.notify(ctx, u, n, false)
}

// RecoveryUsed tells the person that a recovery code let c in, and how
// many are left. Unlike other notices an unconfirmed address hears of it
// too, without the link: using a recovery code usually means a lost
// second factor, and the person must not learn it only when the codes run
// out.
func (a *Log) RecoveryUsed(ctx context.Context, u Person, c Client, left int) {
	if a == nil {
		return
	}
	e := a.event(EventSecondFactor, "recovery", "", c)
	a.notify(ctx, u, Notice{Kind: NoticeRecoveryUsed, Event: e, Vars: map[string]string{"left": fmt.Sprint(left)}}, true)
}

// notify sends n to u: with a fresh "This wasn't me" link to a confirmed
// address (n.Link, if set, instead), and to an unconfirmed one only when
// unconfirmedToo, without a link.
func (a *Log) notify(ctx context.Context, u Person, n Notice, unconfirmedToo bool) {
	if a.o.Notices == nil || a.o.Notices.send == nil || u.Email == "" || (!u.EmailVerified && !unconfirmedToo) {
		return
	}
	if !u.EmailVerified {
		n.Link = ""
	} else if n.Link == "" {
		token, err := a.issueNotMe(ctx, u.Username)
		if err != nil {
			a.o.Logger.Error("notice not sent: no link", "user", u.Username, "err", err)
			return
		}
		n.Link = a.o.PortalURL + "/.keygate/not-me/" + token
	}
	if n.Event.Lang == "" && u.Lang == "" {
		n.Event.Lang = a.lastLang(ctx, u.Username)
	}
	n.Portal = a.o.PortalURL
	if err := a.o.Notices.deliver(ctx, u, n); err != nil {
		a.o.Logger.Warn("security notice not delivered", "notice", n.Kind, "user", u.Username, "err", err)
	}
}

// lastLang is the language of the person's latest event that had one.
func (a *Log) lastLang(ctx context.Context, username string) string {
	events, err := a.List(ctx, username, 50)
	if err != nil {
		return ""
	}
	for _, e := range events {
		if e.Lang != "" {
			return e.Lang
		}
	}
	return ""
}
