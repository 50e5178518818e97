package admin

import (
	"context"
	"strconv"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/factors"
)

// A user's second factors as an admin handles them: list, reset, an
// enrolment link for a first factor, and unlocking after a brute-force
// lock or a "This wasn't me" report.

// MaxEnrollLinkTTL bounds how long an enrolment link may work.
const MaxEnrollLinkTTL = 30 * 24 * time.Hour

// Credentials lists a user's second factors.
func (s *Service) Credentials(ctx context.Context, _ Actor, name string) ([]factors.Credential, error) {
	f, err := s.factors()
	if err != nil {
		return nil, err
	}
	u, err := s.d.Users.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	cs, err := f.Credentials(ctx, u.Username)
	if cs == nil {
		cs = []factors.Credential{}
	}
	return cs, err
}

// ResetFactors removes every second factor of a user, forgets their
// remembered devices and ends their sessions (authn.MFA.ResetFactors, which
// also logs it in the person's activity and so notifies them). It says how
// many credentials were removed. Resetting yourself from the web is
// refused.
func (s *Service) ResetFactors(ctx context.Context, a Actor, name string) (int, error) {
	if err := needActor(a); err != nil {
		return 0, err
	}
	f, err := s.factors()
	if err != nil {
		return 0, err
	}
	u, err := s.d.Users.Get(ctx, name)
	if err != nil {
		return 0, err
	}
	if err := notYourself(a, u); err != nil {
		return 0, err
	}
	n, err := f.ResetFactors(ctx, u.Username)
	if err != nil {
		return 0, err
	}
	s.d.Logger.Warn("admin reset the second factors of a user", "user", u.Username, "by", a.Name, "via", a.Channel, "credentials", n)
	s.record(ctx, a, activity.AuditResetFactors, u.Username, map[string]string{"removed": strconv.Itoa(n)})
	return n, nil
}

// EnrollLink issues a one-time link token for a first second factor,
// valid for ttl (0 = authn.DefaultEnrollLinkTTL, at most
// MaxEnrollLinkTTL). The token is in the answer only: the audit log records
// that one was issued and until when, never the token.
func (s *Service) EnrollLink(ctx context.Context, a Actor, name string, ttl time.Duration) (string, time.Time, error) {
	if err := needActor(a); err != nil {
		return "", time.Time{}, err
	}
	if ttl == 0 {
		ttl = authn.DefaultEnrollLinkTTL
	}
	if ttl < 0 || ttl > MaxEnrollLinkTTL {
		return "", time.Time{}, badInput("ttl", "ttl %s: want a duration up to %s", ttl, MaxEnrollLinkTTL)
	}
	f, err := s.factors()
	if err != nil {
		return "", time.Time{}, err
	}
	u, err := s.d.Users.Get(ctx, name)
	if err != nil {
		return "", time.Time{}, err
	}
	token, exp, err := f.IssueEnrollLink(ctx, u.Username, ttl)
	if err != nil {
		return "", time.Time{}, err
	}
	s.record(ctx, a, activity.AuditEnrollLink, u.Username, map[string]string{"expires_at": exp.UTC().Format(time.RFC3339)})
	return token, exp, nil
}

// Unlock ends every brute-force lock of a user and a "This wasn't me"
// hold (address locks stay: see authn.Regulator.Unlock), and says whether
// one was in force.
func (s *Service) Unlock(ctx context.Context, a Actor, name string) (bool, error) {
	if err := needActor(a); err != nil {
		return false, err
	}
	f, err := s.factors()
	if err != nil {
		return false, err
	}
	u, err := s.d.Users.Get(ctx, name)
	if err != nil {
		return false, err
	}
	was, err := f.UnlockByAdmin(ctx, u.Username)
	if err != nil {
		return false, err
	}
	if was {
		s.d.Logger.Warn("admin unlocked a user", "user", u.Username, "by", a.Name, "via", a.Channel)
	}
	s.record(ctx, a, activity.AuditUnlock, u.Username, map[string]string{"was_locked": strconv.FormatBool(was)})
	return was, nil
}

func (s *Service) factors() (Factors, error) {
	if s.d.Factors == nil {
		return nil, authn.ErrFactorUnavailable
	}
	return s.d.Factors, nil
}
