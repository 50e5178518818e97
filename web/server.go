// Package web is keygate's HTTP face and the only package that imports Gin:
// the protecting reverse proxy (the hot path), the portal pages and JSON API
// under the reserved prefix /.keygate/, and the one error renderer.
package web

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/problem"
)

const (
	portalPrefix = "/.keygate/"
	apiPrefix    = "/.keygate/api/"
	// CookieName is the session cookie; part of the external contract.
	CookieName = "keygate_session"
	// maxPortalBody bounds what keygate reads from a request to its own
	// endpoints; sign-in forms and JSON bodies are tiny.
	maxPortalBody = 64 << 10
)

// Authenticator checks a first factor under brute-force regulation (per
// account and per c.IP). Owned here, implemented by authn.Users.
type Authenticator interface {
	SignIn(ctx context.Context, login, password string, c authn.Client) (authn.User, error)
}

// SessionStore is what the web layer needs from sessions. Lookup is the hot
// path and must not touch disk. Implemented by authn.Sessions.
type SessionStore interface {
	Create(ctx context.Context, u authn.User, p policy.Proof, m authn.Meta) (*authn.Session, error)
	Lookup(id string) (*authn.Session, bool)
	LookupAt(id string, now time.Time) (*authn.Session, bool)
	// LookupAtFrom is LookupAt for a request from client: a cookie the
	// replica has not seen is read from the store within that client's
	// budget (a flood of random cookies from one address stays its own).
	LookupAtFrom(id string, now time.Time, client string) (*authn.Session, bool)
	Revoke(ctx context.Context, id string) error
	RevokeUser(ctx context.Context, username string) (int, error)
}

// Upstream maps a protected host to the app behind it.
type Upstream struct {
	Host string   // lower-case host name without port
	URL  *url.URL // http(s)://host:port[/base]
	// Body bounds request bodies to this app (zero fields: Options.Body);
	// see body.go.
	Body BodyLimits
	// Paths says how the app reads paths: case-sensitive routing, ";"
	// parameters. The zero value is the safe default (paths.go).
	Paths policy.PathOptions
}

// Options configure a Server; cmd/keygate fills them from the config file.
type Options struct {
	Upstreams []Upstream
	Policy    *policy.Holder
	Users     Authenticator
	Sessions  SessionStore
	// CookieDomain scopes the session cookie ("" = host-only).
	CookieDomain string
	// TrustedProxies (CIDRs or IPs) are the peers whose X-Forwarded-* headers
	// are believed. Empty = none.
	TrustedProxies []string
	// ProtectedHosts are hosts (exact or "*.suffix") keygate protects
	// besides the upstreams and the hosts policy rules name; forward-auth
	// refuses to judge any other host (server.protected_hosts).
	ProtectedHosts []string
	// DefaultRedirect is where people go after sign-in without a valid rd.
	DefaultRedirect string
	Logger          *slog.Logger
	Now             func() time.Time
	// Transport to the upstreams; nil = a tuned http.Transport.
	Transport http.RoundTripper
	// MFA runs the second factors; nil = none (two_factor rules then say
	// that no second factor is enrolled).
	MFA *authn.MFA
	// Problems are the registered factors' own error tables (how their
	// refusals are answered), asked before the shared factors.Problems.
	Problems []problem.Table
	// RememberDevice: how long "remember this device" lasts (0 = the
	// option is not offered).
	RememberDevice time.Duration
	// EmailEnrollment: a code to the verified address may stand in for an
	// admin's enrolment link for the first factor.
	EmailEnrollment bool
	// Parked keeps form submissions that met a challenge, to send them on
	// afterwards (nil = they are dropped).
	Parked *authn.ParkedRequests
	// Ready reports whether the parts behind keygate work (the store
	// answers); /.keygate/readyz says 503 otherwise. nil = always ready.
	Ready func(context.Context) error
	// PolicyVersion is the policy version this process has in force,
	// which /.keygate/readyz names: behind a load balancer, every replica
	// should say the same (nil = not said).
	PolicyVersion func() int
	// Metrics records requests and sign-ins (nil = none).
	Metrics *Metrics
	// AccessLog receives one line per request (nil = off; SetAccessLog
	// changes it while serving).
	AccessLog *AccessLog
	// Admin switches the admin page and API on (nil = off); see admin.go.
	Admin *AdminOptions
	// Body bounds request bodies to the upstreams (zero fields: the
	// defaults); PortalBodyTimeout bounds bodies to keygate's own
	// endpoints (0 = DefaultPortalBodyTimeout). See body.go.
	Body              BodyLimits
	PortalBodyTimeout time.Duration
	// HSTSIncludeSubdomains adds includeSubDomains to the
	// Strict-Transport-Security header sent on answers over keygate's own
	// TLS listener (see hsts.go); only when every subdomain speaks HTTPS.
	HSTSIncludeSubdomains bool
}

// Server is keygate's HTTP handler.
type Server struct {
	engine          *gin.Engine
	upstreams       atomic.Pointer[upstreamSet] // swapped whole by SetUpstreams
	transport       http.RoundTripper
	policy          *policy.Holder
	users           Authenticator
	sessions        SessionStore
	cookieDomain    string
	protectedHosts  []string // see Options.ProtectedHosts
	defaultRedirect string
	trusted         trustedPeers
	log             *slog.Logger
	now             func() time.Time
	tr              *translator
	pages           pages
	tables          []problem.Table // error tables, asked in order (errors.go)
	cop             *http.CrossOriginProtection
	buffers         *bufferPool
	mfa             *authn.MFA
	askKinds        []string // what "always ask" offers (security_page.go)
	rememberDevice  time.Duration
	emailEnrollment bool
	parked          *authn.ParkedRequests
	ready           func(context.Context) error
	policyVersion   func() int
	metrics         *Metrics
	access          atomic.Pointer[AccessLog]
	ids             *requestIDs
	adminOptions    *AdminOptions
	admin           *adminArea // built by adminRoutes
	hsts            []string   // Strict-Transport-Security value (hsts.go)
	// Request body limits (body.go).
	bodyDefault       BodyLimits
	portalBodyTimeout time.Duration
}

// New builds the handler. It fails on configuration that cannot work.
func New(o Options) (*Server, error) {
	if o.Policy == nil || o.Policy.Load() == nil {
		return nil, fmt.Errorf("web: no compiled policy")
	}
	if o.Users == nil || o.Sessions == nil {
		return nil, fmt.Errorf("web: users and sessions are required")
	}
	s := &Server{
		policy:          o.Policy,
		users:           o.Users,
		sessions:        o.Sessions,
		cookieDomain:    o.CookieDomain,
		protectedHosts:  o.ProtectedHosts,
		defaultRedirect: o.DefaultRedirect,
		log:             o.Logger,
		now:             o.Now,
		cop:             http.NewCrossOriginProtection(),
		buffers:         newBufferPool(),
		mfa:             o.MFA,
		rememberDevice:  o.RememberDevice,
		emailEnrollment: o.EmailEnrollment,
		parked:          o.Parked,
		ready:           o.Ready,
		policyVersion:   o.PolicyVersion,
		metrics:         o.Metrics,
		ids:             newRequestIDs(),
		adminOptions:    o.Admin,
		bodyDefault:     o.Body.or(BodyLimits{Timeout: DefaultBodyTimeout, Buffer: DefaultBodyBuffer}),
		hsts:            hstsValue(o.HSTSIncludeSubdomains),
		tables:          problemTables(o.Problems...),
	}
	if s.mfa != nil {
		s.askKinds = s.mfa.Factors().Kinds()
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.portalBodyTimeout = o.PortalBodyTimeout; s.portalBodyTimeout <= 0 {
		s.portalBodyTimeout = DefaultPortalBodyTimeout
	}
	var err error
	if s.trusted, err = parseTrusted(o.TrustedProxies); err != nil {
		return nil, err
	}
	if s.tr, err = loadTranslator(); err != nil {
		return nil, err
	}
	if s.pages, err = loadPages(); err != nil {
		return nil, err
	}
	s.transport = o.Transport
	if s.transport == nil {
		s.transport = newTransport()
	}
	s.access.Store(o.AccessLog)
	s.metrics.addPolicyHosts(o.Policy.Load())
	if err := s.SetUpstreams(o.Upstreams); err != nil {
		return nil, err
	}
	if s.engine, err = s.routes(o.TrustedProxies); err != nil {
		return nil, err
	}
	return s, nil
}

// upstreamSet maps protected hosts to their apps; it is never modified
// once published, so the hot path reads it without locks.
type upstreamSet map[string]*upstream

// SetUpstreams replaces the protected hosts and their apps at once (a
// configuration reload). Requests in flight finish with the old set.
func (s *Server) SetUpstreams(list []Upstream) error {
	set := make(upstreamSet, len(list))
	for _, u := range list {
		h := strings.ToLower(u.Host)
		if _, dup := set[h]; dup {
			return fmt.Errorf("web: upstream host %q listed twice", h)
		}
		up := s.newUpstream(h, u.URL, s.transport)
		// How the app reads paths and takes bodies, fixed before the set
		// is published: the hot path reads them without locks.
		up.paths = u.Paths
		up.body = u.Body.or(s.bodyDefault)
		set[h] = up
	}
	s.upstreams.Store(&set)
	return nil
}

// upstream returns the app behind host, or nil.
func (s *Server) upstream(host string) *upstream {
	return (*s.upstreams.Load())[host]
}

// ServeHTTP makes the Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.engine.ServeHTTP(w, r) }

func (s *Server) routes(trusted []string) (*gin.Engine, error) {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	// Gin believes every peer's X-Forwarded-For by default; only the
	// configured proxies may tell us the client address.
	var tp []string
	if len(trusted) > 0 {
		tp = trusted
	}
	if err := e.SetTrustedProxies(tp); err != nil {
		return nil, fmt.Errorf("web: trusted proxies: %w", err)
	}
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.Use(s.recover, s.strictTransport)

	k := e.Group("/.keygate", s.accessPortal, s.portalLanguage, s.portalGuard, s.pickSession)
	k.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	k.GET("/readyz", s.readyz)
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	k.StaticFS("/static", http.FS(static))
	k.GET("/", s.handle(s.homePage))
	k.GET("/login", s.handle(s.loginPage))
	k.POST("/login", s.handle(s.loginSubmit))
	k.GET("/logout", s.handle(s.logoutPage))
	k.POST("/logout", s.handle(s.logoutSubmit))
	k.GET("/signed-out", s.handle(s.signedOutPage))
	k.GET("/denied", s.handle(s.deniedPage))
	k.GET("/second-factor", s.handle(s.secondFactorPage))
	k.GET("/resume", s.handle(s.resumePage))

	api := k.Group("/api")
	api.POST("/login", s.handle(s.apiLogin))
	api.POST("/logout", s.handle(s.apiLogout))
	api.GET("/session", s.handle(s.apiSession))
	api.GET("/authz", s.handle(s.authz))

	if s.mfa != nil {
		s.factorRoutes(k, api)
	}
	s.accountRoutes(k, api)
	s.passwordRoutes(k, api)
	s.emailChangeRoutes(k, api)
	s.langRoutes(k)
	s.recoveryRoutes(k, api)
	s.adminRoutes(k, api)
	s.securityRoutes(k, api)
	e.NoRoute(s.gate)
	return e, nil
}

// factorRoutes are the second-factor pages and API.
func (s *Server) factorRoutes(k, api *gin.RouterGroup) {
	k.GET("/second-factor/:kind", s.handle(s.factorPage))
	k.POST("/second-factor/:kind", s.handle(s.factorSubmit))
	k.POST("/second-factor/:kind/send", s.handle(s.codeSend))
	k.GET("/settings", s.handle(s.settingsPage))
	k.POST("/settings/totp", s.handle(s.totpEnrollBegin))
	k.POST("/settings/totp/confirm", s.handle(s.totpEnrollFinish))
	k.POST("/settings/recovery", s.handle(s.recoveryGenerate))
	k.POST("/settings/enroll/:kind", s.handle(s.enrollForm))
	k.POST("/settings/enroll/:kind/confirm", s.handle(s.enrollConfirm))
	k.POST("/settings/factors/:id/rename", s.handle(s.credentialRename))
	k.POST("/settings/factors/:id/remove", s.handle(s.credentialRemove))
	k.POST("/settings/devices/:id/forget", s.handle(s.deviceForget))
	k.POST("/settings/email/send", s.handle(s.emailCodeFor(factors.PurposeVerifyAddress)))
	k.POST("/settings/email/verify", s.handle(s.emailCodeVerify(factors.PurposeVerifyAddress)))
	k.POST("/settings/enroll-code/send", s.handle(s.emailCodeFor(factors.PurposeEnroll)))
	k.POST("/settings/enroll-code/verify", s.handle(s.emailCodeVerify(factors.PurposeEnroll)))
	k.GET("/enroll/:token", s.handle(s.enrollLinkPage))
	k.POST("/enroll", s.handle(s.enrollLinkRedeem))

	f := api.Group("/factors")
	f.GET("", s.handle(s.apiFactors))
	f.PATCH("/:id", s.handle(s.apiFactorRename))
	f.DELETE("/:id", s.handle(s.apiFactorRemove))
	// One route set for every registered factor.
	f.POST("/:kind/begin", s.handle(s.apiFactorBegin("")))
	f.GET("/:kind/pending", s.handle(s.apiFactorPending))
	f.POST("/:kind/verify", s.handle(s.apiFactorVerify("")))
	f.POST("/:kind/enroll/begin", s.handle(s.apiEnrollBegin("")))
	f.POST("/:kind/enroll/finish", s.handle(s.apiEnrollFinish("")))
	f.POST("/webauthn/passkey/begin", s.handle(s.apiPasskeyBegin))
	f.POST("/webauthn/passkey/finish", s.handle(s.apiPasskeyFinish))
	// Round 1's paths, kept as aliases ({kind}/verify and
	// {kind}/enroll/{begin,finish} are the same paths as before).
	f.POST("/email/send", s.handle(s.apiFactorBegin(factors.KindEmail)))
	f.POST("/webauthn/login/begin", s.handle(s.apiFactorBegin(factors.KindWebAuthn)))
	f.POST("/webauthn/login/finish", s.handle(s.apiFactorVerify(factors.KindWebAuthn)))
	f.POST("/recovery/generate", s.handle(s.apiEnrollBegin(factors.KindRecovery)))
	api.POST("/enroll-link", s.handle(s.apiEnrollLink))
}

// readyz says whether keygate can serve: a compiled policy is loaded and
// the store answers. Load balancers take an instance out on 503.
func (s *Server) readyz(c *gin.Context) {
	if s.policy.Load() == nil {
		c.String(http.StatusServiceUnavailable, "no policy loaded")
		return
	}
	if s.ready != nil {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			s.log.Warn("not ready", "err", err)
			c.String(http.StatusServiceUnavailable, "store not ready")
			return
		}
	}
	if s.policyVersion != nil {
		c.String(http.StatusOK, "ready policy_version=%d", s.policyVersion())
		return
	}
	c.String(http.StatusOK, "ready")
}

// recover turns a panic into the generic 500 answer without leaking it.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v) // the proxy aborts a broken stream this way; let net/http handle it
			}
			s.log.Error("panic", append(logAttrsFor(c.Request), "panic", v)...)
			s.fail(c, errInternal.because(fmt.Errorf("panic: %v", v)))
		}
	}()
	c.Next()
}

// portalGuard applies to everything under /.keygate/: bounded bodies,
// cross-origin state changes refused, security headers.
func (s *Server) portalGuard(c *gin.Context) {
	r := c.Request
	r.Body = http.MaxBytesReader(c.Writer, r.Body, maxPortalBody)
	// Headers first, so refusals (JSON too) carry them as well.
	portalHeaders(c.Writer.Header())
	if err := s.cop.Check(r); err != nil {
		s.fail(c, errCrossOrigin.because(err))
		return
	}
	// The whole (small) body, under a deadline, before any handler runs.
	if !s.readPortalBody(c) {
		return
	}
	c.Next()
}
