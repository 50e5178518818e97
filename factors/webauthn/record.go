package webauthn

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	gwa "github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// Key layout. All of a user's credentials live in one record so that a
// single compare-and-swap keeps names unique, advances a counter, and makes
// RemoveAll atomic; a user has a handful of authenticators. The usernames
// are path-escaped, so a '/' can never reach into another user's keys.
//
// Two indexes point back to the user: the user handle (passkey sign-in
// only gets the handle) and the credential ID (a credential is enrolled for
// one user only, WebAuthn §7.1 step 22). The user record is the truth; an
// index entry whose user no longer holds the handle or credential is stale
// and is ignored or taken over.
//
// The raw registration response (for re-verifying the attestation later)
// is kept beside the record, not in it: it is a few kilobytes per
// credential that no sign-in reads, and the record is decoded and
// rewritten on every sign-in.
const (
	userPrefix        = "webauthn/user/"
	handlePrefix      = "webauthn/handle/"
	credIDPrefix      = "webauthn/credid/"
	attestationPrefix = "webauthn/attestation/"
	ceremonyPrefix    = "webauthn/ceremony/"
)

func userKey(user string) string      { return userPrefix + url.PathEscape(user) }
func handleKey(handle []byte) string  { return handlePrefix + b64(handle) }
func credIDKey(id []byte) string      { return credIDPrefix + b64(id) }
func attestationKey(id []byte) string { return attestationPrefix + b64(id) }
func ceremonyKey(id string) string    { return ceremonyPrefix + id }
func b64(b []byte) string             { return base64.RawURLEncoding.EncodeToString(b) }
func durable() store.WriteOptions     { return store.WriteOptions{Durable: true} }
func isConflict(err error) bool       { return errors.Is(err, store.ErrConflict) }
func isNotFound(err error) bool       { return errors.Is(err, store.ErrNotFound) }
func unb64(s string) ([]byte, error)  { return base64.RawURLEncoding.DecodeString(s) }
func aaguidString(b []byte) string    { u, _ := uuid.FromBytes(b); return u.String() }
func newHandle() []byte               { return randomBytes(handleSize) }
func newCeremonyID() string           { return b64(randomBytes(32)) }
func sameHandle(a, b []byte) bool     { return len(a) == handleSize && bytes.Equal(a, b) }

// label is the credential's Detail when no attested model name is known.
func (k AuthenticatorKind) label() string {
	if k == Platform {
		return "Platform authenticator"
	}
	return "Security key"
}

// handleSize is the user handle's length: 32 random bytes (the spec allows
// up to 64 and recommends 64 random bytes or fewer with enough entropy).
const handleSize = 32

// maxCASRetries bounds read-modify-write loops that lost a compare-and-swap.
// Losing means someone else wrote the record in between; each retry
// re-reads, so the bound only matters under a storm of writes to one user.
const maxCASRetries = 16

const recordVersion = 1

// userRecord is the stored form of a user's WebAuthn state.
type userRecord struct {
	V      int          `json:"v"`
	Handle []byte       `json:"handle"`
	Creds  []credRecord `json:"creds"`
}

// credRecord is one enrolled credential.
type credRecord struct {
	ID         []byte            `json:"id"`
	Name       string            `json:"name"`
	Kind       AuthenticatorKind `json:"kind"`
	PublicKey  []byte            `json:"public_key"`
	SignCount  uint32            `json:"sign_count"`
	AAGUID     []byte            `json:"aaguid"`
	Format     string            `json:"att_format"`
	AttType    string            `json:"att_type"`
	Attested   bool              `json:"attested"`
	Model      string            `json:"model,omitempty"`
	Transports []string          `json:"transports,omitempty"`
	// Flags is the raw authenticator-data flags byte: UV as registered
	// (sticky), BE (never changes), BS (as of the last sign-in).
	Flags       protocol.AuthenticatorFlags `json:"flags"`
	Attachment  string                      `json:"attachment,omitempty"`
	ResidentKey *bool                       `json:"resident_key,omitempty"`
	CreatedAt   time.Time                   `json:"created_at"`
	LastUsedAt  time.Time                   `json:"last_used_at,omitzero"`
	// CloneWarningAt is the last refused sign-in whose counter did not
	// advance; CloneWarnings counts them.
	CloneWarningAt time.Time `json:"clone_warning_at,omitzero"`
	CloneWarnings  int       `json:"clone_warnings,omitempty"`
	// Suspended: taken out of use by an admin (or by `keygate webauthn
	// verify --suspend` when the model's metadata reports a compromise).
	// The credential is kept rather than removed: the person still sees it
	// in their list, the same authenticator cannot be enrolled again
	// meanwhile, and an admin can restore it unchanged.
	Suspended       bool      `json:"suspended,omitempty"`
	SuspendedReason string    `json:"suspended_reason,omitempty"`
	SuspendedAt     time.Time `json:"suspended_at,omitzero"`
}

// library converts the record into go-webauthn's credential.
func (c *credRecord) library() gwa.Credential {
	tr := make([]protocol.AuthenticatorTransport, len(c.Transports))
	for i, t := range c.Transports {
		tr[i] = protocol.AuthenticatorTransport(t)
	}
	return gwa.Credential{
		ID:                c.ID,
		PublicKey:         c.PublicKey,
		AttestationType:   c.AttType,
		AttestationFormat: c.Format,
		Transport:         tr,
		Flags:             gwa.NewCredentialFlags(c.Flags),
		Authenticator: gwa.Authenticator{
			AAGUID:     c.AAGUID,
			SignCount:  c.SignCount,
			Attachment: protocol.AuthenticatorAttachment(c.Attachment),
		},
	}
}

// public is the credential as people and admins see it.
func (c *credRecord) public() factors.Credential {
	detail := c.Kind.label()
	if c.Attested && c.Model != "" {
		// Only a model the attestation vouched for: an unattested AAGUID
		// is whatever the authenticator chose to claim.
		detail = c.Model
	}
	if c.Suspended {
		// Detail is all the generic factor list shows (settings page,
		// `keygate user factors`), so the suspension has to be said there.
		detail += "; suspended"
		if c.SuspendedReason != "" {
			detail += ": " + c.SuspendedReason
		}
	}
	return factors.Credential{
		ID:         b64(c.ID),
		Kind:       Kind,
		Name:       c.Name,
		Detail:     detail,
		CreatedAt:  c.CreatedAt,
		LastUsedAt: c.LastUsedAt,
	}
}

// index returns the position of the credential with the raw ID, or -1.
func (r *userRecord) index(id []byte) int {
	for i := range r.Creds {
		if bytes.Equal(r.Creds[i].ID, id) {
			return i
		}
	}
	return -1
}

// nameTaken: another credential than except (-1: none) has this name,
// compared case-insensitively so "YubiKey" and "yubikey" are not both kept.
func (r *userRecord) nameTaken(name string, except int) bool {
	for i := range r.Creds {
		if i != except && strings.EqualFold(r.Creds[i].Name, name) {
			return true
		}
	}
	return false
}

// defaultName is "Security key" / "This device", then "… 2", "… 3".
func (r *userRecord) defaultName(kind AuthenticatorKind) string {
	base := "Security key"
	if kind == Platform {
		base = "This device"
	}
	name := base
	for n := 2; r.nameTaken(name, -1); n++ {
		name = fmt.Sprintf("%s %d", base, n)
	}
	return name
}

// usable is the record without its suspended credentials: what a sign-in
// may offer and accept.
func (r *userRecord) usable() *userRecord {
	u := &userRecord{V: r.V, Handle: r.Handle}
	for i := range r.Creds {
		if !r.Creds[i].Suspended {
			u.Creds = append(u.Creds, r.Creds[i])
		}
	}
	return u
}

// waUser is a user as go-webauthn wants it.
type waUser struct {
	name, display string
	handle        []byte
	creds         []gwa.Credential
}

func (u *waUser) WebAuthnID() []byte                    { return u.handle }
func (u *waUser) WebAuthnName() string                  { return u.name }
func (u *waUser) WebAuthnDisplayName() string           { return u.display }
func (u *waUser) WebAuthnCredentials() []gwa.Credential { return u.creds }

func (r *userRecord) libraryUser(name, display string) *waUser {
	u := &waUser{name: name, display: display, handle: r.Handle, creds: make([]gwa.Credential, len(r.Creds))}
	if u.display == "" {
		u.display = name
	}
	for i := range r.Creds {
		u.creds[i] = r.Creds[i].library()
	}
	return u
}

// loadUser reads a user's record; store.ErrNotFound (wrapped) when the user
// has never begun a WebAuthn registration.
func (f *Factor) loadUser(ctx context.Context, user string) (*userRecord, uint64, error) {
	it, err := f.kv.Get(ctx, userKey(user))
	if err != nil {
		return nil, 0, fmt.Errorf("webauthn: load user %q: %w", user, err)
	}
	var r userRecord
	if err := json.Unmarshal(it.Value, &r); err != nil {
		return nil, 0, fmt.Errorf("webauthn: decode user %q: %w", user, err)
	}
	if r.V != recordVersion {
		return nil, 0, fmt.Errorf("webauthn: user %q: record of unknown schema version %d", user, r.V)
	}
	return &r, it.Version, nil
}

func (f *Factor) saveUser(ctx context.Context, user string, r *userRecord, prev uint64) (uint64, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("webauthn: encode user %q: %w", user, err)
	}
	return f.kv.CompareAndSet(ctx, userKey(user), b, prev, durable())
}

// saveUserEnding is saveUser that also consumes h when it is still held,
// with store.ConsumeSetter: both or neither, one commit and one sync.
func (f *Factor) saveUserEnding(ctx context.Context, user string, r *userRecord, prev uint64, h *heldCeremony) (uint64, error) {
	if h == nil || h.ver == 0 {
		return f.saveUser(ctx, user, r, prev)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("webauthn: encode user %q: %w", user, err)
	}
	v, err := f.cs.ConsumeAndSet(ctx, h.key, h.ver, userKey(user), b, prev, durable())
	switch {
	case err == nil:
		h.ver = 0
	case isNotFound(err):
		h.ver = 0 // another finish took it
		return 0, ErrCeremony
	}
	return v, err
}

// ensureUser returns the user's record, creating it with a fresh random
// handle on first use. The handle index is written first: a crash between
// the two leaves an index entry pointing at a user without that handle,
// which lookups ignore.
func (f *Factor) ensureUser(ctx context.Context, user string) (*userRecord, uint64, error) {
	for range maxCASRetries {
		r, ver, err := f.loadUser(ctx, user)
		if err == nil || !isNotFound(err) {
			return r, ver, err
		}
		r = &userRecord{V: recordVersion, Handle: newHandle()}
		hver, err := f.kv.CompareAndSet(ctx, handleKey(r.Handle), []byte(user), 0, durable())
		if err != nil {
			return nil, 0, fmt.Errorf("webauthn: save user handle: %w", err)
		}
		ver, err = f.saveUser(ctx, user, r, 0)
		if err == nil {
			return r, ver, nil
		}
		// Another request created the user first: drop our handle and use
		// theirs.
		_ = f.kv.CompareAndDelete(context.WithoutCancel(ctx), handleKey(r.Handle), hver)
		if !isConflict(err) {
			return nil, 0, fmt.Errorf("webauthn: save user %q: %w", user, err)
		}
	}
	return nil, 0, fmt.Errorf("webauthn: create user %q: %w", user, store.ErrConflict)
}

// userByHandle resolves a passkey's user handle to the username, checking
// the index against the user's record.
func (f *Factor) userByHandle(ctx context.Context, handle []byte) (string, *userRecord, uint64, error) {
	if len(handle) != handleSize {
		return "", nil, 0, store.ErrNotFound
	}
	it, err := f.kv.Get(ctx, handleKey(handle))
	if err != nil {
		return "", nil, 0, err
	}
	user := string(it.Value)
	r, ver, err := f.loadUser(ctx, user)
	if err != nil {
		return "", nil, 0, err
	}
	if !sameHandle(r.Handle, handle) {
		return "", nil, 0, store.ErrNotFound // stale index entry
	}
	return user, r, ver, nil
}

// updateUser applies fn to the user's record and writes it with
// compare-and-swap, re-reading and re-applying on conflict. fn returning an
// error aborts without writing. have/ver, when have is not nil, is the
// record as the caller just read it, saving the first read (sign-ins are
// the hot path); fn may change it.
func (f *Factor) updateUser(ctx context.Context, user string, have *userRecord, ver uint64, fn func(*userRecord) error) (*userRecord, error) {
	return f.updateUserEnding(ctx, user, have, ver, nil, fn)
}

// updateUserEnding is updateUser that also consumes a held ceremony (h not
// nil) with the write that succeeds, in one durable write (saveUserEnding).
// A ceremony finished meanwhile by another finish is ErrCeremony, and then
// nothing is written.
func (f *Factor) updateUserEnding(ctx context.Context, user string, have *userRecord, ver uint64, h *heldCeremony, fn func(*userRecord) error) (*userRecord, error) {
	for range maxCASRetries {
		r := have
		if have = nil; r == nil {
			var err error
			if r, ver, err = f.loadUser(ctx, user); err != nil {
				return nil, err
			}
		}
		if err := fn(r); err != nil {
			return nil, err
		}
		if _, err := f.saveUserEnding(ctx, user, r, ver, h); err == nil {
			return r, nil
		} else if !isConflict(err) {
			return nil, fmt.Errorf("webauthn: save user %q: %w", user, err)
		}
	}
	return nil, fmt.Errorf("webauthn: update user %q: %w", user, store.ErrConflict)
}

// putAttestation keeps a credential's raw registration response, durably.
func (f *Factor) putAttestation(ctx context.Context, id []byte, a *gwa.CredentialAttestation) (uint64, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return 0, fmt.Errorf("webauthn: encode attestation: %w", err)
	}
	for range maxCASRetries {
		var prev uint64
		it, err := f.kv.Get(ctx, attestationKey(id))
		if err == nil {
			prev = it.Version // left by a removed or unfinished enrolment
		} else if !isNotFound(err) {
			return 0, fmt.Errorf("webauthn: attestation: %w", err)
		}
		ver, err := f.kv.CompareAndSet(ctx, attestationKey(id), b, prev, durable())
		if err == nil {
			return ver, nil
		}
		if !isConflict(err) {
			return 0, fmt.Errorf("webauthn: save attestation: %w", err)
		}
	}
	return 0, fmt.Errorf("webauthn: save attestation: %w", store.ErrConflict)
}

// storedAttestation returns a credential's raw registration response.
func (f *Factor) storedAttestation(ctx context.Context, id []byte) (gwa.CredentialAttestation, error) {
	var a gwa.CredentialAttestation
	it, err := f.kv.Get(ctx, attestationKey(id))
	if err != nil {
		return a, fmt.Errorf("webauthn: attestation: %w", err)
	}
	if err := json.Unmarshal(it.Value, &a); err != nil {
		return a, fmt.Errorf("webauthn: decode attestation: %w", err)
	}
	return a, nil
}

// cleanName trims a credential name and checks it: 1 to 64 characters of
// printable text. Names are shown in pages and admin lists, so control
// characters and bidi overrides (which can make a name read as another)
// are refused rather than escaped.
func cleanName(name string) (string, error) {
	n, err := factors.CleanName(name)
	if err != nil {
		return "", fmt.Errorf("webauthn: %w", err)
	}
	return n, nil
}

// maxReasonLen is the longest suspension reason, in characters.
const maxReasonLen = 200

// cleanReason trims a suspension reason and checks it like a name (it is
// shown the same way), allowing it to be empty.
func cleanReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return "", nil
	}
	if !utf8.ValidString(reason) || utf8.RuneCountInString(reason) > maxReasonLen ||
		strings.ContainsFunc(reason, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }) {
		return "", fmt.Errorf("webauthn: a suspension reason has at most %d characters of printable text", maxReasonLen)
	}
	return reason, nil
}

// checkUser refuses an empty username, which would address keys shared by
// nobody in particular.
func checkUser(user string) error {
	if user == "" {
		return errors.New("webauthn: no user given")
	}
	return nil
}

// randomBytes never fails: crypto/rand.Read panics rather than return short
// on a broken system.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
