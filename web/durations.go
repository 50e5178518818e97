package web

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/feature/plural"
)

// durationUnits are the units people read, largest first.
var durationUnits = []struct {
	name string
	size time.Duration
}{
	{"day", 24 * time.Hour},
	{"hour", time.Hour},
	{"minute", time.Minute},
	{"second", time.Second},
}

// pluralForm names the CLDR plural category of n in this catalogue's
// language ("one", "few", "many", "other"): Russian has three forms where
// English has two, so "%d minutes" cannot be one string.
func (c *catalog) pluralForm(n int) string {
	switch plural.Cardinal.MatchPlural(c.tag, n, 0, 0, 0, 0) {
	case plural.One:
		return "one"
	case plural.Few:
		return "few"
	case plural.Many:
		return "many"
	default:
		return "other"
	}
}

// unit writes n of unit ("1 minute", "15 минут") from the catalogue's
// dur.<unit>.<form> entries.
func (c *catalog) unit(n int, unit string) string {
	key := "dur." + unit + "." + c.pluralForm(n)
	if _, ok := c.msgs[key]; !ok {
		key = "dur." + unit + ".other"
	}
	return strings.Replace(c.T(key), "%d", strconv.Itoa(n), 1)
}

// Duration writes d as people say it, in at most two units, the smaller
// rounded up (a wait is never shown shorter than it is): "15 minutes",
// "1 hour 30 minutes", "3 дня", "42 секунды"; never "15m0s".
func (c *catalog) Duration(d time.Duration) string {
	d = max(d, time.Second)
	i := 0
	for i < len(durationUnits)-1 && d < durationUnits[i].size {
		i++
	}
	big := durationUnits[i]
	if i == len(durationUnits)-1 {
		return c.unit(int((d+time.Second-1)/time.Second), big.name)
	}
	n := int(d / big.size)
	small := durationUnits[i+1]
	m := int((d - time.Duration(n)*big.size + small.size - 1) / small.size)
	if time.Duration(m)*small.size == big.size {
		n, m = n+1, 0 // 1 hour 59.5 minutes is 2 hours
	}
	if m == 0 {
		return c.unit(n, big.name)
	}
	return c.unit(n, big.name) + " " + c.unit(m, small.name)
}

// human turns a message's arguments into what people read: a
// time.Duration becomes Duration's words (such messages take %s for it);
// arguments beyond the message's verbs are left out.
func (c *catalog) human(msg string, args []any) []any {
	if n := countVerbs(msg); n < len(args) {
		args = args[:n]
	}
	out := args
	for i, a := range args {
		if d, ok := a.(time.Duration); ok {
			if &out[0] == &args[0] {
				out = slices.Clone(args)
			}
			out[i] = c.Duration(d)
		}
	}
	return out
}

// UnitForms gives a page's script the forms of unit in this language
// (JSON: {"one": "%d секунда", "few": …}), for countdowns that must stay
// grammatical as the number changes (Intl.PluralRules picks the form).
func (c *catalog) UnitForms(unit string) string {
	forms := map[string]string{}
	for _, f := range []string{"zero", "one", "two", "few", "many", "other"} {
		if m, ok := c.msgs["dur."+unit+"."+f]; ok {
			forms[f] = m
		}
	}
	b, _ := json.Marshal(forms)
	return string(b)
}

// countVerbs counts msg's fmt verbs (%% is a literal, not a verb).
func countVerbs(msg string) int {
	n := 0
	for i := 0; i < len(msg)-1; i++ {
		if msg[i] == '%' {
			if msg[i+1] != '%' {
				n++
			}
			i++
		}
	}
	return n
}
