// Package webauthn is the WebAuthn factor: security keys (roaming
// authenticators such as a YubiKey) and platform authenticators (Touch ID,
// Windows Hello, Android) as a second factor, and discoverable passkeys for
// sign-in without a typed username.
//
// go-webauthn verifies the ceremonies. What the library leaves to the
// relying party is done here:
//   - ceremony state is kept server-side and is single use: Finish consumes
//     it atomically (store Consume) before anything is verified, and its
//     lifetime is checked against our clock, not only the store's TTL;
//   - a sign-counter regression is refused (ErrCloneWarning) and recorded;
//     the library only flags it and lets the login succeed;
//   - whether the user was verified is read from this assertion's flags,
//     not from the credential record, whose UV flag is sticky;
//   - Attested means the attestation chains to trust anchors we were given
//     (an offline FIDO MDS3 blob and/or PEM roots), never what the browser
//     or the authenticator claims;
//   - the WebAuthn user handle is a random 32-byte ID per user, never the
//     username, so an authenticator's resident credentials reveal nothing;
//   - the raw registration response is kept, so Reassess can re-check every
//     attestation against a newer metadata blob, and a credential whose
//     model turns out compromised can be suspended (neither offered nor
//     accepted at sign-in) without losing it.
//
// A factor never sees HTTP: Begin* return the options JSON the browser's
// PublicKeyCredential.parseCreationOptionsFromJSON /
// parseRequestOptionsFromJSON take (web/static/webauthn.js), and Finish*
// take the bytes of credential.toJSON().
package webauthn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	gwa "github.com/go-webauthn/webauthn/webauthn"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// Kind is the factor's name in credentials, sessions and policies.
const Kind = "webauthn"

// KV is the part of store.KV this package uses: one durable record per user
// (its handle and all its credentials, so one compare-and-swap keeps names
// unique and counters monotonic), two durable indexes (user handle → user,
// credential ID → user) and short-lived ceremonies consumed once. Scan is
// only for Reassess over every user, an admin task off the sign-in path.
type KV interface {
	Get(ctx context.Context, key string) (store.Item, error)
	CompareAndSet(ctx context.Context, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error)
	CompareAndDelete(ctx context.Context, key string, prev uint64) error
	Consume(ctx context.Context, key string) ([]byte, error)
	Scan(ctx context.Context, prefix string, fn func(store.Item) error) error
}

// TrustOptions are the attestation trust anchors. With none, no credential
// is ever Attested.
type TrustOptions struct {
	// MDSBlobFile is an offline FIDO Metadata Service (MDS3) blob, the JWT
	// downloaded from https://mds3.fidoalliance.org/. It is read once at New
	// and never fetched or refreshed over the network.
	MDSBlobFile string
	// MDSRootFile is the PEM certificate the blob's signature must chain to.
	// Empty means the FIDO Alliance's production MDS root (GlobalSign Root
	// CA - R3); tests and private metadata services set their own.
	MDSRootFile string
	// RootCertFiles are PEM files of attestation root certificates trusted
	// for authenticators the MDS blob does not list (for example an
	// organisation's own attestation CA). An authenticator the blob lists
	// must chain to the blob's roots for that model.
	RootCertFiles []string
}

// Options configure a Factor.
type Options struct {
	// RPID is the relying party ID: the registrable parent domain shared by
	// every protected host ("example.com"). Not an IP address.
	RPID string
	// RPName is shown by some authenticators; RPID when empty.
	RPName string
	// Origins are the exact origins pages may call WebAuthn from
	// ("https://app.example.com"). At least one.
	Origins []string
	// CeremonyTTL is how long a begun ceremony can be finished (5 min by
	// default, 10 s to 1 h). The browser's timeout is set to the same.
	CeremonyTTL time.Duration
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Trust are the attestation trust anchors.
	Trust TrustOptions
	// Logger receives refused ceremonies with the library's developer
	// details (never shown to users). Discarded when nil.
	Logger *slog.Logger
}

// Limits on Options.
const (
	defaultCeremonyTTL = 5 * time.Minute
	minCeremonyTTL     = 10 * time.Second
	maxCeremonyTTL     = time.Hour
)

// AuthenticatorKind is what the user asked to enrol.
type AuthenticatorKind string

const (
	// SecurityKey is a roaming authenticator (USB/NFC/BLE key such as a
	// YubiKey): user verification preferred, no resident key needed.
	SecurityKey AuthenticatorKind = "security_key"
	// Platform is the device's built-in authenticator (Touch ID, Windows
	// Hello, Android): resident key and user verification required, so it
	// also serves passkey sign-in.
	Platform AuthenticatorKind = "platform"
)

func (k AuthenticatorKind) valid() bool { return k == SecurityKey || k == Platform }

// User is whom a credential is registered for. Username is keygate's
// (normalised) username; DisplayName is what authenticators show next to it.
type User struct {
	Username    string
	DisplayName string
}

// Assertion is what a successful sign-in proved.
type Assertion struct {
	// CredentialID is the base64url credential ID (Credential.ID).
	CredentialID string
	// AAGUID is the authenticator model the authenticator claimed at
	// registration ("00000000-0000-0000-0000-000000000000" when none).
	AAGUID string
	// Attested: the credential's attestation chained to our trust anchors at
	// registration, so AAGUID is vouched for, not merely claimed.
	Attested bool
	// UserVerified: this assertion verified the user (PIN, biometrics).
	UserVerified bool
	// BackupEligible / BackupState: the credential can be / has been synced
	// to other devices (a synced passkey rather than a device-bound key).
	BackupEligible bool
	BackupState    bool
	// At is when the assertion was accepted.
	At time.Time
}

// Errors callers branch on.
var (
	// ErrCeremony: the ceremony is unknown, already finished or expired (a
	// replayed challenge lands here), or was begun for another user or
	// another kind of ceremony. It matches factors.ErrExpired as well.
	ErrCeremony = fmt.Errorf("webauthn: unknown, used or expired ceremony: %w", factors.ErrExpired)
	// ErrCloneWarning: the assertion was valid but its signature counter did
	// not advance past the stored one, so two authenticators may hold the
	// same key. The sign-in is refused and the event recorded on the
	// credential (CredentialInfo.CloneWarningAt).
	ErrCloneWarning = errors.New("webauthn: signature counter went backwards; the authenticator may have been cloned")
	// ErrAllSuspended: BeginLogin for a user whose every credential is
	// suspended. There is nothing to offer (an empty allow list would let
	// the browser pick any passkey), so it matches factors.ErrNotEnrolled
	// as well: callers that only know "not enrolled" do the right thing.
	ErrAllSuspended = fmt.Errorf("webauthn: every credential of the user is suspended: %w", factors.ErrNotEnrolled)
)

// Reasons a ceremony's response is refused (VerifyError.Reason).
const (
	ReasonMalformed         = "malformed"          // not a WebAuthn response we can parse
	ReasonBadOrigin         = "bad_origin"         // clientData origin is not one of Options.Origins
	ReasonBadRPID           = "bad_rp_id"          // authenticator data is for another RP ID
	ReasonBadChallenge      = "bad_challenge"      // response signed another ceremony's challenge
	ReasonBadSignature      = "bad_signature"      // assertion signature does not verify
	ReasonBadAttestation    = "bad_attestation"    // attestation statement does not verify
	ReasonUVRequired        = "uv_required"        // user verification was required but not done
	ReasonUnknownCredential = "unknown_credential" // no such credential for this user (removed, or another user's)
	ReasonAlreadyRegistered = "already_registered" // this credential is already enrolled
	ReasonNotAllowed        = "not_allowed"        // refused by policy (not in the allowed list, bad flags)
	ReasonSuspended         = "suspended"          // the credential is suspended (Factor.Suspend)
	ReasonRejected          = "rejected"           // any other verification failure
)

// VerifyError is a response the verification refused. Reason is stable and
// safe to show or map to a message; Err is the cause (often a
// *protocol.Error whose DevInfo is logged, never shown).
type VerifyError struct {
	Reason string
	Err    error
}

func (e *VerifyError) Error() string {
	if e.Err == nil {
		return "webauthn: refused: " + e.Reason
	}
	return "webauthn: refused: " + e.Reason + ": " + e.Err.Error()
}

func (e *VerifyError) Unwrap() error { return e.Err }

// Factor is the WebAuthn factor. It is safe for concurrent use.
type Factor struct {
	kv KV
	// cs is kv's store.ConsumeSetter, nil when it has none: a sign-in
	// then consumes its ceremony and writes the counter in two writes.
	cs      store.ConsumeSetter
	wa      *gwa.WebAuthn
	rpID    string
	origins []string
	ttl     time.Duration
	now     func() time.Time
	trust   *trust
	log     *slog.Logger
}

// New checks opt and loads the trust anchors (the MDS blob is read and its
// signature verified here, once).
func New(kv KV, opt Options) (*Factor, error) {
	if kv == nil {
		return nil, errors.New("webauthn: no store given")
	}
	if opt.RPID == "" {
		return nil, errors.New("webauthn: no RP ID given")
	}
	if len(opt.Origins) == 0 {
		return nil, errors.New("webauthn: no origins given")
	}
	for _, o := range opt.Origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("webauthn: origin %q is not scheme://host[:port]", o)
		}
	}
	if opt.CeremonyTTL == 0 {
		opt.CeremonyTTL = defaultCeremonyTTL
	}
	if opt.CeremonyTTL < minCeremonyTTL || opt.CeremonyTTL > maxCeremonyTTL {
		return nil, fmt.Errorf("webauthn: ceremony TTL %v is outside %v to %v", opt.CeremonyTTL, minCeremonyTTL, maxCeremonyTTL)
	}
	if opt.RPName == "" {
		opt.RPName = opt.RPID
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	origins := append([]string(nil), opt.Origins...)
	timeout := gwa.TimeoutConfig{
		// Not enforced by the library (its clock is time.Now and its
		// SessionData would otherwise never expire anyway): we check the
		// ceremony's expiry ourselves. The value only sets the browser's
		// timeout.
		Enforce:    false,
		Timeout:    opt.CeremonyTTL,
		TimeoutUVD: opt.CeremonyTTL,
	}
	wa, err := gwa.New(&gwa.Config{
		RPID:          opt.RPID,
		RPDisplayName: opt.RPName,
		RPOrigins:     origins,
		Timeouts:      gwa.TimeoutsConfig{Login: timeout, Registration: timeout},
		// No MDS here: the library would then refuse to register any
		// authenticator that fails the metadata checks. We register those
		// as not attested instead and let the policy decide (see trust.go).
		MDS: nil,
	})
	if err != nil {
		return nil, fmt.Errorf("webauthn: %w", err)
	}
	tr, err := loadTrust(opt.Trust, opt.Now, opt.Logger)
	if err != nil {
		return nil, err
	}
	cs, _ := kv.(store.ConsumeSetter)
	return &Factor{
		kv:      kv,
		cs:      cs,
		wa:      wa,
		rpID:    opt.RPID,
		origins: origins,
		ttl:     opt.CeremonyTTL,
		now:     opt.Now,
		trust:   tr,
		log:     opt.Logger,
	}, nil
}

// Kind returns "webauthn".
func (f *Factor) Kind() string { return Kind }

// Interface guards.
var (
	_ factors.Registry = (*Factor)(nil)
	_ KV               = (store.KV)(nil)
	_ error            = (*VerifyError)(nil)
)
