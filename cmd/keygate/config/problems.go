package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path is the YAML path of the key: "server.listen",
	// "upstreams[1].url", "policy.rules[0].networks[1]". Empty for a
	// problem with the document as a whole (a YAML syntax error).
	Path    string
	Message string
	// Line is the 1-based line in the YAML file; 0 when unknown (the value
	// came from a default or from the environment, or Validate was called on
	// a Config built in code).
	Line int
}

// Error formats the problem as "path: message", with the line appended when
// known so an admin can jump to it.
func (p Problem) Error() string {
	var b strings.Builder
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	if p.Line > 0 {
		b.WriteString(" (line ")
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteString(")")
	}
	return b.String()
}

// Problems is every problem found, never just the first. It is the error
// Parse, Load and Validate return when the configuration is unusable; use
// errors.As to get at the list.
type Problems []Problem

// Error lists each problem on its own line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// add records a problem; a helper so that checks read as one line each.
func (ps *Problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// err returns the list as an error, or a nil interface (not a typed nil
// slice) when it is empty.
func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// sortByLine orders problems as they appear in the file; problems without a
// line (defaults, environment) keep their relative order at the end.
func (ps Problems) sortByLine() {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return cmp.Compare(a.Line, b.Line)
	})
}

// covers reports whether path is p or lies below p ("a.b" covers "a.b",
// "a.b.c" and "a.b[0]" but not "a.bc").
func covers(p, path string) bool {
	if !strings.HasPrefix(path, p) {
		return false
	}
	if len(path) == len(p) {
		return true
	}
	return path[len(p)] == '.' || path[len(p)] == '['
}

// parentPath strips the last segment: "a.b[2]" → "a.b", "a.b" → "a", "a" → "".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}
