package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/emailcode"
	"github.com/keygate/keygate/factors/totp"
	fwa "github.com/keygate/keygate/factors/webauthn"
	"github.com/keygate/keygate/policy"
)

// Proof kinds that live on sessions next to the factors of the policy
// package. They are not second factors: the policy ignores them (except
// the trusted device, which it reads from Subject.TrustedDevice) and the
// identity headers do not list them.
const (
	// ProofEnrollment: the person proved, beyond the password, that they
	// may enrol a first second factor (an admin's link, a code by email).
	ProofEnrollment = "enrollment"
	// ProofDevice: the session began on a remembered device.
	ProofDevice = "device"
)

// IsSecondFactor says whether a proof kind is a second factor.
func IsSecondFactor(kind string) bool {
	switch kind {
	case policy.FactorWebAuthn, policy.FactorTOTP, policy.FactorEmail, policy.FactorRecovery:
		return true
	}
	return false
}

// Errors of the second-factor flows where callers branch; each has a
// message the portal can show.
var (
	ErrWrongCode          = errors.New("authn: the code is not correct")
	ErrCodeUsed           = errors.New("authn: the code was already used")
	ErrCodeExpired        = errors.New("authn: the code has expired")
	ErrCodeDead           = errors.New("authn: too many wrong tries for this code")
	ErrNoCodeSent         = errors.New("authn: no code was sent")
	ErrElevationRequired  = errors.New("authn: confirm it is you with a second factor first")
	ErrLastFactor         = errors.New("authn: this is your last second factor and the policy requires one")
	ErrFactorUnavailable  = errors.New("authn: this factor is not available")
	ErrEmailNotVerified   = errors.New("authn: the email address is not verified")
	ErrAssertionRefused   = errors.New("authn: the security key's answer was refused")
	ErrSessionUnavailable = errors.New("authn: no such session")
	// ErrEnrollCodeClosed: a code by email can no longer stand in for an
	// admin's link, because the account already has a second factor (or
	// email enrolment is off). Callers answer as if a code was sent.
	ErrEnrollCodeClosed = errors.New("authn: the account already has a second factor; enrolment by email code is closed")
)

// Change actions on second factors, as WeakProofError names them.
const (
	ChangeAdd      = "add"      // enrol a security key, an app; also new recovery codes
	ChangeRemove   = "remove"   // remove a credential
	ChangeRename   = "rename"   // rename a credential
	ChangeRecovery = "recovery" // replace the recovery codes with a new set
)

// WeakProofError refuses a change of second factors because the session's
// fresh proof is weaker than what the change touches: adding needs the
// account's strongest factor (or an admin's enrolment link), removing,
// renaming or replacing one needs a proof at least as strong as it. It
// matches ErrElevationRequired.
type WeakProofError struct {
	Action string           // Change* constant
	Need   factors.Strength // the weakest fresh proof that would do
	Have   factors.Strength // the strongest fresh proof the session has
	// Kinds are the factor kinds the person can confirm with to reach
	// Need, strongest first (empty when only an admin's link helps).
	Kinds []string
}

func (e *WeakProofError) Error() string {
	return fmt.Sprintf("authn: to %s a second factor, confirm with a %s factor first (this session has %s)", e.Action, e.Need, e.Have)
}

// Unwrap makes errors.Is(err, ErrElevationRequired) hold.
func (e *WeakProofError) Unwrap() error { return ErrElevationRequired }

// The factor capabilities authn drives; the factor packages implement them.
type (
	TOTPFactor interface {
		factors.Registry
		BeginEnroll(ctx context.Context, user, accountName string) (totp.Enrollment, error)
		FinishEnroll(ctx context.Context, user, enrollID, code, name string) (factors.Credential, error)
		Verify(ctx context.Context, user, code string) (string, bool, error)
	}
	RecoveryFactor interface {
		factors.Registry
		Generate(ctx context.Context, user string) ([]string, error)
		Verify(ctx context.Context, user, code string) (bool, int, error)
		Remaining(ctx context.Context, user string) (int, error)
	}
	EmailFactor interface {
		Send(ctx context.Context, user, address, lang string, p emailcode.Purpose) (emailcode.Sent, error)
		Verify(ctx context.Context, user string, p emailcode.Purpose, code string) (bool, error)
		Pending(ctx context.Context, user string, p emailcode.Purpose) (emailcode.Pending, bool, error)
	}
	WebAuthnFactor interface {
		factors.Registry
		BeginRegistration(ctx context.Context, u fwa.User, kind fwa.AuthenticatorKind) (json.RawMessage, string, error)
		FinishRegistration(ctx context.Context, u fwa.User, ceremonyID string, response []byte, name string) (factors.Credential, error)
		BeginLogin(ctx context.Context, username string) (json.RawMessage, string, error)
		FinishLogin(ctx context.Context, username, ceremonyID string, response []byte) (fwa.Assertion, error)
		BeginPasskey(ctx context.Context) (json.RawMessage, string, error)
		FinishPasskey(ctx context.Context, ceremonyID string, response []byte) (string, fwa.Assertion, error)
		// Credentials lists the user's keys with their attestation, which
		// decides their strength.
		Credentials(ctx context.Context, user string) ([]fwa.CredentialInfo, error)
	}
)

// MFAOptions wire the second factors; a nil factor is switched off.
type MFAOptions struct {
	TOTP     TOTPFactor
	Recovery RecoveryFactor
	Email    EmailFactor
	WebAuthn WebAuthnFactor
	Devices  *Devices
	Links    *EnrollLinks
	// ElevationWindow: adding or removing a factor needs a second factor
	// at most this old (default 5 minutes).
	ElevationWindow time.Duration
	// EnrollGrantWindow: how long an enrolment link or code lets the
	// session enrol (default 15 minutes).
	EnrollGrantWindow time.Duration
	// EmailEnrollment lets a code to the verified address stand in for an
	// admin's link when enrolling the first factor.
	EmailEnrollment bool
	// PasskeyIsTwoFactor: a passkey sign-in with user verification
	// satisfies two_factor on its own (NIST AAL2 multi-factor
	// cryptographic authenticator). Otherwise it counts as one factor.
	PasskeyIsTwoFactor bool
	// RequireSecondFactor reports whether the policy demands a second
	// factor anywhere, so the last one may not be removed.
	RequireSecondFactor func() bool
	// Notices mails the person about security events (nil = none).
	Notices *Notices
	// Regulator limits tries of every second factor per account and
	// address (nil = unlimited, apart from each factor's own limits).
	Regulator *Regulator
	// Activity logs sign-ins, failures and security changes and mails the
	// person about them (nil = no log).
	Activity *Activity
	Now      func() time.Time
}

// MFA runs the second-factor flows on sessions: it checks a proof with the
// factor, then records it on the session (rotating its ID). It is the one
// place every verifier passes, so regulation and audit hook in here.
type MFA struct {
	users    *Users
	sessions *Sessions
	o        MFAOptions
}

// NewMFA wires the flows.
func NewMFA(users *Users, sessions *Sessions, o MFAOptions) *MFA {
	if o.ElevationWindow <= 0 {
		o.ElevationWindow = 5 * time.Minute
	}
	if o.EnrollGrantWindow <= 0 {
		o.EnrollGrantWindow = 15 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RequireSecondFactor == nil {
		o.RequireSecondFactor = func() bool { return true }
	}
	return &MFA{users: users, sessions: sessions, o: o}
}

// Method is a way this user can give a second factor now.
type Method struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"` // masked address, "3 codes left"
}

// Methods lists the second factors username can use, in the order the
// chooser offers them.
func (m *MFA) Methods(ctx context.Context, username string) ([]Method, error) {
	u, err := m.users.Get(ctx, username)
	if err != nil {
		return nil, err
	}
	var out []Method
	if m.o.WebAuthn != nil {
		if cs, err := m.o.WebAuthn.List(ctx, u.Username); err != nil {
			return nil, err
		} else if len(cs) > 0 {
			out = append(out, Method{Kind: policy.FactorWebAuthn})
		}
	}
	if m.o.TOTP != nil {
		if cs, err := m.o.TOTP.List(ctx, u.Username); err != nil {
			return nil, err
		} else if len(cs) > 0 {
			out = append(out, Method{Kind: policy.FactorTOTP})
		}
	}
	if m.o.Email != nil && u.EmailVerified && u.Email != "" {
		out = append(out, Method{Kind: policy.FactorEmail, Detail: emailcode.Mask(u.Email)})
	}
	if m.o.Recovery != nil {
		n, err := m.o.Recovery.Remaining(ctx, u.Username)
		if err != nil && !errors.Is(err, factors.ErrNotEnrolled) {
			return nil, err
		}
		if n > 0 {
			out = append(out, Method{Kind: policy.FactorRecovery, Detail: fmt.Sprintf("%d", n)})
		}
	}
	return out, nil
}

// Credentials lists every enrolled credential of username.
func (m *MFA) Credentials(ctx context.Context, username string) ([]factors.Credential, error) {
	var out []factors.Credential
	for _, r := range m.registries() {
		cs, err := r.List(ctx, username)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", r.Kind(), err)
		}
		out = append(out, cs...)
	}
	return out, nil
}

func (m *MFA) registries() []factors.Registry {
	var rs []factors.Registry
	if m.o.WebAuthn != nil {
		rs = append(rs, m.o.WebAuthn)
	}
	if m.o.TOTP != nil {
		rs = append(rs, m.o.TOTP)
	}
	if m.o.Recovery != nil {
		rs = append(rs, m.o.Recovery)
	}
	return rs
}

// sessionUser resolves the session of id and its user (fresh from the
// store: a disabled user is refused here).
func (m *MFA) sessionUser(ctx context.Context, id string) (*Session, User, error) {
	sess, ok := m.sessions.Lookup(id)
	if !ok {
		return nil, User{}, ErrSessionUnavailable
	}
	u, err := m.users.Get(ctx, sess.Username)
	if errors.Is(err, ErrUserNotFound) {
		return nil, User{}, ErrSessionUnavailable
	}
	if err != nil {
		return nil, User{}, err
	}
	if u.Disabled {
		return nil, User{}, ErrSessionUnavailable
	}
	return sess, u, nil
}

func (m *MFA) prove(ctx context.Context, id string, p policy.Proof) (*Session, error) {
	p.At = m.o.Now().UTC()
	return m.sessions.AddProof(ctx, id, p)
}

// VerifyTOTP checks an authenticator-app code for the session's user.
func (m *MFA) VerifyTOTP(ctx context.Context, id, code string) (*Session, error) {
	if m.o.TOTP == nil {
		return nil, ErrFactorUnavailable
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return nil, err
	}
	try, err := m.admit(ctx, sess, u)
	if err != nil {
		return nil, err
	}
	cred, ok, err := m.o.TOTP.Verify(ctx, u.Username, code)
	switch {
	case errors.Is(err, factors.ErrNotEnrolled):
		err = ErrWrongCode // the same answer as for someone who has an app
	case errors.Is(err, factors.ErrReplayed):
		err = ErrCodeUsed
	case err == nil && !ok:
		err = ErrWrongCode
	}
	if err := m.settle(ctx, try, sess, u, policy.FactorTOTP, err); err != nil {
		return nil, err
	}
	return m.prove(ctx, id, policy.Proof{Kind: policy.FactorTOTP, Ref: cred})
}

// VerifyRecovery checks a recovery code; remaining says how many are left.
// Using one emails the person (in lang), who may have lost a device — or
// may not be the one signing in.
func (m *MFA) VerifyRecovery(ctx context.Context, id, code, lang, ip string) (*Session, int, error) {
	if m.o.Recovery == nil {
		return nil, 0, ErrFactorUnavailable
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	try, err := m.admit(ctx, sess, u)
	if err != nil {
		return nil, 0, err
	}
	ok, left, err := m.o.Recovery.Verify(ctx, u.Username, code)
	switch {
	case errors.Is(err, factors.ErrNotEnrolled):
		err = ErrWrongCode
	case errors.Is(err, factors.ErrReplayed):
		err = ErrCodeUsed
	case err == nil && !ok:
		err = ErrWrongCode
	}
	if err := m.settle(ctx, try, sess, u, policy.FactorRecovery, err); err != nil {
		return nil, 0, err
	}
	s, err := m.prove(ctx, id, policy.Proof{Kind: policy.FactorRecovery, Ref: policy.FactorRecovery})
	if err == nil {
		m.o.Notices.RecoveryUsed(ctx, u, lang, ip, left)
	}
	return s, left, err
}

// SendEmailCode mails a sign-in code to the session user's verified
// address.
func (m *MFA) SendEmailCode(ctx context.Context, id, lang string, purpose emailcode.Purpose) (emailcode.Sent, error) {
	if m.o.Email == nil {
		return emailcode.Sent{}, ErrFactorUnavailable
	}
	_, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return emailcode.Sent{}, err
	}
	if u.Email == "" || (!u.EmailVerified && purpose != emailcode.PurposeVerifyAddress) {
		return emailcode.Sent{}, ErrEmailNotVerified
	}
	if purpose == emailcode.PurposeEnroll {
		if err := m.enrollCodeOpen(ctx, u); err != nil {
			return emailcode.Sent{}, err
		}
	}
	return m.o.Email.Send(ctx, u.Username, u.Email, lang, purpose)
}

// enrollCodeOpen says whether a code by email may stand in for an admin's
// link: only while the account has no second factor. Once it has one, a
// password and a mailbox must not be able to add another; the way back
// for a person who lost their factors is an admin's enrolment link.
func (m *MFA) enrollCodeOpen(ctx context.Context, u User) error {
	if !m.o.EmailEnrollment {
		return ErrEnrollCodeClosed
	}
	creds, err := m.held(ctx, u.Username)
	if err != nil {
		return err
	}
	if len(creds) > 0 {
		return ErrEnrollCodeClosed
	}
	return nil
}

// PendingEmailCode tells the page where the last code went and when a new
// one may be sent.
func (m *MFA) PendingEmailCode(ctx context.Context, id string, purpose emailcode.Purpose) (emailcode.Pending, bool, error) {
	if m.o.Email == nil {
		return emailcode.Pending{}, false, ErrFactorUnavailable
	}
	_, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return emailcode.Pending{}, false, err
	}
	return m.o.Email.Pending(ctx, u.Username, purpose)
}

func emailErr(err error) error {
	switch {
	case errors.Is(err, factors.ErrExpired):
		return ErrCodeExpired
	case errors.Is(err, emailcode.ErrTooManyTries):
		return ErrCodeDead
	case errors.Is(err, emailcode.ErrNoCode), errors.Is(err, factors.ErrReplayed):
		return ErrNoCodeSent
	}
	return err
}

// VerifyEmailCode checks a code sent for purpose and records what it
// proves: a second factor (sign-in), an enrolment grant, or the address.
func (m *MFA) VerifyEmailCode(ctx context.Context, id string, purpose emailcode.Purpose, code string) (*Session, error) {
	if m.o.Email == nil {
		return nil, ErrFactorUnavailable
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return nil, err
	}
	if purpose == emailcode.PurposeEnroll {
		// A code sent before the first factor was added is dead now.
		if err := m.enrollCodeOpen(ctx, u); err != nil {
			return nil, err
		}
	}
	try, err := m.admit(ctx, sess, u)
	if err != nil {
		return nil, err
	}
	ok, err := m.o.Email.Verify(ctx, u.Username, purpose, code)
	if err != nil {
		err = emailErr(err)
	} else if !ok {
		err = ErrWrongCode
	}
	factor := policy.FactorEmail
	if purpose != emailcode.PurposeSignIn {
		factor = "" // a code that confirms an address or grants enrolment proves no sign-in
	}
	if err := m.settle(ctx, try, sess, u, factor, err); err != nil {
		return nil, err
	}
	switch purpose {
	case emailcode.PurposeSignIn:
		if !u.EmailVerified {
			return nil, ErrEmailNotVerified
		}
		return m.prove(ctx, id, policy.Proof{Kind: policy.FactorEmail, Ref: policy.FactorEmail})
	case emailcode.PurposeEnroll:
		return m.prove(ctx, id, policy.Proof{Kind: ProofEnrollment, Ref: "email"})
	case emailcode.PurposeVerifyAddress:
		nu, err := m.users.Update(ctx, u.Username, func(x *User) error {
			if x.Email != u.Email {
				return ErrEmailNotVerified // the address changed meanwhile
			}
			x.EmailVerified = true
			return nil
		})
		if err != nil {
			return nil, err
		}
		m.o.Activity.Changed(ctx, nu, EventEmailVerified, "", "", clientOf(sess))
		return m.sessions.Rotate(ctx, id)
	}
	return nil, fmt.Errorf("authn: unknown code purpose %q", purpose)
}

// BeginWebAuthnLogin starts a security-key assertion for the session user.
func (m *MFA) BeginWebAuthnLogin(ctx context.Context, id string) (json.RawMessage, string, error) {
	if m.o.WebAuthn == nil {
		return nil, "", ErrFactorUnavailable
	}
	_, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return nil, "", err
	}
	return m.o.WebAuthn.BeginLogin(ctx, u.Username)
}

func webauthnProof(a fwa.Assertion) policy.Proof {
	return policy.Proof{Kind: policy.FactorWebAuthn, Ref: a.CredentialID, AAGUID: a.AAGUID, Attested: a.Attested,
		UserVerified: a.UserVerified, BackupEligible: a.BackupEligible}
}

// FinishWebAuthnLogin verifies the assertion and records what it proved.
func (m *MFA) FinishWebAuthnLogin(ctx context.Context, id, ceremony string, response []byte) (*Session, error) {
	if m.o.WebAuthn == nil {
		return nil, ErrFactorUnavailable
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return nil, err
	}
	try, err := m.admit(ctx, sess, u)
	if err != nil {
		return nil, err
	}
	a, err := m.o.WebAuthn.FinishLogin(ctx, u.Username, ceremony, response)
	if err := m.settle(ctx, try, sess, u, policy.FactorWebAuthn, assertionErr(err)); err != nil {
		return nil, err
	}
	return m.prove(ctx, id, webauthnProof(a))
}

// BeginPasskey starts a username-less passkey sign-in.
func (m *MFA) BeginPasskey(ctx context.Context) (json.RawMessage, string, error) {
	if m.o.WebAuthn == nil {
		return nil, "", ErrFactorUnavailable
	}
	return m.o.WebAuthn.BeginPasskey(ctx)
}

// FinishPasskey verifies a passkey assertion and starts a session. With
// user verification and PasskeyIsTwoFactor it carries both factors;
// otherwise it counts as the first factor only.
func (m *MFA) FinishPasskey(ctx context.Context, ceremony string, response []byte, meta Meta) (*Session, error) {
	if m.o.WebAuthn == nil {
		return nil, ErrFactorUnavailable
	}
	// A passkey names its account only once verified, so tries are
	// counted per address. An account lock after guessed passwords does
	// not stop a passkey (it cannot be guessed); a reported account and a
	// locked address do.
	c := Client{IP: meta.IP, UserAgent: meta.UserAgent}
	try, err := m.o.Regulator.Begin(ctx, GatePassword, "", meta.IP)
	if err != nil {
		return nil, err
	}
	if !try.Check {
		return nil, ErrAssertionRefused
	}
	name, a, err := m.o.WebAuthn.FinishPasskey(ctx, ceremony, response)
	if err != nil {
		if countable(err) {
			try.Fail(ctx)
		} else {
			_ = try.Release(ctx)
		}
		return nil, fmt.Errorf("%w: %w", ErrAssertionRefused, err)
	}
	u, err := m.users.Get(ctx, name)
	if err != nil || u.Disabled {
		try.Fail(ctx)
		return nil, ErrAssertionRefused
	}
	if try.Locked != nil {
		return nil, try.Locked
	}
	if le, err := m.o.Regulator.Status(ctx, GatePassword, u.Username, ""); err != nil {
		return nil, err
	} else if le != nil && le.Reported {
		return nil, m.lockedFor(ctx, u, le)
	}
	if err := try.Pass(ctx); err != nil {
		return nil, err
	}
	now := m.o.Now().UTC()
	sess, err := m.sessions.Create(ctx, u, policy.Proof{Kind: policy.FactorPassword, At: now, Ref: "passkey"}, meta)
	if err != nil {
		return nil, err
	}
	m.o.Activity.SignedIn(ctx, u, "passkey", c)
	if a.UserVerified && m.o.PasskeyIsTwoFactor {
		return m.prove(ctx, sess.ID, webauthnProof(a))
	}
	return sess, nil
}

// RedeemEnrollLink turns an admin's enrolment link into an enrolment
// grant on the session (the link's user must be the session's user).
func (m *MFA) RedeemEnrollLink(ctx context.Context, id, token string) (*Session, error) {
	if m.o.Links == nil {
		return nil, ErrLinkInvalid
	}
	sess, _, err := m.sessionUser(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := m.o.Links.Redeem(ctx, sess.Username, token); err != nil {
		return nil, err
	}
	return m.prove(ctx, id, policy.Proof{Kind: ProofEnrollment, Ref: "link"})
}

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
}

// held lists username's credentials with their strengths. A suspended
// security key keeps its strength: an admin may put it back in use, and a
// weaker factor must not take its place meanwhile.
func (m *MFA) held(ctx context.Context, username string) ([]heldCredential, error) {
	var out []heldCredential
	if m.o.WebAuthn != nil {
		infos, err := m.o.WebAuthn.Credentials(ctx, username)
		if err != nil {
			return nil, fmt.Errorf("list webauthn: %w", err)
		}
		for _, in := range infos {
			out = append(out, heldCredential{in.Credential, factors.StrengthOf(factors.KindWebAuthn, in.Attested)})
		}
	}
	for _, r := range m.registries() {
		if r.Kind() == factors.KindWebAuthn {
			continue
		}
		cs, err := r.List(ctx, username)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", r.Kind(), err)
		}
		for _, c := range cs {
			out = append(out, heldCredential{c, factors.StrengthOf(c.Kind, false)})
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
}

func (m *MFA) fresh(sess *Session) freshProof {
	var f freshProof
	now := m.o.Now()
	for _, p := range sess.Proofs {
		switch {
		case IsSecondFactor(p.Kind) && now.Sub(p.At) <= m.o.ElevationWindow:
			f.best = max(f.best, factors.StrengthOf(p.Kind, p.Attested))
		case p.Kind == ProofEnrollment && now.Sub(p.At) <= m.o.EnrollGrantWindow:
			if p.Ref == "link" {
				f.link = true
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
	return f.best >= needToAdd(creds) || f.link || (f.emailGrant && len(creds) == 0)
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
	for _, k := range factors.KindsReaching(need) {
		has := slices.ContainsFunc(creds, func(c heldCredential) bool { return c.Kind == k && c.Strength >= need })
		if k == factors.KindEmail {
			has = m.o.Email != nil && u.EmailVerified && u.Email != ""
		}
		if has && !slices.Contains(werr.Kinds, k) {
			werr.Kinds = append(werr.Kinds, k)
		}
	}
	m.o.Activity.Note(ctx, u.Username, EventChangeRefused, action, clientOf(sess))
	return nil, User{}, nil, werr
}

// BeginTOTPEnroll starts adding an authenticator app.
func (m *MFA) BeginTOTPEnroll(ctx context.Context, id string) (totp.Enrollment, error) {
	if m.o.TOTP == nil {
		return totp.Enrollment{}, ErrFactorUnavailable
	}
	_, u, _, err := m.authorize(ctx, id, ChangeAdd, "")
	if err != nil {
		return totp.Enrollment{}, err
	}
	account := u.Email
	if account == "" {
		account = u.Username
	}
	return m.o.TOTP.BeginEnroll(ctx, u.Username, account)
}

// FinishTOTPEnroll confirms the app with one current code and saves it.
// The right to add is checked again: it may have lapsed, or another
// factor been added, since the QR code was shown. The confirming code
// proves the app works for this enrolment only: it is not a sign-in proof
// (else a rule that accepts only the app would be satisfied by an app its
// enroller just added), so the session gets no TOTP proof from it.
func (m *MFA) FinishTOTPEnroll(ctx context.Context, id, enrollID, code, name string) (factors.Credential, *Session, error) {
	if m.o.TOTP == nil {
		return factors.Credential{}, nil, ErrFactorUnavailable
	}
	_, u, _, err := m.authorize(ctx, id, ChangeAdd, "")
	if err != nil {
		return factors.Credential{}, nil, err
	}
	cred, err := m.o.TOTP.FinishEnroll(ctx, u.Username, enrollID, code, name)
	if errors.Is(err, totp.ErrInvalidCode) {
		return factors.Credential{}, nil, ErrWrongCode
	}
	if err != nil {
		return factors.Credential{}, nil, err
	}
	sess, err := m.afterChange(ctx, id, u.Username)
	if err == nil {
		m.o.Activity.Changed(ctx, u, EventFactorAdded, policy.FactorTOTP, cred.Name, clientOf(sess))
	}
	return cred, sess, err
}

// BeginWebAuthnEnroll starts adding a security key or this device.
func (m *MFA) BeginWebAuthnEnroll(ctx context.Context, id string, kind fwa.AuthenticatorKind) (json.RawMessage, string, error) {
	if m.o.WebAuthn == nil {
		return nil, "", ErrFactorUnavailable
	}
	_, u, _, err := m.authorize(ctx, id, ChangeAdd, "")
	if err != nil {
		return nil, "", err
	}
	return m.o.WebAuthn.BeginRegistration(ctx, fwa.User{Username: u.Username, DisplayName: displayName(u)}, kind)
}

// FinishWebAuthnEnroll saves the new credential. Like the app's code, the
// registration proves possession for the enrolment only: no sign-in proof.
func (m *MFA) FinishWebAuthnEnroll(ctx context.Context, id, ceremony string, response []byte, name string) (factors.Credential, *Session, error) {
	if m.o.WebAuthn == nil {
		return factors.Credential{}, nil, ErrFactorUnavailable
	}
	_, u, _, err := m.authorize(ctx, id, ChangeAdd, "")
	if err != nil {
		return factors.Credential{}, nil, err
	}
	cred, err := m.o.WebAuthn.FinishRegistration(ctx, fwa.User{Username: u.Username, DisplayName: displayName(u)}, ceremony, response, name)
	if err != nil {
		return factors.Credential{}, nil, err
	}
	sess, err := m.afterChange(ctx, id, u.Username)
	if err == nil {
		m.o.Activity.Changed(ctx, u, EventFactorAdded, policy.FactorWebAuthn, cred.Name, clientOf(sess))
	}
	return cred, sess, err
}

// GenerateRecovery makes a new set of recovery codes (the old set dies).
// A new set is a new factor for whoever sees it, so it needs what adding
// needs: a fresh proof of the account's strongest factor.
func (m *MFA) GenerateRecovery(ctx context.Context, id string) ([]string, *Session, error) {
	if m.o.Recovery == nil {
		return nil, nil, ErrFactorUnavailable
	}
	_, u, _, err := m.authorize(ctx, id, ChangeRecovery, "")
	if err != nil {
		return nil, nil, err
	}
	codes, err := m.o.Recovery.Generate(ctx, u.Username)
	if err != nil {
		return nil, nil, err
	}
	sess, err := m.afterChange(ctx, id, u.Username)
	if err == nil {
		m.o.Activity.Changed(ctx, u, EventRecoveryCreated, policy.FactorRecovery, "", clientOf(sess))
	}
	return codes, sess, err
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
		m.o.Activity.Changed(ctx, u, EventFactorRenamed, creds[i].Kind, creds[i].Name+" → "+clean, clientOf(sess))
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
	// confirmation would make this removal possible.
	if m.o.RequireSecondFactor() {
		others := slices.IndexFunc(creds, func(c heldCredential) bool { return c.ID != credID && c.Kind != policy.FactorRecovery }) >= 0
		emailFactor := m.o.Email != nil && u.EmailVerified
		if !others && !emailFactor {
			return nil, ErrLastFactor
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
		m.o.Activity.Changed(ctx, u, EventFactorRemoved, creds[i].Kind, creds[i].Name, clientOf(sess))
	}
	return sess, nil
}

func (m *MFA) owner(ctx context.Context, username, credID string) (factors.Registry, error) {
	for _, r := range m.registries() {
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

// TrustDevice remembers the session's browser for ttl ("remember this
// device"); only right after a second factor.
func (m *MFA) TrustDevice(ctx context.Context, id, userAgent, ip string, ttl time.Duration) (string, Device, error) {
	if m.o.Devices == nil {
		return "", Device{}, ErrFactorUnavailable
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return "", Device{}, err
	}
	fresh := slices.ContainsFunc(sess.Proofs, func(p policy.Proof) bool {
		return IsSecondFactor(p.Kind) && m.o.Now().Sub(p.At) <= m.o.ElevationWindow
	})
	if !fresh {
		return "", Device{}, ErrElevationRequired
	}
	token, dev, err := m.o.Devices.Trust(ctx, u.Username, userAgent, ip, ttl)
	if err == nil {
		m.o.Activity.Changed(ctx, u, EventDeviceTrusted, "", dev.Name, Client{IP: ip, UserAgent: userAgent})
	}
	return token, dev, err
}

// UseDevice marks a fresh session as started on a remembered device when
// token is one of its user's live devices. It returns the session
// unchanged otherwise.
func (m *MFA) UseDevice(ctx context.Context, sess *Session, token, ip string) (*Session, error) {
	if m.o.Devices == nil || token == "" {
		return sess, nil
	}
	dev, ok := m.o.Devices.Check(ctx, sess.Username, token, ip)
	if !ok {
		return sess, nil
	}
	return m.prove(ctx, sess.ID, policy.Proof{Kind: ProofDevice, Ref: dev.ID})
}

// Devices lists the user's remembered devices.
func (m *MFA) Devices(ctx context.Context, username string) ([]Device, error) {
	if m.o.Devices == nil {
		return nil, nil
	}
	return m.o.Devices.List(ctx, username)
}

// ForgetDevice revokes one remembered device (deviceID "" = all) and ends
// the sessions that began on it.
func (m *MFA) ForgetDevice(ctx context.Context, id, deviceID string) error {
	if m.o.Devices == nil {
		return ErrFactorUnavailable
	}
	sess, _, err := m.sessionUser(ctx, id)
	if err != nil {
		return err
	}
	ids := []string{deviceID}
	if deviceID == "" {
		devs, err := m.o.Devices.List(ctx, sess.Username)
		if err != nil {
			return err
		}
		ids = ids[:0]
		for _, d := range devs {
			ids = append(ids, d.ID)
		}
	}
	for _, dev := range ids {
		if err := m.o.Devices.Revoke(ctx, sess.Username, dev); err != nil && (deviceID != "" || !errors.Is(err, ErrDeviceNotFound)) {
			return err
		}
		if _, err := m.sessions.RevokeRef(ctx, sess.Username, dev); err != nil {
			return err
		}
	}
	m.o.Activity.Note(ctx, sess.Username, EventDevicesForgotten, "", clientOf(sess))
	return nil
}

// User returns the current record of username.
func (m *MFA) User(ctx context.Context, username string) (User, error) {
	return m.users.Get(ctx, username)
}

// PasskeysEnabled says whether passkey sign-in is offered.
func (m *MFA) PasskeysEnabled() bool { return m.o.WebAuthn != nil }

// ResetFactors removes every second factor of username, forgets their
// remembered devices and ends their sessions (an admin's reset when a
// person lost everything). It returns how many credentials it removed.
func (m *MFA) ResetFactors(ctx context.Context, username string) (int, error) {
	u, err := m.users.Get(ctx, username)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range m.registries() {
		k, err := r.RemoveAll(ctx, username)
		if err != nil {
			return n, fmt.Errorf("remove %s: %w", r.Kind(), err)
		}
		n += k
	}
	if m.o.Devices != nil {
		if _, err := m.o.Devices.RevokeAll(ctx, username); err != nil {
			return n, err
		}
	}
	if _, err := m.sessions.RevokeUser(ctx, username); err != nil {
		return n, err
	}
	m.o.Activity.Changed(ctx, u, EventFactorsReset, "", "", Client{})
	return n, nil
}

// IssueEnrollLink creates an admin's one-time enrolment link token.
func (m *MFA) IssueEnrollLink(ctx context.Context, username string, ttl time.Duration) (string, time.Time, error) {
	if m.o.Links == nil {
		return "", time.Time{}, ErrFactorUnavailable
	}
	if _, err := m.users.Get(ctx, username); err != nil {
		return "", time.Time{}, err
	}
	return m.o.Links.Issue(ctx, username, ttl)
}
