package mail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// TLS modes of SMTPOptions.TLS.
const (
	TLSNone     = "none"     // plain SMTP: only for a relay on loopback or a trusted network
	TLSStartTLS = "starttls" // STARTTLS is mandatory: no fallback to plain text
	TLSImplicit = "tls"      // TLS from the first byte ("SMTPS", port 465)
)

// SMTPOptions configure NewSMTP. Zero values take the defaults.
type SMTPOptions struct {
	// From is the sender, with or without a display name:
	// "keygate <no-reply@example.com>".
	From string
	// Host and Port of the submission server. Port defaults by TLS mode:
	// 25 (none), 587 (starttls), 465 (tls).
	Host string
	Port int
	// TLS is "none", "starttls" (the default) or "tls". With "starttls" a
	// server that does not offer STARTTLS is an error, never a reason to
	// fall back to plain text.
	TLS string
	// RootCAs verify the server's certificate; nil means the system roots.
	RootCAs *x509.CertPool
	// Username turns on SMTP AUTH (PLAIN or LOGIN, whichever the server
	// offers, else the strongest it offers); Password goes with it. The
	// password never travels in clear: plain-text AUTH is refused without
	// TLS unless the server is on loopback.
	Username, Password string
	// Timeout bounds one attempt (connect, and each SMTP command): 10 s.
	Timeout time.Duration
	// Retries after a temporary failure (connection refused or dropped, 4xx
	// replies): 2 by default; negative for none.
	Retries int
	// Backoff is the wait before the first retry, doubling after: 500 ms.
	Backoff time.Duration
	// Logger receives one line per failed attempt, with the recipient
	// masked and never the body. nil means slog.Default().
	Logger *slog.Logger
}

const (
	defaultTimeout = 10 * time.Second
	defaultRetries = 2
	defaultBackoff = 500 * time.Millisecond
	maxRetries     = 10
)

// SMTP sends mail through one submission server. It is safe for
// concurrent use: every Send opens its own connection (a code mail is rare
// and must not wait behind another).
type SMTP struct {
	sender
	host    string
	port    int
	mode    string
	rootCAs *x509.CertPool
	user    string
	pass    string
	timeout time.Duration
	retries int
	backoff time.Duration
	log     *slog.Logger
}

// NewSMTP checks the options and fills in defaults. It does not connect:
// the server may come up after keygate.
func NewSMTP(o SMTPOptions) (*SMTP, error) {
	snd, err := parseFrom(o.From)
	if err != nil {
		return nil, err
	}
	host := strings.TrimSpace(o.Host)
	if host == "" || (strings.ContainsAny(host, " /:@") && net.ParseIP(host) == nil) {
		return nil, fmt.Errorf("mail: SMTP host %q: want a host name or an IP address", o.Host)
	}
	mode := strings.ToLower(strings.TrimSpace(o.TLS))
	port := o.Port
	switch mode {
	case "", TLSStartTLS:
		mode = TLSStartTLS
		if port == 0 {
			port = 587
		}
	case TLSImplicit:
		if port == 0 {
			port = 465
		}
	case TLSNone:
		if port == 0 {
			port = 25
		}
	default:
		return nil, fmt.Errorf("mail: SMTP tls mode %q: want none, starttls or tls", o.TLS)
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("mail: SMTP port %d out of range", port)
	}
	if o.Username != "" && mode == TLSNone && !isLoopback(host) {
		return nil, fmt.Errorf("mail: SMTP username set with tls none to %s: the password would cross the network in clear; use starttls or tls", host)
	}
	s := &SMTP{
		sender: snd, host: host, port: port, mode: mode, rootCAs: o.RootCAs,
		user: o.Username, pass: o.Password,
		timeout: o.Timeout, retries: o.Retries, backoff: o.Backoff, log: o.Logger,
	}
	switch {
	case s.timeout == 0:
		s.timeout = defaultTimeout
	case s.timeout < 0:
		return nil, fmt.Errorf("mail: SMTP timeout %s is negative", s.timeout)
	}
	switch {
	case s.retries == 0:
		s.retries = defaultRetries
	case s.retries < 0:
		s.retries = 0
	case s.retries > maxRetries:
		return nil, fmt.Errorf("mail: %d SMTP retries; at most %d", s.retries, maxRetries)
	}
	switch {
	case s.backoff == 0:
		s.backoff = defaultBackoff
	case s.backoff < 0:
		return nil, fmt.Errorf("mail: SMTP backoff %s is negative", s.backoff)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	// Build a client once so that an option go-mail refuses shows up now,
	// at startup, rather than on the first code someone asks for.
	if _, err := gomail.NewClient(s.host, s.clientOptions(nil)...); err != nil {
		return nil, fmt.Errorf("mail: SMTP client: %w", err)
	}
	return s, nil
}

// Send delivers m, retrying temporary failures with a doubling back-off.
// On failure the error wraps ErrDelivery and one line is logged.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	masked := Mask(m.To)
	msg, err := s.compose(m, time.Now())
	if err != nil {
		return &deliveryError{summary: err.Error(), causes: []error{err}}
	}
	wait := s.backoff
	attempts := 0
	for {
		attempts++
		err = s.attempt(ctx, msg)
		if err == nil {
			if attempts > 1 {
				s.log.Info("email delivered after retries", "to", masked, "server", s.addr(), "attempts", attempts)
			}
			return nil
		}
		temp := temporary(err)
		if ctx.Err() != nil || !temp || attempts > s.retries {
			break
		}
		s.log.Warn("email delivery attempt failed; retrying", "to", masked, "server", s.addr(),
			"attempt", attempts, "retry_in", wait, "err", s.describe(err, m.To))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
		wait *= 2
	}
	summary := fmt.Sprintf("smtp %s, %d attempt(s): %s", s.addr(), attempts, s.describe(err, m.To))
	s.log.Error("email delivery failed", "to", masked, "server", s.addr(), "attempts", attempts,
		"temporary", temporary(err), "err", s.describe(err, m.To))
	causes := []error{err}
	if cerr := ctx.Err(); cerr != nil {
		causes = append(causes, cerr)
	}
	return &deliveryError{summary: summary, causes: causes}
}

// attempt makes one SMTP session. It dials through its own function so
// that every connection it opened is closed when it returns: go-mail leaves
// the connection open when the greeting, STARTTLS or AUTH fails, and a
// misbehaving server plus retries would pile up sockets. The same hook
// lets a cancelled ctx cut a session that hangs mid-command.
func (s *SMTP) attempt(ctx context.Context, msg *gomail.Msg) error {
	var (
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for _, c := range conns {
			_ = c.Close()
		}
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: s.timeout}
		var c net.Conn
		var err error
		if s.mode == TLSImplicit {
			c, err = (&tls.Dialer{NetDialer: d, Config: s.tlsConfig()}).DialContext(ctx, network, addr)
		} else {
			c, err = d.DialContext(ctx, network, addr)
		}
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		if closed {
			_ = c.Close()
			return nil, net.ErrClosed
		}
		conns = append(conns, c)
		return c, nil
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer func() {
		stop()
		closeAll()
	}()

	client, err := gomail.NewClient(s.host, s.clientOptions(dial)...)
	if err != nil {
		return err
	}
	sc, err := client.DialToSMTPClientWithContext(ctx)
	if err != nil {
		return err
	}
	if err := client.SendWithSMTPClient(sc, msg); err != nil {
		return err
	}
	// The server accepted the message (250 after DATA). A failed QUIT must
	// not turn that into an error, or the retry would mail the code twice.
	_ = client.CloseWithSMTPClient(sc)
	return nil
}

func (s *SMTP) clientOptions(dial gomail.DialContextFunc) []gomail.Option {
	opts := []gomail.Option{
		gomail.WithPort(s.port),
		gomail.WithTimeout(s.timeout),
		gomail.WithTLSConfig(s.tlsConfig()),
	}
	switch s.mode {
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case TLSImplicit:
		opts = append(opts, gomail.WithSSL())
	}
	if s.user != "" {
		// PLAIN or LOGIN when offered, else go-mail picks the strongest
		// mechanism the server lists. go-mail's PLAIN and LOGIN refuse to
		// run without TLS except towards loopback.
		opts = append(opts,
			gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthPlain, gomail.SMTPAuthLogin),
			gomail.WithUsername(s.user), gomail.WithPassword(s.pass))
	}
	if dial != nil {
		opts = append(opts, gomail.WithDialContextFunc(dial))
	}
	return opts
}

func (s *SMTP) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: s.host, MinVersion: tls.VersionTLS12, RootCAs: s.rootCAs}
}

func (s *SMTP) addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// describe is err's message with the recipient masked: servers and go-mail
// like to repeat the address, and logs are read by more people than mail.
func (s *SMTP) describe(err error, to string) string {
	msg := err.Error()
	if to != "" {
		msg = strings.ReplaceAll(msg, to, Mask(to))
	}
	return msg
}

// temporary says whether err may go away by itself, so that a retry can
// help: the server is down or restarting, the connection dropped, or it
// answered 4xx. Configuration problems (TLS verification, STARTTLS not
// offered, AUTH refused) and 5xx answers are permanent: retrying would only
// delay the error.
func temporary(err error) bool {
	var se *gomail.SendError
	if errors.As(err, &se) {
		switch se.Reason {
		case gomail.ErrGetSender, gomail.ErrGetRcpts, gomail.ErrNoUnencoded:
			return false
		}
		if se.ErrorCode() == 0 {
			// No SMTP reply code: the connection broke mid-session.
			return true
		}
		return se.IsTemp()
	}
	var pe *textproto.Error
	if errors.As(err, &pe) {
		return pe.Code >= 400 && pe.Code < 500
	}
	var (
		certErr     *tls.CertificateVerificationError
		recordErr   tls.RecordHeaderError
		alertErr    tls.AlertError
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidErr  x509.CertificateInvalidError
	)
	if errors.As(err, &certErr) || errors.As(err, &recordErr) || errors.As(err, &alertErr) ||
		errors.As(err, &unknownAuth) || errors.As(err, &hostErr) || errors.As(err, &invalidErr) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Interface guards.
var _ Sender = (*SMTP)(nil)
