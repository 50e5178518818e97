package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/policy"
)

// The admin area: the page /.keygate/admin (and /.keygate/admin/users/NAME)
// and the JSON API under /.keygate/api/admin/. Both sit behind one built-in
// rule that no policy can loosen: a member of an admin group, signed in with
// a second factor verified within AdminOptions.MaxAge.

const (
	adminPagePath = portalPrefix + "admin"
	adminAPIPath  = apiPrefix + "admin"
	// DefaultAdminMaxAge is how fresh an admin's second factor must be.
	DefaultAdminMaxAge = 15 * time.Minute
	// adminKey is where the guard leaves the acting admin's username.
	adminKey = "keygate.admin"
)

// adminAreaPaths are sample paths of the admin area, for the check that a
// policy does not pretend to open it (AdminAreaProblems).
var adminAreaPaths = []string{adminPagePath, adminPagePath + "/users/alice", adminAPIPath + "/policy"}

// AdminPolicies is the versioned policy store; authn.Policies implements it.
type AdminPolicies interface {
	Current(ctx context.Context) (authn.PolicyVersion, error)
	Version(ctx context.Context, n int) (authn.PolicyVersion, error)
	History(ctx context.Context) ([]authn.PolicySummary, error)
	Diff(ctx context.Context, a, b int) (string, error)
	Check(p policy.Policy) (*policy.Compiled, error)
	Update(ctx context.Context, p policy.Policy, ifVersion int, author, comment string) (authn.PolicyVersion, error)
	Rollback(ctx context.Context, to, ifVersion int, author, comment string) (authn.PolicyVersion, error)
}

// AdminAudit is the audit log; activity.Audit implements it.
type AdminAudit interface {
	Record(ctx context.Context, e activity.AuditEntry) (activity.AuditEntry, error)
	Recent(ctx context.Context, limit int) ([]activity.AuditEntry, error)
	Export(ctx context.Context, w io.Writer) error
}

// AdminUsers is what user management needs of the accounts; authn.Users
// implements it.
type AdminUsers interface {
	List(ctx context.Context) ([]authn.User, error)
	Get(ctx context.Context, username string) (authn.User, error)
	SetDisabled(ctx context.Context, username string, disabled bool) error
}

// AdminSessions lists and ends a user's sessions; authn.Sessions
// implements it.
type AdminSessions interface {
	ListUser(username string) []*authn.Session
	RevokeUser(ctx context.Context, username string) (int, error)
}

// AdminOptions switch the admin area on. Every field but MaxAge and Locks
// is required.
type AdminOptions struct {
	// Groups: members of any of them are admins.
	Groups []string
	// MaxAge: the admin's second factor must be at most this old
	// (default DefaultAdminMaxAge).
	MaxAge   time.Duration
	Policies AdminPolicies
	Audit    AdminAudit
	Users    AdminUsers
	Sessions AdminSessions
	// Locks reports brute-force lockouts (authn.Regulator; nil = not
	// shown). Unlocking goes through MFA.UnlockByAdmin.
	Locks AdminLocks
}

// AdminLocks says whether a lock holds; authn.Regulator implements it.
type AdminLocks interface {
	Status(ctx context.Context, gate authn.Gate, subject, ip string) (*authn.LockedError, error)
}

// adminArea is the admin area as built by adminRoutes.
type adminArea struct {
	AdminOptions
	// rule is the built-in rule as a compiled policy: the admin groups,
	// two_factor, max_age, no remembered devices; everyone else denied.
	rule *policy.Compiled
}

// adminRoutes registers the admin page and the admin JSON API
// (/.keygate/admin, /.keygate/api/admin/…). Without AdminOptions there is
// no admin area: the paths answer 404 like any unknown portal path.
func (s *Server) adminRoutes(k, api *gin.RouterGroup) {
	o := s.adminOptions
	if o == nil {
		return
	}
	a, err := newAdminArea(*o)
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

	page := k.Group("/admin", s.adminGuard)
	page.GET("", s.adminPage)
	page.GET("/users/:name", s.adminUserPage)

	g := api.Group("/admin", s.adminGuard)
	g.GET("/policy", s.apiAdminPolicy)
	g.PUT("/policy", s.apiAdminPolicyPut)
	g.POST("/policy/check", s.apiAdminPolicyCheck)
	g.GET("/policy/versions", s.apiAdminPolicyVersions)
	g.GET("/policy/versions/:version", s.apiAdminPolicyVersion)
	g.GET("/policy/diff", s.apiAdminPolicyDiff)
	g.POST("/policy/rollback", s.apiAdminPolicyRollback)
	g.POST("/explain", s.apiAdminExplain)
	g.GET("/users", s.apiAdminUsers)
	g.GET("/users/:name", s.apiAdminUser)
	g.POST("/users/:name/disable", s.apiAdminSetDisabled(true))
	g.POST("/users/:name/enable", s.apiAdminSetDisabled(false))
	g.POST("/users/:name/reset-factors", s.apiAdminResetFactors)
	g.POST("/users/:name/enroll-link", s.apiAdminEnrollLink)
	g.POST("/users/:name/unlock", s.apiAdminUnlock)
	g.GET("/audit", s.apiAdminAudit)
}

func newAdminArea(o AdminOptions) (*adminArea, error) {
	if o.Policies == nil || o.Audit == nil || o.Users == nil || o.Sessions == nil {
		return nil, errors.New("web: the admin area needs policies, audit, users and sessions")
	}
	if len(o.Groups) == 0 {
		return nil, errors.New("web: no admin groups configured, so nobody could be an admin")
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultAdminMaxAge
	}
	no := false
	rule, err := policy.Compile(policy.Policy{
		Default: policy.ActionDeny,
		Rules: []policy.Rule{{
			Name: "keygate-admin", Groups: o.Groups, Action: policy.ActionTwoFactor,
			MaxAge: policy.Duration(o.MaxAge), TrustedDevice: &no,
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("web: the admin area's rule: %w", err)
	}
	return &adminArea{AdminOptions: o, rule: rule}, nil
}

// adminGuard lets only admins with a fresh second factor through. Who is
// an admin comes from the user record, read from the store, not from the
// session: a user removed from the admin group (or disabled) loses the
// admin area at once, whatever their session says.
func (s *Server) adminGuard(c *gin.Context) {
	r := c.Request
	a := s.admin
	sess := s.session(r)
	var subj policy.Subject
	if sess != nil {
		u, err := a.Users.Get(r.Context(), sess.Username)
		switch {
		case errors.Is(err, authn.ErrUserNotFound) || (err == nil && u.Disabled):
			sess = nil
		case err != nil:
			s.fail(c, errf(http.StatusInternalServerError, "internal", "err.internal", fmt.Errorf("admin guard: %w", err)))
			return
		default:
			subj = subjectOf(sess)
			subj.Groups = u.Groups
			// A remembered device never stands in for an admin's
			// second factor (the rule says so too).
			subj.TrustedDevice = false
		}
	}
	d := a.rule.Evaluate(policy.Request{Host: hostOnly(r.Host), Path: r.URL.Path, Method: r.Method, IP: clientAddr(c)}, subj, s.now())
	switch {
	case d.Outcome == policy.Allow:
		c.Set(adminKey, sess.Username)
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
		if wantsJSON(r) {
			e := errf(http.StatusUnauthorized, "second_factor_required", "err.admin_step_up", nil)
			e.Args = []any{int(a.MaxAge.Minutes())}
			e.Extra = map[string]any{
				"factors": d.Acceptable, "max_age": policy.Duration(a.MaxAge).String(),
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

// actingAdmin is the admin the guard let through.
func actingAdmin(c *gin.Context) string { return c.GetString(adminKey) }

// audit records an admin action done through the web. The action already
// happened, so a failure to record it is logged (by Audit) and not shown
// as a failure of the action.
func (s *Server) audit(c *gin.Context, action, target string, details map[string]string) {
	_, _ = s.admin.Audit.Record(c.Request.Context(), activity.AuditEntry{
		Admin: actingAdmin(c), Via: activity.ViaWeb, IP: clientAddr(c).String(),
		Action: action, Target: target, Details: details,
	})
}

// isAdminGroup says whether one of groups makes its member an admin.
func (a *adminArea) isAdminGroup(groups []string) bool {
	return slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(a.Groups, g) })
}

// AdminAreaProblems lists the rules of p that read as if they opened the
// admin area: a rule whose paths name /.keygate/admin or the admin API (a
// pattern that matches those paths but not the same paths under another
// first segment, so "/**" does not count) and asks for less than the
// built-in rule: anything but deny, or two_factor without a max_age of at
// most maxAge, or with remembered devices allowed. keygate's own paths
// never reach the policy, so such a rule does nothing; it is refused so
// that nobody believes it does.
func AdminAreaProblems(p policy.Policy, maxAge time.Duration) policy.ValidationErrors {
	if maxAge <= 0 {
		maxAge = DefaultAdminMaxAge
	}
	var out policy.ValidationErrors
	for i, r := range p.Rules {
		if len(r.Paths) == 0 || !loosensAdmin(r, maxAge) {
			continue
		}
		for j, pat := range r.Paths {
			if namesAdminArea(pat) {
				out = append(out, policy.FieldError{
					Path: fmt.Sprintf("rules[%d].paths[%d]", i, j),
					Message: fmt.Sprintf("a rule that weakens the admin area: %q matches keygate's admin area, which always needs two factors with a second factor at most %s old; "+
						"keygate's own paths never reach the policy, so remove this path (or make the rule deny)", pat, maxAge),
				})
			}
		}
	}
	return out
}

// loosensAdmin says whether r asks for less than the built-in admin rule.
func loosensAdmin(r policy.Rule, maxAge time.Duration) bool {
	switch r.Action {
	case policy.ActionDeny:
		return false
	case policy.ActionTwoFactor:
		return r.MaxAge <= 0 || r.MaxAge.D() > maxAge || (r.TrustedDevice != nil && *r.TrustedDevice)
	}
	return true
}

// namesAdminArea says whether a path pattern aims at the admin area: it
// matches one of its paths but not the same path with another first
// segment. A pattern that does not compile is Compile's problem to report.
func namesAdminArea(pattern string) bool {
	c, err := policy.Compile(policy.Policy{Default: policy.ActionDeny, Rules: []policy.Rule{{Name: "probe", Paths: []string{pattern}, Action: policy.ActionBypass}}})
	if err != nil {
		return false
	}
	matches := func(path string) bool {
		return c.Evaluate(policy.Request{Host: "probe.invalid", Path: path, Method: http.MethodGet}, policy.Subject{}, time.Time{}).RuleIndex == 0
	}
	for _, p := range adminAreaPaths {
		sibling := "/keygate-probe" + p[len("/.keygate"):]
		if matches(p) && !matches(sibling) {
			return true
		}
	}
	return false
}
