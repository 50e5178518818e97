package authn

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/mail"
)

// mailbox is a mail.Sender that keeps what it is given.
type mailbox struct {
	mu   sync.Mutex
	msgs []mail.Message
}

func (m *mailbox) Send(_ context.Context, msg mail.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, msg)
	return nil
}

func (m *mailbox) all() []mail.Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]mail.Message(nil), m.msgs...)
}

type guarded struct {
	users *Users
	reg   *Regulator
	act   *activity.Log
	mail  *mailbox
	clk   *clock
}

func newGuarded(t *testing.T) *guarded {
	t.Helper()
	clk := newClock()
	kv := openStore(t, t.TempDir())
	g := &guarded{clk: clk, mail: &mailbox{}}
	g.reg = newTestRegulator(t, kv, clk)
	g.act = activity.NewLog(kv, activity.Options{Notices: activity.NewNotices(g.mail, "keygate", quietLogger(), clk.Now),
		PortalURL: "https://app.example.com/", Now: clk.Now, Retention: 48 * time.Hour})
	g.users = NewUsers(kv, UserOptions{Hasher: testHasher(), Policy: PasswordPolicy{MinLength: 12}, Now: clk.Now,
		Regulator: g.reg, Events: g.act})
	ctx := context.Background()
	for _, nu := range []NewUser{
		{Username: "alice", Email: "alice@example.com", Password: "correct-staple-battery-7", EmailVerified: true},
		{Username: "dora", Email: "dora@example.com", Password: "correct-staple-battery-7"},
	} {
		if _, err := g.users.Add(ctx, nu); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.users.Add(ctx, NewUser{Username: "ghost", Password: "correct-staple-battery-7"}); err != nil {
		t.Fatal(err)
	}
	if err := g.users.SetDisabled(ctx, "ghost", true); err != nil {
		t.Fatal(err)
	}
	return g
}

const goodPassword = "correct-staple-battery-7"

func TestSignInRegulatedWithoutTellingAccountsApart(t *testing.T) {
	g := newGuarded(t)
	ctx := context.Background()
	c := Client{IP: "198.51.100.1", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0", Lang: "en"}
	// Unknown, disabled (even with its right password), wrong: one answer.
	for _, tc := range []struct{ login, pw string }{
		{"nobody", "whatever-it-is-1"}, {"ghost", goodPassword}, {"alice", "wrong-password-123"}, {"nobody@example.com", goodPassword},
	} {
		if _, err := g.users.SignIn(ctx, tc.login, tc.pw, c); !errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrLocked) {
			t.Fatalf("%s: %v", tc.login, err)
		}
	}
	// Four more wrong passwords for alice (five in all) lock her; a wrong
	// one still gets the same answer, only the right one hears of the lock.
	for range 4 {
		_, _ = g.users.SignIn(ctx, "alice@example.com", "wrong-password-123", c)
	}
	if _, err := g.users.SignIn(ctx, "alice", "wrong-password-123", c); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("wrong password for a locked account: %v", err)
	}
	_, err := g.users.SignIn(ctx, "alice", goodPassword, c)
	var le *LockedError
	if !errors.As(err, &le) || le.Until.IsZero() || le.Network || le.Ticket == "" {
		t.Fatalf("right password for a locked account: %#v", err)
	}
	// Unknown logins are counted too (same work), under their own name.
	for range 5 {
		_, _ = g.users.SignIn(ctx, "nobody", "whatever-it-is-1", Client{})
	}
	if le, _ := g.reg.Status(ctx, GatePassword, "nobody", ""); le == nil {
		t.Fatal("a login without an account is not regulated")
	}
	g.clk.Advance(6 * time.Minute)
	if _, err := g.users.SignIn(ctx, "alice", goodPassword, c); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
	// The log tells the story, newest first.
	events, err := g.act.List(ctx, "alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Kind)
	}
	if kinds[0] != activity.EventSignIn || !strings.Contains(strings.Join(kinds, ","), activity.EventLocked) || events[0].IP != c.IP ||
		events[0].Browser != "Firefox on Linux" || events[0].Factor != "password" {
		t.Fatalf("events %v / %+v", kinds, events[0])
	}
}

func TestNewDeviceNoticeAndNotMe(t *testing.T) {
	g := newGuarded(t)
	ctx := context.Background()
	ff := Client{IP: "198.51.100.1", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0", Lang: "ru"}
	signIn := func(c Client) {
		t.Helper()
		if _, err := g.users.SignIn(ctx, "alice", goodPassword, c); err != nil {
			t.Fatal(err)
		}
	}
	signIn(ff)
	signIn(ff)
	ch := ff
	ch.UserAgent, ch.Lang = "Mozilla/5.0 (Windows NT 10.0) Chrome/124.0", ""
	signIn(ch)
	other := ff
	other.IP = "203.0.113.50"
	signIn(other)
	mails := g.mail.all()
	if len(mails) != 3 {
		t.Fatalf("%d notices for 4 sign-ins (first, same, new browser, new address), want 3", len(mails))
	}
	// The first was in Russian; the one without a language follows the
	// person's last one.
	for _, m := range mails {
		if !strings.Contains(m.Subject, "Новый вход") || m.To != "alice@example.com" {
			t.Fatalf("notice %q to %s", m.Subject, m.To)
		}
	}
	if !strings.Contains(mails[1].Text, "Chrome на Windows") || !strings.Contains(mails[2].Text, "203.0.113.50") {
		t.Fatalf("notices lack the browser or address:\n%s\n%s", mails[1].Text, mails[2].Text)
	}
	// dora's address is not confirmed: no notice (its link could lock her
	// out in a stranger's hands).
	if _, err := g.users.SignIn(ctx, "dora", goodPassword, ff); err != nil {
		t.Fatal(err)
	}
	if len(g.mail.all()) != 3 {
		t.Fatal("a notice went to an unconfirmed address")
	}

	link := regexp.MustCompile(`https://app\.example\.com/\.keygate/not-me/([0-9a-f]{64})`).FindStringSubmatch(mails[2].Text)
	if link == nil || !strings.Contains(mails[2].HTML, link[0]) {
		t.Fatalf("no link in %q", mails[2].Text)
	}
	if err := g.act.CheckNotMe(ctx, link[1]); err != nil {
		t.Fatal(err)
	}
	if owner, err := g.act.RedeemNotMe(ctx, link[1]); err != nil || owner != "alice" {
		t.Fatalf("redeem: %q %v", owner, err)
	}
	if _, err := g.act.RedeemNotMe(ctx, link[1]); !errors.Is(err, activity.ErrNotMeInvalid) {
		t.Fatalf("a link worked twice: %v", err)
	}
}

func TestPasswordChangeNotifies(t *testing.T) {
	g := newGuarded(t)
	if err := g.users.SetPassword(context.Background(), "alice", "another-long-passphrase-9"); err != nil {
		t.Fatal(err)
	}
	mails := g.mail.all()
	if len(mails) != 1 || !strings.Contains(mails[0].Subject, "the password was changed") || !strings.Contains(mails[0].Text, "/.keygate/not-me/") {
		t.Fatalf("notices %+v", mails)
	}
}
