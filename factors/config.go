package factors

// A factor may bring its own section of keygate's configuration file
// (sms: provider, gateway, code tuning), declared in its package next to
// the code it tunes. The config loader decodes the section under the
// factor's key, asks it to check itself and registers the factor when the
// section turns it on: adding a factor adds no validation code elsewhere.

// ConfigChecker is what a section may ask of the config loader while it
// checks itself.
type ConfigChecker interface {
	// Problem reports what is wrong at a YAML path ("sms.kannel.url"); the
	// loader lists every problem, in order.
	Problem(path, format string, args ...any)
	// ReadSecret reads a secret file the way the loader reads every
	// secret (size bound, trailing newline dropped).
	ReadSecret(file string) (string, error)
	// Loopback says whether host names this machine (plain http is
	// allowed only there).
	Loopback(host string) bool
}

// ConfigSection is a factor's own configuration section.
type ConfigSection interface {
	// CheckConfig reports the section's problems under path (its key).
	CheckConfig(path string, c ConfigChecker)
	// Enabled names the factor kind the section turns on, when it does.
	Enabled() (kind string, on bool)
}
