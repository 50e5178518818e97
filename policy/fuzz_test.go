package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzCompileEvaluate feeds arbitrary policy text and requests through the
// whole package. Nothing may panic, and Explain must agree with Evaluate on
// every input that compiles.
func FuzzCompileEvaluate(f *testing.F) {
	seeds := []struct {
		doc, host, path, method, ip, user, group, kind string
		authed, trusted                                bool
		ageSec                                         int64
	}{
		{designPolicy, "admin.example.com", "/x", "GET", "10.1.2.3", "alice", "admins", "webauthn", true, false, 60},
		{designPolicy, "APP.example.com.", "/static/a", "GET", "::ffff:10.0.0.1", "", "", "", false, false, 0},
		{designPolicy, "wiki.example.com", "", "HEAD", "2001:db8::1%eth0", "bob", "", "totp", true, true, 3600},
		{`{rules: [{name: a, hosts: ["*.a.example.com", "*.example.com"], paths: ["/**/x/*"], action: deny}]}`, "q.a.example.com", "/y/x/z", "POST", "", "", "", "", false, false, 0},
		{`{default: bypass, rules: [{name: n, networks: ["::/0", "0.0.0.0/0"], users: [u], action: two_factor, max_age: 1s}]}`, "h", "/", "GET", "1.1.1.1", "u", "", "email", true, true, 2},
		{`{rules: [{name: x, paths: ["/a/**/b/**/c"], methods: [get], action: one_factor}]}`, "[::1]", "/a/b/b/c", "GET", "", "", "", "", true, false, 0},
		{"rules:\n  - name: bad\n    hosts: [\"*\"]\n    action: nope\n", "x", "/", "GET", "", "", "", "", false, false, 0},
		{"", "", "", "", "", "", "", "", false, false, 0},
	}
	for _, s := range seeds {
		f.Add([]byte(s.doc), s.host, s.path, s.method, s.ip, s.user, s.group, s.kind, s.authed, s.trusted, s.ageSec)
	}
	f.Fuzz(func(t *testing.T, doc []byte, host, path, method, ip, name, group, kind string, authed, trusted bool, ageSec int64) {
		p, err := Parse(doc)
		if err != nil {
			return
		}
		c, err := Compile(p)
		if err != nil {
			_ = err.Error()
			return
		}
		r := Request{Host: host, Path: path, Method: method}
		r.IP, _ = netip.ParseAddr(ip)
		s := Subject{Authenticated: authed, User: name, TrustedDevice: trusted}
		if group != "" {
			s.Groups = []string{group}
		}
		if kind != "" {
			s.Proofs = []Proof{{Kind: kind, At: testNow.Add(-time.Duration(ageSec) * time.Second), Attested: ageSec%2 == 0, UserVerified: ageSec%3 == 0}}
		}
		d := c.Evaluate(r, s, testNow)
		e := c.Explain(r, s, testNow)
		if !reflect.DeepEqual(d, e.Decision) {
			t.Fatalf("Evaluate %+v, Explain %+v", d, e.Decision)
		}
		if d.Outcome < Allow || d.Outcome > Deny {
			t.Fatalf("no outcome: %+v", d)
		}
		_ = e.String()
		if _, err := Compile(c.Source()); err != nil {
			t.Fatalf("source of a compiled policy does not compile: %v", err)
		}
	})
}

// TestIndexAgreesWithScan builds random policies with overlapping exact,
// wildcard and host-less rules and compares the indexed Evaluate with
// Explain's rule-by-rule scan for many hosts. The seed is fixed, so a
// failure reproduces.
func TestIndexAgreesWithScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	labels := []string{"a", "b", "c", "example", "com", "dev"}
	randHost := func() string {
		n := 1 + rng.IntN(4)
		h := labels[rng.IntN(len(labels))]
		for range n - 1 {
			h += "." + labels[rng.IntN(len(labels))]
		}
		return h
	}
	for round := range 25 {
		var p Policy
		for i := range 30 {
			r := Rule{Name: fmt.Sprintf("r%d", i), Action: []string{ActionDeny, ActionBypass, ActionOneFactor, ActionTwoFactor}[rng.IntN(4)]}
			for range rng.IntN(3) {
				h := randHost()
				if rng.IntN(3) == 0 {
					h = "*." + h
				}
				r.Hosts = append(r.Hosts, h)
			}
			r.Paths = []string{[]string{"/a", "/b/**", "/*", "/**"}[rng.IntN(4)]}
			p.Rules = append(p.Rules, r)
		}
		c, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		for range 200 {
			r := Request{Host: randHost(), Path: []string{"/a", "/b/c", "/c", "/"}[rng.IntN(4)], Method: "GET"}
			switch rng.IntN(4) {
			case 0:
				r.Host = strings.ToUpper(r.Host)
			case 1:
				r.Host += "."
			}
			d := c.Evaluate(r, anon, testNow)
			if e := c.Explain(r, anon, testNow); !reflect.DeepEqual(d, e.Decision) {
				t.Fatalf("round %d, %s%s: index says %+v, scan says %+v\n%s", round, r.Host, r.Path, d, e.Decision, e)
			}
			if a := c.EvaluateAt(c.ResolveHost(r.Host), r, anon, testNow); !reflect.DeepEqual(a, d) {
				t.Fatalf("round %d, %s%s: resolved host says %+v, Evaluate %+v", round, r.Host, r.Path, a, d)
			}
		}
	}
}

// TestFilterAgreesWithScan: the per-rule method/path filter Evaluate uses
// must never refuse a rule that the full check (which Explain uses) would
// accept, including for the odd first bytes: "/" alone, "//", '@' (which
// shares a bucket with "/" alone), upper case, wildcards up front.
func TestFilterAgreesWithScan(t *testing.T) {
	patterns := []string{"/", "//x", "/a", "/A*", "/*x", "/@", "/**/y", "/b/**", "/static/*", "/a/**/z", "/@/**"}
	methods := [][]string{nil, {"GET"}, {"POST", "PROPFIND"}}
	var p Policy
	for i, pat := range patterns {
		p.Rules = append(p.Rules, Rule{Name: fmt.Sprintf("r%d", i), Paths: []string{pat}, Methods: methods[i%len(methods)], Action: ActionBypass})
	}
	c, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"", "/", "//", "//x", "/a", "/A", "/Ab", "/bx", "/x", "/@", "/@/q", "/q/y", "/b", "/b/c", "/static/s", "/a/z", "/a/b/z", "*", "x", "/\x00", "/\xff"}
	for _, path := range paths {
		for _, m := range []string{"GET", "POST", "PROPFIND", "get", "BREW", ""} {
			r := Request{Host: "h", Path: path, Method: m}
			if d, e := c.Evaluate(r, anon, testNow), c.Explain(r, anon, testNow); !reflect.DeepEqual(d, e.Decision) {
				t.Errorf("%s %q: Evaluate %+v, Explain %+v", m, path, d, e.Decision)
			}
		}
	}
}
