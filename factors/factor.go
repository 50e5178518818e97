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
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Credential is one enrolled second factor as people and admins see it.
type Credential struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"` // "webauthn", "totp", "recovery"
	Name       string    `json:"name"`
	Detail     string    `json:"detail,omitempty"` // model name, "7 of 10 left", …
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	// Attested: the credential's attestation chained to a trusted root at
	// enrolment (WebAuthn); with its factor's Strength it decides what the
	// credential may change.
	Attested bool `json:"-"`
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

// MaxNameLen bounds credential names (in characters).
const MaxNameLen = 64

// CleanName trims a credential name and checks it: 1 to MaxNameLen
// characters of printable text, without control characters or the
// bidirectional formatting characters that can make a name display as
// something else.
func CleanName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxNameLen ||
		strings.ContainsFunc(name, UnsafeRune) {
		return "", fmt.Errorf("%w: a name has 1 to %d characters of printable text", ErrInvalidName, MaxNameLen)
	}
	return name, nil
}

// UnsafeRune: control characters and the bidirectional formatting
// characters that can reorder how text is displayed.
func UnsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)
}
