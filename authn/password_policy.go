package authn

import (
	_ "embed"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// commonPasswords is a sorted, lower-case, newline-terminated list of
// passwords and password stems seen most often in breach corpora, plus
// keyboard patterns. It stays a string (binary-searched in place, see
// inCommonList) instead of a map built at start: nothing has to be built,
// cached or kept in package state.
//
//go:embed common_passwords.txt
var commonPasswords string

// Password length bounds, counted in characters (runes) after NFC
// normalisation. The maximum keeps argon2's pre-hash input and request
// bodies sane; it is far above any passphrase a person types.
const (
	DefaultMinPasswordLength = 12
	MaxPasswordLength        = 1024
)

// Stable codes of PasswordPolicyError.Codes, for translated messages.
const (
	PolicyCodeTooShort         = "too_short"
	PolicyCodeTooLong          = "too_long"
	PolicyCodeInvalid          = "invalid_utf8"
	PolicyCodeCommon           = "too_common"
	PolicyCodeContainsUsername = "contains_username"
	PolicyCodeContainsEmail    = "contains_email"
)

// PasswordPolicy decides which new passwords are acceptable. It follows
// NIST SP 800-63B: a minimum length, a check against common and breached
// passwords, and no composition rules ("one digit, one symbol"), which only
// push people to Password1!.
type PasswordPolicy struct {
	// MinLength in characters; 0 means DefaultMinPasswordLength.
	MinLength int
}

// NormalizePassword returns the form of a password that is checked and
// hashed: Unicode NFC. Without it, "é" typed as one code point on one
// system and as "e"+accent on another would be two different passwords.
func NormalizePassword(pw string) string { return norm.NFC.String(pw) }

// Check returns nil if password is acceptable for the user, or a
// *PasswordPolicyError listing every reason it is not.
func (p PasswordPolicy) Check(username, email, password string) error {
	minLen := p.MinLength
	if minLen <= 0 {
		minLen = DefaultMinPasswordLength
	}
	perr := &PasswordPolicyError{}
	if !utf8.ValidString(password) {
		perr.add(PolicyCodeInvalid, "must be valid text (UTF-8)")
		return perr
	}
	pw := NormalizePassword(password)
	n := utf8.RuneCountInString(pw)
	if n < minLen {
		perr.add(PolicyCodeTooShort, "at least "+strconv.Itoa(minLen)+" characters")
	}
	if n > MaxPasswordLength {
		perr.add(PolicyCodeTooLong, "at most "+strconv.Itoa(MaxPasswordLength)+" characters")
	}
	lower := strings.ToLower(pw)
	if n <= MaxPasswordLength && isCommonPassword(lower) {
		perr.add(PolicyCodeCommon, "too common")
	}
	// Names shorter than 3 characters would match too many good passwords
	// ("al" in "totally-random…") to be worth refusing.
	if u := strings.ToLower(strings.TrimSpace(username)); utf8.RuneCountInString(u) >= 3 && strings.Contains(lower, u) {
		perr.add(PolicyCodeContainsUsername, "must not contain the username")
	}
	local, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(email)), "@")
	if utf8.RuneCountInString(local) >= 3 && strings.Contains(lower, local) {
		perr.add(PolicyCodeContainsEmail, "must not contain the email address")
	}
	if len(perr.Reasons) > 0 {
		return perr
	}
	return nil
}

// isCommonPassword reports whether a lower-cased password is on the list or
// a trivial variation of an entry (affixed digits and symbols, leetspeak,
// separators), a repetition, a straight sequence or a keyboard walk.
func isCommonPassword(pw string) bool {
	// "Summer2024!" and "!!dragon99" are their stem plus affixes that add
	// almost nothing for a guesser who tries stems first. Two stems: one
	// without affixed symbols ("0987654321" in "0987654321!@#"), one without
	// affixed digits and symbols ("summer").
	alnum := strings.TrimFunc(pw, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	letters := strings.TrimFunc(pw, func(r rune) bool { return !unicode.IsLetter(r) })
	for _, c := range [...]string{pw, alnum, letters} {
		// Stems of three characters or fewer say little about the rest.
		if len(c) > 3 && (isRepetition(c) || isSequence(c) || isKeyboardWalk(c)) {
			return true
		}
	}
	leetI, leetL := unleet(letters, 'i'), unleet(letters, 'l')
	for _, c := range [...]string{pw, alnum, letters, leetI, leetL, lettersOnly(leetI), lettersOnly(leetL)} {
		if c != "" && inCommonList(c) {
			return true
		}
	}
	return false
}

// inCommonList binary-searches the sorted list in place: a dozen line
// comparisons and no allocation, where scanning the whole text cost tens of
// microseconds a check, seven checks a password (bulk imports such as
// `keygate dev seed` spent most of their time there).
func inCommonList(c string) bool {
	// lo and hi are always line starts (or the end).
	lo, hi := 0, len(commonPasswords)
	for lo < hi {
		mid := lo + (hi-lo)/2
		start := strings.LastIndexByte(commonPasswords[:mid], '\n') + 1
		end := start + strings.IndexByte(commonPasswords[start:], '\n')
		switch line := commonPasswords[start:end]; {
		case line == c:
			return true
		case line < c:
			lo = end + 1
		default:
			hi = start
		}
	}
	return false
}

// unleet undoes the usual character substitutions; one stands for "i" or
// "l" as the caller says.
func unleet(s string, one rune) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '0':
			return 'o'
		case '1', '!':
			return one
		case '|':
			return 'l'
		case '3':
			return 'e'
		case '4', '@':
			return 'a'
		case '5', '$':
			return 's'
		case '7', '+':
			return 't'
		case '8':
			return 'b'
		case '9':
			return 'g'
		}
		return r
	}, s)
}

// lettersOnly drops separators and leftovers: "pass-word" → "password".
func lettersOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) {
			return r
		}
		return -1
	}, s)
}

// isRepetition: "aaaaaaaaaaaa", "abcabcabcabc", "passwordpassword".
func isRepetition(s string) bool {
	for unit := 1; unit <= len(s)/2; unit++ {
		if len(s)%unit == 0 && strings.Repeat(s[:unit], len(s)/unit) == s {
			return true
		}
	}
	return false
}

// isSequence: every step is +1 or every step is -1 within digits (wrapping
// 9→0) or within a–z (wrapping z→a): "123456789012", "lkjihgfedcba".
func isSequence(s string) bool {
	if len(s) < 3 {
		return false
	}
	step := func(a, b byte) int {
		switch {
		case isDigit(a) && isDigit(b):
			return ((int(b)-int(a))%10 + 10) % 10
		case isLower(a) && isLower(b):
			return ((int(b)-int(a))%26 + 26) % 26
		}
		return -1
	}
	first := step(s[0], s[1])
	if first != 1 && first != 9 && first != 25 {
		return false
	}
	for i := 1; i+1 < len(s); i++ {
		if step(s[i], s[i+1]) != first {
			return false
		}
	}
	return true
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }
func isLower(b byte) bool { return b >= 'a' && b <= 'z' }

// keyboardWalks are the rows, columns and zig-zags people trace on a US
// keyboard, one per line; any stretch of 4 or more of one, forwards or
// backwards, counts. (A stretch spanning two lines would contain '\n'.)
const keyboardWalks = "`1234567890-=\n" +
	"~!@#$%^&*()_+\n" +
	"qwertyuiop[]\\\n" +
	"asdfghjkl;'\n" +
	"zxcvbnm,./\n" +
	"qwertyuiopasdfghjklzxcvbnm\n" +
	"1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0p;/\n" +
	"qazwsxedcrfvtgbyhnujmikolp\n" +
	"zaqxswcdevfrbgtnhymjukilop\n" +
	"1q2w3e4r5t6y7u8i9o0p\n" +
	"q1w2e3r4t5y6u7i8o9p0\n" +
	"qweasdzxc\n" +
	"qaswedfrtghyujkilop"

func isKeyboardWalk(s string) bool {
	if len(s) < 4 || strings.ContainsRune(s, '\n') {
		return false
	}
	return strings.Contains(keyboardWalks, s) || strings.Contains(keyboardWalks, reverse(s))
}

func reverse(s string) string {
	b := []rune(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}
