package emailcode

import (
	"context"
	"fmt"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sentcode"
)

// Contract is the email factor on the factors.Factor contract: a sign-in
// code to the person's confirmed address (Subject.Email), plus codes for
// confirming an address, granting a first enrolment and unlocking an
// account (factors.AddressCodes).
//
// It is a type of its own, sharing the Factor's engine, only while authn
// still calls Factor's older Send/Verify/Pending, whose Pending clashes
// with factors.Resender's. When those callers are gone its methods move
// onto Factor and Contract goes.
type Contract struct{ f *Factor }

// Contract returns f on the factors.Factor contract. Codes, cooldowns and
// caps are the same records either way.
func (f *Factor) Contract() *Contract { return &Contract{f: f} }

// Kind is "email".
func (c *Contract) Kind() string { return factors.KindEmail }

// Strength: whoever reads the mailbox has it.
func (c *Contract) Strength(bool) factors.Strength { return factors.StrengthCode }

// Shape: a code to type.
func (c *Contract) Shape() factors.Shape { return factors.ShapeCode }

// Usable when the person has a confirmed address; the chooser shows it
// masked.
func (c *Contract) Usable(_ context.Context, s factors.Subject) (factors.Offer, bool, error) {
	if s.Email == "" {
		return factors.Offer{}, false, nil
	}
	return factors.Offer{Detail: Mask(s.Email)}, true, nil
}

// Begin mails a sign-in code to the confirmed address. Refusals:
// *factors.CooldownError, *factors.CapError, factors.ErrSendFailed (nothing
// marked sent), factors.ErrNotEnrolled (no confirmed address).
func (c *Contract) Begin(ctx context.Context, s factors.Subject) (factors.Challenge, error) {
	if s.Email == "" {
		return factors.Challenge{}, fmt.Errorf("emailcode: no confirmed address: %w", factors.ErrNotEnrolled)
	}
	sent, err := c.f.send(ctx, s.Username, s.Email, s.Lang, PurposeSignIn)
	if err != nil {
		return factors.Challenge{}, err
	}
	return factors.Challenge{Sent: &sent}, nil
}

// Prove uses the sign-in code. Refusals: factors.ErrWrongResponse,
// ErrExpired, ErrReplayed, ErrTooManyTries, ErrNoChallenge; a person
// without a confirmed address is answered like a wrong code.
func (c *Contract) Prove(ctx context.Context, s factors.Subject, r factors.Response) (factors.Proof, error) {
	if s.Email == "" {
		return factors.Proof{}, fmt.Errorf("%w: emailcode: %w", factors.ErrWrongResponse, factors.ErrNotEnrolled)
	}
	if _, err := c.f.eng.Check(ctx, s.Username, PurposeSignIn, "", r.Code); err != nil {
		return factors.Proof{}, err
	}
	// A mailbox has no credential of its own: the kind names it.
	return factors.Proof{Kind: factors.KindEmail, Ref: factors.KindEmail, Remaining: -1}, nil
}

// Pending reports the sign-in code waiting to be typed.
func (c *Contract) Pending(ctx context.Context, s factors.Subject) (factors.Sent, bool, error) {
	return c.f.eng.Pending(ctx, s.Username, PurposeSignIn)
}

// SendFor mails a code for p (not a sign-in: a sign-in code goes only to
// the confirmed address, through Begin) to address, or to the confirmed
// address when address is empty. Refusals as Begin's, and
// factors.ErrBadAddress.
func (c *Contract) SendFor(ctx context.Context, s factors.Subject, p factors.Purpose, address string) (factors.Sent, error) {
	if err := notSignIn(p); err != nil {
		return factors.Sent{}, err
	}
	if address == "" {
		address = s.Email
	}
	return c.f.send(ctx, s.Username, address, s.Lang, p)
}

// ProveFor uses a code sent for p. Refusals as Prove's.
func (c *Contract) ProveFor(ctx context.Context, s factors.Subject, p factors.Purpose, code string) error {
	if err := notSignIn(p); err != nil {
		return err
	}
	_, err := c.f.eng.Check(ctx, s.Username, p, "", code)
	return err
}

// PendingFor reports the code for p waiting to be typed.
func (c *Contract) PendingFor(ctx context.Context, s factors.Subject, p factors.Purpose) (factors.Sent, bool, error) {
	return c.f.eng.Pending(ctx, s.Username, p)
}

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
	_ factors.Factor       = (*Contract)(nil)
	_ factors.Resender     = (*Contract)(nil)
	_ factors.AddressCodes = (*Contract)(nil)
)
