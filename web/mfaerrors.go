package web

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/emailcode"
	fwa "github.com/keygate/keygate/factors/webauthn"
)

// mfaError turns what the second-factor flows return into the one error
// type the renderer knows: a status, a stable code, a message people can
// act on. Unknown errors stay internal (500, cause logged, not shown).
func mfaError(err error) *Error {
	var cd *emailcode.CooldownError
	var ve *fwa.VerifyError
	var le *authn.LockedError
	var wp *authn.WeakProofError
	switch {
	case errors.As(err, &le):
		return lockedError(le)
	case errors.As(err, &wp):
		return weakProofError(wp)
	case errors.Is(err, authn.ErrEnrollCodeClosed):
		return errf(http.StatusForbidden, "enroll_code_closed", "err.enroll_code_closed", nil)
	case errors.Is(err, authn.ErrTicketInvalid):
		return errf(http.StatusBadRequest, "unlock_expired", "err.unlock_expired", nil)
	case errors.Is(err, activity.ErrNotMeInvalid):
		return errf(http.StatusBadRequest, "link_invalid", "err.notme_invalid", nil)
	case errors.As(err, &cd):
		secs := int(math.Ceil(cd.Remaining.Seconds()))
		e := errf(http.StatusTooManyRequests, "cooldown", "err.cooldown", err)
		e.Args = []any{secs}
		e.Extra = map[string]any{"retry_after": secs}
		return e
	case errors.Is(err, emailcode.ErrHourlyCap):
		return errf(http.StatusTooManyRequests, "too_many_codes", "err.too_many_codes", err)
	case errors.Is(err, emailcode.ErrDelivery):
		return errf(http.StatusBadGateway, "email_failed", "err.email_failed", err)
	case errors.Is(err, authn.ErrWrongCode):
		return errf(http.StatusUnauthorized, "wrong_code", "err.wrong_code", nil)
	case errors.Is(err, authn.ErrCodeUsed):
		return errf(http.StatusUnauthorized, "code_used", "err.code_used", nil)
	case errors.Is(err, authn.ErrCodeExpired):
		return errf(http.StatusUnauthorized, "code_expired", "err.code_expired", nil)
	case errors.Is(err, authn.ErrCodeDead):
		return errf(http.StatusUnauthorized, "code_locked", "err.code_locked", nil)
	case errors.Is(err, authn.ErrNoCodeSent):
		return errf(http.StatusBadRequest, "no_code", "err.no_code", nil)
	case errors.Is(err, authn.ErrElevationRequired):
		return errf(http.StatusForbidden, "elevation_required", "err.elevation_required", nil)
	case errors.Is(err, authn.ErrLastFactor):
		return errf(http.StatusConflict, "last_factor", "err.last_factor", nil)
	case errors.Is(err, authn.ErrEmailNotVerified):
		return errf(http.StatusConflict, "email_not_verified", "err.email_not_verified", nil)
	case errors.Is(err, authn.ErrFactorUnavailable):
		return errf(http.StatusNotFound, "factor_unavailable", "err.factor_unavailable", nil)
	case errors.Is(err, authn.ErrSessionUnavailable):
		return errf(http.StatusUnauthorized, "not_signed_in", "err.not_signed_in", nil)
	case errors.Is(err, authn.ErrLinkInvalid):
		return errf(http.StatusBadRequest, "link_invalid", "err.link_invalid", nil)
	case errors.Is(err, factors.ErrNameTaken):
		return errf(http.StatusConflict, "name_taken", "err.name_taken", nil)
	case errors.Is(err, factors.ErrInvalidName):
		return errf(http.StatusBadRequest, "invalid_name", "err.invalid_name", nil)
	case errors.Is(err, factors.ErrNotFound), errors.Is(err, authn.ErrDeviceNotFound):
		return errf(http.StatusNotFound, "not_found", "err.no_such_credential", nil)
	case errors.Is(err, factors.ErrNotEnrolled):
		// Includes every key suspended: nothing usable to offer.
		return errf(http.StatusNotFound, "factor_unavailable", "err.factor_unavailable", err)
	case errors.Is(err, factors.ErrNotSupported):
		return errf(http.StatusBadRequest, "not_supported", "err.not_supported", nil)
	case errors.Is(err, fwa.ErrCeremony), errors.Is(err, factors.ErrExpired):
		// A ceremony or a pending enrolment that timed out or was used.
		return errf(http.StatusBadRequest, "ceremony_expired", "err.ceremony_expired", err)
	case errors.Is(err, fwa.ErrCloneWarning):
		return errf(http.StatusUnauthorized, "key_cloned", "err.key_cloned", err)
	case errors.As(err, &ve):
		switch ve.Reason {
		case "already_registered":
			return errf(http.StatusConflict, "already_registered", "err.already_registered", err)
		case "not_allowed":
			return errf(http.StatusForbidden, "key_not_allowed", "err.key_not_allowed", err)
		case "malformed":
			return errf(http.StatusBadRequest, "bad_request", "err.bad_request", err)
		case "suspended":
			return errf(http.StatusForbidden, "key_suspended", "err.key_suspended", err)
		}
		return errf(http.StatusUnauthorized, "assertion_refused", "err.assertion_refused", err)
	case errors.Is(err, authn.ErrAssertionRefused):
		return errf(http.StatusUnauthorized, "assertion_refused", "err.assertion_refused", err)
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return errf(http.StatusInternalServerError, "internal", "err.internal", fmt.Errorf("second factor: %w", err))
}

// lockedError is the answer to right credentials for a locked account or
// from a locked address: it says until when, and (for an account with a
// confirmed address) carries the ticket to ask for an unlock code. A
// timed lock is 429 Too Many Requests; a reported account waits for an
// unlock, so it is 403.
func lockedError(le *authn.LockedError) *Error {
	until := le.Until.UTC().Format("2006-01-02 15:04 UTC")
	var e *Error
	switch {
	case le.Reported:
		e = errf(http.StatusForbidden, "account_locked", "err.locked_reported", le)
	case le.Network:
		e = errf(http.StatusTooManyRequests, "address_locked", "err.locked_network", le)
		e.Args = []any{until}
	default:
		e = errf(http.StatusTooManyRequests, "account_locked", "err.locked_account", le)
		e.Args = []any{until}
	}
	e.Extra = map[string]any{}
	if !le.Until.IsZero() {
		e.Extra["locked_until"] = le.Until.UTC().Format(time.RFC3339)
	}
	if le.Ticket != "" {
		e.Extra["unlock_ticket"] = le.Ticket
	}
	return e
}

// weakProofError is the answer to a change of second factors that needs a
// stronger fresh proof: 403, what to confirm with ("need": the factor
// kinds, strongest first) and, in words, what to do — including the way
// back when that factor is lost (an admin's enrolment link).
func weakProofError(wp *authn.WeakProofError) *Error {
	code, key := "stronger_proof_required", "err.stronger_proof."+wp.Need.String()
	if wp.Need <= factors.StrengthCode {
		// Any second factor will do: the plain "confirm it's you".
		code, key = "elevation_required", "err.elevation_required"
	}
	e := errf(http.StatusForbidden, code, key, wp)
	need := wp.Kinds
	if need == nil {
		need = []string{}
	}
	e.Extra = map[string]any{"need": need, "need_strength": wp.Need.String()}
	return e
}
