package mail_test

import (
	"testing"

	"github.com/keygate/keygate/authn/mail"
)

func TestMask(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com":          "a***e@e*****e.com",
		"bo@example.com":             "b*@e*****e.com",
		"x@example.com":              "*@e*****e.com",
		"john.smith@mail.example.ru": "j********h@m**l.e*****e.ru",
		"иван@пример.рф":             "и**н@п****р.рф",
		"alice@localhost":            "a***e@l*******t",
		"not-an-address":             "n************s",
		"":                           "",
	} {
		if got := mail.Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}
