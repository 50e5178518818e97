package admin

import (
	"fmt"
	"time"

	"github.com/keygate/keygate/policy"
)

// The admin area (the page /.keygate/admin and the API under
// /.keygate/api/admin/) sits behind one built-in rule that no policy can
// loosen: a member of an admin group, signed in with a second factor
// verified within MaxAge, no remembered device standing in for it.

// Paths of the admin area, as web serves them.
const (
	PagePath = policy.ReservedPrefix + "admin"
	APIPath  = policy.ReservedPrefix + "api/admin"
)

// areaSamples are sample paths of the admin area, for the check that a
// policy does not pretend to open it (AreaProblems).
var areaSamples = []string{PagePath, PagePath + "/users/alice", APIPath + "/policy"}

// Rule is the admin area's built-in rule as a compiled policy: members of
// groups, two_factor, max_age, no remembered devices; everyone else
// denied.
func Rule(groups []string, maxAge time.Duration) (*policy.Compiled, error) {
	if len(groups) == 0 {
		return nil, fmt.Errorf("admin: no admin groups configured, so nobody could be an admin")
	}
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	no := false
	c, err := policy.Compile(policy.Policy{
		Default: policy.ActionDeny,
		Rules: []policy.Rule{{
			Name: "keygate-admin", Groups: groups, Action: policy.ActionTwoFactor,
			MaxAge: policy.Duration(maxAge), TrustedDevice: &no,
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("admin: the admin area's rule: %w", err)
	}
	return c, nil
}

// AreaProblems lists the rules of p that read as if they opened the admin
// area: a rule whose paths name /.keygate/admin or the admin API (a pattern
// that matches those paths but not the same paths under another first
// segment, so "/**" does not count) and asks for less than the built-in
// rule: anything but deny, or two_factor without a max_age of at most
// maxAge, or with remembered devices allowed. keygate's own paths never
// reach the policy, so such a rule does nothing; it is refused so that
// nobody believes it does. The policy store runs it as its guard.
func AreaProblems(p policy.Policy, maxAge time.Duration) policy.ValidationErrors {
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	var out policy.ValidationErrors
	for i, r := range p.Rules {
		if len(r.Paths) == 0 || !loosens(r, maxAge) {
			continue
		}
		for j, pat := range r.Paths {
			if namesArea(pat) {
				out = append(out, policy.FieldError{
					Path: fmt.Sprintf("rules[%d].paths[%d]", i, j),
					Message: fmt.Sprintf("a rule that weakens the admin area: %q matches keygate's admin area, which always needs two factors with a second factor at most %s old; "+
						"keygate's own paths never reach the policy, so remove this path (or make the rule deny)", pat, maxAge),
				})
			}
		}
	}
	return out
}

// loosens says whether r asks for less than the built-in admin rule.
func loosens(r policy.Rule, maxAge time.Duration) bool {
	switch r.Action {
	case policy.ActionDeny:
		return false
	case policy.ActionTwoFactor:
		return r.MaxAge <= 0 || r.MaxAge.D() > maxAge || (r.TrustedDevice != nil && *r.TrustedDevice)
	}
	return true
}

// namesArea says whether a path pattern aims at the admin area: it
// matches one of its paths but not the same path with another first
// segment. A pattern that does not compile is Compile's problem to report.
func namesArea(pattern string) bool {
	c, err := policy.Compile(policy.Policy{Default: policy.ActionDeny, Rules: []policy.Rule{{Name: "probe", Paths: []string{pattern}, Action: policy.ActionBypass}}})
	if err != nil {
		return false
	}
	matches := func(path string) bool {
		return c.Evaluate(policy.Request{Host: "probe.invalid", Path: path, Method: "GET"}, policy.Subject{}, time.Time{}).RuleIndex == 0
	}
	for _, p := range areaSamples {
		sibling := "/keygate-probe" + p[len("/.keygate"):]
		if matches(p) && !matches(sibling) {
			return true
		}
	}
	return false
}
