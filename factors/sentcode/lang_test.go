package sentcode_test

import (
	"testing"

	"github.com/keygate/keygate/factors/sentcode"
)

// (Moved here from factors/emailcode with the helpers.)
func TestRussianPlural(t *testing.T) {
	for n, want := range map[int]string{
		1: "минуту", 2: "минуты", 4: "минуты", 5: "минут", 10: "минут", 11: "минут", 12: "минут",
		14: "минут", 21: "минуту", 22: "минуты", 25: "минут", 60: "минут", 101: "минуту", 111: "минут",
	} {
		if got := sentcode.PluralRU(n, "минуту", "минуты", "минут"); got != want {
			t.Errorf("%d %s, want %s", n, got, want)
		}
	}
}

func TestPickLang(t *testing.T) {
	for in, want := range map[string]string{
		"ru": "ru", "ru-RU": "ru", "RU": "ru", "ru_RU": "ru", " ru ": "ru",
		"en": "en", "en-US": "en", "": "en", "de": "en", "russian": "en",
	} {
		if got := sentcode.PickLang(in, "en", "ru"); got != want {
			t.Errorf("PickLang(%q) = %q, want %q", in, got, want)
		}
	}
	if got := sentcode.PickLang("ru"); got != "" {
		t.Errorf("no languages: %q", got)
	}
}
