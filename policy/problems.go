package policy

import "github.com/keygate/keygate/problem"

// Problems says how the policy's refusals are answered (see package
// problem: a table next to the errors, interpreted by web's renderer).
var Problems = problem.Table{
	// keygate's own prefix in some spelling, met on the way to an app:
	// the portal has no such page, and nothing is forwarded.
	{Err: ErrReserved, Class: problem.NotFound, Code: "not_found", Key: "err.not_found"},
	// A path no honest client sends (a *PathError): refused, never judged.
	{Err: ErrBadPath, Class: problem.Invalid, Code: "bad_path", Key: "err.bad_path"},
}
