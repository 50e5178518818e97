package mail_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"
	"golang.org/x/crypto/bcrypt"

	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/authn/mail/mailpittest"
)

const testFrom = "keygate <no-reply@example.com>"

func testMessage(to string) mail.Message {
	return mail.Message{
		To:      to,
		Subject: "Ваш код keygate для входа",
		Text:    "Введите этот код:\n\n    482913\n",
		HTML:    "<p>Введите этот код:</p><p><b>482913</b></p>",
	}
}

// logBuffer is a slog handler target that tests can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

func newSMTP(t *testing.T, o mail.SMTPOptions) *mail.SMTP {
	t.Helper()
	if o.From == "" {
		o.From = testFrom
	}
	s, err := mail.NewSMTP(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
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

func TestSMTPDeliversTextAndHTMLWithHeaders(t *testing.T) {
	mp := mailpittest.Start(t)
	t.Logf("mailpit: %s", mp.CommandLine())
	s := newSMTP(t, mail.SMTPOptions{Host: mp.SMTPHost, Port: mp.SMTPPort, TLS: "none"})

	start := time.Now()
	if err := s.Send(context.Background(), testMessage("alice@example.com")); err != nil {
		t.Fatal(err)
	}
	m := mp.WaitFor("alice@example.com", 5*time.Second)
	t.Logf("SMTP send + arrival in mailpit: %s", time.Since(start))

	if m.Subject != "Ваш код keygate для входа" {
		t.Errorf("subject %q", m.Subject)
	}
	if m.From.Address != "no-reply@example.com" || m.From.Name != "keygate" {
		t.Errorf("from %+v", m.From)
	}
	if !strings.Contains(m.Text, "482913") || !strings.Contains(m.Text, "Введите этот код") {
		t.Errorf("text part %q", m.Text)
	}
	if !strings.Contains(m.HTML, "<b>482913</b>") {
		t.Errorf("html part %q", m.HTML)
	}
	h := mp.Headers(m.ID)
	if len(h["Date"]) != 1 {
		t.Errorf("Date header %v", h["Date"])
	}
	if id := strings.Join(h["Message-Id"], ""); !strings.HasSuffix(id, "@example.com>") {
		t.Errorf("Message-ID %q: want one in the sender's domain", id)
	}
	if got := strings.Join(h["Auto-Submitted"], ""); got != "auto-generated" {
		t.Errorf("Auto-Submitted %q", got)
	}
	raw := string(mp.Raw(m.ID))
	if !strings.Contains(raw, "multipart/alternative") {
		t.Errorf("not multipart/alternative:\n%s", raw)
	}
	if strings.Contains(raw, "go-mail") {
		t.Error("the mail advertises the library that sent it")
	}
}

func TestSMTPAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	authFile := filepath.Join(t.TempDir(), "smtp-auth")
	if err := os.WriteFile(authFile, []byte("keygate:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Plain-text AUTH without TLS is allowed here only because the server
	// is on loopback (go-mail refuses it towards anything else).
	mp := mailpittest.Start(t, "--smtp-auth-file", authFile, "--smtp-auth-allow-insecure", "-v")
	for _, tc := range []struct {
		password string
		ok       bool
	}{{"s3cret", true}, {"wrong-password", false}} {
		logger, logs := newLogger()
		s := newSMTP(t, mail.SMTPOptions{
			Host: mp.SMTPHost, Port: mp.SMTPPort, TLS: "none", Username: "keygate", Password: tc.password,
			Backoff: time.Second, Logger: logger,
		})
		to := "auth-" + strconv.FormatBool(tc.ok) + "@example.com"
		start := time.Now()
		err := s.Send(context.Background(), testMessage(to))
		if tc.ok {
			if err != nil {
				t.Fatal(err)
			}
			mp.WaitFor(to, 5*time.Second)
			if !strings.Contains(mp.Output(), `allow PLAIN login:\"keygate\"`) {
				t.Errorf("mailpit did not see a PLAIN login as keygate:\n%s", mp.Output())
			}
			continue
		}
		if !errors.Is(err, mail.ErrDelivery) || !strings.Contains(err.Error(), "AUTH") {
			t.Fatalf("wrong password: err %v, want ErrDelivery naming AUTH", err)
		}
		if time.Since(start) >= time.Second || strings.Contains(logs.String(), "retrying") {
			t.Errorf("a refused password was retried:\n%s", logs)
		}
		if strings.Contains(err.Error()+logs.String(), tc.password) {
			t.Errorf("the password shows in the error or the log")
		}
		if _, got := mp.Latest(to); got {
			t.Error("mail accepted with a wrong password")
		}
	}
}

func TestSMTPTLSModes(t *testing.T) {
	certs := mailpittest.NewTLSFiles(t)
	plain := mailpittest.Start(t)
	starttls := mailpittest.Start(t, "--smtp-tls-cert", certs.CertFile, "--smtp-tls-key", certs.KeyFile)
	implicit := mailpittest.Start(t, "--smtp-tls-cert", certs.CertFile, "--smtp-tls-key", certs.KeyFile, "--smtp-require-tls")

	for _, tc := range []struct {
		name    string
		server  *mailpittest.Server
		mode    string
		roots   bool
		ok      bool
		errText string // part of the error message
	}{
		{name: "starttls against a server without STARTTLS", server: plain, mode: "starttls", roots: true, errText: "STARTTLS"},
		{name: "starttls with a trusted certificate", server: starttls, mode: "starttls", roots: true, ok: true},
		{name: "starttls with an untrusted certificate", server: starttls, mode: "starttls", errText: "certificate"},
		{name: "implicit tls with a trusted certificate", server: implicit, mode: "tls", roots: true, ok: true},
		{name: "implicit tls against a plain server", server: plain, mode: "tls", roots: true, errText: "tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logger, logs := newLogger()
			o := mail.SMTPOptions{
				Host: tc.server.SMTPHost, Port: tc.server.SMTPPort, TLS: tc.mode,
				Logger: logger, Backoff: time.Second, Timeout: 5 * time.Second,
			}
			if tc.roots {
				o.RootCAs = certs.Pool
			}
			s := newSMTP(t, o)
			to := strings.NewReplacer(" ", "-").Replace(tc.name) + "@example.com"
			start := time.Now()
			err := s.Send(context.Background(), testMessage(to))
			elapsed := time.Since(start)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				tc.server.WaitFor(to, 5*time.Second)
				return
			}
			if !errors.Is(err, mail.ErrDelivery) {
				t.Fatalf("err %v, want ErrDelivery", err)
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.errText)) {
				t.Errorf("error %q does not say %q", err, tc.errText)
			}
			// A TLS problem is configuration: no retries (they would only
			// delay the error by the back-off), and no plain-text fallback.
			if elapsed >= time.Second {
				t.Errorf("took %s: retried a permanent failure", elapsed)
			}
			if n := strings.Count(logs.String(), "retrying"); n != 0 {
				t.Errorf("%d retries of a permanent failure", n)
			}
			if _, got := tc.server.Latest(to); got {
				t.Error("the mail arrived anyway (plain-text fallback?)")
			}
			t.Logf("refused clearly: %v", err)
		})
	}
}

func TestSMTPServerDownRetriesThenFails(t *testing.T) {
	logger, logs := newLogger()
	s := newSMTP(t, mail.SMTPOptions{
		Host: "127.0.0.1", Port: closedPort(t), TLS: "none",
		Retries: 2, Backoff: 20 * time.Millisecond, Logger: logger,
	})
	msg := testMessage("carol@example.com")
	start := time.Now()
	err := s.Send(context.Background(), msg)
	elapsed := time.Since(start)
	if !errors.Is(err, mail.ErrDelivery) {
		t.Fatalf("err %v, want ErrDelivery", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("err %v does not unwrap to the refused connection", err)
	}
	if !strings.Contains(err.Error(), "3 attempt(s)") {
		t.Errorf("err %q: want 3 attempts", err)
	}
	// Back-off 20 ms, then 40 ms.
	if elapsed < 60*time.Millisecond {
		t.Errorf("3 attempts in %s: the back-off did not wait", elapsed)
	}
	out := logs.String()
	if n := strings.Count(out, "retrying"); n != 2 {
		t.Errorf("%d retry lines, want 2:\n%s", n, out)
	}
	for _, secret := range []string{"482913", "carol@example.com", msg.Text, "Введите"} {
		if strings.Contains(out, secret) || strings.Contains(err.Error(), secret) {
			t.Errorf("log or error carries %q:\n%s\n%v", secret, out, err)
		}
	}
	if !strings.Contains(out, mail.Mask("carol@example.com")) {
		t.Errorf("log does not name the masked recipient:\n%s", out)
	}
}

func TestSMTPTemporaryRepliesAreRetriedPermanentOnesNot(t *testing.T) {
	mp := mailpittest.Start(t, "--enable-chaos")
	for _, tc := range []struct {
		code     int
		attempts int
	}{
		{code: 451, attempts: 3},
		{code: 550, attempts: 1},
	} {
		mp.SetChaos(mailpittest.Chaos{}, mailpittest.Chaos{ErrorCode: tc.code, Probability: 100}, mailpittest.Chaos{})
		logger, logs := newLogger()
		s := newSMTP(t, mail.SMTPOptions{
			Host: mp.SMTPHost, Port: mp.SMTPPort, TLS: "none",
			Retries: 2, Backoff: 10 * time.Millisecond, Logger: logger,
		})
		err := s.Send(context.Background(), testMessage("dave@example.com"))
		if !errors.Is(err, mail.ErrDelivery) {
			t.Fatalf("%d: err %v, want ErrDelivery", tc.code, err)
		}
		var se *gomail.SendError
		if !errors.As(err, &se) || se.ErrorCode() != tc.code {
			t.Errorf("%d: err %v does not unwrap to the SMTP reply", tc.code, err)
		}
		if got := strings.Count(logs.String(), "retrying") + 1; got != tc.attempts {
			t.Errorf("%d: %d attempts, want %d:\n%s", tc.code, got, tc.attempts, logs)
		}
		if strings.Contains(err.Error(), "dave@example.com") || strings.Contains(logs.String(), "dave@example.com") {
			t.Errorf("%d: the recipient is not masked: %v\n%s", tc.code, err, logs)
		}
	}
	// And once the server behaves again, the same sender delivers.
	mp.SetChaos(mailpittest.Chaos{}, mailpittest.Chaos{}, mailpittest.Chaos{})
	s := newSMTP(t, mail.SMTPOptions{Host: mp.SMTPHost, Port: mp.SMTPPort, TLS: "none"})
	if err := s.Send(context.Background(), testMessage("dave@example.com")); err != nil {
		t.Fatal(err)
	}
	mp.WaitFor("dave@example.com", 5*time.Second)
}

func TestSMTPStopsWhenTheCallerGivesUp(t *testing.T) {
	s := newSMTP(t, mail.SMTPOptions{
		Host: "127.0.0.1", Port: closedPort(t), TLS: "none",
		Retries: 5, Backoff: 10 * time.Second, Logger: slog.New(slog.DiscardHandler),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Send(ctx, testMessage("erin@example.com"))
	if !errors.Is(err, mail.ErrDelivery) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want ErrDelivery and the context's error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned after %s: the back-off ignored the context", d)
	}
}

func TestNewSMTPRefusesBadOptions(t *testing.T) {
	for name, o := range map[string]mail.SMTPOptions{
		"no from":          {Host: "mail.example.com"},
		"bad from":         {From: "not an address", Host: "mail.example.com"},
		"no host":          {From: testFrom},
		"host with port":   {From: testFrom, Host: "mail.example.com:25"},
		"unknown tls mode": {From: testFrom, Host: "mail.example.com", TLS: "ssl3"},
		"port":             {From: testFrom, Host: "mail.example.com", Port: 70000},
		"password in clear to a remote host": {
			From: testFrom, Host: "mail.example.com", TLS: "none", Username: "u", Password: "p",
		},
		"negative timeout": {From: testFrom, Host: "mail.example.com", Timeout: -time.Second},
		"retries":          {From: testFrom, Host: "mail.example.com", Retries: 100},
	} {
		if _, err := mail.NewSMTP(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, o := range map[string]mail.SMTPOptions{
		"defaults":                      {From: testFrom, Host: "mail.example.com"},
		"auth without tls on loopback":  {From: testFrom, Host: "127.0.0.1", TLS: "none", Username: "u"},
		"implicit tls with auth":        {From: testFrom, Host: "mail.example.com", TLS: "tls", Username: "u"},
		"bare address and no retries":   {From: "no-reply@example.com", Host: "localhost", Retries: -1},
		"ipv6 literal":                  {From: testFrom, Host: "::1", TLS: "none"},
		"upper-case mode with its port": {From: testFrom, Host: "mail.example.com", TLS: "STARTTLS", Port: 2525},
	} {
		if _, err := mail.NewSMTP(o); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
