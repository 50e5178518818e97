package web

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	adminsvc "github.com/keygate/keygate/authn/admin"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/problem"
	adminweb "github.com/keygate/keygate/web/admin"
)

// The admin area: the page /.keygate/admin (and /.keygate/admin/users/NAME)
// and the JSON API under /.keygate/api/admin/, served by the web/admin
// package over authn/admin's Service. web adds what only it has: the
// session guard (one built-in rule no policy can loosen: a member of an
// admin group, signed in with a second factor verified within MaxAge), its
// error renderer and its page layout.

const (
	adminPagePath = adminsvc.PagePath
	// DefaultAdminMaxAge is how fresh an admin's second factor must be.
	DefaultAdminMaxAge = adminsvc.DefaultMaxAge
)

// AdminOptions switch the admin area on.
type AdminOptions struct {
	// Service is every admin use-case; its groups and max age make the
	// guard's rule.
	Service *adminsvc.Service
	// PortalURL is the origin of links made for the CLI (enrolment
	// links), which has no Host of its own; links made on the web use the
	// request's.
	PortalURL string
}

// adminArea is the admin area as built by adminRoutes.
type adminArea struct {
	AdminOptions
	// rule is the built-in rule as a compiled policy.
	rule    *policy.Compiled
	handler *adminweb.Handler
}

// adminRoutes registers the admin page and the admin JSON API. Without
// AdminOptions there is no admin area: the paths answer 404 like any
// unknown portal path.
func (s *Server) adminRoutes(k, api *gin.RouterGroup) {
	o := s.adminOptions
	if o == nil {
		return
	}
	a, err := s.newAdminArea(*o)
	if err != nil {
		// Fail closed: the area exists but nobody gets in, and the log
		// says why.
		s.log.Error("admin area switched off", "err", err)
		deny := func(c *gin.Context) {
			s.fail(c, errf(http.StatusForbidden, "admin_only", "err.admin_only", err))
		}
		k.Any("/admin", deny)
		k.Any("/admin/*rest", deny)
		api.Any("/admin/*rest", deny)
		return
	}
	s.admin = a
	pages := gin.WrapH(a.handler.Pages())
	k.GET("/admin", s.adminGuard, pages)
	k.GET("/admin/*rest", s.adminGuard, pages)
	api.Any("/admin/*rest", s.adminGuard, gin.WrapH(a.handler.API()))
}

func (s *Server) newAdminArea(o AdminOptions) (*adminArea, error) {
	if o.Service == nil {
		return nil, errors.New("web: the admin area needs the admin service")
	}
	rule, err := adminsvc.Rule(o.Service.Groups(), o.Service.MaxAge())
	if err != nil {
		return nil, err
	}
	h, err := adminweb.New(adminweb.Options{Service: o.Service, Render: adminRenderer{s}, Logger: s.log,
		LinkBase: func(r *http.Request) string {
			if a, _ := adminweb.ActorFrom(r.Context()); a.Channel == adminsvc.ChannelCLI {
				return o.PortalURL
			}
			return s.scheme(r) + "://" + r.Host
		},
		Kinds: s.factorKinds,
	})
	if err != nil {
		return nil, err
	}
	return &adminArea{AdminOptions: o, rule: rule, handler: h}, nil
}

// AdminAPI is the admin JSON API handler the admin area serves, without
// the session guard: the admin socket serves this very handler behind its
// own guard, which puts the peer's OS user in the request as the actor
// (web/admin.WithActor). nil when the admin area is off.
func (s *Server) AdminAPI() http.Handler {
	if s.admin == nil {
		return nil
	}
	return s.admin.handler.API()
}

// NewAdminAPI builds the admin JSON API on its own, with web's renderer,
// for the keygate command working on a stopped data directory: the same
// handler, so the CLI speaks the one admin API whether or not keygate
// runs. portalURL is the origin of enrolment links.
func NewAdminAPI(svc *adminsvc.Service, portalURL string, log *slog.Logger) (http.Handler, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: log, now: time.Now}
	var err error
	if s.tr, err = loadTranslator(); err != nil {
		return nil, err
	}
	if s.pages, err = loadPages(); err != nil {
		return nil, err
	}
	h, err := adminweb.New(adminweb.Options{Service: svc, Render: adminRenderer{s}, Logger: log,
		LinkBase: func(*http.Request) string { return portalURL }})
	if err != nil {
		return nil, err
	}
	return h.API(), nil
}

// adminRenderer lends web's renderer and layout to the admin area.
type adminRenderer struct{ s *Server }

// Fail answers the admin area's errors: its HTTP answers (412, 422, …) as
// they are, the admin service's by its table, the rest as web answers
// every error.
func (ar adminRenderer) Fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *adminweb.Error
	if errors.As(err, &ae) {
		err = &Error{Status: ae.Status, Code: ae.Code, Key: ae.Key, Args: ae.Args, Extra: ae.Extra, Cause: ae}
	} else if p, ok := problem.Find(err, ar.s.now(), adminsvc.Problems); ok {
		err = &Error{Status: statusOf(p.Class), Code: p.Code, Key: p.Key, Args: p.Args, Extra: p.Extra, Cause: err}
	}
	ar.s.failHTTP(w, r, err)
}

// Page renders an admin template in the portal's layout.
func (ar adminRenderer) Page(w http.ResponseWriter, r *http.Request, name, title string, args []any, view *adminweb.View) {
	d := pageData{T: ar.s.tr.pick(r.Header.Get("Accept-Language")), Admin: view}
	d.Title = d.T.T(title)
	if len(args) > 0 {
		d.Title = d.T.Tf(title, args...)
	}
	ar.s.renderHTTP(w, http.StatusOK, name, d)
}

// adminGuard lets only admins with a fresh second factor through, and
// names them as the actor (channel web). Who is an admin comes from the
// user record, read from the store, not from the session: a user removed
// from the admin group (or disabled) loses the admin area at once,
// whatever their session says.
func (s *Server) adminGuard(c *gin.Context) {
	r := c.Request
	a := s.admin
	sess := s.session(r)
	var subj policy.Subject
	if sess != nil {
		u, err := a.Service.Account(r.Context(), sess.Username)
		switch {
		case errors.Is(err, authn.ErrUserNotFound) || (err == nil && u.Disabled):
			sess = nil
		case err != nil:
			s.fail(c, errInternal.because(fmt.Errorf("admin guard: %w", err)))
			return
		default:
			subj = subjectOf(sess)
			subj.Groups = u.Groups
			// A remembered device never stands in for an admin's
			// second factor (the rule says so too).
			subj.TrustedDevice = false
		}
	}
	q := question{pol: a.rule, host: hostOnly(r.Host), path: r.URL.EscapedPath(), method: r.Method, ip: clientAddr(c), subject: subj, now: s.now(), own: true}
	d, err := decide(&q, nil)
	if err != nil {
		s.fail(c, err)
		return
	}
	switch {
	case d.Outcome == policy.Allow:
		actor := adminsvc.Actor{Name: sess.Username, Channel: adminsvc.ChannelWeb, Address: clientAddr(c).String()}
		c.Request = r.WithContext(adminweb.WithActor(r.Context(), actor))
		c.Next()
	case sess == nil:
		if wantsJSON(r) {
			e := errf(http.StatusUnauthorized, "authentication_required", "err.authentication_required", nil)
			e.Extra = map[string]any{"login_url": portalPrefix + "login?rd=" + url.QueryEscape(adminPagePath)}
			s.fail(c, e)
			return
		}
		c.Header("Cache-Control", "no-store")
		c.Redirect(http.StatusFound, portalPrefix+"login?rd="+url.QueryEscape(r.URL.RequestURI()))
		c.Abort()
	case d.Outcome == policy.Deny:
		s.fail(c, errf(http.StatusForbidden, "admin_only", "err.admin_only", nil))
	default:
		// An admin whose second factor is missing or too old: step up.
		maxAge := a.Service.MaxAge()
		if wantsJSON(r) {
			e := errf(http.StatusUnauthorized, "second_factor_required", "err.admin_step_up", nil)
			e.Args = []any{maxAge}
			e.Extra = map[string]any{
				"factors": d.Acceptable, "max_age": policy.Duration(maxAge).String(),
				"login_url": portalPrefix + "second-factor?rd=" + url.QueryEscape(adminPagePath),
			}
			s.fail(c, e)
			return
		}
		target := r.URL.RequestURI()
		if r.Method != http.MethodGet {
			target = adminPagePath
		}
		c.Header("Cache-Control", "no-store")
		c.Redirect(http.StatusFound, portalPrefix+"second-factor?rd="+url.QueryEscape(target))
		c.Abort()
	}
}

// Hosts lists the protected hosts, sorted: the admin service's Hosts (for
// previews and explain's "protected"), current after every reload.
func (s *Server) Hosts() []string {
	set := *s.upstreams.Load()
	out := make([]string, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// Interface guards.
var _ adminsvc.Hosts = (*Server)(nil)
