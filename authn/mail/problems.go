package mail

import "github.com/keygate/keygate/problem"

// Problems says how mail's refusals are answered (see package problem: a
// table next to the errors, interpreted by web's renderer). A code that
// could not be mailed keeps its own wire code, "email_failed", which
// clients knew before codes went out by SMS too.
var Problems = problem.Table{
	{Err: ErrDelivery, Class: problem.Unavailable, Code: "email_failed", Key: "err.email_failed"},
}
