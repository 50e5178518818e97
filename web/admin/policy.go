package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	svc "github.com/keygate/keygate/authn/admin"
	"github.com/keygate/keygate/authn/policies"
	"github.com/keygate/keygate/policy"
)

// The policy half of the API: the version in force with its number as the
// ETag, changes that must name the version they started from (If-Match),
// checks that store nothing, versions, diffs, rollback and explain.

func (h *Handler) policyRoutes() {
	m := h.api
	h.handle(m, "GET "+APIPrefix+"policy", h.policy)
	h.handle(m, "PUT "+APIPrefix+"policy", h.savePolicy(false))
	h.handle(m, "POST "+APIPrefix+"policy/import", h.savePolicy(true))
	h.handle(m, "POST "+APIPrefix+"policy/check", h.checkPolicy)
	h.handle(m, "GET "+APIPrefix+"policy/versions", h.policyVersions)
	h.handle(m, "GET "+APIPrefix+"policy/versions/{version}", h.policyVersion)
	h.handle(m, "GET "+APIPrefix+"policy/diff", h.policyDiff)
	h.handle(m, "POST "+APIPrefix+"policy/rollback", h.rollback)
	h.handle(m, "POST "+APIPrefix+"explain", h.explain)
}

// policyInput is a policy sent by an admin: YAML text (what the page's
// editor and `keygate policy import` hold) or the policy as JSON, and why
// it changes.
type policyInput struct {
	YAML    *string         `json:"yaml"`
	Policy  json.RawMessage `json:"policy"`
	Comment string          `json:"comment"`
}

// problemJSON is one validation problem on the wire: the path in the
// policy, its line for problems in the text, and, for rule problems, which
// rule and which field.
type problemJSON struct {
	Path      string `json:"path"`
	Message   string `json:"message"`
	Line      int    `json:"line,omitempty"`
	RuleIndex *int   `json:"rule_index,omitempty"`
	RuleName  string `json:"rule_name,omitempty"`
	Field     string `json:"field,omitempty"`
}

// invalidPolicy is the 422 answer listing every problem of a policy.
func invalidPolicy(p policy.Policy, problems policy.ValidationErrors) *Error {
	list := make([]problemJSON, 0, len(problems))
	for _, fe := range problems {
		pj := problemJSON{Path: fe.Path, Message: fe.Message, Line: fe.Line}
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
		} else if fe.Path != "yaml" {
			pj.Field = fe.Path
		}
		list = append(list, pj)
	}
	return &Error{Status: http.StatusUnprocessableEntity, Code: "invalid_policy", Key: "err.invalid_policy", Cause: problems,
		Args: []any{len(list)}, Extra: map[string]any{"problems": list}}
}

// policyError answers what the policy store refused in HTTP's terms: a
// stale If-Match is 412, a policy with problems 422; the rest as the
// owners' tables say.
func policyError(p policy.Policy, err error) error {
	var ve policy.ValidationErrors
	var conflict *policies.ConflictError
	switch {
	case errors.As(err, &ve):
		return invalidPolicy(p, ve)
	case errors.As(err, &conflict):
		return &Error{Status: http.StatusPreconditionFailed, Code: "version_mismatch", Key: "err.policy_conflict", Cause: err,
			Args: []any{conflict.Current}, Extra: map[string]any{"current_version": conflict.Current}}
	}
	return err
}

// readPolicy reads the policy of a PUT, import or check: a JSON
// policyInput, or a YAML document as the body (Content-Type
// application/yaml, comment in ?comment=) for scripts that keep policies
// as files.
func readPolicy(w http.ResponseWriter, r *http.Request) (policy.Policy, string, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var text []byte
	comment := r.URL.Query().Get("comment")
	switch mt {
	case "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml":
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return policy.Policy{}, "", &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Key: "err.too_large", Cause: err}
			}
			return policy.Policy{}, "", badRequest(err)
		}
		text = b
	default:
		var in policyInput
		if err := decode(w, r, &in); err != nil {
			return policy.Policy{}, "", err
		}
		comment = in.Comment
		switch {
		case in.YAML != nil && in.Policy != nil:
			return policy.Policy{}, "", badRequest(errors.New("send yaml or policy, not both"))
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
			return policy.Policy{}, "", badRequest(errors.New("no yaml and no policy"))
		}
	}
	p, err := policy.Parse(text)
	if err != nil {
		var ve policy.ValidationErrors
		if !errors.As(err, &ve) {
			ve = policy.ValidationErrors{{Path: "yaml", Message: err.Error()}}
		}
		return policy.Policy{}, "", invalidPolicy(policy.Policy{}, ve)
	}
	return p, comment, nil
}

func etag(version int) string { return `"` + strconv.Itoa(version) + `"` }

// ifMatch reads the version a change starts from. It is required: a
// change that does not say what it changes could silently undo another
// admin's edit. "*" (any version) is honoured, as HTTP defines it.
func ifMatch(r *http.Request) (int, error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" {
		return 0, &Error{Status: http.StatusPreconditionRequired, Code: "if_match_required", Key: "err.if_match_required"}
	}
	if v == "*" {
		return -1, nil
	}
	v = strings.Trim(strings.TrimPrefix(v, "W/"), `"`)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, badRequest(fmt.Errorf("If-Match %q is not a policy version", r.Header.Get("If-Match")))
	}
	return n, nil
}

// policy answers the version in force; ?format=yaml gives the YAML
// document alone (what `keygate policy import` takes).
func (h *Handler) policy(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	v, err := h.o.Service.Policy(r.Context(), a)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(v.Version))
	if r.URL.Query().Get("format") == "yaml" {
		hd := w.Header()
		hd.Set("Content-Type", "application/yaml; charset=utf-8")
		hd.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, v.YAML)
		return nil
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// savePolicy stores a new version (an edit, or an import of a file), if it
// is valid and the version in force is still the one If-Match names. It
// is in force for the next request once the answer is sent.
func (h *Handler) savePolicy(imported bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
		base, err := ifMatch(r)
		if err != nil {
			return err
		}
		p, comment, err := readPolicy(w, r)
		if err != nil {
			return err
		}
		save := h.o.Service.SavePolicy
		if imported {
			save = h.o.Service.ImportPolicy
		}
		v, err := save(r.Context(), a, p, base, comment)
		if err != nil {
			return policyError(p, err)
		}
		w.Header().Set("ETag", etag(v.Version))
		writeJSON(w, http.StatusOK, v)
		return nil
	}
}

// checkPolicy validates a policy exactly as saving it would and previews
// its effect, storing nothing (the page's inline validation, `keygate
// policy import --dry-run`).
func (h *Handler) checkPolicy(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	p, _, err := readPolicy(w, r)
	if err != nil {
		return err
	}
	chk, err := h.o.Service.CheckPolicy(r.Context(), a, p)
	if err != nil {
		return policyError(p, err)
	}
	writeJSON(w, http.StatusOK, chk)
	return nil
}

func (h *Handler) policyVersions(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	hist, err := h.o.Service.PolicyHistory(r.Context(), a)
	if err != nil {
		return err
	}
	cur := 0
	if len(hist) > 0 {
		cur = hist[0].Version
	}
	writeJSON(w, http.StatusOK, map[string]any{"current": cur, "versions": hist})
	return nil
}

func versionParam(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, badRequest(fmt.Errorf("%q is not a policy version", s))
	}
	return n, nil
}

func (h *Handler) policyVersion(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	n, err := versionParam(r.PathValue("version"))
	if err != nil {
		return err
	}
	v, err := h.o.Service.PolicyVersion(r.Context(), a, n)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(v.Version))
	writeJSON(w, http.StatusOK, v)
	return nil
}

// policyDiff diffs ?from= to ?to= (defaults: the version in force and the
// one before it).
func (h *Handler) policyDiff(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	var from, to int
	var err error
	if q := r.URL.Query().Get("to"); q != "" {
		if to, err = versionParam(q); err != nil {
			return err
		}
	}
	if q := r.URL.Query().Get("from"); q != "" {
		if from, err = versionParam(q); err != nil {
			return err
		}
	}
	from, to, diff, err := h.o.Service.PolicyDiff(r.Context(), a, from, to)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "diff": diff})
	return nil
}

type rollbackRequest struct {
	Version int    `json:"version"`
	Comment string `json:"comment"`
}

// rollback makes a copy of an earlier version the next version; If-Match
// as for PUT.
func (h *Handler) rollback(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	base, err := ifMatch(r)
	if err != nil {
		return err
	}
	var in rollbackRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Version <= 0 {
		return badRequest(errors.New("version is missing"))
	}
	v, err := h.o.Service.RollbackPolicy(r.Context(), a, in.Version, base, in.Comment)
	if err != nil {
		return policyError(policy.Policy{}, err)
	}
	w.Header().Set("ETag", etag(v.Version))
	writeJSON(w, http.StatusOK, v)
	return nil
}

// explain answers as the gate decides this very moment.
func (h *Handler) explain(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	var in policy.ExplainInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	x, err := h.o.Service.Explain(r.Context(), a, in)
	var ie *policy.InputError
	if errors.As(err, &ie) {
		return &Error{Status: http.StatusBadRequest, Code: "bad_explain", Key: "err.bad_explain", Cause: err,
			Extra: map[string]any{"detail": ie.Message, "field": ie.Field}}
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, x)
	return nil
}
