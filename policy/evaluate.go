package policy

import (
	"net/netip"
	"strings"
	"time"
)

// criterion names the first check a rule failed. Evaluate and Explain both
// go through rule.check, so they cannot disagree about which rule applies.
type criterion uint8

const (
	critNone     criterion = iota // every criterion matched
	critHosts                     // (Explain only; Evaluate's index already settled hosts)
	critMethods                   //
	critPaths                     //
	critNetworks                  //
	critSubjects                  // signed in, but neither user nor groups listed
	critIdentity                  // everything else matched; users/groups need a signed-in subject
)

func (c criterion) String() string {
	switch c {
	case critHosts:
		return "hosts"
	case critMethods:
		return "methods"
	case critPaths:
		return "paths"
	case critNetworks:
		return "networks"
	case critSubjects, critIdentity:
		return "subjects"
	}
	return ""
}

// prepared is the request in the form rules compare against, computed once
// per evaluation rather than once per rule.
type prepared struct {
	path    string     // "" becomes "/"
	ip      netip.Addr // as given; see matchNetwork
	method  uint32     // methodBit of the method
	pathBit uint64     // pathBit of path, for the rule filters
}

func prepare(r *Request) prepared {
	return prepareWith(r, methodBit(r.Method))
}

// prepareWith is small enough to inline into Evaluate, which saves a copy of
// the struct on every request; methodBit, a switch, is called beside it.
func prepareWith(r *Request, method uint32) prepared {
	path := r.Path
	if path == "" {
		path = "/"
	}
	return prepared{path: path, ip: r.IP, method: method, pathBit: pathBit(path)}
}

// check tests the criteria other than hosts, cheapest first. Users and
// groups come last: for an anonymous subject they are the one criterion that
// cannot be decided, and that only matters once everything else matched.
func (r *rule) check(pr *prepared, s *Subject) criterion {
	if r.methods != 0 && r.methods&pr.method == 0 {
		return critMethods
	}
	if len(r.paths) > 0 && !r.matchPath(pr.path) {
		return critPaths
	}
	if len(r.networks) > 0 && !r.matchNetwork(pr.ip) {
		return critNetworks
	}
	if !r.hasSubjects() {
		return critNone
	}
	if !s.Authenticated {
		return critIdentity
	}
	if r.matchSubject(s) {
		return critNone
	}
	return critSubjects
}

func (r *rule) matchPath(path string) bool {
	for i := range r.paths {
		if r.paths[i].match(path) {
			return true
		}
	}
	return false
}

func (r *rule) matchNetwork(ip netip.Addr) bool {
	// Compiled prefixes are unmapped IPv4 or plain IPv6, and Contains
	// refuses zoned addresses, so the address is brought to that form. Done
	// here rather than per request: most requests never reach a network
	// rule. A zero address (unknown source) is in no prefix.
	ip = ip.Unmap().WithZone("")
	for _, p := range r.networks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (r *rule) matchSubject(s *Subject) bool {
	if _, ok := r.users[s.User]; ok {
		return true
	}
	if r.groups != nil {
		for _, g := range s.Groups {
			if _, ok := r.groups[g]; ok {
				return true
			}
		}
	}
	return false
}

// matchHost is the hosts criterion tested rule by rule, for a host in
// stored form. Evaluate never calls it (the host index answers for all rules
// at once); Explain does, and the tests hold the two to the same answers.
func (r *rule) matchHost(host string) bool {
	if !r.hasHosts() {
		return true
	}
	for _, e := range r.exactHosts {
		if host == e {
			return true
		}
	}
	for _, w := range r.wildHosts {
		if len(host) > len(w) && strings.HasSuffix(host, w) && host[len(host)-len(w)-1] == '.' {
			return true
		}
	}
	return false
}

// Evaluate decides a request. It is a pure function of the compiled policy
// and its arguments, safe for concurrent use, and allocates nothing. A nil
// *Compiled denies everything: failing closed is the only safe answer when
// no policy was ever loaded.
func (c *Compiled) Evaluate(r Request, s Subject, now time.Time) Decision {
	if c == nil {
		return denyAll
	}
	// decision's body, written out: the rule's Decision head is copied
	// once, straight into the result, instead of out of a callee's.
	rl, anonymous := c.match(c.hosts.lookup(r.Host), &r, &s)
	d := rl.head
	d.Outcome, d.Reason = rl.verdict(anonymous, &s, now)
	return d
}

// EvaluateAt is Evaluate with the request's host resolved beforehand
// (ResolveHost): it skips the host look-up, a quarter of Evaluate's time
// with a thousand rules. h is used only when it was resolved by c for
// r.Host; any other h, nil included, is looked up as Evaluate does, so the
// answer is always Evaluate's.
func (c *Compiled) EvaluateAt(h *Host, r Request, s Subject, now time.Time) Decision {
	if c == nil {
		return denyAll
	}
	rl, anonymous := c.match(c.candidates(h, r.Host), &r, &s) // as in Evaluate
	d := rl.head
	d.Outcome, d.Reason = rl.verdict(anonymous, &s, now)
	return d
}

// denyAll is the decision of a nil policy.
var denyAll = Decision{Outcome: Deny, Reason: ReasonDenied, RuleIndex: -1, RuleName: "default", Action: ActionDeny}

// decision is the decision of the first matching candidate rule (or the
// default), for the readings of a path (strictest).
func (c *Compiled) decision(cands []int32, r *Request, s *Subject, now time.Time) Decision {
	rl, anonymous := c.match(cands, r, s)
	d := rl.head
	d.Outcome, d.Reason = rl.verdict(anonymous, s, now)
	return d
}

// match walks the candidate rules of the request's host (ascending indices
// into c.rules) and returns the first that matches, c.def when none does,
// and whether it matched all but its users/groups for an anonymous
// subject (needIdentity). It returns the rule, not the decision: the
// callers build the decision once, in their own result, instead of
// copying it out of a callee.
func (c *Compiled) match(cands []int32, r *Request, s *Subject) (rl *rule, anonymous bool) {
	pr := prepareWith(r, methodBit(r.Method))
	for _, i := range cands {
		// Most candidates fail on method or path; the filter says so
		// from a small array without touching the rule.
		if f := &c.filters[i]; f.methods&pr.method == 0 || f.paths&pr.pathBit == 0 {
			continue
		}
		rl := &c.rules[i]
		switch rl.check(&pr, s) {
		case critNone:
			return rl, false
		case critIdentity:
			return rl, true
		}
	}
	return &c.def, false
}

// makeHead builds the part of a decision that names the rule, once at
// compile time so that deciding is a copy and two assignments.
func (r *rule) makeHead() Decision {
	d := Decision{RuleIndex: r.index, RuleName: r.name, Action: r.actionName}
	if r.action == actTwoFactor {
		d.Acceptable, d.MaxAge, d.TrustedDevice = r.acceptable, r.maxAge, r.trusted
	}
	return d
}

// needIdentity is the answer for a rule that matched everything but its
// users/groups, for a subject nobody has identified yet: sign in first,
// then the rules are evaluated again (Authelia does the same).
func (r *rule) needIdentity() Decision {
	d := r.head
	d.Outcome, d.Reason = Challenge, ReasonSignIn
	return d
}

// decide applies the matched rule's action to the subject.
func (r *rule) decide(s *Subject, now time.Time) Decision {
	d := r.head
	d.Outcome, d.Reason = r.verdict(false, s, now)
	return d
}

// verdict is decide's outcome and reason alone (or needIdentity's, for a
// rule that matched an anonymous subject but for its users/groups): two
// words in registers, so that the hot path copies the rule's Decision head
// once, into its own result, rather than once per call level.
func (r *rule) verdict(anonymous bool, s *Subject, now time.Time) (Outcome, Reason) {
	if anonymous {
		return Challenge, ReasonSignIn
	}
	switch r.action {
	case actBypass:
		return Allow, ReasonNone
	case actOneFactor:
		if s.Authenticated {
			return Allow, ReasonNone
		}
		return Challenge, ReasonSignIn
	case actTwoFactor:
		if !s.Authenticated {
			return Challenge, ReasonSignIn
		}
		if why := r.secondFactor(s, now, nil); why != ReasonNone {
			return Challenge, why
		}
		return Allow, ReasonNone
	}
	// actDeny; an unknown action cannot survive Compile, but deny is the
	// safe reading.
	return Deny, ReasonDenied
}

// secondFactorDetail is what secondFactor found, for Explain to put into
// words.
type secondFactorDetail struct {
	proof    int           // index of the proof that satisfied the rule, -1 if none did
	byDevice bool          // a remembered device stood in for the second factor
	freshest time.Duration // age of the youngest acceptable but stale proof
	lack     webauthnLack  // what the first refused WebAuthn proof lacked
}

// secondFactor says whether the subject holds a second factor the rule
// accepts (ReasonNone) and, if not, the most useful thing to ask for. A
// proof of the right kind that is merely too old (ReasonStale) beats a
// WebAuthn proof of the wrong sort (ReasonWebAuthn): re-doing what one has
// is the shorter way. Evaluate passes a nil detail; Explain passes one and
// gets the particulars from the very same walk.
func (r *rule) secondFactor(s *Subject, now time.Time, detail *secondFactorDetail) Reason {
	var (
		stale    bool
		freshest time.Duration
		lack     webauthnLack
	)
	for i := range s.Proofs {
		p := &s.Proofs[i]
		bit := r.kinds.bit(p.Kind)
		if bit == 0 || r.factors&bit == 0 {
			continue
		}
		if p.Kind == FactorWebAuthn && r.webauthn != nil {
			if l := r.webauthn.refuses(p); l != 0 {
				if lack == 0 {
					lack = l
				}
				continue
			}
		}
		if r.maxAge > 0 {
			if age := now.Sub(p.At); age > r.maxAge {
				if !stale || age < freshest {
					freshest = age
				}
				stale = true
				continue
			}
		}
		if detail != nil {
			*detail = secondFactorDetail{proof: i}
		}
		return ReasonNone
	}
	if detail != nil {
		*detail = secondFactorDetail{proof: -1, freshest: freshest, lack: lack}
	}
	switch {
	case s.TrustedDevice && r.trusted:
		if detail != nil {
			detail.byDevice = true
		}
		return ReasonNone
	case stale:
		return ReasonStale
	case lack != 0:
		return ReasonWebAuthn
	}
	return ReasonSecondFactor
}

// What a WebAuthn proof lacks, as bits so that Explain can name each.
type webauthnLack uint8

const (
	lackAttestation webauthnLack = 1 << iota
	lackModel
	lackUV
	lackNotSynced
)

func (w *webauthnReq) refuses(p *Proof) webauthnLack {
	var l webauthnLack
	if w.attested && !p.Attested {
		l |= lackAttestation
	}
	if len(w.aaguids) > 0 && !w.allowsModel(p.AAGUID) {
		l |= lackModel
	}
	if w.uvRequired && !p.UserVerified {
		l |= lackUV
	}
	if w.refuseSynced && p.BackupEligible {
		l |= lackNotSynced
	}
	return l
}

func (w *webauthnReq) allowsModel(aaguid string) bool {
	for _, a := range w.aaguids {
		if strings.EqualFold(a, aaguid) {
			return true
		}
	}
	return false
}
