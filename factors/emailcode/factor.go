package emailcode

import (
	"context"
	"fmt"
	"time"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sentcode"
)

// The email factor on the factors.Factor contract: a sign-in code to the
// person's confirmed address (Subject.Email), plus codes for confirming an
// address, granting a first enrolment and unlocking an account
// (factors.AddressCodes). Send, Verify and Waiting are the same records
// by user and purpose, for tests and tools.

// Strength: whoever reads the mailbox has it.
func (f *Factor) Strength(bool) factors.Strength { return factors.StrengthCode }

// Shape: a code to type.
func (f *Factor) Shape() factors.Shape { return factors.ShapeCode }

// Usable when the person has a confirmed address; the chooser shows it
// masked.
func (f *Factor) Usable(_ context.Context, s factors.Subject) (factors.Offer, bool, error) {
	if s.Email == "" {
		return factors.Offer{}, false, nil
	}
	return factors.Offer{Detail: Mask(s.Email)}, true, nil
}

// Begin mails a sign-in code to the confirmed address. Refusals:
// *factors.CooldownError, *factors.CapError, factors.ErrSendFailed (nothing
// marked sent), factors.ErrNotEnrolled (no confirmed address).
func (f *Factor) Begin(ctx context.Context, s factors.Subject) (factors.Challenge, error) {
	if s.Email == "" {
		return factors.Challenge{}, fmt.Errorf("emailcode: no confirmed address: %w", factors.ErrNotEnrolled)
	}
	sent, err := f.send(ctx, s.Username, s.Email, s.Lang, PurposeSignIn)
	if err != nil {
		return factors.Challenge{}, err
	}
	return factors.Challenge{Sent: &sent}, nil
}

// Prove uses the sign-in code. Refusals: factors.ErrWrongResponse,
// ErrExpired, ErrReplayed, ErrTooManyTries, ErrNoChallenge; a person
// without a confirmed address is answered like a wrong code.
func (f *Factor) Prove(ctx context.Context, s factors.Subject, r factors.Response) (factors.Proof, error) {
	if s.Email == "" {
		return factors.Proof{}, fmt.Errorf("%w: emailcode: %w", factors.ErrWrongResponse, factors.ErrNotEnrolled)
	}
	if _, err := f.eng.Check(ctx, s.Username, PurposeSignIn, "", r.Code); err != nil {
		return factors.Proof{}, err
	}
	// A mailbox has no credential of its own: the kind names it.
	return factors.Proof{Kind: factors.KindEmail, Ref: factors.KindEmail, Remaining: -1}, nil
}

// Pending reports the sign-in code waiting to be typed.
func (f *Factor) Pending(ctx context.Context, s factors.Subject) (factors.Sent, bool, error) {
	return f.eng.Pending(ctx, s.Username, PurposeSignIn)
}

// SendFor mails a code for p (not a sign-in: a sign-in code goes only to
// the confirmed address, through Begin) to address, or to the confirmed
// address when address is empty. Refusals as Begin's, and
// factors.ErrBadAddress.
func (f *Factor) SendFor(ctx context.Context, s factors.Subject, p factors.Purpose, address string) (factors.Sent, error) {
	if err := notSignIn(p); err != nil {
		return factors.Sent{}, err
	}
	if address == "" {
		address = s.Email
	}
	return f.send(ctx, s.Username, address, s.Lang, p)
}

// ProveFor uses a code sent for p. Refusals as Prove's.
func (f *Factor) ProveFor(ctx context.Context, s factors.Subject, p factors.Purpose, code string) error {
	if err := notSignIn(p); err != nil {
		return err
	}
	_, err := f.eng.Check(ctx, s.Username, p, "", code)
	return err
}

// PendingFor reports the code for p waiting to be typed.
func (f *Factor) PendingFor(ctx context.Context, s factors.Subject, p factors.Purpose) (factors.Sent, bool, error) {
	return f.eng.Pending(ctx, s.Username, p)
}

// CancelCodes kills the codes pending for s of every purpose
// (factors.CodeCanceller): the address changed, and a code mailed to the
// old one must not sign in, unlock or reset anything.
func (f *Factor) CancelCodes(ctx context.Context, s factors.Subject) error {
	for _, p := range []factors.Purpose{PurposeSignIn, PurposeVerifyAddress, PurposeEnroll, PurposeUnlock,
		factors.PurposeAccountRecovery, factors.PurposeResetPassword, factors.PurposeChangeAddress} {
		if err := f.eng.Cancel(ctx, s.Username, p); err != nil {
			return fmt.Errorf("emailcode: cancel %s codes: %w", p, err)
		}
	}
	return nil
}

// CodeTTL is how long a code works (factors.CodeLifetime).
func (f *Factor) CodeTTL() time.Duration { return f.eng.Options().TTL }

// notSignIn refuses sign-in codes through AddressCodes: sent to any
// address given, they would make that address a second factor.
func notSignIn(p factors.Purpose) error {
	if p == PurposeSignIn || !sentcode.ValidPurpose(p) {
		return fmt.Errorf("emailcode: codes for %q are not sent to a given address: %w", p, factors.ErrNotSupported)
	}
	return nil
}

// Interface guards.
var (
	_ factors.Factor        = (*Factor)(nil)
	_ factors.Resender      = (*Factor)(nil)
	_ factors.AddressCodes  = (*Factor)(nil)
	_ factors.CodeLifetime  = (*Factor)(nil)
	_ factors.CodeCanceller = (*Factor)(nil)
)
