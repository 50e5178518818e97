package web

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/problem"
)

// Errors become answers in one place. Handlers return errors; the renderer
// (fail) turns each into a status, a stable code for API clients and a
// message people can act on, as JSON {error, message} for API requests and
// as the portal's page for browsers. What an error means is said next to
// its owner:
//
//   - domain errors (authn, factors, policy, mail, a factor package) in
//     that package's problem.Table or by the typed error itself
//     (problem.Describer), in classes rather than HTTP statuses;
//   - web's own refusals (a host, a path, a body, a proxy) below, as
//     *Error values with their status.
//
// An error nothing knows is internal: 500, the cause logged, not shown.

// Error is web's answer to a request it refuses: a status, a stable code
// for API clients, a message key shown to people, and the internal cause
// for logs only (never rendered).
type Error struct {
	Status int
	Code   string // JSON "error"
	Key    string // catalog key of the human message
	Args   []any  // values for the message's verbs (e.g. seconds left)
	Cause  error
	// Extra fields for JSON answers (e.g. login_url).
	Extra map[string]any
	// owned: the answer is what Cause's owner says (a problem table or
	// a Describer), so the renderer says it again on its own clock (a
	// wait in seconds read elsewhere would be stale or on another clock).
	owned bool
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Cause.Error()
	}
	return e.Code
}

func (e *Error) Unwrap() error { return e.Cause }

// HTTPAnswer makes *Error an httpAnswer.
func (e *Error) HTTPAnswer() (int, problem.Problem) {
	return e.Status, problem.Problem{Code: e.Code, Key: e.Key, Args: e.Args, Extra: e.Extra}
}

// httpAnswer is an error that fixes its own status and answer: web's
// *Error, and the like of sub-packages that cannot use web's type (web
// imports them to mount them), such as web/admin's answers whose status
// HTTP itself fixes (412, 422, 428). The renderer keeps them as they are.
type httpAnswer interface {
	error
	HTTPAnswer() (status int, p problem.Problem)
}

// Is matches another *Error with the same answer, so that callers and
// tests can ask errors.Is(err, errNotSignedIn) of a copy with a cause.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status && t.Code == e.Code && t.Key == e.Key
}

// because is e with an internal cause, for the log. e itself is shared and
// never changed.
func (e *Error) because(cause error) *Error {
	cp := *e
	cp.Cause = cause
	return &cp
}

// with is e with more JSON fields (which replace e's own of the same name).
func (e *Error) with(extra map[string]any) *Error {
	cp := *e
	cp.Extra = make(map[string]any, len(e.Extra)+len(extra))
	for k, v := range e.Extra {
		cp.Extra[k] = v
	}
	for k, v := range extra {
		cp.Extra[k] = v
	}
	return &cp
}

// errf makes a one-off *Error. Prefer a named value of webProblems (or a
// domain error with a table entry): those are the ones the catalogue test
// checks.
func errf(status int, code, key string, cause error) *Error {
	return &Error{Status: status, Code: code, Key: key, Cause: cause}
}

// web's own refusals: what no domain package knows (hosts, paths, bodies,
// proxies, sessions as the portal sees them). Shared values: never
// changed, copied by because and with.
var (
	errBadRequest      = &Error{Status: http.StatusBadRequest, Code: "bad_request", Key: "err.bad_request"}
	errBadMethod       = &Error{Status: http.StatusBadRequest, Code: "bad_method", Key: "err.bad_request"}
	errH2CUpgrade      = &Error{Status: http.StatusBadRequest, Code: "h2c_upgrade", Key: "err.bad_request"}
	errMissingCreds    = &Error{Status: http.StatusBadRequest, Code: "missing_credentials", Key: "err.missing_credentials"}
	errMissingCode     = &Error{Status: http.StatusBadRequest, Code: "missing_code", Key: "err.missing_code"}
	errNoSuchFactor    = &Error{Status: http.StatusNotFound, Code: "not_found", Key: "err.not_found"}
	errNotSignedIn     = &Error{Status: http.StatusUnauthorized, Code: "not_signed_in", Key: "err.not_signed_in"}
	errSignInRequired  = &Error{Status: http.StatusUnauthorized, Code: "authentication_required", Key: "err.authentication_required"}
	errFactorRequired  = &Error{Status: http.StatusUnauthorized, Code: "second_factor_required", Key: "err.second_factor_required"}
	errForbidden       = &Error{Status: http.StatusForbidden, Code: "forbidden", Key: "err.forbidden"}
	errUntrustedProxy  = &Error{Status: http.StatusForbidden, Code: "untrusted_proxy", Key: "err.forbidden"}
	errCrossOrigin     = &Error{Status: http.StatusForbidden, Code: "cross_origin", Key: "err.cross_origin"}
	errBodyTimeout     = &Error{Status: http.StatusRequestTimeout, Code: "body_timeout", Key: "err.body_timeout"}
	errTooLarge        = &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Key: "err.too_large"}
	errUnknownHost     = &Error{Status: http.StatusMisdirectedRequest, Code: "unknown_host", Key: "err.unknown_host"}
	errInternal        = &Error{Status: http.StatusInternalServerError, Code: "internal", Key: "err.internal"}
	errUpstreamDown    = &Error{Status: http.StatusBadGateway, Code: "upstream_unavailable", Key: "err.upstream_down"}
	errUnknownAuthHost = &Error{Status: http.StatusForbidden, Code: "unknown_host", Key: "err.unknown_host"}
)

// webProblems lists web's own refusals, for the catalogue test.
var webProblems = []*Error{errBadRequest, errBadMethod, errH2CUpgrade, errMissingCreds, errMissingCode, errNoSuchFactor,
	errNotSignedIn, errSignInRequired, errFactorRequired, errForbidden, errUntrustedProxy, errCrossOrigin,
	errBodyTimeout, errTooLarge, errUnknownHost, errInternal, errUpstreamDown, errUnknownAuthHost}

// problemTables are the owners' tables, in the order they are asked: a
// package's specific errors before the shared ones they may wrap (a mail
// failure is also a factors.ErrSendFailed; a WebAuthn ceremony error also
// a factors.ErrExpired). The registered factors' own tables (extra) come
// from cmd with the factors (Options.Problems): web names no factor.
func problemTables(extra ...problem.Table) []problem.Table {
	return slices.Concat([]problem.Table{authn.Problems, activity.Problems, mail.Problems, store.Problems}, extra,
		[]problem.Table{factors.Problems, policy.Problems})
}

// statusOf is the HTTP status of a class of refusal.
func statusOf(c problem.Class) int {
	switch c {
	case problem.Invalid:
		return http.StatusBadRequest
	case problem.Unauthenticated:
		return http.StatusUnauthorized
	case problem.Forbidden:
		return http.StatusForbidden
	case problem.NotFound:
		return http.StatusNotFound
	case problem.Conflict:
		return http.StatusConflict
	case problem.TooMany:
		return http.StatusTooManyRequests
	case problem.Unavailable:
		// A service keygate relies on (mail, SMS) failed: the gateway's
		// status, as for an upstream that is down.
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// problemOf is the answer to err: an httpAnswer as it is, a domain error
// as its owner describes it, anything else internal (cause kept for the
// log). now is the clock of waits ("in 42 seconds").
func problemOf(err error, now time.Time, tables []problem.Table) *Error {
	var a httpAnswer
	if errors.As(err, &a) {
		if e, ok := a.(*Error); ok {
			if e.owned {
				// Said again on this clock, unless a caller changed
				// the answer itself (forward-auth's 403 for nginx).
				if p, ok := problem.Find(e.Cause, now, tables...); ok && p.Code == e.Code && p.Key == e.Key && statusOf(p.Class) == e.Status {
					return ownedAnswer(p, e.Cause)
				}
			}
			return e
		}
		st, p := a.HTTPAnswer()
		return &Error{Status: st, Code: p.Code, Key: p.Key, Args: p.Args, Extra: p.Extra, Cause: err}
	}
	if p, ok := problem.Find(err, now, tables...); ok {
		return ownedAnswer(p, err)
	}
	return errInternal.because(err)
}

// ownedAnswer is web's answer for what err's owner says of it.
func ownedAnswer(p problem.Problem, err error) *Error {
	return &Error{Status: statusOf(p.Class), Code: p.Code, Key: p.Key, Args: p.Args, Extra: p.Extra, Cause: err, owned: true}
}

// problem is problemOf on the server's clock and tables: for handlers that
// look at the answer before they render it (a page that shows a refusal
// inline). The renderer answers an owned error again on its own clock.
func (s *Server) problem(err error) *Error { return problemOf(err, s.now(), s.tables) }

// handler is a portal handler: it answers the request, or returns the
// error the renderer answers with.
type handler func(c *gin.Context) error

// handle adapts a handler to Gin: its error goes to the one renderer.
func (s *Server) handle(h handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := h(c); err != nil {
			s.fail(c, err)
		}
	}
}

// fail renders err for the client and stops the handler chain: the one
// place, with failHTTP, where errors become answers. Handlers that return
// errors reach it through handle.
func (s *Server) fail(c *gin.Context, err error) {
	c.Abort()
	s.failHTTP(c.Writer, c.Request, err)
}

// failHTTP is fail for code that has no Gin context (the proxy's
// ErrorHandler).
func (s *Server) failHTTP(w http.ResponseWriter, r *http.Request, err error) {
	e := s.problem(err)
	if e.Status >= 500 {
		s.log.Error("request failed", append(logAttrsFor(r), "code", e.Code, "err", e.Cause)...)
	} else if e.Cause != nil {
		s.log.Debug("request refused", append(logAttrsFor(r), "code", e.Code, "err", e.Cause)...)
	}
	t := s.tr.forRequest(r) // the chosen language, also on the gate's pages
	msg := message(t, e)
	if wantsJSON(r) {
		body := make(map[string]any, 2+len(e.Extra))
		for k, v := range e.Extra {
			body[k] = v
		}
		body["error"], body["message"] = e.Code, msg
		writeJSON(w, e.Status, body)
		return
	}
	title := t.T("err.title")
	switch e.Status {
	case http.StatusForbidden:
		title = t.T("denied.title")
	case http.StatusBadGateway:
		title = t.T("upstream.title")
	}
	s.renderHTTP(w, e.Status, "message", pageData{T: t, Title: title, Paragraphs: []string{msg}})
}

// message is e's text in t's language.
func message(t *catalog, e *Error) string {
	if len(e.Args) > 0 {
		return t.Tf(e.Key, e.Args...)
	}
	return t.T(e.Key)
}
