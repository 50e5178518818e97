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
// in groups of four: "+447700900123" → "+44 •••• ••01 23". For anything
// that is not a canonical number it shows only bullets.
func Mask(phone string) string {
	if len(phone) < 1+minDigits || phone[0] != '+' {
		return "•••"
	}
	d := []byte(phone[1:])
	head, rest := string(d[:2]), d[2:]
	var b strings.Builder
	b.WriteString("+")
	b.WriteString(head)
	for i := range rest {
		if i%4 == 0 {
			b.WriteByte(' ')
		}
		if i < len(rest)-4 {
			b.WriteString("•")
		} else {
			b.WriteByte(rest[i])
		}
	}
	return b.String()
}
