package admin

import (
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/policies"
	"github.com/keygate/keygate/problem"
)

// Errors of the admin service where callers branch.
var (
	// ErrNotOnYourself: an action that would lock the acting admin out of
	// the admin area they are using (disable, reset factors, delete);
	// another admin or the CLI can do it.
	ErrNotOnYourself = errors.New("admin: not on your own account from here")
	// ErrNoActor: a change without an actor; nothing was done.
	ErrNoActor = errors.New("admin: no actor")
)

// InputError is an argument the service cannot use: which one and why.
// Nothing was changed.
type InputError struct {
	Field   string
	Message string // safe to show
}

func (e *InputError) Error() string { return "admin: " + e.Message }

// Problem answers a bad argument as a bad request that says which.
func (e *InputError) Problem(time.Time) problem.Problem {
	return problem.Problem{Class: problem.Invalid, Code: "bad_request", Key: "err.bad_request",
		Extra: map[string]any{"field": e.Field, "detail": e.Message}}
}

func badInput(field, format string, args ...any) error {
	return &InputError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// PasswordRefusedError is a password the password policy refused, with
// every reason; it unwraps to the *authn.PasswordPolicyError.
type PasswordRefusedError struct{ *authn.PasswordPolicyError }

func (e *PasswordRefusedError) Unwrap() error { return e.PasswordPolicyError }

// Problem lists the reasons, as sentences and as stable codes.
func (e *PasswordRefusedError) Problem(time.Time) problem.Problem {
	reasons, codes := e.Reasons, e.Codes
	if reasons == nil {
		reasons = []string{}
	}
	if codes == nil {
		codes = []string{}
	}
	return problem.Problem{Class: problem.Invalid, Code: "weak_password", Key: "err.weak_password",
		Extra: map[string]any{"reasons": reasons, "reason_codes": codes}}
}

// passwordErr turns a refused password into a PasswordRefusedError.
func passwordErr(err error) error {
	var pe *authn.PasswordPolicyError
	if errors.As(err, &pe) {
		return &PasswordRefusedError{pe}
	}
	return err
}

// Problems says how the admin service's refusals (and the errors of the
// parts it hands through that no other table names) are answered.
var Problems = problem.Table{
	{Err: ErrNotOnYourself, Class: problem.Conflict, Code: "not_on_yourself", Key: "err.admin_not_yourself"},
	{Err: ErrNoActor, Class: problem.Forbidden, Code: "admin_only", Key: "err.admin_only"},
	{Err: authn.ErrUserExists, Class: problem.Conflict, Code: "user_exists", Key: "err.user_exists"},
	{Err: authn.ErrInvalidUser, Class: problem.Invalid, Code: "invalid_user", Key: "err.invalid_user"},
	{Err: authn.ErrUserNotFound, Class: problem.NotFound, Code: "user_not_found", Key: "err.user_not_found"},
	{Err: ErrNoSuchKey, Class: problem.NotFound, Code: "no_such_credential", Key: "err.no_such_credential"},
	{Err: authn.ErrFactorUnavailable, Class: problem.NotFound, Code: "factor_unavailable", Key: "err.factor_unavailable"},
	{Err: policies.ErrVersionNotFound, Class: problem.NotFound, Code: "no_such_version", Key: "err.no_such_version"},
	{Err: policies.ErrConflict, Class: problem.Conflict, Code: "version_mismatch", Key: "err.policy_conflict"},
	{Err: policies.ErrNoPolicy, Class: problem.NotFound, Code: "no_such_version", Key: "err.no_such_version"},
}

// Interface guards.
var (
	_ problem.Describer = (*InputError)(nil)
	_ problem.Describer = (*PasswordRefusedError)(nil)
)
