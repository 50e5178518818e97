package factors

import (
	"math"
	"time"

	"github.com/keygate/keygate/problem"
)

// Problems says how the refusals every factor shares are answered (see
// package problem for why a table of plain values and not HTTP here). The
// codes are the ones API clients already know from the email code and
// TOTP ("wrong_code", "cooldown", …): a factor moving onto the shared
// refusals changes nothing on the wire.
var Problems = problem.Table{
	{Err: ErrWrongResponse, Class: problem.Unauthenticated, Code: "wrong_code", Key: "err.wrong_code"},
	{Err: ErrTooManyTries, Class: problem.Unauthenticated, Code: "code_locked", Key: "err.code_locked"},
	{Err: ErrNoChallenge, Class: problem.Invalid, Code: "no_code", Key: "err.no_code"},
	{Err: ErrCooldown, Class: problem.TooMany, Code: "cooldown", Key: "err.cooldown_soon"},
	{Err: ErrHourlyCap, Class: problem.TooMany, Code: "too_many_codes", Key: "err.too_many_codes"},
	{Err: ErrSendFailed, Class: problem.Unavailable, Code: "send_failed", Key: "err.send_failed"},
	{Err: ErrBadAddress, Class: problem.Invalid, Code: "bad_address", Key: "err.bad_address"},
	{Err: ErrReplayed, Class: problem.Unauthenticated, Code: "code_used", Key: "err.code_used"},
	// A ceremony or a pending enrolment that timed out or was used.
	{Err: ErrExpired, Class: problem.Invalid, Code: "ceremony_expired", Key: "err.ceremony_expired"},
	{Err: ErrNameTaken, Class: problem.Conflict, Code: "name_taken", Key: "err.name_taken"},
	{Err: ErrInvalidName, Class: problem.Invalid, Code: "invalid_name", Key: "err.invalid_name"},
	{Err: ErrNotFound, Class: problem.NotFound, Code: "not_found", Key: "err.no_such_credential"},
	// Includes every credential suspended: nothing usable to offer.
	{Err: ErrNotEnrolled, Class: problem.NotFound, Code: "factor_unavailable", Key: "err.factor_unavailable"},
	{Err: ErrNotSupported, Class: problem.Invalid, Code: "not_supported", Key: "err.not_supported"},
}

// Problem says how many seconds to wait ("retry_after" for scripts).
func (e *CooldownError) Problem(now time.Time) problem.Problem {
	secs := waitSeconds(e.Until, now)
	return problem.Problem{Class: problem.TooMany, Code: "cooldown", Key: "err.cooldown",
		Args: []any{time.Duration(secs) * time.Second}, Extra: map[string]any{"retry_after": secs}}
}

// Problem says the cap is reached and, for scripts, when the next code may
// be asked for.
func (e *CapError) Problem(now time.Time) problem.Problem {
	return problem.Problem{Class: problem.TooMany, Code: "too_many_codes", Key: "err.too_many_codes",
		Extra: map[string]any{"retry_after": waitSeconds(e.Until, now)}}
}

// waitSeconds is the whole seconds from now until t, at least 1: an
// answer that says "wait 0 seconds" would be retried at once.
func waitSeconds(t, now time.Time) int {
	return max(1, int(math.Ceil(t.Sub(now).Seconds())))
}

// Interface guards.
var (
	_ problem.Describer = (*CooldownError)(nil)
	_ problem.Describer = (*CapError)(nil)
)
