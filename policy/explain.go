package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Explanation is Explain's account of one evaluation, for admins (the admin
// page, `keygate policy explain`). It serialises to JSON as is; String
// renders it as text.
type Explanation struct {
	Request Request   `json:"request"`
	Subject Subject   `json:"subject"`
	At      time.Time `json:"at"`
	// Rules holds every rule up to and including the one that decided; all
	// of them when the default decided.
	Rules    []RuleTrace `json:"rules"`
	Decision Decision    `json:"decision"`
	// Satisfied says in words what let the request through (Allow only).
	Satisfied string `json:"satisfied,omitempty"`
	// Missing says in words what the subject lacks (Challenge), or why
	// nothing will do (Deny).
	Missing string `json:"missing,omitempty"`
	// Readings are the readings of the request's path that were judged
	// (ExplainReadings); Request.Path is the one that decided.
	Readings []Reading `json:"readings,omitempty"`
}

// RuleTrace is one rule's part in an Explanation.
type RuleTrace struct {
	Index   int    `json:"index"`
	Name    string `json:"name"`
	Action  string `json:"action"`
	Matched bool   `json:"matched"`
	// Criterion is the first criterion that failed: hosts, methods, paths,
	// networks or subjects. Empty when the rule matched.
	Criterion string `json:"criterion,omitempty"`
	// Why says it in words: "host app.example.com not in [admin.example.com]".
	Why string `json:"why"`
}

// Explain evaluates like Evaluate, but rule by rule and in words. It always
// reaches the same Decision as Evaluate; the tests hold it to that. It
// allocates freely and is not meant for the request path.
func (c *Compiled) Explain(r Request, s Subject, now time.Time) Explanation {
	s.Groups = slices.Clone(s.Groups)
	s.Proofs = slices.Clone(s.Proofs)
	e := Explanation{Request: r, Subject: s, At: now, Rules: []RuleTrace{}}
	if c == nil {
		e.Decision = c.Evaluate(r, s, now)
		e.Missing = "no policy is loaded, so every request is denied"
		return e
	}
	host := normRequestHost(r.Host)
	pr := prepare(&r)
	for i := range c.rules {
		rl := &c.rules[i]
		crit := critHosts
		if rl.matchHost(host) {
			crit = rl.check(&pr, &s)
		}
		t := RuleTrace{Index: i, Name: rl.name, Action: rl.actionName, Matched: crit == critNone, Criterion: crit.String()}
		switch crit {
		case critNone:
			t.Why = "matched"
			e.Rules = append(e.Rules, t)
			e.explainDecision(rl, now)
			return e
		case critIdentity:
			t.Why = fmt.Sprintf("the rest matched, but %s can only be checked for a signed-in user", rl.subjectsText())
			e.Rules = append(e.Rules, t)
			e.Decision = rl.needIdentity()
			e.Missing = fmt.Sprintf("sign-in, so that %s can be checked", rl.subjectsText())
			return e
		}
		t.Why = rl.why(crit, &r, host, &pr, &s)
		e.Rules = append(e.Rules, t)
	}
	e.explainDecision(&c.def, now)
	return e
}

// explainDecision sets Decision through rule.decide, the function Evaluate
// uses, and adds the words.
func (e *Explanation) explainDecision(rl *rule, now time.Time) {
	s := &e.Subject
	e.Decision = rl.decide(s, now)
	d := &e.Decision
	switch {
	case d.Outcome == Allow:
		switch rl.action {
		case actBypass:
			e.Satisfied = "nothing needed: the rule bypasses sign-in"
		case actOneFactor:
			e.Satisfied = "signed in as " + s.User
		default:
			var sf secondFactorDetail
			rl.secondFactor(s, now, &sf)
			if sf.byDevice {
				e.Satisfied = "signed in as " + s.User + "; a remembered device stands in for the second factor"
			} else {
				p := s.Proofs[sf.proof]
				e.Satisfied = fmt.Sprintf("signed in as %s; second factor %s %s", s.User, p.Kind, ago(now, p.At))
			}
		}
	case d.Outcome == Deny:
		if rl.index < 0 {
			e.Missing = "nothing will do: the default action denies the request"
		} else {
			e.Missing = fmt.Sprintf("nothing will do: rule %q denies the request", rl.name)
		}
	case d.Reason == ReasonSignIn:
		e.Missing = "sign-in (password)"
		if rl.action == actTwoFactor {
			e.Missing += ", then a second factor: " + rl.factorsText()
		}
	case d.Reason == ReasonStale:
		var sf secondFactorDetail
		rl.secondFactor(s, now, &sf)
		e.Missing = fmt.Sprintf("a second factor no older than %s: %s; the newest is %s old", rl.maxAge, rl.factorsText(), sf.freshest.Round(time.Second))
	case d.Reason == ReasonWebAuthn:
		var sf secondFactorDetail
		rl.secondFactor(s, now, &sf)
		e.Missing = fmt.Sprintf("a second factor: %s; the session's WebAuthn proof %s", rl.factorsText(), lackText(sf.lack))
	default:
		e.Missing = "a second factor: " + rl.factorsText()
		if s.TrustedDevice && !rl.trusted {
			if rl.maxAge > 0 {
				e.Missing += " (a remembered device does not count where max_age is set)"
			} else {
				e.Missing += " (a remembered device does not count here: trusted_device is false)"
			}
		}
	}
}

// why puts a failed criterion into words.
func (r *rule) why(c criterion, req *Request, host string, pr *prepared, s *Subject) string {
	switch c {
	case critHosts:
		if host == "" {
			host = `""`
		}
		return fmt.Sprintf("host %s not in %s", host, listText(r.hostsText))
	case critMethods:
		return fmt.Sprintf("method %s not in %s", req.Method, listText(r.methodList))
	case critPaths:
		return fmt.Sprintf("path %s does not match %s", pr.path, listText(r.pathsText))
	case critNetworks:
		ip := "unknown"
		if pr.ip.IsValid() {
			ip = pr.ip.Unmap().WithZone("").String()
		}
		nets := make([]string, len(r.networks))
		for i, p := range r.networks {
			nets[i] = p.String()
		}
		return fmt.Sprintf("source %s not in %s", ip, listText(nets))
	case critSubjects:
		var parts []string
		if r.users != nil {
			parts = append(parts, fmt.Sprintf("user %s not in users %s", s.User, listText(r.userList)))
		}
		if r.groups != nil {
			if len(s.Groups) == 0 {
				parts = append(parts, fmt.Sprintf("user %s has no groups, groups %s needed", s.User, listText(r.groupList)))
			} else {
				parts = append(parts, fmt.Sprintf("groups %s not in groups %s", listText(s.Groups), listText(r.groupList)))
			}
		}
		return strings.Join(parts, "; ")
	}
	return ""
}

func (r *rule) subjectsText() string {
	var parts []string
	if r.users != nil {
		parts = append(parts, "users "+listText(r.userList))
	}
	if r.groups != nil {
		parts = append(parts, "groups "+listText(r.groupList))
	}
	return strings.Join(parts, " / ")
}

// factorsText lists the acceptable factors with what WebAuthn must show.
func (r *rule) factorsText() string {
	t := oneOf(r.acceptable)
	if w := r.webauthn; w != nil && r.factors&r.kinds.bit(FactorWebAuthn) != 0 {
		var need []string
		if w.attested {
			need = append(need, "an attested hardware key")
		}
		if len(w.aaguids) > 0 {
			need = append(need, "of a model in "+listText(w.aaguids))
		}
		if w.uvRequired {
			need = append(need, "with user verification")
		}
		if w.refuseSynced {
			need = append(need, "not synced (not backup-eligible)")
		}
		if len(r.acceptable) == 1 {
			return t + " (" + strings.Join(need, ", ") + ")"
		}
		t += " (webauthn: " + strings.Join(need, ", ") + ")"
	}
	return t
}

func lackText(l webauthnLack) string {
	var parts []string
	if l&lackAttestation != 0 {
		parts = append(parts, "is not from an attested hardware key")
	}
	if l&lackModel != 0 {
		parts = append(parts, "is from a model not on the list")
	}
	if l&lackUV != 0 {
		parts = append(parts, "was made without user verification")
	}
	if l&lackNotSynced != 0 {
		parts = append(parts, "is from a synced (backup-eligible) credential")
	}
	return strings.Join(parts, ", ")
}

// listText renders a criterion's values; long lists are cut so that an
// explanation stays readable.
func listText(l []string) string {
	const limit = 8
	if len(l) > limit {
		return fmt.Sprintf("[%s, … %d more]", strings.Join(l[:limit], ", "), len(l)-limit)
	}
	return "[" + strings.Join(l, ", ") + "]"
}

func oneOf(l []string) string {
	switch len(l) {
	case 0:
		return "none"
	case 1:
		return l[0]
	}
	return "one of " + strings.Join(l[:len(l)-1], ", ") + " or " + l[len(l)-1]
}

func ago(now, t time.Time) string {
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		return "(in the future: " + (-d).String() + " ahead)"
	}
	return d.String() + " ago"
}

// String renders the explanation for a terminal.
func (e Explanation) String() string {
	var b strings.Builder
	r := e.Request
	method := r.Method
	if method == "" {
		method = "(no method)"
	}
	fmt.Fprintf(&b, "request: %s %s%s", method, r.Host, r.Path)
	if r.IP.IsValid() {
		fmt.Fprintf(&b, " from %s", r.IP)
	}
	b.WriteString("\nsubject: ")
	s := e.Subject
	if !s.Authenticated {
		b.WriteString("anonymous")
	} else {
		b.WriteString(s.User)
		if len(s.Groups) > 0 {
			b.WriteString(", groups " + listText(s.Groups))
		}
		for i, p := range s.Proofs {
			if i == 0 {
				b.WriteString(", factors: ")
			} else {
				b.WriteString("; ")
			}
			b.WriteString(p.Kind + " " + ago(e.At, p.At))
			if p.Kind == FactorWebAuthn {
				b.WriteString(proofFlags(p))
			}
		}
	}
	if s.TrustedDevice {
		b.WriteString(", remembered device")
	}
	b.WriteString("\n")
	d := e.Decision
	for _, t := range e.Rules {
		fmt.Fprintf(&b, "  rules[%d] %s (%s): ", t.Index, t.Name, t.Action)
		switch {
		case t.Matched:
			b.WriteString("matched\n")
		case t.Index == d.RuleIndex:
			// Decided without matching: users/groups await a sign-in.
			b.WriteString("undecided: " + t.Why + "\n")
		default:
			b.WriteString("no: " + t.Why + "\n")
		}
	}
	if d.RuleIndex < 0 {
		fmt.Fprintf(&b, "  default (%s): no rule matched\n", d.Action)
	}
	fmt.Fprintf(&b, "decision: %s", d.Outcome)
	if d.Reason != ReasonNone {
		fmt.Fprintf(&b, " (%s)", d.Reason)
	}
	if d.RuleIndex >= 0 {
		fmt.Fprintf(&b, " by rules[%d] %s", d.RuleIndex, d.RuleName)
	} else {
		b.WriteString(" by the default")
	}
	b.WriteString("\n")
	if e.Satisfied != "" {
		b.WriteString("satisfied: " + e.Satisfied + "\n")
	}
	if e.Missing != "" {
		b.WriteString("missing: " + e.Missing + "\n")
	}
	return b.String()
}

func proofFlags(p Proof) string {
	var f []string
	if p.Attested {
		f = append(f, "attested")
	}
	if p.AAGUID != "" {
		f = append(f, "aaguid "+p.AAGUID)
	}
	if p.UserVerified {
		f = append(f, "user verified")
	}
	if p.BackupEligible {
		f = append(f, "synced")
	}
	if len(f) == 0 {
		return ""
	}
	return " (" + strings.Join(f, ", ") + ")"
}
