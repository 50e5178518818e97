package activity

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// newLog is a log over a real store, mailing notices into a mailbox.
func newLog(t *testing.T) (*Log, *mailbox, *clock) {
	t.Helper()
	clk, box := newClock(), &mailbox{}
	kv := openStore(t, t.TempDir())
	a := NewLog(kv, Options{Notices: NewNotices(box, "keygate", quietLogger(), clk.Now),
		PortalURL: "https://app.example.com/", Now: clk.Now, Retention: 48 * time.Hour, Logger: quietLogger()})
	return a, box, clk
}

func TestActivityRetentionAndOrder(t *testing.T) {
	act, _, clk := newLog(t)
	ctx := context.Background()
	for i := range 3 {
		if err := act.Record(ctx, "alice", Event{Kind: EventFactorAdded, Detail: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
	}
	events, _ := act.List(ctx, "alice", 2)
	if len(events) != 2 || events[0].Detail != "c" || events[1].Detail != "b" {
		t.Fatalf("newest first, limited: %+v", events)
	}
	// Past the retention (48 h here) events are gone even before their TTL.
	clk.Advance(46*time.Hour + time.Minute)
	events, _ = act.List(ctx, "alice", 0)
	if len(events) != 1 || events[0].Detail != "c" {
		t.Fatalf("after retention: %+v", events)
	}
	// Another user's log is separate.
	if events, _ := act.List(ctx, "alic", 0); len(events) != 0 {
		t.Fatal("a prefix of the name sees the log")
	}
	// A nil log records nothing and lists nothing.
	var none *Log
	if err := none.Record(ctx, "alice", Event{Kind: EventSignIn}); err != nil {
		t.Fatal(err)
	}
	if events, err := none.List(ctx, "alice", 0); err != nil || events != nil {
		t.Fatalf("a nil log listed %v %v", events, err)
	}
	none.SignedIn(ctx, Person{Username: "alice"}, "password", Client{})
	none.Changed(ctx, Person{Username: "alice"}, EventPasswordChanged, "", "", Client{})
	if err := none.CheckNotMe(ctx, strings.Repeat("a", 64)); !errors.Is(err, ErrNotMeInvalid) {
		t.Fatalf("a nil log checked a link: %v", err)
	}
}

// The log on its own (authn's tests drive it through sign-ins): which
// sign-ins are new, who gets a notice, what it says, and the link's one use.
func TestSignedInNoticesOnlyNewPlacesToConfirmedAddresses(t *testing.T) {
	act, box, clk := newLog(t)
	ctx := context.Background()
	alice := Person{Username: "alice", Email: "alice@example.com", EmailVerified: true}
	ff := Client{IP: "198.51.100.1", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0", Lang: "en"}
	act.SignedIn(ctx, alice, "password", ff)
	act.SignedIn(ctx, alice, "password", ff)
	if n := len(box.all()); n != 1 {
		t.Fatalf("%d notices for a first and a repeated sign-in, want 1", n)
	}
	// The same browser from another address is new.
	moved := ff
	moved.IP = "203.0.113.50"
	act.SignedIn(ctx, alice, "passkey", moved)
	mails := box.all()
	if len(mails) != 2 || !strings.Contains(mails[1].Text, "203.0.113.50") || !strings.Contains(mails[1].Text, "passkey") ||
		!strings.Contains(mails[1].Subject, "New sign-in") {
		t.Fatalf("second notice: %+v", mails)
	}
	// Unconfirmed or missing addresses get nothing, though the log has it.
	act.SignedIn(ctx, Person{Username: "dora", Email: "dora@example.com"}, "password", ff)
	act.Changed(ctx, Person{Username: "eve"}, EventPasswordChanged, "", "", ff)
	if n := len(box.all()); n != 2 {
		t.Fatalf("%d notices after sign-ins of unconfirmed addresses, want 2", n)
	}
	if events, _ := act.List(ctx, "dora", 0); len(events) != 1 || events[0].Kind != EventSignIn || events[0].Browser != "Firefox on Linux" {
		t.Fatalf("dora's log: %+v", events)
	}
	// A change is always mailed, in the person's last language when the
	// request did not say. (Events of one instant have no order: move on.)
	clk.Advance(time.Second)
	act.Note(ctx, "alice", EventSessionRevoked, "abc", Client{Lang: "ru"})
	act.Changed(ctx, alice, EventFactorAdded, "totp", "phone", Client{IP: "198.51.100.1"})
	mails = box.all()
	last := mails[len(mails)-1]
	if len(mails) != 3 || !strings.Contains(last.Subject, "добавлен второй фактор (phone)") || last.To != "alice@example.com" {
		t.Fatalf("change notice: %q to %s", last.Subject, last.To)
	}
	link := regexp.MustCompile(`https://app\.example\.com/\.keygate/not-me/([0-9a-f]{64})`).FindStringSubmatch(last.Text)
	if link == nil || !strings.Contains(last.HTML, link[0]) {
		t.Fatalf("no link in %q", last.Text)
	}
	if err := act.CheckNotMe(ctx, link[1]); err != nil {
		t.Fatal(err)
	}
	if owner, err := act.RedeemNotMe(ctx, link[1]); err != nil || owner != "alice" {
		t.Fatalf("redeem: %q %v", owner, err)
	}
	for _, bad := range []string{link[1], "short", strings.Repeat("0", 64)} {
		if _, err := act.RedeemNotMe(ctx, bad); !errors.Is(err, ErrNotMeInvalid) {
			t.Fatalf("redeem %q: %v", bad, err)
		}
		if err := act.CheckNotMe(ctx, bad); !errors.Is(err, ErrNotMeInvalid) {
			t.Fatalf("check %q: %v", bad, err)
		}
	}
}

// A decoy is written like a failure but under its own name: no account's
// log shows it.
func TestDecoyTouchesNoAccount(t *testing.T) {
	act, box, _ := newLog(t)
	ctx := context.Background()
	act.Decoy(ctx, "#0123abcd", Client{IP: "198.51.100.1"})
	act.Failed(ctx, "alice", EventSignInFailed, "password", Client{IP: "198.51.100.1"})
	if events, _ := act.List(ctx, "alice", 0); len(events) != 1 || events[0].Kind != EventSignInFailed {
		t.Fatalf("alice's log: %+v", events)
	}
	if n := len(box.all()); n != 0 {
		t.Fatalf("%d notices for failures", n)
	}
}

// A recovery code's notice goes through the log: to a confirmed address
// with the "This wasn't me" link, to an unconfirmed one without it, to
// nobody without an address, in the language asked for.
func TestRecoveryUsedNotice(t *testing.T) {
	act, box, _ := newLog(t)
	ctx := context.Background()
	act.RecoveryUsed(ctx, Person{Username: "bob", Email: "bob@example.com"}, Client{Lang: "ru", IP: "198.51.100.7"}, 3)
	act.RecoveryUsed(ctx, Person{Username: "ann"}, Client{Lang: "en", IP: "198.51.100.7"}, 3) // no address: nothing
	var none *Log
	none.RecoveryUsed(ctx, Person{Username: "bob", Email: "bob@example.com"}, Client{}, 1)
	mails := box.all()
	if len(mails) != 1 || !strings.Contains(mails[0].Subject, "keygate") || !strings.Contains(mails[0].Text, "Осталось кодов восстановления: 3") ||
		!strings.Contains(mails[0].Text, "198.51.100.7") || !strings.Contains(mails[0].HTML, "<p>") {
		t.Fatalf("notice: %+v", mails)
	}
	if strings.Contains(mails[0].Text, "/.keygate/not-me/") {
		t.Fatal("an unconfirmed address got a link that locks the account")
	}
	act.RecoveryUsed(ctx, Person{Username: "cat", Email: "cat@example.com", EmailVerified: true}, Client{Lang: "en"}, 0)
	mails = box.all()
	if len(mails) != 2 || !strings.Contains(mails[1].Text, "Recovery codes left: 0") ||
		!regexp.MustCompile(`https://app\.example\.com/\.keygate/not-me/[0-9a-f]{64}`).MatchString(mails[1].Text) {
		t.Fatalf("confirmed address: %+v", mails[1])
	}
}
