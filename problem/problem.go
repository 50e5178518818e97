// Package problem is the neutral vocabulary in which a package says how its
// errors are answered: a class of refusal, a stable code for API clients and
// the key of a message people can act on. Each owner of errors (authn,
// factors, policy, a factor package) lists its own in a Table next to the
// errors themselves; web interprets every table in one renderer (status,
// JSON or page, language).
//
// Why a package of its own: the owners must not import web (web imports
// them), and they are domain packages that should not speak HTTP. A Class
// is what kind of refusal an error is; web maps it to a status, and a
// command line could map it to an exit code. This package imports nothing
// of keygate and holds no state.
package problem

import (
	"errors"
	"time"
)

// Class is the kind of refusal an error is.
type Class uint8

const (
	// Internal: nobody's input is at fault; the cause is logged, not shown.
	Internal Class = iota
	// Invalid: the request itself is malformed or no longer applies (an
	// expired link, a name too long).
	Invalid
	// Unauthenticated: the proof given is not right (a wrong code, a
	// refused security key), or there is no session.
	Unauthenticated
	// Forbidden: the person is known but may not do this.
	Forbidden
	// NotFound: no such thing (a credential, a session).
	NotFound
	// Conflict: the state of things refuses it (a name taken, the last
	// factor).
	Conflict
	// TooMany: asked too often; waiting helps (cooldowns, caps, locks).
	TooMany
	// Unavailable: a service keygate depends on failed (mail, SMS).
	Unavailable
)

// Classes lists every class, for tables and tests that walk them.
var Classes = []Class{Internal, Invalid, Unauthenticated, Forbidden, NotFound, Conflict, TooMany, Unavailable}

func (c Class) String() string {
	switch c {
	case Internal:
		return "internal"
	case Invalid:
		return "invalid"
	case Unauthenticated:
		return "unauthenticated"
	case Forbidden:
		return "forbidden"
	case NotFound:
		return "not_found"
	case Conflict:
		return "conflict"
	case TooMany:
		return "too_many"
	case Unavailable:
		return "unavailable"
	}
	return "unknown"
}

// Problem is how one error is answered.
type Problem struct {
	Class Class
	// Code is the stable identifier API clients branch on (JSON "error").
	Code string
	// Key is the message catalogue key of what people read.
	Key string
	// Args fill the message's verbs (seconds to wait, a date).
	Args []any
	// Extra are more fields of a JSON answer (retry_after, need, …).
	Extra map[string]any
}

// Entry answers the errors that match Err (errors.Is) with a fixed
// problem: the row of a Table.
type Entry struct {
	Err   error
	Class Class
	Code  string
	Key   string
}

// Problem is the entry's answer.
func (e Entry) Problem() Problem { return Problem{Class: e.Class, Code: e.Code, Key: e.Key} }

// Table is one owner's entries, most specific first (an error that wraps
// another matches both; the first row wins).
type Table []Entry

// Describer is a typed error that carries values its answer shows (until
// when a lock holds, the seconds to wait, which factor to confirm with). now
// is the caller's clock, so answers stay deterministic under test.
type Describer interface {
	error
	Problem(now time.Time) Problem
}

// Find describes err: the first Describer in its chain, else the first
// entry whose Err it matches, walking tables in order. ok is false when
// nothing knows err: an internal error.
func Find(err error, now time.Time, tables ...Table) (p Problem, ok bool) {
	if err == nil {
		return Problem{}, false
	}
	var d Describer
	if errors.As(err, &d) {
		return d.Problem(now), true
	}
	for _, t := range tables {
		for _, e := range t {
			if errors.Is(err, e.Err) {
				return e.Problem(), true
			}
		}
	}
	return Problem{}, false
}
