package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/policy"
)

func TestValidateRecoveryWaitingPeriod(t *testing.T) {
	if c := validBase(); c.Recovery.WaitingPeriod.D() != 72*time.Hour || c.Validate() != nil {
		t.Fatalf("default %s: %v", c.Recovery.WaitingPeriod, c.Validate())
	}
	for _, bad := range []time.Duration{0, -time.Hour, time.Hour, 23 * time.Hour, 31 * 24 * time.Hour} {
		c := validBase()
		c.Recovery.WaitingPeriod = policy.Duration(bad)
		var ps Problems
		if !errors.As(c.Validate(), &ps) || len(ps) != 1 || ps[0].Path != "recovery.waiting_period" {
			t.Fatalf("%s: %v", bad, c.Validate())
		}
	}
	// Through the documented example, the file and the environment.
	raw, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	example := string(raw)
	if !strings.Contains(example, "  waiting_period: 72h\n") {
		t.Fatal("the example does not document recovery.waiting_period")
	}
	with := func(line string) string { return strings.Replace(example, "  waiting_period: 72h\n", line, 1) }
	c, err := Parse([]byte(with("  waiting_period: 168h\n")), nil)
	if err != nil || c.Recovery.WaitingPeriod.D() != 168*time.Hour {
		t.Fatalf("168h: %v", err)
	}
	if _, err := Parse([]byte(with("  waiting_period: 2h\n")), nil); err == nil || !strings.Contains(err.Error(), "recovery.waiting_period") {
		t.Fatalf("2h accepted or not named: %v", err)
	}
	if _, err := Parse([]byte(with("  wait: 72h\n")), nil); err == nil {
		t.Fatal("an unknown key under recovery was accepted")
	}
	env := func(k string) string {
		if k == "KEYGATE_RECOVERY_WAITING_PERIOD" {
			return "96h"
		}
		return ""
	}
	if c, err := Parse(raw, env); err != nil || c.Recovery.WaitingPeriod.D() != 96*time.Hour {
		t.Fatalf("from the environment: %v", err)
	}
}
