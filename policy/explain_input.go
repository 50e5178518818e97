package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// ExplainInput is a request to explain, as an admin types it: what the
// admin page's "test a request" box, POST /.keygate/api/admin/explain and
// `keygate policy explain` all send. The answer is the live gate's for a
// session with the given user, groups and factors.
type ExplainInput struct {
	// User is the signed-in user ("" = nobody signed in).
	User string `json:"user"`
	// Groups of the user. Omitted (null) = the user's groups from the
	// store, as the gate would see them after a fresh sign-in (the caller
	// fills them in; ExplainRequest takes Groups as given).
	Groups []string `json:"groups"`
	// Method is the HTTP method (default GET; "get" is read as GET).
	Method string `json:"method"`
	// URL is the absolute URL requested.
	URL string `json:"url"`
	// SourceIP is the client address (as the gate works it out).
	SourceIP string `json:"source_ip"`
	// Factors are the second factors the session has (webauthn, totp,
	// email, recovery, …); the password is implied by User.
	Factors []string `json:"factors"`
	// FactorAge is how long ago those factors were verified (default 0).
	FactorAge string `json:"factor_age"`
	// TrustedDevice: the browser is a remembered device.
	TrustedDevice bool `json:"trusted_device"`
}

// ErrExplainInput is what every *InputError is (errors.Is).
var ErrExplainInput = errors.New("explain")

// InputError says which field of an ExplainInput cannot be used and why.
type InputError struct {
	Field   string // url, method, source_ip, factors, factor_age
	Message string // safe to show: names the field and what is wanted
}

func (e *InputError) Error() string { return ErrExplainInput.Error() + ": " + e.Message }

// Is makes every InputError match ErrExplainInput.
func (e *InputError) Is(target error) bool { return target == ErrExplainInput }

func inputErr(field, format string, args ...any) error {
	return &InputError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// ExplainRequest explains in against c exactly as the gate would decide it:
// the host is folded and stripped of its port, the path is judged in every
// reading an upstream could give it (with the safe defaults: an app that
// routes case-insensitively and takes no ";" parameters) and the reading
// that decides is explained; a path the gate refuses outright (400, or the
// reserved prefix) is an *InputError that says so. secondFactor says which
// factor names are second factors (the registered kinds; nil = the built-in
// ones). now is the time the factors are measured against.
func ExplainRequest(c *Compiled, in ExplainInput, now time.Time, secondFactor func(kind string) bool) (Explanation, error) {
	if secondFactor == nil {
		secondFactor = func(k string) bool { return slices.Contains(c.kinds.kinds, k) }
	}
	u, err := url.Parse(strings.TrimSpace(in.URL))
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return Explanation{}, inputErr("url", "url %q is not an absolute http(s) URL such as https://app.example.com/path", in.URL)
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	var buf [MaxReadings]Reading
	readings, err := ReadPath(buf[:0], p, PathOptions{})
	if err != nil {
		if errors.Is(err, ErrReserved) {
			return Explanation{}, inputErr("url", "path %q is keygate's own prefix /.keygate/ (in some spelling); it is never forwarded to an app", p)
		}
		why := "it is malformed"
		var pe *PathError
		if errors.As(err, &pe) {
			why = pe.Problem.String()
		}
		return Explanation{}, inputErr("url", "path %q is refused (400) before the policy: %s", p, why)
	}
	// Admins type "get" and mean GET (the gate refuses a lower-case
	// method outright).
	method := strings.ToUpper(strings.TrimSpace(in.Method))
	if method == "" {
		method = "GET"
	}
	if !ValidMethod(method) {
		return Explanation{}, inputErr("method", "method %q is not an HTTP method such as GET or POST", in.Method)
	}
	// A POST is judged as every method the rules name as well (an app
	// may read "_method"), as the gate does for an upstream that does not
	// say method_override: false.
	req := Request{Host: HostOnly(u.Host), Method: method, Overridable: method == "POST"}
	if in.SourceIP != "" {
		if req.IP, err = netip.ParseAddr(strings.TrimSpace(in.SourceIP)); err != nil {
			return Explanation{}, inputErr("source_ip", "source_ip %q is not an IP address", in.SourceIP)
		}
		req.IP = req.IP.Unmap()
	}
	var age time.Duration
	if in.FactorAge != "" {
		if age, err = time.ParseDuration(in.FactorAge); err != nil || age < 0 {
			return Explanation{}, inputErr("factor_age", "factor_age %q is not a duration such as 20m", in.FactorAge)
		}
	}
	subj := Subject{TrustedDevice: in.TrustedDevice}
	if user := strings.TrimSpace(in.User); user != "" {
		subj.Authenticated, subj.User, subj.Groups = true, strings.ToLower(user), in.Groups
		subj.Proofs = []Proof{{Kind: FactorPassword, At: now.Add(-age)}}
		for _, f := range in.Factors {
			f = strings.TrimSpace(f)
			switch {
			case f == "" || f == FactorPassword:
			case secondFactor(f):
				subj.Proofs = append(subj.Proofs, Proof{Kind: f, At: now.Add(-age)})
			default:
				return Explanation{}, inputErr("factors", "unknown factor %q; use webauthn, totp, email or recovery", f)
			}
		}
	} else if len(in.Factors) > 0 {
		return Explanation{}, inputErr("factors", "factors without a user; name the signed-in user")
	}
	return c.ExplainReadings(req, readings, subj, now), nil
}
