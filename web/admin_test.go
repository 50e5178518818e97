package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	adminsvc "github.com/keygate/keygate/authn/admin"
	"github.com/keygate/keygate/authn/policies"
	"github.com/keygate/keygate/policy"
	adminweb "github.com/keygate/keygate/web/admin"
)

// The admin area through the real harness: Badger, sessions, the policy
// store, real TOTP codes from oathtool for the admins' second factor.

// adminHook builds the harness's AdminOptions once its parts exist.
type adminHook func(h *harness, holder *policy.Holder) *AdminOptions

func (f adminHook) build(h *harness, holder *policy.Holder) *AdminOptions {
	if f == nil {
		return nil
	}
	return f(h, holder)
}

// adminEnv is the admin area's store side, for tests to look behind the API.
type adminEnv struct {
	policies *policies.Store
	audit    *activity.Audit
	holder   *policy.Holder
	service  *adminsvc.Service
}

const testAdminMaxAge = 15 * time.Minute

// harnessHosts are the harness server's protected hosts, read when asked
// (the server is built after the admin service).
type harnessHosts struct{ h *harness }

func (hh harnessHosts) Hosts() []string { return hh.h.web.Hosts() }

func newAdminHarness(t *testing.T, policyYAML string) (*harness, *adminEnv) {
	t.Helper()
	if policyYAML == "" {
		policyYAML = defaultTestPolicy
	}
	env := &adminEnv{}
	h := newHarness(t, harnessOptions{policyYAML: policyYAML, admin: func(h *harness, holder *policy.Holder) *AdminOptions {
		env.holder = holder
		env.policies = policies.New(h.kv, holder, policies.Options{
			Guard: func(p policy.Policy) policy.ValidationErrors { return adminsvc.AreaProblems(p, testAdminMaxAge) },
			Now:   h.clock.Now,
		})
		p, err := policy.Parse([]byte(policyYAML))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := env.policies.Load(context.Background(), p, "config"); err != nil {
			t.Fatalf("load policy: %v", err)
		}
		env.audit = activity.NewAudit(h.kv, h.clock.Now, nil)
		deps := adminsvc.Deps{Users: h.users, Sessions: h.sessions, Policies: env.policies, Audit: env.audit,
			Running: holder, Hosts: harnessHosts{h}, Groups: []string{"admins"}, MaxAge: testAdminMaxAge, Now: h.clock.Now}
		if h.mfa != nil {
			deps.Factors, deps.Locks = h.mfa, h.reg
		}
		env.service, err = adminsvc.New(deps)
		if err != nil {
			t.Fatal(err)
		}
		return &AdminOptions{Service: env.service}
	}})
	return h, env
}

// adminClient signs user in and gives the session a fresh second factor
// the real way: an enrolment link, then an authenticator app confirmed
// with a code from oathtool.
func (h *harness) adminClient(user, password string) *http.Client {
	h.t.Helper()
	c := h.client()
	if resp, _ := h.login(c, user, password, ""); resp.StatusCode != http.StatusOK {
		h.t.Fatalf("login %s: %d", user, resp.StatusCode)
	}
	h.redeemLink(c, user)
	h.enrolTOTP(c)
	return c
}

// api calls the admin API and decodes the answer.
func (h *harness) api(c *http.Client, method, path string, body any, opts ...reqOpt) (*http.Response, map[string]any) {
	h.t.Helper()
	raw := ""
	if body != nil {
		b, _ := json.Marshal(body)
		raw = string(b)
	}
	opts = append([]reqOpt{setHeader("Accept", "application/json"), setHeader("Content-Type", "application/json")}, opts...)
	resp, text := h.do(c, method, "http://app.example.com/.keygate/api/admin/"+path, raw, opts...)
	out := map[string]any{}
	if err := json.Unmarshal([]byte(text), &out); err != nil && resp.Header.Get("Content-Type") == "application/json; charset=utf-8" {
		h.t.Fatalf("%s %s: not JSON: %q", method, path, text)
	}
	return resp, out
}

func ifMatchV(v int) reqOpt { return setHeader("If-Match", fmt.Sprintf(`"%d"`, v)) }

func (h *harness) addAdmin(name string) {
	h.t.Helper()
	if _, err := h.users.Add(context.Background(), authn.NewUser{Username: name, Email: name + "@example.com",
		Groups: []string{"admins"}, Password: "another-admin-passphrase-3", EmailVerified: true}); err != nil {
		h.t.Fatal(err)
	}
}

func TestAdminAreaRefusesAllButFreshAdmins(t *testing.T) {
	h, _ := newAdminHarness(t, "")
	page := "http://app.example.com/.keygate/admin"

	// Nobody signed in.
	anon := h.client()
	if resp, out := h.api(anon, http.MethodGet, "policy", nil); resp.StatusCode != http.StatusUnauthorized || out["error"] != "authentication_required" {
		t.Fatalf("anonymous API: %d %v", resp.StatusCode, out)
	}
	if resp, _ := h.do(anon, http.MethodGet, page, ""); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/.keygate/login?rd=") {
		t.Fatalf("anonymous page: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// A non-admin, even with a fresh second factor.
	bob := h.adminClient("bob", "violet-harbour-lantern-9")
	if resp, out := h.api(bob, http.MethodGet, "policy", nil); resp.StatusCode != http.StatusForbidden || out["error"] != "admin_only" {
		t.Fatalf("non-admin API: %d %v", resp.StatusCode, out)
	}
	if resp, body := h.do(bob, http.MethodGet, page, ""); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Only administrators") {
		t.Fatalf("non-admin page: %d", resp.StatusCode)
	}
	if resp, _ := h.api(bob, http.MethodPut, "policy", map[string]string{"yaml": "default: bypass\n"}, ifMatchV(1)); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("non-admin PUT: %d", resp.StatusCode)
	}

	// An admin with only a password: step up.
	pw := h.client()
	h.login(pw, testUser, testPassword, "")
	resp, out := h.api(pw, http.MethodGet, "policy", nil)
	if resp.StatusCode != http.StatusUnauthorized || out["error"] != "second_factor_required" || out["max_age"] != "15m0s" {
		t.Fatalf("password-only admin API: %d %v", resp.StatusCode, out)
	}
	resp, _ = h.do(pw, http.MethodGet, page+"?q=bo", "")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/.keygate/second-factor?rd="+url.QueryEscape("/.keygate/admin?q=bo") {
		t.Fatalf("password-only admin page: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// An admin with a fresh second factor gets in.
	alice := h.client()
	h.login(alice, testUser, testPassword, "")
	h.redeemLink(alice, testUser)
	secret := h.enrolTOTP(alice)
	if resp, out := h.api(alice, http.MethodGet, "policy", nil); resp.StatusCode != 200 || resp.Header.Get("ETag") != `"1"` || out["author"] != "config" {
		t.Fatalf("admin API: %d %v", resp.StatusCode, out)
	}
	resp, body := h.do(alice, http.MethodGet, page, "")
	if resp.StatusCode != 200 || !strings.Contains(body, `id="rules-table"`) || !strings.Contains(body, "admins-only") {
		t.Fatalf("admin page: %d", resp.StatusCode)
	}

	// Sixteen minutes later the second factor is too old: refused again,
	// until the admin proves it anew.
	h.clock.Add(16 * time.Minute)
	if resp, out := h.api(alice, http.MethodGet, "policy", nil); resp.StatusCode != http.StatusUnauthorized || out["error"] != "second_factor_required" {
		t.Fatalf("stale admin API: %d %v", resp.StatusCode, out)
	}
	if resp, _ := h.do(alice, http.MethodGet, page, ""); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/.keygate/second-factor?") {
		t.Fatalf("stale admin page: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, out = h.postJSON(alice, "/.keygate/api/factors/totp/verify", map[string]any{"code": oathtool(t, secret, h.clock.Now()), "rd": "/.keygate/admin"})
	if resp.StatusCode != 200 || out["redirect"] != "/.keygate/admin" {
		t.Fatalf("step-up: %d %v", resp.StatusCode, out)
	}
	if resp, _ := h.api(alice, http.MethodGet, "policy", nil); resp.StatusCode != 200 {
		t.Fatalf("admin after step-up: %d", resp.StatusCode)
	}

	// Leaving the admin group ends admin rights at once, session or not.
	if _, err := h.users.Update(context.Background(), testUser, func(u *authn.User) error { u.Groups = []string{"dev"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if resp, _ := h.api(alice, http.MethodGet, "policy", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("former admin: %d", resp.StatusCode)
	}
}

// The acceptance test of the hot swap: while goroutines hammer a path, an
// admin changes its rule from one_factor to two_factor. Every request that
// starts after the change was answered must see the new rule, and no
// request at all may fail with a 5xx.
func TestAdminPolicyChangeUnderLoad(t *testing.T) {
	h, env := newAdminHarness(t, "")
	admin := h.adminClient(testUser, testPassword)
	bob := h.client()
	h.login(bob, "bob", "violet-harbour-lantern-9", "")
	target := "http://app.example.com/reports/q3"

	var (
		switched           atomic.Bool
		before, after, bad atomic.Int64
		fiveXX             atomic.Int64
		stop               = make(chan struct{})
		wg                 sync.WaitGroup
		mu                 sync.Mutex
		failures           []string
	)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				late := switched.Load()
				req, _ := http.NewRequest(http.MethodGet, target, nil)
				req.Header.Set("Accept", "text/html")
				resp, err := bob.Do(req)
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				resp.Body.Close()
				switch {
				case resp.StatusCode >= 500:
					fiveXX.Add(1)
				case late && resp.StatusCode == 200:
					bad.Add(1) // one factor was enough after the change
				case late && resp.StatusCode == http.StatusFound:
					after.Add(1)
				case !late && resp.StatusCode == 200:
					before.Add(1)
				}
			}
		}()
	}
	waitFor := func(n *atomic.Int64, want int64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for n.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("load did not progress: %d", n.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(&before, 100)

	cur, _ := env.policies.Current(context.Background())
	p := cur.Policy
	i := slices.IndexFunc(p.Rules, func(r policy.Rule) bool { return r.Name == "app" })
	p.Rules = slices.Insert(p.Rules, i, policy.Rule{Name: "reports", Hosts: []string{"app.example.com"}, Paths: []string{"/reports/**"}, Action: policy.ActionTwoFactor})
	resp, out := h.api(admin, http.MethodPut, "policy", map[string]any{"policy": p, "comment": "reports need a key"}, ifMatchV(1))
	if resp.StatusCode != 200 || out["version"] != float64(2) {
		t.Fatalf("PUT: %d %v", resp.StatusCode, out)
	}
	switched.Store(true)
	waitFor(&after, 100)
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d requests failed, e.g. %s", len(failures), failures[0])
	}
	if fiveXX.Load() != 0 || bad.Load() != 0 {
		t.Fatalf("during the swap: %d 5xx, %d one-factor passes after the change", fiveXX.Load(), bad.Load())
	}
	t.Logf("%d requests passed before the change, %d were challenged after it", before.Load(), after.Load())
}

func TestAdminRefusesBadPoliciesListingEveryProblem(t *testing.T) {
	h, env := newAdminHarness(t, "")
	admin := h.adminClient(testUser, testPassword)
	running := env.holder.Load()
	bad := `
default: two_factor
rules:
  - name: keys
    hosts: [app.example.com]
    action: two_factor
    factors: [sms]
  - name: office
    networks: ["10.0.0.0/33"]
    action: one_factor
  - name: api
    paths: ["/api/**x"]
    action: one_factor
  - name: keys
    hosts: [wiki.example.com]
    action: deny
  - name: open-admin
    paths: ["/.keygate/admin/**"]
    action: one_factor
`
	want := map[string]string{
		"rules[0].factors[0]":  "keys",
		"rules[1].networks[0]": "office",
		"rules[2].paths[0]":    "api",
		"rules[3].name":        "keys",
		"rules[4].paths[0]":    "open-admin",
	}
	for _, path := range []string{"policy/check", "policy"} {
		method := http.MethodPost
		if path == "policy" {
			method = http.MethodPut
		}
		resp, out := h.api(admin, method, path, map[string]string{"yaml": bad}, ifMatchV(1))
		if resp.StatusCode != http.StatusUnprocessableEntity || out["error"] != "invalid_policy" {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, out)
		}
		got := map[string]string{}
		for _, p := range out["problems"].([]any) {
			pm := p.(map[string]any)
			got[pm["path"].(string)], _ = pm["rule_name"].(string)
			if pm["path"] == "rules[4].paths[0]" && !strings.Contains(pm["message"].(string), "weakens the admin area") {
				t.Errorf("admin-area problem says %q", pm["message"])
			}
			if pm["path"] == "rules[2].paths[0]" && (pm["field"] != "paths[0]" || pm["rule_index"] != float64(2)) {
				t.Errorf("problem fields: %v", pm)
			}
		}
		for p, name := range want {
			if g, ok := got[p]; !ok || g != name {
				t.Errorf("%s: problem %s (rule %s) not listed: %v", path, p, name, got)
			}
		}
	}
	// Broken YAML: the line is named.
	resp, out := h.api(admin, http.MethodPut, "policy", map[string]string{"yaml": "default: two_factor\nrules:\n  - name: x\n    hostz: [a]\n    action: deny\n"}, ifMatchV(1))
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(out["problems"]), "line 4") {
		t.Fatalf("bad YAML: %d %v", resp.StatusCode, out)
	}
	// Nothing changed: the same compiled policy serves, history has one
	// version.
	if env.holder.Load() != running {
		t.Fatal("a refused policy replaced the running one")
	}
	resp, out = h.api(admin, http.MethodGet, "policy/versions", nil)
	if resp.StatusCode != 200 || out["current"] != float64(1) || len(out["versions"].([]any)) != 1 {
		t.Fatalf("history after refusals: %v", out)
	}
	if resp, _ := h.do(h.client(), http.MethodGet, "http://app.example.com/static/x.css", ""); resp.StatusCode != 200 {
		t.Fatalf("the running policy stopped working: %d", resp.StatusCode)
	}
}

func TestAdminConcurrentEditsSecondGets412(t *testing.T) {
	h, env := newAdminHarness(t, "")
	h.addAdmin("carol")
	alice := h.adminClient(testUser, testPassword)
	carol := h.adminClient("carol", "another-admin-passphrase-3")

	_, a := h.api(alice, http.MethodGet, "policy", nil)
	resp, c := h.api(carol, http.MethodGet, "policy", nil)
	etag := resp.Header.Get("ETag")
	aliceYAML := strings.Replace(a["yaml"].(string), "action: one_factor", "action: two_factor", 1)
	carolYAML := c["yaml"].(string) + "  - name: carol-rule\n    hosts: [carol.example.com]\n    action: deny\n"

	// No If-Match: refused, the precondition is required.
	if resp, out := h.api(carol, http.MethodPut, "policy", map[string]string{"yaml": carolYAML}); resp.StatusCode != http.StatusPreconditionRequired || out["error"] != "if_match_required" {
		t.Fatalf("PUT without If-Match: %d %v", resp.StatusCode, out)
	}
	resp, out := h.api(alice, http.MethodPut, "policy", map[string]string{"yaml": aliceYAML, "comment": "alice"}, setHeader("If-Match", etag))
	if resp.StatusCode != 200 || resp.Header.Get("ETag") != `"2"` {
		t.Fatalf("alice: %d %v", resp.StatusCode, out)
	}
	resp, out = h.api(carol, http.MethodPut, "policy", map[string]string{"yaml": carolYAML, "comment": "carol"}, setHeader("If-Match", etag))
	if resp.StatusCode != http.StatusPreconditionFailed || out["error"] != "version_mismatch" || out["current_version"] != float64(2) {
		t.Fatalf("carol from the same version: %d %v", resp.StatusCode, out)
	}
	cur, _ := env.policies.Current(context.Background())
	if cur.Version != 2 || cur.Author != testUser || cur.YAML != policies.YAML(mustParse(t, aliceYAML)) {
		t.Fatalf("alice's change was lost: %+v", cur)
	}
	// Carol, having seen alice's change, saves over it deliberately.
	if resp, _ := h.api(carol, http.MethodPut, "policy", map[string]string{"yaml": carolYAML}, ifMatchV(2)); resp.StatusCode != 200 {
		t.Fatalf("carol after looking: %d", resp.StatusCode)
	}
}

func mustParse(t *testing.T, text string) policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAdminRollbackHistoryAndAudit(t *testing.T) {
	h, env := newAdminHarness(t, "")
	h.addAdmin("carol")
	alice := h.adminClient(testUser, testPassword)
	carol := h.adminClient("carol", "another-admin-passphrase-3")
	v1, _ := env.policies.Current(context.Background())

	edit := func(c *http.Client, base int, from, to, comment string) {
		t.Helper()
		cur, _ := env.policies.Current(context.Background())
		resp, out := h.api(c, http.MethodPut, "policy", map[string]string{"yaml": strings.Replace(cur.YAML, from, to, 1), "comment": comment}, ifMatchV(base))
		if resp.StatusCode != 200 {
			t.Fatalf("edit %q: %d %v", comment, resp.StatusCode, out)
		}
	}
	edit(alice, 1, "action: bypass", "action: one_factor", "no more public assets")
	edit(carol, 2, "- name: wiki\n", "- name: wiki-all\n", "rename")
	resp, out := h.api(alice, http.MethodPost, "policy/rollback", map[string]any{"version": 1}, ifMatchV(3))
	if resp.StatusCode != 200 || out["version"] != float64(4) || out["restored_from"] != float64(1) {
		t.Fatalf("rollback: %d %v", resp.StatusCode, out)
	}
	// Exactly the rules of version 1, in force.
	resp, out = h.api(alice, http.MethodGet, "policy/versions/4", nil)
	var v4 policies.Version
	b, _ := json.Marshal(out)
	_ = json.Unmarshal(b, &v4)
	if resp.StatusCode != 200 || v4.YAML != v1.YAML || !reflect.DeepEqual(v4.Policy, v1.Policy) {
		t.Fatalf("version 4 is not version 1: %+v", v4)
	}
	if resp, _ := h.do(h.client(), http.MethodGet, "http://app.example.com/static/x.css", ""); resp.StatusCode != 200 {
		t.Fatalf("the bypass of version 1 is not in force: %d", resp.StatusCode)
	}
	// Who did what.
	_, out = h.api(carol, http.MethodGet, "policy/versions", nil)
	var hist []string
	for _, v := range out["versions"].([]any) {
		m := v.(map[string]any)
		hist = append(hist, fmt.Sprintf("%v:%v:%v", m["version"], m["author"], m["comment"]))
	}
	want := []string{"4:alice:rollback to version 1", "3:carol:rename", "2:alice:no more public assets", "1:config:first start: the policy of the configuration file"}
	if !slices.Equal(hist, want) {
		t.Fatalf("history:\n%v\nwant\n%v", hist, want)
	}
	_, out = h.api(carol, http.MethodGet, "policy/diff?from=2&to=3", nil)
	if d := out["diff"].(string); !strings.Contains(d, "-  - name: wiki\n") || !strings.Contains(d, "+  - name: wiki-all\n") {
		t.Fatalf("diff 2→3:\n%s", d)
	}
	resp, body := h.do(carol, http.MethodGet, "http://app.example.com/.keygate/admin", "")
	if resp.StatusCode != 200 || !strings.Contains(body, "no more public assets") || !strings.Contains(body, "copy of version 1") {
		t.Fatalf("admin page history: %d", resp.StatusCode)
	}

	// The audit log: every change with admin, time and address.
	_, out = h.api(alice, http.MethodGet, "audit", nil)
	var actions []string
	for _, e := range out["entries"].([]any) {
		m := e.(map[string]any)
		if m["ip"] != "127.0.0.1" || m["via"] != "web" || m["at"] == "" {
			t.Errorf("audit entry lacks who/where: %v", m)
		}
		actions = append(actions, fmt.Sprintf("%v:%v", m["admin"], m["action"]))
	}
	if want := []string{"alice:policy.rollback", "carol:policy.update", "alice:policy.update"}; !slices.Equal(actions, want) {
		t.Fatalf("audit: %v, want %v", actions, want)
	}
	resp, raw := h.do(alice, http.MethodGet, "http://app.example.com/.keygate/api/admin/audit?format=jsonl", "")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/jsonl") {
		t.Fatalf("audit export: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(strings.NewReader(raw))
	lines := 0
	for sc.Scan() {
		var e activity.AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Admin == "" {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		lines++
	}
	if lines != 3 {
		t.Fatalf("audit export has %d lines", lines)
	}
}

// The admin API's explain, the CLI's explain (web.ExplainPolicy, which
// `keygate policy explain` calls) and the live proxy agree on a table of
// requests.
func TestAdminExplainMatchesTheProxy(t *testing.T) {
	h, env := newAdminHarness(t, defaultTestPolicy+`
  - name: local-only
    hosts: [x.apps.example.com]
    paths: ["/local/**"]
    networks: ["127.0.0.0/8"]
    action: bypass
`)
	alice := h.adminClient(testUser, testPassword) // password + totp, groups admins, dev
	// Put "/fresh/**" (two factors, at most 5 minutes old) in front.
	cur, _ := env.policies.Current(context.Background())
	p := cur.Policy
	p.Rules = slices.Insert(p.Rules, 0, policy.Rule{Name: "fresh", Hosts: []string{"app.example.com"}, Paths: []string{"/fresh/**"}, Action: policy.ActionTwoFactor, MaxAge: policy.Duration(5 * time.Minute)})
	if resp, out := h.api(alice, http.MethodPut, "policy", map[string]any{"policy": p}, ifMatchV(1)); resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %v", resp.StatusCode, out)
	}
	bob := h.client()
	h.login(bob, "bob", "violet-harbour-lantern-9", "")
	anon := h.client()

	type who struct {
		c       *http.Client
		user    string
		factors []string
	}
	people := map[string]who{"anon": {anon, "", nil}, "bob": {bob, "bob", nil}, "alice": {alice, testUser, []string{"totp"}}}
	rows := []struct{ who, method, url string }{
		{"anon", "GET", "http://app.example.com/static/site.css"},
		{"anon", "GET", "http://app.example.com/"},
		{"anon", "GET", "http://app.example.com/closed/x"},
		{"bob", "GET", "http://app.example.com/"},
		{"bob", "GET", "http://app.example.com/admin/panel"},
		{"alice", "GET", "http://app.example.com/admin/panel"},
		{"bob", "POST", "http://app.example.com/fresh/report"},
		{"alice", "POST", "http://app.example.com/fresh/report"},
		{"bob", "GET", "http://wiki.example.com/page"},
		{"anon", "GET", "http://wiki.example.com/page"},
		{"anon", "GET", "http://x.apps.example.com/local/a"},
		{"anon", "DELETE", "http://x.apps.example.com/other"},
		{"bob", "GET", "http://other.example.org/"},
	}
	outcomeOf := func(status int) string {
		switch status {
		case 200:
			return "allow"
		case http.StatusFound, http.StatusSeeOther, http.StatusUnauthorized:
			return "challenge"
		case http.StatusForbidden:
			return "deny"
		}
		return fmt.Sprintf("status %d", status)
	}
	check := func(age string) {
		t.Helper()
		for _, r := range rows {
			w := people[r.who]
			resp, _ := h.do(w.c, r.method, r.url, "")
			live := outcomeOf(resp.StatusCode)
			if resp.StatusCode == http.StatusMisdirectedRequest {
				live = "unprotected"
			}
			in := policy.ExplainInput{User: w.user, Method: r.method, URL: r.url, SourceIP: "127.0.0.1", Factors: w.factors, FactorAge: age}
			resp, out := h.api(alice, http.MethodPost, "explain", in)
			if resp.StatusCode != 200 {
				t.Fatalf("explain %v: %d %v", r, resp.StatusCode, out)
			}
			api := out["decision"].(map[string]any)["outcome"].(string)
			if out["protected"] == false {
				api = "unprotected"
			}
			// The CLI's path: the same function on the compiled policy in
			// force, groups from the store as the CLI fills them in.
			if w.user != "" {
				u, _ := h.users.Get(context.Background(), w.user)
				in.Groups = u.Groups
			}
			e, err := policy.ExplainRequest(env.holder.Load(), in, h.clock.Now(), nil)
			if err != nil {
				t.Fatal(err)
			}
			cli := e.Decision.Outcome.String()
			if api == "unprotected" {
				cli = api
			}
			if live != api || api != cli {
				t.Errorf("%s %s %s (factors %s old): proxy %s, API %s, CLI %s\n%s", r.who, r.method, r.url, age, live, api, cli, out["text"])
			}
		}
	}
	check("0s")
	// Ten minutes on, the fresh rule wants the factor again: all three
	// say so.
	h.clock.Add(10 * time.Minute)
	check("10m")
	_, out := h.api(alice, http.MethodPost, "explain", policy.ExplainInput{User: "bob", URL: "http://app.example.com/admin/x"})
	if !strings.Contains(out["text"].(string), "rules[3] admins-only (one_factor): no: user bob has no groups") {
		t.Fatalf("explain text: %s", out["text"])
	}
	if resp, out := h.api(alice, http.MethodPost, "explain", policy.ExplainInput{URL: "http://app.example.com/a/../b"}); resp.StatusCode != http.StatusBadRequest || !strings.Contains(out["detail"].(string), "dot_segment") {
		t.Fatalf("dot segments: %d %v", resp.StatusCode, out)
	}
}

func TestAdminUserManagement(t *testing.T) {
	h, env := newAdminHarness(t, "")
	ctx := context.Background()
	alice := h.adminClient(testUser, testPassword)
	bob := h.adminClient("bob", "violet-harbour-lantern-9") // bob has a TOTP and a session

	_, out := h.api(alice, http.MethodGet, "users?q=BOB", nil)
	if users := out["users"].([]any); len(users) != 1 || users[0].(map[string]any)["username"] != "bob" {
		t.Fatalf("search: %v", out)
	}
	_, out = h.api(alice, http.MethodGet, "users", nil)
	if len(out["users"].([]any)) != 2 {
		t.Fatalf("list: %v", out)
	}
	resp, out := h.api(alice, http.MethodGet, "users/bob", nil)
	factors, sessions := out["factors"].([]any), out["sessions"].([]any)
	if resp.StatusCode != 200 || len(factors) != 1 || factors[0].(map[string]any)["kind"] != "totp" || len(sessions) != 1 {
		t.Fatalf("bob: %d %v", resp.StatusCode, out)
	}
	if f := sessions[0].(map[string]any)["factors"].([]any); !slices.Contains(f, any("totp")) {
		t.Fatalf("bob's session factors: %v", f)
	}
	if resp, body := h.do(alice, http.MethodGet, "http://app.example.com/.keygate/admin/users/bob", ""); resp.StatusCode != 200 || !strings.Contains(body, "bob@example.com") || !strings.Contains(body, `id="factors-table"`) {
		t.Fatalf("user page: %d", resp.StatusCode)
	}
	if resp, _ := h.api(alice, http.MethodGet, "users/nobody", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown user: %d", resp.StatusCode)
	}

	// Disable ends bob's sessions at once; enable lets him sign in again.
	if resp, out := h.api(alice, http.MethodPost, "users/bob/disable", nil); resp.StatusCode != 200 || out["sessions_ended"] != float64(1) {
		t.Fatalf("disable: %d %v", resp.StatusCode, out)
	}
	if resp, _ := h.do(bob, http.MethodGet, "http://app.example.com/x", ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("disabled user's session: %d", resp.StatusCode)
	}
	if resp, _ := h.login(h.client(), "bob", "violet-harbour-lantern-9", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("disabled user signed in: %d", resp.StatusCode)
	}
	if resp, _ := h.api(alice, http.MethodPost, "users/bob/enable", nil); resp.StatusCode != 200 {
		t.Fatalf("enable: %d", resp.StatusCode)
	}
	bob = h.client()
	if resp, _ := h.login(bob, "bob", "violet-harbour-lantern-9", ""); resp.StatusCode != 200 {
		t.Fatalf("enabled user: %d", resp.StatusCode)
	}
	// An admin cannot lock themselves out from here.
	if resp, out := h.api(alice, http.MethodPost, "users/alice/disable", nil); resp.StatusCode != http.StatusConflict || out["error"] != "not_on_yourself" {
		t.Fatalf("self-disable: %d %v", resp.StatusCode, out)
	}

	// Reset: factors gone, sessions ended.
	if resp, out := h.api(alice, http.MethodPost, "users/bob/reset-factors", nil); resp.StatusCode != 200 || out["removed"] != float64(1) {
		t.Fatalf("reset: %d %v", resp.StatusCode, out)
	}
	if creds, _ := h.mfa.Credentials(ctx, "bob"); len(creds) != 0 {
		t.Fatalf("credentials after reset: %v", creds)
	}
	if resp, _ := h.do(bob, http.MethodGet, "http://app.example.com/x", ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("session after reset: %d", resp.StatusCode)
	}
	// A new enrolment link works for bob.
	resp, out = h.api(alice, http.MethodPost, "users/bob/enroll-link", map[string]string{"ttl": "1h"})
	link, _ := out["url"].(string)
	if resp.StatusCode != 200 || !strings.HasPrefix(link, "http://app.example.com/.keygate/enroll/") {
		t.Fatalf("enrol link: %d %v", resp.StatusCode, out)
	}
	bob = h.client()
	h.login(bob, "bob", "violet-harbour-lantern-9", "")
	token := link[strings.LastIndex(link, "/")+1:]
	if resp, _ := h.postForm(bob, "/.keygate/enroll", "token", token); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("redeem the admin's link: %d", resp.StatusCode)
	}

	// Lock bob out with wrong passwords, then unlock.
	for range 6 {
		h.login(h.client(), "bob", "wrong-password-guess-1", "")
	}
	_, out = h.api(alice, http.MethodGet, "users/bob", nil)
	if locks := out["lockouts"].([]any); len(locks) == 0 {
		t.Fatalf("no lockout shown: %v", out["lockouts"])
	}
	if resp, out := h.api(alice, http.MethodPost, "users/bob/unlock", nil); resp.StatusCode != 200 || out["was_locked"] != true {
		t.Fatalf("unlock: %d %v", resp.StatusCode, out)
	}
	if resp, _ := h.login(h.client(), "bob", "violet-harbour-lantern-9", ""); resp.StatusCode != 200 {
		t.Fatalf("after unlock: %d", resp.StatusCode)
	}

	// Every action is in the audit log, by alice, from her address.
	entries, err := env.audit.Recent(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		if e.Admin != testUser || e.IP != "127.0.0.1" || e.Target != "bob" {
			t.Errorf("audit entry: %+v", e)
		}
		got = append(got, e.Action)
	}
	want := []string{activity.AuditUnlock, activity.AuditEnrollLink, activity.AuditResetFactors, activity.AuditUserEnable, activity.AuditUserDisable}
	if !slices.Equal(got, want) {
		t.Fatalf("audit: %v, want %v", got, want)
	}
	resp, body := h.do(alice, http.MethodGet, "http://app.example.com/.keygate/admin", "")
	if resp.StatusCode != 200 || !strings.Contains(body, "user.reset_factors") || !strings.Contains(body, `id="audit-table"`) {
		t.Fatalf("audit on the page: %d", resp.StatusCode)
	}
}

// The admin socket serves the very handler the web's admin API serves
// (Server.AdminAPI), behind its own guard: an action through it (channel
// cli, as the socket's guard names it) is the same use-case, seen in the
// web API's audit with its channel, and a bad request gets the same error
// answer on both.
func TestAdminAPIIsOneHandlerForWebAndSocket(t *testing.T) {
	h, _ := newAdminHarness(t, "")
	alice := h.adminClient(testUser, testPassword)
	api := h.web.AdminAPI()
	if api == nil {
		t.Fatal("no admin API handler")
	}
	// What the socket's guard does: the peer's OS user as the actor.
	socket := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req := httptest.NewRequest(method, "http://keygate/.keygate/api/admin/"+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req = req.WithContext(adminweb.WithActor(req.Context(), adminsvc.Actor{Name: "root", Channel: adminsvc.ChannelCLI}))
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		out := map[string]any{}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s: not JSON: %q", method, path, rec.Body.String())
		}
		return rec.Code, out
	}
	if code, out := socket(http.MethodPost, "users/bob/disable", ""); code != 200 || out["disabled"] != true {
		t.Fatalf("disable over the socket's handler: %d %v", code, out)
	}
	resp, out := h.api(alice, http.MethodGet, "audit", nil)
	entries, _ := out["entries"].([]any)
	if resp.StatusCode != 200 || len(entries) == 0 {
		t.Fatalf("audit: %d %v", resp.StatusCode, out)
	}
	if e := entries[0].(map[string]any); e["action"] != activity.AuditUserDisable || e["via"] != adminsvc.ChannelCLI || e["admin"] != "root" || e["target"] != "bob" {
		t.Fatalf("the web API's audit does not show the socket's disable: %v", e)
	}
	// One bad request, one answer (status and body) on both channels.
	for _, bad := range []struct{ method, path, body string }{
		{http.MethodPost, "users/bob/enroll-link", `{"ttl":"soon"}`},
		{http.MethodPost, "users/nobody/unlock", ``},
		{http.MethodPost, "explain", `{"url":"/relative"}`},
		{http.MethodPost, "policy/check", `{"yaml":"rules: [{name: a, hostz: [x]}]"}`},
		{http.MethodPut, "policy", `{"yaml":"default: deny"}`},
	} {
		code, viaSocket := socket(bad.method, bad.path, bad.body)
		var body any
		if bad.body != "" {
			_ = json.Unmarshal([]byte(bad.body), &body)
		}
		resp, viaWeb := h.api(alice, bad.method, bad.path, body)
		if code < 400 || code != resp.StatusCode || !reflect.DeepEqual(viaSocket, viaWeb) {
			t.Errorf("%s %s: socket %d %v, web %d %v", bad.method, bad.path, code, viaSocket, resp.StatusCode, viaWeb)
		}
	}
	// Without a guard's actor the handler refuses, whatever is asked.
	req := httptest.NewRequest(http.MethodPost, "http://keygate/.keygate/api/admin/users/bob/enable", nil)
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("no actor: %d %s", rec.Code, rec.Body)
	}
	if u, _ := h.users.Get(context.Background(), "bob"); !u.Disabled {
		t.Fatal("a request without an actor enabled bob")
	}
}

// A request no admin route takes is answered in the API's form: 404 for an
// unknown path, 405 with Allow for a known path and another method.
func TestAdminAPIUnknownRoutesAnswerJSON(t *testing.T) {
	h, _ := newAdminHarness(t, "")
	c := h.adminClient(testUser, testPassword)
	resp, out := h.api(c, http.MethodGet, "no/such/thing", nil)
	if resp.StatusCode != http.StatusNotFound || out["error"] != "no_such_route" || out["message"] == "" {
		t.Errorf("unknown path: %d %v", resp.StatusCode, out)
	}
	resp, out = h.api(c, http.MethodDelete, "policy", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || out["error"] != "method_not_allowed" || out["message"] == "" ||
		!strings.Contains(resp.Header.Get("Allow"), http.MethodPut) || !strings.Contains(resp.Header.Get("Allow"), http.MethodGet) {
		t.Errorf("wrong method: %d %v Allow=%q", resp.StatusCode, out, resp.Header.Get("Allow"))
	}
}
