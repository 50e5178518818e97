package policy

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// bigPolicy is 1,000 rules over 200 hosts: per host five rules (assets,
// API, admin area by group, office network, step-up), plus wildcard and
// host-less rules spread through the list, the way a large deployment grows.
func bigPolicy() Policy {
	var p Policy
	add := func(r Rule) {
		r.Name = fmt.Sprintf("rule-%d", len(p.Rules))
		p.Rules = append(p.Rules, r)
	}
	for i := range 195 {
		h := []string{fmt.Sprintf("app%d.example.com", i)}
		add(Rule{Hosts: h, Paths: []string{"/static/*", "/favicon.ico"}, Action: ActionBypass})
		add(Rule{Hosts: h, Paths: []string{"/api/**"}, Methods: []string{"GET", "HEAD"}, Action: ActionOneFactor})
		add(Rule{Hosts: h, Paths: []string{"/admin/**"}, Groups: []string{"admins"}, Action: ActionTwoFactor,
			Factors: []string{FactorWebAuthn}, WebAuthn: &WebAuthnOptions{Hardware: true}})
		add(Rule{Hosts: h, Networks: []string{"10.0.0.0/8", "2001:db8::/32"}, Methods: []string{"GET"}, Action: ActionOneFactor})
		add(Rule{Hosts: h, Paths: []string{"/billing/**"}, Action: ActionTwoFactor, MaxAge: Duration(15 * time.Minute)})
		if i%49 == 0 {
			add(Rule{Hosts: []string{"*.internal.example.com"}, Paths: []string{"/health"}, Action: ActionBypass})
			add(Rule{Paths: []string{"/.well-known/**"}, Action: ActionBypass})
		}
	}
	for i := len(p.Rules); i < 1000; i++ {
		add(Rule{Hosts: []string{fmt.Sprintf("svc%d.internal.example.com", i%4)}, Paths: []string{fmt.Sprintf("/v%d/**", i)}, Action: ActionTwoFactor})
	}
	return p
}

func benchRequests() []Request {
	var rs []Request
	for i := range 64 {
		h := fmt.Sprintf("app%d.example.com", (i*37)%195)
		rs = append(rs,
			Request{Host: h, Path: "/billing/invoices/7", Method: "POST", IP: netip.MustParseAddr("192.0.2.1")},
			Request{Host: h, Path: "/static/app.css", Method: "GET"},
			Request{Host: h, Path: "/dashboard", Method: "POST", IP: netip.MustParseAddr("192.0.2.1")}, // default
		)
	}
	return rs
}

func TestBigPolicy(t *testing.T) {
	p := bigPolicy()
	hosts := map[string]bool{}
	for _, r := range p.Rules {
		for _, h := range r.Hosts {
			hosts[h] = true
		}
	}
	if len(p.Rules) != 1000 || len(hosts) != 200 {
		t.Fatalf("%d rules over %d hosts", len(p.Rules), len(hosts))
	}
	c, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := user("alice", []string{"staff"}, totpNow)
	for _, r := range benchRequests() {
		if d, e := c.Evaluate(r, s, testNow), c.Explain(r, s, testNow); d.RuleIndex != e.Decision.RuleIndex || d.Outcome != e.Decision.Outcome {
			t.Fatalf("%+v: %+v vs %+v", r, d, e.Decision)
		}
		if n := testing.AllocsPerRun(10, func() { c.Evaluate(r, s, testNow) }); n != 0 {
			t.Fatalf("%v allocs", n)
		}
	}
}

// BenchmarkEvaluate is the budget's figure (≤ 100 ns, 0 allocs): "resolved"
// is the gate's call, with each host resolved once beforehand as the gate
// does together with the upstream; "by-name" is Evaluate looking the host
// up, as explain, the CLI and other callers do.
func BenchmarkEvaluate(b *testing.B) {
	c, err := Compile(bigPolicy())
	if err != nil {
		b.Fatal(err)
	}
	rs := benchRequests()
	hs := make([]*Host, len(rs))
	for i := range rs {
		hs[i] = c.ResolveHost(rs[i].Host)
	}
	s := user("alice", []string{"staff", "dev"}, totpNow)
	b.Run("resolved", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := i % len(rs)
			c.EvaluateAt(hs[k], rs[k], s, testNow)
			i++
		}
	})
	b.Run("by-name", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c.Evaluate(rs[i%len(rs)], s, testNow)
			i++
		}
	})
}

func BenchmarkCompile(b *testing.B) {
	p := bigPolicy()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(p); err != nil {
			b.Fatal(err)
		}
	}
}
