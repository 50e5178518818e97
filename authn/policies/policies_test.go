package policies

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/policy"
)

// openStore opens a real Badger store in dir, closed when the test ends.
func openStore(t testing.TB, dir string) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(badgerstore.Options{Path: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustParsePolicy(t *testing.T, text string) policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(text))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return p
}

const storeV1 = `
default: two_factor
rules:
  - name: public
    hosts: [app.example.com]
    paths: ["/static/**"]
    action: bypass
  - name: app
    hosts: [app.example.com]
    action: one_factor
`

func newTestPolicies(t *testing.T, kv KV, c *clock) (*Store, *policy.Holder) {
	t.Helper()
	h := &policy.Holder{}
	return New(kv, h, Options{Now: c.Now, Logger: quietLogger()}), h
}

func decide(h *policy.Holder, path string) string {
	return h.Load().Evaluate(policy.Request{Host: "app.example.com", Path: path, Method: "GET"},
		policy.Subject{Authenticated: true, User: "bob"}, time.Now()).Action
}

func TestPolicyStoreFirstStartThenStoreWins(t *testing.T) {
	dir := t.TempDir()
	kv := openStore(t, dir)
	c := newClock()
	ps, h := newTestPolicies(t, kv, c)
	ctx := context.Background()

	v, created, err := ps.Load(ctx, mustParsePolicy(t, storeV1), "config")
	if err != nil || !created || v.Version != 1 || v.Author != "config" {
		t.Fatalf("first load: %v %v %+v", err, created, v)
	}
	if got := decide(h, "/x"); got != policy.ActionOneFactor {
		t.Fatalf("holder after first load: %s", got)
	}
	p2 := mustParsePolicy(t, strings.Replace(storeV1, "action: one_factor", "action: two_factor", 1))
	if _, err := ps.Update(ctx, p2, 1, "alice", "tighten"); err != nil {
		t.Fatal(err)
	}
	// A restart with the configuration's (old) policy: the store wins.
	_ = kv.Close()
	kv = openStore(t, dir)
	ps, h = newTestPolicies(t, kv, c)
	v, created, err = ps.Load(ctx, mustParsePolicy(t, storeV1), "config")
	if err != nil || created || v.Version != 2 || v.Author != "alice" || v.Comment != "tighten" {
		t.Fatalf("second load: %v %v %+v", err, created, v)
	}
	if got := decide(h, "/x"); got != policy.ActionTwoFactor {
		t.Fatalf("holder after restart: %s", got)
	}
}

func TestPolicyStoreRefusesBadPolicyAndKeepsEverything(t *testing.T) {
	kv := openStore(t, t.TempDir())
	c := newClock()
	h := &policy.Holder{}
	guard := func(p policy.Policy) policy.ValidationErrors {
		var out policy.ValidationErrors
		for i, r := range p.Rules {
			if r.Name == "forbidden" {
				out = append(out, policy.FieldError{Path: fmt.Sprintf("rules[%d].name", i), Message: "guarded"})
			}
		}
		return out
	}
	ps := New(kv, h, Options{Now: c.Now, Guard: guard})
	ctx := context.Background()
	if _, _, err := ps.Load(ctx, mustParsePolicy(t, storeV1), "config"); err != nil {
		t.Fatal(err)
	}
	before := h.Load()
	bad := mustParsePolicy(t, `
rules:
  - name: a
    factors: [sms]
    action: two_factor
  - name: a
    networks: ["10.0.0.0/33"]
    action: one_factor
  - name: forbidden
    paths: ["/x/**/**y"]
    action: bypass
`)
	_, err := ps.Update(ctx, bad, 1, "mallory", "")
	var ve policy.ValidationErrors
	if !errors.As(err, &ve) {
		t.Fatalf("bad policy: %v", err)
	}
	paths := map[string]bool{}
	for _, fe := range ve {
		paths[fe.Path] = true
	}
	for _, want := range []string{"rules[0].factors[0]", "rules[1].name", "rules[1].networks[0]", "rules[2].name"} {
		if !paths[want] {
			t.Errorf("problem %s not listed: %v", want, ve)
		}
	}
	if h.Load() != before {
		t.Fatal("a refused policy replaced the running one")
	}
	hist, err := ps.History(ctx)
	if err != nil || len(hist) != 1 {
		t.Fatalf("history after a refused update: %v %+v", err, hist)
	}
}

func TestPolicyStoreConflictAndUnchanged(t *testing.T) {
	kv := openStore(t, t.TempDir())
	ps, h := newTestPolicies(t, kv, newClock())
	ctx := context.Background()
	if _, _, err := ps.Load(ctx, mustParsePolicy(t, storeV1), "config"); err != nil {
		t.Fatal(err)
	}
	p := mustParsePolicy(t, storeV1)
	p.Rules[1].Action = policy.ActionTwoFactor
	if _, err := ps.Update(ctx, p, 1, "alice", "first"); err != nil {
		t.Fatal(err)
	}
	q := mustParsePolicy(t, storeV1)
	q.Rules[1].Action = policy.ActionDeny
	_, err := ps.Update(ctx, q, 1, "bob", "second")
	var conflict *ConflictError
	if !errors.As(err, &conflict) || conflict.Current != 2 || !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	if got := decide(h, "/x"); got != policy.ActionTwoFactor {
		t.Fatalf("the first admin's change was lost: %s", got)
	}
	v, err := ps.Update(ctx, p, 2, "alice", "again")
	if err != nil || !v.Unchanged || v.Version != 2 {
		t.Fatalf("same rules again: %v %+v", err, v)
	}
}

func TestPolicyStoreConcurrentWritersOneWins(t *testing.T) {
	kv := openStore(t, t.TempDir())
	ps, _ := newTestPolicies(t, kv, newClock())
	ctx := context.Background()
	if _, _, err := ps.Load(ctx, mustParsePolicy(t, storeV1), "config"); err != nil {
		t.Fatal(err)
	}
	// Two Policies over one store: the in-process lock does not serialise
	// them, only the store's compare-and-swap does.
	other, _ := newTestPolicies(t, kv, newClock())
	var wg sync.WaitGroup
	results := make([]error, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := mustParsePolicy(t, storeV1)
			p.Rules[1].Name = fmt.Sprintf("app-%d", i)
			target := ps
			if i%2 == 1 {
				target = other
			}
			_, results[i] = target.Update(ctx, p, 1, fmt.Sprintf("admin%d", i), "")
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range results {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrConflict):
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d writers won from the same version", won)
	}
	hist, _ := ps.History(ctx)
	if len(hist) != 2 {
		t.Fatalf("history: %+v", hist)
	}
}

func TestPolicyStoreRollbackRestoresExactRules(t *testing.T) {
	kv := openStore(t, t.TempDir())
	c := newClock()
	ps, h := newTestPolicies(t, kv, c)
	ctx := context.Background()
	v1, _, err := ps.Load(ctx, mustParsePolicy(t, storeV1), "config")
	if err != nil {
		t.Fatal(err)
	}
	p := mustParsePolicy(t, storeV1)
	p.Rules = append(p.Rules, policy.Rule{Name: "wiki", Hosts: []string{"wiki.example.com"}, Action: policy.ActionDeny})
	p.Rules[1].Action = policy.ActionTwoFactor
	c.Advance(time.Minute)
	v2, err := ps.Update(ctx, p, 1, "alice", "tighten")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(v2.Diff, "-    action: one_factor") || !strings.Contains(v2.Diff, "+    action: two_factor") || !strings.Contains(v2.Diff, "+  - name: wiki") {
		t.Fatalf("diff of version 2:\n%s", v2.Diff)
	}
	c.Advance(time.Minute)
	v3, err := ps.Rollback(ctx, 1, 2, "bob", "")
	if err != nil {
		t.Fatal(err)
	}
	if v3.Version != 3 || v3.RestoredFrom != 1 || v3.Author != "bob" || !reflect.DeepEqual(v3.Policy, v1.Policy) || v3.YAML != v1.YAML {
		t.Fatalf("rollback: %+v", v3)
	}
	if got := decide(h, "/x"); got != policy.ActionOneFactor {
		t.Fatalf("in force after rollback: %s", got)
	}
	hist, err := ps.History(ctx)
	if err != nil || len(hist) != 3 {
		t.Fatalf("history: %v %+v", err, hist)
	}
	if hist[0].Version != 3 || !hist[0].Current || hist[0].Author != "bob" || hist[0].RestoredFrom != 1 ||
		hist[1].Author != "alice" || hist[1].Comment != "tighten" || hist[1].Added == 0 || hist[2].Author != "config" {
		t.Fatalf("history: %+v", hist)
	}
	d, err := ps.Diff(ctx, 1, 3)
	if err != nil || d != "" {
		t.Fatalf("diff of identical versions: %v %q", err, d)
	}
	if _, err := ps.Version(ctx, 9); !errors.Is(err, ErrVersionNotFound) {
		t.Fatalf("missing version: %v", err)
	}
}

// A crash between the head write and the history entry: head alone tells
// the version in force, and the entry comes back at the next start.
func TestPolicyStoreHeadSurvivesALostHistoryEntry(t *testing.T) {
	dir := t.TempDir()
	kv := openStore(t, dir)
	ps, _ := newTestPolicies(t, kv, newClock())
	ctx := context.Background()
	if _, _, err := ps.Load(ctx, mustParsePolicy(t, storeV1), "config"); err != nil {
		t.Fatal(err)
	}
	p := mustParsePolicy(t, storeV1)
	p.Default = policy.ActionDeny
	if _, err := ps.Update(ctx, p, 1, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, versionKey(2)); err != nil {
		t.Fatal(err)
	}
	if v, err := ps.Version(ctx, 2); err != nil || v.Policy.Default != policy.ActionDeny {
		t.Fatalf("version 2 from head: %v %+v", err, v)
	}
	hist, _ := ps.History(ctx)
	if len(hist) != 2 || hist[0].Version != 2 {
		t.Fatalf("history without the entry: %+v", hist)
	}
	ps2, _ := newTestPolicies(t, kv, newClock())
	if _, _, err := ps2.Load(ctx, mustParsePolicy(t, storeV1), "config"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, versionKey(2)); err != nil {
		t.Fatalf("history entry not repaired: %v", err)
	}
	if _, err := kv.Get(ctx, "policy/v/0000000003"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("load wrote a version: %v", err)
	}
}

func TestPolicyYAMLRoundTrips(t *testing.T) {
	p := mustParsePolicy(t, `
default: two_factor
rules:
  - name: hw
    hosts: ["admin.example.com", "*.ops.example.com"]
    paths: ["/**"]
    methods: [GET, POST]
    groups: [admins]
    action: two_factor
    factors: [webauthn]
    webauthn: {hardware: true, user_verification: required, synced: false}
    max_age: 15m
    trusted_device: false
`)
	text := YAML(p)
	if !strings.Contains(text, `hosts: [admin.example.com, '*.ops.example.com']`) || !strings.Contains(text, "max_age: 15m0s") {
		t.Fatalf("YAML:\n%s", text)
	}
	back, err := policy.Parse([]byte(text))
	if err != nil || !reflect.DeepEqual(back, p) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, back, p)
	}
}

func TestLineDiff(t *testing.T) {
	a := "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n"
	b := "a\nb\nC\nd\ne\nf\ng\nh\ni\nj\nk\n"
	got := LineDiff(a, b, "old", "new")
	want := "--- old\n+++ new\n@@ -1,6 +1,6 @@\n a\n b\n-c\n+C\n d\n e\n f\n@@ -8,3 +8,4 @@\n h\n i\n j\n+k\n"
	if got != want {
		t.Fatalf("LineDiff:\n%s\nwant:\n%s", got, want)
	}
	if add, del := DiffStat(got); add != 2 || del != 1 {
		t.Fatalf("DiffStat = +%d -%d", add, del)
	}
	if LineDiff(a, a, "x", "y") != "" {
		t.Fatal("equal texts have a diff")
	}
	if d := LineDiff("", "x\n", "old", "new"); d != "--- old\n+++ new\n@@ -0,0 +1,1 @@\n+x\n" {
		t.Fatalf("from empty: %q", d)
	}
}

// versionsHeard records what Events hears.
type versionsHeard struct {
	mu   sync.Mutex
	seen []int
}

func (v *versionsHeard) PolicyInForce(n int) {
	v.mu.Lock()
	v.seen = append(v.seen, n)
	v.mu.Unlock()
}

// Events hears the version put in force at Load and after every change
// stored, and nothing for a refused, conflicting or unchanged update.
func TestPolicyStoreEventsHearEveryVersionInForce(t *testing.T) {
	kv := openStore(t, t.TempDir())
	heard := &versionsHeard{}
	ps := New(kv, &policy.Holder{}, Options{Now: newClock().Now, Logger: quietLogger(), Events: heard})
	ctx := context.Background()
	if _, _, err := ps.Load(ctx, mustParsePolicy(t, storeV1), "config"); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Update(ctx, mustParsePolicy(t, "default: deny\n"), 1, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Update(ctx, mustParsePolicy(t, "default: bypass\n"), 1, "bob", ""); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	if _, err := ps.Update(ctx, policy.Policy{Default: "sometimes"}, 2, "bob", ""); err == nil {
		t.Fatal("an invalid policy was stored")
	}
	if v, err := ps.Update(ctx, mustParsePolicy(t, "default: deny\n"), 2, "bob", ""); err != nil || !v.Unchanged {
		t.Fatalf("unchanged update: %+v %v", v, err)
	}
	// A restart hears the version in force.
	again := New(kv, &policy.Holder{}, Options{Events: heard})
	if _, _, err := again.Load(ctx, policy.Policy{}, "config"); err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 2, 2}; !reflect.DeepEqual(heard.seen, want) {
		t.Fatalf("heard %v, want %v", heard.seen, want)
	}
}
