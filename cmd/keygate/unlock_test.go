package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// keygate user unlock ends a brute-force lock, through the running
// gateway's admin socket and offline alike.
func TestUserUnlock(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	d := startDemo(t, data)
	cfg := demoConfigFile(t, data)
	lock := func(base string) {
		t.Helper()
		for range 5 {
			if code := signInStatus(t, base, demoUser, "not-the-password-123"); code != http.StatusUnauthorized {
				t.Fatalf("wrong password: %d", code)
			}
		}
		if code := signInStatus(t, base, demoUser, demoPassword); code != http.StatusTooManyRequests {
			t.Fatalf("right password on a locked account: %d, want 429", code)
		}
	}
	lock(d.base)
	out, errOut, rc := run(t, "", "user", "unlock", demoUser, "--config", cfg)
	if rc != 0 || !strings.Contains(out, "unlocked") {
		t.Fatalf("unlock: rc=%d %q %q", rc, out, errOut)
	}
	signIn(t, d.base, demoUser, demoPassword)
	out, _, rc = run(t, "", "user", "unlock", demoUser, "--config", cfg)
	if rc != 0 || !strings.Contains(out, "was not locked") {
		t.Fatalf("unlock of an unlocked user: rc=%d %q", rc, out)
	}
	if _, errOut, rc := run(t, "", "user", "unlock", "nobody", "--config", cfg); rc == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("unlock of an unknown user: rc=%d %q", rc, errOut)
	}

	// Locks survive a restart, and the CLI unlocks the stopped data directory.
	lock(d.base)
	d.stop(t)
	d2 := startDemo(t, data)
	if code := signInStatus(t, d2.base, demoUser, demoPassword); code != http.StatusTooManyRequests {
		t.Fatalf("after a restart: %d, want 429", code)
	}
	d2.stop(t)
	out, errOut, rc = run(t, "", "user", "unlock", demoUser, "--config", cfg)
	if rc != 0 || !strings.Contains(out, "unlocked") {
		t.Fatalf("offline unlock: rc=%d %q %q", rc, out, errOut)
	}
	d3 := startDemo(t, data)
	signIn(t, d3.base, demoUser, demoPassword)
}
