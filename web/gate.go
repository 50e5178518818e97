package web

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/policy"
)

// Identity headers set for the upstream; part of the external contract.
const (
	HeaderUser    = "Remote-User"
	HeaderEmail   = "Remote-Email"
	HeaderGroups  = "Remote-Groups"
	HeaderName    = "Remote-Name"
	HeaderFactors = "Remote-Factors"
)

// gate is the proxy hot path: every request that is not for keygate itself.
// It must stay free of disk I/O: the session comes from memory, the policy
// is a compiled matcher behind an atomic pointer. What it does per request
// besides forwarding: parse the peer address and the session cookie
// without allocating, one session lookup, one policy evaluation, one
// pre-resolved counter, and one buffered access line when those are on.
func (s *Server) gate(c *gin.Context) {
	// One clock reading serves the policy, the session's idle check and
	// the start of the access line and latency: a reading costs up to
	// 100 ns on virtual machines.
	now := s.now()
	r := c.Request
	cl := s.clientOf(c)
	id := s.requestID(r.Header, cl.trusted)
	host := hostOnly(r.Host)
	up := s.upstream(host)
	sess, d, err := s.pass(c, up, host, cl, id, now)
	if err != nil {
		s.fail(c, err)
	}

	var hm *hostMetrics
	if up != nil {
		hm = up.m
	} else if s.metrics != nil {
		hm = s.metrics.other
	}
	al := s.access.Load()
	if hm == nil && al == nil {
		return
	}
	end := s.now()
	if hm != nil {
		hm.count(d)
		if d == decAllow {
			hm.latency.Observe(end.Sub(now).Seconds())
		}
	}
	if al != nil {
		e := accessEntry{start: now, id: id, method: r.Method, host: r.Host, path: r.URL.Path, ip: cl.ipStr,
			decision: decisionNames[d], status: c.Writer.Status(), bytes: max(c.Writer.Size(), 0)}
		if sess != nil {
			e.user = sess.Username
		}
		al.write(&e, end)
	}
}

// pass decides on a request and answers it: forwarded, challenged or
// refused (the error, which the gate renders).
func (s *Server) pass(c *gin.Context, up *upstream, host string, cl clientInfo, id string, now time.Time) (*authn.Session, decision, error) {
	r := c.Request
	// Judge the path the upstream will receive: ReverseProxy's SetURL puts
	// EscapedPath on its request line (after the target's base path), in
	// every reading the app could give it (paths.go). A plain path is one
	// evaluation and no allocation, as before readings.
	var buf [policy.MaxReadings]policy.Reading
	raw := r.URL.EscapedPath()
	rs, err := readings(up, raw, buf[:0])
	if errors.Is(err, policy.ErrReserved) {
		// The reserved prefix is never forwarded, in any spelling, even
		// when no portal route matched.
		return nil, decRefused, err
	}
	if up == nil {
		return nil, decRefused, errUnknownHost
	}
	if err != nil {
		return nil, decRefused, err
	}
	sess := s.sessionAt(r, now)
	q := question{pol: s.policy.Load(), up: up, host: host, path: raw, method: r.Method, ip: cl.ip,
		subject: subjectOf(sess), now: now, ask: s.askOf(sess)}
	d, err := decide(&q, rs)
	if err != nil {
		return sess, decRefused, err
	}
	switch d.Outcome {
	case policy.Allow:
		err = s.forward(c, up, sess, cl.ipStr, id)
	case policy.Challenge:
		err = s.challenge(c, d)
	default:
		err = errForbidden
	}
	return sess, decisionOf(d.Outcome), err
}

// forward sends an allowed request upstream with identity headers we vouch
// for and nothing the client made up.
func (s *Server) forward(c *gin.Context, up *upstream, sess *authn.Session, clientIP, id string) error {
	if !s.readUpstreamBody(c, up) { // slow bodies hold no upstream connection (body.go)
		return nil // answered there
	}
	r := c.Request
	if isH2CUpgrade(r.Header) {
		// See isH2CUpgrade: the app would get a connection the gate no
		// longer sees. WebSocket and other upgrades pass.
		return errH2CUpgrade
	}
	// The values for the upstream, in vouchedHeaders' order, handed to
	// the Rewrite function in one slice (see vouchedKey).
	n := 5
	if sess != nil {
		n = len(vouchedHeaders)
	}
	v := make([]string, n)
	v[0], v[1], v[2], v[3], v[4] = clientIP, r.Host, s.scheme(r), id, clientIP
	if sess != nil {
		v[5], v[6], v[7], v[8], v[9] = sess.Username, sess.Email, strings.Join(sess.Groups, ","), sess.DisplayName, factorList(sess.Proofs)
	}
	r.Header[vouchedKey] = v
	up.proxy.ServeHTTP(c.Writer, r)
	return nil
}

// factorList names the factors of a session for Remote-Factors: the
// password and second factors, once each, not keygate's own markers.
func factorList(ps []policy.Proof) string {
	if len(ps) == 1 {
		return ps[0].Kind // the common case, without building a string
	}
	if len(ps) == 2 && ps[0].Kind == policy.FactorPassword {
		// The other common case, a password and one second factor:
		// a constant, not a string built on every request.
		if l, ok := passwordAnd[ps[1].Kind]; ok {
			return l
		}
	}
	var b strings.Builder
	for i, p := range ps {
		if p.Kind != policy.FactorPassword && !authn.IsSecondFactor(p.Kind) {
			continue
		}
		seen := false
		for _, q := range ps[:i] {
			seen = seen || q.Kind == p.Kind
		}
		if seen {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.Kind)
	}
	return b.String()
}

// passwordAnd is factorList's answer for a password and one more proof.
var passwordAnd = map[string]string{
	policy.FactorWebAuthn: policy.FactorPassword + "," + policy.FactorWebAuthn,
	policy.FactorTOTP:     policy.FactorPassword + "," + policy.FactorTOTP,
	policy.FactorEmail:    policy.FactorPassword + "," + policy.FactorEmail,
	policy.FactorRecovery: policy.FactorPassword + "," + policy.FactorRecovery,
	policy.FactorPassword: policy.FactorPassword,
	authn.ProofDevice:     policy.FactorPassword,
}

// challenge sends a browser to the portal (302) and tells API clients where
// to go (401 JSON with login_url).
func (s *Server) challenge(c *gin.Context, d policy.Decision) error {
	r := c.Request
	orig := s.scheme(r) + "://" + r.Host + r.URL.RequestURI()
	login := portalPrefix + "login?rd=" + url.QueryEscape(orig)
	if wantsJSON(r) {
		return challengeError(d, s.scheme(r)+"://"+r.Host+login)
	}
	status := http.StatusFound
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		status = http.StatusSeeOther // the portal is a GET page, whatever the original method
		s.parkForm(c, orig)
	}
	c.Header("Cache-Control", "no-store")
	c.Redirect(status, login)
	c.Abort()
	return nil
}

// challengeError is a challenge as an API client reads it: 401, what is
// missing (a sign-in, or a second factor and which ones do) and login_url.
func challengeError(d policy.Decision, login string) *Error {
	if d.Reason == policy.ReasonSignIn {
		return errSignInRequired.with(map[string]any{"login_url": login})
	}
	return errFactorRequired.with(map[string]any{"login_url": login, "factors": d.Acceptable})
}
