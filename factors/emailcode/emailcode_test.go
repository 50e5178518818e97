package emailcode_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/authn/mail/mailpittest"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/emailcode"
)

var ctx = context.Background()

// clock is the injected time: tests jump it past lifetimes and windows.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	kv      *badgerstore.Store
	dir     string // the store's directory
	clock   *clock
	secrets *factors.Secrets
	f       *emailcode.Factor
	outbox  *mail.Outbox // set when the factor sends into an outbox
	mp      *mailpittest.Server
}

func openStore(t *testing.T) (*badgerstore.Store, string) {
	t.Helper()
	dir := t.TempDir()
	kv, err := badgerstore.Open(badgerstore.Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Close() })
	return kv, dir
}

func newSecrets(t *testing.T) *factors.Secrets {
	t.Helper()
	s, err := factors.NewSecrets(bytes.Repeat([]byte{42}, 32), "email")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newOutboxEnv is the factor on a real Badger store, mailing into a real
// outbox directory: the tests of the code's life (expiry, tries, cooldown,
// cap) need a clock, not a network.
func newOutboxEnv(t *testing.T, opt emailcode.Options) *env {
	t.Helper()
	kv, dir := openStore(t)
	o, err := mail.NewOutbox(t.TempDir(), "keygate <no-reply@example.com>")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{kv: kv, dir: dir, clock: newClock(), secrets: newSecrets(t), outbox: o}
	e.f = e.factor(t, o, opt)
	return e
}

// newMailpitEnv is the factor sending over SMTP to a real Mailpit.
func newMailpitEnv(t *testing.T, opt emailcode.Options) *env {
	t.Helper()
	mp := mailpittest.Start(t)
	kv, dir := openStore(t)
	e := &env{kv: kv, dir: dir, clock: newClock(), secrets: newSecrets(t), mp: mp}
	e.f = e.factor(t, e.smtp(t, mp.SMTPPort), opt)
	return e
}

func (e *env) smtp(t *testing.T, port int) *mail.SMTP {
	t.Helper()
	s, err := mail.NewSMTP(mail.SMTPOptions{
		From: "keygate <no-reply@example.com>", Host: "127.0.0.1", Port: port, TLS: "none",
		Backoff: 10 * time.Millisecond, Timeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// factor makes another Factor over the same store, clock and key (e.g.
// with another sender).
func (e *env) factor(t *testing.T, s mail.Sender, opt emailcode.Options) *emailcode.Factor {
	t.Helper()
	opt.Now = e.clock.Now
	opt.Secrets = e.secrets
	f, err := emailcode.New(e.kv, s, opt)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

var codeLine = regexp.MustCompile(`(?m)^\s+(\d{6,10})\s*$`)

// codeIn finds the code in a mail's text body.
func codeIn(t *testing.T, text string) string {
	t.Helper()
	m := codeLine.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no code in mail text:\n%s", text)
	}
	return m[1]
}

// latestCode is the code of the newest mail in the outbox to `to`.
func (e *env) latestCode(t *testing.T, to string) string {
	t.Helper()
	list, err := e.outbox.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if m.To == to {
			return codeIn(t, m.Text)
		}
	}
	t.Fatalf("no mail to %s in the outbox", to)
	return ""
}

// send sends a sign-in code into the outbox and returns it.
func (e *env) send(t *testing.T, user, to string) (string, emailcode.Sent) {
	t.Helper()
	sent, err := e.f.Send(ctx, user, to, "en", emailcode.PurposeSignIn)
	if err != nil {
		t.Fatal(err)
	}
	return e.latestCode(t, to), sent
}

// wrong is a well-formed code other than code.
func wrong(code string) string {
	b := []byte(code)
	b[len(b)-1] = '0' + (b[len(b)-1]-'0'+1)%10
	return string(b)
}

func TestCodeArrivesWithinASecondInEnglishAndRussian(t *testing.T) {
	e := newMailpitEnv(t, emailcode.Options{})
	t.Logf("mailpit: %s", e.mp.CommandLine())
	for _, tc := range []struct {
		lang    string
		purpose emailcode.Purpose
		subject string   // part of the subject
		phrases []string // in both bodies
		htmlTag string
	}{
		{"en", emailcode.PurposeSignIn, "code to sign in", []string{
			"Use this code to sign in to keygate", "valid for 10 minutes",
			"If you did not ask for this code, ignore this email; someone may know your password — change it.",
		}, `<html lang="en">`},
		{"en-GB", emailcode.PurposeVerifyAddress, "confirm your email address", []string{"to confirm this email address"}, `<html lang="en">`},
		{"de", emailcode.PurposeEnroll, "add a sign-in method", []string{"add a new sign-in method"}, `<html lang="en">`},
		{"", emailcode.PurposeUnlock, "unlock your account", []string{"unlock your keygate account"}, `<html lang="en">`},
		{"ru", emailcode.PurposeSignIn, "для входа", []string{
			"Введите этот код, чтобы войти в keygate", "Код действует 10 минут",
			"Если вы не запрашивали этот код, просто проигнорируйте это письмо; возможно, кто-то знает ваш пароль — смените его.",
		}, `<html lang="ru">`},
		{"ru-RU", emailcode.PurposeVerifyAddress, "для подтверждения адреса", []string{"подтвердить этот адрес"}, `<html lang="ru">`},
		{"RU", emailcode.PurposeEnroll, "для добавления способа входа", []string{"добавить новый способ входа"}, `<html lang="ru">`},
		{"ru", emailcode.PurposeUnlock, "для разблокировки", []string{"разблокировать вашу учётную запись"}, `<html lang="ru">`},
	} {
		t.Run(tc.lang+"/"+string(tc.purpose), func(t *testing.T) {
			user := "u-" + tc.lang + "-" + string(tc.purpose)
			to := user + "@example.com"
			start := time.Now()
			sent, err := e.f.Send(ctx, user, to, tc.lang, tc.purpose)
			if err != nil {
				t.Fatal(err)
			}
			m := e.mp.WaitFor(to, 5*time.Second)
			took := time.Since(start)
			t.Logf("Send → in mailpit: %s", took)
			if took > time.Second {
				t.Errorf("the code took %s to arrive; want under a second", took)
			}
			code := codeIn(t, m.Text)
			if len(code) != 6 {
				t.Errorf("code %q: want 6 digits", code)
			}
			if len(m.To) != 1 || m.To[0].Address != to {
				t.Errorf("sent to %+v, want %s", m.To, to)
			}
			if !strings.Contains(m.Subject, tc.subject) || !strings.Contains(m.Subject, "keygate") {
				t.Errorf("subject %q, want it to contain %q", m.Subject, tc.subject)
			}
			if strings.Contains(m.Subject, code) || regexp.MustCompile(`\d{4}`).MatchString(m.Subject) {
				t.Errorf("the subject %q shows the code (lock screens show subjects)", m.Subject)
			}
			if lang := e.mp.Headers(m.ID)["Content-Language"]; len(lang) != 1 || lang[0] != tc.htmlTag[len(`<html lang="`):len(tc.htmlTag)-2] {
				t.Errorf("Content-Language %v, want the mail's language", lang)
			}
			if !strings.Contains(m.HTML, code) || !strings.Contains(m.HTML, tc.htmlTag) {
				t.Errorf("HTML part lacks the code or %s:\n%s", tc.htmlTag, m.HTML)
			}
			for _, p := range tc.phrases {
				if !strings.Contains(m.Text, p) || !strings.Contains(m.HTML, p) {
					t.Errorf("%q missing from text or HTML:\n%s", p, m.Text)
				}
			}
			if sent.Masked != emailcode.Mask(to) || !sent.ExpiresAt.Equal(e.clock.Now().Add(10*time.Minute)) ||
				!sent.ResendAt.Equal(e.clock.Now().Add(time.Minute)) {
				t.Errorf("sent %+v", sent)
			}
			if ok, err := e.f.Verify(ctx, user, tc.purpose, code); !ok || err != nil {
				t.Errorf("the mailed code does not verify: %v %v", ok, err)
			}
		})
	}
}

func TestCodeWorksOnceOverSMTP(t *testing.T) {
	e := newMailpitEnv(t, emailcode.Options{})
	if _, err := e.f.Send(ctx, "alice", "alice@example.com", "en", emailcode.PurposeSignIn); err != nil {
		t.Fatal(err)
	}
	code := codeIn(t, e.mp.WaitFor("alice@example.com", 5*time.Second).Text)
	p, ok, err := e.f.Waiting(ctx, "alice", emailcode.PurposeSignIn)
	if err != nil || !ok || p.Masked != "a***e@e*****e.com" || p.TriesLeft != 5 {
		t.Fatalf("pending %+v %v %v", p, ok, err)
	}
	// People paste codes with spaces; that is not a wrong try.
	if ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, " "+code[:3]+" "+code[3:]+" "); !ok || err != nil {
		t.Fatalf("first use: %v %v", ok, err)
	}
	// Reuse is refused as a replay (not "no code"): the record of the used
	// code stays until it would have expired.
	if ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, code); ok || !errors.Is(err, factors.ErrReplayed) {
		t.Errorf("second use: %v %v, want ErrReplayed", ok, err)
	}
	if ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, wrong(code)); ok || !errors.Is(err, emailcode.ErrNoCode) {
		t.Errorf("another code after use: %v %v, want ErrNoCode", ok, err)
	}
	if _, ok, err := e.f.Waiting(ctx, "alice", emailcode.PurposeSignIn); ok || err != nil {
		t.Errorf("still pending after use: %v %v", ok, err)
	}
	// The code is bound to its purpose and user.
	if _, err := e.f.Verify(ctx, "alice", emailcode.PurposeUnlock, code); !errors.Is(err, emailcode.ErrNoCode) {
		t.Errorf("other purpose: %v, want ErrNoCode", err)
	}
	if _, err := e.f.Verify(ctx, "bob", emailcode.PurposeSignIn, code); !errors.Is(err, emailcode.ErrNoCode) {
		t.Errorf("other user: %v, want ErrNoCode", err)
	}
}

func TestCodeExpires(t *testing.T) {
	e := newOutboxEnv(t, emailcode.Options{})
	code, sent := e.send(t, "alice", "alice@example.com")
	e.clock.Advance(10*time.Minute - time.Second)
	if _, ok, _ := e.f.Waiting(ctx, "alice", emailcode.PurposeSignIn); !ok {
		t.Error("not pending a second before expiry")
	}
	e.clock.Advance(time.Second)
	if !e.clock.Now().Equal(sent.ExpiresAt) {
		t.Fatalf("ExpiresAt %v, clock %v", sent.ExpiresAt, e.clock.Now())
	}
	ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, code)
	if ok || !errors.Is(err, factors.ErrExpired) {
		t.Errorf("expired code: %v %v, want factors.ErrExpired", ok, err)
	}
	if _, ok, _ := e.f.Waiting(ctx, "alice", emailcode.PurposeSignIn); ok {
		t.Error("an expired code is still pending")
	}
	// A new code is possible at once and works.
	code, _ = e.send(t, "alice", "alice@example.com")
	if ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, code); !ok || err != nil {
		t.Errorf("new code: %v %v", ok, err)
	}

	// One second short of expiry it still works.
	code, _ = e.send(t, "bob", "bob@example.com")
	e.clock.Advance(10*time.Minute - time.Second)
	if ok, err := e.f.Verify(ctx, "bob", emailcode.PurposeSignIn, code); !ok || err != nil {
		t.Errorf("code before expiry: %v %v", ok, err)
	}
}

func TestWrongTriesKillTheCode(t *testing.T) {
	e := newOutboxEnv(t, emailcode.Options{})
	code, _ := e.send(t, "alice", "alice@example.com")

	// Input that cannot be a code is refused without spending a try.
	for _, junk := range []string{"", "12345", "1234567", "abcdef", "12345x"} {
		if ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, junk); ok || err != nil {
			t.Errorf("%q: %v %v", junk, ok, err)
		}
	}
	for i := 1; i <= 5; i++ {
		ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, wrong(code))
		if ok || err != nil {
			t.Fatalf("wrong try %d: %v %v, want false, nil", i, ok, err)
		}
		p, pending, _ := e.f.Waiting(ctx, "alice", emailcode.PurposeSignIn)
		if want := 5 - i; (want > 0) != pending || (pending && p.TriesLeft != want) {
			t.Errorf("after %d wrong tries: pending %v, %d tries left; want %d", i, pending, p.TriesLeft, want)
		}
	}
	ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, code)
	if ok || !errors.Is(err, emailcode.ErrTooManyTries) {
		t.Errorf("right code after 5 wrong: %v %v, want ErrTooManyTries", ok, err)
	}
	// A new code (after the cooldown) starts with fresh tries.
	e.clock.Advance(time.Minute)
	code, _ = e.send(t, "alice", "alice@example.com")
	if ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, code); !ok || err != nil {
		t.Errorf("new code: %v %v", ok, err)
	}
}

func TestResendCooldownAndReplacement(t *testing.T) {
	e := newOutboxEnv(t, emailcode.Options{})
	old, sent := e.send(t, "alice", "alice@example.com")
	if !sent.ResendAt.Equal(e.clock.Now().Add(time.Minute)) {
		t.Errorf("ResendAt %v", sent.ResendAt)
	}
	for _, tc := range []struct {
		advance time.Duration
		wait    time.Duration
	}{
		{0, 60 * time.Second},
		{44*time.Second + 500*time.Millisecond, 16 * time.Second}, // 15.5 s rounds up
		{15 * time.Second, time.Second},
	} {
		e.clock.Advance(tc.advance)
		_, err := e.f.Send(ctx, "alice", "alice@example.com", "en", emailcode.PurposeSignIn)
		var ce *emailcode.CooldownError
		if !errors.As(err, &ce) || !errors.Is(err, emailcode.ErrCooldown) || ce.Remaining != tc.wait {
			t.Fatalf("resend after %s: %v, want a cooldown of %s", tc.advance, err, tc.wait)
		}
	}
	// Another purpose has its own cooldown.
	if _, err := e.f.Send(ctx, "alice", "alice@example.com", "en", emailcode.PurposeUnlock); err != nil {
		t.Errorf("another purpose during the cooldown: %v", err)
	}
	list, _ := e.outbox.List()
	if len(list) != 2 {
		t.Errorf("%d mails; refused resends must not mail", len(list))
	}

	e.clock.Advance(500 * time.Millisecond) // the cooldown is over
	fresh, _ := e.send(t, "alice", "alice@example.com")
	if fresh == old {
		t.Skip("the new code equals the old one (one chance in a million)")
	}
	if ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, old); ok || err != nil {
		t.Errorf("replaced code: %v %v, want a wrong code", ok, err)
	}
	if ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, fresh); !ok || err != nil {
		t.Errorf("new code: %v %v", ok, err)
	}
}

func TestHourlyCap(t *testing.T) {
	e := newOutboxEnv(t, emailcode.Options{})
	t0 := e.clock.Now()
	var last emailcode.Sent
	for i := range 5 {
		p := emailcode.PurposeSignIn
		if i == 2 {
			p = emailcode.PurposeVerifyAddress // the cap counts every purpose
		}
		sent, err := e.f.Send(ctx, "alice", "alice@example.com", "en", p)
		if err != nil {
			t.Fatalf("send %d: %v", i+1, err)
		}
		last = sent
		e.clock.Advance(61 * time.Second)
	}
	if !last.ResendAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("the fifth send says ResendAt %v, want %v (the cap)", last.ResendAt, t0.Add(time.Hour))
	}
	for _, p := range []emailcode.Purpose{emailcode.PurposeSignIn, emailcode.PurposeUnlock} {
		_, err := e.f.Send(ctx, "alice", "alice@example.com", "en", p)
		var ce *emailcode.CapError
		if !errors.As(err, &ce) || !errors.Is(err, emailcode.ErrHourlyCap) || !ce.RetryAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("sixth send (%s): %v, want the cap until %v", p, err, t0.Add(time.Hour))
		}
	}
	// Other users are not affected.
	if _, err := e.f.Send(ctx, "bob", "bob@example.com", "en", emailcode.PurposeSignIn); err != nil {
		t.Errorf("another user: %v", err)
	}
	e.clock.Advance(t0.Add(time.Hour).Sub(e.clock.Now()) - time.Second)
	if _, err := e.f.Send(ctx, "alice", "alice@example.com", "en", emailcode.PurposeSignIn); !errors.Is(err, emailcode.ErrHourlyCap) {
		t.Errorf("a second before the hour: %v", err)
	}
	e.clock.Advance(time.Second)
	if _, err := e.f.Send(ctx, "alice", "alice@example.com", "en", emailcode.PurposeSignIn); err != nil {
		t.Errorf("after the hour: %v", err)
	}
}

func TestSMTPServerDownChangesNothing(t *testing.T) {
	e := newMailpitEnv(t, emailcode.Options{})
	// An earlier code, delivered while the server was up.
	if _, err := e.f.Send(ctx, "alice", "alice@example.com", "en", emailcode.PurposeSignIn); err != nil {
		t.Fatal(err)
	}
	code := codeIn(t, e.mp.WaitFor("alice@example.com", 5*time.Second).Text)
	before, ok, err := e.f.Waiting(ctx, "alice", emailcode.PurposeSignIn)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	e.clock.Advance(time.Minute) // past the cooldown
	before.ResendAt = e.clock.Now()

	// The server goes away.
	e.mp.Stop()
	// Seven tries, more than the hourly cap: none may count.
	for i := range 7 {
		_, err := e.f.Send(ctx, "alice", "alice-new@example.com", "en", emailcode.PurposeSignIn)
		if !errors.Is(err, emailcode.ErrDelivery) {
			t.Fatalf("send %d with the server down: %v, want ErrDelivery", i+1, err)
		}
		if errors.Is(err, emailcode.ErrCooldown) || errors.Is(err, emailcode.ErrHourlyCap) {
			t.Fatalf("send %d: a failed delivery started the cooldown or used the cap: %v", i+1, err)
		}
		if strings.Contains(err.Error(), "alice-new@example.com") {
			t.Errorf("the error shows the full address: %v", err)
		}
	}
	after, ok, err := e.f.Waiting(ctx, "alice", emailcode.PurposeSignIn)
	if err != nil || !ok || after != before {
		t.Errorf("pending changed by failed sends:\nbefore %+v\nafter  %+v (%v %v)", before, after, ok, err)
	}
	if ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, code); !ok || err != nil {
		t.Errorf("the earlier code after failed sends: %v %v", ok, err)
	}

	// The cap is intact: with the one code delivered earlier, four more fit
	// in the hour (had any failure counted, the fourth would be refused),
	// and then the cap holds.
	o, err := mail.NewOutbox(t.TempDir(), "keygate <no-reply@example.com>")
	if err != nil {
		t.Fatal(err)
	}
	up := e.factor(t, o, emailcode.Options{})
	for i := range 4 {
		if _, err := up.Send(ctx, "alice", "alice@example.com", "en", emailcode.PurposeUnlock); err != nil {
			t.Fatalf("send %d once mail works again: %v", i+1, err)
		}
		e.clock.Advance(time.Minute)
	}
	if _, err := up.Send(ctx, "alice", "alice@example.com", "en", emailcode.PurposeUnlock); !errors.Is(err, emailcode.ErrHourlyCap) {
		t.Errorf("sixth code of the hour: %v, want ErrHourlyCap", err)
	}

	// A server that was never there (a closed port) fails the same way.
	down := e.factor(t, e.smtp(t, closedPort(t)), emailcode.Options{})
	if _, err := down.Send(ctx, "bob", "bob@example.com", "en", emailcode.PurposeSignIn); !errors.Is(err, emailcode.ErrDelivery) {
		t.Errorf("closed port: %v, want ErrDelivery", err)
	}
	if _, ok, _ := down.Waiting(ctx, "bob", emailcode.PurposeSignIn); ok {
		t.Error("a code is pending although its mail never left")
	}
	if _, err := down.Send(ctx, "bob", "bob@example.com", "en", emailcode.PurposeSignIn); errors.Is(err, emailcode.ErrCooldown) {
		t.Errorf("immediate retry refused by the cooldown: %v", err)
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}

func TestStoredFormIsNotTheCode(t *testing.T) {
	e := newOutboxEnv(t, emailcode.Options{Length: 10}) // long codes: no chance match in timestamps
	to := "alice.wonderland@example.com"
	code, _ := e.send(t, "alice", to)
	e.clock.Advance(time.Minute)
	code2, _ := e.send(t, "alice", to) // a replaced one must not linger either
	if _, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, wrong(code2)); err != nil {
		t.Fatal(err)
	}

	records := 0
	err := e.kv.Scan(ctx, "", func(it store.Item) error {
		records++
		for _, secret := range []string{code, code2, to} {
			if bytes.Contains(it.Value, []byte(secret)) || strings.Contains(it.Key, secret) {
				t.Errorf("record %q holds %q: %s", it.Key, secret, it.Value)
			}
		}
		return nil
	})
	if err != nil || records == 0 {
		t.Fatalf("scan: %d records, %v", records, err)
	}

	// And on disk. Read while the store is open: the write-ahead log then
	// holds every version ever written (the replaced code's record too),
	// uncompressed; after Close, Badger flushes into Snappy-compressed
	// tables where a search for plain bytes would prove nothing.
	sawMasked := false
	err = filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		// Badger preallocates its logs; the zero tail holds nothing.
		b = bytes.TrimRight(b, "\x00")
		sawMasked = sawMasked || bytes.Contains(b, []byte(emailcode.Mask(to)))
		for _, secret := range []string{code, code2, to} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s contains %q", filepath.Base(path), secret)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// The check can see values at all: the masked address is stored.
	if !sawMasked {
		t.Fatal("the masked address is not in the data files: the search would miss the code too")
	}
}

func TestConcurrentVerifyOfTheRightCodeSucceedsOnce(t *testing.T) {
	e := newOutboxEnv(t, emailcode.Options{})
	code, _ := e.send(t, "alice", "alice@example.com")
	const n = 20
	type result struct {
		ok  bool
		err error
	}
	results := make(chan result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, code)
			results <- result{ok, err}
		})
	}
	close(start)
	wg.Wait()
	close(results)
	oks := 0
	for r := range results {
		switch {
		case r.ok && r.err == nil:
			oks++
		case !r.ok && errors.Is(r.err, factors.ErrReplayed):
		default:
			t.Errorf("unexpected result %v %v", r.ok, r.err)
		}
	}
	if oks != 1 {
		t.Errorf("%d of %d concurrent verifications succeeded, want exactly 1", oks, n)
	}
}

func TestConcurrentWrongTriesAreAllCounted(t *testing.T) {
	e := newOutboxEnv(t, emailcode.Options{})
	code, _ := e.send(t, "alice", "alice@example.com")
	const n = 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	counted, refused := 0, 0
	for range n {
		wg.Go(func() {
			ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, wrong(code))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !ok && err == nil:
				counted++
			case errors.Is(err, emailcode.ErrTooManyTries):
				refused++
			default:
				t.Errorf("unexpected %v %v", ok, err)
			}
		})
	}
	wg.Wait()
	if counted != 5 || refused != n-5 {
		t.Errorf("%d wrong tries counted and %d refused; want 5 and %d (no lost updates)", counted, refused, n-5)
	}
	if _, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, code); !errors.Is(err, emailcode.ErrTooManyTries) {
		t.Errorf("right code afterwards: %v", err)
	}
}

func TestConcurrentSendsMailOnce(t *testing.T) {
	e := newOutboxEnv(t, emailcode.Options{})
	const n = 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent, cooled := 0, 0
	for range n {
		wg.Go(func() {
			_, err := e.f.Send(ctx, "alice", "alice@example.com", "en", emailcode.PurposeSignIn)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				sent++
			case errors.Is(err, emailcode.ErrCooldown):
				cooled++
			default:
				t.Errorf("unexpected %v", err)
			}
		})
	}
	wg.Wait()
	list, _ := e.outbox.List()
	if sent != 1 || cooled != n-1 || len(list) != 1 {
		t.Errorf("%d sent, %d refused, %d mails; want 1, %d, 1", sent, cooled, len(list), n-1)
	}
	// And the one code that went out is the one that works.
	if ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, codeIn(t, list[0].Text)); !ok || err != nil {
		t.Errorf("the mailed code: %v %v", ok, err)
	}
}

func TestCodeLengthAndValidityInWords(t *testing.T) {
	for _, tc := range []struct {
		length int
		ttl    time.Duration
		lang   string
		words  string
	}{
		{8, time.Minute, "en", "valid for 1 minute "},
		{6, 2 * time.Minute, "en", "valid for 2 minutes"},
		{6, time.Minute, "ru", "действует 1 минуту"},
		{6, 3 * time.Minute, "ru", "действует 3 минуты"},
		{6, 11 * time.Minute, "ru", "действует 11 минут"},
		{6, 21*time.Minute + 30*time.Second, "ru", "действует 21 минуту"}, // rounds down: never promise more
		{10, time.Hour, "ru", "действует 60 минут"},
	} {
		e := newOutboxEnv(t, emailcode.Options{Length: tc.length, TTL: tc.ttl, Cooldown: 30 * time.Second})
		if _, err := e.f.Send(ctx, "alice", "alice@example.com", tc.lang, emailcode.PurposeSignIn); err != nil {
			t.Fatal(err)
		}
		list, _ := e.outbox.List()
		if code := codeIn(t, list[0].Text); len(code) != tc.length {
			t.Errorf("code %q, want %d digits", code, tc.length)
		}
		if !strings.Contains(list[0].Text, tc.words) {
			t.Errorf("TTL %s in %s: %q missing from\n%s", tc.ttl, tc.lang, tc.words, list[0].Text)
		}
	}
}

func TestRefusals(t *testing.T) {
	e := newOutboxEnv(t, emailcode.Options{})
	for _, addr := range []string{"", "alice", "Alice <alice@example.com>", "a@example.com, b@example.com", "a@example.com\r\nBcc: x@example.com"} {
		if _, err := e.f.Send(ctx, "alice", addr, "en", emailcode.PurposeSignIn); !errors.Is(err, emailcode.ErrInvalidAddress) {
			t.Errorf("address %q: %v, want ErrInvalidAddress", addr, err)
		}
	}
	if _, err := e.f.Send(ctx, "alice", "alice@example.com", "en", "login"); err == nil {
		t.Error("unknown purpose accepted")
	}
	if _, err := e.f.Send(ctx, "", "alice@example.com", "en", emailcode.PurposeSignIn); err == nil {
		t.Error("empty user accepted")
	}
	if _, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, "123456"); !errors.Is(err, emailcode.ErrNoCode) {
		t.Errorf("verify without a code: %v, want ErrNoCode", err)
	}
	if _, ok, err := e.f.Waiting(ctx, "alice", emailcode.PurposeSignIn); ok || err != nil {
		t.Errorf("pending without a code: %v %v", ok, err)
	}
	if e.f.Kind() != "email" {
		t.Errorf("kind %q", e.f.Kind())
	}

	kv, _ := openStore(t)
	secrets := newSecrets(t)
	o, _ := mail.NewOutbox(t.TempDir(), "no-reply@example.com")
	for name, opt := range map[string]emailcode.Options{
		"no secrets":            {},
		"short code":            {Secrets: secrets, Length: 4},
		"long code":             {Secrets: secrets, Length: 12},
		"short ttl":             {Secrets: secrets, TTL: time.Second},
		"cooldown beyond ttl":   {Secrets: secrets, TTL: time.Minute, Cooldown: 2 * time.Minute},
		"negative cooldown":     {Secrets: secrets, Cooldown: -time.Second},
		"too many tries":        {Secrets: secrets, MaxTries: 1000},
		"cap":                   {Secrets: secrets, HourlyCap: -1},
		"product with newlines": {Secrets: secrets, Product: "keygate\r\nBcc: x@example.com"},
	} {
		if _, err := emailcode.New(kv, o, opt); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := emailcode.New(nil, o, emailcode.Options{Secrets: secrets}); err == nil {
		t.Error("no store accepted")
	}
	if _, err := emailcode.New(kv, nil, emailcode.Options{Secrets: secrets}); err == nil {
		t.Error("no sender accepted")
	}
}
