package factors

// Factor kinds as credentials and proofs name them, for the code that must
// name one: each factor package declares its own, and Factor.Kind is the
// authority. The order of strengths below is fixed; which factor has
// which strength is the factor's own Strength method.
const (
	KindWebAuthn = "webauthn"
	KindTOTP     = "totp"
	KindEmail    = "email"
	KindRecovery = "recovery"
	KindSMS      = "sms"
)

// Strength orders second factors by how hard they are to take from their
// owner without the owner noticing. Changing an account's second factors
// needs a fresh proof at least as strong as what the change touches, so a
// weaker factor (a mailbox, a leaked recovery sheet) can never replace or
// remove a stronger one.
//
// The order is fixed on purpose, with no configuration knob: raising one
// kind (say, counting an authenticator app as a security key) lowers the
// protection of every factor that was above it, because the raised kind
// could then add and remove those factors. "Configurable only upward"
// therefore has no safe reading for a single kind; what an admin can raise
// is what a rule demands (policy factors, webauthn.hardware).
type Strength int

const (
	// StrengthNone: no second factor at all (a password only).
	StrengthNone Strength = iota
	// StrengthCode: a code sent to or kept by the person — email, SMS,
	// recovery codes. Whoever reads the mailbox or the sheet has it.
	StrengthCode
	// StrengthApp: an authenticator app (TOTP). A shared secret, copied
	// once; phishable but tied to a device.
	StrengthApp
	// StrengthKey: WebAuthn whose model nothing vouches for (a platform
	// authenticator, a passkey, an unattested key): origin-bound and
	// unphishable, but the device may be software or synced.
	StrengthKey
	// StrengthHardware: WebAuthn whose attestation chained to a trusted
	// root at enrolment: a hardware key of a known model.
	StrengthHardware
)

var strengthNames = [...]string{"none", "code", "totp", "webauthn", "hardware"}

// String is the stable name of s ("none", "code", "totp", "webauthn",
// "hardware"), as APIs and logs show it.
func (s Strength) String() string {
	if s < StrengthNone || int(s) >= len(strengthNames) {
		return "unknown"
	}
	return strengthNames[s]
}

// ParseStrength reads a name String gives back.
func ParseStrength(name string) (Strength, bool) {
	for i, n := range strengthNames {
		if n == name {
			return Strength(i), true
		}
	}
	return StrengthNone, false
}
