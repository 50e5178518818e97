package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sms"
	fwa "github.com/keygate/keygate/factors/webauthn"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/problem"
)

// rendererServer is a Server with what the renderer needs and nothing
// else: catalogues, pages, a log, a fixed clock.
func rendererServer(t *testing.T, now time.Time) *Server {
	t.Helper()
	tr, err := loadTranslator()
	if err != nil {
		t.Fatal(err)
	}
	p, err := loadPages()
	if err != nil {
		t.Fatal(err)
	}
	return &Server{tr: tr, pages: p, log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }, tables: testTables}
}

// testTables are the tables a server gets when cmd registers the factors
// with tables of their own (WebAuthn's, SMS's).
var testTables = problemTables(fwa.Problems, sms.Problems)

// answerCase is one error the renderer must answer, and how.
type answerCase struct {
	name   string
	err    error
	status int
	code   string
}

// everyAnswer lists every row of every owner's table, every typed error
// in each of its shapes, and web's own refusals.
func everyAnswer(now time.Time) []answerCase {
	var out []answerCase
	for _, t := range testTables {
		for _, e := range t {
			out = append(out, answerCase{e.Code + "/" + e.Err.Error(), e.Err, statusOf(e.Class), e.Code})
		}
	}
	for _, e := range webProblems {
		out = append(out, answerCase{"web/" + e.Code + "/" + e.Key, e, e.Status, e.Code})
	}
	until := now.Add(90 * time.Minute)
	out = append(out,
		answerCase{"locked account", &authn.LockedError{Until: until, Ticket: "t"}, http.StatusTooManyRequests, "account_locked"},
		answerCase{"locked address", &authn.LockedError{Until: until, Network: true}, http.StatusTooManyRequests, "address_locked"},
		answerCase{"locked reported", &authn.LockedError{Reported: true}, http.StatusForbidden, "account_locked"},
		answerCase{"cooldown", &factors.CooldownError{Until: now.Add(41500 * time.Millisecond)}, http.StatusTooManyRequests, "cooldown"},
		answerCase{"cap", &factors.CapError{Until: until}, http.StatusTooManyRequests, "too_many_codes"},
		answerCase{"webauthn other reason", &fwa.VerifyError{Reason: fwa.ReasonBadSignature}, http.StatusUnauthorized, "assertion_refused"},
	)
	for s := factors.StrengthNone; s <= factors.StrengthHardware; s++ {
		code := "stronger_proof_required"
		if s <= factors.StrengthCode {
			code = "elevation_required"
		}
		out = append(out, answerCase{"weak proof " + s.String(), &authn.WeakProofError{Need: s, Kinds: []string{"webauthn"}}, http.StatusForbidden, code})
	}
	for _, r := range []string{fwa.ReasonAlreadyRegistered, fwa.ReasonNotAllowed, fwa.ReasonMalformed, fwa.ReasonSuspended} {
		ve := &fwa.VerifyError{Reason: r}
		p := ve.Problem(now)
		out = append(out, answerCase{"webauthn " + r, ve, statusOf(p.Class), p.Code})
	}
	return out
}

// Every answer renders as JSON with its status and code and a message in
// English and Russian, and as a page with that message; no message key is
// missing from either catalogue.
func TestErrorTableRenders(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	s := rendererServer(t, now)
	for _, tc := range everyAnswer(now) {
		t.Run(tc.name, func(t *testing.T) {
			e := s.problem(tc.err)
			if e.Status != tc.status || e.Code != tc.code {
				t.Fatalf("answer %d %q, want %d %q", e.Status, e.Code, tc.status, tc.code)
			}
			for _, lang := range []string{"en", "ru"} {
				cat := s.tr.pick(lang)
				if cat.Lang() != lang {
					t.Fatalf("catalogue %q picked for %q", cat.Lang(), lang)
				}
				if _, ok := cat.msgs[e.Key]; !ok {
					t.Fatalf("%s catalogue has no %q", lang, e.Key)
				}
				want := message(cat, e)
				if strings.Contains(want, "%!") {
					t.Fatalf("%s message %q does not take its arguments %v", lang, want, e.Args)
				}

				w := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodGet, apiPrefix+"x", nil)
				r.Header.Set("Accept-Language", lang)
				s.failHTTP(w, r, tc.err)
				var body map[string]any
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
					t.Fatalf("JSON answer: %v: %s", err, w.Body)
				}
				if w.Code != tc.status || body["error"] != tc.code || body["message"] != want {
					t.Fatalf("JSON %d %v, want %d {error: %q, message: %q}", w.Code, body, tc.status, tc.code, want)
				}

				w = httptest.NewRecorder()
				r = httptest.NewRequest(http.MethodGet, portalPrefix+"x", nil)
				r.Header.Set("Accept", "text/html")
				r.Header.Set("Accept-Language", lang)
				s.failHTTP(w, r, tc.err)
				if w.Code != tc.status || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") ||
					!strings.Contains(w.Body.String(), html.EscapeString(want)) {
					t.Fatalf("page %d %q lacks %q", w.Code, w.Header().Get("Content-Type"), want)
				}
			}
		})
	}
}

// No row of a table is dead: each sentinel is answered by its own row, not
// by an earlier one it happens to match (a row shadowed that way would
// never be used, and its answer would silently be another's).
func TestErrorTableRowsReachable(t *testing.T) {
	seen := map[error]string{}
	for _, tab := range testTables {
		for _, e := range tab {
			if prev, dup := seen[e.Err]; dup {
				t.Errorf("%v is in two rows (%s and %s)", e.Err, prev, e.Code)
				continue
			}
			seen[e.Err] = e.Code
			p, ok := problem.Find(e.Err, time.Time{}, testTables...)
			if !ok || p.Code != e.Code || p.Key != e.Key || p.Class != e.Class {
				t.Errorf("%v is answered %+v, not by its own row %q/%q", e.Err, p, e.Code, e.Key)
			}
		}
	}
}

// The values an answer shows: the wait in whole seconds (rounded up) on
// the renderer's clock, the lock's end and ticket, the kinds to confirm
// with; and a wrapped domain error is answered as itself.
func TestErrorAnswerValues(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	s := rendererServer(t, now)

	e := s.problem(fmt.Errorf("send: %w", &factors.CooldownError{Until: now.Add(41500 * time.Millisecond)}))
	if e.Extra["retry_after"] != 42 || len(e.Args) != 1 || e.Args[0] != 42*time.Second {
		t.Errorf("cooldown: %+v", e)
	}
	if got := message(s.tr.pick("en"), e); !strings.Contains(got, "in 42 seconds.") {
		t.Errorf("cooldown message %q", got)
	}
	// Looked at early on another clock, answered on the renderer's.
	if e := s.problem(problemOf(&factors.CooldownError{Until: now.Add(41500 * time.Millisecond)}, time.Now(), testTables)); e.Extra["retry_after"] != 42 {
		t.Errorf("cooldown looked at early: %+v", e.Extra)
	}
	if e := s.problem(&factors.CooldownError{Until: now.Add(-time.Second)}); e.Extra["retry_after"] != 1 {
		t.Errorf("a past cooldown says wait %v, want 1", e.Extra["retry_after"])
	}
	if e := s.problem(&factors.CapError{Until: now.Add(10 * time.Minute)}); e.Extra["retry_after"] != 600 {
		t.Errorf("cap: %+v", e)
	}

	until := now.Add(time.Hour)
	e = s.problem(&authn.LockedError{Until: until, Ticket: "tkt"})
	if e.Extra["locked_until"] != until.Format(time.RFC3339) || e.Extra["unlock_ticket"] != "tkt" ||
		!strings.Contains(message(s.tr.pick("en"), e), "2026-12-03 13:00 UTC") {
		t.Errorf("locked: %+v", e)
	}
	if !errors.Is(e, authn.ErrLocked) {
		t.Error("the answer lost its cause: errors.Is(answer, ErrLocked) is false")
	}
	e = s.problem(&authn.LockedError{Reported: true})
	if _, ok := e.Extra["locked_until"]; ok {
		t.Errorf("a reported lock has no end: %+v", e.Extra)
	}

	e = s.problem(&authn.WeakProofError{Need: factors.StrengthHardware})
	if need, ok := e.Extra["need"].([]string); !ok || len(need) != 0 || e.Extra["need_strength"] != "hardware" ||
		e.Key != "err.stronger_proof.hardware" {
		t.Errorf("weak proof: %+v", e)
	}

	// The shared refusal wrapped by a factor's own: the factor's row wins.
	joined := fmt.Errorf("%w: %w", factors.ErrWrongResponse, &fwa.VerifyError{Reason: fwa.ReasonAlreadyRegistered})
	if e := s.problem(joined); e.Code != "already_registered" || e.Status != http.StatusConflict {
		t.Errorf("joined: %+v", e)
	}
	// Unknown errors are internal, the cause kept for the log only.
	cause := errors.New("disk on fire")
	e = s.problem(cause)
	if e.Status != http.StatusInternalServerError || e.Code != "internal" || !errors.Is(e, cause) {
		t.Errorf("unknown: %+v", e)
	}
	w := httptest.NewRecorder()
	s.failHTTP(w, httptest.NewRequest(http.MethodGet, apiPrefix+"x", nil), cause)
	if strings.Contains(w.Body.String(), "disk") {
		t.Errorf("the cause leaked: %s", w.Body)
	}
	// A sub-package's answer keeps the status it fixed.
	e = s.problem(fmt.Errorf("wrapped: %w", fixedAnswer{}))
	if e.Status != http.StatusPreconditionRequired || e.Code != "if_match_required" {
		t.Errorf("sub-package answer: %+v", e)
	}
}

// fixedAnswer stands for a sub-package's error type (web/admin's) that
// fixes its own status.
type fixedAnswer struct{}

func (fixedAnswer) Error() string { return "if-match required" }
func (fixedAnswer) HTTPAnswer() (int, problem.Problem) {
	return http.StatusPreconditionRequired, problem.Problem{Code: "if_match_required", Key: "err.if_match_required"}
}

// web's own refusals are shared values: because and with copy them.
func TestErrorValuesUnchanged(t *testing.T) {
	e := errNotSignedIn.because(errors.New("x")).with(map[string]any{"a": 1})
	if errNotSignedIn.Cause != nil || errNotSignedIn.Extra != nil || errNotSignedIn.Status != http.StatusUnauthorized {
		t.Fatalf("the shared value changed: %+v", errNotSignedIn)
	}
	if !errors.Is(e, errNotSignedIn) || e.Extra["a"] != 1 || e.Cause == nil {
		t.Fatalf("copy: %+v", e)
	}
}

// handle renders what a handler returns, once, and leaves an answered
// request alone.
func TestHandleRendersReturnedError(t *testing.T) {
	s := rendererServer(t, time.Now())
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	reached := false
	e.GET("/.keygate/api/fail", s.handle(func(*gin.Context) error { return authn.ErrInvalidCredentials }), func(*gin.Context) { reached = true })
	e.GET("/.keygate/api/ok", s.handle(func(c *gin.Context) error { c.String(http.StatusTeapot, "tea"); return nil }))

	w := httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.keygate/api/fail", nil))
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != http.StatusUnauthorized || body["error"] != "invalid_credentials" {
		t.Errorf("fail: %d %s", w.Code, w.Body)
	}
	if reached {
		t.Error("the chain went on after the error was rendered")
	}
	w = httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.keygate/api/ok", nil))
	if w.Code != http.StatusTeapot || w.Body.String() != "tea" {
		t.Errorf("ok: %d %s", w.Code, w.Body)
	}
}

// decide is the one judgement: the same question gets the same answer
// whether the caller read the path or not; refusals come before any rule;
// a POST is judged as the methods an app may read from it unless its
// upstream says it does not; keygate's own path is judged, not refused.
func TestDecide(t *testing.T) {
	pol, err := policy.Compile(policy.Policy{Default: policy.ActionDeny, Rules: []policy.Rule{
		{Name: "public", Paths: []string{"/public/**"}, Action: policy.ActionBypass},
		{Name: "delete", Paths: []string{"/items/*"}, Methods: []string{"DELETE"}, Action: policy.ActionDeny},
		{Name: "items", Paths: []string{"/items/**"}, Action: policy.ActionBypass},
		{Name: "admin", Paths: []string{"/.keygate/**"}, Action: policy.ActionOneFactor},
	}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ask := func(q question) (policy.Decision, error) {
		q.pol, q.now, q.host = pol, now, "app.test"
		return decide(&q, nil)
	}
	if d, err := ask(question{path: "/public/a", method: http.MethodGet}); err != nil || d.Outcome != policy.Allow {
		t.Errorf("public: %v %v", d.Outcome, err)
	}
	// One reading denies: the whole request is denied.
	if d, err := ask(question{path: "/public/..%2Fsecret", method: http.MethodGet}); err == nil && d.Outcome == policy.Allow {
		t.Errorf("a path leaving /public/ passed: %v", d.Outcome)
	}
	var buf [policy.MaxReadings]policy.Reading
	rs, err := readings(nil, "/public/a", buf[:0])
	if err != nil {
		t.Fatal(err)
	}
	q := question{pol: pol, now: now, host: "app.test", path: "/public/a", method: http.MethodGet}
	if d, err := decide(&q, rs); err != nil || d.Outcome != policy.Allow {
		t.Errorf("public with readings: %v %v", d.Outcome, err)
	}
	for _, tc := range []struct {
		path, method string
		want         error
	}{
		{"/.keygate/x", http.MethodGet, policy.ErrReserved},
		{"/%2e%6beygate/x", http.MethodGet, policy.ErrReserved},
		{"/a/../b", http.MethodGet, policy.ErrBadPath},
		{"/public/a", "get", errBadMethod},
	} {
		if d, err := ask(question{path: tc.path, method: tc.method}); !errors.Is(err, tc.want) || d.Outcome != 0 {
			t.Errorf("%s %s: %v %v, want %v", tc.method, tc.path, d.Outcome, err, tc.want)
		}
	}
	// A POST to /items/x may be a DELETE to the app (_method).
	if d, _ := ask(question{path: "/items/x", method: http.MethodPost}); d.Outcome != policy.Deny {
		t.Errorf("overridable POST: %v", d.Outcome)
	}
	up := &upstream{paths: pathOptions{NoMethodOverride: true}}
	if d, _ := ask(question{up: up, path: "/items/x", method: http.MethodPost}); d.Outcome != policy.Allow {
		t.Errorf("POST to an app without method override: %v", d.Outcome)
	}
	if q := (&question{up: up, method: http.MethodPost}); q.request().Overridable {
		t.Error("request(): overridable despite method_override: false")
	}
	// keygate's own path, for the admin guard.
	if d, err := ask(question{path: "/.keygate/admin", method: http.MethodGet, own: true}); err != nil || d.Outcome != policy.Challenge {
		t.Errorf("own path: %v %v", d.Outcome, err)
	}
}
