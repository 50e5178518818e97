package webauthn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// browser is the one Chromium of this test binary.
var browser browsertest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	if err := browser.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// openStore opens a real Badger store in a temp dir, closed after the test.
func openStore(t testing.TB) *badgerstore.Store {
	t.Helper()
	kv, err := badgerstore.Open(badgerstore.Options{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Close() })
	return kv
}

// fakeClock is a settable clock for ceremony expiry.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// env is a factor on a real store, optionally with a test page server on
// http://localhost:PORT whose JSON endpoints call the factor.
type env struct {
	kv     *badgerstore.Store
	f      *Factor
	origin string
	srv    *testServer
}

// newEnv makes a factor on a fresh store for origin http://localhost:PORT,
// with the page server listening there. mod adjusts the options.
func newEnv(t testing.TB, mod func(*Options)) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "localhost:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{kv: openStore(t), origin: fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)}
	e.f = e.factor(t, mod)
	e.srv = &testServer{f: e.f}
	hs := &http.Server{Handler: e.srv.routes(t), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	return e
}

// factor makes another Factor on the same store and origin.
func (e *env) factor(t testing.TB, mod func(*Options)) *Factor {
	t.Helper()
	opt := Options{RPID: "localhost", RPName: "keygate test", Origins: []string{e.origin}, CeremonyTTL: 30 * time.Second}
	if mod != nil {
		mod(&opt)
	}
	f, err := New(e.kv, opt)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// page opens the test page (with no authenticators yet).
func (e *env) page(t testing.TB) *browsertest.Page {
	t.Helper()
	return browser.Get(t).NewPage(t, e.origin+"/")
}

// record returns the user's stored record and its raw bytes.
func (e *env) record(t testing.TB, user string) (*userRecord, []byte) {
	t.Helper()
	it, err := e.kv.Get(context.Background(), userKey(user))
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := e.f.loadUser(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return r, it.Value
}

// setRecord overwrites the user's record (tests tampering with storage).
func (e *env) setRecord(t testing.TB, user string, r *userRecord) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.kv.Set(context.Background(), userKey(user), b, store.WriteOptions{Durable: true}); err != nil {
		t.Fatal(err)
	}
}

// unchanged fails when the user's stored record differs from before.
func (e *env) unchanged(t testing.TB, user string, before []byte) {
	t.Helper()
	if _, now := e.record(t, user); !bytes.Equal(now, before) {
		t.Errorf("stored record of %s changed:\nbefore %s\nafter  %s", user, before, now)
	}
}

// outcome is what the test page's kg.ceremony returns.
type outcome struct {
	Ceremony   string          `json:"ceremony"`
	Response   json.RawMessage `json:"response"`
	JSError    string          `json:"jsError"`
	Message    string          `json:"message"`
	BeginError string          `json:"beginError"`
	Finish     *finishAnswer   `json:"finish"`
}

type finishAnswer struct {
	OK         bool               `json:"ok"`
	Error      string             `json:"error"`
	Credential factors.Credential `json:"credential"`
	Assertion  Assertion          `json:"assertion"`
	Username   string             `json:"username"`
}

// run drives one ceremony through the page: begin (endpoint), the browser
// with the virtual authenticators, and finish (endpoint) unless noFinish.
func run(t testing.TB, p *browsertest.Page, op ceremonyOp, user string, kind AuthenticatorKind, name string, noFinish bool) outcome {
	t.Helper()
	var o outcome
	p.EvalInto(t, &o, `(op, user, kind, name, finish) => window.kg.ceremony(op, user, kind, name, finish)`,
		string(op), user, string(kind), name, !noFinish)
	if o.BeginError != "" {
		t.Fatalf("%s %s: begin: %s", op, user, o.BeginError)
	}
	return o
}

// mustRun is run expecting the ceremony to succeed end to end.
func mustRun(t testing.TB, p *browsertest.Page, op ceremonyOp, user string, kind AuthenticatorKind, name string) finishAnswer {
	t.Helper()
	o := run(t, p, op, user, kind, name, false)
	if o.JSError != "" {
		t.Fatalf("%s %s: browser: %s (%s)", op, user, o.JSError, o.Message)
	}
	if o.Finish == nil || !o.Finish.OK {
		t.Fatalf("%s %s: finish refused: %+v (%v)", op, user, o.Finish, o.Finish != nil)
	}
	return *o.Finish
}

// browserSign runs navigator.credentials.get (through webauthn.js) on
// options made in Go and returns the response JSON, for tests that finish
// the ceremony themselves.
func browserSign(t testing.TB, p *browsertest.Page, options json.RawMessage) json.RawMessage {
	t.Helper()
	var o struct {
		Response json.RawMessage `json:"response"`
		JSError  string          `json:"jsError"`
	}
	p.EvalInto(t, &o, `(options) => window.kg.sign(options)`, options)
	if o.JSError != "" {
		t.Fatalf("browser: %s", o.JSError)
	}
	return o.Response
}

// browserCreate runs navigator.credentials.create (through webauthn.js) on
// options made in Go and returns the response JSON.
func browserCreate(t testing.TB, p *browsertest.Page, options json.RawMessage) json.RawMessage {
	t.Helper()
	var o struct {
		Response json.RawMessage `json:"response"`
		JSError  string          `json:"jsError"`
	}
	p.EvalInto(t, &o, `(options) => window.kg.create(options)`, options)
	if o.JSError != "" {
		t.Fatalf("browser: %s", o.JSError)
	}
	return o.Response
}

// enrol registers user's authenticator on page p with factor f, in Go.
func enrol(t testing.TB, f *Factor, p *browsertest.Page, user string, kind AuthenticatorKind) (factors.Credential, error) {
	t.Helper()
	opts, id, err := f.BeginRegistration(context.Background(), User{Username: user}, kind)
	if err != nil {
		t.Fatal(err)
	}
	return f.FinishRegistration(context.Background(), User{Username: user}, id, browserCreate(t, p, opts), "")
}

// signIn runs a second-factor login of user on page p with factor f, in Go.
func signIn(t testing.TB, f *Factor, p *browsertest.Page, user string) (Assertion, error) {
	t.Helper()
	opts, id, err := f.BeginLogin(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return f.FinishLogin(context.Background(), user, id, browserSign(t, p, opts))
}

// testServer is the tiny page server: the page, webauthn.js from the
// repository and JSON endpoints calling the factor.
type testServer struct {
	f *Factor
}

// webauthnJS is the module under test, served from the repository.
func webauthnJS(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "web", "static", "webauthn.js")
}

const testPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>keygate webauthn test</title>
<script type="module" src="/t.js"></script></head>
<body><p id="status">ready</p></body></html>`

// testScript drives ceremonies for the Go tests. It imports webauthn.js
// exactly as the portal does.
const testScript = `import { register, authenticate } from "/webauthn.js";
async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  return r.json();
}
window.kg = {
  raw: { register, authenticate },
  async ceremony(op, user, kind, name, finish) {
    const b = await post("/begin", { op, user, kind });
    if (b.error) return { beginError: b.error };
    let response;
    try {
      response = op === "register" ? await register(b.options) : await authenticate(b.options);
    } catch (e) {
      return { ceremony: b.ceremony, jsError: e.code || "unknown", message: String(e.message) };
    }
    if (!finish) return { ceremony: b.ceremony, response };
    const f = await post("/finish", { op, user, ceremony: b.ceremony, response, name });
    return { ceremony: b.ceremony, response, finish: f };
  },
  async sign(options) {
    try { return { response: await authenticate(options) }; }
    catch (e) { return { jsError: e.code || "unknown", message: String(e.message) }; }
  },
  async create(options) {
    try { return { response: await register(options) }; }
    catch (e) { return { jsError: e.code || "unknown", message: String(e.message) }; }
  },
};
`

func (s *testServer) routes(t testing.TB) http.Handler {
	jsFile := webauthnJS(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'")
		_, _ = w.Write([]byte(testPage))
	})
	mux.HandleFunc("GET /t.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write([]byte(testScript))
	})
	mux.HandleFunc("GET /webauthn.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, jsFile)
	})
	mux.HandleFunc("POST /begin", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Op, User, Kind string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, map[string]string{"error": err.Error()})
			return
		}
		var (
			opts json.RawMessage
			id   string
			err  error
		)
		switch ceremonyOp(req.Op) {
		case opRegister:
			opts, id, err = s.f.BeginRegistration(r.Context(), User{Username: req.User, DisplayName: req.User}, AuthenticatorKind(req.Kind))
		case opLogin:
			opts, id, err = s.f.BeginLogin(r.Context(), req.User)
		case opPasskey:
			opts, id, err = s.f.BeginPasskey(r.Context())
		default:
			err = errors.New("unknown op")
		}
		if err != nil {
			writeJSON(w, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, map[string]any{"options": opts, "ceremony": id})
	})
	mux.HandleFunc("POST /finish", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Op, User, Ceremony, Name string
			Response                 json.RawMessage
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, map[string]string{"error": err.Error()})
			return
		}
		var (
			ans finishAnswer
			err error
		)
		switch ceremonyOp(req.Op) {
		case opRegister:
			ans.Credential, err = s.f.FinishRegistration(r.Context(), User{Username: req.User, DisplayName: req.User}, req.Ceremony, req.Response, req.Name)
		case opLogin:
			ans.Assertion, err = s.f.FinishLogin(r.Context(), req.User, req.Ceremony, req.Response)
		case opPasskey:
			ans.Username, ans.Assertion, err = s.f.FinishPasskey(r.Context(), req.Ceremony, req.Response)
		default:
			err = errors.New("unknown op")
		}
		if err != nil {
			ans.Error = err.Error()
			var ve *VerifyError
			if errors.As(err, &ve) {
				ans.Error = ve.Reason
			}
		}
		ans.OK = err == nil
		writeJSON(w, ans)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// verifyReason fails unless err is a *VerifyError with the reason.
func verifyReason(t testing.TB, err error, reason string) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T): want VerifyError %q", err, err, reason)
	}
	if ve.Reason != reason {
		t.Fatalf("VerifyError reason %q (%v): want %q", ve.Reason, ve.Err, reason)
	}
}
