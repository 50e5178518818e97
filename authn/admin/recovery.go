package admin

import (
	"context"
	"errors"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
)

// People's self-service account recoveries (authn/recovery.go) as admins
// see them: every pending one on the admin page, and the two decisions an
// admin may take — approve it (end the waiting period now, having checked
// who the person is) or cancel it (the person did not ask for it).

// RecoveryDesk is what the recovery use-cases ask of authn.MFA. It is an
// optional capability of Deps.Factors (found by a type assertion), so that
// a Factors without recovery still builds the Service.
type RecoveryDesk interface {
	PendingRecoveries(ctx context.Context) ([]authn.Recovery, error)
	ApproveRecovery(ctx context.Context, username, by string) (authn.Recovery, error)
	CancelRecoveryByAdmin(ctx context.Context, username, by string) (authn.Recovery, error)
}

func (s *Service) recoveryDesk() (RecoveryDesk, error) {
	d, ok := s.d.Factors.(RecoveryDesk)
	if !ok {
		return nil, authn.ErrFactorUnavailable
	}
	return d, nil
}

// Recoveries lists every pending recovery, the oldest first ([] when
// recovery is not offered).
func (s *Service) Recoveries(ctx context.Context, _ Actor) ([]authn.Recovery, error) {
	d, err := s.recoveryDesk()
	if errors.Is(err, authn.ErrFactorUnavailable) {
		return []authn.Recovery{}, nil
	}
	if err != nil {
		return nil, err
	}
	return d.PendingRecoveries(ctx)
}

// Recovery is name's pending recovery, or nil.
func (s *Service) Recovery(ctx context.Context, a Actor, name string) (*authn.Recovery, error) {
	all, err := s.Recoveries(ctx, a)
	if err != nil {
		return nil, err
	}
	for _, r := range all {
		if r.Username == name {
			return &r, nil
		}
	}
	return nil, nil
}

// recoveryCase checks the actor and finds the desk and the person an
// admin's decision on a recovery is about.
func (s *Service) recoveryCase(ctx context.Context, a Actor, name string) (RecoveryDesk, authn.User, error) {
	if err := needActor(a); err != nil {
		return nil, authn.User{}, err
	}
	d, err := s.recoveryDesk()
	if err != nil {
		return nil, authn.User{}, err
	}
	u, err := s.d.Users.Get(ctx, name)
	if err != nil {
		return nil, authn.User{}, err
	}
	return d, u, nil
}

// ApproveRecovery ends the waiting period of name's recovery now: the
// person may complete it at once. authn tells the person; the audit log
// records who approved. authn.ErrNoRecovery when none is pending.
func (s *Service) ApproveRecovery(ctx context.Context, a Actor, name string) (authn.Recovery, error) {
	d, u, err := s.recoveryCase(ctx, a, name)
	if err != nil {
		return authn.Recovery{}, err
	}
	if err := notYourself(a, u); err != nil {
		return authn.Recovery{}, err
	}
	r, err := d.ApproveRecovery(ctx, u.Username, a.Name)
	if err != nil {
		return authn.Recovery{}, err
	}
	s.d.Logger.Warn("admin approved an account recovery", "user", u.Username, "by", a.Name, "via", a.Channel)
	s.record(ctx, a, activity.AuditRecoveryApprove, u.Username, map[string]string{
		"requested_at": r.RequestedAt.UTC().Format(time.RFC3339)})
	return r, nil
}

// CancelRecovery ends name's pending recovery. authn tells the person; the
// audit log records who cancelled. authn.ErrNoRecovery when none is
// pending.
func (s *Service) CancelRecovery(ctx context.Context, a Actor, name string) (authn.Recovery, error) {
	d, u, err := s.recoveryCase(ctx, a, name)
	if err != nil {
		return authn.Recovery{}, err
	}
	r, err := d.CancelRecoveryByAdmin(ctx, u.Username, a.Name)
	if err != nil {
		return authn.Recovery{}, err
	}
	s.record(ctx, a, activity.AuditRecoveryCancel, u.Username, map[string]string{
		"requested_at": r.RequestedAt.UTC().Format(time.RFC3339)})
	return r, nil
}

// Interface guards.
var _ RecoveryDesk = (*authn.MFA)(nil)
