// Package factors holds the contract every second factor implements; each
// factor (webauthn, totp, emailcode, recovery) lives in a sub-package. A
// factor never imports net/http or Gin: it takes bytes and structs and
// returns proofs or typed errors, so the web layer decides how anything is
// shown and the factor can be tested without HTTP.
package factors

import (
	"context"
	"errors"
	"time"
)

// Subject is whom a ceremony is for.
type Subject struct {
	Username string
	Email    string
}

// Proof is what a successful verification establishes; authn records it on
// the session and the policy checks it per request.
type Proof struct {
	Kind           string // "webauthn", "totp", "email", "recovery"
	At             time.Time
	CredentialID   string // which enrolled credential was used
	AAGUID         string
	Attested       bool
	UserVerified   bool
	BackupEligible bool
}

// Factor is a second factor. Begin starts a ceremony (a WebAuthn challenge,
// an email code; nothing for TOTP) and returns what to show the person plus
// server-side state that the caller keeps single-use. Verify checks the
// response: ok=false is a wrong code or assertion, err is a technical
// failure only — never both.
type Factor interface {
	Kind() string
	Begin(ctx context.Context, s Subject) (prompt []byte, state []byte, err error)
	Verify(ctx context.Context, s Subject, state, response []byte) (p Proof, ok bool, err error)
}

// Enroller is the optional capability of factors a person can enrol in the
// browser.
type Enroller interface {
	BeginEnroll(ctx context.Context, s Subject) (prompt []byte, state []byte, err error)
	FinishEnroll(ctx context.Context, s Subject, state, response []byte, name string) (credentialID string, err error)
}

// Errors a factor returns where callers branch.
var (
	// ErrExpired: the ceremony or code is past its lifetime.
	ErrExpired = errors.New("factors: expired")
	// ErrReplayed: the code, step or challenge was already used.
	ErrReplayed = errors.New("factors: already used")
	// ErrNotEnrolled: the subject has no credential of this factor.
	ErrNotEnrolled = errors.New("factors: not enrolled")
)
