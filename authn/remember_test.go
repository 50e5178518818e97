package authn

import (
	"context"
	"strings"
	"testing"
)

// A sign-in remembers the portal's language and the browser's time zone
// for later notices; what is not a language or a zone is not kept, and
// the notice about the sign-in itself is written as remembered before it.
func TestSignInRemembersLanguageAndZone(t *testing.T) {
	g := newGuarded(t)
	ctx := context.Background()
	c := Client{IP: "198.51.100.1", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0", Lang: "ru", TimeZone: "Europe/Moscow"}
	if _, err := g.users.SignIn(ctx, "alice", goodPassword, c); err != nil {
		t.Fatal(err)
	}
	u, _ := g.users.Get(ctx, "alice")
	if u.Lang != "ru" || u.TimeZone != "Europe/Moscow" || u.Person().TimeZone != "Europe/Moscow" || u.Person().Lang != "ru" {
		t.Fatalf("remembered %q %q", u.Lang, u.TimeZone)
	}
	// Bad values change nothing.
	for _, bad := range []Client{
		{IP: c.IP, UserAgent: c.UserAgent, Lang: "x", TimeZone: "Local"},
		{IP: c.IP, UserAgent: c.UserAgent, Lang: "ru\n<script>", TimeZone: "../../etc/passwd"},
		{IP: c.IP, UserAgent: c.UserAgent, Lang: strings.Repeat("a", 40), TimeZone: "Mars/Base"},
	} {
		if _, err := g.users.SignIn(ctx, "alice", goodPassword, bad); err != nil {
			t.Fatal(err)
		}
		if u, _ := g.users.Get(ctx, "alice"); u.Lang != "ru" || u.TimeZone != "Europe/Moscow" {
			t.Fatalf("after %+v: %q %q", bad, u.Lang, u.TimeZone)
		}
	}
	// Someone signing in from an English browser in New York: the warning
	// is in alice's language and zone; a browser's language does not
	// replace hers, its zone does (people travel).
	thief := Client{IP: "203.0.113.9", UserAgent: "Mozilla/5.0 (Windows NT 10.0) Chrome/124.0", Lang: "en", TimeZone: "America/New_York"}
	if _, err := g.users.SignIn(ctx, "alice", goodPassword, thief); err != nil {
		t.Fatal(err)
	}
	mails := g.mail.all()
	last := mails[len(mails)-1]
	if !strings.Contains(last.Subject, "Новый вход") || !strings.Contains(last.Text, "(Europe/Moscow, UTC+03:00)") || !strings.Contains(last.Text, "203.0.113.9") {
		t.Fatalf("the thief's sign-in notice: %s\n%s", last.Subject, last.Text)
	}
	if u, _ := g.users.Get(ctx, "alice"); u.Lang != "ru" || u.TimeZone != "America/New_York" {
		t.Fatalf("after the next sign-in: %q %q", u.Lang, u.TimeZone)
	}
	// A language chosen on the portal replaces it.
	chose := thief
	chose.LangChosen = true
	if _, err := g.users.SignIn(ctx, "alice", goodPassword, chose); err != nil {
		t.Fatal(err)
	}
	if u, _ := g.users.Get(ctx, "alice"); u.Lang != "en" {
		t.Fatalf("after choosing English: %q", u.Lang)
	}
	// Update refuses nothing here either: a bad zone is simply not kept.
	u, err := g.users.Update(ctx, "alice", func(x *User) error { x.TimeZone = "Nowhere/Land"; x.Lang = "<b>"; return nil })
	if err != nil || u.TimeZone != "" || u.Lang != "" {
		t.Fatalf("update with bad values: %+v %v", u, err)
	}
}
