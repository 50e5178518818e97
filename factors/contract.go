package factors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Factor is the one contract every second factor implements. authn drives
// every factor through it (regulation, activity, notices and session
// rotation run once, around these calls, for all of them); web serves one
// route set and one page per Shape; policy accepts the registered kinds.
//
// A factor keeps its own records (credentials, pending codes, ceremonies)
// in the store it was built with, and knows nothing of sessions, HTTP or
// other factors. Wrong answers are errors here (ErrWrongResponse and the
// other refusals below): authn counts them against the account.
type Factor interface {
	// Kind names the factor in policies, sessions, routes and messages
	// ("webauthn", "totp", "email", "sms", "recovery").
	Kind() string
	// Strength is how strong a proof or credential of this factor is;
	// attested matters only where the factor has attestation (WebAuthn:
	// a hardware key of a trusted model).
	Strength(attested bool) Strength
	// Shape says how the portal asks for the proof.
	Shape() Shape
	// Usable reports whether s can prove this factor now (an enrolled
	// credential, a confirmed address) and what the chooser shows next
	// to it ("j***@example.com", "7 left").
	Usable(ctx context.Context, s Subject) (Offer, bool, error)
	// Begin starts a proof: a browser ceremony's options, or a code sent
	// (refused with *CooldownError or *CapError, or ErrSendFailed with
	// nothing marked sent).
	Begin(ctx context.Context, s Subject) (Challenge, error)
	// Prove checks the person's response into a proof, or refuses it:
	// ErrWrongResponse, ErrExpired, ErrReplayed, ErrTooManyTries,
	// ErrNoChallenge, ErrNotEnrolled (answered like a wrong response).
	Prove(ctx context.Context, s Subject, r Response) (Proof, error)
}

// Shape is how the portal asks for a factor's proof: one page each.
type Shape string

const (
	// ShapeCode: a code the person types (an app, a mail, an SMS, a sheet).
	ShapeCode Shape = "code"
	// ShapeCeremony: a browser ceremony (WebAuthn) run by the page's
	// script with the options Begin returned.
	ShapeCeremony Shape = "ceremony"
)

// Subject is the person a factor acts for, as authn knows them.
type Subject struct {
	Username    string
	DisplayName string
	// Email is the person's confirmed address ("" when none is confirmed).
	Email string
	// Lang is the language of anything the factor sends ("en", "ru").
	Lang string
	// IP and UserAgent are the client's, for what a factor sends or logs.
	IP, UserAgent string
}

// Offer is what the chooser shows next to a usable factor.
type Offer struct {
	// Detail: a masked address or phone number, "7" codes left, or "".
	Detail string
}

// Challenge is what Begin hands the person.
type Challenge struct {
	// ID names the ceremony in Prove's Response ("" for codes).
	ID string
	// Options are a browser ceremony's options (WebAuthn publicKey).
	Options json.RawMessage
	// Sent describes a code that went out (nil for ceremonies and for
	// codes the person keeps, like an app's).
	Sent *Sent
}

// Sent describes a code that went out.
type Sent struct {
	To        string    // where, masked for display
	ResendAt  time.Time // earliest time another may be sent
	ExpiresAt time.Time // when the code stops working
	TriesLeft int       // wrong tries left for it (Pending only)
}

// Response is the person's answer to a challenge.
type Response struct {
	Challenge string // the ID Begin returned (ceremonies)
	Code      string // a typed code
	Data      []byte // a browser ceremony's response (JSON)
}

// Proof is what a verified response proves; authn records it on the
// session (as a policy.Proof) and rotates the session ID.
type Proof struct {
	Kind string
	// Ref names the credential that proved it (sessions it vouched for
	// end when it is removed); the kind itself when there is no such
	// credential (a mailbox).
	Ref            string
	Attested       bool
	UserVerified   bool
	BackupEligible bool
	AAGUID         string
	// Remaining: codes left after this one, for factors that run out
	// (recovery codes); -1 otherwise.
	Remaining int
	// Notify: tell the person on every channel that this factor was used
	// (a recovery code: they may have lost a device, or someone else may
	// hold their sheet).
	Notify bool
}

// Optional capabilities, checked with interface guards (a factor without
// them is still a factor: it can prove, not be managed or enrolled here).
type (
	// Enroller adds a credential of the factor. Enroll starts it (a
	// WebAuthn registration, an app's secret and QR code, an SMS code to
	// the number given, or a recovery sheet done at once); ConfirmEnroll
	// finishes it with the person's response.
	Enroller interface {
		Enroll(ctx context.Context, s Subject, r EnrollRequest) (Enrollment, error)
		ConfirmEnroll(ctx context.Context, s Subject, id string, r Response, name string) (Credential, error)
	}

	// Manager lists and manages credentials (Registry, see factor.go).
	Manager = Registry

	// Resender tells the page about a code waiting to be typed: where it
	// went, when another may be sent (ok is false when none is pending).
	Resender interface {
		Pending(ctx context.Context, s Subject) (Sent, bool, error)
	}

	// Discoverable signs in without a username (a passkey): the proof
	// names its user.
	Discoverable interface {
		BeginDiscoverable(ctx context.Context) (Challenge, error)
		ProveDiscoverable(ctx context.Context, r Response) (username string, p Proof, err error)
	}

	// Backup marks a factor that stands in for lost ones (recovery
	// codes): it never counts as the account's last second factor, and
	// enrolling it replaces the whole set.
	Backup interface{ Backup() }

	// AddressCodes sends codes for other purposes than a sign-in to an
	// address the factor delivers to: confirming the address, granting
	// the enrolment of a first factor, unlocking an account.
	AddressCodes interface {
		SendFor(ctx context.Context, s Subject, p Purpose, address string) (Sent, error)
		ProveFor(ctx context.Context, s Subject, p Purpose, code string) error
		PendingFor(ctx context.Context, s Subject, p Purpose) (Sent, bool, error)
	}
)

// Purpose is what a sent code is for; a code proves only its purpose.
type Purpose string

const (
	PurposeSignIn        Purpose = "sign_in"
	PurposeVerifyAddress Purpose = "verify_address"
	PurposeEnroll        Purpose = "enroll"
	PurposeUnlock        Purpose = "unlock"
	// PurposeResetPassword: "Forgot your password?" — the code proves the
	// mailbox at the start of a password reset (authn/password.go); a
	// second factor is asked for as well when the account has one.
	PurposeResetPassword Purpose = "reset_password"
	// PurposeAccountRecovery: the person lost every second factor and
	// proves the mailbox to start (or, after the waiting period, finish)
	// an account recovery (authn/recovery.go).
	PurposeAccountRecovery Purpose = "account_recovery"
	// PurposeChangeAddress: the code goes to the NEW address a signed-in
	// person asked to move the account to (authn/email_change.go); it
	// proves that mailbox and nothing else (never the account's current
	// address, never a sign-in).
	PurposeChangeAddress Purpose = "change_address"
)

// CodeCanceller is an optional capability of a factor that sends codes
// to the person's address: it kills every code pending for them, of every
// purpose. When the address changes, a code already sent to the old one
// must not finish anything.
type CodeCanceller interface {
	CancelCodes(ctx context.Context, s Subject) error
}

// EnrollRequest is what the person chose when starting an enrolment.
type EnrollRequest struct {
	// Option: WebAuthn's authenticator kind ("platform",
	// "cross-platform", "" for any).
	Option string
	// Address: where codes of the new credential go (an SMS factor's
	// phone number, E.164).
	Address string
}

// Enrollment is a started enrolment.
type Enrollment struct {
	// ID names it in ConfirmEnroll.
	ID string
	// Options of a browser ceremony (WebAuthn).
	Options json.RawMessage
	// Secret, URI and QRPNG of an app's key (shown once, never stored
	// in clear elsewhere).
	Secret, URI string
	QRPNG       []byte
	// Sent: a confirmation code went out to the address given.
	Sent *Sent
	// Codes: a recovery sheet, shown once; the enrolment is complete.
	Codes []string
	// ExpiresAt: when it can no longer be confirmed.
	ExpiresAt time.Time
}

// CodeLifetime is an optional capability of a factor that sends codes:
// how long a code it sends works. A flow that must answer alike whether a
// code went out or not (a password reset for an unknown name) ends its own
// window no later than the code would, so an expired code never tells the
// two apart.
type CodeLifetime interface {
	CodeTTL() time.Duration
}

// Notifier tells a person about a security event over the factor's own
// channel (a text to their phone). Some events must reach every channel
// the person has — an account recovery under way is cancelled by whoever
// hears of it first — so authn sends them through each factor that can, as
// well as by mail. A factor with nothing to say for kind, or no address for
// the person, returns nil.
type Notifier interface {
	Notify(ctx context.Context, s Subject, kind NoticeKind) error
}

// NoticeKind names an event a Notifier may be told about.
type NoticeKind string

// NoticeRecoveryRequested: someone proved the password and the mailbox and
// asked to replace every second factor; it happens after a waiting period
// unless cancelled.
const NoticeRecoveryRequested NoticeKind = "recovery_requested"

// EnrollResumer shows a pending enrolment again (an app's secret and QR
// code after a mistyped confirming code) from what the factor keeps, never
// from what the browser sends back.
type EnrollResumer interface {
	ResumeEnroll(ctx context.Context, s Subject, id string) (Enrollment, error)
}

// Refusals every factor uses where the person's answer is at fault; authn
// counts them (except cooldowns and send failures) against the account.
var (
	// ErrWrongResponse: the code or the ceremony's answer is not right.
	ErrWrongResponse = errors.New("factors: the answer is not correct")
	// ErrTooManyTries: the code took too many wrong tries and is dead.
	ErrTooManyTries = errors.New("factors: too many wrong tries for this code")
	// ErrNoChallenge: nothing is pending to answer (no code sent, or it
	// was used or replaced).
	ErrNoChallenge = errors.New("factors: nothing was sent or started")
	// ErrCooldown: a new code was asked for too soon (see CooldownError).
	ErrCooldown = errors.New("factors: wait before asking for a new code")
	// ErrHourlyCap: too many codes this hour (see CapError).
	ErrHourlyCap = errors.New("factors: too many codes this hour")
	// ErrSendFailed: the code could not be sent; nothing was marked sent.
	ErrSendFailed = errors.New("factors: the code could not be sent")
	// ErrBadAddress: the address or phone number given is not usable.
	ErrBadAddress = errors.New("factors: the address is not valid")
	// ErrBadOption: EnrollRequest.Option names nothing this factor enrols.
	ErrBadOption = errors.New("factors: unknown enrolment option")
)

// CooldownError refuses a new code until Until.
type CooldownError struct{ Until time.Time }

func (e *CooldownError) Error() string {
	return fmt.Sprintf("factors: wait until %s before asking for a new code", e.Until.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrCooldown) hold.
func (e *CooldownError) Unwrap() error { return ErrCooldown }

// CapError refuses a new code until Until: the hourly cap is reached.
type CapError struct{ Until time.Time }

func (e *CapError) Error() string {
	return fmt.Sprintf("factors: too many codes this hour; next at %s", e.Until.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrHourlyCap) hold.
func (e *CapError) Unwrap() error { return ErrHourlyCap }

// Set is the ordered list of the factors keygate runs, built once in cmd:
// the order is the chooser's, strongest first by convention.
type Set []Factor

// Get returns the factor of kind, or nil.
func (fs Set) Get(kind string) Factor {
	for _, f := range fs {
		if f.Kind() == kind {
			return f
		}
	}
	return nil
}

// Kinds lists the kinds in order.
func (fs Set) Kinds() []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.Kind())
	}
	return out
}

// Reaching lists, in order, the kinds whose strongest proof reaches s:
// what to ask a person for when s is needed.
func (fs Set) Reaching(s Strength) []string {
	var out []string
	for _, f := range fs {
		if f.Strength(true) >= s {
			out = append(out, f.Kind())
		}
	}
	return out
}

// Admin capabilities of factors whose credentials are made by a device an
// authority can vouch for, and later disown (WebAuthn). The admin service
// finds them over the Set by these interfaces; only cmd knows which factor
// has them.
type (
	// Suspender takes one credential out of use without deleting it (its
	// model turned out compromised, a device was reported lost) and puts
	// it back. A suspended credential stays listed and is refused at
	// sign-in. Suspending a suspended credential changes nothing and
	// keeps its first reason; unsuspending one in use changes nothing.
	// ErrNotFound for a credential the user does not have.
	Suspender interface {
		Suspend(ctx context.Context, user, id, reason string) error
		Unsuspend(ctx context.Context, user, id string) error
		// Suspension is the credential's state now.
		Suspension(ctx context.Context, user, id string) (Suspension, error)
	}

	// Reassessor re-checks the attestation stored with every credential
	// of user ("" = everyone's) against anchors an admin hands in
	// (typically a newer metadata blob), and says which models are
	// compromised now. It writes nothing: suspending is the caller's
	// decision. Anchors that cannot be read or do not verify are
	// refused with an error that wraps ErrBadAnchors.
	Reassessor interface {
		Reassess(ctx context.Context, user string, anchors AttestationAnchors) ([]Reassessment, error)
	}
)

// Suspension is whether a credential is suspended, since when and why.
type Suspension struct {
	Suspended bool
	Reason    string
	At        time.Time
}

// AttestationAnchors are trust anchors as bytes, not files: an admin's
// command reads its own files and sends their contents, since the
// server's process may not be able to read them.
type AttestationAnchors struct {
	// MDSBlob is a FIDO Metadata Service (MDS3) blob, the signed JWT.
	MDSBlob []byte
	// MDSRoot is the PEM certificate the blob must be signed under; empty
	// means the FIDO Alliance's own root.
	MDSRoot []byte
	// RootCerts are PEM documents of attestation roots for models the
	// blob does not list.
	RootCerts [][]byte
}

// Empty says whether no anchor at all is given.
func (a AttestationAnchors) Empty() bool {
	return len(a.MDSBlob) == 0 && len(a.MDSRoot) == 0 && len(a.RootCerts) == 0
}

// ErrBadAnchors: the trust anchors given cannot be used (no blob or root,
// a blob whose signature does not verify, a PEM without a certificate).
// Nothing was checked or changed.
var ErrBadAnchors = errors.New("factors: unusable trust anchors")

// Verdict is what re-assessing a credential found.
type Verdict string

const (
	// VerdictOK: the attestation still chains to the anchors and no
	// compromise of the model is reported.
	VerdictOK Verdict = "ok"
	// VerdictNotAttested: nothing vouches for the model, and no
	// compromise is reported.
	VerdictNotAttested Verdict = "not_attested"
	// VerdictCompromised: the metadata reports the model compromised or
	// revoked (Reassessment.Compromises).
	VerdictCompromised Verdict = "compromised"
)

// Reassessment is one stored credential judged against newer anchors.
type Reassessment struct {
	User         string `json:"user"`
	Kind         string `json:"kind"`
	CredentialID string `json:"credential_id"`
	Name         string `json:"name"`
	AAGUID       string `json:"aaguid,omitempty"`
	// Model is the metadata's description of the model ("" when not
	// listed), attested or not.
	Model string `json:"model,omitempty"`
	// WasAttested is what enrolment recorded; Attested is the stored
	// attestation verified again now.
	WasAttested bool `json:"was_attested"`
	Attested    bool `json:"attested"`
	// Status is the model's status report in effect ("FIDO_CERTIFIED_L1",
	// "REVOKED", …; "" when not listed).
	Status string `json:"status,omitempty"`
	// Compromises are the compromise statuses in effect for the model.
	Compromises []string `json:"compromises,omitempty"`
	Verdict     Verdict  `json:"verdict"`
	// Why is the attestation check's own explanation, for operators.
	Why             string `json:"why,omitempty"`
	Suspended       bool   `json:"suspended"`
	SuspendedReason string `json:"suspended_reason,omitempty"`
}
