package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// keygate user recovery list|approve|cancel, through the running gateway's
// admin socket: nothing pending is said so, and approving or cancelling
// what is not pending (or a user who does not exist) fails with a clear
// message and changes nothing. The whole flow with a pending request is
// covered in authn and web.
func TestUserRecoveryCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	startDemo(t, data)
	cfg := demoConfigFile(t, data)
	out, errOut, rc := run(t, "", "user", "recovery", "list", "--config", cfg)
	if rc != 0 || !strings.Contains(out, "no account recovery is pending") {
		t.Fatalf("list: rc=%d %q %q", rc, out, errOut)
	}
	for _, verb := range []string{"approve", "cancel"} {
		if _, errOut, rc := run(t, "", "user", "recovery", verb, demoUser, "--config", cfg); rc == 0 || !strings.Contains(errOut, "No account recovery is pending") {
			t.Fatalf("%s with none pending: rc=%d %q", verb, rc, errOut)
		}
		if _, errOut, rc := run(t, "", "user", "recovery", verb, "nobody", "--config", cfg); rc == 0 || !strings.Contains(errOut, "not found") {
			t.Fatalf("%s of an unknown user: rc=%d %q", verb, rc, errOut)
		}
	}
	out, _, rc = run(t, "", "user", "recovery", "list", "--config", cfg)
	if rc != 0 || !strings.Contains(out, "no account recovery is pending") {
		t.Fatalf("list after refusals: rc=%d %q", rc, out)
	}
}
