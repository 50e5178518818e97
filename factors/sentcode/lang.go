package sentcode

import "strings"

// PickLang maps a language tag ("ru", "ru-RU", "RU_ru") to one of have by
// its primary subtag; have[0] (the fallback) when none matches. Mails and
// texts of every sent-code factor pick their language with it.
func PickLang(tag string, have ...string) string {
	primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
	primary, _, _ = strings.Cut(primary, "_")
	for _, l := range have {
		if primary == l {
			return l
		}
	}
	if len(have) == 0 {
		return ""
	}
	return have[0]
}

// PluralRU picks a Russian (Slavic) plural form for n: one (1, 21, …),
// few (2–4, 22–24, …) or many (0, 5–20, 25, …).
func PluralRU(n int, one, few, many string) string {
	switch n10, n100 := n%10, n%100; {
	case n10 == 1 && n100 != 11:
		return one
	case n10 >= 2 && n10 <= 4 && (n100 < 12 || n100 > 14):
		return few
	}
	return many
}
