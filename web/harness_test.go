package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	delivery "github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/emailcode"
	"github.com/keygate/keygate/factors/recovery"
	"github.com/keygate/keygate/factors/sms"
	"github.com/keygate/keygate/factors/totp"
	fwa "github.com/keygate/keygate/factors/webauthn"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/problem"
)

// The harness runs the real parts: Badger on disk, authn users and
// sessions, the compiled policy, keygate's handler on a loopback listener,
// and a real upstream HTTP server that records what it received.

const (
	testUser     = "alice"
	testPassword = "correct-staple-battery-7"
)

// recorder is an upstream app that remembers the requests it got.
type recorder struct {
	mu     sync.Mutex
	reqs   []*http.Request
	bodies []string
	srv    *httptest.Server
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Clone(context.Background()))
		rec.bodies = append(rec.bodies, string(body))
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "upstream:"+r.URL.Path)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

// lastTo is the last request for path and its body; the browser's own
// requests (a favicon) may have come after it.
func (r *recorder) lastTo(t *testing.T, path string) (*http.Request, string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.reqs) - 1; i >= 0; i-- {
		if r.reqs[i].URL.Path == path {
			return r.reqs[i], r.bodies[i]
		}
	}
	t.Fatalf("the upstream received no request for %s", path)
	return nil, ""
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

func (r *recorder) last(t *testing.T) *http.Request {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		t.Fatal("the upstream received no request")
	}
	return r.reqs[len(r.reqs)-1]
}

type harnessOptions struct {
	policyYAML     string
	trustedProxies []string
	protectedHosts []string        // server.protected_hosts
	upstreamURL    string          // overrides the recorder (e.g. a dead port)
	dir            string          // reuse a data dir (restart tests)
	mail           delivery.Sender // nil = an outbox directory
	noMFA          bool            // the gateway without second factors
	regulation     authn.RegulationOptions
	metrics        *Metrics      // nil = none
	accessLog      *AccessLog    // nil = off
	admin          adminHook     // the admin area (admin_test.go); nil = off
	portalBody     time.Duration // the portal's body deadline; 0 = the default
	sms            sms.Sender    // registers the SMS factor with this gateway; nil = no SMS
	noWebAuthn     bool          // a keygate whose configuration has no webauthn section
}

// testClock is the one clock every part of the harness reads, so a test
// can move time (code expiry, TOTP steps) without waiting.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type harness struct {
	t        *testing.T
	clock    *testClock
	mfa      *authn.MFA
	outbox   *delivery.Outbox
	origin   string // http://localhost:PORT, for the browser
	dir      string
	kv       *badgerstore.Store
	users    *authn.Users
	hasher   *authn.Hasher // the users' (newMFA builds them again, telling the activity log)
	sessions *authn.Sessions
	reg      *authn.Regulator
	activity *activity.Log
	web      *Server
	srv      *httptest.Server
	up       *recorder

	noWebAuthn bool
}

const defaultTestPolicy = `
default: two_factor
rules:
  - name: public
    hosts: [app.example.com]
    paths: ["/static/*", "/favicon.ico"]
    action: bypass
  - name: closed
    hosts: [app.example.com]
    paths: ["/closed/**"]
    action: deny
  - name: admins-only
    hosts: [app.example.com]
    paths: ["/admin/**"]
    groups: [admins]
    action: one_factor
  - name: admin-others
    hosts: [app.example.com]
    paths: ["/admin/**"]
    action: deny
  - name: app
    hosts: [app.example.com, "*.apps.example.com"]
    action: one_factor
  - name: office-wiki
    hosts: [wiki.example.com]
    networks: ["10.0.0.0/8"]
    action: bypass
  - name: wiki
    hosts: [wiki.example.com]
    action: one_factor
`

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	// Real time, truncated to a TOTP step boundary plus 1 s, so a test
	// knows which step a code belongs to.
	start := time.Now().UTC().Truncate(30 * time.Second).Add(time.Second)
	h := &harness{t: t, dir: o.dir, up: newRecorder(t), clock: &testClock{t: start}, noWebAuthn: o.noWebAuthn}
	if h.dir == "" {
		h.dir = t.TempDir()
	}
	if o.policyYAML == "" {
		o.policyYAML = defaultTestPolicy
	}
	p, err := policy.Parse([]byte(o.policyYAML))
	if err != nil {
		t.Fatalf("parse policy: %v", err)
	}
	compiled, err := policy.CompileWith(p, policy.CompileOptions{Factors: []string{"webauthn", "totp", "email", "sms", "recovery"}})
	if err != nil {
		t.Fatalf("compile policy: %v", err)
	}
	holder := &policy.Holder{}
	holder.Store(compiled)

	h.kv, err = badgerstore.Open(badgerstore.Options{Path: h.dir})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	ctx := context.Background()
	// Cheap argon2 parameters: the tests exercise the flow, not the cost.
	hasher := authn.NewHasher(authn.Argon2Params{MemoryKiB: 8 << 10, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, 4)
	reg := o.regulation
	reg.Now = h.clock.Now
	h.reg = authn.NewRegulator(h.kv, reg)
	h.hasher = hasher
	h.users = authn.NewUsers(h.kv, authn.UserOptions{Hasher: hasher, Policy: authn.PasswordPolicy{MinLength: 12}, Now: h.clock.Now,
		Regulator: h.reg})
	h.sessions, err = authn.NewSessions(ctx, h.kv, authn.SessionOptions{IdleTimeout: 30 * time.Minute, Lifetime: 12 * time.Hour, Now: h.clock.Now})
	if err != nil {
		t.Fatalf("sessions: %v", err)
	}
	if _, err := h.users.Get(ctx, testUser); err != nil {
		for _, nu := range []authn.NewUser{
			{Username: testUser, Email: "alice@example.com", DisplayName: "Alice Example", Groups: []string{"admins", "dev"}, Password: testPassword, EmailVerified: true},
			{Username: "bob", Email: "bob@example.com", DisplayName: "Bob", Password: "violet-harbour-lantern-9"},
		} {
			if _, err := h.users.Add(ctx, nu); err != nil {
				t.Fatalf("add user %s: %v", nu.Username, err)
			}
		}
	}
	upURL := o.upstreamURL
	if upURL == "" {
		upURL = h.up.srv.URL
	}
	target, _ := url.Parse(upURL)
	// Listen first: the WebAuthn origin browsers report names the port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.origin = "http://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	if !o.noMFA {
		h.mfa = h.newMFA(o.mail, o.sms)
	}
	h.web, err = New(Options{
		MFA:               h.mfa,
		Problems:          []problem.Table{fwa.Problems, sms.Problems},
		RememberDevice:    30 * 24 * time.Hour,
		EmailEnrollment:   true,
		Parked:            authn.NewParkedRequests(h.kv, 0),
		PortalBodyTimeout: o.portalBody,
		Now:               h.clock.Now,
		Upstreams: []Upstream{
			{Host: "app.example.com", URL: target},
			{Host: "wiki.example.com", URL: target},
			{Host: "x.apps.example.com", URL: target},
			{Host: "localhost", URL: target}, // browser tests: localhost is a secure context
		},
		Policy:         holder,
		Users:          h.users,
		Sessions:       h.sessions,
		CookieDomain:   "example.com",
		TrustedProxies: o.trustedProxies,
		ProtectedHosts: o.protectedHosts,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:        o.metrics,
		AccessLog:      o.accessLog,
		Admin:          o.admin.build(h, holder),
	})
	if err != nil {
		t.Fatalf("web.New: %v", err)
	}
	h.srv = httptest.NewUnstartedServer(h.web)
	h.srv.Listener.Close()
	h.srv.Listener = ln
	h.srv.Start()
	t.Cleanup(h.close)
	return h
}

// newMFA wires the real factors on the harness's store and clock.
func (h *harness) newMFA(mail delivery.Sender, texts sms.Sender) *authn.MFA {
	t := h.t
	key := bytes.Repeat([]byte{42}, 32)
	sec := func(p string) *factors.Secrets {
		s, err := factors.NewSecrets(key, p)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tf, err := totp.New(h.kv, totp.Options{Issuer: "keygate-test", Now: h.clock.Now, Secrets: sec("totp")})
	if err != nil {
		t.Fatal(err)
	}
	rf, err := recovery.New(h.kv, recovery.Options{Now: h.clock.Now, Secrets: sec("recovery")})
	if err != nil {
		t.Fatal(err)
	}
	if mail == nil {
		if h.outbox, err = delivery.NewOutbox(filepath.Join(t.TempDir(), "outbox"), "keygate <keygate@example.com>"); err != nil {
			t.Fatal(err)
		}
		mail = h.outbox
	}
	ef, err := emailcode.New(h.kv, mail, emailcode.Options{Now: h.clock.Now, Secrets: sec("email")})
	if err != nil {
		t.Fatal(err)
	}
	wf, err := fwa.New(h.kv, fwa.Options{RPID: "localhost", RPName: "keygate test", Origins: []string{h.origin}, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	set := factors.Set{wf, tf, ef, rf}
	if texts != nil {
		sf, err := sms.New(h.kv, sec("sms"), texts, sms.Options{Now: h.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		set = factors.Set{wf, tf, ef, sf, rf}
	}
	if h.noWebAuthn {
		set = slices.DeleteFunc(set, func(f factors.Factor) bool { return f.Kind() == fwa.Kind })
	}
	notices := activity.NewNotices(mail, "keygate", nil, h.clock.Now)
	h.activity = activity.NewLog(h.kv, activity.Options{Notices: notices, PortalURL: h.origin, Now: h.clock.Now})
	h.users = authn.NewUsers(h.kv, authn.UserOptions{Hasher: h.hasher, Policy: authn.PasswordPolicy{MinLength: 12}, Now: h.clock.Now,
		Regulator: h.reg, Events: h.activity})
	return authn.NewMFA(h.users, h.sessions, authn.MFAOptions{
		Factors:            set,
		Devices:            authn.NewDevices(h.kv, h.clock.Now),
		Links:              authn.NewEnrollLinks(h.kv, h.clock.Now),
		EmailEnrollment:    true,
		PasskeyIsTwoFactor: true,
		Regulator:          h.reg,
		Activity:           h.activity,
		Now:                h.clock.Now,
		Recoveries: authn.NewRecoveryRequests(h.kv, authn.RecoveryOptions{PortalURL: h.origin, Now: h.clock.Now,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}),
	})
}

// close stops the server and closes the store; safe to call twice.
func (h *harness) close() {
	if h.srv != nil {
		h.srv.Close()
		h.srv = nil
	}
	if h.kv != nil {
		_ = h.sessions.Flush(context.Background())
		_ = h.kv.Close()
		h.kv = nil
	}
}

// client returns a browser-like client: a cookie jar, no automatic
// redirects, and every host name dialled to keygate's listener.
func (h *harness) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	addr := h.srv.Listener.Addr().String()
	return &http.Client{
		Jar: jar,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

type reqOpt func(*http.Request)

func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Add(k, v) } }

func setHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

func (h *harness) do(c *http.Client, method, rawURL, body string, opts ...reqOpt) (*http.Response, string) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, rawURL, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	for _, o := range opts {
		o(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// login signs in through the JSON API and returns the decoded answer.
func (h *harness) login(c *http.Client, user, password, rd string) (*http.Response, map[string]any) {
	h.t.Helper()
	b, _ := json.Marshal(map[string]string{"username": user, "password": password, "rd": rd})
	resp, body := h.do(c, http.MethodPost, "http://app.example.com/.keygate/api/login", string(b),
		withHeader("Content-Type", "application/json"))
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		h.t.Fatalf("login answer is not JSON (%d): %q", resp.StatusCode, body)
	}
	return resp, out
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			return c
		}
	}
	return nil
}
