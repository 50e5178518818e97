package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/mail"
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

// recoveryStatus is the person's recovery as the portal's API says it.
func (p *portal) recoveryStatus() map[string]any {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.base+"/.keygate/api/recovery", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		p.t.Fatalf("recovery state: %d %v", resp.StatusCode, err)
	}
	return out
}

// outboxMail is the newest mail in the demo's outbox whose subject says
// subject.
func outboxMail(t *testing.T, data, subject string) string {
	t.Helper()
	box, err := mail.NewOutbox(filepath.Join(data, "outbox"), "keygate <keygate@localhost>")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mails, err := box.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mails {
			if strings.Contains(m.Subject, subject) {
				return m.Text
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no mail about %q in the outbox", subject)
	return ""
}

var sixDigits = regexp.MustCompile(`\b\d{6}\b`)

// A real pending request, asked for through the portal of a running
// gateway, listed, approved and cancelled with the commands: each does
// what it says to the request the person sees, the person is told, and a
// second cancel is refused with nothing changed.
func TestUserRecoveryApproveAndCancelAPendingRequest(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	d := startDemo(t, data)
	cfg := demoConfigFile(t, data)
	enrolTOTP(t, d.base, cfg, demoUser, demoPassword)

	// The phone is lost: the password, a code to the address, a request.
	ask := func() {
		p := newPortal(t, d.base)
		p.post("/.keygate/api/login", map[string]string{"username": demoUser, "password": demoPassword})
		p.post("/.keygate/api/recovery/send", nil)
		code := sixDigits.FindString(outboxMail(t, data, "code to recover your account"))
		if out := p.post("/.keygate/api/recovery/verify", map[string]string{"code": code}); out["status"] != "waiting" {
			t.Fatalf("request: %v", out)
		}
	}
	ask()
	p := newPortal(t, d.base)
	p.post("/.keygate/api/login", map[string]string{"username": demoUser, "password": demoPassword})
	if st := p.recoveryStatus(); st["status"] != "waiting" {
		t.Fatalf("before approval: %v", st)
	}
	out, errOut, rc := run(t, "", "user", "recovery", "list", "--config", cfg)
	if rc != 0 || !strings.Contains(out, demoUser) || !strings.Contains(out, "READY FROM") {
		t.Fatalf("list: rc=%d %q %q", rc, out, errOut)
	}

	// Approved: ready now, listed with who approved, and the person told.
	out, errOut, rc = run(t, "", "user", "recovery", "approve", demoUser, "--config", cfg)
	if rc != 0 || !strings.Contains(out, "recovery of "+demoUser+" approved") {
		t.Fatalf("approve: rc=%d %q %q", rc, out, errOut)
	}
	if st := p.recoveryStatus(); st["status"] != "ready" || st["approved"] != true {
		t.Fatalf("after approval: %v", st)
	}
	if text := outboxMail(t, data, "Security change"); !strings.Contains(text, "approved the account recovery") {
		t.Fatalf("approval notice: %q", text)
	}
	out, _, _ = run(t, "", "user", "recovery", "list", "--config", cfg)
	// USER, ASKED and READY FROM (three words each), APPROVED BY: the
	// admin the socket named, no longer "-".
	if line := strings.Split(strings.TrimSpace(out), "\n"); len(line) != 2 || len(strings.Fields(line[1])) < 8 ||
		strings.Fields(line[1])[0] != demoUser || strings.Fields(line[1])[7] == "-" {
		t.Fatalf("list after approval: %q", out)
	}

	// Cancelled: gone for the person and the list; the person told; a
	// second cancel is refused and changes nothing.
	out, errOut, rc = run(t, "", "user", "recovery", "cancel", demoUser, "--config", cfg)
	if rc != 0 || !strings.Contains(out, "recovery of "+demoUser+" cancelled") {
		t.Fatalf("cancel: rc=%d %q %q", rc, out, errOut)
	}
	if st := p.recoveryStatus(); st["status"] != "none" {
		t.Fatalf("after cancelling: %v", st)
	}
	if text := outboxMail(t, data, "Security change"); !strings.Contains(text, "the account recovery was cancelled") {
		t.Fatalf("cancellation notice: %q", text)
	}
	if _, errOut, rc := run(t, "", "user", "recovery", "cancel", demoUser, "--config", cfg); rc == 0 || !strings.Contains(errOut, "No account recovery is pending") {
		t.Fatalf("second cancel: rc=%d %q", rc, errOut)
	}
	if out, _, _ := run(t, "", "user", "recovery", "list", "--config", cfg); !strings.Contains(out, "no account recovery is pending") {
		t.Fatalf("list at the end: %q", out)
	}
	// The factor the person has is untouched by either decision.
	if out, _, rc := run(t, "", "user", "factors", demoUser, "--config", cfg); rc != 0 || !strings.Contains(out, "totp") {
		t.Fatalf("factors: rc=%d %q", rc, out)
	}
}
