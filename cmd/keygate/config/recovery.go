package config

import (
	"time"

	"github.com/keygate/keygate/policy"
)

// Recovery is the self-service account recovery of a person who lost
// every second factor (authn/recovery.go).
type Recovery struct {
	// WaitingPeriod is how long a request waits before the person may
	// replace their factors; every channel is told meanwhile and a
	// sign-in with any existing factor cancels it.
	WaitingPeriod policy.Duration `yaml:"waiting_period"`
}

// Bounds of recovery.waiting_period: under a day a person away for a
// weekend would not see the notice in time; over a month nobody waits.
const (
	minRecoveryWait = 24 * time.Hour
	maxRecoveryWait = 30 * 24 * time.Hour
)

func (c *Config) validateRecovery(ps *Problems) {
	if w := c.Recovery.WaitingPeriod.D(); w < minRecoveryWait || w > maxRecoveryWait {
		ps.add("recovery.waiting_period", "%s must be between 24h and 720h (30 days)", c.Recovery.WaitingPeriod)
	}
}
