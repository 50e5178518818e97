package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/policy"
)

// ExplainInput is a request to explain: what the admin page's "test a
// request" box, POST /.keygate/api/admin/explain and `keygate policy
// explain` all send. The answer is the live proxy's for a session with the
// given user, groups and factors.
type ExplainInput struct {
	// User is the signed-in user ("" = nobody signed in).
	User string `json:"user"`
	// Groups of the user. Omitted (null) = the user's groups from the
	// store, as the proxy would see them after a fresh sign-in.
	Groups []string `json:"groups"`
	// Method is the HTTP method (default GET), compared exactly like the
	// proxy does.
	Method string `json:"method"`
	// URL is the absolute URL requested.
	URL string `json:"url"`
	// SourceIP is the client address (as the proxy works it out).
	SourceIP string `json:"source_ip"`
	// Factors are the second factors the session has (webauthn, totp,
	// email, recovery); the password is implied by User.
	Factors []string `json:"factors"`
	// FactorAge is how long ago those factors were verified (default 0).
	FactorAge string `json:"factor_age"`
	// TrustedDevice: the browser is a remembered device.
	TrustedDevice bool `json:"trusted_device"`
}

// ErrExplainInput marks input ExplainPolicy cannot use; the message says
// which field and why.
var ErrExplainInput = errors.New("explain")

// ExplainPolicy explains in against c exactly as the proxy would decide it:
// the host is folded and stripped of its port, the path is judged in every
// reading an upstream could give it (with the safe defaults: an app that
// routes case-insensitively and takes no ";" parameters) and the reading
// that decides is explained; a path the proxy refuses outright (400, or the
// reserved prefix) is an input error that says so. now is the time the
// factors are measured against.
func ExplainPolicy(c *policy.Compiled, in ExplainInput, now time.Time) (policy.Explanation, error) {
	u, err := url.Parse(strings.TrimSpace(in.URL))
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return policy.Explanation{}, fmt.Errorf("%w: url %q is not an absolute http(s) URL such as https://app.example.com/path", ErrExplainInput, in.URL)
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	var buf [policy.MaxReadings]policy.Reading
	readings, e := readPath(nil, p, buf[:0])
	if e != nil {
		if e.Status == http.StatusNotFound {
			return policy.Explanation{}, fmt.Errorf("%w: path %q is keygate's own prefix /.keygate/ (in some spelling); it is never forwarded to an app", ErrExplainInput, p)
		}
		why := "it is malformed"
		var pe *policy.PathError
		if errors.As(e.Cause, &pe) {
			why = pe.Problem.String()
		}
		return policy.Explanation{}, fmt.Errorf("%w: path %q is refused (400) before the policy: %s", ErrExplainInput, p, why)
	}
	// Admins type "get" and mean GET (the gate refuses a lower-case
	// method outright).
	method := strings.ToUpper(strings.TrimSpace(in.Method))
	if method == "" {
		method = http.MethodGet
	}
	if !policy.ValidMethod(method) {
		return policy.Explanation{}, fmt.Errorf("%w: method %q is not an HTTP method such as GET or POST", ErrExplainInput, in.Method)
	}
	// A POST is judged as every method the rules name as well (an app
	// may read "_method"), as the gate does for an upstream that does not
	// say method_override: false.
	req := policy.Request{Host: hostOnly(u.Host), Method: method, Overridable: method == http.MethodPost}
	if in.SourceIP != "" {
		if req.IP, err = netip.ParseAddr(strings.TrimSpace(in.SourceIP)); err != nil {
			return policy.Explanation{}, fmt.Errorf("%w: source_ip %q is not an IP address", ErrExplainInput, in.SourceIP)
		}
		req.IP = req.IP.Unmap()
	}
	var age time.Duration
	if in.FactorAge != "" {
		if age, err = time.ParseDuration(in.FactorAge); err != nil || age < 0 {
			return policy.Explanation{}, fmt.Errorf("%w: factor_age %q is not a duration such as 20m", ErrExplainInput, in.FactorAge)
		}
	}
	subj := policy.Subject{TrustedDevice: in.TrustedDevice}
	if user := strings.TrimSpace(in.User); user != "" {
		subj.Authenticated, subj.User, subj.Groups = true, strings.ToLower(user), in.Groups
		subj.Proofs = []policy.Proof{{Kind: policy.FactorPassword, At: now.Add(-age)}}
		for _, f := range in.Factors {
			f = strings.TrimSpace(f)
			switch {
			case f == "" || f == policy.FactorPassword:
			case authn.IsSecondFactor(f):
				subj.Proofs = append(subj.Proofs, policy.Proof{Kind: f, At: now.Add(-age)})
			default:
				return policy.Explanation{}, fmt.Errorf("%w: unknown factor %q; use webauthn, totp, email or recovery", ErrExplainInput, f)
			}
		}
	} else if len(in.Factors) > 0 {
		return policy.Explanation{}, fmt.Errorf("%w: factors without a user; name the signed-in user", ErrExplainInput)
	}
	return c.ExplainReadings(req, readings, subj, now), nil
}

// explainAnswer is the API's answer: the explanation, the same as text,
// and whether keygate protects the host at all.
type explainAnswer struct {
	policy.Explanation
	Text      string `json:"text"`
	Protected bool   `json:"protected"`
	Version   int    `json:"version"`
}

func (s *Server) apiAdminExplain(c *gin.Context) {
	var in ExplainInput
	if err := decodeJSON(c, &in); err != nil {
		s.fail(c, err)
		return
	}
	ctx := c.Request.Context()
	if in.User != "" && in.Groups == nil {
		u, err := s.admin.Users.Get(ctx, in.User)
		switch {
		case err == nil:
			in.Groups = u.Groups
		case errors.Is(err, authn.ErrUserNotFound):
			// Explaining for someone who does not exist yet is fine:
			// without groups.
		default:
			s.fail(c, errf(http.StatusInternalServerError, "internal", "err.internal", err))
			return
		}
	}
	// The answer comes from the compiled policy the proxy uses this very
	// moment; the version number beside it is informational (an update
	// landing between the two reads can make it one off).
	cur, err := s.admin.Policies.Current(ctx)
	if err != nil {
		s.fail(c, policyError(policy.Policy{}, err))
		return
	}
	e, err := ExplainPolicy(s.policy.Load(), in, s.now())
	if err != nil {
		e := errf(http.StatusBadRequest, "bad_explain", "err.bad_explain", err)
		e.Extra = map[string]any{"detail": strings.TrimPrefix(err.Error(), ErrExplainInput.Error()+": ")}
		s.fail(c, e)
		return
	}
	writeJSON(c.Writer, http.StatusOK, explainAnswer{
		Explanation: e, Text: e.String(), Version: cur.Version,
		Protected: s.upstream(e.Request.Host) != nil,
	})
}
