package authn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/factors"
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

// IsSecondFactor says whether a proof kind on a session is a second
// factor: every kind but the password and the two bookkeeping proofs.
// Only registered factors record proofs, so this holds for a factor added
// later without a list to keep in step.
func IsSecondFactor(kind string) bool {
	switch kind {
	case "", policy.FactorPassword, ProofEnrollment, ProofDevice:
		return false
	}
	return true
}

// Errors of the second-factor flows where callers branch; each has a
// message the portal can show. The code errors wrap the factors' shared
// refusals, so errors.Is works with either.
var (
	ErrWrongCode          = fmt.Errorf("authn: the code is not correct: %w", factors.ErrWrongResponse)
	ErrCodeUsed           = fmt.Errorf("authn: the code was already used: %w", factors.ErrReplayed)
	ErrCodeExpired        = fmt.Errorf("authn: the code has expired: %w", factors.ErrExpired)
	ErrCodeDead           = fmt.Errorf("authn: too many wrong tries for this code: %w", factors.ErrTooManyTries)
	ErrNoCodeSent         = fmt.Errorf("authn: no code was sent: %w", factors.ErrNoChallenge)
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
	ChangeAdd      = "add"      // enrol a security key, an app, a phone
	ChangeRemove   = "remove"   // remove a credential
	ChangeRename   = "rename"   // rename a credential
	ChangeRecovery = "recovery" // replace a backup set (recovery codes) with a new one
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

// MFAOptions wire the second factors.
type MFAOptions struct {
	// Factors are the second factors keygate runs, in the chooser's order
	// (built in cmd). authn drives them only through factors.Factor and
	// its optional capabilities.
	Factors factors.Set
	Devices *Devices
	Links   *EnrollLinks
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
	// Regulator limits tries of every second factor per account and
	// address (nil = unlimited, apart from each factor's own limits).
	Regulator *Regulator
	// Activity logs sign-ins, failures and security changes and mails the
	// person about them (nil = no log).
	Activity *activity.Log
	// Recoveries keeps self-service account recoveries (recovery.go; nil =
	// not offered).
	Recoveries *RecoveryRequests
	Now        func() time.Time
}

// MFA runs the second-factor flows on sessions, for every factor alike:
// it resolves the session and its user, asks the regulator for a try,
// lets the factor check the response, settles the try, records the proof
// on the session (rotating its ID) and logs it. It is the one place every
// verifier passes, so regulation, audit and notices hook in here once.
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

// Factors are the registered factors, in order.
func (m *MFA) Factors() factors.Set { return m.o.Factors }

// factor returns the registered factor of kind.
func (m *MFA) factor(kind string) (factors.Factor, error) {
	if f := m.o.Factors.Get(kind); f != nil {
		return f, nil
	}
	return nil, ErrFactorUnavailable
}

// addressCodes is the factor that sends codes to the person's email
// address for other purposes than a sign-in (confirming the address,
// granting a first enrolment, unlocking).
func (m *MFA) addressCodes() (factors.AddressCodes, bool) {
	for _, f := range m.o.Factors {
		if ac, ok := f.(factors.AddressCodes); ok {
			return ac, true
		}
	}
	return nil, false
}

func (m *MFA) managers() []factors.Manager {
	var out []factors.Manager
	for _, f := range m.o.Factors {
		if r, ok := f.(factors.Manager); ok {
			out = append(out, r)
		}
	}
	return out
}

// subject is u as the factors see it: the address only once confirmed.
func subject(u User, lang string, c Client) factors.Subject {
	s := factors.Subject{Username: u.Username, DisplayName: displayName(u), Lang: lang, IP: c.IP, UserAgent: c.UserAgent}
	if u.EmailVerified {
		s.Email = u.Email
	}
	return s
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
	s := subject(u, "", Client{})
	var out []Method
	for _, f := range m.o.Factors {
		offer, ok, err := f.Usable(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Kind(), err)
		}
		if ok {
			out = append(out, Method{Kind: f.Kind(), Detail: offer.Detail})
		}
	}
	return out, nil
}

// Credentials lists every enrolled credential of username.
func (m *MFA) Credentials(ctx context.Context, username string) ([]factors.Credential, error) {
	var out []factors.Credential
	for _, r := range m.managers() {
		cs, err := r.List(ctx, username)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", r.Kind(), err)
		}
		out = append(out, cs...)
	}
	return out, nil
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

func sessionProof(p factors.Proof) policy.Proof {
	return policy.Proof{Kind: p.Kind, Ref: p.Ref, AAGUID: p.AAGUID, Attested: p.Attested,
		UserVerified: p.UserVerified, BackupEligible: p.BackupEligible}
}

// Begin starts a proof of kind for the session's user: a ceremony's
// options, or a code sent (in lang).
func (m *MFA) Begin(ctx context.Context, id, kind, lang string) (factors.Challenge, error) {
	f, err := m.factor(kind)
	if err != nil {
		return factors.Challenge{}, err
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return factors.Challenge{}, err
	}
	if f.Shape() == factors.ShapeCode && !u.EmailVerified {
		// A code a factor sends to the person's address needs it confirmed;
		// the factor says so by not being usable.
		if _, ok, err := f.Usable(ctx, subject(u, lang, clientOf(sess))); err != nil {
			return factors.Challenge{}, err
		} else if !ok {
			if _, sends := f.(factors.AddressCodes); sends {
				return factors.Challenge{}, ErrEmailNotVerified
			}
		}
	}
	ch, err := f.Begin(ctx, subject(u, lang, clientOf(sess)))
	return ch, m.refusal(f, err)
}

// Pending tells the page about a code of kind waiting to be typed.
func (m *MFA) Pending(ctx context.Context, id, kind string) (factors.Sent, bool, error) {
	f, err := m.factor(kind)
	if err != nil {
		return factors.Sent{}, false, err
	}
	r, ok := f.(factors.Resender)
	if !ok {
		return factors.Sent{}, false, nil
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return factors.Sent{}, false, err
	}
	return r.Pending(ctx, subject(u, "", clientOf(sess)))
}

// Prove checks the response to a proof of kind and records the proof on
// the session. A factor that asks for it (a recovery code) has the person
// told, in lang.
func (m *MFA) Prove(ctx context.Context, id, kind, lang string, r factors.Response) (*Session, factors.Proof, error) {
	f, err := m.factor(kind)
	if err != nil {
		return nil, factors.Proof{}, err
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return nil, factors.Proof{}, err
	}
	try, err := m.admit(ctx, sess, u)
	if err != nil {
		return nil, factors.Proof{}, err
	}
	p, err := f.Prove(ctx, subject(u, lang, clientOf(sess)), r)
	if err := m.settle(ctx, try, sess, u, kind, m.refusal(f, err)); err != nil {
		return nil, factors.Proof{}, err
	}
	// A factor the account still holds ends a pending recovery.
	m.cancelRecoveryBySignIn(ctx, u.Username, kind, clientOf(sess))
	next, err := m.prove(ctx, id, sessionProof(p))
	if err == nil && p.Notify {
		c := clientOf(sess)
		c.Lang = lang
		m.o.Activity.RecoveryUsed(ctx, u.Person(), c, p.Remaining)
	}
	return next, p, err
}

// refusal turns a factor's refusal into the flows' errors: a code's into
// ErrWrongCode, ErrCodeUsed, ErrCodeExpired, ErrCodeDead or ErrNoCodeSent
// (a person without the factor hears what a wrong code hears); a
// ceremony's into ErrAssertionRefused, keeping the factor's error for the
// reason. Anything else passes unchanged.
func (m *MFA) refusal(f factors.Factor, err error) error {
	if err == nil {
		return nil
	}
	if f.Shape() == factors.ShapeCeremony {
		if errors.Is(err, factors.ErrWrongResponse) || errors.Is(err, factors.ErrExpired) || errors.Is(err, factors.ErrNotEnrolled) {
			return fmt.Errorf("%w: %w", ErrAssertionRefused, err)
		}
		return err
	}
	return codeRefusal(err, ErrCodeUsed)
}

// SendAddressCode mails a code for purpose to the session user's address
// (confirmed, except for confirming it).
func (m *MFA) SendAddressCode(ctx context.Context, id, lang string, purpose factors.Purpose) (factors.Sent, error) {
	ac, ok := m.addressCodes()
	if !ok {
		return factors.Sent{}, ErrFactorUnavailable
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return factors.Sent{}, err
	}
	if u.Email == "" || (!u.EmailVerified && purpose != factors.PurposeVerifyAddress) {
		return factors.Sent{}, ErrEmailNotVerified
	}
	if purpose == factors.PurposeEnroll {
		if err := m.enrollCodeOpen(ctx, u); err != nil {
			return factors.Sent{}, err
		}
	}
	return ac.SendFor(ctx, subject(u, lang, clientOf(sess)), purpose, u.Email)
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

// PendingAddressCode tells the page where the last code for purpose went
// and when a new one may be sent.
func (m *MFA) PendingAddressCode(ctx context.Context, id string, purpose factors.Purpose) (factors.Sent, bool, error) {
	ac, ok := m.addressCodes()
	if !ok {
		return factors.Sent{}, false, ErrFactorUnavailable
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return factors.Sent{}, false, err
	}
	return ac.PendingFor(ctx, subject(u, "", clientOf(sess)), purpose)
}

// ProveAddressCode checks a code sent for purpose and records what it
// proves: an enrolment grant, or the address confirmed (a sign-in code
// goes through Prove like every factor).
func (m *MFA) ProveAddressCode(ctx context.Context, id string, purpose factors.Purpose, code string) (*Session, error) {
	ac, ok := m.addressCodes()
	if !ok {
		return nil, ErrFactorUnavailable
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return nil, err
	}
	switch purpose {
	case factors.PurposeEnroll:
		// A code sent before the first factor was added is dead now.
		if err := m.enrollCodeOpen(ctx, u); err != nil {
			return nil, err
		}
	case factors.PurposeVerifyAddress:
	default:
		return nil, fmt.Errorf("authn: a %q code is not proved here", purpose)
	}
	try, err := m.admit(ctx, sess, u)
	if err != nil {
		return nil, err
	}
	err = ac.ProveFor(ctx, subject(u, "", clientOf(sess)), purpose, code)
	// A code that confirms an address or grants enrolment proves no
	// sign-in: no factor is logged as used.
	if err := m.settle(ctx, try, sess, u, "", codeRefusal(err, ErrNoCodeSent)); err != nil {
		return nil, err
	}
	if purpose == factors.PurposeEnroll {
		return m.prove(ctx, id, policy.Proof{Kind: ProofEnrollment, Ref: "email"})
	}
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
	m.o.Activity.Changed(ctx, nu.Person(), activity.EventEmailVerified, "", "", clientOf(sess))
	return m.sessions.Rotate(ctx, id)
}

// codeRefusal is refusal for codes; used is the answer to a code already
// used (ErrCodeUsed for a sign-in code; for a code sent for another
// purpose, ErrNoCodeSent: the page then offers a new one).
func codeRefusal(err, used error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, factors.ErrWrongResponse), errors.Is(err, factors.ErrNotEnrolled):
		return ErrWrongCode
	case errors.Is(err, factors.ErrReplayed):
		return used
	case errors.Is(err, factors.ErrExpired):
		return ErrCodeExpired
	case errors.Is(err, factors.ErrTooManyTries):
		return ErrCodeDead
	case errors.Is(err, factors.ErrNoChallenge):
		return ErrNoCodeSent
	}
	return err
}

// discoverable is the factor that signs in without a username.
func (m *MFA) discoverable() (factors.Discoverable, bool) {
	for _, f := range m.o.Factors {
		if d, ok := f.(factors.Discoverable); ok {
			return d, true
		}
	}
	return nil, false
}

// BeginPasskey starts a username-less passkey sign-in.
func (m *MFA) BeginPasskey(ctx context.Context) (factors.Challenge, error) {
	d, ok := m.discoverable()
	if !ok {
		return factors.Challenge{}, ErrFactorUnavailable
	}
	return d.BeginDiscoverable(ctx)
}

// FinishPasskey verifies a passkey assertion and starts a session. With
// user verification and PasskeyIsTwoFactor it carries both factors;
// otherwise it counts as the first factor only.
func (m *MFA) FinishPasskey(ctx context.Context, r factors.Response, meta Meta) (*Session, error) {
	d, ok := m.discoverable()
	if !ok {
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
	name, p, err := d.ProveDiscoverable(ctx, r)
	if err != nil {
		if errors.Is(err, factors.ErrWrongResponse) {
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
	m.o.Activity.SignedIn(ctx, u.Person(), "passkey", c)
	m.cancelRecoveryBySignIn(ctx, u.Username, p.Kind, c)
	if p.UserVerified && m.o.PasskeyIsTwoFactor {
		return m.prove(ctx, sess.ID, sessionProof(p))
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
		m.o.Activity.Changed(ctx, u.Person(), activity.EventDeviceTrusted, "", dev.Name, Client{IP: ip, UserAgent: userAgent})
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
	m.o.Activity.Note(ctx, sess.Username, activity.EventDevicesForgotten, "", clientOf(sess))
	return nil
}

// User returns the current record of username.
func (m *MFA) User(ctx context.Context, username string) (User, error) {
	return m.users.Get(ctx, username)
}

// PasskeysEnabled says whether passkey sign-in is offered.
func (m *MFA) PasskeysEnabled() bool {
	_, ok := m.discoverable()
	return ok
}

// ResetFactors removes every second factor of username, forgets their
// remembered devices and ends their sessions (an admin's reset when a
// person lost everything). It returns how many credentials it removed.
func (m *MFA) ResetFactors(ctx context.Context, username string) (int, error) {
	u, err := m.users.Get(ctx, username)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range m.managers() {
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
	m.o.Activity.Changed(ctx, u.Person(), activity.EventFactorsReset, "", "", Client{})
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
