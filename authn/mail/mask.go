package mail

import "strings"

// Mask hides most of an address while leaving enough for its owner to
// recognise it: "alice@example.com" → "a***e@e*****e.com". The first and
// last character of the local part and of each domain label are kept, the
// top-level domain is kept whole. The number of stars follows the length,
// which the owner recognises and a harvester cannot use.
func Mask(address string) string {
	address = strings.TrimSpace(address)
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return maskPart(address)
	}
	local, domain := address[:at], address[at+1:]
	labels := strings.Split(domain, ".")
	for i := range labels {
		if i == len(labels)-1 && len(labels) > 1 {
			break // the TLD says nothing about the person
		}
		labels[i] = maskPart(labels[i])
	}
	return maskPart(local) + "@" + strings.Join(labels, ".")
}

// maskPart keeps the first and last character of s (counted in runes) and
// stars the rest; a part of one or two characters keeps only its first.
func maskPart(s string) string {
	r := []rune(s)
	switch len(r) {
	case 0:
		return ""
	case 1:
		return "*"
	case 2:
		return string(r[0]) + "*"
	}
	return string(r[0]) + strings.Repeat("*", len(r)-2) + string(r[len(r)-1])
}
