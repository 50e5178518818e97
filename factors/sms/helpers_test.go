package sms_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sms"
	"github.com/keygate/keygate/factors/sms/gateway"
	"github.com/keygate/keygate/factors/sms/kanneltest"
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

func openStore(t *testing.T) *badgerstore.Store {
	t.Helper()
	kv, err := badgerstore.Open(badgerstore.Options{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Close() })
	return kv
}

func newSecrets(t *testing.T) *factors.Secrets {
	t.Helper()
	s, err := factors.NewSecrets(bytes.Repeat([]byte{7}, 32), "sms")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type env struct {
	kv      *badgerstore.Store
	clock   *clock
	secrets *factors.Secrets
	f       *sms.Factor
	phone   *phone // the HTTP gateway's receiving end, when used
	kannel  *kanneltest.Kannel
}

// factor makes a Factor over the env's store, clock and key with sender.
func (e *env) factor(t *testing.T, sender sms.Sender, opt sms.Options) *sms.Factor {
	t.Helper()
	opt.Now = e.clock.Now
	f, err := sms.New(e.kv, e.secrets, sender, opt)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func baseEnv(t *testing.T) *env {
	return &env{kv: openStore(t), clock: newClock(), secrets: newSecrets(t)}
}

// newKannelEnv is the factor sending through a real Kannel to its fake
// SMSC.
func newKannelEnv(t *testing.T, method string, opt sms.Options) *env {
	t.Helper()
	e := baseEnv(t)
	e.kannel = kanneltest.Start(t)
	e.f = e.factor(t, e.kannelGateway(t, method, e.kannel.Password), opt)
	return e
}

func (e *env) kannelGateway(t *testing.T, method, password string) *gateway.Kannel {
	t.Helper()
	g, err := gateway.NewKannel(gateway.KannelOptions{
		URL: e.kannel.SendURL, Username: e.kannel.Username, Password: password,
		From: "keygate", Method: method, Timeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// newPhoneEnv is the factor sending through the HTTP gateway to a real
// loopback HTTP server standing in for a hosted SMS API: the tests of a
// code's life (expiry, tries, cooldown, cap) need a clock, not Kannel.
func newPhoneEnv(t *testing.T, opt sms.Options) *env {
	t.Helper()
	e := baseEnv(t)
	e.phone = newPhone(t)
	e.f = e.factor(t, e.phone.gateway(t), opt)
	return e
}

// phone is a loopback SMS API that keeps what it was asked to send and
// can be told to fail.
type phone struct {
	srv    *httptest.Server
	mu     sync.Mutex
	texts  []sms.Message
	status int // answer; 200 when 0
}

func newPhone(t *testing.T) *phone {
	p := &phone{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct{ To, Text string }
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &m); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.status != 0 && p.status != http.StatusOK {
			w.WriteHeader(p.status)
			return
		}
		p.texts = append(p.texts, sms.Message{To: m.To, Text: m.Text})
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *phone) gateway(t *testing.T) *gateway.HTTP {
	t.Helper()
	g, err := gateway.NewHTTP(gateway.HTTPOptions{URL: p.srv.URL + "/send", Body: `{"to": {{json .To}}, "text": {{json .Text}}}`})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (p *phone) fail(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = status
}

func (p *phone) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.texts)
}

// last is the newest text sent.
func (p *phone) last(t *testing.T) sms.Message {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.texts) == 0 {
		t.Fatal("no text was sent")
	}
	return p.texts[len(p.texts)-1]
}

var codeIn = regexp.MustCompile(`\b(\d{6,10})\b`)

// code finds the code in a text.
func code(t *testing.T, text string) string {
	t.Helper()
	m := codeIn.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no code in %q", text)
	}
	return m[1]
}

// wrong is a well-formed code other than c.
func wrong(c string) string {
	b := []byte(c)
	b[len(b)-1] = '0' + (b[len(b)-1]-'0'+1)%10
	return string(b)
}

const number = "+447700900123"

// enroll confirms number for s through the phone and returns the
// credential.
func (e *env) enroll(t *testing.T, s factors.Subject, num string) factors.Credential {
	t.Helper()
	en, err := e.f.Enroll(ctx, s, factors.EnrollRequest{Address: num})
	if err != nil {
		t.Fatal(err)
	}
	cred, err := e.f.ConfirmEnroll(ctx, s, en.ID, factors.Response{Code: code(t, e.phone.last(t).Text)}, "")
	if err != nil {
		t.Fatal(err)
	}
	return cred
}
