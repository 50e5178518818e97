package config

import (
	"slices"

	"github.com/keygate/keygate/factors"
)

type section struct {
	key string
	factors.ConfigSection
}

// validateSections lets every factor section check itself.
func (c *Config) validateSections(ps *Problems) {
	for _, s := range c.factorSections() {
		s.CheckConfig(s.key, checker{ps})
	}
}

// checker is what a factor section may ask of the loader.
type checker struct{ ps *Problems }

func (k checker) Problem(path, format string, args ...any) { k.ps.add(path, format, args...) }
func (k checker) ReadSecret(file string) (string, error)   { return readSecretFile(file) }
func (k checker) Loopback(host string) bool                { return isLocalHost(host) }

// ReadSecretFile reads a secret file the way every secret of the
// configuration is read (size bound, one trailing newline dropped); for
// the factor sections' gateways, built at start.
func ReadSecretFile(name string) (string, error) { return readSecretFile(name) }

// FactorKinds are the second factors this configuration registers, in the
// chooser's order (strongest first): what policies may name. WebAuthn,
// the app, email and recovery codes may always be named (a rule naming a
// factor that is switched off is a warning of validatePolicy, not an
// unknown name); a factor with a section of its own once the section
// turns it on, before recovery codes. cmd's registry (wireFactors) builds
// the same list.
func (c *Config) FactorKinds() []string {
	kinds := []string{"webauthn", "totp", "email"}
	for _, s := range c.factorSections() {
		if kind, on := s.Enabled(); on && !slices.Contains(kinds, kind) {
			kinds = append(kinds, kind)
		}
	}
	return append(kinds, "recovery")
}
