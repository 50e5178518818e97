package sentcode

import (
	"math"
	"testing"
)

// Every digit of a code is uniform: a bias would shrink the space a
// guesser has to cover. 200 000 digits, chi-square with 9 degrees of
// freedom; 33.7 is the 0.01 % critical value, so a false alarm is one run
// in ten thousand. (Moved here from factors/emailcode with newCode.)
func TestCodeDigitsAreUniform(t *testing.T) {
	var counts [10]int
	const codes = 20000
	for range codes {
		c, err := newCode(10)
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != 10 || !isDigits(c) {
			t.Fatalf("code %q", c)
		}
		for i := range len(c) {
			counts[c[i]-'0']++
		}
	}
	expected := float64(codes*10) / 10
	chi2 := 0.0
	for _, n := range counts {
		chi2 += math.Pow(float64(n)-expected, 2) / expected
	}
	if chi2 > 33.7 {
		t.Errorf("digit counts %v: chi-square %.1f, the digits are not uniform", counts, chi2)
	}
}
