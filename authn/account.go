package authn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/factors"
)

// The account side of the second-factor flows: regulation of every
// verifier, the activity log, unlocking, and "this wasn't me".

// admit reserves a try at the second-factor gate for the session's user.
// A lock in force is told at once, before any code is checked: the person
// already gave the right password, and checking now would only burn the
// code (email and recovery codes work once) without letting them in.
func (m *MFA) admit(ctx context.Context, sess *Session, u User) (*Try, error) {
	le, err := m.o.Regulator.Status(ctx, GateSecondFactor, u.Username, sess.IP)
	if err != nil {
		return nil, err
	}
	if le != nil {
		return nil, m.lockedFor(ctx, u, le)
	}
	try, err := m.o.Regulator.Begin(ctx, GateSecondFactor, u.Username, sess.IP)
	if err != nil {
		return nil, err
	}
	if try.Locked != nil {
		// A lock that began in between (a concurrent wrong code).
		return nil, m.lockedFor(ctx, u, try.Locked)
	}
	return try, nil
}

// settle reports a verifier's outcome err (nil = right) to the regulator
// and the log, and returns err. Only answers that judged a guess count as
// failures; an expired or unknown code, or a technical failure, gives the
// try back.
func (m *MFA) settle(ctx context.Context, try *Try, sess *Session, u User, factor string, err error) error {
	c := clientOf(sess)
	switch {
	case err == nil:
		if perr := try.Pass(ctx); perr != nil {
			return perr
		}
		if factor != "" {
			m.o.Activity.Passed(ctx, u.Username, activity.EventSecondFactor, factor, c)
		}
		return nil
	case countable(err):
		if locked := try.Fail(ctx); !locked.IsZero() {
			m.o.Activity.Note(ctx, u.Username, activity.EventLocked, locked.Format(time.RFC3339), c)
		}
		if factor == "" {
			factor = "email"
		}
		m.o.Activity.Failed(ctx, u.Username, activity.EventSecondFactorFailed, factor, c)
		return err
	default:
		_ = try.Release(ctx)
		return err
	}
}

// countable says whether err judged a guess: a wrong or already used
// code, a refused ceremony answer (the factors mark those with their
// shared refusals, whatever their own reason).
func countable(err error) bool {
	return errors.Is(err, factors.ErrWrongResponse) || errors.Is(err, factors.ErrReplayed)
}

// lockedFor completes a lock shown to someone who gave right credentials:
// an account lock comes with an unlock ticket when a code can reach a
// confirmed address.
func (m *MFA) lockedFor(ctx context.Context, u User, le *LockedError) error {
	out := *le
	if _, codes := m.addressCodes(); !out.Network && codes && u.EmailVerified && u.Email != "" {
		t, err := m.o.Regulator.IssueTicket(ctx, u.Username)
		if err != nil {
			return err
		}
		out.Ticket = t
	}
	return &out
}

// ActivityLog is the log the flows write to (nil when there is none; its
// methods then do nothing).
func (m *MFA) ActivityLog() *activity.Log { return m.o.Activity }

// Activity returns up to limit of username's recent events, newest first.
func (m *MFA) Activity(ctx context.Context, username string, limit int) ([]activity.Event, error) {
	return m.o.Activity.List(ctx, username, limit)
}

// UnlockTarget tells the unlock page where a code would go: the masked
// address of the ticket's account.
func (m *MFA) UnlockTarget(ctx context.Context, ticket string) (string, error) {
	owner, err := m.o.Regulator.TicketOwner(ctx, ticket)
	if err != nil {
		return "", err
	}
	u, err := m.users.Get(ctx, owner)
	if errors.Is(err, ErrUserNotFound) {
		return "", ErrTicketInvalid
	}
	if err != nil {
		return "", err
	}
	if _, codes := m.addressCodes(); !u.EmailVerified || u.Email == "" || !codes {
		return "", ErrEmailNotVerified
	}
	return mail.Mask(u.Email), nil
}

// SendUnlockCode mails an unlock code to the confirmed address of the
// ticket's account. The ticket came with a lock shown to right
// credentials, so whoever holds it knew the password; the code proves they
// also read the person's mail.
func (m *MFA) SendUnlockCode(ctx context.Context, ticket, lang string) (factors.Sent, error) {
	ac, ok := m.addressCodes()
	if !ok {
		return factors.Sent{}, ErrFactorUnavailable
	}
	owner, err := m.o.Regulator.TicketOwner(ctx, ticket)
	if err != nil {
		return factors.Sent{}, err
	}
	u, err := m.users.Get(ctx, owner)
	if errors.Is(err, ErrUserNotFound) {
		return factors.Sent{}, ErrTicketInvalid
	}
	if err != nil {
		return factors.Sent{}, err
	}
	if !u.EmailVerified || u.Email == "" {
		return factors.Sent{}, ErrEmailNotVerified
	}
	return ac.SendFor(ctx, subject(u, lang, Client{}), factors.PurposeUnlock, u.Email)
}

// Unlock checks an unlock code for the ticket's account and, when right,
// ends its locks (address locks stay: see Regulator.Unlock). The code has
// the email factor's own limits (tries per code, resend cooldown, hourly
// cap), so guessing it is bounded without a lock of its own.
func (m *MFA) Unlock(ctx context.Context, ticket, code string, c Client) (string, error) {
	ac, ok := m.addressCodes()
	if !ok {
		return "", ErrFactorUnavailable
	}
	owner, err := m.o.Regulator.TicketOwner(ctx, ticket)
	if err != nil {
		return "", err
	}
	u, err := m.users.Get(ctx, owner)
	if errors.Is(err, ErrUserNotFound) {
		return "", ErrTicketInvalid
	}
	if err != nil {
		return "", err
	}
	err = ac.ProveFor(ctx, subject(u, "", c), factors.PurposeUnlock, code)
	if errors.Is(err, factors.ErrWrongResponse) {
		m.o.Activity.Failed(ctx, u.Username, activity.EventSecondFactorFailed, "email", c)
		return "", ErrWrongCode
	}
	if err != nil {
		return "", codeRefusal(err, ErrNoCodeSent)
	}
	if _, err := m.o.Regulator.Unlock(ctx, u.Username); err != nil {
		return "", err
	}
	m.o.Regulator.consumeTicket(ctx, ticket)
	m.o.Activity.Changed(ctx, u.Person(), activity.EventUnlocked, "email", "", c)
	return u.Username, nil
}

// UnlockByAdmin ends every lock of username (keygate user unlock) and
// reports whether one was in force.
func (m *MFA) UnlockByAdmin(ctx context.Context, username string) (bool, error) {
	u, err := m.users.Get(ctx, username)
	if err != nil {
		return false, err
	}
	was, err := m.o.Regulator.Unlock(ctx, u.Username)
	if err != nil {
		return false, err
	}
	if was {
		m.o.Activity.Changed(ctx, u.Person(), activity.EventUnlocked, "", "admin", Client{})
	}
	return was, nil
}

// CheckNotMe says whether a "This wasn't me" link is live, without using
// it (the page that asks for confirmation).
func (m *MFA) CheckNotMe(ctx context.Context, token string) error {
	return m.o.Activity.CheckNotMe(ctx, token)
}

// ReportNotMe acts on a "This wasn't me" link: every session of the
// account ends, its remembered devices are forgotten and it is locked
// until unlocked with a code by email or by an admin. It returns the
// account's name.
func (m *MFA) ReportNotMe(ctx context.Context, token string, c Client) (string, error) {
	username, err := m.o.Activity.RedeemNotMe(ctx, token)
	if err != nil {
		return "", err
	}
	// Lock first: from here on no new session can start, so none can
	// slip in between the revocation and the lock.
	if err := m.o.Regulator.Hold(ctx, username, activity.EventReported); err != nil {
		return "", err
	}
	if _, err := m.sessions.RevokeUser(ctx, username); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	// A pending account recovery may be the very thing reported.
	if m.o.Recoveries != nil {
		if _, err := m.o.Recoveries.remove(ctx, username); err == nil {
			m.o.Activity.Note(ctx, username, activity.EventRecoveryCancelled, "reported", c)
		} else if !errors.Is(err, ErrNoRecovery) {
			return "", fmt.Errorf("report: %w", err)
		}
	}
	if m.o.Devices != nil {
		if _, err := m.o.Devices.RevokeAll(ctx, username); err != nil {
			return "", fmt.Errorf("report: %w", err)
		}
	}
	m.o.Activity.Note(ctx, username, activity.EventReported, "", c)
	return username, nil
}
