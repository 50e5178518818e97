package web

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// pluralFormKey is a plural form only some languages have.
var pluralFormKey = regexp.MustCompile(`^dur\.[a-z]+\.(zero|two|few|many)$`)

// verbRe finds fmt verbs in a message (%s, %d, %v, %q; %% is a literal).
var verbRe = regexp.MustCompile(`%%|%[-+# 0-9.]*[sdvqfx]`)

func verbsOf(msg string) []string {
	var out []string
	for _, v := range verbRe.FindAllString(msg, -1) {
		if v != "%%" {
			out = append(out, v[len(v)-1:])
		}
	}
	return out
}

// Every catalogue message is shown rendered, never with its verbs: the
// languages agree on each message's verbs; every message with verbs renders
// without a fmt complaint when given arguments; and no page or handler
// shows such a message through T (which leaves its verbs in place) — the
// class of "You can request a new code in %d seconds." on the security page.
func TestEveryMessageIsRendered(t *testing.T) {
	tr, err := loadTranslator()
	if err != nil {
		t.Fatal(err)
	}
	en := tr.cats[0]
	withVerbs := map[string]bool{}
	for _, c := range tr.cats {
		for k, m := range c.msgs {
			if _, inEnglish := en.msgs[k]; !inEnglish && pluralFormKey.MatchString(k) {
				// Russian's few/many forms have no English twin.
			} else if got, want := verbsOf(m), verbsOf(en.msgs[k]); !slices.Equal(got, want) {
				t.Errorf("%s %q has verbs %v, English has %v", c.Lang(), k, got, want)
			}
			vs := verbsOf(m)
			if len(vs) == 0 {
				continue
			}
			withVerbs[k] = true
			args := make([]any, len(vs))
			for i, v := range vs {
				switch v {
				case "d":
					args[i] = 3
				default:
					args[i] = "x"
				}
			}
			if out := c.Tf(k, args...); strings.Contains(out, "%!") || len(verbsOf(out)) != 0 {
				t.Errorf("%s %q renders as %q", c.Lang(), k, out)
			}
		}
	}

	// Where messages are shown: templates ({{.T.T "key"}}, or a key built
	// with printf) and Go (T("key"), T("prefix." + kind + ".suffix")).
	// A message in a data- attribute is the page script's to fill in
	// (the admin editor's counts, the resend countdown): not shown as is.
	tmplLit := regexp.MustCompile(`(data-[a-z-]+="\{\{)?\$?\.T\.T "([^"]+)"`)
	tmplPrintf := regexp.MustCompile(`(data-[a-z-]+="\{\{)?\$?\.T\.T \(printf "([^"]+)"`)
	goLit := regexp.MustCompile(`\.T\("([^"]+)"\)`)
	goConcat := regexp.MustCompile(`\.T\(("[^"]*"(?:\s*\+\s*(?:[A-Za-z_.()]+|"[^"]*"))+)\)`)
	shownBy := func(pattern string) []string {
		re := regexp.MustCompile("^" + pattern + "$")
		var keys []string
		for k := range withVerbs {
			if re.MatchString(k) {
				keys = append(keys, k)
			}
		}
		return keys
	}
	scanned := 0
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (path == "testdata" || path == "static") {
			return filepath.SkipDir
		}
		isTmpl := strings.HasSuffix(path, ".html")
		isGo := strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go")
		if !isTmpl && !isGo {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		src := string(raw)
		scanned++
		var found []string
		if isTmpl {
			for _, m := range tmplLit.FindAllStringSubmatch(src, -1) {
				if m[1] == "" && withVerbs[m[2]] {
					found = append(found, m[2])
				}
			}
			for _, m := range tmplPrintf.FindAllStringSubmatch(src, -1) {
				if m[1] == "" {
					found = append(found, shownBy(strings.ReplaceAll(regexp.QuoteMeta(m[2]), "%s", "[^.]+"))...)
				}
			}
		} else {
			for _, m := range goLit.FindAllStringSubmatch(src, -1) {
				if withVerbs[m[1]] {
					found = append(found, m[1])
				}
			}
			for _, m := range goConcat.FindAllStringSubmatch(src, -1) {
				var pat strings.Builder
				for _, part := range regexp.MustCompile(`\s*\+\s*`).Split(m[1], -1) {
					if strings.HasPrefix(part, `"`) {
						pat.WriteString(regexp.QuoteMeta(strings.Trim(part, `"`)))
					} else {
						pat.WriteString("[^.]+")
					}
				}
				found = append(found, shownBy(pat.String())...)
			}
		}
		for _, k := range found {
			t.Errorf("%s shows %q, which has verbs, without its arguments (use Tf)", path, k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 20 || len(withVerbs) < 20 {
		t.Fatalf("scanned %d files and %d messages with verbs: the scan is not looking at the portal", scanned, len(withVerbs))
	}
	// The scanner itself catches both forms.
	if len(shownBy(`factor\.[^.]+\.resend_in`)) == 0 {
		t.Fatal("no resend_in message with verbs: the patterns are stale")
	}
}
