package activity

import "github.com/keygate/keygate/problem"

// Problems says how the activity room's refusals are answered (see package
// problem: a table next to the errors, interpreted by web's renderer).
var Problems = problem.Table{
	{Err: ErrNotMeInvalid, Class: problem.Invalid, Code: "link_invalid", Key: "err.notme_invalid"},
}
