package webauthn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keygate/keygate/factors"
)

// CredentialInfo is everything kept about a credential except its key and
// raw attestation, for admin pages and policy checks.
type CredentialInfo struct {
	factors.Credential
	AuthenticatorKind AuthenticatorKind
	AAGUID            string
	AttestationFormat string // "packed", "fido-u2f", "tpm", "none", …
	AttestationType   string // "basic_full", "attca", "self", "none", …
	// Attested: the attestation chained to our trust anchors at enrolment.
	Attested bool
	// Model is the metadata's name for an attested model ("" otherwise).
	Model      string
	Transports []string
	// UserVerified: the user was verified at enrolment (sticky).
	UserVerified   bool
	BackupEligible bool
	BackupState    bool
	// ResidentKey is the credProps answer: nil when the client did not say.
	ResidentKey    *bool
	SignCount      uint32
	CloneWarningAt time.Time
	CloneWarnings  int
	// Suspended: the credential cannot sign in until an admin restores it
	// (Unsuspend); SuspendedReason says why ("ATTESTATION_KEY_COMPROMISE").
	Suspended       bool
	SuspendedReason string
	SuspendedAt     time.Time
}

// List returns the user's credentials, oldest first. A user who never
// enrolled has none (no error).
func (f *Factor) List(ctx context.Context, user string) ([]factors.Credential, error) {
	infos, err := f.Credentials(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]factors.Credential, len(infos))
	for i := range infos {
		out[i] = infos[i].Credential
		out[i].Attested = infos[i].Attested
	}
	return out, nil
}

// Credentials is List with the details.
func (f *Factor) Credentials(ctx context.Context, user string) ([]CredentialInfo, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	r, _, err := f.loadUser(ctx, user)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]CredentialInfo, len(r.Creds))
	for i := range r.Creds {
		c := &r.Creds[i]
		out[i] = CredentialInfo{
			Credential:        c.public(),
			AuthenticatorKind: c.Kind,
			AAGUID:            aaguidString(c.AAGUID),
			AttestationFormat: c.Format,
			AttestationType:   c.AttType,
			Attested:          c.Attested,
			Model:             c.Model,
			Transports:        slices.Clone(c.Transports),
			UserVerified:      c.Flags.HasUserVerified(),
			BackupEligible:    c.Flags.HasBackupEligible(),
			BackupState:       c.Flags.HasBackupState(),
			ResidentKey:       c.ResidentKey,
			SignCount:         c.SignCount,
			CloneWarningAt:    c.CloneWarningAt,
			CloneWarnings:     c.CloneWarnings,
			Suspended:         c.Suspended,
			SuspendedReason:   c.SuspendedReason,
			SuspendedAt:       c.SuspendedAt,
		}
	}
	slices.SortStableFunc(out, func(a, b CredentialInfo) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// Rename gives credential id (Credential.ID) a new name, unique among the
// user's credentials (factors.ErrNameTaken, factors.ErrInvalidName,
// factors.ErrNotFound).
func (f *Factor) Rename(ctx context.Context, user, id, name string) error {
	if err := checkUser(user); err != nil {
		return err
	}
	name, err := cleanName(name)
	if err != nil {
		return err
	}
	raw, err := unb64(id)
	if err != nil || len(raw) == 0 {
		return fmt.Errorf("webauthn: credential %q: %w", id, factors.ErrNotFound)
	}
	_, err = f.updateUser(ctx, user, nil, 0, func(r *userRecord) error {
		i := r.index(raw)
		if i < 0 {
			return fmt.Errorf("webauthn: credential %q: %w", id, factors.ErrNotFound)
		}
		if r.nameTaken(name, i) {
			return fmt.Errorf("webauthn: %w: %q", factors.ErrNameTaken, name)
		}
		r.Creds[i].Name = name
		return nil
	})
	if isNotFound(err) {
		return fmt.Errorf("webauthn: credential %q: %w", id, factors.ErrNotFound)
	}
	return err
}

// Suspend takes credential id (Credential.ID) out of use: sign-ins with it
// are refused (VerifyError{Reason: "suspended"}) and BeginLogin no longer
// offers it, while everything else about it is kept for Unsuspend. reason
// is shown with the credential (printable text, at most 200 characters;
// may be empty). Suspending a suspended credential changes nothing and
// keeps the first reason. factors.ErrNotFound for an unknown credential.
//
// Sessions already proven with the credential are not touched here: that
// is for the caller, which knows the sessions.
func (f *Factor) Suspend(ctx context.Context, user, id, reason string) error {
	reason, err := cleanReason(reason)
	if err != nil {
		return err
	}
	now := f.now()
	return f.updateCredential(ctx, user, id, func(c *credRecord) bool {
		if c.Suspended {
			return false
		}
		c.Suspended, c.SuspendedReason, c.SuspendedAt = true, reason, now
		return true
	})
}

// Unsuspend puts a suspended credential back in use, as it was (its
// counter and attestation untouched). Unsuspending one that is not
// suspended changes nothing. factors.ErrNotFound for an unknown credential.
func (f *Factor) Unsuspend(ctx context.Context, user, id string) error {
	return f.updateCredential(ctx, user, id, func(c *credRecord) bool {
		if !c.Suspended {
			return false
		}
		c.Suspended, c.SuspendedReason, c.SuspendedAt = false, "", time.Time{}
		return true
	})
}

// errUnchanged aborts updateCredential's write when fn changed nothing.
var errUnchanged = errors.New("webauthn: unchanged")

// updateCredential applies fn to credential id of user and writes the
// record when fn reports a change.
func (f *Factor) updateCredential(ctx context.Context, user, id string, fn func(*credRecord) bool) error {
	if err := checkUser(user); err != nil {
		return err
	}
	raw, err := unb64(id)
	if err != nil || len(raw) == 0 {
		return fmt.Errorf("webauthn: credential %q: %w", id, factors.ErrNotFound)
	}
	_, err = f.updateUser(ctx, user, nil, 0, func(r *userRecord) error {
		i := r.index(raw)
		if i < 0 {
			return fmt.Errorf("webauthn: credential %q: %w", id, factors.ErrNotFound)
		}
		if !fn(&r.Creds[i]) {
			return errUnchanged
		}
		return nil
	})
	switch {
	case errors.Is(err, errUnchanged):
		return nil
	case isNotFound(err):
		return fmt.Errorf("webauthn: credential %q: %w", id, factors.ErrNotFound)
	}
	return err
}

// Remove deletes credential id (factors.ErrNotFound if the user has no such
// credential). The user keeps their handle, so passkeys on other devices
// keep pointing at them; the removed one can no longer sign in.
func (f *Factor) Remove(ctx context.Context, user, id string) error {
	if err := checkUser(user); err != nil {
		return err
	}
	raw, err := unb64(id)
	if err != nil || len(raw) == 0 {
		return fmt.Errorf("webauthn: credential %q: %w", id, factors.ErrNotFound)
	}
	_, err = f.updateUser(ctx, user, nil, 0, func(r *userRecord) error {
		i := r.index(raw)
		if i < 0 {
			return fmt.Errorf("webauthn: credential %q: %w", id, factors.ErrNotFound)
		}
		r.Creds = slices.Delete(r.Creds, i, i+1)
		return nil
	})
	if isNotFound(err) {
		return fmt.Errorf("webauthn: credential %q: %w", id, factors.ErrNotFound)
	}
	if err != nil {
		return err
	}
	f.dropIndex(ctx, credIDKey(raw), user)
	f.dropKey(ctx, attestationKey(raw))
	return nil
}

// RemoveAll deletes all of the user's credentials and their user handle
// (so a new account of the same name later gets a new one, and no old
// passkey can point at it). It returns how many credentials there were.
func (f *Factor) RemoveAll(ctx context.Context, user string) (int, error) {
	if err := checkUser(user); err != nil {
		return 0, err
	}
	for range maxCASRetries {
		r, ver, err := f.loadUser(ctx, user)
		if isNotFound(err) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		err = f.kv.CompareAndDelete(ctx, userKey(user), ver)
		if isConflict(err) {
			continue
		}
		if isNotFound(err) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("webauthn: remove user %q: %w", user, err)
		}
		// The record is gone, which is what makes the credentials unusable;
		// the indexes only point at it. Left behind after a crash, they
		// are stale and ignored or taken over.
		f.dropIndex(ctx, handleKey(r.Handle), user)
		for i := range r.Creds {
			f.dropIndex(ctx, credIDKey(r.Creds[i].ID), user)
			f.dropKey(ctx, attestationKey(r.Creds[i].ID))
		}
		return len(r.Creds), nil
	}
	return 0, fmt.Errorf("webauthn: remove user %q: too many concurrent writers", user)
}

// dropIndex deletes an index entry if it still points at user. Failing is
// harmless (a stale entry is ignored), so errors are not returned.
func (f *Factor) dropIndex(ctx context.Context, key, user string) {
	ctx = context.WithoutCancel(ctx)
	it, err := f.kv.Get(ctx, key)
	if err != nil || string(it.Value) != user {
		return
	}
	_ = f.kv.CompareAndDelete(ctx, key, it.Version)
}

// dropKey deletes a key that only the removed credential used.
func (f *Factor) dropKey(ctx context.Context, key string) {
	ctx = context.WithoutCancel(ctx)
	if it, err := f.kv.Get(ctx, key); err == nil {
		_ = f.kv.CompareAndDelete(ctx, key, it.Version)
	}
}
