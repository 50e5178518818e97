package webauthn

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// Verdict is the outcome of re-assessing a stored credential
// (factors.Verdict: the admin service reads it without knowing WebAuthn).
type Verdict = factors.Verdict

const (
	// VerdictOK: the attestation still chains to the trust anchors and the
	// metadata reports no compromise of the model.
	VerdictOK = factors.VerdictOK
	// VerdictNotAttested: nothing vouches for the model (zero AAGUID,
	// self or none attestation, a model the metadata does not list, a chain
	// to no anchor, a retired model), and no compromise is reported.
	VerdictNotAttested = factors.VerdictNotAttested
	// VerdictCompromised: the metadata reports the model compromised or
	// revoked (Assessment.Compromises).
	VerdictCompromised = factors.VerdictCompromised
)

// Assessment is one stored credential judged against newer trust anchors
// (factors.Reassessment). Model is the new metadata's description of the
// AAGUID whether or not the attestation chains; Reassess never changes
// the record.
type Assessment = factors.Reassessment

// Reassess re-verifies the stored raw attestation of every credential of
// user ("" = every user) against anchors — typically a newer MDS3 blob
// and its root, and/or PEM roots, as bytes an admin's command sent —
// loaded with the same checks as the configuration's (loadAnchors) and
// applied as at enrolment (trust.assess), and looks each model up in the
// new metadata. Unusable anchors wrap factors.ErrBadAnchors. Nothing is
// fetched over the network and nothing is written: suspending what is
// compromised is the caller's decision (Suspend).
//
// A credential is compromised when the metadata reports a compromise for
// the AAGUID it carries, attested or not: an authenticator has no reason
// to claim a compromised model it is not, and a genuine one of that model
// may well have been enrolled before any trust anchors were configured.
// The same compromise is also why such a credential's attestation no
// longer verifies (go-webauthn refuses those statuses), so Attested is
// false next to it.
//
// Assessments come sorted by user, then by enrolment time. A user without
// WebAuthn credentials has none (no error).
func (f *Factor) Reassess(ctx context.Context, user string, anchors factors.AttestationAnchors) ([]Assessment, error) {
	tr, err := loadAnchors(anchors, anchorNames{}, f.now, f.log)
	if err != nil {
		return nil, err
	}
	if tr == nil {
		return nil, fmt.Errorf("webauthn: reassess: no trust anchors given (an MDS blob or root certificates): %w", factors.ErrBadAnchors)
	}
	users, err := f.usersToAssess(ctx, user)
	if err != nil {
		return nil, err
	}
	var out []Assessment
	for _, u := range users {
		creds := slices.Clone(u.rec.Creds)
		slices.SortStableFunc(creds, func(a, b credRecord) int { return a.CreatedAt.Compare(b.CreatedAt) })
		for i := range creds {
			a, err := f.assessStored(ctx, tr, u.name, &creds[i])
			if err != nil {
				return nil, err
			}
			out = append(out, a)
		}
	}
	return out, nil
}

type namedRecord struct {
	name string
	rec  *userRecord
}

// usersToAssess returns the one user's record, or every user's record in
// username order (the scan's key order, since keys are escaped usernames).
func (f *Factor) usersToAssess(ctx context.Context, user string) ([]namedRecord, error) {
	if user != "" {
		r, _, err := f.loadUser(ctx, user)
		if isNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []namedRecord{{user, r}}, nil
	}
	// The records are collected first and assessed after the scan, so no
	// store iteration stays open across the certificate checks.
	var out []namedRecord
	err := f.kv.Scan(ctx, userPrefix, func(it store.Item) error {
		name, err := url.PathUnescape(strings.TrimPrefix(it.Key, userPrefix))
		if err != nil {
			return fmt.Errorf("webauthn: user key %q: %w", it.Key, err)
		}
		var r userRecord
		if err := json.Unmarshal(it.Value, &r); err != nil {
			return fmt.Errorf("webauthn: decode user %q: %w", name, err)
		}
		if r.V != recordVersion {
			return fmt.Errorf("webauthn: user %q: record of unknown schema version %d", name, r.V)
		}
		out = append(out, namedRecord{name, &r})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webauthn: list users: %w", err)
	}
	return out, nil
}

// assessStored judges one credential from what was stored at enrolment:
// the record and the raw registration response kept beside it.
func (f *Factor) assessStored(ctx context.Context, tr *trust, user string, c *credRecord) (Assessment, error) {
	a := Assessment{
		User:            user,
		Kind:            Kind,
		CredentialID:    b64(c.ID),
		Name:            c.Name,
		AAGUID:          aaguidString(c.AAGUID),
		WasAttested:     c.Attested,
		Suspended:       c.Suspended,
		SuspendedReason: c.SuspendedReason,
	}
	st, err := tr.standing(ctx, c.AAGUID, f.now())
	if err != nil {
		return Assessment{}, err
	}
	a.Model, a.Status, a.Compromises = st.model, st.status, st.compromises

	att, err := f.storedAttestation(ctx, c.ID)
	switch {
	case err == nil:
		lc := c.library()
		lc.Attestation = att
		v := tr.assess(ctx, &lc, f.wa.Config.Attestation, f.wa.Config.Signature)
		a.Attested, a.Why = v.attested, v.why
	case isNotFound(err):
		// Enrolled by a version that kept no raw attestation, or the key
		// was lost: nothing can be re-verified.
		a.Why = "no stored attestation to re-verify"
	default:
		return Assessment{}, fmt.Errorf("webauthn: user %q credential %s: %w", user, a.CredentialID, err)
	}

	switch {
	case len(a.Compromises) > 0:
		a.Verdict = VerdictCompromised
	case a.Attested:
		a.Verdict = VerdictOK
	default:
		a.Verdict = VerdictNotAttested
	}
	return a, nil
}
