package web

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/policy"
)

// The admin pages are rendered on the server: the rules as a table, the
// history, users and audit log are plain HTML, readable without script.
// admin.js adds what needs the API: inline validation and a preview while
// editing, saving, explain, diffs, rollback and the user actions.

// adminView is what the admin templates receive (pageData.Admin).
type adminView struct {
	Admin   string // who is looking
	MaxAge  string
	Current authn.PolicyVersion
	Rules   []ruleRow
	Default string
	History []authn.PolicySummary
	Users   []adminUserRow
	Query   string
	Audit   []activity.AuditEntry
	Hosts   []string // protected hosts, for the explain box
	Factors []string // second-factor kinds, for the explain box
	Methods []string // HTTP methods, for the explain box
	// The user page.
	User *adminUserDetail
}

// ruleRow is a rule as the table shows it.
type ruleRow struct {
	Index    int
	Name     string
	Hosts    string
	Paths    string
	Methods  string
	Networks string
	Who      string
	Action   string
	Options  string
}

func listOrAny(l []string) string {
	if len(l) == 0 {
		return "*"
	}
	return strings.Join(l, ", ")
}

func ruleRows(p policy.Policy) []ruleRow {
	rows := make([]ruleRow, 0, len(p.Rules))
	for i, r := range p.Rules {
		row := ruleRow{Index: i, Name: r.Name, Hosts: listOrAny(r.Hosts), Paths: listOrAny(r.Paths),
			Methods: listOrAny(r.Methods), Networks: listOrAny(r.Networks), Action: r.Action}
		var who []string
		for _, u := range r.Users {
			who = append(who, "user "+u)
		}
		for _, g := range r.Groups {
			who = append(who, "group "+g)
		}
		row.Who = listOrAny(who)
		if r.Action == policy.ActionTwoFactor {
			var opts []string
			if len(r.Factors) > 0 {
				opts = append(opts, strings.Join(r.Factors, ", "))
			}
			if w := r.WebAuthn; w != nil {
				if w.Hardware {
					opts = append(opts, "hardware")
				}
				if w.UserVerification != "" {
					opts = append(opts, "uv "+w.UserVerification)
				}
				if len(w.AAGUIDs) > 0 {
					opts = append(opts, "aaguids "+strings.Join(w.AAGUIDs, ", "))
				}
				if w.Synced != nil && !*w.Synced {
					opts = append(opts, "no synced")
				}
			}
			if r.MaxAge > 0 {
				opts = append(opts, "max_age "+r.MaxAge.String())
			}
			if r.TrustedDevice != nil {
				if *r.TrustedDevice {
					opts = append(opts, "remembered devices")
				} else {
					opts = append(opts, "no remembered devices")
				}
			}
			row.Options = strings.Join(opts, "; ")
		}
		rows = append(rows, row)
	}
	return rows
}

func (s *Server) adminPage(c *gin.Context) {
	ctx := c.Request.Context()
	a := s.admin
	cur, err := a.Policies.Current(ctx)
	if err != nil {
		s.fail(c, policyError(policy.Policy{}, err))
		return
	}
	hist, err := a.Policies.History(ctx)
	if err != nil {
		s.fail(c, policyError(policy.Policy{}, err))
		return
	}
	q := c.Query("q")
	users, err := s.searchUsers(ctx, q)
	if err != nil {
		s.fail(c, userError(err))
		return
	}
	audit, err := a.Audit.Recent(ctx, 50)
	if err != nil {
		s.fail(c, errf(http.StatusInternalServerError, "internal", "err.internal", err))
		return
	}
	def := cur.Policy.Default
	if def == "" {
		def = policy.ActionTwoFactor
	}
	d := s.page(c)
	d.Title = d.T.T("admin.title")
	d.Admin = &adminView{
		Admin: actingAdmin(c), MaxAge: a.MaxAge.String(), Current: cur, Rules: ruleRows(cur.Policy), Default: def,
		History: hist, Users: users, Query: q, Audit: audit, Hosts: s.upstreamHosts(),
		Factors: []string{policy.FactorWebAuthn, policy.FactorTOTP, policy.FactorEmail, policy.FactorRecovery},
		Methods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions},
	}
	s.render(c, http.StatusOK, "admin", d)
}

func (s *Server) adminUserPage(c *gin.Context) {
	detail, err := s.userDetail(c.Request.Context(), c.Param("name"))
	if err != nil {
		s.fail(c, userError(err))
		return
	}
	d := s.page(c)
	d.Title = d.T.Tf("admin.user.title", detail.User.Username)
	d.Admin = &adminView{Admin: actingAdmin(c), MaxAge: s.admin.MaxAge.String(), User: &detail}
	s.render(c, http.StatusOK, "admin_user", d)
}
