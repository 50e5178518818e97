package sentcode

import (
	"time"

	"github.com/keygate/keygate/policy"
)

// Tuning is a configuration file's tuning of sent codes (email.code,
// sms.code): the YAML form of Limits, with its checks.
type Tuning struct {
	Length    int             `yaml:"length"`
	TTL       policy.Duration `yaml:"ttl"`
	MaxTries  int             `yaml:"max_tries"`
	Cooldown  policy.Duration `yaml:"cooldown"`
	HourlyCap int             `yaml:"hourly_cap"`
}

// DefaultTuning: 6 digits, 10 minutes, 5 tries, a minute's cooldown, 5
// codes an hour.
func DefaultTuning() Tuning {
	return Tuning{Length: 6, TTL: policy.Duration(10 * time.Minute), MaxTries: 5,
		Cooldown: policy.Duration(time.Minute), HourlyCap: 5}
}

// Limits is t for the engine.
func (t Tuning) Limits() Limits {
	return Limits{Length: t.Length, TTL: t.TTL.D(), MaxTries: t.MaxTries, Cooldown: t.Cooldown.D(), HourlyCap: t.HourlyCap}
}

// Check reports t's problems under path through problem (the config
// loader's, with YAML paths).
func (t Tuning) Check(path string, problem func(path, format string, args ...any)) {
	if t.Length < 6 || t.Length > 10 {
		problem(path+".length", "%d must be between 6 and 10 digits", t.Length)
	}
	if t.TTL.D() < time.Minute || t.TTL.D() > time.Hour {
		problem(path+".ttl", "%s must be between 1m and 1h", t.TTL)
	}
	if t.MaxTries < 1 || t.MaxTries > 10 {
		problem(path+".max_tries", "%d must be between 1 and 10", t.MaxTries)
	}
	if t.Cooldown.D() < 0 || t.Cooldown.D() > 10*time.Minute || t.Cooldown.D() >= t.TTL.D() {
		problem(path+".cooldown", "%s must be between 0s and 10m and shorter than %s.ttl", t.Cooldown, path)
	}
	if t.HourlyCap < 1 {
		problem(path+".hourly_cap", "%d must be at least 1", t.HourlyCap)
	}
}
