package web

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/factors"
)

// Red team (issue 11, part 3): with the password and the mailbox, try to
// change second factors through the seams between steps — an enrolment
// begun while the account was weak and finished after it got stronger,
// many finishes at once, an admin's link used to remove — over the JSON
// API and the portal's forms.

// TestRedteamEnrolmentBegunWeakFinishedStrong: the attacker (password +
// mailbox) begins adding an app while the account holds only recovery
// codes, which a code by email equals. The owner then adds an app. The
// attacker's enrolment must not finish now: adding needs a proof of the
// account's strongest factor at the time the factor is added.
func TestRedteamEnrolmentBegunWeakFinishedStrong(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: appOnlyPolicy})
	owner := h.client()
	h.login(owner, testUser, testPassword, "")
	h.redeemLink(owner, testUser)
	if resp, _ := h.postJSON(owner, "/.keygate/api/factors/recovery/generate", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("recovery codes: %d", resp.StatusCode)
	}

	attacker := h.client()
	h.emailProof(attacker, testUser, testPassword)
	// Two enrolments begun at once, over the API and the form.
	resp, out := h.postJSON(attacker, "/.keygate/api/factors/totp/enroll/begin", nil)
	id, _ := out["id"].(string)
	secret, _ := out["secret"].(string)
	if resp.StatusCode != http.StatusOK || id == "" || secret == "" {
		t.Fatalf("begin while the account holds only recovery codes: %d %v (an email proof equals them: allowed)", resp.StatusCode, out)
	}
	fresp, fbody := h.postForm(attacker, "/.keygate/settings/totp")
	sm, im := secretRe.FindStringSubmatch(fbody), enrollRe.FindStringSubmatch(fbody)
	if fresp.StatusCode != http.StatusOK || sm == nil || im == nil {
		t.Fatalf("form begin: %d", fresp.StatusCode)
	}

	// The owner adds an app with the link's grant: the account's
	// strongest factor is now the app.
	h.addTOTP(owner, "Owner's phone")
	before := h.snapshot(testUser)

	h.clock.Add(30 * time.Second)
	resp, out = h.postJSON(attacker, "/.keygate/api/factors/totp/enroll/finish", map[string]any{"id": id, "code": oathtool(t, secret, h.clock.Now()), "name": "Attacker API"})
	if resp.StatusCode == http.StatusOK {
		t.Errorf("LEAK: an enrolment begun with an email proof while the account held only codes finished after the owner added an app: %v", out)
	} else if resp.StatusCode != http.StatusForbidden || out["error"] != "stronger_proof_required" {
		t.Errorf("API finish: %d %v, want 403 stronger_proof_required", resp.StatusCode, out)
	}
	fresp, _ = h.postForm(attacker, "/.keygate/settings/totp/confirm", "id", im[1], "code", oathtool(t, sm[1], h.clock.Now()), "name", "Attacker form")
	if fresp.StatusCode == http.StatusSeeOther && strings.Contains(fresp.Header.Get("Location"), "done=totp_added") {
		t.Errorf("LEAK: the form's enrolment finished after the owner added an app")
	}
	if after := h.snapshot(testUser); after != before {
		t.Errorf("factors changed:\n%s\n%s", before, after)
	}
	if r, _ := h.do(attacker, http.MethodGet, "http://app.example.com/app-only/x", ""); r.StatusCode == http.StatusOK {
		t.Errorf("LEAK: the attacker's session satisfies the app-only rule")
	}
}

// TestRedteamFactorChangesRace: the attacker fires every change at once,
// many times, with a session proved by a code by email, against an account
// with an app and recovery codes. Nothing may change but what an email
// proof may change (the recovery set, which is as weak as the mailbox).
func TestRedteamFactorChangesRace(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: appOnlyPolicy})
	owner := h.client()
	h.login(owner, testUser, testPassword, "")
	h.redeemLink(owner, testUser)
	h.enrolTOTP(owner)
	if resp, _ := h.postJSON(owner, "/.keygate/api/factors/recovery/generate", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("recovery codes: %d", resp.StatusCode)
	}
	app := h.credOf(testUser, "totp")

	attacker := h.client()
	h.emailProof(attacker, testUser, testPassword)
	type try struct{ method, path, body string }
	tries := []try{
		{http.MethodPost, "/.keygate/api/factors/totp/enroll/begin", ""},
		{http.MethodPost, "/.keygate/api/factors/webauthn/enroll/begin", `{"kind":"security_key"}`},
		{http.MethodPost, "/.keygate/api/factors/webauthn/passkey/begin", `{}`},
		{http.MethodPost, "/.keygate/api/factors/recovery/generate", ""},
		{http.MethodDelete, "/.keygate/api/factors/" + app.ID, ""},
		{http.MethodPatch, "/.keygate/api/factors/" + app.ID, `{"name":"x"}`},
		{http.MethodPost, "/.keygate/settings/factors/" + app.ID + "/remove", ""},
		{http.MethodPost, "/.keygate/settings/factors/" + app.ID + "/rename", "name=x"},
		{http.MethodPost, "/.keygate/settings/recovery", ""},
		{http.MethodPost, "/.keygate/settings/totp", ""},
		{http.MethodPost, "/.keygate/settings/enroll-code/verify", "code=000000"},
	}
	var mu sync.Mutex
	ok := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		for _, tr := range tries {
			wg.Go(func() {
				ct := "application/json"
				if strings.HasPrefix(tr.path, "/.keygate/settings/") {
					ct = "application/x-www-form-urlencoded"
				}
				resp, _ := h.do(attacker, tr.method, "http://app.example.com"+tr.path, tr.body,
					setHeader("Content-Type", ct), setHeader("Accept", "application/json"))
				if resp.StatusCode < 300 || resp.StatusCode == http.StatusSeeOther {
					mu.Lock()
					ok[tr.method+" "+tr.path]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for k, n := range ok {
		// Beginning a passkey sign-in is no change.
		if strings.HasSuffix(k, "/passkey/begin") {
			continue
		}
		t.Errorf("LEAK: %s succeeded %d times with an email proof on an account with an app", k, n)
	}
	creds, _ := h.mfa.Credentials(context.Background(), testUser)
	if i := slices.IndexFunc(creds, func(c factors.Credential) bool { return c.ID == app.ID }); i < 0 || creds[i].Name != app.Name {
		t.Errorf("the owner's app was removed or renamed: %v", creds)
	}
	if n := slices.IndexFunc(creds, func(c factors.Credential) bool { return c.Kind == "totp" && c.ID != app.ID }); n >= 0 {
		t.Errorf("LEAK: an app was added: %v", creds[n])
	}
	if r, _ := h.do(attacker, http.MethodGet, "http://app.example.com/app-only/x", ""); r.StatusCode == http.StatusOK {
		t.Errorf("LEAK: the attacker's session satisfies the app-only rule")
	}
	t.Logf("%d changes fired (%d kinds × 4 at once) with password + mailbox; accepted: %v", 4*len(tries), len(tries), ok)
}
