package webauthn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/go-webauthn/webauthn/protocol"
	gwa "github.com/go-webauthn/webauthn/webauthn"

	"github.com/keygate/keygate/factors"
)

// BeginLogin starts a second-factor sign-in for username: the allowed
// credentials are the user's usable (not suspended) ones, user
// verification "preferred" (the policy decides from Assertion.UserVerified
// whether that was enough). factors.ErrNotEnrolled when the user has none;
// ErrAllSuspended (which matches it) when all are suspended.
func (f *Factor) BeginLogin(ctx context.Context, username string) (options json.RawMessage, ceremonyID string, err error) {
	if err := checkUser(username); err != nil {
		return nil, "", err
	}
	rec, _, err := f.loadUser(ctx, username)
	if isNotFound(err) || (err == nil && len(rec.Creds) == 0) {
		return nil, "", fmt.Errorf("webauthn: %w", factors.ErrNotEnrolled)
	}
	if err != nil {
		return nil, "", err
	}
	// A suspended credential is not offered, so the browser does not even
	// ask its authenticator (Finish refuses it anyway).
	usable := rec.usable()
	if len(usable.Creds) == 0 {
		return nil, "", ErrAllSuspended
	}
	assertion, session, err := f.wa.BeginLogin(usable.libraryUser(username, ""), gwa.WithUserVerification(protocol.VerificationPreferred))
	if err != nil {
		return nil, "", fmt.Errorf("webauthn: begin login: %w", err)
	}
	return f.beginAssertion(ctx, opLogin, username, assertion, session)
}

// BeginPasskey starts a sign-in with a discoverable credential (passkey)
// where no username was typed: no allowed credentials (the authenticator
// offers its own), and user verification "required", because a passkey
// sign-in stands in for the password as well.
func (f *Factor) BeginPasskey(ctx context.Context) (options json.RawMessage, ceremonyID string, err error) {
	assertion, session, err := f.wa.BeginDiscoverableLogin(gwa.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, "", fmt.Errorf("webauthn: begin passkey: %w", err)
	}
	return f.beginAssertion(ctx, opPasskey, "", assertion, session)
}

func (f *Factor) beginAssertion(ctx context.Context, op ceremonyOp, user string, a *protocol.CredentialAssertion, s *gwa.SessionData) (json.RawMessage, string, error) {
	id, err := f.putCeremony(ctx, op, user, "", s)
	if err != nil {
		return nil, "", err
	}
	options, err := json.Marshal(a.Response)
	if err != nil {
		return nil, "", fmt.Errorf("webauthn: encode options: %w", err)
	}
	return options, id, nil
}

// FinishLogin verifies the browser's response (credential.toJSON()) to a
// BeginLogin ceremony and advances the credential's signature counter
// (durably, with compare-and-swap). The ceremony is consumed first,
// whatever the outcome (ErrCeremony for an unknown, used, expired or
// foreign one). A refused response is a *VerifyError; a counter that did
// not advance is ErrCloneWarning, recorded on the credential while the
// counter stays where it was.
func (f *Factor) FinishLogin(ctx context.Context, username, ceremonyID string, response []byte) (Assertion, error) {
	if err := checkUser(username); err != nil {
		return Assertion{}, err
	}
	h, err := f.holdCeremony(ctx, ceremonyID, opLogin, username)
	if err != nil {
		return Assertion{}, err
	}
	a, err := f.finishLogin(ctx, username, h, response)
	if err != nil {
		f.endCeremony(ctx, h)
		f.logRefusal(opLogin, username, err)
	}
	return a, err
}

func (f *Factor) finishLogin(ctx context.Context, username string, h *heldCeremony, response []byte) (Assertion, error) {
	cer := h.rec
	parsed, err := f.parseAssertion(cer, response)
	if err != nil {
		return Assertion{}, err
	}
	rec, ver, err := f.loadUser(ctx, username)
	if isNotFound(err) {
		return Assertion{}, &VerifyError{Reason: ReasonUnknownCredential, Err: errors.New("user has no credentials")}
	}
	if err != nil {
		return Assertion{}, err
	}
	i := rec.index(parsed.RawID)
	if i < 0 {
		return Assertion{}, &VerifyError{Reason: ReasonUnknownCredential, Err: errors.New("credential is not the user's")}
	}
	if err := rec.Creds[i].refuseSuspended(); err != nil {
		return Assertion{}, err
	}
	if !slices.ContainsFunc(cer.Session.AllowedCredentialIDs, func(id []byte) bool { return bytes.Equal(id, parsed.RawID) }) {
		return Assertion{}, &VerifyError{Reason: ReasonNotAllowed, Err: errors.New("credential was not in the ceremony's allowed list")}
	}
	// Credentials removed since Begin are dropped from the allowed list
	// (the library refuses a list naming credentials the user no longer
	// owns, even when another one was used).
	allowed := cer.Session.AllowedCredentialIDs[:0:0]
	for _, id := range cer.Session.AllowedCredentialIDs {
		if rec.index(id) >= 0 {
			allowed = append(allowed, id)
		}
	}
	cer.Session.AllowedCredentialIDs = allowed
	lc, err := f.wa.ValidateLogin(rec.libraryUser(username, ""), cer.Session, parsed)
	if err != nil {
		return Assertion{}, libraryError(err)
	}
	return f.accept(ctx, username, rec, ver, h, lc, parsed)
}

// FinishPasskey verifies the response to a BeginPasskey ceremony and
// returns whose passkey it was, found from the user handle the
// authenticator returned. Errors as FinishLogin; a handle or credential we
// do not know is VerifyError{Reason: "unknown_credential"}.
func (f *Factor) FinishPasskey(ctx context.Context, ceremonyID string, response []byte) (username string, a Assertion, err error) {
	h, err := f.holdCeremony(ctx, ceremonyID, opPasskey, "")
	if err != nil {
		return "", Assertion{}, err
	}
	username, a, err = f.finishPasskey(ctx, h, response)
	if err != nil {
		f.endCeremony(ctx, h)
		f.logRefusal(opPasskey, username, err)
		return "", Assertion{}, err
	}
	return username, a, nil
}

func (f *Factor) finishPasskey(ctx context.Context, h *heldCeremony, response []byte) (string, Assertion, error) {
	cer := h.rec
	parsed, err := f.parseAssertion(cer, response)
	if err != nil {
		return "", Assertion{}, err
	}
	handle := parsed.Response.UserHandle
	if len(handle) == 0 {
		return "", Assertion{}, &VerifyError{Reason: ReasonNotAllowed, Err: errors.New("passkey response without a user handle (not a discoverable credential)")}
	}
	username, rec, ver, err := f.userByHandle(ctx, handle)
	if isNotFound(err) {
		return "", Assertion{}, &VerifyError{Reason: ReasonUnknownCredential, Err: errors.New("unknown user handle")}
	}
	if err != nil {
		return "", Assertion{}, err
	}
	i := rec.index(parsed.RawID)
	if i < 0 {
		return username, Assertion{}, &VerifyError{Reason: ReasonUnknownCredential, Err: errors.New("credential is not the user's")}
	}
	if err := rec.Creds[i].refuseSuspended(); err != nil {
		return username, Assertion{}, err
	}
	user := rec.libraryUser(username, "")
	_, lc, err := f.wa.ValidatePasskeyLogin(func(rawID, userHandle []byte) (gwa.User, error) {
		if !bytes.Equal(userHandle, user.handle) {
			return nil, errors.New("user handle changed during the ceremony")
		}
		return user, nil
	}, cer.Session, parsed)
	if err != nil {
		return username, Assertion{}, libraryError(err)
	}
	a, err := f.accept(ctx, username, rec, ver, h, lc, parsed)
	return username, a, err
}

// parseAssertion parses a response and prechecks it against the ceremony.
func (f *Factor) parseAssertion(cer *ceremonyRecord, response []byte) (*protocol.ParsedCredentialAssertionData, error) {
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return nil, parseError(err)
	}
	ad := &parsed.Response.AuthenticatorData
	if err := f.precheck(parsed.Response.CollectedClientData, protocol.AssertCeremony, cer.Session.Challenge,
		ad.RPIDHash, ad.Flags, cer.Session.UserVerification); err != nil {
		return nil, err
	}
	return parsed, nil
}

// accept records a verified assertion: the new counter, the backup state
// and the time of use, in one compare-and-swap on the user's record, which
// also consumes the ceremony when it is still held (one durable write). The
// counter rule is applied again to the record as re-read on every attempt,
// so of two concurrent assertions carrying the same counter only one is
// accepted. A counter that does not advance (go-webauthn's CloneWarning,
// which it reports on a login it lets succeed) refuses the sign-in and is
// recorded instead.
func (f *Factor) accept(ctx context.Context, username string, rec *userRecord, ver uint64, h *heldCeremony, lc *gwa.Credential, parsed *protocol.ParsedCredentialAssertionData) (Assertion, error) {
	ad := &parsed.Response.AuthenticatorData
	now := f.now()
	clone := lc.Authenticator.CloneWarning
	var cred credRecord
	_, err := f.updateUserEnding(ctx, username, rec, ver, h, func(r *userRecord) error {
		i := r.index(lc.ID)
		if i < 0 {
			return &VerifyError{Reason: ReasonUnknownCredential, Err: errors.New("credential removed during sign-in")}
		}
		c := &r.Creds[i]
		// Again on the record as re-read for the write: a suspension that
		// landed during the sign-in wins, and nothing is written.
		if err := c.refuseSuspended(); err != nil {
			return err
		}
		counter := gwa.Authenticator{SignCount: c.SignCount}
		counter.UpdateCounter(ad.Counter)
		if clone = clone || counter.CloneWarning; clone {
			c.CloneWarningAt = now
			c.CloneWarnings++
			return nil
		}
		c.SignCount = counter.SignCount
		c.Flags = lc.Flags.ProtocolValue()
		c.LastUsedAt = now
		cred = *c
		return nil
	})
	if err != nil {
		return Assertion{}, err
	}
	if clone {
		return Assertion{}, fmt.Errorf("webauthn: credential %s: %w", b64(lc.ID), ErrCloneWarning)
	}
	return Assertion{
		CredentialID:   b64(cred.ID),
		AAGUID:         aaguidString(cred.AAGUID),
		Attested:       cred.Attested,
		UserVerified:   ad.Flags.HasUserVerified(), // this assertion's, not the sticky stored flag
		BackupEligible: ad.Flags.HasBackupEligible(),
		BackupState:    ad.Flags.HasBackupState(),
		At:             now,
	}, nil
}

// refuseSuspended is the refusal of a sign-in with a suspended credential.
// It is checked before the assertion is verified (the answer is the same
// either way, and nothing about the credential changes) and again when the
// result would be written.
func (c *credRecord) refuseSuspended() error {
	if !c.Suspended {
		return nil
	}
	return &VerifyError{Reason: ReasonSuspended, Err: fmt.Errorf("credential is suspended (reason %q)", c.SuspendedReason)}
}
