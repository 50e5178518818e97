package webauthn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/go-webauthn/webauthn/protocol"
	gwa "github.com/go-webauthn/webauthn/webauthn"

	"github.com/keygate/keygate/factors"
)

// BeginRegistration starts enrolling an authenticator of kind for u. It
// asks for direct attestation (so a security key can be checked against the
// trust anchors), excludes the user's existing credentials (the browser
// refuses to enrol the same authenticator twice, InvalidStateError) and
// requests the credProps extension (whether a resident key was made).
//
// options is the `publicKey` member of the creation options, as
// PublicKeyCredential.parseCreationOptionsFromJSON takes it; ceremonyID
// goes back to FinishRegistration.
func (f *Factor) BeginRegistration(ctx context.Context, u User, kind AuthenticatorKind) (options json.RawMessage, ceremonyID string, err error) {
	if err := checkUser(u.Username); err != nil {
		return nil, "", err
	}
	if !kind.valid() {
		return nil, "", fmt.Errorf("webauthn: unknown authenticator kind %q", kind)
	}
	rec, _, err := f.ensureUser(ctx, u.Username)
	if err != nil {
		return nil, "", err
	}
	user := rec.libraryUser(u.Username, u.DisplayName)
	exclude := make([]protocol.CredentialDescriptor, len(user.creds))
	for i := range user.creds {
		exclude[i] = user.creds[i].Descriptor()
	}
	sel := protocol.AuthenticatorSelection{
		AuthenticatorAttachment: protocol.CrossPlatform,
		ResidentKey:             protocol.ResidentKeyRequirementDiscouraged,
		RequireResidentKey:      new(false),
		UserVerification:        protocol.VerificationPreferred,
	}
	hint := protocol.PublicKeyCredentialHintSecurityKey
	if kind == Platform {
		sel = protocol.AuthenticatorSelection{
			AuthenticatorAttachment: protocol.Platform,
			ResidentKey:             protocol.ResidentKeyRequirementRequired,
			RequireResidentKey:      new(true),
			UserVerification:        protocol.VerificationRequired,
		}
		hint = protocol.PublicKeyCredentialHintClientDevice
	}
	creation, session, err := f.wa.BeginRegistration(user,
		gwa.WithAuthenticatorSelection(sel),
		gwa.WithConveyancePreference(protocol.PreferDirectAttestation),
		gwa.WithExclusions(exclude),
		gwa.WithPublicKeyCredentialHints([]protocol.PublicKeyCredentialHints{hint}),
		gwa.WithExtensions(gwa.WithExtensionCredProps()),
	)
	if err != nil {
		return nil, "", fmt.Errorf("webauthn: begin registration: %w", err)
	}
	if ceremonyID, err = f.putCeremony(ctx, opRegister, u.Username, kind, session); err != nil {
		return nil, "", err
	}
	if options, err = json.Marshal(creation.Response); err != nil {
		return nil, "", fmt.Errorf("webauthn: encode options: %w", err)
	}
	return options, ceremonyID, nil
}

// FinishRegistration verifies the browser's response (credential.toJSON())
// to the ceremony and stores the credential, durably. name must be unique
// among the user's credentials (factors.ErrNameTaken, factors.ErrInvalidName,
// both checked before the ceremony is spent); empty picks "Security key" or
// "This device" (or "… 2", …).
//
// The ceremony is consumed first, whatever the outcome: ErrCeremony for an
// unknown, used, expired or foreign one. A refused response is a
// *VerifyError; the same credential enrolled twice is
// VerifyError{Reason: "already_registered"}.
func (f *Factor) FinishRegistration(ctx context.Context, u User, ceremonyID string, response []byte, name string) (factors.Credential, error) {
	if err := checkUser(u.Username); err != nil {
		return factors.Credential{}, err
	}
	if name != "" {
		var err error
		if name, err = cleanName(name); err != nil {
			return factors.Credential{}, err
		}
		// Early, so a taken name does not spend the ceremony; the write
		// below checks again.
		if rec, _, err := f.loadUser(ctx, u.Username); err == nil && rec.nameTaken(name, -1) {
			return factors.Credential{}, fmt.Errorf("webauthn: %w: %q", factors.ErrNameTaken, name)
		}
	}
	cer, err := f.takeCeremony(ctx, ceremonyID, opRegister, u.Username)
	if err != nil {
		return factors.Credential{}, err
	}
	c, err := f.finishRegistration(ctx, u, cer, response, name)
	if err != nil {
		f.logRefusal(opRegister, u.Username, err)
	}
	return c, err
}

func (f *Factor) finishRegistration(ctx context.Context, u User, cer *ceremonyRecord, response []byte, name string) (factors.Credential, error) {
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return factors.Credential{}, parseError(err)
	}
	att := &parsed.Response.AttestationObject
	if err := f.precheck(parsed.Response.CollectedClientData, protocol.CreateCeremony, cer.Session.Challenge,
		att.AuthData.RPIDHash, att.AuthData.Flags, cer.Session.UserVerification); err != nil {
		return factors.Credential{}, err
	}
	rec, _, err := f.loadUser(ctx, u.Username)
	if err != nil {
		if isNotFound(err) {
			// The user's WebAuthn state was removed since Begin.
			return factors.Credential{}, ErrCeremony
		}
		return factors.Credential{}, err
	}
	if rec.index(parsed.RawID) >= 0 {
		return factors.Credential{}, &VerifyError{Reason: ReasonAlreadyRegistered, Err: errors.New("credential already enrolled for this user")}
	}
	lc, err := f.wa.CreateCredential(rec.libraryUser(u.Username, u.DisplayName), cer.Session, parsed)
	if err != nil {
		return factors.Credential{}, libraryError(err)
	}
	verdict := f.trust.assess(ctx, lc, f.wa.Config.Attestation, f.wa.Config.Signature)
	f.log.Info("webauthn: attestation", slog.String("user", u.Username), slog.String("aaguid", aaguidString(lc.Authenticator.AAGUID)),
		slog.String("format", lc.AttestationFormat), slog.String("type", lc.AttestationType),
		slog.Bool("attested", verdict.attested), slog.String("why", verdict.why))

	now := f.now()
	cred := credRecord{
		ID:          lc.ID,
		Kind:        cer.AuthKind,
		PublicKey:   lc.PublicKey,
		SignCount:   lc.Authenticator.SignCount,
		AAGUID:      lc.Authenticator.AAGUID,
		Format:      lc.AttestationFormat,
		AttType:     lc.AttestationType,
		Attested:    verdict.attested,
		Model:       verdict.model,
		Flags:       lc.Flags.ProtocolValue(),
		Attachment:  string(lc.Authenticator.Attachment),
		ResidentKey: lc.Extensions.RK,
		CreatedAt:   now,
	}
	for _, t := range lc.Transport {
		cred.Transports = append(cred.Transports, string(t))
	}

	if err := f.storeCredential(ctx, u.Username, cer.Session.UserID, &cred, &lc.Attestation, name); err != nil {
		return factors.Credential{}, err
	}
	return cred.public(), nil
}

// storeCredential adds cred to the user's record under name (or the next
// default name), after claiming its ID in the credential index (so that of
// two users presenting the same credential, or the same response twice,
// only one gets it) and keeping its raw attestation. What was written is
// taken back if a later step fails.
func (f *Factor) storeCredential(ctx context.Context, user string, handle []byte, cred *credRecord, att *gwa.CredentialAttestation, name string) (err error) {
	iver, err := f.claimCredentialID(ctx, user, cred.ID)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.kv.CompareAndDelete(context.WithoutCancel(ctx), credIDKey(cred.ID), iver)
		}
	}()
	aver, err := f.putAttestation(ctx, cred.ID, att)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.kv.CompareAndDelete(context.WithoutCancel(ctx), attestationKey(cred.ID), aver)
		}
	}()
	_, err = f.updateUser(ctx, user, nil, 0, func(r *userRecord) error {
		if !sameHandle(r.Handle, handle) {
			return ErrCeremony // the user's WebAuthn state was reset since Begin
		}
		if r.index(cred.ID) >= 0 {
			return &VerifyError{Reason: ReasonAlreadyRegistered, Err: errors.New("credential already enrolled for this user")}
		}
		switch {
		case name == "":
			cred.Name = r.defaultName(cred.Kind)
		case r.nameTaken(name, -1):
			return fmt.Errorf("webauthn: %w: %q", factors.ErrNameTaken, name)
		default:
			cred.Name = name
		}
		r.Creds = append(r.Creds, *cred)
		return nil
	})
	return err
}

// claimCredentialID points the credential-ID index at user. An entry for
// another user that still holds the credential means it is enrolled there
// (already_registered); a stale entry (its user removed the credential, or
// a crash between index and record) is taken over.
func (f *Factor) claimCredentialID(ctx context.Context, user string, id []byte) (uint64, error) {
	key := credIDKey(id)
	for range maxCASRetries {
		it, err := f.kv.Get(ctx, key)
		var prev uint64
		switch {
		case isNotFound(err):
		case err != nil:
			return 0, fmt.Errorf("webauthn: credential index: %w", err)
		default:
			if owner := string(it.Value); owner != user {
				if r, _, err := f.loadUser(ctx, owner); err == nil && r.index(id) >= 0 {
					return 0, &VerifyError{Reason: ReasonAlreadyRegistered, Err: errors.New("credential enrolled for another user")}
				} else if err != nil && !isNotFound(err) {
					return 0, err
				}
			}
			prev = it.Version
		}
		ver, err := f.kv.CompareAndSet(ctx, key, []byte(user), prev, durable())
		if err == nil {
			return ver, nil
		}
		if !isConflict(err) {
			return 0, fmt.Errorf("webauthn: credential index: %w", err)
		}
	}
	return 0, fmt.Errorf("webauthn: credential index: %w", errors.New("too many concurrent writers"))
}
