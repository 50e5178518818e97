package sms

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sentcode"
)

// One SMS carries 160 characters of the GSM 7-bit alphabet, or 70 UTF-16
// units when any character is outside it (Cyrillic always is). A longer
// text is split into parts that arrive separately, cost more and may be
// shown out of order, so every text must fit one SMS: New refuses
// options whose longest text would not.
const (
	gsmLimit  = 160
	ucs2Limit = 70
)

// text is what a code's SMS says in lang ("ru", "ru-RU" → Russian;
// anything else → English). It says what the code is for, how long it
// works, and (for sign-in) not to pass it on: a fraudster calling "from the
// bank" asks for exactly this code.
func text(lang, product, code string, minutes int, p factors.Purpose) string {
	if sentcode.PickLang(lang, languages[:]...) == "ru" {
		n := strconv.Itoa(minutes) + " " + sentcode.PluralRU(minutes, "минуту", "минуты", "минут")
		if p == factors.PurposeVerifyAddress {
			return fmt.Sprintf("Код %s для подтверждения номера: %s. Действует %s.", product, code, n)
		}
		return fmt.Sprintf("Ваш код %s: %s. Действует %s. Никому не сообщайте.", product, code, n)
	}
	n := strconv.Itoa(minutes) + " minutes"
	if minutes == 1 {
		n = "1 minute"
	}
	if p == factors.PurposeVerifyAddress {
		return fmt.Sprintf("Your %s code to confirm this phone number is %s. It expires in %s.", product, code, n)
	}
	return fmt.Sprintf("Your %s code is %s. It expires in %s. Do not share it.", product, code, n)
}

// languages are the ones with texts; the first is the fallback.
var languages = [...]string{"en", "ru"}

// gsmBasic is the GSM 03.38 default alphabet (without the escape-table
// characters, which take two septets each and are best avoided).
const gsmBasic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"

// GSM7 reports whether text can go in the GSM 7-bit alphabet; otherwise it
// must be sent as UCS-2 (Kannel: coding=2), with 70 characters to an SMS.
func GSM7(text string) bool {
	for _, r := range text {
		if !strings.ContainsRune(gsmBasic, r) {
			return false
		}
	}
	return true
}

// fitsOneSMS reports whether text fits one SMS, and its limit.
func fitsOneSMS(text string) (bool, int) {
	if GSM7(text) {
		return len([]rune(text)) <= gsmLimit, gsmLimit
	}
	return len(utf16.Encode([]rune(text))) <= ucs2Limit, ucs2Limit
}
