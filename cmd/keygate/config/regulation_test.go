package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/policy"
)

func TestValidateRegulation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		want   []string
	}{
		{"no failures allowed", func(c *Config) { c.Regulation.MaxFailures = 0 }, []string{"regulation.max_failures"}},
		{"address limit below the account's", func(c *Config) { c.Regulation.IPMaxFailures = 3 }, []string{"regulation.ip_max_failures"}},
		{"window too short", func(c *Config) { c.Regulation.Window = policy.Duration(time.Second) }, []string{"regulation.window"}},
		{"lockout off", func(c *Config) { c.Regulation.Lockout = 0 }, []string{"regulation.lockout"}},
		{"max below first", func(c *Config) { c.Regulation.MaxLockout = policy.Duration(time.Minute) }, []string{"regulation.max_lockout"}},
		{"max over a day", func(c *Config) { c.Regulation.MaxLockout = policy.Duration(48 * time.Hour) }, []string{"regulation.max_lockout"}},
		{"no retention", func(c *Config) { c.Activity.RetentionDays = 0 }, []string{"activity.retention_days"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validBase()
			tc.mutate(&c)
			var ps Problems
			if !errors.As(c.Validate(), &ps) {
				t.Fatal("accepted")
			}
			var paths []string
			for _, p := range ps {
				paths = append(paths, p.Path)
			}
			if !slices.Equal(paths, tc.want) {
				t.Fatalf("problems at %v, want %v", paths, tc.want)
			}
		})
	}
}

func TestRegulationFromYAMLAndEnv(t *testing.T) {
	f := filepath.Join(t.TempDir(), "k.yaml")
	yml := "regulation:\n  max_failures: 3\n  window: 30m\n  lockout: 1m\n  max_lockout: 2h\nactivity:\n  retention_days: 30\n"
	if err := os.WriteFile(f, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KEYGATE_REGULATION_IP_MAX_FAILURES": "50"}
	c, err := Load(f, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	r := c.Regulation
	if r.MaxFailures != 3 || r.IPMaxFailures != 50 || r.Window.D() != 30*time.Minute || r.Lockout.D() != time.Minute ||
		r.MaxLockout.D() != 2*time.Hour || c.Activity.RetentionDays != 30 {
		t.Fatalf("loaded %+v %+v", r, c.Activity)
	}
}
