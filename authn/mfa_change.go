package authn

import (
	"context"
	"fmt"
	"slices"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/factors"
)

// Changes of a person's second factors: who may add, rename or remove
// what (a fresh proof at least as strong as what the change touches), and
// the changes themselves, for every factor alike.

// EnrollState says what the session may do on the security page.
type EnrollState struct {
	HasFactors bool // the user has at least one second factor
	// Elevated: the session has some fresh proof beyond the password (a
	// second factor, an enrolment grant). Whether it is strong enough for
	// a given change is CanAdd and Changeable.
	Elevated bool
	// Have is the strongest fresh second factor of the session; Strongest
	// the strongest factor the account has.
	Have, Strongest factors.Strength
	// CanAdd: a factor may be added now (a fresh proof of the strongest
	// factor, an admin's link, or — with no factor yet — a code by email).
	CanAdd bool
	// NeedToAdd is the proof adding would need when CanAdd is false.
	NeedToAdd factors.Strength
	// Changeable holds the IDs of the credentials this session may remove
	// or rename now.
	Changeable map[string]bool
}

// heldCredential is an enrolled credential with its strength.
type heldCredential struct {
	factors.Credential
	Strength factors.Strength
	backup   bool // of a Backup factor (recovery codes)
}

// held lists username's credentials with their strengths. A suspended
// security key keeps its strength: an admin may put it back in use, and a
// weaker factor must not take its place meanwhile.
func (m *MFA) held(ctx context.Context, username string) ([]heldCredential, error) {
	var out []heldCredential
	for _, f := range m.o.Factors {
		r, ok := f.(factors.Manager)
		if !ok {
			continue
		}
		_, backup := f.(factors.Backup)
		cs, err := r.List(ctx, username)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", f.Kind(), err)
		}
		for _, c := range cs {
			out = append(out, heldCredential{c, f.Strength(c.Attested), backup})
		}
	}
	return out, nil
}

// unmanaged lists the factors u can prove without a credential here (a
// code to the confirmed address): they count as factors the account has.
func (m *MFA) unmanaged(ctx context.Context, u User) ([]factors.Factor, error) {
	var out []factors.Factor
	s := subject(u, "", Client{})
	for _, f := range m.o.Factors {
		if _, ok := f.(factors.Manager); ok {
			continue
		}
		if _, ok, err := f.Usable(ctx, s); err != nil {
			return nil, err
		} else if ok {
			out = append(out, f)
		}
	}
	return out, nil
}

func strongest(creds []heldCredential) factors.Strength {
	s := factors.StrengthNone
	for _, c := range creds {
		s = max(s, c.Strength)
	}
	return s
}

// freshProof is what a session has proved recently enough to change
// factors: the strongest second factor within the elevation window, and
// the enrolment grants within theirs. Confirming an enrolment adds no
// proof, so it never shows here; neither does a remembered device.
type freshProof struct {
	best       factors.Strength
	link       bool // an admin's enrolment link
	emailGrant bool // a code by email for enrolling a first factor
	recovery   bool // an account recovery after its wait (recovery.go)
}

func (m *MFA) fresh(sess *Session) freshProof {
	var f freshProof
	now := m.o.Now()
	for _, p := range sess.Proofs {
		switch {
		case IsSecondFactor(p.Kind) && now.Sub(p.At) <= m.o.ElevationWindow:
			if fc := m.o.Factors.Get(p.Kind); fc != nil {
				f.best = max(f.best, fc.Strength(p.Attested))
			}
		case p.Kind == ProofEnrollment && now.Sub(p.At) <= m.o.EnrollGrantWindow:
			if p.Ref == "link" {
				f.link = true
			} else if p.Ref == RecoveryGrant {
				f.recovery = true
			} else {
				f.emailGrant = true
			}
		}
	}
	return f
}

// needToAdd is the proof adding a factor needs: the account's strongest
// factor, and at least a code (a password alone never enrols).
func needToAdd(creds []heldCredential) factors.Strength {
	return max(factors.StrengthCode, strongest(creds))
}

// mayAdd says whether f lets the session add a factor to an account
// holding creds. An admin's link always does (the admin vouches for the
// person, typically after a lost device); the email grant only while the
// account has no second factor.
func mayAdd(f freshProof, creds []heldCredential) bool {
	return f.best >= needToAdd(creds) || f.link || f.recovery || (f.emailGrant && len(creds) == 0)
}

// mayTouch says whether f lets the session remove or rename c: a fresh
// proof at least as strong as c. Links and email grants never do.
func mayTouch(f freshProof, c heldCredential) bool {
	return f.best >= max(factors.StrengthCode, c.Strength)
}

// State reports what the session may change on its user's factors.
func (m *MFA) State(ctx context.Context, sess *Session) (EnrollState, error) {
	creds, err := m.held(ctx, sess.Username)
	if err != nil {
		return EnrollState{}, err
	}
	f := m.fresh(sess)
	m.recoveryLive(ctx, sess.Username, &f)
	st := EnrollState{
		HasFactors: len(creds) > 0,
		Elevated:   f.best > factors.StrengthNone || f.link || f.emailGrant,
		Have:       f.best,
		Strongest:  strongest(creds),
		CanAdd:     mayAdd(f, creds),
		NeedToAdd:  needToAdd(creds),
		Changeable: map[string]bool{},
	}
	for _, c := range creds {
		if mayTouch(f, c) {
			st.Changeable[c.ID] = true
		}
	}
	return st, nil
}

// authorize refuses a change of the session user's factors unless the
// session has a fresh proof strong enough for it (see mayAdd, mayTouch).
// credID names the credential removed or renamed ("" for adding). A
// refusal is a *WeakProofError and is logged on the account's activity.
func (m *MFA) authorize(ctx context.Context, id, action, credID string) (*Session, User, []heldCredential, error) {
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return nil, User{}, nil, err
	}
	creds, err := m.held(ctx, u.Username)
	if err != nil {
		return nil, User{}, nil, err
	}
	f := m.fresh(sess)
	// A recovery grant adds one real factor, not a backup sheet, and only
	// while its request stands.
	m.recoveryLive(ctx, u.Username, &f)
	f.recovery = f.recovery && action == ChangeAdd
	var need factors.Strength
	switch action {
	case ChangeAdd, ChangeRecovery:
		if mayAdd(f, creds) {
			return sess, u, creds, nil
		}
		need = needToAdd(creds)
	default:
		i := slices.IndexFunc(creds, func(c heldCredential) bool { return c.ID == credID })
		if i < 0 {
			return nil, User{}, nil, factors.ErrNotFound
		}
		if mayTouch(f, creds[i]) {
			return sess, u, creds, nil
		}
		need = max(factors.StrengthCode, creds[i].Strength)
	}
	werr := &WeakProofError{Action: action, Need: need, Have: f.best}
	others, err := m.unmanaged(ctx, u)
	if err != nil {
		return nil, User{}, nil, err
	}
	for _, k := range m.o.Factors.Reaching(need) {
		has := slices.ContainsFunc(creds, func(c heldCredential) bool { return c.Kind == k && c.Strength >= need }) ||
			slices.ContainsFunc(others, func(o factors.Factor) bool { return o.Kind() == k && o.Strength(false) >= need })
		if has && !slices.Contains(werr.Kinds, k) {
			werr.Kinds = append(werr.Kinds, k)
		}
	}
	m.o.Activity.Note(ctx, u.Username, activity.EventChangeRefused, action, clientOf(sess))
	return nil, User{}, nil, werr
}

// enroller returns the factor of kind that can be enrolled here.
func (m *MFA) enroller(kind string) (factors.Factor, factors.Enroller, error) {
	f, err := m.factor(kind)
	if err != nil {
		return nil, nil, err
	}
	e, ok := f.(factors.Enroller)
	if !ok {
		return nil, nil, ErrFactorUnavailable
	}
	return f, e, nil
}

// Enroll starts adding a credential of kind (a security key, an app, a
// phone number, a new recovery sheet). It needs what adding needs: a
// fresh proof of the account's strongest factor, or an admin's link. An
// enrolment that is complete at once (a recovery sheet: a new set is a
// new factor for whoever sees it) returns the rotated session too.
func (m *MFA) Enroll(ctx context.Context, id, kind, lang string, r factors.EnrollRequest) (factors.Enrollment, *Session, error) {
	f, e, err := m.enroller(kind)
	if err != nil {
		return factors.Enrollment{}, nil, err
	}
	action := ChangeAdd
	if _, backup := f.(factors.Backup); backup {
		action = ChangeRecovery
	}
	sess, u, _, err := m.authorize(ctx, id, action, "")
	if err != nil {
		return factors.Enrollment{}, nil, err
	}
	en, err := e.Enroll(ctx, subject(u, lang, clientOf(sess)), r)
	if err != nil || len(en.Codes) == 0 {
		return en, nil, m.refusal(f, err)
	}
	next, err := m.afterChange(ctx, id, u.Username)
	if err == nil {
		m.o.Activity.Changed(ctx, u.Person(), activity.EventRecoveryCreated, kind, "", clientOf(next))
	}
	return en, next, err
}

// ConfirmEnroll finishes an enrolment with the person's response and
// saves the credential. The right to add is checked again: it may have
// lapsed, or another factor been added, since the enrolment began. The
// response proves the new credential works for this enrolment only: it is
// not a sign-in proof (else a rule that accepts only that factor would be
// satisfied by a credential its enroller just added), so the session gets
// no proof from it.
func (m *MFA) ConfirmEnroll(ctx context.Context, id, kind, enrollID, lang string, r factors.Response, name string) (factors.Credential, *Session, error) {
	f, e, err := m.enroller(kind)
	if err != nil {
		return factors.Credential{}, nil, err
	}
	sess, u, _, err := m.authorize(ctx, id, ChangeAdd, "")
	if err != nil {
		return factors.Credential{}, nil, err
	}
	cred, err := e.ConfirmEnroll(ctx, subject(u, lang, clientOf(sess)), enrollID, r, name)
	if err != nil {
		if f.Shape() == factors.ShapeCode {
			return factors.Credential{}, nil, m.refusal(f, err)
		}
		return factors.Credential{}, nil, err
	}
	next, err := m.afterChange(ctx, id, u.Username)
	if err == nil {
		m.o.Activity.Changed(ctx, u.Person(), activity.EventFactorAdded, kind, cred.Name, clientOf(next))
		if f := m.fresh(next); f.recovery {
			// The factor added under a recovery grant completes it.
			cred.Kind = kind
			err = m.completeRecovery(ctx, next, u, cred)
		}
	}
	return cred, next, err
}

// ResumeEnroll shows the pending enrolment enrollID of kind again, for the
// same authority that could start it: after a mistyped confirming code the
// person keeps the app they scanned and the page keeps its QR code.
func (m *MFA) ResumeEnroll(ctx context.Context, id, kind, enrollID, lang string) (factors.Enrollment, error) {
	f, _, err := m.enroller(kind)
	if err != nil {
		return factors.Enrollment{}, err
	}
	r, ok := f.(factors.EnrollResumer)
	if !ok {
		return factors.Enrollment{}, fmt.Errorf("%s: %w", kind, factors.ErrExpired)
	}
	sess, u, _, err := m.authorize(ctx, id, ChangeAdd, "")
	if err != nil {
		return factors.Enrollment{}, err
	}
	return r.ResumeEnroll(ctx, subject(u, lang, clientOf(sess)), enrollID)
}

// RenameCredential renames one of the session user's credentials; it needs
// a fresh proof as strong as the credential (a name is what the person
// trusts when choosing which key to keep).
func (m *MFA) RenameCredential(ctx context.Context, id, credID, name string) error {
	sess, u, creds, err := m.authorize(ctx, id, ChangeRename, credID)
	if err != nil {
		return err
	}
	r, err := m.owner(ctx, u.Username, credID)
	if err != nil {
		return err
	}
	if err := r.Rename(ctx, u.Username, credID, name); err != nil {
		return err
	}
	if i := slices.IndexFunc(creds, func(c heldCredential) bool { return c.ID == credID }); i >= 0 {
		clean, _ := factors.CleanName(name)
		m.o.Activity.Changed(ctx, u.Person(), activity.EventFactorRenamed, creds[i].Kind, creds[i].Name+" → "+clean, clientOf(sess))
	}
	return nil
}

// RemoveCredential removes one of the session user's credentials, unless
// it is the last second factor while the policy requires one. It needs a
// fresh proof at least as strong as the credential. Every session it
// vouched for ends, this one too when it was proved with it: what a
// credential vouched for does not outlive it.
func (m *MFA) RemoveCredential(ctx context.Context, id, credID string) (*Session, error) {
	_, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return nil, err
	}
	creds, err := m.held(ctx, u.Username)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(creds, func(c heldCredential) bool { return c.ID == credID }) {
		return nil, factors.ErrNotFound
	}
	// The last factor is refused before the proof is asked for: no
	// confirmation would make this removal possible. A backup set
	// (recovery codes) is no factor to keep alone.
	if m.o.RequireSecondFactor() {
		others := slices.ContainsFunc(creds, func(c heldCredential) bool { return c.ID != credID && !c.backup })
		if !others {
			un, err := m.unmanaged(ctx, u)
			if err != nil {
				return nil, err
			}
			if len(un) == 0 {
				return nil, ErrLastFactor
			}
		}
	}
	if _, u, creds, err = m.authorize(ctx, id, ChangeRemove, credID); err != nil {
		return nil, err
	}
	r, err := m.owner(ctx, u.Username, credID)
	if err != nil {
		return nil, err
	}
	if err := r.Remove(ctx, u.Username, credID); err != nil {
		return nil, err
	}
	sess, err := m.afterChange(ctx, id, u.Username)
	if err != nil {
		return nil, err
	}
	if _, err := m.sessions.RevokeRef(ctx, u.Username, credID); err != nil {
		return nil, err
	}
	if i := slices.IndexFunc(creds, func(c heldCredential) bool { return c.ID == credID }); i >= 0 {
		m.o.Activity.Changed(ctx, u.Person(), activity.EventFactorRemoved, creds[i].Kind, creds[i].Name, clientOf(sess))
	}
	return sess, nil
}

func (m *MFA) owner(ctx context.Context, username, credID string) (factors.Manager, error) {
	for _, r := range m.managers() {
		cs, err := r.List(ctx, username)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(cs, func(c factors.Credential) bool { return c.ID == credID }) {
			return r, nil
		}
	}
	return nil, factors.ErrNotFound
}

// afterChange follows every change of a user's factors: remembered devices
// are forgotten (they were trusted under the old set) and the session ID
// rotates (privilege changed). It records no proof: a change proves
// nothing about who signs in.
func (m *MFA) afterChange(ctx context.Context, id, username string) (*Session, error) {
	if m.o.Devices != nil {
		if _, err := m.o.Devices.RevokeAll(ctx, username); err != nil {
			return nil, err
		}
	}
	return m.sessions.Rotate(ctx, id)
}

func displayName(u User) string {
	if u.DisplayName != "" {
		return u.DisplayName
	}
	return u.Username
}
