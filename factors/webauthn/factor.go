package webauthn

import (
	"context"
	"errors"
	"fmt"

	"github.com/keygate/keygate/factors"
)

// Security keys and platform authenticators on the factors.Factor
// contract: a browser ceremony; a passkey signs in without a username.
var (
	_ factors.Factor       = (*Factor)(nil)
	_ factors.Enroller     = (*Factor)(nil)
	_ factors.Manager      = (*Factor)(nil)
	_ factors.Discoverable = (*Factor)(nil)
	_ factors.Suspender    = (*Factor)(nil)
	_ factors.Reassessor   = (*Factor)(nil)
)

// Strength: unphishable; a hardware key of a trusted model when its
// attestation chained to a trust anchor at enrolment.
func (f *Factor) Strength(attested bool) factors.Strength {
	if attested {
		return factors.StrengthHardware
	}
	return factors.StrengthKey
}

// Shape: a browser ceremony.
func (f *Factor) Shape() factors.Shape { return factors.ShapeCeremony }

// Usable: the person has a credential (a suspended one still shows: the
// ceremony then says what is wrong).
func (f *Factor) Usable(ctx context.Context, s factors.Subject) (factors.Offer, bool, error) {
	cs, err := f.List(ctx, s.Username)
	return factors.Offer{}, len(cs) > 0, err
}

// Begin starts an assertion for the person's credentials.
func (f *Factor) Begin(ctx context.Context, s factors.Subject) (factors.Challenge, error) {
	opts, id, err := f.BeginLogin(ctx, s.Username)
	return factors.Challenge{ID: id, Options: opts}, err
}

// Prove verifies the assertion of ceremony r.Challenge.
func (f *Factor) Prove(ctx context.Context, s factors.Subject, r factors.Response) (factors.Proof, error) {
	a, err := f.FinishLogin(ctx, s.Username, r.Challenge, r.Data)
	if err != nil {
		return factors.Proof{}, refusal(err)
	}
	return proofOf(a), nil
}

// BeginDiscoverable starts a username-less passkey assertion.
func (f *Factor) BeginDiscoverable(ctx context.Context) (factors.Challenge, error) {
	opts, id, err := f.BeginPasskey(ctx)
	return factors.Challenge{ID: id, Options: opts}, err
}

// ProveDiscoverable verifies a passkey assertion; the credential names its
// user.
func (f *Factor) ProveDiscoverable(ctx context.Context, r factors.Response) (string, factors.Proof, error) {
	name, a, err := f.FinishPasskey(ctx, r.Challenge, r.Data)
	if err != nil {
		return "", factors.Proof{}, refusal(err)
	}
	return name, proofOf(a), nil
}

// refusal marks what judged the person's authenticator (a refused
// response, a counter gone backwards) as a wrong response, so that it
// counts as a failed try; an expired ceremony stays ErrExpired. The
// factor's own error stays in the chain for the reason shown.
func refusal(err error) error {
	var ve *VerifyError
	if errors.As(err, &ve) || errors.Is(err, ErrCloneWarning) {
		return fmt.Errorf("%w: %w", factors.ErrWrongResponse, err)
	}
	return err
}

func proofOf(a Assertion) factors.Proof {
	return factors.Proof{Kind: Kind, Ref: a.CredentialID, AAGUID: a.AAGUID, Attested: a.Attested,
		UserVerified: a.UserVerified, BackupEligible: a.BackupEligible, Remaining: -1}
}

// Enroll starts a registration of r.Option: "security_key" or "platform".
func (f *Factor) Enroll(ctx context.Context, s factors.Subject, r factors.EnrollRequest) (factors.Enrollment, error) {
	kind := AuthenticatorKind(r.Option)
	if !kind.valid() {
		return factors.Enrollment{}, fmt.Errorf("%w: %q (want %q or %q)", factors.ErrBadOption, r.Option, SecurityKey, Platform)
	}
	opts, id, err := f.BeginRegistration(ctx, userOf(s), kind)
	return factors.Enrollment{ID: id, Options: opts}, err
}

// ConfirmEnroll verifies the registration of ceremony id and saves the
// credential.
func (f *Factor) ConfirmEnroll(ctx context.Context, s factors.Subject, id string, r factors.Response, name string) (factors.Credential, error) {
	return f.FinishRegistration(ctx, userOf(s), id, r.Data, name)
}

func userOf(s factors.Subject) User {
	name := s.DisplayName
	if name == "" {
		name = s.Username
	}
	return User{Username: s.Username, DisplayName: name}
}

// Suspension is credential id's suspension now (Suspend, Unsuspend and
// Reassess are in registry.go and reassess.go). factors.ErrNotFound for a
// credential the user does not have.
func (f *Factor) Suspension(ctx context.Context, user, id string) (factors.Suspension, error) {
	cs, err := f.Credentials(ctx, user)
	if err != nil {
		return factors.Suspension{}, err
	}
	for _, c := range cs {
		if c.ID == id {
			return factors.Suspension{Suspended: c.Suspended, Reason: c.SuspendedReason, At: c.SuspendedAt}, nil
		}
	}
	return factors.Suspension{}, fmt.Errorf("webauthn: credential %q: %w", id, factors.ErrNotFound)
}
