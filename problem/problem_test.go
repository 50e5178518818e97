package problem

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

var (
	errBase     = errors.New("base")
	errSpecific = fmt.Errorf("specific: %w", errBase)
	errOther    = errors.New("other")
)

type waitError struct{ until time.Time }

func (e *waitError) Error() string { return "wait" }
func (e *waitError) Unwrap() error { return errBase }
func (e *waitError) Problem(now time.Time) Problem {
	return Problem{Class: TooMany, Code: "wait", Key: "err.wait", Args: []any{int(e.until.Sub(now).Seconds())}}
}

// Find: a Describer in the chain first (it carries values), then the first
// row of the first table an error matches, in order; nothing for nil or an
// error no table names.
func TestFind(t *testing.T) {
	owner := Table{
		{Err: errSpecific, Class: Conflict, Code: "specific", Key: "err.specific"},
		{Err: errBase, Class: Invalid, Code: "base", Key: "err.base"},
	}
	shared := Table{{Err: errBase, Class: NotFound, Code: "shared", Key: "err.shared"}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		err  error
		code string
		ok   bool
	}{
		{"specific row before the one it wraps", fmt.Errorf("ctx: %w", errSpecific), "specific", true},
		{"first table wins", errBase, "base", true},
		{"describer before rows", fmt.Errorf("ctx: %w", &waitError{now.Add(time.Minute)}), "wait", true},
		{"unknown", errOther, "", false},
		{"nil", nil, "", false},
	} {
		p, ok := Find(tc.err, now, owner, shared)
		if ok != tc.ok || p.Code != tc.code {
			t.Errorf("%s: %+v %v, want %q %v", tc.name, p, ok, tc.code, tc.ok)
		}
	}
	if p, _ := Find(&waitError{now.Add(time.Minute)}, now); len(p.Args) != 1 || p.Args[0] != 60 {
		t.Errorf("the describer did not get the caller's clock: %+v", p)
	}
	if p, _ := Find(errBase, now, shared, owner); p.Code != "shared" {
		t.Errorf("tables are not asked in order: %+v", p)
	}
}

// Every class has a name; the names are distinct.
func TestClassNames(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Classes {
		n := c.String()
		if n == "unknown" || seen[n] {
			t.Errorf("class %d: name %q", c, n)
		}
		seen[n] = true
	}
}
