package policy

import "testing"

// The reserved prefix in every spelling an upstream could read as it, and
// look-alikes that are not it (moved from web with ReservedSpelling).
func TestReservedSpelling(t *testing.T) {
	for _, p := range []string{
		"/.keygate", "/.keygate/", "//.keygate", "/.KEYGATE/x", "/.keygate;x", "/.keygate%3Bx", "/%2e%6b%65ygate/", "/%2F.keygate",
		"/%5c.keygate", `\.keygate`, "/.keygate.", "/.keygate. %20", "/.keygate%2fx",
	} {
		if !ReservedSpelling(p) {
			t.Errorf("ReservedSpelling(%q) = false", p)
		}
	}
	for _, p := range []string{"/", "/.keygatex", "/.keygat", "/x/.keygate", "/keygate", "/..keygate", "/.keygate%25", "/.keygatE.x", "/.keygate%"} {
		if ReservedSpelling(p) {
			t.Errorf("ReservedSpelling(%q) = true", p)
		}
	}
}
