package mail_test

import (
	"context"
	"errors"
	netmail "net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/mail"
)

func TestOutboxWritesReadableEMLAndListsNewestFirst(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o, err := mail.NewOutbox(dir, testFrom)
	if err != nil {
		t.Fatal(err)
	}
	first := mail.Message{To: "alice@example.com", Subject: "Your keygate code to sign in", Text: "Use this code:\n\n    111111\n", HTML: "<b>111111</b>"}
	second := testMessage("bob@example.com") // Russian subject and body
	for _, m := range []mail.Message{first, second} {
		if err := o.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}

	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("outbox directory mode %v (%v), want 0700", st.Mode().Perm(), err)
	}
	list, err := o.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("listed %d mails, want 2: %+v", len(list), list)
	}
	got := list[0] // newest first
	if got.To != "bob@example.com" || got.Subject != second.Subject || !strings.Contains(got.Text, "482913") ||
		!strings.Contains(got.Text, "Введите этот код") {
		t.Errorf("newest mail %+v", got)
	}
	if time.Since(got.Time) > time.Minute {
		t.Errorf("time %v", got.Time)
	}
	if list[1].To != "alice@example.com" || list[1].Text != first.Text {
		t.Errorf("older mail %+v", list[1])
	}

	// Each file is a standard message a mail client opens, readable only by us.
	for _, m := range list {
		path := filepath.Join(dir, m.File)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", m.File, st.Mode().Perm())
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := netmail.ReadMessage(f)
		_ = f.Close()
		if err != nil {
			t.Fatalf("%s: %v", m.File, err)
		}
		if from := msg.Header.Get("From"); !strings.Contains(from, "no-reply@example.com") {
			t.Errorf("%s: From %q", m.File, from)
		}
		if msg.Header.Get("Message-Id") == "" || msg.Header.Get("Date") == "" {
			t.Errorf("%s: no Message-ID or Date", m.File)
		}
		if ct := msg.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative") {
			t.Errorf("%s: Content-Type %q", m.File, ct)
		}
	}

	// Stray files do not break the listing, and nothing half-written shows.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zzz-broken.eml"), []byte("\x00\x01"), 0o600); err != nil {
		t.Fatal(err)
	}
	if list, err := o.List(); err != nil || len(list) != 2 {
		t.Errorf("with stray files: %d mails, %v", len(list), err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestOutboxRefusals(t *testing.T) {
	if _, err := mail.NewOutbox(t.TempDir(), "nobody"); err == nil {
		t.Error("a From without an address was accepted")
	}
	if _, err := mail.NewOutbox("", testFrom); err == nil {
		t.Error("an empty directory was accepted")
	}
	o, err := mail.NewOutbox(t.TempDir(), testFrom)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := o.Send(ctx, testMessage("a@example.com")); !errors.Is(err, mail.ErrDelivery) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if err := o.Send(context.Background(), mail.Message{To: "not an address", Text: "x"}); !errors.Is(err, mail.ErrDelivery) {
		t.Errorf("bad recipient: %v", err)
	}
	if list, _ := o.List(); len(list) != 0 {
		t.Errorf("refused mails were written: %+v", list)
	}
}
