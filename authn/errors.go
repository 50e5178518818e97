package authn

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Callers branch with errors.Is; messages are safe to show.
var (
	// ErrInvalidCredentials is the one answer to a failed sign-in: unknown
	// user, wrong password and disabled user all get it, with the same text
	// and the same work, so nothing tells them apart.
	ErrInvalidCredentials = errors.New("invalid username or password")
	// ErrUserExists: the username (or, via ErrEmailTaken, the email) is taken.
	ErrUserExists = errors.New("user already exists")
	// ErrEmailTaken: another user has this email address. It matches
	// ErrUserExists too, for callers that do not care which field clashed.
	ErrEmailTaken = fmt.Errorf("%w: email address already in use", ErrUserExists)
	// ErrUserNotFound: no such user.
	ErrUserNotFound = errors.New("user not found")
	// ErrInvalidUser: a username, email, display name or group is malformed;
	// the wrapping error says which and why.
	ErrInvalidUser = errors.New("invalid user data")
	// ErrUserDisabled: a session was asked for a disabled user.
	ErrUserDisabled = errors.New("user is disabled")
	// ErrSessionNotFound: unknown, expired, revoked or rotated-away session.
	ErrSessionNotFound = errors.New("session not found")
)

// PasswordPolicyError lists every reason a password was refused, so that a
// form can show them all at once. Reasons are English sentences; Codes holds
// the same reasons as stable identifiers (PolicyCode*) for translations.
type PasswordPolicyError struct {
	Reasons []string
	Codes   []string
}

func (e *PasswordPolicyError) Error() string {
	return "password refused: " + strings.Join(e.Reasons, "; ")
}

func (e *PasswordPolicyError) add(code, reason string) {
	e.Codes = append(e.Codes, code)
	e.Reasons = append(e.Reasons, reason)
}
