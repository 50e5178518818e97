package web

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// The admin page in headless Chromium: the step-up with a security key,
// the rules table, inline validation while typing, the preview of a
// pending change, saving, explain, rollback from the history and an
// enrolment link from the user page — all through the page's own JS.

const browserAdminPolicy = `
default: one_factor
rules:
  - name: public
    hosts: [localhost]
    paths: ["/public", "/public/**"]
    action: bypass
  - name: admin-area
    hosts: [localhost]
    paths: ["/admin/**"]
    action: two_factor
`

// waitJS polls a JavaScript predicate until it holds.
func waitJS(t *testing.T, p *browsertest.Page, what, js string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var ok bool
		p.EvalInto(t, &ok, js, args...)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func visibleWith(id, text string) string {
	return `() => { const e = document.getElementById(` + "`" + id + "`" + `); return !!e && !e.hidden && e.textContent.includes(` + "`" + text + "`" + `); }`
}

func TestBrowserAdminPage(t *testing.T) {
	b := browser.Get(t)
	h, env := newAdminHarness(t, browserAdminPolicy)
	ctx := context.Background()

	p := b.NewPage(t, h.origin+"/public")
	p.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"})
	h.enrolInBrowser(t, p, testUser, testPassword, "security_key")

	// Enrolling proved no second factor: the admin area asks for the key.
	p.Navigate(t, h.origin+"/.keygate/admin")
	waitExact(t, p, "/.keygate/second-factor")
	p.Navigate(t, h.origin+"/.keygate/second-factor/webauthn?rd="+url.QueryEscape("/.keygate/admin"))
	p.Click(t, "#webauthn-start")
	waitExact(t, p, "/.keygate/admin")
	if table := p.Text(t, "#rules-table"); !strings.Contains(table, "admin-area") || !strings.Contains(table, "two_factor") {
		t.Fatalf("rules table: %q", table)
	}

	setYAML := func(text string) {
		p.Eval(t, `(v) => { const e = document.getElementById("policy-yaml"); e.value = v; e.dispatchEvent(new Event("input")); }`, text)
	}
	// A mistake is named while typing, with its rule.
	setYAML(browserAdminPolicy + "  - name: reports\n    hosts: [localhost]\n    paths: [\"/reports/**\"]\n    action: two_factor\n    factors: [sms]\n")
	waitJS(t, p, "the problem list", visibleWith("policy-problems", "rules[2].factors[0]"))
	if msg := p.Text(t, "#policy-problems"); !strings.Contains(msg, "reports") || !strings.Contains(msg, "unknown factor") {
		t.Fatalf("problems: %q", msg)
	}
	// Fixed, the preview says what changes.
	setYAML(strings.Replace(browserAdminPolicy, "  - name: admin-area", "  - name: reports\n    hosts: [localhost]\n    paths: [\"/reports/**\"]\n    action: two_factor\n  - name: admin-area", 1))
	waitJS(t, p, "the preview", visibleWith("policy-preview", "two_factor"))
	if sum := p.Text(t, "#preview-summary"); !strings.Contains(sum, "go from one_factor to two_factor") {
		t.Fatalf("preview summary: %q", sum)
	}
	if rows := p.Text(t, "#preview-table"); !strings.Contains(rows, "/reports") {
		t.Fatalf("preview rows: %q", rows)
	}
	p.Fill(t, "#policy-comment", "reports need a key")
	p.Click(t, "#policy-save")
	p.WaitURL(t, func(u string) bool { return strings.Contains(u, "saved=2") })
	if table := p.Text(t, "#rules-table"); !strings.Contains(table, "reports") {
		t.Fatalf("rules table after saving: %q", table)
	}
	cur, _ := env.policies.Current(ctx)
	if cur.Version != 2 || cur.Author != testUser || cur.Comment != "reports need a key" {
		t.Fatalf("stored: %+v", cur)
	}

	// Test a request.
	p.Fill(t, "#ex-url", h.origin+"/reports/q3")
	p.Fill(t, "#ex-user", "bob")
	p.Click(t, "#explain-form button[type=submit]")
	waitJS(t, p, "the explanation", visibleWith("explain-out", "decision: challenge"))
	if out := p.Text(t, "#explain-out"); !strings.Contains(out, "rules[1] reports (two_factor): matched") || !strings.Contains(out, "missing: a second factor") {
		t.Fatalf("explanation: %q", out)
	}

	// History: the diff of version 2, then version 1 back (two clicks).
	p.Click(t, "button[data-diff='2']")
	waitJS(t, p, "the diff", visibleWith("history-diff", "+  - name: reports"))
	p.Click(t, "button[data-restore='1']")
	waitJS(t, p, "the confirmation", `() => document.getElementById("history-status").textContent.includes("version 1")`)
	p.Click(t, "button[data-restore='1']")
	p.WaitURL(t, func(u string) bool { return strings.Contains(u, "restored=3") })
	cur, _ = env.policies.Current(ctx)
	v1, _ := env.policies.Version(ctx, 1)
	if cur.Version != 3 || cur.RestoredFrom != 1 || cur.YAML != v1.YAML {
		t.Fatalf("after restore: %+v", cur)
	}
	if hist := p.Text(t, "#history-table"); !strings.Contains(hist, "copy of version 1") || !strings.Contains(hist, "reports need a key") {
		t.Fatalf("history table: %q", hist)
	}

	// A user's page: an enrolment link for bob.
	p.Navigate(t, h.origin+"/.keygate/admin/users/bob")
	p.Click(t, "button[data-action='enroll-link']")
	waitJS(t, p, "the link", `() => { const e = document.getElementById("enroll-link"); return !!e && e.textContent.includes("/.keygate/enroll/"); }`)
	if audit, _ := env.audit.Recent(ctx, 10); len(audit) != 3 || audit[0].Action != "user.enroll_link" || audit[0].Admin != testUser {
		t.Fatalf("audit: %+v", audit)
	}
}
