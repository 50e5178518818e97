package policy

import (
	"reflect"
	"testing"
)

// EvaluateAt with a host resolved by the same policy reaches Evaluate's
// decision over the whole behaviour table, without allocating.
func TestEvaluateAtAgrees(t *testing.T) {
	for _, su := range evalSuites {
		c := compileYAML(t, su.doc)
		for _, tc := range su.cases {
			h := c.ResolveHost(tc.req.Host)
			if !h.Of(c) || h.Name() != tc.req.Host {
				t.Fatalf("%s/%s: handle of %q not c's", su.name, tc.name, tc.req.Host)
			}
			want := c.Evaluate(tc.req, tc.subj, testNow)
			if got := c.EvaluateAt(h, tc.req, tc.subj, testNow); !reflect.DeepEqual(got, want) {
				t.Errorf("%s/%s: EvaluateAt %+v, Evaluate %+v", su.name, tc.name, got, want)
			}
			if n := testing.AllocsPerRun(20, func() { c.EvaluateAt(h, tc.req, tc.subj, testNow) }); n != 0 {
				t.Errorf("%s/%s: %v allocs per EvaluateAt", su.name, tc.name, n)
			}
		}
	}
}

// A handle is used only by the policy that resolved it and only for its own
// host: one kept across a policy swap, or given a request for another host,
// gives the decision of the policy asked, never of the one it came from.
func TestHostHandleIsBoundToItsPolicyAndHost(t *testing.T) {
	v1 := compileYAML(t, `
default: deny
rules:
  - {name: v1-assets, hosts: [app.example.com], paths: ["/static/**"], action: deny}
  - {name: v1-api, hosts: [app.example.com], paths: ["/api/**"], action: one_factor}
  - {name: v1-open, hosts: [app.example.com], action: bypass}
  - {name: v1-other, hosts: [other.example.com], action: one_factor}
`)
	// v2 has fewer rules: v1's candidate indices would be out of range in
	// it, or point at other rules.
	v2 := compileYAML(t, `
default: bypass
rules:
  - {name: v2-closed, hosts: [app.example.com], action: deny}
`)
	var holder Holder
	holder.Store(v1)
	h1 := holder.Load().ResolveHost("app.example.com")
	r := req("GET", "app.example.com", "/page", "")
	if d := v1.EvaluateAt(h1, r, anon, testNow); d.Outcome != Allow || d.RuleName != "v1-open" {
		t.Fatalf("v1 with its handle: %+v", d)
	}
	holder.Store(v2) // a live swap; the gate still holds h1
	pol := holder.Load()
	if h1.Of(pol) {
		t.Fatal("v1's handle claims to be v2's")
	}
	for _, path := range []string{"/page", "/static/x", "/api/y"} {
		r := req("GET", "app.example.com", path, "")
		if d := pol.EvaluateAt(h1, r, anon, testNow); d.Outcome != Deny || d.RuleName != "v2-closed" {
			t.Errorf("v2 given v1's handle, %s: %+v, want v2-closed's deny", path, d)
		}
		rs := []Reading{{Path: path}}
		if d := pol.EvaluateReadingsAt(h1, r, rs, anon, testNow); d.Outcome != Deny || d.RuleName != "v2-closed" {
			t.Errorf("v2 readings given v1's handle, %s: %+v", path, d)
		}
	}
	// The handle of another host: the request's own host decides.
	hOther := v1.ResolveHost("other.example.com")
	if d := v1.EvaluateAt(hOther, r, anon, testNow); d.RuleName != "v1-open" {
		t.Errorf("handle of another host: %+v, want v1-open", d)
	}
	// No handle, and no policy.
	if d := v1.EvaluateAt(nil, r, anon, testNow); d.RuleName != "v1-open" {
		t.Errorf("nil handle: %+v", d)
	}
	var none *Compiled
	if d := none.EvaluateAt(h1, r, anon, testNow); d.Outcome != Deny {
		t.Errorf("nil policy: %+v", d)
	}
	if d := none.EvaluateReadingsAt(none.ResolveHost("app.example.com"), r, []Reading{{Path: "/"}}, anon, testNow); d.Outcome != Deny {
		t.Errorf("nil policy, readings: %+v", d)
	}
	if (*Host)(nil).Of(v1) {
		t.Error("a nil handle is somebody's")
	}
}

// EvaluateReadingsAt agrees with EvaluateReadings for every reading,
// folded ones included (judged by the folded policy with the same
// candidate list), for exact, wildcard, host-less and unnamed hosts.
func TestEvaluateReadingsAtAgrees(t *testing.T) {
	c := compileYAML(t, `
default: two_factor
rules:
  - {name: Admin-area, hosts: [app.example.com], paths: ["/Admin/**"], action: deny}
  - {name: dev, hosts: ["*.dev.example.com"], paths: ["/Tools/**"], action: deny}
  - {name: public, paths: ["/public/**"], action: bypass}
  - {name: members, hosts: [app.example.com], methods: [GET], action: one_factor}
`)
	if c.fold == nil {
		t.Fatal("the policy has patterns that fold; the test needs the folded policy")
	}
	subj := user("alice", nil)
	for _, host := range []string{"app.example.com", "x.dev.example.com", "www.example.com", "APP.example.com"} {
		h := c.ResolveHost(host)
		for _, raw := range []string{"/admin/x", "/ADMIN/x", "/tools/y", "/Public/z", "/page", "/a%2Fb/"} {
			for _, method := range []string{"GET", "POST", "HEAD"} {
				var buf [MaxReadings]Reading
				rs, err := AppendReadings(buf[:0], raw, PathOptions{})
				if err != nil {
					t.Fatalf("%s: %v", raw, err)
				}
				r := Request{Host: host, Method: method, Overridable: method == "POST"}
				want := c.EvaluateReadings(r, rs, subj, testNow)
				if got := c.EvaluateReadingsAt(h, r, rs, subj, testNow); !reflect.DeepEqual(got, want) {
					t.Errorf("%s %s%s: At %+v, by name %+v", method, host, raw, got, want)
				}
				if n := testing.AllocsPerRun(10, func() { c.EvaluateReadingsAt(h, r, rs, subj, testNow) }); n != 0 && raw[len(raw)-1] != '/' {
					t.Errorf("%s %s%s: %v allocs", method, host, raw, n)
				}
			}
		}
	}
	// The folded policy's host index lists the same rules as the policy's:
	// what lets one candidate list serve both.
	for _, host := range []string{"app.example.com", "x.dev.example.com", "www.example.com"} {
		if a, b := c.hosts.lookup(host), c.fold.hosts.lookup(host); !reflect.DeepEqual(a, b) {
			t.Errorf("%s: %v and folded %v", host, a, b)
		}
	}
}
