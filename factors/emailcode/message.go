package emailcode

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"

	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/factors/sentcode"
)

// The mail templates: one phrase file per language (subject, intro,
// validity, warning; each may switch on the purpose) and one layout per
// body type shared by all languages, so a translator touches one file and
// the HTML stays the same everywhere. The HTML layout is parsed with
// html/template, so the data (code, product name) is escaped for its
// context.
//
//go:embed templates/*.tmpl templates/layout.*
var templateFS embed.FS

// languages are the ones with a phrase file; the first is the fallback.
var languages = [...]string{"en", "ru"}

// mailData is what the templates see.
type mailData struct {
	Lang    string
	Product string
	Code    string
	Minutes int
	Purpose Purpose
}

type langTemplates struct {
	text *texttemplate.Template // "subject" and "text"
	html *htmltemplate.Template // "html"
}

type templates struct {
	byLang map[string]langTemplates
}

var templateFuncs = map[string]any{
	// plural picks a Russian plural form: {{plural .Minutes "минуту" "минуты" "минут"}}.
	"plural": sentcode.PluralRU,
}

// parseTemplates parses every language once per Factor (no package-level
// template state). An error here is a bug in an embedded file.
func parseTemplates() (*templates, error) {
	t := &templates{byLang: make(map[string]langTemplates, len(languages))}
	for _, lang := range languages {
		phrases := "templates/" + lang + ".tmpl"
		txt, err := texttemplate.New(lang).Funcs(templateFuncs).Option("missingkey=error").
			ParseFS(templateFS, "templates/layout.txt", phrases)
		if err != nil {
			return nil, fmt.Errorf("emailcode: templates %s: %w", lang, err)
		}
		html, err := htmltemplate.New(lang).Funcs(templateFuncs).Option("missingkey=error").
			ParseFS(templateFS, "templates/layout.html", phrases)
		if err != nil {
			return nil, fmt.Errorf("emailcode: templates %s: %w", lang, err)
		}
		t.byLang[lang] = langTemplates{text: txt, html: html}
	}
	return t, nil
}

// render builds the subject and both bodies in lang ("ru", "ru-RU" → ru;
// anything unknown → en). To is left for the caller.
func (t *templates) render(lang string, d mailData) (mail.Message, error) {
	d.Lang = pickLang(lang)
	lt := t.byLang[d.Lang]
	var subj, text, html bytes.Buffer
	if err := lt.text.ExecuteTemplate(&subj, "subject", d); err != nil {
		return mail.Message{}, fmt.Errorf("emailcode: render subject: %w", err)
	}
	if err := lt.text.ExecuteTemplate(&text, "text", d); err != nil {
		return mail.Message{}, fmt.Errorf("emailcode: render text: %w", err)
	}
	if err := lt.html.ExecuteTemplate(&html, "html", d); err != nil {
		return mail.Message{}, fmt.Errorf("emailcode: render html: %w", err)
	}
	return mail.Message{
		// One line, whatever the template's layout: a subject is a header.
		Subject: strings.Join(strings.Fields(subj.String()), " "),
		Text:    strings.TrimSpace(text.String()) + "\n",
		HTML:    html.String(),
		Lang:    d.Lang, // Content-Language: mail clients read and speak it right
	}, nil
}

// pickLang maps a language tag to one we have (English when unknown).
func pickLang(tag string) string { return sentcode.PickLang(tag, languages[:]...) }
