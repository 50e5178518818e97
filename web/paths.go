package web

import (
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/policy"
)

// A request is judged by the path its upstream will act on, in every
// reading a common upstream could give it (policy.Readings): it passes only
// if every reading passes. What is judged is exactly what is sent: in proxy
// mode the escaped path ReverseProxy puts on the upstream's request line
// (r.URL.EscapedPath(), which SetURL appends to the target's base path);
// in forward-auth mode the path of the URL the front proxy asks about.

// pathOptions is how an app reads paths; an alias so that the upstream
// struct can carry it without importing policy.
type pathOptions = policy.PathOptions

// question is what one decision is about: a request as the app behind
// keygate will act on it, and who asks. The gate, forward-auth, the
// portal's next step and the admin guard all fill one in and call decide:
// one way to build a policy.Request, one way to judge its readings.
type question struct {
	pol     *policy.Compiled // the rules to judge by
	up      *upstream        // the host's upstream; nil: the safe path defaults
	host    string           // lower case, without port
	path    string           // escaped, without query, as the app receives it
	method  string
	ip      netip.Addr
	subject policy.Subject
	now     time.Time
	// own: path is keygate's own (the admin area under the reserved
	// prefix), read like any other path but not refused for being
	// keygate's: there it is the point, not a way around the gate.
	own bool
	// ask: the person asked to be always asked for a second factor
	// (authn.Session.AlwaysAsk): the factors to offer where a one_factor
	// rule would let the password alone pass; nil = not asked (askOf).
	ask []string
}

// request is the one constructor of a policy.Request. A POST is judged as
// every method the rules name too (an app may read "_method"), unless the
// upstream says method_override: false.
func (q *question) request() policy.Request {
	return policy.Request{Host: q.host, Method: q.method, IP: q.ip,
		Overridable: q.method == http.MethodPost && (q.up == nil || !q.up.paths.NoMethodOverride)}
}

// decide judges q: the strictest decision over every reading of its path
// and every method the app may act on. Refusals come before any rule: the
// reserved prefix in any spelling (policy.ErrReserved, 404), a path no
// honest client sends (a *policy.PathError, 400), a method some stack
// would read otherwise (400). rs are the readings of q.path when the
// caller has them already (the gate reads the path before it looks a
// session up, so a refused path costs no lookup); nil: decide reads them.
// They are a parameter, not a field of q, so that the caller's buffer
// stays on its stack: a plain path allocates nothing.
func decide(q *question, rs []policy.Reading) (policy.Decision, error) {
	if rs == nil {
		var buf [policy.MaxReadings]policy.Reading
		var err error
		if q.own {
			rs, err = policy.AppendReadings(buf[:0], q.path, pathOptions{})
		} else {
			rs, err = readings(q.up, q.path, buf[:0])
		}
		if err != nil {
			return policy.Decision{}, err
		}
	}
	if !policy.ValidMethod(q.method) {
		// "delete" is an unknown method to the policy and DELETE to
		// Werkzeug or Symfony, which upper-case what they receive.
		return policy.Decision{}, errBadMethod
	}
	var h *policy.Host
	if q.up != nil {
		h = q.up.policyHost(q.pol)
	}
	d := q.pol.EvaluateReadingsAt(h, q.request(), rs, q.subject, q.now)
	if q.ask != nil && d.Outcome == policy.Allow && d.Action == policy.ActionOneFactor && !hasSecondFactor(&q.subject) {
		// Only a one_factor allow tightens: bypass stays open (there is
		// nobody to ask), deny stays deny, two_factor rules ask already.
		d.Outcome, d.Reason, d.Acceptable = policy.Challenge, policy.ReasonSecondFactor, q.ask
	}
	return d, nil
}

// policyHost is u's host resolved against pol (policy.Host), so that the
// gate hashes a request's host once, to find the upstream, and not a
// second time in the policy. It is kept per upstream and resolved again
// after a policy swap, on the first request that sees the new policy: one
// allocation per swap, none per request. A handle of another policy, or one
// resolved for another host (q.host is always the upstream's own host,
// where this is called), is never used by the policy: it looks the host up
// itself instead (policy.EvaluateAt).
func (u *upstream) policyHost(pol *policy.Compiled) *policy.Host {
	if h := u.resolved.Load(); h.Of(pol) {
		return h
	}
	h := pol.ResolveHost(u.host)
	u.resolved.Store(h)
	return h
}

// readings appends the readings of rawPath, as up's app reads paths, to
// dst: policy.ErrReserved for keygate's prefix in any spelling, a
// *policy.PathError for a refused form. A plain path costs one pass over
// its bytes and no allocation.
func readings(up *upstream, rawPath string, dst []policy.Reading) ([]policy.Reading, error) {
	var o pathOptions
	if up != nil {
		o = up.paths
	}
	return policy.ReadPath(dst, rawPath, o)
}

// subjectOf is who a session is to the policy.
func subjectOf(sess *authn.Session) policy.Subject {
	if sess == nil {
		return policy.Subject{}
	}
	subj := policy.Subject{Authenticated: true, User: sess.Username, Groups: sess.Groups, Proofs: sess.Proofs}
	for i := range sess.Proofs {
		if sess.Proofs[i].Kind == authn.ProofDevice {
			subj.TrustedDevice = true
		}
	}
	return subj
}

// rawPathOf is the path part of a request URI as sent (path and query).
func rawPathOf(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		return uri[:i]
	}
	return uri
}
