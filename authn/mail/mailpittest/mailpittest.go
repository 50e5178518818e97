// Package mailpittest runs a real Mailpit SMTP server for tests and reads
// what it received through Mailpit's HTTP API. Tests that send mail use it
// rather than a fake SMTP server, so the MIME, TLS and AUTH behaviour they
// check is what a real server sees.
//
// The binary is looked up as $MAILPIT, then on PATH, then in $GOBIN and
// GOPATH/bin. Install it with
//
//	go install github.com/axllent/mailpit@v1.27.11
//
// When it is missing, Start skips the test, or fails it when CI=true (CI
// must not pass by skipping).
package mailpittest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Version is the Mailpit release the tests are written against.
const Version = "v1.27.11"

// InstallHint says how to get the binary.
const InstallHint = "go install github.com/axllent/mailpit@" + Version

// Server is one running Mailpit.
type Server struct {
	// SMTPHost and SMTPPort accept mail (loopback only).
	SMTPHost string
	SMTPPort int
	// APIURL is the base of the web UI and API, e.g. "http://127.0.0.1:41234".
	APIURL string
	// Args is the command line Mailpit was started with (for reports).
	Args []string

	tb     testing.TB
	cmd    *exec.Cmd
	out    *lockedBuffer
	done   chan struct{}
	http   *http.Client
	mu     sync.Mutex
	seen   map[string]bool
	stopMu sync.Once
}

// Address is a mail address as Mailpit reports it.
type Address struct {
	Name    string
	Address string
}

// Message is one received mail. Summaries (Messages) leave Text, HTML and
// Date empty; Latest and WaitFor fill them.
type Message struct {
	ID        string
	MessageID string
	From      Address
	To        []Address
	Subject   string
	Created   time.Time // when Mailpit received it
	Date      time.Time // the Date header
	Text      string
	HTML      string
	Username  string // SMTP AUTH user; Mailpit v1.27 records it for LOGIN only, not PLAIN
}

// Binary returns the path of the mailpit binary, or "" when none is found.
func Binary() string {
	if p := os.Getenv("MAILPIT"); p != "" {
		if isExecutable(p) {
			return p
		}
		return ""
	}
	if p, err := exec.LookPath("mailpit"); err == nil {
		return p
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, "go", "env", "GOPATH").Output()
		cancel()
		if err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	for _, p := range filepath.SplitList(gopath) {
		dirs = append(dirs, filepath.Join(p, "bin"))
	}
	for _, d := range dirs {
		if p := filepath.Join(d, "mailpit"); isExecutable(p) {
			return p
		}
	}
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// Start runs Mailpit on free loopback ports with a database in a temporary
// directory, waits until both SMTP and the API answer, and stops it when
// the test ends. extraArgs are appended to the command line (e.g.
// "--smtp-auth-accept-any", "--smtp-tls-cert", file, …).
func Start(tb testing.TB, extraArgs ...string) *Server {
	tb.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("mailpit missing: .ci/run installs it (" + InstallHint + ")")
		}
		msg := "SKIPPED: mailpit not found ($MAILPIT, PATH, GOPATH/bin): the SMTP tests did NOT run. Install it: " + InstallHint
		_, _ = fmt.Fprintln(os.Stderr, "mailpittest: "+msg)
		tb.Skip(msg)
	}
	var lastErr error
	// A free port found now may be taken before Mailpit binds it; that is
	// rare, and another pair of ports fixes it.
	for range 3 {
		s, err := start(tb, bin, extraArgs)
		if err == nil {
			tb.Cleanup(s.Stop)
			return s
		}
		lastErr = err
	}
	tb.Fatalf("mailpittest: %v", lastErr)
	return nil
}

func start(tb testing.TB, bin string, extraArgs []string) (*Server, error) {
	smtpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := tb.TempDir()
	args := []string{
		"--smtp", "127.0.0.1:" + strconv.Itoa(smtpPort),
		"--listen", "127.0.0.1:" + strconv.Itoa(httpPort),
		"--database", filepath.Join(dir, "mp.db"),
		// No network beyond loopback: no update check, no reverse DNS of
		// the (loopback) client.
		"--disable-version-check",
		"--smtp-disable-rdns",
	}
	args = append(args, extraArgs...)
	cmd := exec.Command(bin, args...)
	// Mailpit reads MP_* variables as settings; the tests' command line
	// must be the whole configuration.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MP_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &Server{
		SMTPHost: "127.0.0.1",
		SMTPPort: smtpPort,
		APIURL:   "http://127.0.0.1:" + strconv.Itoa(httpPort),
		Args:     append([]string{bin}, args...),
		tb:       tb,
		cmd:      cmd,
		out:      out,
		done:     make(chan struct{}),
		http:     &http.Client{Timeout: 5 * time.Second},
		seen:     map[string]bool{},
	}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(15 * time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w\n--- mailpit output ---\n%s", err, out.String())
	}
	return s, nil
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return errors.New("mailpit exited during start-up")
		default:
		}
		if s.ready() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("mailpit not ready after %s", timeout)
}

func (s *Server) ready() bool {
	resp, err := s.http.Get(s.APIURL + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	c, err := net.DialTimeout("tcp", s.SMTPAddr(), time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// SMTPAddr is "host:port" of the SMTP listener.
func (s *Server) SMTPAddr() string {
	return net.JoinHostPort(s.SMTPHost, strconv.Itoa(s.SMTPPort))
}

// Output is what Mailpit logged so far (start it with "-v" for the SMTP
// conversation).
func (s *Server) Output() string { return s.out.String() }

// CommandLine is the command Mailpit runs with, for logs and reports.
func (s *Server) CommandLine() string { return strings.Join(s.Args, " ") }

// Stop ends Mailpit (interrupt, then kill after 5 s). Start registers it
// with the test's cleanup; calling it again is harmless. When the test
// failed, Mailpit's output is logged.
func (s *Server) Stop() {
	s.stopMu.Do(func() {
		if s.cmd.Process != nil {
			_ = s.cmd.Process.Signal(os.Interrupt)
			select {
			case <-s.done:
			case <-time.After(5 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.done
			}
		}
		if s.tb.Failed() {
			s.tb.Logf("mailpit output:\n%s", s.out.String())
		}
	})
}

// Messages lists the received mails, newest first (summaries only).
func (s *Server) Messages() []Message {
	s.tb.Helper()
	var resp struct {
		Messages []Message `json:"messages"`
	}
	s.getJSON("/api/v1/messages?limit=1000", &resp)
	return resp.Messages
}

// Message returns one mail in full.
func (s *Server) Message(id string) Message {
	s.tb.Helper()
	var m Message
	s.getJSON("/api/v1/message/"+url.PathEscape(id), &m)
	return m
}

// Headers returns the headers of one mail as received.
func (s *Server) Headers(id string) map[string][]string {
	s.tb.Helper()
	h := map[string][]string{}
	s.getJSON("/api/v1/message/"+url.PathEscape(id)+"/headers", &h)
	return h
}

// Raw returns one mail's source as received.
func (s *Server) Raw(id string) []byte {
	s.tb.Helper()
	return s.get("/api/v1/message/" + url.PathEscape(id) + "/raw")
}

// Latest returns the newest mail to `to` in full, if there is one.
func (s *Server) Latest(to string) (Message, bool) {
	s.tb.Helper()
	for _, m := range s.Messages() {
		if sentTo(m, to) {
			return s.Message(m.ID), true
		}
	}
	return Message{}, false
}

// WaitFor waits up to timeout for a mail to `to` that no earlier WaitFor on
// this server returned, and returns it in full (the newest such mail). It
// fails the test on timeout. Polling is every 10 ms, so the time a test
// measures around it is delivery time, not polling slack.
func (s *Server) WaitFor(to string, timeout time.Duration) Message {
	s.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, m := range s.Messages() {
			if !sentTo(m, to) {
				continue
			}
			s.mu.Lock()
			fresh := !s.seen[m.ID]
			s.seen[m.ID] = true
			s.mu.Unlock()
			if fresh {
				return s.Message(m.ID)
			}
			break // the newest one to `to` was seen already
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("mailpittest: no new mail to %s within %s", to, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// DeleteAll empties the mailbox.
func (s *Server) DeleteAll() {
	s.tb.Helper()
	s.do(http.MethodDelete, "/api/v1/messages", nil)
}

// Chaos is one Mailpit chaos trigger: the SMTP stage answers ErrorCode
// with Probability percent. Start Mailpit with "--enable-chaos" to use it.
type Chaos struct {
	ErrorCode   int
	Probability int
}

// SetChaos makes the SMTP server fail on purpose (Mailpit's chaos
// feature): sender (MAIL FROM), recipient (RCPT TO), authentication. A
// zero Chaos turns a stage off.
func (s *Server) SetChaos(sender, recipient, authentication Chaos) {
	s.tb.Helper()
	body, _ := json.Marshal(map[string]Chaos{
		"Sender": sender, "Recipient": recipient, "Authentication": authentication,
	})
	s.do(http.MethodPut, "/api/v1/chaos", body)
}

func sentTo(m Message, to string) bool {
	return slices.ContainsFunc(m.To, func(a Address) bool { return strings.EqualFold(a.Address, to) })
}

func (s *Server) getJSON(path string, v any) {
	s.tb.Helper()
	if err := json.Unmarshal(s.get(path), v); err != nil {
		s.tb.Fatalf("mailpittest: GET %s: %v", path, err)
	}
}

func (s *Server) get(path string) []byte {
	s.tb.Helper()
	return s.do(http.MethodGet, path, nil)
}

func (s *Server) do(method, path string, body []byte) []byte {
	s.tb.Helper()
	req, err := http.NewRequest(method, s.APIURL+path, bytes.NewReader(body))
	if err != nil {
		s.tb.Fatalf("mailpittest: %s %s: %v", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		s.tb.Fatalf("mailpittest: %s %s: %v", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		s.tb.Fatalf("mailpittest: %s %s: %s %v: %s", method, path, resp.Status, err, b)
	}
	return b
}

// freePort asks the kernel for a free loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects Mailpit's output from its two pipes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Interface guards.
var _ io.Writer = (*lockedBuffer)(nil)
