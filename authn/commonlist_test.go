package authn

import (
	"strings"
	"testing"
)

// inCommonList binary-searches the list in place; it must answer exactly
// as a scan of the whole text does, for every entry and its neighbours.
func TestInCommonListMatchesScan(t *testing.T) {
	scan := func(c string) bool {
		return strings.HasPrefix(commonPasswords, c+"\n") || strings.Contains(commonPasswords, "\n"+c+"\n")
	}
	lines := strings.Split(strings.TrimSuffix(commonPasswords, "\n"), "\n")
	probes := []string{"", "0", "~", "zzzzzzzzzz", "\x00", "\xff"}
	for _, l := range lines {
		probes = append(probes, l, l+"x", l[:len(l)-1], l+"\n"+l, "a"+l)
	}
	for _, p := range probes {
		if p == "" {
			if inCommonList(p) {
				t.Error(`"" is in the list`)
			}
			continue
		}
		if got, want := inCommonList(p), scan(p); got != want {
			t.Errorf("inCommonList(%q) = %v, a scan says %v", p, got, want)
		}
	}
}
