package store

import "github.com/keygate/keygate/problem"

// Problems says how the store's errors are answered when they reach a
// person (see package problem): a database that cannot be reached is
// "try again shortly", not an internal error.
var Problems = problem.Table{
	{Err: ErrUnavailable, Class: problem.Unavailable, Code: "store_unavailable", Key: "err.store_unavailable"},
}
