package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/policy"
)

// The policy half of the admin API: the current version with its number as
// the ETag, updates that must name the version they started from
// (If-Match), checks that store nothing, versions, diffs and rollback.

// policyInput is a policy sent by an admin: YAML text (what the page's
// editor holds) or the policy as JSON, and why it changes.
type policyInput struct {
	YAML    *string         `json:"yaml"`
	Policy  json.RawMessage `json:"policy"`
	Comment string          `json:"comment"`
}

// problemJSON is one validation problem on the wire: the path in the
// policy and, for rule problems, which rule and which field.
type problemJSON struct {
	Path      string `json:"path"`
	Message   string `json:"message"`
	RuleIndex *int   `json:"rule_index,omitempty"`
	RuleName  string `json:"rule_name,omitempty"`
	Field     string `json:"field,omitempty"`
}

// invalidPolicy is the 422 answer listing every problem of a policy.
func invalidPolicy(p policy.Policy, problems policy.ValidationErrors) *Error {
	list := make([]problemJSON, 0, len(problems))
	for _, fe := range problems {
		pj := problemJSON{Path: fe.Path, Message: fe.Message}
		if rest, ok := strings.CutPrefix(fe.Path, "rules["); ok {
			if end := strings.IndexByte(rest, ']'); end > 0 {
				if i, err := strconv.Atoi(rest[:end]); err == nil {
					pj.RuleIndex = &i
					if i < len(p.Rules) {
						pj.RuleName = p.Rules[i].Name
					}
					pj.Field = strings.TrimPrefix(rest[end+1:], ".")
				}
			}
		} else if !strings.HasPrefix(fe.Path, "line ") {
			pj.Field = fe.Path
		}
		list = append(list, pj)
	}
	e := errf(http.StatusUnprocessableEntity, "invalid_policy", "err.invalid_policy", problems)
	e.Args = []any{len(list)}
	e.Extra = map[string]any{"problems": list}
	return e
}

// parseProblems turns policy.Parse's error (every YAML problem, joined)
// into one problem per line it names.
func parseProblems(err error) policy.ValidationErrors {
	msg := strings.TrimPrefix(err.Error(), "policy: ")
	var out policy.ValidationErrors
	for part := range strings.SplitSeq(msg, "; ") {
		line, text, ok := strings.Cut(part, ": ")
		switch {
		case ok && strings.HasPrefix(line, "line "):
			out = append(out, policy.FieldError{Path: line, Message: text})
		case len(out) > 0:
			// A message that itself contained "; ".
			out[len(out)-1].Message += "; " + part
		default:
			out = append(out, policy.FieldError{Path: "yaml", Message: part})
		}
	}
	return out
}

// readPolicy reads the policy of a PUT or check: a JSON policyInput, or a
// YAML document as the body (Content-Type application/yaml, comment in
// ?comment=) for scripts that keep policies as files.
func (s *Server) readPolicy(c *gin.Context) (policy.Policy, string, error) {
	r := c.Request
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var text []byte
	comment := c.Query("comment")
	switch mt {
	case "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml":
		b, err := io.ReadAll(r.Body)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return policy.Policy{}, "", errf(http.StatusRequestEntityTooLarge, "too_large", "err.too_large", err)
			}
			return policy.Policy{}, "", errf(http.StatusBadRequest, "bad_request", "err.bad_request", err)
		}
		text = b
	default:
		var in policyInput
		if err := decodeJSON(c, &in); err != nil {
			return policy.Policy{}, "", err
		}
		comment = in.Comment
		switch {
		case in.YAML != nil && in.Policy != nil:
			return policy.Policy{}, "", errf(http.StatusBadRequest, "bad_request", "err.bad_request", errors.New("send yaml or policy, not both"))
		case in.YAML != nil:
			text = []byte(*in.YAML)
		case in.Policy != nil:
			var p policy.Policy
			dec := json.NewDecoder(bytes.NewReader(in.Policy))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&p); err != nil {
				return policy.Policy{}, "", invalidPolicy(policy.Policy{}, policy.ValidationErrors{{Path: "policy", Message: err.Error()}})
			}
			return p, comment, nil
		default:
			return policy.Policy{}, "", errf(http.StatusBadRequest, "bad_request", "err.bad_request", errors.New("no yaml and no policy"))
		}
	}
	p, err := policy.Parse(text)
	if err != nil {
		return policy.Policy{}, "", invalidPolicy(policy.Policy{}, parseProblems(err))
	}
	return p, comment, nil
}

// policyError maps what the policy store returns.
func policyError(p policy.Policy, err error) *Error {
	var ve policy.ValidationErrors
	var conflict *authn.PolicyConflictError
	switch {
	case errors.As(err, &ve):
		return invalidPolicy(p, ve)
	case errors.As(err, &conflict):
		e := errf(http.StatusPreconditionFailed, "version_mismatch", "err.policy_conflict", err)
		e.Args = []any{conflict.Current}
		e.Extra = map[string]any{"current_version": conflict.Current}
		return e
	case errors.Is(err, authn.ErrPolicyVersionNotFound):
		return errf(http.StatusNotFound, "no_such_version", "err.no_such_version", err)
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return errf(http.StatusInternalServerError, "internal", "err.internal", fmt.Errorf("policy store: %w", err))
}

func etag(version int) string { return `"` + strconv.Itoa(version) + `"` }

// ifMatch reads the version an update starts from. It is required: an
// update that does not say what it changes could silently undo another
// admin's edit. "*" (any version) is honoured, as HTTP defines it.
func ifMatch(c *gin.Context) (int, error) {
	v := strings.TrimSpace(c.GetHeader("If-Match"))
	if v == "" {
		return 0, errf(http.StatusPreconditionRequired, "if_match_required", "err.if_match_required", nil)
	}
	if v == "*" {
		return -1, nil
	}
	v = strings.Trim(strings.TrimPrefix(v, "W/"), `"`)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, errf(http.StatusBadRequest, "bad_request", "err.bad_request", fmt.Errorf("If-Match %q is not a policy version", c.GetHeader("If-Match")))
	}
	return n, nil
}

// apiAdminPolicy answers the current version; ?format=yaml gives the YAML
// document alone (what `keygate policy import` takes).
func (s *Server) apiAdminPolicy(c *gin.Context) {
	v, err := s.admin.Policies.Current(c.Request.Context())
	if err != nil {
		s.fail(c, policyError(policy.Policy{}, err))
		return
	}
	c.Header("ETag", etag(v.Version))
	if c.Query("format") == "yaml" {
		c.Header("Cache-Control", "no-store")
		c.Data(http.StatusOK, "application/yaml; charset=utf-8", []byte(v.YAML))
		return
	}
	writeJSON(c.Writer, http.StatusOK, v)
}

// apiAdminPolicyPut stores a new version, if it is valid and the current
// version is still the one named by If-Match. It is in force for the next
// request once the answer is sent.
func (s *Server) apiAdminPolicyPut(c *gin.Context) {
	base, err := ifMatch(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	p, comment, err := s.readPolicy(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	v, err := s.admin.Policies.Update(c.Request.Context(), p, base, actingAdmin(c), comment)
	if err != nil {
		s.fail(c, policyError(p, err))
		return
	}
	if !v.Unchanged {
		added, removed := authn.DiffStat(v.Diff)
		s.audit(c, activity.AuditPolicyUpdate, "policy", map[string]string{
			"version": strconv.Itoa(v.Version), "comment": comment,
			"lines": fmt.Sprintf("+%d -%d", added, removed),
		})
	}
	c.Header("ETag", etag(v.Version))
	writeJSON(c.Writer, http.StatusOK, v)
}

// checkAnswer is what a check of a pending change says when the policy is
// valid: the text diff against the version in force and what it changes.
type checkAnswer struct {
	Valid   bool          `json:"valid"`
	Base    int           `json:"base"` // the version compared against
	Rules   int           `json:"rules"`
	Diff    string        `json:"diff"`
	Preview PolicyPreview `json:"preview"`
}

// apiAdminPolicyCheck validates a policy exactly as an update would and
// previews its effect, storing nothing (the page's inline validation).
func (s *Server) apiAdminPolicyCheck(c *gin.Context) {
	p, _, err := s.readPolicy(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	compiled, err := s.admin.Policies.Check(p)
	if err != nil {
		s.fail(c, policyError(p, err))
		return
	}
	cur, err := s.admin.Policies.Current(c.Request.Context())
	if err != nil {
		s.fail(c, policyError(p, err))
		return
	}
	running := s.policy.Load()
	writeJSON(c.Writer, http.StatusOK, checkAnswer{
		Valid: true, Base: cur.Version, Rules: len(p.Rules),
		Diff:    authn.LineDiff(cur.YAML, authn.PolicyYAML(p), fmt.Sprintf("version %d", cur.Version), "pending"),
		Preview: PreviewChange(running, compiled, s.upstreamHosts()),
	})
}

// upstreamHosts lists the protected hosts, sorted.
func (s *Server) upstreamHosts() []string {
	set := *s.upstreams.Load()
	out := make([]string, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

func (s *Server) apiAdminPolicyVersions(c *gin.Context) {
	hist, err := s.admin.Policies.History(c.Request.Context())
	if err != nil {
		s.fail(c, policyError(policy.Policy{}, err))
		return
	}
	cur := 0
	if len(hist) > 0 {
		cur = hist[0].Version
	}
	writeJSON(c.Writer, http.StatusOK, map[string]any{"current": cur, "versions": hist})
}

func versionParam(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, errf(http.StatusBadRequest, "bad_request", "err.bad_request", fmt.Errorf("%q is not a policy version", s))
	}
	return n, nil
}

func (s *Server) apiAdminPolicyVersion(c *gin.Context) {
	n, err := versionParam(c.Param("version"))
	if err != nil {
		s.fail(c, err)
		return
	}
	v, err := s.admin.Policies.Version(c.Request.Context(), n)
	if err != nil {
		s.fail(c, policyError(policy.Policy{}, err))
		return
	}
	c.Header("ETag", etag(v.Version))
	writeJSON(c.Writer, http.StatusOK, v)
}

// apiAdminPolicyDiff diffs ?from= to ?to= (defaults: the current version
// and the one before it).
func (s *Server) apiAdminPolicyDiff(c *gin.Context) {
	ctx := c.Request.Context()
	to := 0
	if q := c.Query("to"); q != "" {
		var err error
		if to, err = versionParam(q); err != nil {
			s.fail(c, err)
			return
		}
	} else {
		cur, err := s.admin.Policies.Current(ctx)
		if err != nil {
			s.fail(c, policyError(policy.Policy{}, err))
			return
		}
		to = cur.Version
	}
	from := to - 1
	if q := c.Query("from"); q != "" {
		var err error
		if from, err = versionParam(q); err != nil {
			s.fail(c, err)
			return
		}
	}
	diff, err := s.admin.Policies.Diff(ctx, from, to)
	if err != nil {
		s.fail(c, policyError(policy.Policy{}, err))
		return
	}
	writeJSON(c.Writer, http.StatusOK, map[string]any{"from": from, "to": to, "diff": diff})
}

type rollbackRequest struct {
	Version int    `json:"version"`
	Comment string `json:"comment"`
}

// apiAdminPolicyRollback makes a copy of an earlier version the next
// version; If-Match as for PUT.
func (s *Server) apiAdminPolicyRollback(c *gin.Context) {
	base, err := ifMatch(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	var req rollbackRequest
	if err := decodeJSON(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	if req.Version <= 0 {
		s.fail(c, errf(http.StatusBadRequest, "bad_request", "err.bad_request", errors.New("version is missing")))
		return
	}
	v, err := s.admin.Policies.Rollback(c.Request.Context(), req.Version, base, actingAdmin(c), req.Comment)
	if err != nil {
		s.fail(c, policyError(policy.Policy{}, err))
		return
	}
	if !v.Unchanged {
		s.audit(c, activity.AuditPolicyRollback, "policy", map[string]string{
			"version": strconv.Itoa(v.Version), "restored_from": strconv.Itoa(req.Version), "comment": v.Comment,
		})
	}
	c.Header("ETag", etag(v.Version))
	writeJSON(c.Writer, http.StatusOK, v)
}
