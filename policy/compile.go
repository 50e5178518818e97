package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

type action uint8

const (
	actDeny action = iota + 1
	actBypass
	actOneFactor
	actTwoFactor
)

func (a action) String() string {
	switch a {
	case actDeny:
		return ActionDeny
	case actBypass:
		return ActionBypass
	case actOneFactor:
		return ActionOneFactor
	case actTwoFactor:
		return ActionTwoFactor
	}
	return ""
}

func parseAction(s string) (action, bool) {
	switch s {
	case ActionDeny:
		return actDeny, true
	case ActionBypass:
		return actBypass, true
	case ActionOneFactor:
		return actOneFactor, true
	case ActionTwoFactor:
		return actTwoFactor, true
	}
	return 0, false
}

// Second factors as bits, so that "is this proof acceptable here" is an AND.
// Bit i is the i-th registered kind of the policy's kindTable.
type factorSet uint32

// maxFactorKinds bounds the registered kinds (one bit each).
const maxFactorKinds = 32

// defaultFactors are the kinds a policy compiled without CompileOptions
// may name: round 1's factors, for tools and tests that run no registry.
func defaultFactors() []string {
	return []string{FactorWebAuthn, FactorTOTP, FactorEmail, FactorRecovery}
}

// kindTable is the second factors a policy may name: the factors keygate
// registered, in the order the portal offers them. It is built once per
// compile and shared by every rule (read-only).
type kindTable struct {
	kinds []string
	all   factorSet
}

func newKindTable(kinds []string) (*kindTable, error) {
	if len(kinds) == 0 {
		kinds = defaultFactors()
	}
	if len(kinds) > maxFactorKinds {
		return nil, fmt.Errorf("policy: at most %d second-factor kinds, got %d", maxFactorKinds, len(kinds))
	}
	t := &kindTable{kinds: slices.Clip(slices.Clone(kinds))}
	t.all = factorSet(1)<<len(kinds) - 1
	return t, nil
}

// bit is kind's bit, 0 for a kind not registered.
func (t *kindTable) bit(kind string) factorSet {
	if i := slices.Index(t.kinds, kind); i >= 0 {
		return 1 << i
	}
	return 0
}

// hint lists the registered kinds for a message ("webauthn, totp, email
// or recovery").
func (t *kindTable) hint() string {
	if len(t.kinds) == 1 {
		return t.kinds[0]
	}
	return strings.Join(t.kinds[:len(t.kinds)-1], ", ") + " or " + t.kinds[len(t.kinds)-1]
}

// CompileOptions are what a policy is compiled against.
type CompileOptions struct {
	// Factors are the registered second-factor kinds, in the portal's
	// order; rules may name only these. Empty: round 1's four (webauthn,
	// totp, email, recovery).
	Factors []string
}

// Factors are the second-factor kinds the policy was compiled against.
func (c *Compiled) Factors() []string { return slices.Clone(c.kinds.kinds) }

// HTTP methods as bits: a rule's methods criterion is one AND. RFC 9110 and
// PATCH, plus WebDAV (RFC 4918) for file shares behind the gateway.
const methodHint = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT, TRACE or a WebDAV method (PROPFIND, PROPPATCH, MKCOL, COPY, MOVE, LOCK, UNLOCK)"

// methodUnknown is the bit of every method not listed below. No rule's
// methods criterion contains it, so an unknown method matches only rules
// without one.
const methodUnknown uint32 = 1 << 31

// methodBit maps a request method to its bit; methods are case-sensitive in
// HTTP, so "get" is not GET but, like any unknown method, methodUnknown.
// Switching on the length first keeps this to one or two short compares: it
// runs on every request.
func methodBit(m string) uint32 {
	switch len(m) {
	case 3:
		switch m {
		case "GET":
			return 1 << 0
		case "PUT":
			return 1 << 3
		}
	case 4:
		switch m {
		case "HEAD":
			return 1 << 1
		case "POST":
			return 1 << 2
		case "COPY":
			return 1 << 12
		case "MOVE":
			return 1 << 13
		case "LOCK":
			return 1 << 14
		}
	case 5:
		switch m {
		case "PATCH":
			return 1 << 4
		case "TRACE":
			return 1 << 8
		case "MKCOL":
			return 1 << 11
		}
	case 6:
		switch m {
		case "DELETE":
			return 1 << 5
		case "UNLOCK":
			return 1 << 15
		}
	case 7:
		switch m {
		case "OPTIONS":
			return 1 << 6
		case "CONNECT":
			return 1 << 7
		}
	case 8:
		if m == "PROPFIND" {
			return 1 << 9
		}
	case 9:
		if m == "PROPPATCH" {
			return 1 << 10
		}
	}
	return methodUnknown
}

// webauthnReq is a rule's WebAuthnOptions reduced to what Evaluate tests.
type webauthnReq struct {
	attested     bool     // hardware or aaguids
	uvRequired   bool     // user_verification: required
	refuseSynced bool     // synced: false
	aaguids      []string // lower case, canonical
}

// rule is one compiled Rule (or the default, with index -1 and no criteria).
type rule struct {
	// Read for every candidate rule, and most checks end here, so these
	// sit together at the front of the struct (one or two cache lines).
	methods  uint32 // 0 = any
	action   action
	factors  factorSet // two_factor only; bits of kinds
	kinds    *kindTable
	trusted  bool // two_factor only: a remembered device may stand in for the second factor
	paths    []glob
	networks []netip.Prefix
	users    map[string]struct{}
	groups   map[string]struct{}

	// Read once the rule matched.
	webauthn   *webauthnReq // nil when it asks nothing beyond "a WebAuthn assertion"
	maxAge     time.Duration
	acceptable []string
	index      int
	name       string
	actionName string
	head       Decision // the decision's rule part, see makeHead

	// For the host index and for explanations.
	exactHosts []string // normalised
	wildHosts  []string // suffixes of "*." patterns
	hostsText  []string
	pathsText  []string
	methodList []string
	userList   []string
	groupList  []string
}

func (r *rule) hasHosts() bool    { return len(r.exactHosts)+len(r.wildHosts) > 0 }
func (r *rule) hasSubjects() bool { return r.users != nil || r.groups != nil }

// Compiled is a validated policy in the form Evaluate needs. It is immutable
// once built and safe for concurrent use; replace it as a whole (Holder).
type Compiled struct {
	src     Policy
	opts    CompileOptions
	kinds   *kindTable
	rules   []rule
	filters []ruleFilter // parallel to rules
	def     rule
	hosts   hostIndex
	// fold is the same policy with every path pattern case-folded, for
	// the folded readings of a path (EvaluateReadings); nil when folding
	// changes no pattern, and then c itself serves them.
	fold *Compiled
	// overrides are the methods an overridable request (a POST an app may
	// run as its "_method") is judged as besides its own: every method some
	// rule names, and one that none names, which stands for all the others
	// (they match the same rules).
	overrides []string
	// slashAdd: some rule that is not a bypass has a path pattern that a
	// path with a slash added can match where the path itself cannot (one
	// ending in "/" or in a wildcard segment, which matches the empty
	// segment): only then is that reading worth its allocation.
	slashAdd bool
}

// ruleFilter is a conservative summary of a rule's methods and paths in 16
// bytes: when it says no, rule.check would say no too, so Evaluate skips the
// rule without touching it. Most candidate rules of a host fail on method or
// path, and an array of these stays in cache where the rules would not.
type ruleFilter struct {
	methods uint32 // the rule's methods; all bits when it has none
	paths   uint64 // pathBit of every path the rule's patterns can match; all bits when unsure
}

// pathBit buckets a request path by the byte after its leading "/" (64
// buckets; "/" alone goes to bucket 0).
func pathBit(path string) uint64 {
	if len(path) < 2 {
		return 1
	}
	return 1 << (path[1] & 63)
}

func newRuleFilter(r *rule, patterns []string) ruleFilter {
	f := ruleFilter{methods: r.methods, paths: ^uint64(0)}
	if f.methods == 0 {
		f.methods = ^uint32(0)
	}
	if len(patterns) == 0 {
		return f
	}
	f.paths = 0
	for _, p := range patterns {
		first, _, more := strings.Cut(p[1:], "/")
		switch {
		case strings.Contains(first, "*"):
			// A wildcard up front can match any first byte.
			return ruleFilter{methods: f.methods, paths: ^uint64(0)}
		case first != "":
			f.paths |= pathBit(p)
		case more:
			f.paths |= pathBit("//") // "//x": the path's second byte is "/"
		default:
			f.paths |= pathBit("/") // "/" only
		}
	}
	return f
}

// Source returns a copy of the policy c was compiled from, as it was given
// (an empty default stays empty). Changing it does not change c.
func (c *Compiled) Source() Policy { return clonePolicy(c.src) }

// Compile validates p and builds its matcher. When p has problems it returns
// ValidationErrors with every problem found, in document order, each with a
// path relative to the policy ("rules[2].networks[0]"). An empty default
// means two_factor.
func Compile(p Policy) (*Compiled, error) { return CompileWith(p, CompileOptions{}) }

// CompileWith is Compile against the registered factor kinds of o.
func CompileWith(p Policy, o CompileOptions) (*Compiled, error) {
	var errs ValidationErrors
	bad := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
	}

	kinds, err := newKindTable(o.Factors)
	if err != nil {
		return nil, err
	}
	c := &Compiled{src: clonePolicy(p), opts: o, kinds: kinds}
	all := slices.Clip(slices.Clone(kinds.kinds))
	def := p.Default
	if def == "" {
		def = ActionTwoFactor
	}
	act, ok := parseAction(def)
	if !ok {
		bad("default", "%s", unknownAction(def))
		act = actTwoFactor
	}
	c.def = rule{
		index: -1, name: "default", action: act, actionName: act.String(),
		factors: kinds.all, kinds: kinds, acceptable: all, trusted: true,
	}
	if act != actTwoFactor {
		c.def.factors, c.def.acceptable = 0, nil
	}
	c.def.head = c.def.makeHead()

	c.rules = make([]rule, len(p.Rules))
	names := make(map[string]int, len(p.Rules))
	catchAll := false
	for i := range p.Rules {
		at := fmt.Sprintf("rules[%d]", i)
		c.rules[i].kinds = kinds
		compileRule(&c.rules[i], i, &p.Rules[i], at, all, names, bad)
		if !catchAll && isCatchAll(&p.Rules[i]) && i < len(p.Rules)-1 {
			// Not wrong as such, but every rule after it is dead text
			// that an admin will believe is in force.
			bad(at, "this rule has no criteria and matches every request, so rules[%d] and later never apply; add criteria or move it last", i+1)
			catchAll = true
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}

	packGlobs(c.rules)
	for i := range c.rules {
		c.rules[i].head = c.rules[i].makeHead()
	}
	c.hosts = buildHostIndex(c.rules)
	c.filters = make([]ruleFilter, len(c.rules))
	for i := range c.rules {
		c.filters[i] = newRuleFilter(&c.rules[i], p.Rules[i].Paths)
		for _, m := range c.rules[i].methodList {
			if !slices.Contains(c.overrides, m) {
				c.overrides = append(c.overrides, m)
			}
		}
		if c.rules[i].action != actBypass {
			for _, pat := range p.Rules[i].Paths {
				c.slashAdd = c.slashAdd || strings.HasSuffix(pat, "/") || (strings.HasSuffix(pat, "*") && !strings.HasSuffix(pat, "/**"))
			}
		}
	}
	if len(c.overrides) > 0 {
		for _, m := range []string{"DELETE", "PUT", "PATCH", "POST"} {
			if !slices.Contains(c.overrides, m) {
				c.overrides = append(c.overrides, m)
				break
			}
		}
	}
	if fp, changed := foldedPolicy(p); changed {
		// Folding changes nothing a pattern's validity depends on, and a
		// folded policy folds to itself, so this recursion is one level
		// deep and cannot fail where p compiled.
		f, err := CompileWith(fp, o)
		if err != nil {
			return nil, err
		}
		c.fold = f
	}
	return c, nil
}

// foldedPolicy is p with every path pattern case-folded (foldPath, the
// folding of the readings), and whether that changed any pattern.
func foldedPolicy(p Policy) (Policy, bool) {
	changed := false
	for _, r := range p.Rules {
		for _, g := range r.Paths {
			if foldPath(g) != g {
				changed = true
			}
		}
	}
	if !changed {
		return p, false
	}
	out := clonePolicy(p)
	for i := range out.Rules {
		for j, g := range out.Rules[i].Paths {
			out.Rules[i].Paths[j] = foldPath(g)
		}
	}
	return out, true
}

// packGlobs moves every rule's path patterns, and the literal text they
// compare, into two contiguous blocks in rule order. Evaluate walks a host's
// rules in that order, so their patterns then share cache lines instead of
// sitting in a thousand small allocations.
func packGlobs(rules []rule) {
	total := 0
	var lits strings.Builder
	for i := range rules {
		total += len(rules[i].paths)
		for _, g := range rules[i].paths {
			lits.WriteString(g.lit)
		}
	}
	text := lits.String()
	arena := make([]glob, 0, total)
	off := 0
	for i := range rules {
		start := len(arena)
		for _, g := range rules[i].paths {
			g.lit = text[off : off+len(g.lit)]
			off += len(g.lit)
			arena = append(arena, g)
		}
		rules[i].paths = arena[start:len(arena):len(arena)]
	}
}

func isCatchAll(r *Rule) bool {
	return len(r.Hosts)+len(r.Paths)+len(r.Methods)+len(r.Networks)+len(r.Users)+len(r.Groups) == 0
}

func unknownAction(s string) string {
	if s == "" {
		return "action is missing; use deny, bypass, one_factor or two_factor"
	}
	return fmt.Sprintf("unknown action %q; use deny, bypass, one_factor or two_factor", s)
}

// compileRule fills out from in, reporting every problem through bad. It
// keeps going after a problem so that one run lists them all.
func compileRule(out *rule, i int, in *Rule, at string, all []string, names map[string]int, bad func(path, format string, args ...any)) {
	out.index = i
	out.name = in.Name
	switch {
	case strings.TrimSpace(in.Name) == "":
		bad(at+".name", "rule name is empty; give every rule a unique name")
	case in.Name == "default":
		bad(at+".name", "%q is reserved for the default action; pick another name", in.Name)
	default:
		if j, dup := names[in.Name]; dup {
			bad(at+".name", "duplicate rule name %q (also rules[%d])", in.Name, j)
		} else {
			names[in.Name] = i
		}
	}

	for j, h := range in.Hosts {
		name, wild, msg := parseHostPattern(h)
		if msg != "" {
			bad(fmt.Sprintf("%s.hosts[%d]", at, j), "%s", msg)
			continue
		}
		if wild {
			out.wildHosts = append(out.wildHosts, name)
			out.hostsText = append(out.hostsText, "*."+name)
		} else {
			out.exactHosts = append(out.exactHosts, name)
			out.hostsText = append(out.hostsText, name)
		}
	}

	for j, s := range in.Paths {
		g, msg := compileGlob(s)
		if msg != "" {
			bad(fmt.Sprintf("%s.paths[%d]", at, j), "%s", msg)
			continue
		}
		out.paths = append(out.paths, g)
		out.pathsText = append(out.pathsText, s)
	}

	for j, m := range in.Methods {
		// Admins write "get" and mean GET; requests are still compared
		// case-sensitively.
		up := strings.ToUpper(m)
		bit := methodBit(up)
		if bit == methodUnknown {
			bad(fmt.Sprintf("%s.methods[%d]", at, j), "%q is not an HTTP method; use %s", m, methodHint)
			continue
		}
		if out.methods&bit == 0 {
			out.methodList = append(out.methodList, up)
		}
		out.methods |= bit
	}

	for j, s := range in.Networks {
		pfx, msg := parseNetwork(s)
		if msg != "" {
			bad(fmt.Sprintf("%s.networks[%d]", at, j), "%s", msg)
			continue
		}
		out.networks = append(out.networks, pfx)
	}

	out.users, out.userList = nameSet(in.Users, at+".users", "user", bad)
	out.groups, out.groupList = nameSet(in.Groups, at+".groups", "group", bad)

	act, ok := parseAction(in.Action)
	if !ok {
		bad(at+".action", "%s", unknownAction(in.Action))
	}
	out.action, out.actionName = act, act.String()
	two := act == actTwoFactor

	// Options that only mean something for two_factor. With an unknown
	// action we cannot tell, so say nothing more about them.
	if ok && !two {
		if len(in.Factors) > 0 {
			bad(at+".factors", "factors only apply to two_factor rules")
		}
		if in.WebAuthn != nil {
			bad(at+".webauthn", "webauthn options only apply to two_factor rules")
		}
		if in.MaxAge != 0 {
			bad(at+".max_age", "max_age only applies to two_factor rules")
		}
		if in.TrustedDevice != nil {
			bad(at+".trusted_device", "trusted_device only applies to two_factor rules")
		}
	}

	for j, f := range in.Factors {
		bit := out.kinds.bit(f)
		switch {
		case f == FactorPassword:
			bad(fmt.Sprintf("%s.factors[%d]", at, j), "password is the first factor, not a second one; use %s", out.kinds.hint())
			continue
		case bit == 0:
			bad(fmt.Sprintf("%s.factors[%d]", at, j), "unknown factor %q; use %s", f, out.kinds.hint())
			continue
		}
		if out.factors&bit == 0 {
			out.acceptable = append(out.acceptable, f)
		}
		out.factors |= bit
	}
	if len(in.Factors) == 0 {
		out.factors, out.acceptable = out.kinds.all, all
	}
	// Decision.Acceptable hands this slice out; capped, a caller's append
	// copies instead of writing into the compiled policy.
	out.acceptable = slices.Clip(out.acceptable)

	if w := in.WebAuthn; w != nil {
		if two && len(in.Factors) > 0 && out.factors&out.kinds.bit(FactorWebAuthn) == 0 {
			bad(at+".webauthn", "webauthn options have no effect: factors does not include webauthn")
		}
		out.webauthn = compileWebAuthn(w, at+".webauthn", bad)
	}

	out.maxAge = in.MaxAge.D()
	// A remembered device may have been trusted after any second factor,
	// so by default it skips only rules that accept any second factor; a
	// rule that narrows the factors (e.g. hardware keys only) asks again
	// unless the admin says trusted_device: true.
	if in.TrustedDevice != nil {
		out.trusted = *in.TrustedDevice
	} else {
		out.trusted = len(in.Factors) == 0 && in.WebAuthn == nil
	}
	if two && in.TrustedDevice != nil && *in.TrustedDevice && in.MaxAge > 0 {
		bad(at+".trusted_device", "trusted_device: true has no effect with max_age: a remembered device never counts as a fresh second factor")
	}
	if out.maxAge > 0 {
		out.trusted = false
	}
	if !two {
		out.factors, out.acceptable, out.webauthn, out.maxAge, out.trusted = 0, nil, nil, 0, false
	}
}

func compileWebAuthn(w *WebAuthnOptions, at string, bad func(path, format string, args ...any)) *webauthnReq {
	req := &webauthnReq{attested: w.Hardware}
	switch w.UserVerification {
	case "", "preferred", "discouraged":
		// Only "required" constrains the assertion; the others are hints
		// for the browser prompt.
	case "required":
		req.uvRequired = true
	default:
		bad(at+".user_verification", "unknown user_verification %q; use preferred, required or discouraged", w.UserVerification)
	}
	for j, a := range w.AAGUIDs {
		canon, msg := canonicalUUID(a)
		if msg != "" {
			bad(fmt.Sprintf("%s.aaguids[%d]", at, j), "%s", msg)
			continue
		}
		if !slices.Contains(req.aaguids, canon) {
			req.aaguids = append(req.aaguids, canon)
		}
	}
	if len(req.aaguids) > 0 {
		// The AAGUID an authenticator reports is only worth something when
		// attestation vouched for it.
		req.attested = true
	}
	if w.Synced != nil && !*w.Synced {
		req.refuseSynced = true
	}
	if !req.attested && !req.uvRequired && !req.refuseSynced {
		return nil
	}
	return req
}

// canonicalUUID checks the 8-4-4-4-12 hex form and lower-cases it.
func canonicalUUID(s string) (string, string) {
	ok := len(s) == 36
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			ok = c == '-'
		default:
			ok = '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
		}
	}
	if !ok {
		return "", fmt.Sprintf("%q is not an AAGUID; write a UUID such as cb69481e-8ff7-4039-93ec-0a2729a154a8", s)
	}
	s = strings.ToLower(s)
	if s == "00000000-0000-0000-0000-000000000000" {
		return "", "the all-zero AAGUID names no authenticator model (it is what unattested keys report); remove it"
	}
	return s, ""
}

// parseNetwork reads a CIDR or a single address. IPv4-mapped IPv6 forms are
// turned into IPv4 so that they match the unmapped request addresses.
func parseNetwork(s string) (netip.Prefix, string) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Sprintf("%q has bits set after the /%d; did you mean %s?", s, p.Bits(), p.Masked())
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p, ""
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Sprintf("%q has an IPv6 zone; networks are written without one", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), ""
	}
	return netip.Prefix{}, fmt.Sprintf("%q is not a CIDR or IP address", s)
}

func nameSet(list []string, at, what string, bad func(path, format string, args ...any)) (map[string]struct{}, []string) {
	if len(list) == 0 {
		return nil, nil
	}
	set := make(map[string]struct{}, len(list))
	var kept []string
	for j, n := range list {
		if strings.TrimSpace(n) == "" {
			bad(fmt.Sprintf("%s[%d]", at, j), "empty %s name", what)
			continue
		}
		if _, dup := set[n]; !dup {
			kept = append(kept, n)
		}
		set[n] = struct{}{}
	}
	return set, kept
}

func clonePolicy(p Policy) Policy {
	out := Policy{Default: p.Default, Rules: make([]Rule, len(p.Rules))}
	if p.Rules == nil {
		out.Rules = nil
	}
	for i, r := range p.Rules {
		r.Hosts = slices.Clone(r.Hosts)
		r.Paths = slices.Clone(r.Paths)
		r.Methods = slices.Clone(r.Methods)
		r.Networks = slices.Clone(r.Networks)
		r.Users = slices.Clone(r.Users)
		r.Groups = slices.Clone(r.Groups)
		r.Factors = slices.Clone(r.Factors)
		if r.WebAuthn != nil {
			w := *r.WebAuthn
			w.AAGUIDs = slices.Clone(w.AAGUIDs)
			if w.Synced != nil {
				v := *w.Synced
				w.Synced = &v
			}
			r.WebAuthn = &w
		}
		if r.TrustedDevice != nil {
			v := *r.TrustedDevice
			r.TrustedDevice = &v
		}
		out.Rules[i] = r
	}
	return out
}
