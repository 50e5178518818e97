// Package admin holds every admin use-case of keygate, once: the admin
// page, the admin JSON API and the `keygate` command (through the admin
// socket, which serves the same API) all call one Service. Each method
// takes the Actor doing it, makes the change, carries out its consequences
// (ending sessions, notices to the person) and writes the audit entry, in
// one place, so that no channel can forget one of them.
//
// The Service takes what it needs in its constructor, as narrow interfaces
// declared here; cmd wires the concrete parts (authn.Users, authn.Sessions,
// authn.MFA, policies.Store, activity.Audit, …).
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/policies"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/policy"
)

// Channels an admin acts through; Actor.Channel is one of them and the
// audit log records it.
const (
	// ChannelWeb: the admin page or the admin JSON API, with a session.
	ChannelWeb = "web"
	// ChannelAPI: the admin JSON API used by a program with a session.
	ChannelAPI = "api"
	// ChannelCLI: the keygate command, through the admin socket (the
	// actor is the peer's OS user) or on the stopped data directory.
	ChannelCLI = "cli"
)

// Actor is who does an admin action, through which channel, from where.
type Actor struct {
	// Name is the admin's username (web, api) or the OS user (cli).
	Name string
	// Channel is ChannelWeb, ChannelAPI or ChannelCLI.
	Channel string
	// Address is the client's IP address ("" for the CLI).
	Address string
}

// Users is what the admin service needs of the accounts (authn.Users).
type Users interface {
	List(ctx context.Context) ([]authn.User, error)
	Get(ctx context.Context, username string) (authn.User, error)
	Add(ctx context.Context, nu authn.NewUser) (authn.User, error)
	SetPassword(ctx context.Context, username, password string) error
	SetDisabled(ctx context.Context, username string, disabled bool) error
	Delete(ctx context.Context, username string) error
}

// Sessions lists and ends a user's sessions (authn.Sessions).
type Sessions interface {
	ListUser(username string) []*authn.Session
	RevokeUser(ctx context.Context, username string) (int, error)
}

// Factors is what the admin service asks of second-factor management
// (authn.MFA): the person's credentials, devices and activity, and the
// admin's actions on them. ResetFactors and UnlockByAdmin record the
// change in the person's activity log, which notifies them.
type Factors interface {
	Credentials(ctx context.Context, username string) ([]factors.Credential, error)
	Devices(ctx context.Context, username string) ([]authn.Device, error)
	Activity(ctx context.Context, username string, limit int) ([]activity.Event, error)
	ResetFactors(ctx context.Context, username string) (int, error)
	IssueEnrollLink(ctx context.Context, username string, ttl time.Duration) (string, time.Time, error)
	UnlockByAdmin(ctx context.Context, username string) (bool, error)
	// Factors are the registered factors, whose optional capabilities
	// (factors.Reassessor, factors.Suspender) the key use-cases look for.
	Factors() factors.Set
}

// Locks says whether a brute-force lock holds (authn.Regulator).
type Locks interface {
	Status(ctx context.Context, gate authn.Gate, subject, ip string) (*authn.LockedError, error)
}

// Policies is the versioned policy store (policies.Store).
type Policies interface {
	Current(ctx context.Context) (policies.Version, error)
	Version(ctx context.Context, n int) (policies.Version, error)
	History(ctx context.Context) ([]policies.Summary, error)
	Diff(ctx context.Context, a, b int) (string, error)
	Check(p policy.Policy) (*policy.Compiled, error)
	Update(ctx context.Context, p policy.Policy, ifVersion int, author, comment string) (policies.Version, error)
	Rollback(ctx context.Context, to, ifVersion int, author, comment string) (policies.Version, error)
}

// Audit is the admin audit log (activity.Audit).
type Audit interface {
	Record(ctx context.Context, e activity.AuditEntry) (activity.AuditEntry, error)
	Recent(ctx context.Context, limit int) ([]activity.AuditEntry, error)
	Export(ctx context.Context, w io.Writer) error
}

// Running is the compiled policy the gate uses this very moment
// (policy.Holder).
type Running interface {
	Load() *policy.Compiled
}

// Hosts lists the protected hosts, sorted (they change on a reload).
type Hosts interface {
	Hosts() []string
}

// Deps are the Service's parts. Factors and Locks may be nil (no second
// factors configured): the factor use-cases then answer
// authn.ErrFactorUnavailable.
type Deps struct {
	Users    Users
	Sessions Sessions
	Factors  Factors
	Locks    Locks
	Policies Policies
	Audit    Audit
	Running  Running
	Hosts    Hosts
	// Groups: members of any of them are admins (shown in listings).
	Groups []string
	// MaxAge is how fresh an admin's second factor must be in the admin
	// area (DefaultMaxAge when 0); the policy guard refuses rules that
	// claim less for it.
	MaxAge time.Duration
	// SecondFactor says which factor names are second factors (the
	// registered kinds), for explain; nil = policy's built-in ones.
	SecondFactor func(kind string) bool
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// DefaultMaxAge is how fresh an admin's second factor must be.
const DefaultMaxAge = 15 * time.Minute

// Service is every admin use-case.
type Service struct {
	d Deps
}

// New checks the parts and returns the Service.
func New(d Deps) (*Service, error) {
	if d.Users == nil || d.Sessions == nil || d.Policies == nil || d.Audit == nil || d.Running == nil {
		return nil, errors.New("admin: the service needs users, sessions, policies, audit and the running policy")
	}
	if d.MaxAge <= 0 {
		d.MaxAge = DefaultMaxAge
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{d: d}, nil
}

// MaxAge is how fresh an admin's second factor must be.
func (s *Service) MaxAge() time.Duration { return s.d.MaxAge }

// Groups are the admin groups.
func (s *Service) Groups() []string { return slices.Clone(s.d.Groups) }

// IsAdmin says whether one of groups makes its member an admin.
func (s *Service) IsAdmin(groups []string) bool {
	return slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(s.d.Groups, g) })
}

// Hosts lists the protected hosts.
func (s *Service) Hosts() []string {
	if s.d.Hosts == nil {
		return []string{}
	}
	return s.d.Hosts.Hosts()
}

// record writes the audit entry of an action that happened. The action
// is done, so a failure to record it is logged (the audit log does) and
// not reported as a failure of the action.
func (s *Service) record(ctx context.Context, a Actor, action, target string, details map[string]string) {
	_, err := s.d.Audit.Record(context.WithoutCancel(ctx), activity.AuditEntry{
		Admin: a.Name, Via: a.Channel, IP: a.Address, Action: action, Target: target, Details: details,
	})
	if err != nil {
		s.d.Logger.Error("admin action not audited", "action", action, "admin", a.Name, "target", target, "err", err)
	}
}

// needActor refuses an action without an actor: every change names who
// made it.
func needActor(a Actor) error {
	if a.Name == "" || a.Channel == "" {
		return fmt.Errorf("%w: no actor", ErrNoActor)
	}
	return nil
}
