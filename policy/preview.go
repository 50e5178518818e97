package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// What a pending policy change does, before it is saved: a sample of
// requests is evaluated under the policy in force and under the new one,
// and every request whose requirement changes is listed ("/admin/** on
// app.example.com goes from one_factor to two_factor").
//
// The sample is derived from both rule sets: every host they name (and
// every protected host), a path or two for every path pattern, every
// method they name plus GET and POST, a signed-in person in each group and
// as each user they name and one in none, and an address in every network
// they name plus one in none. A rule that no sample reaches cannot change
// anything a sample shows, which is why the samples come from the rules.

// Change is one (host, path) whose requirement changes, for the
// methods, people and sources listed.
type Change struct {
	Host    string   `json:"host"`
	Path    string   `json:"path"`
	Methods []string `json:"methods"`           // empty = every method sampled
	Who     []string `json:"who"`               // empty = everyone sampled
	Sources []string `json:"sources,omitempty"` // empty = from anywhere sampled
	From    string   `json:"from"`              // the requirement before: "one_factor", "two_factor (webauthn; max_age 15m0s)"
	To      string   `json:"to"`
	// FromRule and ToRule name the deciding rules ("default" for the
	// default action).
	FromRule string `json:"from_rule"`
	ToRule   string `json:"to_rule"`
}

// ChangeCount says how many sampled paths go from one requirement to
// another.
type ChangeCount struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Paths int    `json:"paths"`
}

// Preview is PreviewChange's answer.
type Preview struct {
	Summary   []ChangeCount `json:"summary"`
	Changes   []Change      `json:"changes"`
	Sampled   int           `json:"sampled"`   // requests evaluated under each policy
	Truncated bool          `json:"truncated"` // the sample or the list was cut
}

const (
	maxPreviewSamples = 200_000
	maxPreviewChanges = 500
	// previewUser cannot be a real username ("~" is not allowed in one),
	// so it never matches a users criterion.
	previewUser = "~someone"
	// outsideIP is a documentation address (TEST-NET-3): in no network a
	// real policy names.
	outsideIP = "203.0.113.77"
)

type previewSubject struct {
	label string
	subj  Subject
}

// PreviewChange evaluates a sample of requests under old and new and lists
// those whose requirement differs. hosts are added to the sampled hosts
// (the protected hosts, so that rules without hosts are sampled too).
func PreviewChange(old, new *Compiled, hosts []string) Preview {
	var srcs [2]Policy
	for i, c := range []*Compiled{old, new} {
		if c != nil {
			srcs[i] = c.Source()
		}
	}
	sHosts, sPaths, sMethods, subjects, sIPs := previewSamples(srcs, hosts)

	type key struct{ host, path string }
	type outcome struct{ from, to, fromRule, toRule string }
	type group struct {
		methods, who, sources []string
	}
	changed := map[key]map[outcome]*group{}
	var order []key
	out := Preview{Summary: []ChangeCount{}, Changes: []Change{}}
	now := time.Now()
	for _, h := range sHosts {
		for _, p := range sPaths {
			for _, m := range sMethods {
				for _, sb := range subjects {
					for _, ip := range sIPs {
						if out.Sampled >= maxPreviewSamples {
							out.Truncated = true
							break
						}
						out.Sampled++
						req := Request{Host: h, Path: p, Method: m, IP: ip.addr}
						from, fromRule := requirement(old, srcs[0], req, sb.subj, now)
						to, toRule := requirement(new, srcs[1], req, sb.subj, now)
						if from == to {
							continue
						}
						k := key{h, p}
						if changed[k] == nil {
							changed[k] = map[outcome]*group{}
							order = append(order, k)
						}
						o := outcome{from, to, fromRule, toRule}
						g := changed[k][o]
						if g == nil {
							g = &group{}
							changed[k][o] = g
						}
						g.methods = appendNew(g.methods, m)
						g.who = appendNew(g.who, sb.label)
						g.sources = appendNew(g.sources, ip.label)
					}
				}
			}
		}
	}
	counts := map[[2]string]int{}
	var countOrder [][2]string
	for _, k := range order {
		for o, g := range changed[k] {
			c := Change{Host: k.host, Path: k.path, From: o.from, To: o.to, FromRule: o.fromRule, ToRule: o.toRule}
			// "every method / everyone / anywhere" reads better than the
			// whole sample listed.
			if len(g.methods) < len(sMethods) {
				c.Methods = g.methods
			}
			if len(g.who) < len(subjects) {
				c.Who = g.who
			}
			if len(g.sources) < len(sIPs) {
				c.Sources = g.sources
			}
			if len(out.Changes) < maxPreviewChanges {
				out.Changes = append(out.Changes, c)
			} else {
				out.Truncated = true
			}
			ck := [2]string{o.from, o.to}
			if counts[ck] == 0 {
				countOrder = append(countOrder, ck)
			}
			counts[ck]++
		}
	}
	slices.SortStableFunc(out.Changes, func(a, b Change) int {
		return strings.Compare(a.Host+" "+a.Path+" "+a.From+a.To, b.Host+" "+b.Path+" "+b.From+b.To)
	})
	for _, ck := range countOrder {
		out.Summary = append(out.Summary, ChangeCount{From: ck[0], To: ck[1], Paths: counts[ck]})
	}
	return out
}

// requirement says in words what the policy asks of req for subject: the
// deciding rule's action and, for two_factor, its narrowing options.
func requirement(c *Compiled, src Policy, req Request, subj Subject, now time.Time) (string, string) {
	d := c.Evaluate(req, subj, now)
	if d.RuleIndex < 0 || d.RuleIndex >= len(src.Rules) {
		return d.Action, d.RuleName
	}
	r := src.Rules[d.RuleIndex]
	if r.Action != ActionTwoFactor {
		return r.Action, r.Name
	}
	var opts []string
	if len(r.Factors) > 0 {
		opts = append(opts, strings.Join(r.Factors, "/"))
	}
	if w := r.WebAuthn; w != nil {
		if w.Hardware {
			opts = append(opts, "hardware keys")
		}
		if len(w.AAGUIDs) > 0 {
			opts = append(opts, fmt.Sprintf("%d key models", len(w.AAGUIDs)))
		}
		if w.UserVerification == "required" {
			opts = append(opts, "user verification")
		}
		if w.Synced != nil && !*w.Synced {
			opts = append(opts, "no synced passkeys")
		}
	}
	if r.MaxAge > 0 {
		opts = append(opts, "max_age "+r.MaxAge.String())
	}
	if !d.TrustedDevice {
		opts = append(opts, "no remembered devices")
	}
	if len(opts) == 0 {
		return r.Action, r.Name
	}
	return r.Action + " (" + strings.Join(opts, "; ") + ")", r.Name
}

type previewIP struct {
	label string
	addr  netip.Addr
}

// previewSamples derives the sample from both policies.
func previewSamples(srcs [2]Policy, extraHosts []string) (hosts, paths, methods []string, subjects []previewSubject, ips []previewIP) {
	hosts = append(hosts, extraHosts...)
	paths = []string{"/", "/anything"}
	methods = []string{"GET", "POST"}
	subjects = []previewSubject{{label: "everyone", subj: Subject{Authenticated: true, User: previewUser}}}
	ips = []previewIP{{label: "elsewhere", addr: netip.MustParseAddr(outsideIP)}}
	for _, src := range srcs {
		for _, r := range src.Rules {
			for _, h := range r.Hosts {
				h = strings.ToLower(strings.TrimSuffix(h, "."))
				if rest, ok := strings.CutPrefix(h, "*."); ok {
					h = "host." + rest
				}
				hosts = append(hosts, h)
			}
			for _, p := range r.Paths {
				paths = append(paths, pathSamples(p)...)
			}
			for _, m := range r.Methods {
				methods = append(methods, strings.ToUpper(m))
			}
			for _, g := range r.Groups {
				subjects = append(subjects, previewSubject{label: "group " + g,
					subj: Subject{Authenticated: true, User: previewUser, Groups: []string{g}}})
			}
			for _, u := range r.Users {
				subjects = append(subjects, previewSubject{label: "user " + u,
					subj: Subject{Authenticated: true, User: u}})
			}
			for _, n := range r.Networks {
				if pfx, err := netip.ParsePrefix(n); err == nil {
					ips = append(ips, previewIP{label: n, addr: pfx.Addr()})
				} else if a, err := netip.ParseAddr(n); err == nil {
					ips = append(ips, previewIP{label: n, addr: a})
				}
			}
		}
	}
	if len(hosts) == 0 {
		hosts = []string{"app.example.com"}
	}
	return dedupe(hosts), dedupe(paths), dedupe(methods), dedupeBy(subjects, func(s previewSubject) string { return s.label }),
		dedupeBy(ips, func(i previewIP) string { return i.addr.String() })
}

// pathSamples turns a path pattern into paths it matches: "**" as nothing
// and as two segments, "*" as one name ("/static/*" is /static/x,
// "/api/**" is /api and /api/x/y, "/**/*.js" is /x.js and /x/y/x.js).
func pathSamples(pattern string) []string {
	var out []string
	for _, deep := range []string{"", "x/y/"} {
		p := strings.ReplaceAll(pattern, "/**/", "/"+deep)
		if strings.HasSuffix(p, "/**") {
			p = strings.TrimSuffix(p, "/**")
			if deep != "" {
				p += "/x/y"
			}
		}
		p = strings.ReplaceAll(strings.ReplaceAll(p, "**", "x"), "*", "x")
		if p == "" {
			p = "/"
		}
		out = append(out, p)
	}
	return out
}

func appendNew(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

func dedupe(list []string) []string {
	return dedupeBy(list, func(s string) string { return s })
}

func dedupeBy[T any](list []T, key func(T) string) []T {
	seen := map[string]bool{}
	out := list[:0:0]
	for _, v := range list {
		k := key(v)
		if !seen[k] {
			seen[k] = true
			out = append(out, v)
		}
	}
	return out
}
