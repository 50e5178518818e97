package recovery

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/keygate/keygate/factors"
)

// Recovery codes on the factors.Factor contract: a code from a sheet the
// person keeps; enrolling prints a new sheet at once (the old one dies).
var (
	_ factors.Factor   = (*Factor)(nil)
	_ factors.Enroller = (*Factor)(nil)
	_ factors.Manager  = (*Factor)(nil)
	_ factors.Backup   = (*Factor)(nil)
)

// Strength: whoever holds the sheet has it.
func (f *Factor) Strength(bool) factors.Strength { return factors.StrengthCode }

// Shape: a code to type.
func (f *Factor) Shape() factors.Shape { return factors.ShapeCode }

// Backup: recovery codes stand in for lost factors; they are never the
// account's last second factor.
func (f *Factor) Backup() {}

// Usable: codes are left; the chooser shows how many.
func (f *Factor) Usable(ctx context.Context, s factors.Subject) (factors.Offer, bool, error) {
	n, err := f.Remaining(ctx, s.Username)
	if errors.Is(err, factors.ErrNotEnrolled) {
		return factors.Offer{}, false, nil
	}
	if err != nil || n == 0 {
		return factors.Offer{}, false, err
	}
	return factors.Offer{Detail: strconv.Itoa(n)}, true, nil
}

// Begin sends nothing: the codes are on the person's sheet.
func (f *Factor) Begin(context.Context, factors.Subject) (factors.Challenge, error) {
	return factors.Challenge{}, nil
}

// Prove uses up one code; the proof says how many are left and asks for
// the person to be told (they may have lost a device, or someone else may
// hold their sheet).
func (f *Factor) Prove(ctx context.Context, s factors.Subject, r factors.Response) (factors.Proof, error) {
	ok, left, err := f.Verify(ctx, s.Username, r.Code)
	switch {
	case errors.Is(err, factors.ErrNotEnrolled):
		return factors.Proof{}, fmt.Errorf("%w: %w", factors.ErrWrongResponse, err)
	case err != nil:
		return factors.Proof{}, err
	case !ok:
		return factors.Proof{}, factors.ErrWrongResponse
	}
	return factors.Proof{Kind: Kind, Ref: Kind, Remaining: left, Notify: true}, nil
}

// Enroll prints a new sheet; it is complete at once.
func (f *Factor) Enroll(ctx context.Context, s factors.Subject, _ factors.EnrollRequest) (factors.Enrollment, error) {
	codes, err := f.Generate(ctx, s.Username)
	if err != nil {
		return factors.Enrollment{}, err
	}
	return factors.Enrollment{Codes: codes}, nil
}

// ConfirmEnroll has nothing to confirm: Enroll completes the sheet.
func (f *Factor) ConfirmEnroll(context.Context, factors.Subject, string, factors.Response, string) (factors.Credential, error) {
	return factors.Credential{}, factors.ErrNotSupported
}
