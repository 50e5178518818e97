package sms

import (
	"fmt"
	"strings"

	"github.com/keygate/keygate/factors"
)

// E.164 bounds: a country code and subscriber number of at most 15 digits
// in all; 8 is the shortest that any country's full international number
// reaches, so anything shorter is a typo or a short code (premium numbers
// are where SMS fraud sends its traffic).
const (
	minDigits = 8
	maxDigits = 15
)

// ParsePhone checks an E.164 number ("+447700900123") and returns it in its
// canonical form. Spaces between digits are dropped, as E.123 prints
// international numbers with them ("+44 7700 900123"); anything else — no
// '+', another separator, letters, non-ASCII digits, a leading 0, fewer
// than 8 or more than 15 digits — is refused with factors.ErrBadAddress.
// The error never repeats the number.
func ParsePhone(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "+") {
		return "", badPhone("it must start with + and the country code")
	}
	digits := make([]byte, 0, maxDigits)
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
		case c == ' ' && i > 1 && s[i-1] != ' ':
			// One space at a time between digits.
		default:
			return "", badPhone("it may hold only digits after the +")
		}
	}
	switch {
	case len(digits) < minDigits || len(digits) > maxDigits:
		return "", badPhone(fmt.Sprintf("it has %d to %d digits", minDigits, maxDigits))
	case digits[0] == '0':
		return "", badPhone("a country code never starts with 0")
	}
	return "+" + string(digits), nil
}

func badPhone(why string) error {
	return fmt.Errorf("sms: not a phone number in international form (+ country code and number, e.g. +44 7700 900123): %s: %w", why, factors.ErrBadAddress)
}

// Mask hides most of a number while its owner still recognises it: the
// first two digits (the country, or most of it) and the last four stay,
// in groups of four, never leaving a lone digit at the end:
// "+447700901234" → "+44 •••• ••12 34", "+79161234567" → "+79 •••• •45 67".
// For anything that is not a canonical number it shows only bullets.
func Mask(phone string) string {
	if len(phone) < 1+minDigits || phone[0] != '+' {
		return "•••"
	}
	rest := phone[3:]
	sizes := make([]int, 0, 4)
	for n := len(rest); n > 0; n -= 4 {
		sizes = append(sizes, min(n, 4))
	}
	if k := len(sizes); k > 1 && sizes[k-1] == 1 {
		sizes[k-2], sizes[k-1] = 3, 2
	}
	var b strings.Builder
	b.WriteString(phone[:3])
	i := 0
	for _, size := range sizes {
		b.WriteByte(' ')
		for range size {
			if i < len(rest)-4 {
				b.WriteString("•")
			} else {
				b.WriteByte(rest[i])
			}
			i++
		}
	}
	return b.String()
}
