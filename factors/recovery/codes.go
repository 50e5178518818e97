package recovery

import (
	"crypto/rand"
	"strings"
)

// The code format. The alphabet leaves out 0, o, 1, l and i, which people
// misread on paper and in some fonts; upper case is accepted on input and
// folded. 12 characters of 31 give 12·log2(31) ≈ 59 bits per code, above
// the 50 asked for, so a guesser limited to a few tries an hour (authn's
// brute-force regulation) gets nowhere. Codes are printed in groups of 4
// ("k7qm-xt4p-9wzc") for reading aloud and typing.
const (
	alphabet  = "23456789abcdefghjkmnpqrstuvwxyz"
	codeLen   = 12
	groupLen  = 4
	separator = '-'
)

// newCode returns a fresh random code in its normal form (no separators).
func newCode() string {
	// Rejection sampling keeps every character equally likely: bytes
	// from 248 (= 8·31) up would favour the first characters.
	const limit = 256 - 256%len(alphabet)
	out := make([]byte, 0, codeLen)
	var buf [2 * codeLen]byte
	for len(out) < codeLen {
		// crypto/rand.Read never returns short: it panics on a broken system.
		_, _ = rand.Read(buf[:])
		for _, b := range buf {
			if int(b) < limit && len(out) < codeLen {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// format splits a normal-form code into groups: "k7qmxt4p9wzc" →
// "k7qm-xt4p-9wzc".
func format(code string) string {
	var b strings.Builder
	for i := 0; i < len(code); i += groupLen {
		if i > 0 {
			b.WriteByte(separator)
		}
		b.WriteString(code[i:min(i+groupLen, len(code))])
	}
	return b.String()
}

// normalize turns what a person typed into the normal form: case folded,
// spaces and dashes dropped. ok is false when the result cannot be a code
// (wrong length or a character outside the alphabet), which needs no
// lookup at all.
func normalize(input string) (code string, ok bool) {
	out := make([]byte, 0, codeLen)
	for i := 0; i < len(input); i++ {
		c := input[i]
		switch {
		case c == ' ' || c == '\t' || c == separator:
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if strings.IndexByte(alphabet, c) < 0 || len(out) == codeLen {
			return "", false
		}
		out = append(out, c)
	}
	if len(out) != codeLen {
		return "", false
	}
	return string(out), true
}
