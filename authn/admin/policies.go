package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/policies"
	"github.com/keygate/keygate/policy"
)

// Policies as admins handle them: the version in force and the history,
// diffs, edits and imports (each must name the version it started from),
// rollback, a check with a preview that stores nothing, and explain.

// Policy is the version in force.
func (s *Service) Policy(ctx context.Context, _ Actor) (policies.Version, error) {
	return s.d.Policies.Current(ctx)
}

// PolicyVersion is version n.
func (s *Service) PolicyVersion(ctx context.Context, _ Actor, n int) (policies.Version, error) {
	if n <= 0 {
		return policies.Version{}, badInput("version", "%d is not a policy version", n)
	}
	return s.d.Policies.Version(ctx, n)
}

// PolicyHistory lists every version, newest first.
func (s *Service) PolicyHistory(ctx context.Context, _ Actor) ([]policies.Summary, error) {
	h, err := s.d.Policies.History(ctx)
	if h == nil && err == nil {
		h = []policies.Summary{}
	}
	return h, err
}

// PolicyDiff is a unified diff from version from to version to; to 0 is
// the version in force and from 0 the one before to.
func (s *Service) PolicyDiff(ctx context.Context, _ Actor, from, to int) (int, int, string, error) {
	if to < 0 || from < 0 {
		return 0, 0, "", badInput("version", "versions are positive numbers")
	}
	if to == 0 {
		cur, err := s.d.Policies.Current(ctx)
		if err != nil {
			return 0, 0, "", err
		}
		to = cur.Version
	}
	if from == 0 {
		from = to - 1
	}
	if from < 1 {
		return from, to, "", badInput("from", "version %d is the first; there is nothing before it", to)
	}
	d, err := s.d.Policies.Diff(ctx, from, to)
	return from, to, d, err
}

// SavePolicy stores p as the next version and puts it in force (an edit
// in the admin area), provided the version in force is still ifVersion
// (-1: whatever is in force). A policy with problems comes back as
// policy.ValidationErrors, a stale ifVersion as *policies.ConflictError;
// either way nothing is stored.
func (s *Service) SavePolicy(ctx context.Context, a Actor, p policy.Policy, ifVersion int, comment string) (policies.Version, error) {
	return s.savePolicy(ctx, a, p, ifVersion, comment, activity.AuditPolicyUpdate)
}

// ImportPolicy is SavePolicy for a whole policy file (`keygate policy
// import`): the same checks, audited as an import.
func (s *Service) ImportPolicy(ctx context.Context, a Actor, p policy.Policy, ifVersion int, comment string) (policies.Version, error) {
	return s.savePolicy(ctx, a, p, ifVersion, comment, activity.AuditPolicyImport)
}

func (s *Service) savePolicy(ctx context.Context, a Actor, p policy.Policy, ifVersion int, comment, action string) (policies.Version, error) {
	if err := needActor(a); err != nil {
		return policies.Version{}, err
	}
	v, err := s.d.Policies.Update(ctx, p, ifVersion, a.Name, comment)
	if err != nil {
		return policies.Version{}, err
	}
	if !v.Unchanged {
		added, removed := policies.DiffStat(v.Diff)
		s.record(ctx, a, action, "policy", map[string]string{
			"version": strconv.Itoa(v.Version), "comment": comment, "lines": fmt.Sprintf("+%d -%d", added, removed),
		})
	}
	return v, nil
}

// RollbackPolicy stores a copy of version to as the next version (history
// only grows) and puts it in force; ifVersion as for SavePolicy.
func (s *Service) RollbackPolicy(ctx context.Context, a Actor, to, ifVersion int, comment string) (policies.Version, error) {
	if err := needActor(a); err != nil {
		return policies.Version{}, err
	}
	if to <= 0 {
		return policies.Version{}, badInput("version", "which version to roll back to is missing")
	}
	v, err := s.d.Policies.Rollback(ctx, to, ifVersion, a.Name, comment)
	if err != nil {
		return policies.Version{}, err
	}
	if !v.Unchanged {
		s.record(ctx, a, activity.AuditPolicyRollback, "policy", map[string]string{
			"version": strconv.Itoa(v.Version), "restored_from": strconv.Itoa(to), "comment": v.Comment,
		})
	}
	return v, nil
}

// Check is what a check of a pending policy says when it is valid: the
// text diff against the version in force and what it changes.
type Check struct {
	Valid   bool           `json:"valid"`
	Base    int            `json:"base"` // the version compared against
	Rules   int            `json:"rules"`
	Diff    string         `json:"diff"`
	Preview policy.Preview `json:"preview"`
}

// CheckPolicy validates p exactly as saving it would and previews its
// effect against the policy the gate runs, storing nothing. Problems come
// back as policy.ValidationErrors.
func (s *Service) CheckPolicy(ctx context.Context, _ Actor, p policy.Policy) (Check, error) {
	compiled, err := s.d.Policies.Check(p)
	if err != nil {
		return Check{}, err
	}
	cur, err := s.d.Policies.Current(ctx)
	if err != nil {
		return Check{}, err
	}
	return Check{
		Valid: true, Base: cur.Version, Rules: len(p.Rules),
		Diff:    policies.LineDiff(cur.YAML, policies.YAML(p), fmt.Sprintf("version %d", cur.Version), "pending"),
		Preview: policy.PreviewChange(s.d.Running.Load(), compiled, s.Hosts()),
	}, nil
}

// Explanation is explain's answer: the explanation, the same as text,
// whether keygate protects the host at all, and the version in force.
type Explanation struct {
	policy.Explanation
	Text      string `json:"text"`
	Protected bool   `json:"protected"`
	Version   int    `json:"version"`
}

// Explain answers in as the gate decides it this very moment: the policy
// in force, and the user's groups from the store when in names none (a
// user who does not exist yet is explained without groups). Input the
// gate would refuse is a *policy.InputError.
func (s *Service) Explain(ctx context.Context, _ Actor, in policy.ExplainInput) (Explanation, error) {
	if in.User != "" && in.Groups == nil {
		u, err := s.d.Users.Get(ctx, in.User)
		switch {
		case err == nil:
			in.Groups = u.Groups
		case errors.Is(err, authn.ErrUserNotFound):
		default:
			return Explanation{}, err
		}
	}
	// The version beside the answer is informational: an update landing
	// between the two reads can make it one off.
	cur, err := s.d.Policies.Current(ctx)
	if err != nil {
		return Explanation{}, err
	}
	e, err := policy.ExplainRequest(s.d.Running.Load(), in, s.d.Now(), s.d.SecondFactor)
	if err != nil {
		return Explanation{}, err
	}
	return Explanation{Explanation: e, Text: e.String(), Version: cur.Version,
		Protected: slices.Contains(s.Hosts(), e.Request.Host)}, nil
}

// AuditLog lists recent admin actions, newest first (limit 1 to 10000).
func (s *Service) AuditLog(ctx context.Context, _ Actor, limit int) ([]activity.AuditEntry, error) {
	if limit <= 0 || limit > 10000 {
		return nil, badInput("limit", "limit %d: want 1 to 10000", limit)
	}
	entries, err := s.d.Audit.Recent(ctx, limit)
	if entries == nil && err == nil {
		entries = []activity.AuditEntry{}
	}
	return entries, err
}

// ExportAudit writes every audit entry to w as JSON lines, oldest first.
func (s *Service) ExportAudit(ctx context.Context, _ Actor, w io.Writer) error {
	return s.d.Audit.Export(ctx, w)
}
