package webauthn

import (
	"time"

	"github.com/keygate/keygate/problem"
)

// Problems says how WebAuthn's own refusals are answered (see package
// problem: a table next to the errors, interpreted by web's renderer).
// ErrCeremony is factors.ErrExpired and is answered by factors.Problems.
var Problems = problem.Table{
	{Err: ErrCloneWarning, Class: problem.Unauthenticated, Code: "key_cloned", Key: "err.key_cloned"},
}

// reasonProblems answers a refused response by its reason; a reason not
// listed is a plain refusal (assertion_refused).
var reasonProblems = map[string]problem.Problem{
	ReasonAlreadyRegistered: {Class: problem.Conflict, Code: "already_registered", Key: "err.already_registered"},
	ReasonNotAllowed:        {Class: problem.Forbidden, Code: "key_not_allowed", Key: "err.key_not_allowed"},
	ReasonMalformed:         {Class: problem.Invalid, Code: "bad_request", Key: "err.bad_request"},
	ReasonSuspended:         {Class: problem.Forbidden, Code: "key_suspended", Key: "err.key_suspended"},
}

// refused is the answer to every other reason: which check failed stays in
// the log (Err), the person reads that the key's answer was not accepted.
var refused = problem.Problem{Class: problem.Unauthenticated, Code: "assertion_refused", Key: "err.assertion_refused"}

// Problem answers a refused ceremony response by its Reason.
func (e *VerifyError) Problem(time.Time) problem.Problem {
	if p, ok := reasonProblems[e.Reason]; ok {
		return p
	}
	return refused
}

// Interface guards.
var _ problem.Describer = (*VerifyError)(nil)
