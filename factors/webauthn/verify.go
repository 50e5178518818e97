package webauthn

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"

	"github.com/go-webauthn/webauthn/protocol"
)

// precheck checks what the client data and authenticator data say about the
// ceremony before go-webauthn verifies it (which checks all of it again).
// It exists to give a refusal a stable reason: the library reports an
// origin, challenge or RP ID mismatch alike, as a generic verification
// error whose text is not a contract.
func (f *Factor) precheck(cd protocol.CollectedClientData, want protocol.CeremonyType, challenge string, rpIDHash []byte, flags protocol.AuthenticatorFlags, uv protocol.UserVerificationRequirement) error {
	if cd.Type != want {
		return &VerifyError{Reason: ReasonMalformed, Err: errors.New("client data is for another ceremony type")}
	}
	if subtle.ConstantTimeCompare([]byte(cd.Challenge), []byte(challenge)) != 1 {
		return &VerifyError{Reason: ReasonBadChallenge, Err: errors.New("response is for another challenge")}
	}
	if !protocol.IsOriginInHaystack(cd.Origin, f.origins) {
		return &VerifyError{Reason: ReasonBadOrigin, Err: errors.New("origin is not allowed")}
	}
	if want := sha256.Sum256([]byte(f.rpID)); !bytes.Equal(rpIDHash, want[:]) {
		return &VerifyError{Reason: ReasonBadRPID, Err: errors.New("authenticator data is for another RP ID")}
	}
	if uv == protocol.VerificationRequired && !flags.HasUserVerified() {
		return &VerifyError{Reason: ReasonUVRequired, Err: errors.New("user verification required but not performed")}
	}
	return nil
}

// libraryError turns a go-webauthn failure into a VerifyError with a
// reason chosen from the error's type (never its text).
func libraryError(err error) *VerifyError {
	var unknown *protocol.ErrorUnknownCredential
	if errors.As(err, &unknown) {
		return &VerifyError{Reason: ReasonUnknownCredential, Err: err}
	}
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		return &VerifyError{Reason: ReasonRejected, Err: err}
	}
	reason := ReasonRejected
	switch pe.Type {
	case protocol.ErrAssertionSignature.Type:
		reason = ReasonBadSignature
	case protocol.ErrInvalidAttestation.Type, protocol.ErrAttestation.Type, protocol.ErrAttestationCertificate.Type, protocol.ErrMetadata.Type:
		reason = ReasonBadAttestation
	case protocol.ErrParsingData.Type:
		reason = ReasonMalformed
	case protocol.ErrChallengeMismatch.Type:
		reason = ReasonBadChallenge
	case protocol.ErrPolicyRestriction.Type:
		reason = ReasonNotAllowed
	}
	return &VerifyError{Reason: reason, Err: err}
}

// parseError is a response that does not even parse.
func parseError(err error) *VerifyError {
	return &VerifyError{Reason: ReasonMalformed, Err: err}
}

// logRefusal records a refused response for the operator: the reason and
// the library's developer details. Nothing here is secret (challenges are
// spent once refused) and nothing here is ever shown to the user.
func (f *Factor) logRefusal(op ceremonyOp, user string, err error) {
	if errors.Is(err, ErrCloneWarning) {
		f.log.Warn("webauthn: sign-in refused: signature counter did not advance (possible cloned authenticator)",
			slog.String("op", string(op)), slog.String("user", user), slog.String("error", err.Error()))
		return
	}
	var ve *VerifyError
	if !errors.As(err, &ve) {
		return
	}
	attrs := []any{slog.String("op", string(op)), slog.String("user", user), slog.String("reason", ve.Reason)}
	var pe *protocol.Error
	if errors.As(ve.Err, &pe) {
		attrs = append(attrs, slog.String("type", pe.Type), slog.String("details", pe.Details), slog.String("dev_info", pe.DevInfo))
	} else if ve.Err != nil {
		attrs = append(attrs, slog.String("details", ve.Err.Error()))
	}
	f.log.Info("webauthn: response refused", attrs...)
}
