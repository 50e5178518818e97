// Package factors holds what every second factor shares; each factor
// (webauthn, totp, emailcode, recovery) lives in a sub-package. A factor
// never imports net/http or Gin: it takes bytes and structs and returns
// results or typed errors, so the web layer decides how anything is shown
// and the factor can be tested without HTTP. Wrong codes are results
// (ok=false), not errors; errors are for what callers branch on or for
// technical failures.
package factors

import (
	"context"
	"errors"
	"time"
)

// Credential is one enrolled second factor as people and admins see it.
type Credential struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"` // "webauthn", "totp", "recovery"
	Name       string    `json:"name"`
	Detail     string    `json:"detail,omitempty"` // model name, "7 of 10 left", …
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// Registry is what every enrollable factor offers for listing and managing
// a user's credentials; authn composes them into one list.
type Registry interface {
	Kind() string
	List(ctx context.Context, user string) ([]Credential, error)
	Rename(ctx context.Context, user, id, name string) error
	Remove(ctx context.Context, user, id string) error
	RemoveAll(ctx context.Context, user string) (int, error)
}

// Errors factors return where callers branch.
var (
	// ErrExpired: the ceremony or code is past its lifetime.
	ErrExpired = errors.New("factors: expired")
	// ErrReplayed: the code, time step or challenge was already used.
	ErrReplayed = errors.New("factors: already used")
	// ErrNotEnrolled: the user has no credential of this factor.
	ErrNotEnrolled = errors.New("factors: not enrolled")
	// ErrNotFound: no such credential for this user.
	ErrNotFound = errors.New("factors: no such credential")
	// ErrNameTaken: the user already has a credential with this name.
	ErrNameTaken = errors.New("factors: name already used")
	// ErrInvalidName: empty, too long (> 64) or with control characters.
	ErrInvalidName = errors.New("factors: invalid name")
	// ErrNotSupported: the operation does not apply to this factor.
	ErrNotSupported = errors.New("factors: not supported")
)
