package config

import (
	"testing"
	"time"

	"github.com/keygate/keygate/policy"
)

// The abuse limits: each bad value is reported at its YAML path, and
// nothing else is.
func TestValidateLimits(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"body timeout zero", func(c *Config) { c.Server.BodyTimeout = 0 }, []string{"server.body_timeout"}},
		{"body timeout huge", func(c *Config) { c.Server.BodyTimeout = policy.Duration(48 * time.Hour) }, []string{"server.body_timeout"}},
		{"body buffer tiny", func(c *Config) { c.Server.BodyBuffer = 10 }, []string{"server.body_buffer"}},
		{"body buffer huge", func(c *Config) { c.Server.BodyBuffer = 1 << 30 }, []string{"server.body_buffer"}},
		{"upstream body timeout too short", func(c *Config) { c.Upstreams[0].BodyTimeout = policy.Duration(time.Millisecond) }, []string{"upstreams[0].body_timeout"}},
		{"max per user zero", func(c *Config) { c.Session.MaxPerUser = 0 }, []string{"session.max_per_user"}},
		{"max per user negative", func(c *Config) { c.Session.MaxPerUser = -3 }, []string{"session.max_per_user"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validBase()
			tc.mutate(&c)
			if got := paths(problemsOf(t, c.Validate())); !sameSet(got, tc.want) {
				t.Fatalf("problems at %q, want %q", got, tc.want)
			}
		})
	}
	// A long upload timeout for one app is fine.
	c := validBase()
	c.Upstreams[0].BodyTimeout = policy.Duration(30 * time.Minute)
	if err := c.Validate(); err != nil {
		t.Fatalf("a 30m upstream body timeout: %v", err)
	}
}
