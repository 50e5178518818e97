package admin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/policies"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/policy"
)

// The service against real parts: Badger in a temp dir, authn's users,
// sessions, regulator and MFA (no factors registered: enrolment links,
// resets and unlocks still run their real paths), the policy store and the
// audit log.

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixedHosts []string

func (h fixedHosts) Hosts() []string { return h }

type env struct {
	svc      *Service
	users    *authn.Users
	sessions *authn.Sessions
	policies *policies.Store
	audit    *activity.Audit
	holder   *policy.Holder
	clock    *testClock
}

const testPolicy = `
default: two_factor
rules:
  - name: public
    hosts: [app.example.com]
    paths: ["/static/**"]
    action: bypass
  - name: admins-only
    hosts: [app.example.com]
    paths: ["/admin/**"]
    groups: [admins]
    action: one_factor
  - name: app
    hosts: [app.example.com]
    action: one_factor
`

var (
	alice = Actor{Name: "alice", Channel: ChannelWeb, Address: "192.0.2.1"}
	root  = Actor{Name: "root", Channel: ChannelCLI}
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	kv, err := badgerstore.Open(badgerstore.Options{Path: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Close() })
	c := &testClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	e := &env{clock: c, holder: &policy.Holder{}}
	hasher := authn.NewHasher(authn.Argon2Params{MemoryKiB: 8 * 1024, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, 2)
	if e.sessions, err = authn.NewSessions(ctx, kv, authn.SessionOptions{IdleTimeout: time.Hour, Lifetime: 12 * time.Hour, Now: c.Now}); err != nil {
		t.Fatal(err)
	}
	reg := authn.NewRegulator(kv, authn.RegulationOptions{Now: c.Now, Logger: quiet()})
	log := activity.NewLog(kv, activity.Options{Now: c.Now, Logger: quiet()})
	e.users = authn.NewUsers(kv, authn.UserOptions{Hasher: hasher, Policy: authn.PasswordPolicy{MinLength: 12}, Now: c.Now,
		Regulator: reg, Events: log})
	mfa := authn.NewMFA(e.users, e.sessions, authn.MFAOptions{Links: authn.NewEnrollLinks(kv, c.Now), Devices: authn.NewDevices(kv, c.Now),
		Regulator: reg, Activity: log, Now: c.Now})
	e.policies = policies.New(kv, e.holder, policies.Options{Now: c.Now, Logger: quiet(),
		Guard: func(p policy.Policy) policy.ValidationErrors { return AreaProblems(p, 15*time.Minute) }})
	p, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.policies.Load(ctx, p, "config"); err != nil {
		t.Fatal(err)
	}
	e.audit = activity.NewAudit(kv, c.Now, quiet())
	e.svc, err = New(Deps{Users: e.users, Sessions: e.sessions, Factors: mfa, Locks: reg, Policies: e.policies,
		Audit: e.audit, Running: e.holder, Hosts: fixedHosts{"app.example.com"}, Groups: []string{"admins"},
		Now: c.Now, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	for _, nu := range []authn.NewUser{
		{Username: "alice", Email: "alice@example.com", Groups: []string{"admins"}, Password: "correct-horse-battery-1"},
		{Username: "bob", Email: "bob@example.com", Groups: []string{"dev"}, Password: "violet-harbour-lantern-9"},
	} {
		if _, err := e.users.Add(ctx, nu); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// signIn gives user a session.
func (e *env) signIn(t *testing.T, user string) {
	t.Helper()
	u, err := e.users.Get(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sessions.Create(context.Background(), u, policy.Proof{Kind: policy.FactorPassword, At: e.clock.Now()}, authn.Meta{IP: "198.51.100.7", UserAgent: "Firefox"}); err != nil {
		t.Fatal(err)
	}
}

// actions lists the audit log's actions, newest first.
func (e *env) actions(t *testing.T) []string {
	t.Helper()
	entries, err := e.audit.Recent(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, en := range entries {
		out = append(out, en.Action+" "+en.Target+" by "+en.Admin+" via "+en.Via)
	}
	return out
}

func TestUsersAreChangedWithTheirConsequencesAndAudited(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.signIn(t, "bob")
	e.signIn(t, "bob")

	rows, err := e.svc.ListUsers(ctx, alice, "ADMIN")
	if err != nil || len(rows) != 1 || rows[0].Username != "alice" || !rows[0].Admin {
		t.Fatalf("search: %+v %v", rows, err)
	}
	d, err := e.svc.User(ctx, alice, "bob")
	if err != nil || len(d.Sessions) != 2 || d.User.Admin || d.Sessions[0].Device == "" || !slices.Equal(d.Sessions[0].Factors, []string{"password"}) {
		t.Fatalf("bob: %+v %v", d, err)
	}

	// Disable: sessions end at once; enable ends none.
	if n, err := e.svc.SetDisabled(ctx, alice, "bob", true); err != nil || n != 2 || len(e.sessions.ListUser("bob")) != 0 {
		t.Fatalf("disable: %d %v", n, err)
	}
	if u, _ := e.users.Get(ctx, "bob"); !u.Disabled {
		t.Fatal("bob is not disabled")
	}
	if _, err := e.svc.SetDisabled(ctx, alice, "bob", false); err != nil {
		t.Fatal(err)
	}
	// Password: refused with every reason, nothing changed; then set, and
	// the sessions end.
	e.signIn(t, "bob")
	_, err = e.svc.SetPassword(ctx, root, "bob", "short")
	var weak *authn.PasswordPolicyError
	var refused *PasswordRefusedError
	if !errors.As(err, &weak) || !errors.As(err, &refused) || len(weak.Reasons) == 0 || len(e.sessions.ListUser("bob")) != 1 {
		t.Fatalf("weak password: %v", err)
	}
	if _, err := e.users.Authenticate(ctx, "bob", "violet-harbour-lantern-9"); err != nil {
		t.Fatalf("a refused password changed the old one: %v", err)
	}
	if n, err := e.svc.SetPassword(ctx, root, "bob", "a-much-better-passphrase-7"); err != nil || n != 1 {
		t.Fatalf("set password: %d %v", n, err)
	}
	// Add and delete.
	if _, err := e.svc.AddUser(ctx, root, authn.NewUser{Username: "carol", Email: "carol@example.com", Password: "another-fine-passphrase-2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AddUser(ctx, root, authn.NewUser{Username: "carol", Email: "c2@example.com", Password: "another-fine-passphrase-2"}); !errors.Is(err, authn.ErrUserExists) {
		t.Fatalf("second carol: %v", err)
	}
	if _, err := e.svc.DeleteUser(ctx, root, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.users.Get(ctx, "carol"); !errors.Is(err, authn.ErrUserNotFound) {
		t.Fatalf("carol after delete: %v", err)
	}
	want := []string{
		"user.delete carol by root via cli", "user.add carol by root via cli", "user.password bob by root via cli",
		"user.enable bob by alice via web", "user.disable bob by alice via web",
	}
	if got := e.actions(t); !slices.Equal(got, want) {
		t.Fatalf("audit:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	entries, _ := e.audit.Recent(ctx, 10)
	if last := entries[len(entries)-1]; last.IP != "192.0.2.1" || last.Details["sessions_ended"] != "2" {
		t.Fatalf("disable entry: %+v", last)
	}
}

// The bad inputs: each refused with a typed error, nothing changed and
// nothing audited.
func TestUserActionsRefusedChangeNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.signIn(t, "alice")
	if _, err := e.svc.SetDisabled(ctx, alice, "alice", true); !errors.Is(err, ErrNotOnYourself) {
		t.Fatalf("self-disable: %v", err)
	}
	if _, err := e.svc.ResetFactors(ctx, alice, "ALICE"); !errors.Is(err, ErrNotOnYourself) {
		t.Fatalf("self-reset: %v", err)
	}
	if _, err := e.svc.DeleteUser(ctx, alice, "alice"); !errors.Is(err, ErrNotOnYourself) {
		t.Fatalf("self-delete: %v", err)
	}
	if _, err := e.svc.SetDisabled(ctx, alice, "nobody", true); !errors.Is(err, authn.ErrUserNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if _, err := e.svc.SetDisabled(ctx, Actor{}, "bob", true); !errors.Is(err, ErrNoActor) {
		t.Fatalf("no actor: %v", err)
	}
	var ie *InputError
	if _, _, err := e.svc.EnrollLink(ctx, alice, "bob", 31*24*time.Hour); !errors.As(err, &ie) || ie.Field != "ttl" {
		t.Fatalf("long ttl: %v", err)
	}
	if _, err := e.svc.AuditLog(ctx, alice, 0); !errors.As(err, &ie) || ie.Field != "limit" {
		t.Fatalf("limit 0: %v", err)
	}
	if u, _ := e.users.Get(ctx, "alice"); u.Disabled || len(e.sessions.ListUser("alice")) != 1 {
		t.Fatal("a refused action changed alice")
	}
	if u, _ := e.users.Get(ctx, "bob"); u.Disabled {
		t.Fatal("an action without an actor disabled bob")
	}
	if got := e.actions(t); len(got) != 0 {
		t.Fatalf("refused actions audited: %v", got)
	}
	// The CLI's actor is an OS user: "alice" at the terminal may disable
	// the account alice.
	if _, err := e.svc.SetDisabled(ctx, Actor{Name: "alice", Channel: ChannelCLI}, "alice", true); err != nil {
		t.Fatalf("CLI disable: %v", err)
	}
}

func TestFactorActions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	token, exp, err := e.svc.EnrollLink(ctx, alice, "bob", 0)
	if err != nil || token == "" || !exp.Equal(e.clock.Now().Add(authn.DefaultEnrollLinkTTL)) {
		t.Fatalf("link: %q %v %v", token, exp, err)
	}
	if n, err := e.svc.ResetFactors(ctx, alice, "bob"); err != nil || n != 0 {
		t.Fatalf("reset: %d %v", n, err)
	}
	if cs, err := e.svc.Credentials(ctx, alice, "bob"); err != nil || len(cs) != 0 {
		t.Fatalf("credentials: %v %v", cs, err)
	}
	// Lock bob with wrong passwords; the admin sees it and ends it.
	for range 6 {
		_, _ = e.users.SignIn(ctx, "bob", "not-the-password-1", authn.Client{IP: "198.51.100.9"})
	}
	d, err := e.svc.User(ctx, alice, "bob")
	if err != nil || len(d.Lockouts) == 0 {
		t.Fatalf("no lock shown: %+v %v", d.Lockouts, err)
	}
	if was, err := e.svc.Unlock(ctx, alice, "bob"); err != nil || !was {
		t.Fatalf("unlock: %v %v", was, err)
	}
	if was, err := e.svc.Unlock(ctx, alice, "bob"); err != nil || was {
		t.Fatalf("second unlock: %v %v", was, err)
	}
	if _, err := e.users.SignIn(ctx, "bob", "violet-harbour-lantern-9", authn.Client{IP: "198.51.100.9"}); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	got := e.actions(t)
	want := []string{"user.unlock bob by alice via web", "user.unlock bob by alice via web", "user.reset_factors bob by alice via web", "user.enroll_link bob by alice via web"}
	if !slices.Equal(got, want) {
		t.Fatalf("audit: %v", got)
	}
	entries, _ := e.audit.Recent(ctx, 10)
	for _, en := range entries {
		for _, v := range en.Details {
			if strings.Contains(v, token) {
				t.Fatal("the enrolment token is in the audit log")
			}
		}
	}
	// Without second factors configured, the factor actions say so.
	bare, err := New(Deps{Users: e.users, Sessions: e.sessions, Policies: e.policies, Audit: e.audit, Running: e.holder})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bare.ResetFactors(ctx, root, "bob"); !errors.Is(err, authn.ErrFactorUnavailable) {
		t.Fatalf("no factors: %v", err)
	}
}

func TestPolicyActions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cur, err := e.svc.Policy(ctx, alice)
	if err != nil || cur.Version != 1 {
		t.Fatalf("current: %+v %v", cur, err)
	}
	strict := cur.Policy
	strict.Default = policy.ActionDeny
	strict.Rules = append([]policy.Rule{{Name: "reports", Hosts: []string{"app.example.com"}, Paths: []string{"/reports/**"}, Action: policy.ActionTwoFactor}}, strict.Rules...)

	// A check stores nothing and previews the change.
	chk, err := e.svc.CheckPolicy(ctx, alice, strict)
	if err != nil || !chk.Valid || chk.Base != 1 || !strings.Contains(chk.Diff, "+default: deny") || len(chk.Preview.Summary) == 0 {
		t.Fatalf("check: %+v %v", chk, err)
	}
	// A bad policy: every problem, typed; nothing stored.
	bad := strict
	bad.Rules = append(slices.Clone(bad.Rules), policy.Rule{Name: "sneaky", Paths: []string{"/.keygate/admin"}, Action: policy.ActionBypass},
		policy.Rule{Name: "x", Networks: []string{"10.0.0.0/33"}, Action: policy.ActionBypass})
	var ve policy.ValidationErrors
	if _, err := e.svc.CheckPolicy(ctx, alice, bad); !errors.As(err, &ve) || len(ve) != 2 {
		t.Fatalf("check of a bad policy: %v", err)
	}
	if _, err := e.svc.SavePolicy(ctx, alice, bad, 1, "no"); !errors.As(err, &ve) {
		t.Fatalf("save of a bad policy: %v", err)
	}
	v, err := e.svc.SavePolicy(ctx, alice, strict, 1, "reports need two")
	if err != nil || v.Version != 2 || v.Author != "alice" {
		t.Fatalf("save: %+v %v", v, err)
	}
	if e.holder.Load().Evaluate(policy.Request{Host: "x.example.org", Path: "/", Method: "GET"}, policy.Subject{}, e.clock.Now()).Action != policy.ActionDeny {
		t.Fatal("the saved policy is not in force")
	}
	// A stale version is refused; so is an import based on it.
	var conflict *policies.ConflictError
	if _, err := e.svc.ImportPolicy(ctx, root, cur.Policy, 1, "stale"); !errors.As(err, &conflict) || conflict.Current != 2 {
		t.Fatalf("stale import: %v", err)
	}
	if _, err := e.svc.ImportPolicy(ctx, root, strict, 2, "same"); err != nil {
		t.Fatalf("unchanged import: %v", err)
	}
	if v, err := e.svc.RollbackPolicy(ctx, root, 1, 2, ""); err != nil || v.Version != 3 || v.RestoredFrom != 1 {
		t.Fatalf("rollback: %+v %v", v, err)
	}
	if _, err := e.svc.RollbackPolicy(ctx, root, 9, 3, ""); !errors.Is(err, policies.ErrVersionNotFound) {
		t.Fatalf("rollback to nothing: %v", err)
	}
	hist, err := e.svc.PolicyHistory(ctx, alice)
	if err != nil || len(hist) != 3 || !hist[0].Current {
		t.Fatalf("history: %+v %v", hist, err)
	}
	from, to, diff, err := e.svc.PolicyDiff(ctx, alice, 0, 0)
	if err != nil || from != 2 || to != 3 || !strings.Contains(diff, "-default: deny") {
		t.Fatalf("diff %d..%d: %q %v", from, to, diff, err)
	}
	var ie *InputError
	if _, _, _, err := e.svc.PolicyDiff(ctx, alice, 0, 1); !errors.As(err, &ie) {
		t.Fatalf("diff before version 1: %v", err)
	}
	want := []string{"policy.rollback policy by root via cli", "policy.update policy by alice via web"}
	if got := e.actions(t); !slices.Equal(got, want) {
		t.Fatalf("audit: %v", got)
	}
	var buf bytes.Buffer
	if err := e.svc.ExportAudit(ctx, root, &buf); err != nil || strings.Count(buf.String(), "\n") != 2 {
		t.Fatalf("export: %q %v", buf.String(), err)
	}
}

func TestExplainUsesTheStoredGroupsAndThePolicyInForce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	x, err := e.svc.Explain(ctx, root, policy.ExplainInput{User: "alice", URL: "https://app.example.com/admin/x"})
	if err != nil || x.Decision.Outcome != policy.Allow || !slices.Equal(x.Subject.Groups, []string{"admins"}) || !x.Protected || x.Version != 1 || x.Text == "" {
		t.Fatalf("alice: %+v %v", x, err)
	}
	x, err = e.svc.Explain(ctx, root, policy.ExplainInput{User: "alice", Groups: []string{}, URL: "https://app.example.com/admin/x"})
	if err != nil || x.Decision.RuleName != "app" {
		t.Fatalf("alice without groups: %+v %v", x.Decision, err)
	}
	x, err = e.svc.Explain(ctx, root, policy.ExplainInput{User: "newcomer", URL: "https://other.example.org/"})
	if err != nil || x.Protected || x.Decision.Outcome != policy.Challenge {
		t.Fatalf("unknown user, unprotected host: %+v %v", x, err)
	}
	if _, err := e.svc.Explain(ctx, root, policy.ExplainInput{URL: "https://app.example.com/a/../b"}); !errors.Is(err, policy.ErrExplainInput) {
		t.Fatalf("dot segments: %v", err)
	}
}

func TestAreaProblems(t *testing.T) {
	no, yes := false, true
	for _, tc := range []struct {
		rule policy.Rule
		bad  bool
	}{
		{policy.Rule{Paths: []string{"/.keygate/admin"}, Action: policy.ActionOneFactor}, true},
		{policy.Rule{Paths: []string{"/.keygate/**"}, Action: policy.ActionBypass}, true},
		{policy.Rule{Paths: []string{"/.keygate/api/admin/**"}, Action: policy.ActionTwoFactor}, true}, // no max_age
		{policy.Rule{Paths: []string{"/.keygate/admin/**"}, Action: policy.ActionTwoFactor, MaxAge: policy.Duration(time.Hour)}, true},
		{policy.Rule{Paths: []string{"/.keygate/admin/**"}, Action: policy.ActionTwoFactor, MaxAge: policy.Duration(10 * time.Minute), TrustedDevice: &yes}, true},
		{policy.Rule{Paths: []string{"/.keygate/admin/**"}, Action: policy.ActionTwoFactor, MaxAge: policy.Duration(10 * time.Minute), TrustedDevice: &no}, false},
		{policy.Rule{Paths: []string{"/.keygate/admin"}, Action: policy.ActionDeny}, false},
		{policy.Rule{Paths: []string{"/**"}, Action: policy.ActionBypass}, false},
		{policy.Rule{Paths: []string{"/*/admin"}, Action: policy.ActionOneFactor}, false},
		{policy.Rule{Paths: []string{"/admin/**"}, Action: policy.ActionBypass}, false},
		{policy.Rule{Action: policy.ActionBypass}, false},
	} {
		tc.rule.Name = "r"
		ps := AreaProblems(policy.Policy{Rules: []policy.Rule{tc.rule}}, 15*time.Minute)
		if (len(ps) > 0) != tc.bad {
			t.Errorf("%v %s: problems %v", tc.rule.Paths, tc.rule.Action, ps)
		}
	}
	if _, err := Rule(nil, 0); err == nil {
		t.Fatal("a rule without admin groups")
	}
}
