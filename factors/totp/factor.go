package totp

import (
	"context"
	"errors"
	"fmt"

	"github.com/keygate/keygate/factors"
)

// The authenticator app on the factors.Factor contract: a code the person
// keeps (nothing is sent), enrolled with a secret shown once as a QR code.
var (
	_ factors.Factor        = (*Factor)(nil)
	_ factors.Enroller      = (*Factor)(nil)
	_ factors.EnrollResumer = (*Factor)(nil)
	_ factors.Manager       = (*Factor)(nil)
)

// Strength: an app's shared secret, copied once.
func (f *Factor) Strength(bool) factors.Strength { return factors.StrengthApp }

// Shape: a code to type.
func (f *Factor) Shape() factors.Shape { return factors.ShapeCode }

// Usable: the person has at least one app.
func (f *Factor) Usable(ctx context.Context, s factors.Subject) (factors.Offer, bool, error) {
	cs, err := f.List(ctx, s.Username)
	return factors.Offer{}, len(cs) > 0, err
}

// Begin sends nothing: the code is in the person's app.
func (f *Factor) Begin(context.Context, factors.Subject) (factors.Challenge, error) {
	return factors.Challenge{}, nil
}

// Prove checks r.Code against every app of the person; a person without an
// app gets the answer a wrong code gets.
func (f *Factor) Prove(ctx context.Context, s factors.Subject, r factors.Response) (factors.Proof, error) {
	cred, ok, err := f.Verify(ctx, s.Username, r.Code)
	switch {
	case errors.Is(err, factors.ErrNotEnrolled):
		return factors.Proof{}, fmt.Errorf("%w: %w", factors.ErrWrongResponse, err)
	case err != nil:
		return factors.Proof{}, err
	case !ok:
		return factors.Proof{}, factors.ErrWrongResponse
	}
	return factors.Proof{Kind: Kind, Ref: cred, Remaining: -1}, nil
}

// Enroll makes a secret labelled with the person's address (or name).
func (f *Factor) Enroll(ctx context.Context, s factors.Subject, _ factors.EnrollRequest) (factors.Enrollment, error) {
	e, err := f.BeginEnroll(ctx, s.Username, accountOf(s))
	if err != nil {
		return factors.Enrollment{}, err
	}
	return factors.Enrollment{ID: e.ID, Secret: e.Secret, URI: e.URL, QRPNG: e.QRPNG, ExpiresAt: e.ExpiresAt}, nil
}

// accountOf labels the key in the app: the person's address, or name.
func accountOf(s factors.Subject) string {
	if s.Email != "" {
		return s.Email
	}
	return s.Username
}

// ConfirmEnroll saves the app once r.Code is one of its current codes.
func (f *Factor) ConfirmEnroll(ctx context.Context, s factors.Subject, id string, r factors.Response, name string) (factors.Credential, error) {
	c, err := f.FinishEnroll(ctx, s.Username, id, r.Code, name)
	if errors.Is(err, ErrInvalidCode) {
		return factors.Credential{}, fmt.Errorf("%w: %w", factors.ErrWrongResponse, err)
	}
	return c, err
}
