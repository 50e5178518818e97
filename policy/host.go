package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Host patterns are exact names ("app.example.com", an IP literal) or a
// leading wildcard ("*.example.com"), which matches every name below
// example.com at any depth but not example.com itself. Names are compared
// case-insensitively.

// maxHostLen bounds the request host the evaluator normalises on its stack.
// DNS names stop at 253 bytes; a longer Host header names nothing a rule
// could list, so only host-less rules and the default apply to it.
const maxHostLen = 256

// parseHostPattern checks one entry of a rule's hosts and returns its
// normalised form: the lower-case name without trailing dot, and for a
// wildcard the part after "*.". msg, when not empty, is for a person.
func parseHostPattern(s string) (name string, wildcard bool, msg string) {
	if s == "" {
		return "", false, "empty host; leave hosts out to match every host"
	}
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if j := strings.IndexAny(rest, "/:"); j >= 0 {
			rest = rest[:j]
		}
		return "", false, fmt.Sprintf("%q is a URL; write only the host, e.g. %q", s, rest)
	}
	if strings.Contains(s, "/") {
		return "", false, fmt.Sprintf("%q contains \"/\"; a host has no path (put paths under paths)", s)
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		a, err := netip.ParseAddr(s[1 : len(s)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", false, fmt.Sprintf("%q is not an IPv6 address", s)
		}
		return a.String(), false, ""
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return "", false, fmt.Sprintf("%q has an IPv6 zone; hosts never carry one", s)
		}
		return a.String(), false, ""
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return "", false, fmt.Sprintf("%q has a port; hosts match without it, write %q", s, s[:i])
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return "", false, fmt.Sprintf("%q is not ASCII; write internationalised names in their xn-- (punycode) form", s)
		}
	}
	h := strings.TrimSuffix(strings.ToLower(s), ".")
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		if strings.Contains(rest, "*") || !validDNSName(rest) {
			return "", false, fmt.Sprintf("%q is not a host pattern; use an exact host or a leading \"*.\" as in *.example.com", s)
		}
		if _, err := netip.ParseAddr(rest); err == nil {
			return "", false, fmt.Sprintf("%q: a wildcard cannot stand in front of an IP address", s)
		}
		return rest, true, ""
	}
	if strings.Contains(h, "*") {
		if h == "*" {
			return "", false, "\"*\" is not a host pattern; leave hosts out to match every host"
		}
		return "", false, fmt.Sprintf("%q is not a host pattern; use an exact host or a leading \"*.\" as in *.example.com", s)
	}
	if !validDNSName(h) {
		return "", false, fmt.Sprintf("%q is not a valid host name", s)
	}
	return h, false, ""
}

// validDNSName accepts lower-case LDH labels (plus '_', which real
// deployments use) of 1–63 bytes, 253 bytes in all.
func validDNSName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// hostNeedsFolding reports whether a request host differs from the form
// patterns are stored in (lower case, no trailing dot, no IPv6 brackets).
// Hosts from the web layer normally do not, and are then looked up as they
// are.
func hostNeedsFolding(h string) bool {
	if h == "" {
		return false
	}
	// Over-long hosts go the folding way too, which turns them into "no
	// host", so that a wildcard cannot match them on one path and not the
	// other.
	if h[0] == '[' || h[len(h)-1] == '.' || len(h) > maxHostLen {
		return true
	}
	for i := 0; i < len(h); i++ {
		if h[i]-'A' < 26 { // one unsigned compare for 'A' <= c <= 'Z'
			return true
		}
	}
	return false
}

// foldRequestHost writes the request host in the stored form into buf and
// returns the used part, or nil when the host cannot be any listed name. It
// works on a caller-provided array so that Evaluate stays free of
// allocations.
func foldRequestHost(h string, buf *[maxHostLen]byte) []byte {
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	if len(h) > 0 && h[len(h)-1] == '.' {
		h = h[:len(h)-1]
	}
	if h == "" || len(h) > maxHostLen {
		return nil
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(h)]
}

// normRequestHost is foldRequestHost as a string, for Explain, which may
// allocate.
func normRequestHost(h string) string {
	if !hostNeedsFolding(h) {
		return h
	}
	var buf [maxHostLen]byte
	return string(foldRequestHost(h, &buf))
}

// hostIndex finds, for a request host, every rule that may apply to it:
// the rules whose hosts criterion it satisfies and the rules without one,
// without looking at rules for other hosts. Each list holds rule indices in
// ascending order, so walking it keeps first-match-wins. The lists are
// merged at compile time; the cost is memory in the order of
// (listed hosts + wildcards) × host-less rules, small for real policies
// (200 hosts × 10 host-less rules is 2,000 entries).
type hostIndex struct {
	// exact: a host some rule lists exactly → its rules, the wildcard rules
	// covering it and the host-less rules.
	exact map[string][]int32
	// wild: the suffix S of a "*.S" pattern → the wildcard rules covering
	// names below S and the host-less rules. A request host not in exact is
	// looked up by its longest suffix found here; that entry already holds
	// the rules of the shorter suffixes.
	wild map[string][]int32
	// none: the host-less rules, for a host no pattern names.
	none []int32
}

// lookup returns the rule list for a request host. Hosts that are rule keys
// as they come (lower case, the web layer's contract) cost one map look-up;
// anything else is folded on the stack and looked up by exact name, then by
// wildcard suffix.
func (x *hostIndex) lookup(h string) []int32 {
	if l, ok := x.exact[h]; ok {
		return l
	}
	if hostNeedsFolding(h) {
		var buf [maxHostLen]byte
		return x.lookupFolded(foldRequestHost(h, &buf))
	}
	return x.wildcards(h)
}

func (x *hostIndex) lookupFolded(h []byte) []int32 {
	// m[string(b)] does not copy b, so the folded host stays on the stack.
	if l, ok := x.exact[string(h)]; ok {
		return l
	}
	return wildcards(x, h)
}

func (x *hostIndex) wildcards(h string) []int32 { return wildcards(x, h) }

// wildcards looks a host (in stored form, as a string or as bytes) up by
// its suffixes. The first dot gives the longest proper suffix, so the first
// hit is the most specific wildcard.
func wildcards[S string | []byte](x *hostIndex, h S) []int32 {
	if len(x.wild) > 0 {
		for i := 0; i < len(h); i++ {
			if h[i] == '.' {
				if l, ok := x.wild[string(h[i+1:])]; ok {
					return l
				}
			}
		}
	}
	return x.none
}

// NamesHost reports whether some rule names host, exactly or by a "*."
// pattern covering it: the hosts a policy protects (forward-auth refuses
// the others). Host-less rules do not count. One or a few map look-ups.
func (c *Compiled) NamesHost(host string) bool {
	if c == nil {
		return false
	}
	if hostNeedsFolding(host) {
		var buf [maxHostLen]byte
		host = string(foldRequestHost(host, &buf))
	}
	if _, ok := c.hosts.exact[host]; ok {
		return true
	}
	for i := 0; i < len(host); i++ {
		if host[i] == '.' {
			if _, ok := c.hosts.wild[host[i+1:]]; ok {
				return true
			}
		}
	}
	return false
}

// buildHostIndex merges, at compile time, the per-pattern rule lists and the
// host-less rules into one list per key, so that a request costs one map
// look-up (or a few for a wildcard) and then a walk over its own rules only.
func buildHostIndex(rules []rule) hostIndex {
	exactOwn := map[string][]int32{}
	wildOwn := map[string][]int32{}
	var none []int32
	add := func(m map[string][]int32, k string, i int32) {
		l := m[k]
		if len(l) == 0 || l[len(l)-1] != i { // a rule may list the same host twice
			m[k] = append(l, i)
		}
	}
	for i := range rules {
		if !rules[i].hasHosts() {
			none = append(none, int32(i))
		}
		for _, h := range rules[i].exactHosts {
			add(exactOwn, h, int32(i))
		}
		for _, w := range rules[i].wildHosts {
			add(wildOwn, w, int32(i))
		}
	}
	// covering lists the rules that apply to names below s (includeSelf) or
	// to s itself (!includeSelf): the wildcard lists of every proper suffix
	// of s, s's own wildcard list for names below s, and the host-less
	// rules.
	covering := func(s string, includeSelf bool) [][]int32 {
		lists := [][]int32{none}
		if includeSelf {
			lists = append(lists, wildOwn[s])
		}
		for i := 0; i < len(s); i++ {
			if s[i] == '.' {
				lists = append(lists, wildOwn[s[i+1:]])
			}
		}
		return lists
	}
	x := hostIndex{
		exact: make(map[string][]int32, len(exactOwn)),
		wild:  make(map[string][]int32, len(wildOwn)),
		none:  slices.Clip(none),
	}
	for h, own := range exactOwn {
		x.exact[h] = mergeSorted(append(covering(h, false), own))
	}
	for w := range wildOwn {
		x.wild[w] = mergeSorted(covering(w, true))
	}
	return x
}

// mergeSorted unions ascending lists into one ascending list without
// duplicates.
func mergeSorted(lists [][]int32) []int32 {
	var out []int32
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Clip(slices.Compact(out))
}

// Host is a request host resolved once against one compiled policy: the
// rules that may apply to it, as the host index gives them. The gate keeps
// one per upstream and policy version, resolved together with the
// upstream, so that a request does not hash its host a second time
// (EvaluateAt, EvaluateReadingsAt).
//
// A Host belongs to the policy that resolved it and names one host. The
// *At methods use it only when both agree (one pointer and one string
// comparison) and otherwise look the host up as Evaluate does: a Host kept
// across a policy swap, or handed a request for another host, makes the
// decision slower, never different. Its fields are private, so no caller
// can make one that lies.
type Host struct {
	c     *Compiled
	name  string
	rules []int32
}

// ResolveHost resolves a request host (the form Request.Host takes) against
// c. It allocates the handle; resolve once, evaluate many times.
func (c *Compiled) ResolveHost(host string) *Host {
	h := &Host{c: c, name: host}
	if c != nil {
		h.rules = c.hosts.lookup(host)
	}
	return h
}

// Of reports whether h was resolved by c, i.e. whether the *At methods of c
// will use it. A nil h is nobody's.
func (h *Host) Of(c *Compiled) bool { return h != nil && h.c == c }

// Name is the host h was resolved for.
func (h *Host) Name() string { return h.name }

// candidates returns the rules that may apply to host: h's when h was
// resolved by c for this very host, else the host index's answer.
func (c *Compiled) candidates(h *Host, host string) []int32 {
	if h != nil && h.c == c && h.name == host {
		return h.rules
	}
	return c.hosts.lookup(host)
}
