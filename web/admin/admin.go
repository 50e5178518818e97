// Package admin is the admin area over HTTP: the JSON API under
// /.keygate/api/admin/ and the pages /.keygate/admin and
// /.keygate/admin/users/NAME. Every handler decodes, calls the admin
// service (authn/admin) and renders; the use-cases themselves, their
// consequences and the audit are the service's.
//
// The API is one http.Handler that trusts whoever put an Actor in the
// request's context (WithActor): web mounts it behind the session guard
// (a fresh admin, channel web), and the admin socket serves the very same
// handler behind the guard of the peer's OS user (channel cli). So the
// page, scripts and the keygate command speak one API, with one error
// format, to one implementation.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	svc "github.com/keygate/keygate/authn/admin"
)

// Renderer is what the admin area borrows from web: its one error
// renderer and its page layout (templates, language, security headers).
type Renderer interface {
	// Fail answers err: JSON {error, message, …} on the API, a page
	// otherwise. *Error values keep their status; other errors are
	// answered as their owners' problem tables say.
	Fail(w http.ResponseWriter, r *http.Request, err error)
	// Page renders the admin template name with view; title is a message
	// key with its arguments.
	Page(w http.ResponseWriter, r *http.Request, name, title string, args []any, view *View)
}

// Options build the admin area.
type Options struct {
	Service *svc.Service
	Render  Renderer
	// LinkBase is the origin enrolment links start with for r
	// ("https://app.example.com"); "" leaves the link a path.
	LinkBase func(r *http.Request) string
	// Kinds are the registered second-factor kinds, for the explain box.
	Kinds  func() []string
	Logger *slog.Logger
}

// Handler is the admin area.
type Handler struct {
	o     Options
	api   *http.ServeMux
	pages *http.ServeMux
}

// New builds the admin area's handlers.
func New(o Options) (*Handler, error) {
	if o.Service == nil || o.Render == nil {
		return nil, errors.New("web/admin: the admin area needs the service and a renderer")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LinkBase == nil {
		o.LinkBase = func(*http.Request) string { return "" }
	}
	if o.Kinds == nil {
		o.Kinds = func() []string { return nil }
	}
	h := &Handler{o: o, api: http.NewServeMux(), pages: http.NewServeMux()}
	h.apiRoutes()
	h.pageRoutes()
	return h, nil
}

// API is the JSON API, for requests under APIPrefix; it refuses any
// request without an Actor in its context.
func (h *Handler) API() http.Handler { return h.guarded(h.routed(h.api)) }

// routed answers a request no route takes in the API's own form: 404
// no_such_route, or 405 method_not_allowed with Allow when the path has
// routes for other methods (ServeMux would answer in plain text).
func (h *Handler) routed(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := mux.Handler(probe); p != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) == 0 {
			h.o.Render.Fail(w, r, &Error{Status: http.StatusNotFound, Code: "no_such_route", Key: "err.not_found"})
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		h.o.Render.Fail(w, r, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Key: "err.bad_request",
			Extra: map[string]any{"allow": allow}})
	})
}

// Pages are the admin pages, for requests under svc.PagePath; like API,
// they need an Actor.
func (h *Handler) Pages() http.Handler { return h.guarded(h.pages) }

// APIPrefix is where the API's routes live.
const APIPrefix = svc.APIPath + "/"

// actorKey carries the Actor a guard let through.
type actorKey struct{}

// WithActor is ctx carrying the actor a guard established. Only guards
// call it: the handlers trust it.
func WithActor(ctx context.Context, a svc.Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom is the actor in ctx.
func ActorFrom(ctx context.Context) (svc.Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(svc.Actor)
	return a, ok && a.Name != "" && a.Channel != ""
}

// guarded refuses requests that no guard vouched for: fail closed, should
// the handler ever be mounted without one.
func (h *Handler) guarded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := ActorFrom(r.Context()); !ok {
			h.o.Render.Fail(w, r, svc.ErrNoActor)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// handlerFunc is an admin handler: it answers, or returns the error the
// renderer answers.
type handlerFunc func(w http.ResponseWriter, r *http.Request, a svc.Actor) error

func (h *Handler) handle(mux *http.ServeMux, pattern string, f handlerFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		a, _ := ActorFrom(r.Context())
		if err := f(w, r, a); err != nil {
			h.o.Render.Fail(w, r, err)
		}
	})
}

// Error is an answer whose status HTTP itself fixes (a stale or missing
// If-Match, a policy refused as unprocessable, a body too large), with a
// stable code and a message key like every other answer. The renderer
// keeps its status.
type Error struct {
	Status int
	Code   string
	Key    string
	Args   []any
	Extra  map[string]any
	Cause  error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Cause.Error()
	}
	return e.Code
}

func (e *Error) Unwrap() error { return e.Cause }

func badRequest(cause error) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Key: "err.bad_request", Cause: cause,
		Extra: map[string]any{"detail": cause.Error()}}
}

// maxBody bounds a request body (a policy of a few thousand rules fits).
const maxBody = 4 << 20

// decode reads one JSON object of at most maxBody bytes, strictly.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeLimit(w, r, v, maxBody)
}

// decodeLimit is decode with its own bound on the body.
func decodeLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Key: "err.too_large", Cause: err}
		}
		return badRequest(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest(errors.New("trailing data after the JSON object"))
	}
	return nil
}

// hasBody says whether a request carries a body to decode (an empty POST
// takes the defaults).
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
}

// writeJSON writes an API answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal","message":"internal error"}`)
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/json; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
