// Package kanneltest runs a real Kannel for tests: Debian's bearerbox and
// smsbox, with kannel-extras' fake SMSC (fakesmsc) as the phone network.
// Texts sent to smsbox's sendsms interface arrive at the fake SMSC, which
// prints each one; the package reads that output, so a test sees exactly
// what Kannel would have handed an operator — the number, the coding and
// the text.
//
// Install the parts with
//
//	apt-get install -y kannel kannel-extras
//
// When they are missing, Start skips the test, or fails it when CI=true
// (CI must not pass by skipping).
package kanneltest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"
)

// The binaries, where Debian installs them.
const (
	Bearerbox = "/usr/sbin/bearerbox"
	Smsbox    = "/usr/sbin/smsbox"
	FakeSMSC  = "/usr/lib/kannel/test/fakesmsc"
)

// InstallHint says how to get the binaries.
const InstallHint = "apt-get install -y kannel kannel-extras"

// Sender is the sendsms user's default sender (what a text without an
// explicit from shows).
const Sender = "keygate"

// Kannel is one running bearerbox + smsbox + fake SMSC.
type Kannel struct {
	// SendURL is smsbox's sendsms interface.
	SendURL string
	// Username and Password of the sendsms user.
	Username, Password string

	t        testing.TB
	dir      string
	adminURL string
	adminPw  string

	mu       sync.Mutex
	procs    map[string]*proc
	received []Message
	taken    int // messages handed out by Next
	arrived  chan struct{}
}

// Message is one text the fake SMSC received.
type Message struct {
	From, To string
	// Coding is fakesmsc's type: "text" (GSM 7-bit), "ucs-2", "data".
	Coding string
	// Text is the text as the phone would show it (UCS-2 decoded).
	Text string
}

// Start runs Kannel on free loopback ports in a temporary directory and
// stops it when the test ends.
func Start(t testing.TB) *Kannel {
	t.Helper()
	for _, bin := range []string{Bearerbox, Smsbox, FakeSMSC} {
		if _, err := os.Stat(bin); err != nil {
			msg := fmt.Sprintf("kanneltest: %s is missing (%v); install Kannel: %s", bin, err, InstallHint)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip("SKIPPING a test that needs a real Kannel: " + msg)
		}
	}
	dir := t.TempDir()
	ports := freePorts(t, 4)
	admin, boxes, smsc, sendsms := ports[0], ports[1], ports[2], ports[3]
	k := &Kannel{
		t: t, dir: dir,
		SendURL:  fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/sendsms", sendsms),
		Username: "keygate-test",
		Password: randomHex(t),
		adminURL: fmt.Sprintf("http://127.0.0.1:%d", admin),
		adminPw:  randomHex(t),
		procs:    map[string]*proc{},
		arrived:  make(chan struct{}, 1),
	}
	conf := filepath.Join(dir, "kannel.conf")
	if err := os.WriteFile(conf, []byte(config(k, admin, boxes, smsc, sendsms)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.stopAll()
		if t.Failed() {
			k.dumpLogs()
		}
	})

	k.start("bearerbox", Bearerbox, "-v", "1", conf)
	k.waitStatus(func(s string) bool { return strings.Contains(s, "Status: running") }, "bearerbox to answer")
	k.startFakeSMSC(smsc)
	k.waitStatus(func(s string) bool { return regexp.MustCompile(`FAKE\[FAKE\].*\(online`).MatchString(s) }, "the fake SMSC to connect")
	k.start("smsbox", Smsbox, "-v", "1", conf)
	k.waitStatus(func(s string) bool { return regexp.MustCompile(`smsbox:.*on-line`).MatchString(s) }, "smsbox to connect")
	k.waitAccept(sendsms)
	return k
}

// config is the kannel.conf: everything on loopback, one fake SMSC, one
// sendsms user.
func config(k *Kannel, admin, boxes, smsc, sendsms int) string {
	return fmt.Sprintf(`group = core
admin-port = %d
admin-password = %q
admin-allow-ip = "127.0.0.1"
smsbox-port = %d
box-allow-ip = "127.0.0.1"
log-level = 1

group = smsc
smsc = fake
smsc-id = FAKE
port = %d
connect-allow-ip = "127.0.0.1"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = %d
sendsms-port = %d
sendsms-interface = 127.0.0.1
log-level = 1

group = sendsms-user
username = %q
password = %q
default-sender = %q
user-allow-ip = "127.0.0.1"
`, admin, k.adminPw, boxes, smsc, boxes, sendsms, k.Username, k.Password, Sender)
}

// start runs a Kannel binary with its output in dir/<name>.log.
func (k *Kannel) start(name, bin string, args ...string) {
	k.t.Helper()
	logf, err := os.Create(filepath.Join(k.dir, name+".log"))
	if err != nil {
		k.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = k.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		k.t.Fatalf("kanneltest: start %s: %v", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	k.mu.Lock()
	k.procs[name] = p
	k.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
}

// proc is a started process; done closes once it has been waited for.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// gotMessage is how fakesmsc reports a text from bearerbox:
// "... DEBUG: Got message 1: <from to type data>".
var gotMessage = regexp.MustCompile(`Got message \d+: <(.*)>\s*$`)

// startFakeSMSC runs fakesmsc, which sends nothing (-m 0) and prints every
// text it receives; a goroutine parses its output.
func (k *Kannel) startFakeSMSC(port int) {
	k.t.Helper()
	logf, err := os.Create(filepath.Join(k.dir, "fakesmsc.log"))
	if err != nil {
		k.t.Fatal(err)
	}
	cmd := exec.Command(FakeSMSC, "-H", "127.0.0.1", "-r", strconv.Itoa(port), "-m", "0", "1 2 text unused")
	cmd.Dir = k.dir
	cmd.SysProcAttr = procAttr()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		k.t.Fatalf("kanneltest: start fakesmsc: %v", err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	k.mu.Lock()
	k.procs["fakesmsc"] = p
	k.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		_ = pw.Close()
		close(p.done)
	}()
	go func() {
		defer logf.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			m := gotMessage.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			msg, err := parseMessage(m[1])
			if err != nil {
				fmt.Fprintf(logf, "kanneltest: cannot parse: %v\n", err)
				continue
			}
			k.mu.Lock()
			k.received = append(k.received, msg)
			k.mu.Unlock()
			select {
			case k.arrived <- struct{}{}:
			default:
			}
		}
	}()
}

// parseMessage reads fakesmsc's "from to type data".
func parseMessage(s string) (Message, error) {
	f := strings.SplitN(s, " ", 4)
	if len(f) < 4 {
		return Message{}, fmt.Errorf("%d fields in %q", len(f), s)
	}
	m := Message{From: f[0], To: f[1], Coding: f[2]}
	switch m.Coding {
	case "text":
		m.Text = f[3]
	case "ucs-2":
		b, err := url.QueryUnescape(f[3])
		if err != nil {
			return Message{}, err
		}
		if len(b)%2 != 0 {
			return Message{}, errors.New("odd UCS-2 length")
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
		}
		m.Text = string(utf16.Decode(u))
	default:
		b, err := url.QueryUnescape(f[3])
		if err != nil {
			return Message{}, err
		}
		m.Text = b
	}
	return m, nil
}

// Received returns every text received so far, oldest first.
func (k *Kannel) Received() []Message {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Message(nil), k.received...)
}

// Next waits up to timeout for the next text not yet handed out and
// returns it; the test fails when none comes.
func (k *Kannel) Next(t testing.TB, timeout time.Duration) Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		k.mu.Lock()
		if k.taken < len(k.received) {
			m := k.received[k.taken]
			k.taken++
			k.mu.Unlock()
			return m
		}
		k.mu.Unlock()
		select {
		case <-k.arrived:
		case <-deadline.C:
			t.Fatalf("kanneltest: no text reached the fake SMSC within %s", timeout)
			return Message{}
		}
	}
}

// Quiet fails the test if a text arrives within d (nothing should have been
// sent).
func (k *Kannel) Quiet(t testing.TB, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.taken < len(k.received) {
		t.Fatalf("kanneltest: unexpected text: %+v", k.received[k.taken:])
	}
}

// StopSMSBox kills smsbox: the sendsms port then refuses connections, as
// when Kannel is down.
func (k *Kannel) StopSMSBox() { k.kill("smsbox") }

// StartSMSBox starts smsbox again after StopSMSBox.
func (k *Kannel) StartSMSBox() {
	k.t.Helper()
	k.start("smsbox", Smsbox, "-v", "1", filepath.Join(k.dir, "kannel.conf"))
	k.waitStatus(func(s string) bool { return regexp.MustCompile(`smsbox:.*on-line`).MatchString(s) }, "smsbox to connect again")
	u, _ := url.Parse(k.SendURL)
	port, _ := strconv.Atoi(u.Port())
	k.waitAccept(port)
}

// Logs returns a process's output so far ("bearerbox", "smsbox",
// "fakesmsc").
func (k *Kannel) Logs(name string) string {
	b, _ := os.ReadFile(filepath.Join(k.dir, name+".log"))
	return string(b)
}

func (k *Kannel) kill(name string) {
	k.mu.Lock()
	p := k.procs[name]
	delete(k.procs, name)
	k.mu.Unlock()
	if p == nil {
		return
	}
	// No graceful shutdown: bearerbox takes seconds to drain, and a test's
	// temporary Kannel has nothing to keep.
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		k.t.Logf("kanneltest: %s did not exit 5 s after SIGKILL", name)
	}
}

func (k *Kannel) stopAll() {
	for _, name := range []string{"smsbox", "fakesmsc", "bearerbox"} {
		k.kill(name)
	}
}

func (k *Kannel) dumpLogs() {
	for _, name := range []string{"bearerbox", "smsbox", "fakesmsc"} {
		out := k.Logs(name)
		if len(out) > 8<<10 {
			out = "…" + out[len(out)-8<<10:]
		}
		k.t.Logf("kanneltest: %s output:\n%s", name, out)
	}
}

// waitStatus polls bearerbox's status page until ok holds (10 s at most).
func (k *Kannel) waitStatus(ok func(string) bool, what string) {
	k.t.Helper()
	c := &http.Client{Timeout: time.Second}
	var last string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		resp, err := c.Get(k.adminURL + "/status.txt?password=" + url.QueryEscape(k.adminPw))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		last = string(b)
		if ok(last) {
			return
		}
	}
	k.dumpLogs()
	k.t.Fatalf("kanneltest: waited 10 s for %s; status:\n%s", what, last)
}

// waitAccept waits until something accepts connections on port.
func (k *Kannel) waitAccept(port int) {
	k.t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(context.Background(), "tcp", addr)
		if err == nil {
			_ = c.Close()
			return
		}
	}
	k.dumpLogs()
	k.t.Fatalf("kanneltest: nothing accepts on %s after 10 s", addr)
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func randomHex(t testing.TB) string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}
