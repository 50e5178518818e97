package admin

import (
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	svc "github.com/keygate/keygate/authn/admin"
	"github.com/keygate/keygate/authn/policies"
	"github.com/keygate/keygate/policy"
)

// The admin pages are rendered on the server: the rules as a table, the
// history, users and audit log are plain HTML, readable without script.
// admin.js adds what needs the API: inline validation and a preview while
// editing, saving, explain, diffs, rollback and the user actions.

func (h *Handler) apiRoutes() {
	h.userRoutes()
	h.policyRoutes()
	h.keyRoutes()
	h.recoveryRoutes()
}

func (h *Handler) pageRoutes() {
	h.handle(h.pages, "GET "+svc.PagePath, h.adminPage)
	h.handle(h.pages, "GET "+svc.PagePath+"/users/{name}", h.userPage)
}

// View is what the admin templates receive (the layout's .Admin).
type View struct {
	Admin   string // who is looking
	MaxAge  time.Duration
	Current policies.Version
	Rules   []RuleRow
	Default string
	History []policies.Summary
	Users   []svc.UserRow
	Query   string
	Audit   []activity.AuditEntry
	Hosts   []string // protected hosts, for the explain box
	Factors []string // second-factor kinds, for the explain box
	Methods []string // HTTP methods, for the explain box
	// The user page.
	User *svc.UserDetail
	// Pending account recoveries: all of them (admin page), the user's
	// (user page).
	Recoveries []authn.Recovery
	Recovery   *authn.Recovery
}

// RuleRow is a rule as the table shows it.
type RuleRow struct {
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

func ruleRows(p policy.Policy) []RuleRow {
	rows := make([]RuleRow, 0, len(p.Rules))
	for i, r := range p.Rules {
		row := RuleRow{Index: i, Name: r.Name, Hosts: listOrAny(r.Hosts), Paths: listOrAny(r.Paths),
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

func (h *Handler) adminPage(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	ctx := r.Context()
	s := h.o.Service
	cur, err := s.Policy(ctx, a)
	if err != nil {
		return err
	}
	hist, err := s.PolicyHistory(ctx, a)
	if err != nil {
		return err
	}
	q := r.URL.Query().Get("q")
	users, err := s.ListUsers(ctx, a, q)
	if err != nil {
		return err
	}
	audit, err := s.AuditLog(ctx, a, 50)
	if err != nil {
		return err
	}
	recoveries, err := s.Recoveries(ctx, a)
	if err != nil {
		return err
	}
	def := cur.Policy.Default
	if def == "" {
		def = policy.ActionTwoFactor
	}
	h.o.Render.Page(w, r, "admin", "admin.title", nil, &View{
		Admin: a.Name, MaxAge: s.MaxAge(), Current: cur, Rules: ruleRows(cur.Policy), Default: def,
		History: hist, Users: users, Query: q, Audit: audit, Hosts: s.Hosts(), Factors: h.o.Kinds(), Recoveries: recoveries,
		Methods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions},
	})
	return nil
}

func (h *Handler) userPage(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	d, err := h.o.Service.User(r.Context(), a, r.PathValue("name"))
	if err != nil {
		return err
	}
	rec, err := h.o.Service.Recovery(r.Context(), a, d.User.Username)
	if err != nil {
		return err
	}
	h.o.Render.Page(w, r, "admin_user", "admin.user.title", []any{d.User.Username},
		&View{Admin: a.Name, MaxAge: h.o.Service.MaxAge(), User: &d, Recovery: rec})
	return nil
}
