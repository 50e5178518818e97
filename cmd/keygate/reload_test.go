package main

import (
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/cmd/keygate/config"
	"github.com/keygate/keygate/policy"
)

// A key a reload does not apply is named in the reload's warning rather
// than silently kept at its old value.
func TestNeedsRestartNamesUnappliedKeys(t *testing.T) {
	base := func() *config.Config {
		c := &config.Config{}
		c.Server.BodyTimeout = policy.Duration(time.Minute)
		c.Server.PortalURL = "https://auth.example.com"
		return c
	}
	for _, tc := range []struct {
		key    string
		change func(*config.Config)
	}{
		{"server.body_timeout", func(c *config.Config) { c.Server.BodyTimeout = policy.Duration(5 * time.Minute) }},
		{"server.body_buffer", func(c *config.Config) { c.Server.BodyBuffer = 1 << 20 }},
		{"server.portal_url", func(c *config.Config) { c.Server.PortalURL = "https://login.example.com" }},
		{"server.tls.hsts_include_subdomains", func(c *config.Config) { c.Server.TLS.HSTSIncludeSubdomains = true }},
		{"server.protected_hosts", func(c *config.Config) { c.Server.ProtectedHosts = []string{"x.example.com"} }},
	} {
		next := base()
		tc.change(next)
		if got := needsRestart(base(), next); !slices.Contains(got, tc.key) {
			t.Errorf("changing %s: needsRestart says %v", tc.key, got)
		}
	}
	if got := needsRestart(base(), base()); len(got) != 0 {
		t.Errorf("no change: %v", got)
	}
}
