package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/policy"
)

// User management in the admin area: list and search, one user's factors,
// sessions and remembered devices, and what admins do to an account
// (disable, enable, reset factors, enrolment link, unlock). Every action is
// audited.

// adminUserRow is a user in the list.
type adminUserRow struct {
	Username      string    `json:"username"`
	Email         string    `json:"email,omitempty"`
	DisplayName   string    `json:"display_name,omitempty"`
	Groups        []string  `json:"groups"`
	Disabled      bool      `json:"disabled"`
	EmailVerified bool      `json:"email_verified"`
	Admin         bool      `json:"admin"`
	Sessions      int       `json:"sessions"`
	CreatedAt     time.Time `json:"created_at"`
}

// adminSession is a session as an admin sees it: never its ID.
type adminSession struct {
	Handle    string    `json:"handle"`
	IP        string    `json:"ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	Device    string    `json:"device,omitempty"`
	Factors   []string  `json:"factors"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"`
	ExpiresAt time.Time `json:"expires_at"`
}

// adminLock is a lock that holds on an account.
type adminLock struct {
	Gate     string    `json:"gate"`           // password or second_factor
	Until    time.Time `json:"until,omitzero"` // zero: until unlocked
	Reported bool      `json:"reported"`       // "This wasn't me": only an unlock ends it
}

// adminUserDetail is one user with everything the admin page shows.
type adminUserDetail struct {
	User     adminUserRow         `json:"user"`
	Factors  []factors.Credential `json:"factors"`
	Sessions []adminSession       `json:"sessions"`
	Devices  []authn.Device       `json:"devices"`
	Lockouts []adminLock          `json:"lockouts"`
	// Activity is the account's recent activity log, newest first: the
	// sign-ins, failures, locks and security changes.
	Activity []activity.Event `json:"activity"`
}

// recentActivity is how many events the user view shows.
const recentActivity = 30

func (s *Server) userRow(u authn.User) adminUserRow {
	groups := u.Groups
	if groups == nil {
		groups = []string{}
	}
	return adminUserRow{
		Username: u.Username, Email: u.Email, DisplayName: u.DisplayName, Groups: groups,
		Disabled: u.Disabled, EmailVerified: u.EmailVerified, Admin: s.admin.isAdminGroup(u.Groups),
		Sessions: len(s.admin.Sessions.ListUser(u.Username)), CreatedAt: u.CreatedAt,
	}
}

// searchUsers lists the users whose name, email, display name or a group
// contains q (case-insensitive; empty q = everyone).
func (s *Server) searchUsers(ctx context.Context, q string) ([]adminUserRow, error) {
	users, err := s.admin.Users.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	q = strings.ToLower(strings.TrimSpace(q))
	out := []adminUserRow{}
	for _, u := range users {
		if q != "" && !strings.Contains(strings.ToLower(u.Username), q) && !strings.Contains(strings.ToLower(u.Email), q) &&
			!strings.Contains(strings.ToLower(u.DisplayName), q) &&
			!slices.ContainsFunc(u.Groups, func(g string) bool { return strings.Contains(strings.ToLower(g), q) }) {
			continue
		}
		out = append(out, s.userRow(u))
	}
	return out, nil
}

func (s *Server) userDetail(ctx context.Context, name string) (adminUserDetail, error) {
	u, err := s.admin.Users.Get(ctx, name)
	if err != nil {
		return adminUserDetail{}, err
	}
	d := adminUserDetail{User: s.userRow(u), Factors: []factors.Credential{}, Sessions: []adminSession{},
		Devices: []authn.Device{}, Lockouts: []adminLock{}, Activity: []activity.Event{}}
	if locks := s.admin.Locks; locks != nil {
		for _, g := range []authn.Gate{authn.GatePassword, authn.GateSecondFactor} {
			le, err := locks.Status(ctx, g, u.Username, "")
			if err != nil {
				return adminUserDetail{}, err
			}
			if le != nil {
				d.Lockouts = append(d.Lockouts, adminLock{Gate: string(g), Until: le.Until, Reported: le.Reported})
				if le.Reported {
					break // one hold covers both gates
				}
			}
		}
	}
	if s.mfa != nil {
		events, err := s.mfa.Activity(ctx, u.Username, recentActivity)
		if err != nil {
			return adminUserDetail{}, err
		}
		if events != nil {
			d.Activity = events
		}
		if d.Factors, err = s.mfa.Credentials(ctx, u.Username); err != nil {
			return adminUserDetail{}, err
		}
		devs, err := s.mfa.Devices(ctx, u.Username)
		if err != nil {
			return adminUserDetail{}, err
		}
		if devs != nil {
			d.Devices = devs
		}
	}
	for _, sess := range s.admin.Sessions.ListUser(u.Username) {
		as := adminSession{Handle: sess.Handle, IP: sess.IP, UserAgent: sess.UserAgent, Device: activity.DescribeUserAgent(sess.UserAgent),
			Factors: []string{}, CreatedAt: sess.CreatedAt, LastSeen: sess.LastSeen, ExpiresAt: sess.ExpiresAt}
		for _, p := range sess.Proofs {
			if p.Kind == policy.FactorPassword || authn.IsSecondFactor(p.Kind) {
				as.Factors = appendNew(as.Factors, p.Kind)
			}
		}
		d.Sessions = append(d.Sessions, as)
	}
	return d, nil
}

// userError maps errors of user management.
func userError(err error) *Error {
	if errors.Is(err, authn.ErrUserNotFound) {
		return errf(http.StatusNotFound, "user_not_found", "err.user_not_found", err)
	}
	return mfaError(err)
}

func (s *Server) apiAdminUsers(c *gin.Context) {
	rows, err := s.searchUsers(c.Request.Context(), c.Query("q"))
	if err != nil {
		s.fail(c, userError(err))
		return
	}
	writeJSON(c.Writer, http.StatusOK, map[string]any{"users": rows})
}

func (s *Server) apiAdminUser(c *gin.Context) {
	d, err := s.userDetail(c.Request.Context(), c.Param("name"))
	if err != nil {
		s.fail(c, userError(err))
		return
	}
	writeJSON(c.Writer, http.StatusOK, d)
}

// notYourself refuses actions that would lock the acting admin out of the
// admin area they are using; another admin (or the CLI) can do them.
func (s *Server) notYourself(c *gin.Context, u authn.User) bool {
	if u.Username != actingAdmin(c) {
		return true
	}
	s.fail(c, errf(http.StatusConflict, "not_on_yourself", "err.admin_not_yourself", nil))
	return false
}

// apiAdminSetDisabled disables (ending every session at once) or enables
// a user.
func (s *Server) apiAdminSetDisabled(disabled bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		u, err := s.admin.Users.Get(ctx, c.Param("name"))
		if err != nil {
			s.fail(c, userError(err))
			return
		}
		if disabled && !s.notYourself(c, u) {
			return
		}
		if err := s.admin.Users.SetDisabled(ctx, u.Username, disabled); err != nil {
			s.fail(c, userError(err))
			return
		}
		action, details := activity.AuditUserEnable, map[string]string{}
		ended := 0
		if disabled {
			action = activity.AuditUserDisable
			if ended, err = s.admin.Sessions.RevokeUser(ctx, u.Username); err != nil {
				s.fail(c, errf(http.StatusInternalServerError, "internal", "err.internal", fmt.Errorf("end sessions of %q: %w", u.Username, err)))
				return
			}
			details["sessions_ended"] = strconv.Itoa(ended)
		}
		s.audit(c, action, u.Username, details)
		writeJSON(c.Writer, http.StatusOK, map[string]any{"username": u.Username, "disabled": disabled, "sessions_ended": ended})
	}
}

// apiAdminResetFactors removes every second factor of a user, forgets
// their remembered devices, ends their sessions and tells them by email.
func (s *Server) apiAdminResetFactors(c *gin.Context) {
	if s.mfa == nil {
		s.fail(c, errf(http.StatusNotFound, "factor_unavailable", "err.factor_unavailable", nil))
		return
	}
	ctx := c.Request.Context()
	u, err := s.admin.Users.Get(ctx, c.Param("name"))
	if err != nil {
		s.fail(c, userError(err))
		return
	}
	if !s.notYourself(c, u) {
		return
	}
	// ResetFactors also records it in the person's activity log, which
	// mails them about it.
	n, err := s.mfa.ResetFactors(ctx, u.Username)
	if err != nil {
		s.fail(c, userError(err))
		return
	}
	s.audit(c, activity.AuditResetFactors, u.Username, map[string]string{"removed": strconv.Itoa(n)})
	writeJSON(c.Writer, http.StatusOK, map[string]any{"username": u.Username, "removed": n})
}

type enrollLinkRequest struct {
	TTL string `json:"ttl"`
}

// apiAdminEnrollLink issues a one-time enrolment link. The link is in the
// answer only; the audit log records that one was issued and until when.
func (s *Server) apiAdminEnrollLink(c *gin.Context) {
	if s.mfa == nil {
		s.fail(c, errf(http.StatusNotFound, "factor_unavailable", "err.factor_unavailable", nil))
		return
	}
	var req enrollLinkRequest
	if c.Request.ContentLength != 0 {
		if err := decodeJSON(c, &req); err != nil {
			s.fail(c, err)
			return
		}
	}
	ttl := authn.DefaultEnrollLinkTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 || d > 30*24*time.Hour {
			s.fail(c, errf(http.StatusBadRequest, "bad_request", "err.bad_request", fmt.Errorf("ttl %q: want a duration up to 720h", req.TTL)))
			return
		}
		ttl = d
	}
	ctx := c.Request.Context()
	u, err := s.admin.Users.Get(ctx, c.Param("name"))
	if err != nil {
		s.fail(c, userError(err))
		return
	}
	token, exp, err := s.mfa.IssueEnrollLink(ctx, u.Username, ttl)
	if err != nil {
		s.fail(c, userError(err))
		return
	}
	r := c.Request
	link := s.scheme(r) + "://" + r.Host + portalPrefix + "enroll/" + token
	s.audit(c, activity.AuditEnrollLink, u.Username, map[string]string{"expires_at": exp.UTC().Format(time.RFC3339)})
	writeJSON(c.Writer, http.StatusOK, map[string]any{"username": u.Username, "url": link, "expires_at": exp.UTC()})
}

// apiAdminUnlock ends every brute-force lock of a user (and a "This
// wasn't me" hold). Address locks stay: see Regulator.Unlock.
func (s *Server) apiAdminUnlock(c *gin.Context) {
	if s.mfa == nil {
		s.fail(c, errf(http.StatusNotFound, "factor_unavailable", "err.factor_unavailable", nil))
		return
	}
	ctx := c.Request.Context()
	u, err := s.admin.Users.Get(ctx, c.Param("name"))
	if err != nil {
		s.fail(c, userError(err))
		return
	}
	was, err := s.mfa.UnlockByAdmin(ctx, u.Username)
	if err != nil {
		s.fail(c, userError(err))
		return
	}
	s.audit(c, activity.AuditUnlock, u.Username, map[string]string{"was_locked": strconv.FormatBool(was)})
	writeJSON(c.Writer, http.StatusOK, map[string]any{"username": u.Username, "was_locked": was})
}

// apiAdminAudit lists recent admin actions (?limit=, default 100), or
// exports all of them as JSON lines (?format=jsonl).
func (s *Server) apiAdminAudit(c *gin.Context) {
	ctx := c.Request.Context()
	if c.Query("format") == "jsonl" {
		h := c.Writer.Header()
		h.Set("Content-Type", "application/jsonl; charset=utf-8")
		h.Set("Content-Disposition", `attachment; filename="keygate-audit.jsonl"`)
		h.Set("Cache-Control", "no-store")
		if err := s.admin.Audit.Export(ctx, c.Writer); err != nil {
			s.log.Error("audit export failed", "bytes_sent", c.Writer.Size(), "err", err)
			if c.Writer.Written() {
				// A 200 is out: break the connection so that the client
				// sees a failed download, never a short file that looks
				// whole.
				panic(http.ErrAbortHandler)
			}
			s.fail(c, errf(http.StatusInternalServerError, "internal", "err.internal", err))
		}
		return
	}
	limit := 100
	if q := c.Query("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n <= 0 || n > 10000 {
			s.fail(c, errf(http.StatusBadRequest, "bad_request", "err.bad_request", fmt.Errorf("limit %q: want 1 to 10000", q)))
			return
		}
		limit = n
	}
	entries, err := s.admin.Audit.Recent(ctx, limit)
	if err != nil {
		s.fail(c, errf(http.StatusInternalServerError, "internal", "err.internal", err))
		return
	}
	if entries == nil {
		entries = []activity.AuditEntry{}
	}
	writeJSON(c.Writer, http.StatusOK, map[string]any{"entries": entries})
}
