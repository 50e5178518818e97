package web

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"golang.org/x/text/language"
)

// Catalogs live in i18n/<tag>.json so that a new language is one new file.
//
//go:embed i18n/*.json
var catalogFS embed.FS

// catalog is one language's messages.
type catalog struct {
	tag  language.Tag
	msgs map[string]string
	// peers are every catalogue, this one included, in the translator's
	// order: the language switcher lists them (lang.go).
	peers []*catalog
}

// T returns the message for key; a missing key shows the key itself so that a
// gap is visible (and caught by the catalog completeness test) rather than
// silently empty.
func (c *catalog) T(key string) string {
	if m, ok := c.msgs[key]; ok {
		return m
	}
	return key
}

// Tf formats a message with arguments (the catalog holds the %s verbs).
// A time.Duration argument is written for people (see Duration).
// A message may leave out arguments it has no verb for (the chooser gives
// every factor's line its detail; the app's line has no place for one).
func (c *catalog) Tf(key string, args ...any) string {
	m := c.T(key)
	return fmt.Sprintf(m, c.human(m, args)...)
}

// Lang is the BCP 47 tag used in <html lang>.
func (c *catalog) Lang() string { return c.tag.String() }

// translator picks a catalog for a request's Accept-Language.
type translator struct {
	cats    []*catalog // index 0 is the fallback (English)
	matcher language.Matcher
}

func loadTranslator() (*translator, error) {
	files, err := fs.Glob(catalogFS, "i18n/*.json")
	if err != nil {
		return nil, fmt.Errorf("list message catalogs: %w", err)
	}
	sort.Slice(files, func(i, j int) bool {
		// English first: it is the fallback the matcher returns on no match.
		return strings.HasSuffix(files[i], "/en.json") && !strings.HasSuffix(files[j], "/en.json")
	})
	tr := &translator{}
	tags := make([]language.Tag, 0, len(files))
	for _, f := range files {
		raw, err := catalogFS.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		c := &catalog{}
		if c.msgs, err = parseCatalog(raw); err != nil {
			return nil, fmt.Errorf("parse %s: %w", f, err)
		}
		name := strings.TrimSuffix(path.Base(f), ".json")
		tag, err := language.Parse(name)
		if err != nil {
			return nil, fmt.Errorf("catalog %s: %q is not a language tag: %w", f, name, err)
		}
		c.tag = tag
		tr.cats = append(tr.cats, c)
		tags = append(tags, tag)
	}
	if len(tr.cats) == 0 || tr.cats[0].tag != language.English {
		return nil, fmt.Errorf("the English catalog i18n/en.json is missing")
	}
	tr.matcher = language.NewMatcher(tags)
	for _, c := range tr.cats {
		c.peers = tr.cats
	}
	return tr, nil
}

// parseCatalog reads one flat JSON object of strings. A key written twice is
// an error rather than the later one silently winning: it is how two
// changes adding the same message show up.
func parseCatalog(raw []byte) (map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("want one JSON object of messages")
	}
	msgs := map[string]string{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		var msg string
		if err := dec.Decode(&msg); err != nil {
			return nil, fmt.Errorf("message %q: %w", key, err)
		}
		if _, dup := msgs[key]; dup {
			return nil, fmt.Errorf("message %q is written twice", key)
		}
		msgs[key] = msg
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return msgs, nil
}

// pick chooses the catalog for an Accept-Language header value.
func (t *translator) pick(acceptLanguage string) *catalog {
	if acceptLanguage == "" {
		return t.cats[0]
	}
	prefs, _, err := language.ParseAcceptLanguage(acceptLanguage)
	if err != nil || len(prefs) == 0 {
		return t.cats[0]
	}
	_, idx, conf := t.matcher.Match(prefs...)
	if conf == language.No {
		return t.cats[0]
	}
	return t.cats[idx]
}
