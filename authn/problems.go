package authn

import (
	"time"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/problem"
)

// Problems says how authn's refusals are answered: a class (web maps it to
// a status), a stable code for API clients and a message key. It lives
// here, next to the errors, so that a new error and its answer are added
// together; web interprets it and authn stays free of HTTP (see package
// problem). Most specific first: the first row an error matches wins.
var Problems = problem.Table{
	{Err: ErrInvalidCredentials, Class: problem.Unauthenticated, Code: "invalid_credentials", Key: "err.invalid_credentials"},
	// The password flows (password.go).
	{Err: ErrWrongPassword, Class: problem.Unauthenticated, Code: "wrong_password", Key: "err.wrong_password"},
	{Err: ErrResetExpired, Class: problem.Invalid, Code: "reset_expired", Key: "err.reset_expired"},
	{Err: ErrResetDead, Class: problem.Unauthenticated, Code: "reset_code_locked", Key: "err.reset_dead"},
	{Err: ErrResetCodeFirst, Class: problem.Forbidden, Code: "reset_code_required", Key: "err.reset_code_first"},
	{Err: ErrResetFactorFirst, Class: problem.Forbidden, Code: "reset_factor_required", Key: "err.reset_factor_first"},
	{Err: ErrResetNoFactor, Class: problem.Conflict, Code: "reset_no_factor", Key: "err.reset_no_factor"},
	// The address change (email_change.go); a malformed address is
	// factors.ErrBadAddress's row.
	{Err: ErrSameAddress, Class: problem.Invalid, Code: "same_address", Key: "err.same_address"},
	{Err: ErrNoEmailChange, Class: problem.Invalid, Code: "no_email_change", Key: "err.no_email_change"},
	{Err: ErrSignInAgain, Class: problem.Unauthenticated, Code: "sign_in_again", Key: "err.sign_in_again"},
	{Err: ErrEmailTaken, Class: problem.Conflict, Code: "email_taken", Key: "err.email_taken"},
	{Err: ErrEnrollCodeClosed, Class: problem.Forbidden, Code: "enroll_code_closed", Key: "err.enroll_code_closed"},
	{Err: ErrTicketInvalid, Class: problem.Invalid, Code: "unlock_expired", Key: "err.unlock_expired"},
	{Err: ErrWrongCode, Class: problem.Unauthenticated, Code: "wrong_code", Key: "err.wrong_code"},
	{Err: ErrCodeUsed, Class: problem.Unauthenticated, Code: "code_used", Key: "err.code_used"},
	{Err: ErrCodeExpired, Class: problem.Unauthenticated, Code: "code_expired", Key: "err.code_expired"},
	{Err: ErrCodeDead, Class: problem.Unauthenticated, Code: "code_locked", Key: "err.code_locked"},
	{Err: ErrNoCodeSent, Class: problem.Invalid, Code: "no_code", Key: "err.no_code"},
	{Err: ErrElevationRequired, Class: problem.Forbidden, Code: "elevation_required", Key: "err.elevation_required"},
	{Err: ErrLastFactor, Class: problem.Conflict, Code: "last_factor", Key: "err.last_factor"},
	{Err: ErrEmailNotVerified, Class: problem.Conflict, Code: "email_not_verified", Key: "err.email_not_verified"},
	{Err: ErrFactorUnavailable, Class: problem.NotFound, Code: "factor_unavailable", Key: "err.factor_unavailable"},
	{Err: ErrSessionUnavailable, Class: problem.Unauthenticated, Code: "not_signed_in", Key: "err.not_signed_in"},
	{Err: ErrLinkInvalid, Class: problem.Invalid, Code: "link_invalid", Key: "err.link_invalid"},
	{Err: ErrDeviceNotFound, Class: problem.NotFound, Code: "not_found", Key: "err.no_such_credential"},
	{Err: ErrSessionNotFound, Class: problem.NotFound, Code: "not_found", Key: "err.no_such_session"},
	{Err: ErrUserNotFound, Class: problem.NotFound, Code: "user_not_found", Key: "err.user_not_found"},
	{Err: ErrAssertionRefused, Class: problem.Unauthenticated, Code: "assertion_refused", Key: "err.assertion_refused"},
	// Account recovery (recovery.go); a wait is RecoveryWaitError's own.
	{Err: ErrRecoveryPending, Class: problem.Conflict, Code: "recovery_pending", Key: "err.recovery_pending"},
	{Err: ErrNoRecovery, Class: problem.NotFound, Code: "no_recovery", Key: "err.no_recovery"},
	{Err: ErrRecoveryLinkInvalid, Class: problem.Invalid, Code: "recovery_link_invalid", Key: "err.recovery_link_invalid"},
	{Err: ErrRecoveryNotNeeded, Class: problem.Conflict, Code: "recovery_not_needed", Key: "err.recovery_not_needed"},
	// "Always ask me for a second factor" (always_ask.go).
	{Err: ErrAlwaysAskNoFactor, Class: problem.Conflict, Code: "always_ask_no_factor", Key: "err.always_ask_no_factor"},
}

// Problem answers right credentials for a locked account or from a locked
// address: until when, and (for an account with a confirmed address) the
// ticket to ask for an unlock code. A timed lock is TooMany; a reported
// account waits for an unlock, so it is Forbidden.
func (e *LockedError) Problem(time.Time) problem.Problem {
	until := e.Until.UTC().Format("2006-01-02 15:04 UTC")
	var p problem.Problem
	switch {
	case e.Reported:
		p = problem.Problem{Class: problem.Forbidden, Code: "account_locked", Key: "err.locked_reported"}
	case e.Network:
		p = problem.Problem{Class: problem.TooMany, Code: "address_locked", Key: "err.locked_network", Args: []any{until}}
	default:
		p = problem.Problem{Class: problem.TooMany, Code: "account_locked", Key: "err.locked_account", Args: []any{until}}
	}
	p.Extra = map[string]any{}
	if !e.Until.IsZero() {
		p.Extra["locked_until"] = e.Until.UTC().Format(time.RFC3339)
	}
	if e.Ticket != "" {
		p.Extra["unlock_ticket"] = e.Ticket
	}
	return p
}

// Problem answers a change of second factors that needs a stronger fresh
// proof: what to confirm with ("need": the factor kinds, strongest first)
// and, in words, what to do, including the way back when that factor is
// lost (an admin's enrolment link).
func (e *WeakProofError) Problem(time.Time) problem.Problem {
	p := problem.Problem{Class: problem.Forbidden, Code: "stronger_proof_required", Key: "err.stronger_proof." + e.Need.String()}
	if e.Need <= factors.StrengthCode {
		// Any second factor will do: the plain "confirm it's you".
		p.Code, p.Key = "elevation_required", "err.elevation_required"
	}
	need := e.Kinds
	if need == nil {
		need = []string{}
	}
	p.Extra = map[string]any{"need": need, "need_strength": e.Need.String()}
	return p
}

// Problem answers a recovery asked to finish before its wait is over:
// from when it can be, in UTC (for people) and RFC 3339 (for programs).
func (e *RecoveryWaitError) Problem(time.Time) problem.Problem {
	return problem.Problem{Class: problem.Forbidden, Code: "recovery_waiting", Key: "err.recovery_waiting",
		Args:  []any{e.ReadyAt.UTC().Format("2006-01-02 15:04 UTC")},
		Extra: map[string]any{"ready_at": e.ReadyAt.UTC().Format(time.RFC3339)}}
}

// Interface guards.
var (
	_ problem.Describer = (*RecoveryWaitError)(nil)
	_ problem.Describer = (*LockedError)(nil)
	_ problem.Describer = (*WeakProofError)(nil)
)
