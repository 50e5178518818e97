package activity

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/mail"
)

// Every notice says when its event happened. The log once stamped the
// time on Record's own copy of the event, and the mail got the original:
// "When: 0001-01-01 00:00 UTC" in every language.
func TestNoticeSaysWhenTheEventHappened(t *testing.T) {
	act, box, clk := newLog(t) // the clock says 2030-01-02 03:04:05 UTC
	ctx := context.Background()
	alice := Person{Username: "alice", Email: "alice@example.com", EmailVerified: true}
	act.SignedIn(ctx, alice, "password", Client{IP: "198.51.100.1", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0", Lang: "en"})
	clk.Advance(time.Hour)
	act.Changed(ctx, alice, EventPasswordChanged, "", "", Client{IP: "198.51.100.1", Lang: "ru"})
	mails := box.all()
	if len(mails) != 2 {
		t.Fatalf("%d mails, want 2", len(mails))
	}
	for i, want := range []string{"03:04", "04:04"} {
		m := mails[i]
		if strings.Contains(m.Text, "0001") || !strings.Contains(m.Text, "2030, "+want+" UTC") {
			t.Errorf("mail %d (%s) does not say when: %q", i, m.Subject, m.Text)
		}
	}
	// And the log has the same time as the mail.
	events, _ := act.List(ctx, "alice", 0)
	if len(events) != 2 || !events[0].At.Equal(clk.Now()) {
		t.Fatalf("log: %+v", events)
	}
}

// A notice reads right: the person's language (remembered, before the
// request's), the time in the person's zone, where it came from in words
// of that language, absolute links, Content-Language.
func TestNoticeReadsRight(t *testing.T) {
	act, box, _ := newLog(t)
	ctx := context.Background()
	firefox := "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"
	olga := Person{Username: "olga", Email: "olga@example.com", EmailVerified: true, Lang: "ru", TimeZone: "Europe/Berlin"}
	// The request says English (someone else's browser); olga reads Russian.
	act.SignedIn(ctx, olga, "passkey", Client{IP: "203.0.113.9", UserAgent: firefox, Lang: "en"})
	m := box.all()[0]
	for _, want := range []string{
		"Новый вход в учётную запись keygate", // subject
	} {
		if m.Subject != want {
			t.Errorf("subject %q, want %q", m.Subject, want)
		}
	}
	for _, want := range []string{
		"учётную запись olga",
		"Когда: 2 января 2030, 04:04 (Europe/Berlin, UTC+01:00)",
		"IP-адрес: 203.0.113.9",
		"Браузер: Firefox на Windows",
		"Способ: ключ доступа",
		"Страница безопасности: https://app.example.com/.keygate/settings",
	} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, m.Text)
		}
	}
	link := regexp.MustCompile(`https://app\.example\.com/\.keygate/not-me/[0-9a-f]{64}`).FindString(m.Text)
	if link == "" || !strings.Contains(m.HTML, `href="`+link+`"`) || !strings.Contains(m.HTML, `<div lang="ru">`) || m.Lang != "ru" {
		t.Fatalf("link %q / html %q / lang %q", link, m.HTML, m.Lang)
	}
	if strings.ContainsAny(m.Text+m.Subject, "{}%") {
		t.Fatalf("an unfilled placeholder: %q", m.Text)
	}

	// Without a remembered language, the request's; a zone the browser
	// made up is ignored (UTC, said as such); a summer date has the
	// summer offset.
	box2 := &mailbox{}
	summer := func() time.Time { return time.Date(2030, 7, 1, 12, 30, 0, 0, time.UTC) }
	act2 := NewLog(openStore(t, t.TempDir()), Options{Notices: NewNotices(box2, "keygate", quietLogger(), summer), PortalURL: "https://app.example.com", Now: summer})
	act2.Changed(ctx, Person{Username: "p", Email: "p@example.com", EmailVerified: true, TimeZone: "Mars/Olympus_Mons"}, EventFactorAdded, "totp", "phone", Client{Lang: "ru"})
	act2.Changed(ctx, Person{Username: "q", Email: "q@example.com", EmailVerified: true}, EventFactorAdded, "totp", "phone", Client{Lang: "de", TimeZone: "America/New_York"})
	act2.Changed(ctx, Person{Username: "r", Email: "r@example.com", EmailVerified: true, TimeZone: "Europe/Berlin"}, EventFactorAdded, "totp", "phone", Client{})
	got := box2.all()
	if len(got) != 3 {
		t.Fatalf("%d mails", len(got))
	}
	if !strings.Contains(got[0].Text, "Когда: 1 июля 2030, 12:30 UTC") || !strings.Contains(got[0].Subject, "добавлен второй фактор (phone)") {
		t.Errorf("made-up zone: %s\n%s", got[0].Subject, got[0].Text)
	}
	// German has no words: English; the browser's zone stands in for the
	// person's until one is remembered.
	if got[1].Lang != "en" || !strings.Contains(got[1].Text, "When: 1 July 2030, 08:30 (America/New_York, UTC-04:00)") ||
		!strings.Contains(got[1].Text, "Method: authenticator app") {
		t.Errorf("fallbacks: %s", got[1].Text)
	}
	if !strings.Contains(got[2].Text, "When: 1 July 2030, 14:30 (Europe/Berlin, UTC+02:00)") || !strings.Contains(got[2].Text, "Browser: —") {
		t.Errorf("summer: %s", got[2].Text)
	}
}

func TestTimeZoneIsChecked(t *testing.T) {
	for name, want := range map[string]string{
		"Europe/Berlin": "Europe/Berlin", "UTC": "UTC", "America/Argentina/Buenos_Aires": "America/Argentina/Buenos_Aires", "Etc/GMT+5": "Etc/GMT+5",
		"": "", "Local": "", "/etc/localtime": "", "../../../etc/passwd": "", "Europe/../Europe/Berlin": "", "Mars/Olympus_Mons": "",
		"Europe/Berlin\x00": "", "Europe/Berlin\n": "", strings.Repeat("A", 100): "", "europe berlin": "",
	} {
		if got := TimeZone(name); got != want {
			t.Errorf("TimeZone(%q) = %q, want %q", name, got, want)
		}
	}
}

// Every kind of notice has words in every language, with the same
// placeholders, and every one is written with nothing left unfilled.
func TestEveryNoticeKindInEveryLanguage(t *testing.T) {
	placeholder := regexp.MustCompile(`\{[a-z_]+\}`)
	set := func(w noticeWords) map[string]bool {
		m := map[string]bool{}
		for _, p := range placeholder.FindAllString(w.Subject+w.Intro+w.IfYou+w.IfNot+w.Link, -1) {
			m[p] = true
		}
		return m
	}
	langs := []string{"en", "ru"}
	for kind, byLang := range noticeTable {
		en := set(byLang["en"])
		for _, lang := range langs {
			w, ok := byLang[lang]
			if !ok || w.Subject == "" || w.Intro == "" || w.IfNot == "" || w.Link == "" {
				t.Errorf("%s: no complete %s words", kind, lang)
				continue
			}
			if got := set(w); len(got) != len(en) {
				t.Errorf("%s/%s placeholders %v, en has %v", kind, lang, got, en)
			}
			// Written out, nothing is left in braces.
			vars := map[string]string{}
			for p := range en {
				vars[strings.Trim(p, "{}")] = "X"
			}
			n := NewNotices(&mailbox{}, "", nil, nil)
			m, err := n.compose(Person{Username: "u", Email: "u@example.com", Lang: lang},
				Notice{Kind: kind, Event: Event{At: time.Now(), Kind: EventPasswordChanged}, Vars: vars, Link: "https://x.example/l"})
			if err != nil || placeholder.MatchString(m.Subject+m.Text+m.HTML) || m.Lang != lang {
				t.Errorf("%s/%s: %v %q", kind, lang, err, m.Subject+m.Text)
			}
		}
	}
	for kind, byLang := range changeText {
		for _, lang := range langs {
			if _, ok := byLang[lang]; !ok {
				t.Errorf("change %s has no %s words", kind, lang)
			}
		}
	}
	for _, lang := range langs {
		if len(factorName[lang]) != len(factorName["en"]) || len(agentWords[lang]) != 3 {
			t.Errorf("%s lacks factor or browser words", lang)
		}
	}
	// An unknown kind is an error, not a blank mail.
	if _, err := NewNotices(&mailbox{}, "", nil, nil).compose(Person{Email: "u@example.com"}, Notice{Kind: "nope"}); err == nil {
		t.Fatal("an unknown kind was written")
	}
}

// A custom notice from another flow: its own link and a time in the
// person's zone.
func TestNotifyWithOwnLinkAndTime(t *testing.T) {
	noticeTable["test_custom"] = map[string]noticeWords{
		"en": {Subject: "{product}: test", Intro: "Ends {ends}.", IfNot: "Cancel it.", Link: "Cancel"},
		"ru": {Subject: "{product}: тест", Intro: "Закончится {ends}.", IfNot: "Отмените.", Link: "Отменить"},
	}
	t.Cleanup(func() { delete(noticeTable, "test_custom") })
	act, box, clk := newLog(t)
	ctx := context.Background()
	p := Person{Username: "ivan", Email: "ivan@example.com", EmailVerified: true, Lang: "ru", TimeZone: "Europe/Moscow"}
	act.Notify(ctx, p, Client{IP: "192.0.2.1"}, Notice{Kind: "test_custom", Link: "https://app.example.com/.keygate/cancel/x",
		Times: map[string]time.Time{"ends": clk.Now().Add(72 * time.Hour)}})
	act.Notify(ctx, Person{Username: "nobody", Email: "n@example.com"}, Client{}, Notice{Kind: "test_custom"}) // unconfirmed: nothing
	mails := box.all()
	if len(mails) != 1 || !strings.Contains(mails[0].Text, "Закончится 5 января 2030, 06:04 (Europe/Moscow, UTC+03:00).") ||
		!strings.Contains(mails[0].Text, "Когда: 2 января 2030, 06:04") || !strings.Contains(mails[0].Text, "Отменить:\nhttps://app.example.com/.keygate/cancel/x") ||
		strings.Contains(mails[0].Text, "not-me") {
		t.Fatalf("custom notice: %+v", mails)
	}
}

var _ mail.Sender = (*mailbox)(nil)
