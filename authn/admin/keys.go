package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/factors"
)

// Security keys and passkeys as an admin handles them: re-check their
// stored attestations against a newer metadata blob (a cron job's
// `keygate webauthn verify`), and suspend or restore one. The service
// finds the factors that can do this by their capabilities
// (factors.Reassessor, factors.Suspender) among the registered ones; it
// never names a factor.
//
// Suspending takes a credential out of use and ends nothing else: the
// sessions it proved stay, as they did when the command opened the data
// directory itself.

// Audit actions of this file (next to activity's Audit* constants).
const (
	AuditVerifyKeys   = "keys.verify"
	AuditSuspendKey   = "user.suspend_key"
	AuditUnsuspendKey = "user.unsuspend_key"
)

// MaxSuspendReason bounds a suspension reason (in characters); the
// factors keep the reason and show it with the credential.
const MaxSuspendReason = 200

// ErrNoSuchKey: the user has no security key or passkey with that ID or
// name. Nothing was changed.
var ErrNoSuchKey = errors.New("admin: no such security key or passkey")

// CheckedKey is one credential as VerifyKeys judged it, before anything
// was suspended (Suspended is the state it was found in), and whether this
// call suspended it.
type CheckedKey struct {
	factors.Reassessment
	SuspendedNow bool `json:"suspended_now"`
}

// KeyCheck is what VerifyKeys found and did.
type KeyCheck struct {
	Keys        []CheckedKey `json:"keys"`
	OK          int          `json:"ok"`
	NotAttested int          `json:"not_attested"`
	Compromised int          `json:"compromised"`
	// SuspendedNow counts the compromised credentials this call suspended.
	SuspendedNow int `json:"suspended_now"`
}

// KeyState is a credential's suspension after SuspendKey or UnsuspendKey.
type KeyState struct {
	User      string `json:"user"`
	Kind      string `json:"kind"`
	ID        string `json:"id"`
	Name      string `json:"name"`
	Suspended bool   `json:"suspended"`
	// Reason is the suspension's reason (the first one, when the
	// credential was suspended already).
	Reason string `json:"reason,omitempty"`
	// Changed is false when the credential was in that state already.
	Changed bool `json:"changed"`
}

// VerifyKeys re-checks the stored attestation of every security key and
// passkey of user ("" = everyone's) against anchors (an MDS3 blob and its
// root, PEM roots: the contents, not file names), and with suspend
// suspends the compromised ones that are still in use, each with the
// compromises as its reason. Anchors that do not verify are refused
// (*InputError) with nothing checked or changed; without any factor that
// can re-check, authn.ErrFactorUnavailable.
//
// A compromised credential stays compromised in the answer after it is
// suspended: it is in the store until someone removes it.
func (s *Service) VerifyKeys(ctx context.Context, a Actor, user string, anchors factors.AttestationAnchors, suspend bool) (KeyCheck, error) {
	if err := needActor(a); err != nil {
		return KeyCheck{}, err
	}
	if anchors.Empty() {
		return KeyCheck{}, badInput("anchors", "nothing to verify against: give an MDS blob (and its root unless it is the FIDO Alliance's) and/or attestation root certificates")
	}
	set, err := s.factorSet()
	if err != nil {
		return KeyCheck{}, err
	}
	var rs []factors.Reassessor
	for _, f := range set {
		if r, ok := f.(factors.Reassessor); ok {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return KeyCheck{}, authn.ErrFactorUnavailable
	}
	out := KeyCheck{Keys: []CheckedKey{}}
	for _, r := range rs {
		as, err := r.Reassess(ctx, user, anchors)
		if errors.Is(err, factors.ErrBadAnchors) {
			return KeyCheck{}, badInput("anchors", "%s", err)
		}
		if err != nil {
			return KeyCheck{}, err
		}
		for _, x := range as {
			out.Keys = append(out.Keys, CheckedKey{Reassessment: x})
		}
	}
	for i := range out.Keys {
		k := &out.Keys[i]
		switch k.Verdict {
		case factors.VerdictOK:
			out.OK++
		case factors.VerdictNotAttested:
			out.NotAttested++
		case factors.VerdictCompromised:
			out.Compromised++
		}
	}
	// The check itself is audited (an admin vouched for these anchors,
	// and it may suspend); then each suspension, as it happens, so that a
	// failure half-way leaves the done ones on record.
	target := user
	if target == "" {
		target = "*"
	}
	details := map[string]string{"checked": strconv.Itoa(len(out.Keys)), "ok": strconv.Itoa(out.OK),
		"not_attested": strconv.Itoa(out.NotAttested), "compromised": strconv.Itoa(out.Compromised),
		"suspend": strconv.FormatBool(suspend)}
	if !suspend {
		s.record(ctx, a, AuditVerifyKeys, target, details)
		return out, nil
	}
	defer func() {
		details["suspended"] = strconv.Itoa(out.SuspendedNow)
		s.record(ctx, a, AuditVerifyKeys, target, details)
	}()
	for i := range out.Keys {
		k := &out.Keys[i]
		if k.Verdict != factors.VerdictCompromised || k.Suspended {
			continue
		}
		sp, ok := set.Get(k.Kind).(factors.Suspender)
		if !ok {
			continue // reported compromised; nothing here can suspend it
		}
		reason := strings.Join(k.Compromises, ",")
		if err := sp.Suspend(ctx, k.User, k.CredentialID, reason); err != nil {
			return KeyCheck{}, fmt.Errorf("suspend %s's %q: %w", k.User, k.Name, err)
		}
		k.SuspendedNow = true
		out.SuspendedNow++
		s.d.Logger.Warn("admin suspended a compromised credential", "user", k.User, "kind", k.Kind, "credential", k.CredentialID,
			"reason", reason, "by", a.Name, "via", a.Channel)
		s.record(ctx, a, AuditSuspendKey, k.User, map[string]string{"kind": k.Kind, "credential": k.CredentialID, "name": k.Name,
			"reason": reason, "changed": "true"})
	}
	return out, nil
}

// SuspendKey suspends user's security key or passkey named ref (its ID,
// or its name in any case): it stays listed and cannot sign in until
// UnsuspendKey. One suspended already keeps its first reason (Changed is
// false). ErrNoSuchKey when the user has none by that ID or name.
func (s *Service) SuspendKey(ctx context.Context, a Actor, user, ref, reason string) (KeyState, error) {
	if err := needActor(a); err != nil {
		return KeyState{}, err
	}
	reason = strings.TrimSpace(reason)
	if utf8.RuneCountInString(reason) > MaxSuspendReason || !utf8.ValidString(reason) || strings.ContainsFunc(reason, factors.UnsafeRune) {
		return KeyState{}, badInput("reason", "a reason has at most %d characters of printable text", MaxSuspendReason)
	}
	k, sp, err := s.findKey(ctx, user, ref)
	if err != nil {
		return KeyState{}, err
	}
	st, err := sp.Suspension(ctx, user, k.ID)
	if err != nil {
		return KeyState{}, s.keyErr(err)
	}
	if !st.Suspended {
		if err := sp.Suspend(ctx, user, k.ID, reason); err != nil {
			return KeyState{}, s.keyErr(err)
		}
		if st, err = sp.Suspension(ctx, user, k.ID); err != nil {
			return KeyState{}, s.keyErr(err)
		}
		k.Changed = true
		s.d.Logger.Warn("admin suspended a credential", "user", user, "kind", k.Kind, "credential", k.ID, "by", a.Name, "via", a.Channel)
	}
	k.Suspended, k.Reason = st.Suspended, st.Reason
	s.record(ctx, a, AuditSuspendKey, user, map[string]string{"kind": k.Kind, "credential": k.ID, "name": k.Name,
		"reason": k.Reason, "changed": strconv.FormatBool(k.Changed)})
	return k, nil
}

// UnsuspendKey puts user's suspended security key or passkey named ref
// (ID or name) back in use; one in use already stays so (Changed is
// false). ErrNoSuchKey when the user has none by that ID or name.
func (s *Service) UnsuspendKey(ctx context.Context, a Actor, user, ref string) (KeyState, error) {
	if err := needActor(a); err != nil {
		return KeyState{}, err
	}
	k, sp, err := s.findKey(ctx, user, ref)
	if err != nil {
		return KeyState{}, err
	}
	st, err := sp.Suspension(ctx, user, k.ID)
	if err != nil {
		return KeyState{}, s.keyErr(err)
	}
	if st.Suspended {
		if err := sp.Unsuspend(ctx, user, k.ID); err != nil {
			return KeyState{}, s.keyErr(err)
		}
		k.Changed = true
		s.d.Logger.Warn("admin restored a suspended credential", "user", user, "kind", k.Kind, "credential", k.ID, "by", a.Name, "via", a.Channel)
	}
	s.record(ctx, a, AuditUnsuspendKey, user, map[string]string{"kind": k.Kind, "credential": k.ID, "name": k.Name,
		"was_reason": st.Reason, "changed": strconv.FormatBool(k.Changed)})
	return k, nil
}

// findKey picks user's credential by ID or (case-insensitive, since names
// are unique that way within a factor) name, among the factors that can
// suspend. An ID wins over a name; a name two factors use is ambiguous.
func (s *Service) findKey(ctx context.Context, user, ref string) (KeyState, factors.Suspender, error) {
	if user == "" {
		return KeyState{}, nil, badInput("user", "no user given")
	}
	if ref == "" {
		return KeyState{}, nil, badInput("credential", "no credential given")
	}
	set, err := s.factorSet()
	if err != nil {
		return KeyState{}, nil, err
	}
	type found struct {
		c  factors.Credential
		sp factors.Suspender
	}
	var byID, byName []found
	capable := false
	for _, f := range set {
		sp, ok := f.(factors.Suspender)
		m, ok2 := f.(factors.Manager)
		if !ok || !ok2 {
			continue
		}
		capable = true
		cs, err := m.List(ctx, user)
		if err != nil {
			return KeyState{}, nil, fmt.Errorf("list %s: %w", f.Kind(), err)
		}
		for _, c := range cs {
			switch {
			case c.ID == ref:
				byID = append(byID, found{c, sp})
			case strings.EqualFold(c.Name, ref):
				byName = append(byName, found{c, sp})
			}
		}
	}
	if !capable {
		return KeyState{}, nil, authn.ErrFactorUnavailable
	}
	pick := byID
	if len(pick) == 0 {
		pick = byName
	}
	switch len(pick) {
	case 0:
		return KeyState{}, nil, fmt.Errorf("%w: %s has none named or with ID %q", ErrNoSuchKey, user, ref)
	case 1:
		c := pick[0].c
		return KeyState{User: user, Kind: c.Kind, ID: c.ID, Name: c.Name}, pick[0].sp, nil
	}
	return KeyState{}, nil, badInput("credential", "%s has more than one credential named %q: give its ID", user, ref)
}

// keyErr makes a credential that went away meanwhile ErrNoSuchKey.
func (s *Service) keyErr(err error) error {
	if errors.Is(err, factors.ErrNotFound) {
		return fmt.Errorf("%w: %w", ErrNoSuchKey, err)
	}
	return err
}

// factorSet is the registered factors (none without second factors).
func (s *Service) factorSet() (factors.Set, error) {
	f, err := s.factors()
	if err != nil {
		return nil, err
	}
	return f.Factors(), nil
}
