package sms

import "github.com/keygate/keygate/problem"

// Problems says how the SMS factor's own refusals are answered (see
// package problem); its other refusals are the shared ones of factors.
var Problems = problem.Table{
	{Err: ErrHasNumber, Class: problem.Conflict, Code: "has_number", Key: "err.has_number"},
}
