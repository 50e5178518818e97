package admin

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/policy"
)

// User management: list and search, one user with their factors, sessions,
// remembered devices, locks and activity, and what admins do to an account.

// UserRow is a user in a listing: never the password hash.
type UserRow struct {
	Username      string    `json:"username"`
	Email         string    `json:"email,omitempty"`
	DisplayName   string    `json:"display_name,omitempty"`
	Groups        []string  `json:"groups"`
	Disabled      bool      `json:"disabled"`
	EmailVerified bool      `json:"email_verified"`
	AlwaysAsk     bool      `json:"always_ask"` // a second factor even where the password is enough (authn/always_ask.go)
	Admin         bool      `json:"admin"`
	Sessions      int       `json:"sessions"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// SessionView is a session as an admin sees it: never its ID.
type SessionView struct {
	Handle    string    `json:"handle"`
	IP        string    `json:"ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	Device    string    `json:"device,omitempty"`
	Factors   []string  `json:"factors"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"`
	ExpiresAt time.Time `json:"expires_at"`
}

// LockView is a lock that holds on an account.
type LockView struct {
	Gate     string    `json:"gate"`           // password or second_factor
	Until    time.Time `json:"until,omitzero"` // zero: until unlocked
	Reported bool      `json:"reported"`       // "This wasn't me": only an unlock ends it
}

// UserDetail is one user with everything the admin page shows.
type UserDetail struct {
	User     UserRow              `json:"user"`
	Factors  []factors.Credential `json:"factors"`
	Sessions []SessionView        `json:"sessions"`
	Devices  []authn.Device       `json:"devices"`
	Lockouts []LockView           `json:"lockouts"`
	// Activity is the account's recent activity log, newest first.
	Activity []activity.Event `json:"activity"`
}

// recentActivity is how many events the user view shows.
const recentActivity = 30

func (s *Service) row(u authn.User) UserRow {
	groups := u.Groups
	if groups == nil {
		groups = []string{}
	}
	return UserRow{
		Username: u.Username, Email: u.Email, DisplayName: u.DisplayName, Groups: groups,
		Disabled: u.Disabled, EmailVerified: u.EmailVerified, AlwaysAsk: u.AlwaysAsk, Admin: s.IsAdmin(u.Groups),
		Sessions: len(s.d.Sessions.ListUser(u.Username)), CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt,
	}
}

// ListUsers lists the users whose name, email, display name or a group
// contains query (any case; empty = everyone).
func (s *Service) ListUsers(ctx context.Context, _ Actor, query string) ([]UserRow, error) {
	users, err := s.d.Users.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	q := strings.ToLower(strings.TrimSpace(query))
	out := []UserRow{}
	for _, u := range users {
		if q != "" && !strings.Contains(strings.ToLower(u.Username), q) && !strings.Contains(strings.ToLower(u.Email), q) &&
			!strings.Contains(strings.ToLower(u.DisplayName), q) &&
			!slices.ContainsFunc(u.Groups, func(g string) bool { return strings.Contains(strings.ToLower(g), q) }) {
			continue
		}
		out = append(out, s.row(u))
	}
	return out, nil
}

// User is one user with their factors, sessions, devices, locks and
// recent activity.
func (s *Service) User(ctx context.Context, _ Actor, name string) (UserDetail, error) {
	u, err := s.d.Users.Get(ctx, name)
	if err != nil {
		return UserDetail{}, err
	}
	d := UserDetail{User: s.row(u), Factors: []factors.Credential{}, Sessions: []SessionView{},
		Devices: []authn.Device{}, Lockouts: []LockView{}, Activity: []activity.Event{}}
	if s.d.Locks != nil {
		for _, g := range []authn.Gate{authn.GatePassword, authn.GateSecondFactor} {
			le, err := s.d.Locks.Status(ctx, g, u.Username, "")
			if err != nil {
				return UserDetail{}, fmt.Errorf("lock status of %q: %w", u.Username, err)
			}
			if le != nil {
				d.Lockouts = append(d.Lockouts, LockView{Gate: string(g), Until: le.Until, Reported: le.Reported})
				if le.Reported {
					break // one hold covers both gates
				}
			}
		}
	}
	if f := s.d.Factors; f != nil {
		events, err := f.Activity(ctx, u.Username, recentActivity)
		if err != nil {
			return UserDetail{}, fmt.Errorf("activity of %q: %w", u.Username, err)
		}
		if events != nil {
			d.Activity = events
		}
		creds, err := f.Credentials(ctx, u.Username)
		if err != nil {
			return UserDetail{}, fmt.Errorf("credentials of %q: %w", u.Username, err)
		}
		if creds != nil {
			d.Factors = creds
		}
		devs, err := f.Devices(ctx, u.Username)
		if err != nil {
			return UserDetail{}, fmt.Errorf("devices of %q: %w", u.Username, err)
		}
		if devs != nil {
			d.Devices = devs
		}
	}
	d.Sessions = s.sessionViews(u.Username)
	return d, nil
}

func (s *Service) sessionViews(username string) []SessionView {
	out := []SessionView{}
	for _, sess := range s.d.Sessions.ListUser(username) {
		v := SessionView{Handle: sess.Handle, IP: sess.IP, UserAgent: sess.UserAgent, Device: activity.DescribeUserAgent(sess.UserAgent),
			Factors: []string{}, CreatedAt: sess.CreatedAt, LastSeen: sess.LastSeen, ExpiresAt: sess.ExpiresAt}
		for _, p := range sess.Proofs {
			if (p.Kind == policy.FactorPassword || authn.IsSecondFactor(p.Kind)) && !slices.Contains(v.Factors, p.Kind) {
				v.Factors = append(v.Factors, p.Kind)
			}
		}
		out = append(out, v)
	}
	return out
}

// Sessions lists a user's sessions.
func (s *Service) Sessions(ctx context.Context, _ Actor, name string) ([]SessionView, error) {
	u, err := s.d.Users.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.sessionViews(u.Username), nil
}

// EndSessions signs a user out everywhere and says how many sessions
// ended.
func (s *Service) EndSessions(ctx context.Context, a Actor, name string) (int, error) {
	if err := needActor(a); err != nil {
		return 0, err
	}
	u, err := s.d.Users.Get(ctx, name)
	if err != nil {
		return 0, err
	}
	n, err := s.d.Sessions.RevokeUser(ctx, u.Username)
	if err != nil {
		return 0, fmt.Errorf("end sessions of %q: %w", u.Username, err)
	}
	s.record(ctx, a, AuditSessionsEnd, u.Username, map[string]string{"sessions_ended": strconv.Itoa(n)})
	return n, nil
}

// AuditSessionsEnd is the audit action of EndSessions.
const AuditSessionsEnd = "user.sessions_end"

// AddUser creates a user.
func (s *Service) AddUser(ctx context.Context, a Actor, nu authn.NewUser) (UserRow, error) {
	if err := needActor(a); err != nil {
		return UserRow{}, err
	}
	u, err := s.d.Users.Add(ctx, nu)
	if err != nil {
		return UserRow{}, passwordErr(err)
	}
	s.record(ctx, a, activity.AuditUserAdd, u.Username, map[string]string{"groups": strings.Join(u.Groups, ",")})
	return s.row(u), nil
}

// SetPassword sets a user's password and ends their sessions (whoever
// held them must sign in with the new one).
func (s *Service) SetPassword(ctx context.Context, a Actor, name, password string) (int, error) {
	if err := needActor(a); err != nil {
		return 0, err
	}
	u, err := s.d.Users.Get(ctx, name)
	if err != nil {
		return 0, err
	}
	if err := s.d.Users.SetPassword(ctx, u.Username, password); err != nil {
		return 0, passwordErr(err)
	}
	n, err := s.d.Sessions.RevokeUser(ctx, u.Username)
	s.record(ctx, a, activity.AuditUserPassword, u.Username, map[string]string{"sessions_ended": strconv.Itoa(n)})
	if err != nil {
		return n, fmt.Errorf("end sessions of %q: %w", u.Username, err)
	}
	return n, nil
}

// SetDisabled disables a user, ending every session at once, or enables
// them. It says how many sessions ended. Disabling yourself from the web
// is refused (ErrNotOnYourself).
func (s *Service) SetDisabled(ctx context.Context, a Actor, name string, disabled bool) (int, error) {
	if err := needActor(a); err != nil {
		return 0, err
	}
	u, err := s.d.Users.Get(ctx, name)
	if err != nil {
		return 0, err
	}
	if disabled {
		if err := notYourself(a, u); err != nil {
			return 0, err
		}
	}
	if err := s.d.Users.SetDisabled(ctx, u.Username, disabled); err != nil {
		return 0, err
	}
	if !disabled {
		s.record(ctx, a, activity.AuditUserEnable, u.Username, map[string]string{})
		return 0, nil
	}
	n, err := s.d.Sessions.RevokeUser(ctx, u.Username)
	s.record(ctx, a, activity.AuditUserDisable, u.Username, map[string]string{"sessions_ended": strconv.Itoa(n)})
	if err != nil {
		return n, fmt.Errorf("end sessions of %q: %w", u.Username, err)
	}
	return n, nil
}

// DeleteUser deletes a user and ends their sessions.
func (s *Service) DeleteUser(ctx context.Context, a Actor, name string) (int, error) {
	if err := needActor(a); err != nil {
		return 0, err
	}
	u, err := s.d.Users.Get(ctx, name)
	if err != nil {
		return 0, err
	}
	if err := notYourself(a, u); err != nil {
		return 0, err
	}
	if err := s.d.Users.Delete(ctx, u.Username); err != nil {
		return 0, err
	}
	n, err := s.d.Sessions.RevokeUser(ctx, u.Username)
	s.record(ctx, a, activity.AuditUserDelete, u.Username, map[string]string{"sessions_ended": strconv.Itoa(n)})
	if err != nil {
		return n, fmt.Errorf("end sessions of %q: %w", u.Username, err)
	}
	return n, nil
}

// notYourself refuses, on the web, actions that would lock the acting
// admin out of the admin area they are using. The CLI's actor is an OS
// user, so it never is the account acted on.
func notYourself(a Actor, u authn.User) error {
	if a.Channel != ChannelCLI && strings.EqualFold(a.Name, u.Username) {
		return ErrNotOnYourself
	}
	return nil
}

// Account is the stored user behind a session, for the admin area's guard:
// who is an admin comes from the store, not from the session, so a user
// removed from the admin group (or disabled) loses the admin area at once.
func (s *Service) Account(ctx context.Context, username string) (authn.User, error) {
	return s.d.Users.Get(ctx, username)
}
