package policy

import (
	"slices"
	"testing"
	"time"
)

// previewTestPolicy is the web harness's policy: a public, a closed and an
// admins-only part of app.example.com, and a wiki open from the office.
const previewTestPolicy = `
default: two_factor
rules:
  - name: public
    hosts: [app.example.com]
    paths: ["/static/*", "/favicon.ico"]
    action: bypass
  - name: closed
    hosts: [app.example.com]
    paths: ["/closed/**"]
    action: deny
  - name: admins-only
    hosts: [app.example.com]
    paths: ["/admin/**"]
    groups: [admins]
    action: one_factor
  - name: admin-others
    hosts: [app.example.com]
    paths: ["/admin/**"]
    action: deny
  - name: app
    hosts: [app.example.com, "*.apps.example.com"]
    action: one_factor
  - name: office-wiki
    hosts: [wiki.example.com]
    networks: ["10.0.0.0/8"]
    action: bypass
  - name: wiki
    hosts: [wiki.example.com]
    action: one_factor
`

func mustParseText(t *testing.T, text string) Policy {
	t.Helper()
	p, err := Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPreviewChangeListsWhatChanges(t *testing.T) {
	compile := func(p Policy) *Compiled {
		c, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := compile(mustParseText(t, previewTestPolicy))
	p := mustParseText(t, previewTestPolicy)
	p.Rules = slices.Insert(p.Rules, 0, Rule{Name: "reports", Hosts: []string{"app.example.com"}, Paths: []string{"/reports/**"}, Methods: []string{"POST"}, Action: ActionTwoFactor, MaxAge: Duration(15 * time.Minute)})
	next := compile(p)
	pv := PreviewChange(old, next, []string{"app.example.com", "wiki.example.com"})
	if len(pv.Summary) != 1 || pv.Summary[0].From != "one_factor" || pv.Summary[0].To != "two_factor (max_age 15m0s; no remembered devices)" || pv.Summary[0].Paths != 2 {
		t.Fatalf("summary: %+v", pv.Summary)
	}
	var paths []string
	for _, c := range pv.Changes {
		if c.Host != "app.example.com" || !slices.Equal(c.Methods, []string{"POST"}) || c.Who != nil || c.FromRule != "app" || c.ToRule != "reports" {
			t.Errorf("change: %+v", c)
		}
		paths = append(paths, c.Path)
	}
	if !slices.Equal(paths, []string{"/reports", "/reports/x/y"}) {
		t.Fatalf("paths: %v", paths)
	}
	if same := PreviewChange(old, old, nil); len(same.Changes) != 0 || same.Sampled == 0 {
		t.Fatalf("no change: %+v", same)
	}
}
