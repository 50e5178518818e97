package web

import (
	"net/http"
	"net/url"
	"path"
	"strings"

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
// is a compiled matcher behind an atomic pointer.
func (s *Server) gate(c *gin.Context) {
	r := c.Request
	p := r.URL.Path
	if p == "/.keygate" || strings.HasPrefix(p, portalPrefix) {
		// The reserved prefix is never forwarded, even when no portal
		// route matched.
		s.fail(c, errf(http.StatusNotFound, "not_found", "err.not_found", nil))
		return
	}
	host := hostOnly(r.Host)
	up := s.upstream(host)
	if up == nil {
		s.fail(c, errf(http.StatusMisdirectedRequest, "unknown_host", "err.unknown_host", nil))
		return
	}
	evalPath, ok := policyPath(p)
	if !ok {
		s.fail(c, errf(http.StatusBadRequest, "bad_path", "err.bad_path", nil))
		return
	}
	ip := clientAddr(c)
	sess := s.session(r)
	d := s.policy.Load().Evaluate(policy.Request{Host: host, Path: evalPath, Method: r.Method, IP: ip}, subjectOf(sess), s.now())
	switch d.Outcome {
	case policy.Allow:
		s.forward(c, up, sess, ip.String())
	case policy.Challenge:
		s.challenge(c, d)
	default:
		s.fail(c, errf(http.StatusForbidden, "forbidden", "err.forbidden", nil))
	}
}

// policyPath gives the path the policy judges. Dot segments are refused
// outright: "/static/../admin" must not pass a "/static/**" bypass and then
// be resolved by the upstream to /admin. Repeated slashes are collapsed for
// matching because most upstreams collapse them too.
func policyPath(p string) (string, bool) {
	if p == "" || p[0] != '/' {
		return "", false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return "", false
		}
	}
	if strings.Contains(p, "//") {
		clean := path.Clean(p)
		if strings.HasSuffix(p, "/") && clean != "/" {
			clean += "/"
		}
		return clean, true
	}
	return p, true
}

// cookieID is the session ID the browser sent, or "".
func cookieID(r *http.Request) string {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return ""
	}
	return ck.Value
}

// session returns the live session named by the cookie, or nil. (Sessions
// from Lookup carry no ID; use cookieID to act on the session.)
func (s *Server) session(r *http.Request) *authn.Session {
	id := cookieID(r)
	if id == "" {
		return nil
	}
	sess, ok := s.sessions.Lookup(id)
	if !ok {
		return nil
	}
	return sess
}

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

// forward sends an allowed request upstream with identity headers we vouch
// for and nothing the client made up.
func (s *Server) forward(c *gin.Context, up *upstream, sess *authn.Session, clientIP string) {
	r := c.Request
	h := r.Header
	scrubInbound(h)
	stripOwnCookie(h)
	// The values ReverseProxy's Rewrite copies to the upstream request.
	h["X-Forwarded-For"] = []string{clientIP}
	h["X-Forwarded-Host"] = []string{r.Host}
	h["X-Forwarded-Proto"] = []string{s.scheme(r)}
	if sess != nil {
		h[HeaderUser] = []string{sess.Username}
		h[HeaderEmail] = []string{sess.Email}
		h[HeaderGroups] = []string{strings.Join(sess.Groups, ",")}
		h[HeaderName] = []string{sess.DisplayName}
		h[HeaderFactors] = []string{factorList(sess.Proofs)}
	}
	up.proxy.ServeHTTP(c.Writer, r)
}

// factorList names the factors of a session for Remote-Factors: the
// password and second factors, once each, not keygate's own markers.
func factorList(ps []policy.Proof) string {
	if len(ps) == 1 {
		return ps[0].Kind // the common case, without building a string
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

// challenge sends a browser to the portal (302) and tells API clients where
// to go (401 JSON with login_url).
func (s *Server) challenge(c *gin.Context, d policy.Decision) {
	r := c.Request
	orig := s.scheme(r) + "://" + r.Host + r.URL.RequestURI()
	login := portalPrefix + "login?rd=" + url.QueryEscape(orig)
	if wantsJSON(r) {
		e := errf(http.StatusUnauthorized, "authentication_required", "err.authentication_required", nil)
		if d.Reason != policy.ReasonSignIn {
			e.Code, e.Key = "second_factor_required", "err.second_factor_required"
			e.Extra = map[string]any{"factors": d.Acceptable}
		}
		if e.Extra == nil {
			e.Extra = map[string]any{}
		}
		e.Extra["login_url"] = s.scheme(r) + "://" + r.Host + login
		s.fail(c, e)
		return
	}
	status := http.StatusFound
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		status = http.StatusSeeOther // the portal is a GET page, whatever the original method
		s.parkForm(c, orig)
	}
	c.Header("Cache-Control", "no-store")
	c.Redirect(status, login)
	c.Abort()
}
