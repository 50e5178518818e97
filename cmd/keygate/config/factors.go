package config

// FactorKinds are the second factors this configuration registers, in the
// chooser's order (strongest first): what policies may name. WebAuthn,
// the app, email and recovery codes may always be named (a rule naming a
// factor that is switched off is a warning of validatePolicy, not an
// unknown name); SMS only once an SMS provider is configured. cmd's
// registry (wireFactors) builds the same list.
func (c *Config) FactorKinds() []string {
	kinds := []string{"webauthn", "totp", "email"}
	if c.SMS.Provider != "" {
		kinds = append(kinds, "sms")
	}
	return append(kinds, "recovery")
}
