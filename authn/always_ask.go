package authn

import (
	"context"
	"errors"
	"fmt"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/factors"
)

// "Always ask me for a second factor": a person's own choice to be asked
// for a second factor even where a rule is content with the password
// (one_factor). It never loosens anything: bypass rules stay open, deny
// stays deny, two_factor rules are unchanged. The flag lives on the user
// and is copied onto every live session of the person (Sessions.SyncUser),
// so that the gate applies it from memory; replicas get the sessions'
// new records through the store's feed like any other session change.
//
// Turning it on makes the account stricter, so the session alone may do
// it, but only with a second factor to give (else every sign-in would stop
// at a chooser with nothing to choose). Turning it off makes the account
// weaker: it needs a fresh second factor, like a password change, and the
// person is told by mail.

// Activity kinds of the setting; both are in the person's activity log,
// which admins read too. Off is also mailed (a row in the notices'
// changeText).
const (
	EventAlwaysAskOn  = "always_ask_on"
	EventAlwaysAskOff = "always_ask_off"
)

// ChangeAlwaysAsk is the action a WeakProofError names when turning the
// setting off lacks a fresh second factor.
const ChangeAlwaysAsk = "stop always asking for"

// ErrAlwaysAskNoFactor refuses turning the setting on for an account with
// no second factor it could give at sign-in (recovery codes alone do not
// count: they run out).
var ErrAlwaysAskNoFactor = errors.New("authn: add a second factor before asking to be always asked for one, or you could not sign in")

// SetAlwaysAsk turns the session user's "always ask" on or off and
// returns the session as it is now (same ID). Setting what is already set
// changes and records nothing.
func (m *MFA) SetAlwaysAsk(ctx context.Context, id string, on bool, c Client) (*Session, error) {
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return nil, err
	}
	if u.AlwaysAsk == on {
		return sess, nil
	}
	methods, err := m.Methods(ctx, u.Username)
	if err != nil {
		return nil, fmt.Errorf("always ask: %w", err)
	}
	if on {
		if !m.canGiveSecondFactor(methods) {
			return nil, ErrAlwaysAskNoFactor
		}
	} else if f := m.fresh(sess); f.best < factors.StrengthCode {
		werr := &WeakProofError{Action: ChangeAlwaysAsk, Need: factors.StrengthCode, Have: f.best}
		for _, md := range methods {
			werr.Kinds = append(werr.Kinds, md.Kind)
		}
		m.o.Activity.Note(ctx, u.Username, activity.EventChangeRefused, "always_ask", clientOf(sess))
		return nil, werr
	}
	nu, err := m.users.Update(ctx, u.Username, func(x *User) error {
		x.AlwaysAsk = on
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("always ask: %w", err)
	}
	// Every live session of the person, this one included, carries the
	// new value before we answer: the next request through the gate is
	// judged by it.
	if _, err := m.sessions.SyncUser(ctx, nu); err != nil {
		return nil, fmt.Errorf("always ask: %w", err)
	}
	if on {
		m.o.Activity.Note(ctx, nu.Username, EventAlwaysAskOn, "", c)
	} else {
		m.users.ev.Changed(ctx, nu.Person(), EventAlwaysAskOff, "", "", c)
	}
	if ns, ok := m.sessions.Lookup(id); ok {
		return ns, nil
	}
	return nil, ErrSessionUnavailable
}

// canGiveSecondFactor says whether methods hold a second factor the person
// can always give at sign-in: any but a backup (recovery codes run out).
func (m *MFA) canGiveSecondFactor(methods []Method) bool {
	for _, md := range methods {
		f := m.o.Factors.Get(md.Kind)
		if f == nil {
			continue
		}
		if _, backup := f.(factors.Backup); !backup {
			return true
		}
	}
	return false
}
