package web

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// (2) A rule that accepts only a security key, in Chromium with virtual
// authenticators: with the password and the mailbox, or with a recovery
// code, the attacker's own authenticator cannot be registered, no app can
// be added, and the owner's key can be neither removed nor renamed. The
// owner, fresh from their key, adds a new key and removes the old one
// through the security page, and hears of both.

const keyOnlyPolicy = `
default: one_factor
rules:
  - name: key-only
    hosts: [localhost]
    paths: ["/key-only/**"]
    action: two_factor
    factors: [webauthn]
`

// attempt is what the page's fetch calls got back.
type attempt struct {
	Status int      `json:"status"`
	Error  string   `json:"error"`
	Need   []string `json:"need"`
}

// changeAttempts tries, from the page's own JS, to register the page's
// authenticator (the whole ceremony when begin answers), add an app, make
// recovery codes, rename and remove the key keyID.
const changeAttempts = `async (keyID) => {
  const call = async (method, path, body) => {
    const r = await fetch(path, {method, credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json"},
      body: body === undefined ? undefined : JSON.stringify(body)});
    let d = {};
    try { d = await r.json(); } catch {}
    return {status: r.status, error: d.error || "", need: d.need || null, data: d};
  };
  const out = {};
  for (const kind of ["security_key", "platform"]) {
    const begin = await call("POST", "/.keygate/api/factors/webauthn/enroll/begin", {kind});
    out["register " + kind] = begin;
    if (begin.status === 200) {
      try {
        const cred = await navigator.credentials.create({publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(begin.data.publicKey)});
        out["register " + kind] = await call("POST", "/.keygate/api/factors/webauthn/enroll/finish",
          {ceremony: begin.data.ceremony, credential: cred.toJSON(), name: "attacker " + kind});
      } catch (e) { out["register " + kind] = {status: 0, error: String(e), need: null}; }
    }
  }
  out["add app"] = await call("POST", "/.keygate/api/factors/totp/enroll/begin");
  out["recovery codes"] = await call("POST", "/.keygate/api/factors/recovery/generate");
  out["rename key"] = await call("PATCH", "/.keygate/api/factors/" + encodeURIComponent(keyID), {name: "mine now"});
  out["remove key"] = await call("DELETE", "/.keygate/api/factors/" + encodeURIComponent(keyID));
  for (const k in out) delete out[k].data;
  return out;
}`

func TestBrowserDowngradeKeyOnlyRule(t *testing.T) {
	b := browser.Get(t)
	h := newHarness(t, harnessOptions{policyYAML: keyOnlyPolicy})
	ctx := context.Background()
	const addr = "alice@example.com"

	// The owner's security key, and a sheet of recovery codes made while
	// the enrolment link is fresh.
	p := b.NewPage(t, h.origin+"/public")
	ownerKey := p.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"})
	h.enrolInBrowser(t, p, testUser, testPassword, "security_key")
	var gen struct {
		Codes []string `json:"codes"`
	}
	p.EvalInto(t, &gen, `async () => (await fetch("/.keygate/api/factors/recovery/generate", {method: "POST", credentials: "same-origin",
		headers: {"Content-Type": "application/json", "Accept": "application/json"}, body: "{}"})).json()`)
	if len(gen.Codes) != 10 {
		t.Fatalf("recovery codes: %v", gen.Codes)
	}
	key := h.credOf(testUser, "webauthn")

	// The attacker's browser, with an authenticator of its own.
	pa := b.NewPage(t, h.origin+"/public")
	pa.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"})
	pa.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "internal", ResidentKey: true,
		UserVerification: true, IsUserVerified: true})
	signInPassword := func() {
		t.Helper()
		clearCookies(t, pa)
		pa.Navigate(t, h.origin+"/.keygate/login")
		browserSignIn(t, pa, testUser, testPassword)
		waitExact(t, pa, "/.keygate/")
	}
	postJSON := func(path string, body any) attempt {
		t.Helper()
		var a attempt
		pa.EvalInto(t, &a, `async (path, body) => {
			const r = await fetch(path, {method: "POST", credentials: "same-origin",
				headers: {"Content-Type": "application/json", "Accept": "application/json"}, body: JSON.stringify(body)});
			const d = await r.json();
			return {status: r.status, error: d.error || "", need: d.need || null};
		}`, path, body)
		return a
	}
	proofs := map[string]func(){
		"password and mailbox": func() {
			signInPassword()
			h.clock.Add(2 * time.Minute) // past the resend cooldown
			if a := postJSON("/.keygate/api/factors/email/send", map[string]any{}); a.Status != 200 {
				t.Fatalf("send code: %+v", a)
			}
			if a := postJSON("/.keygate/api/factors/email/verify", map[string]any{"code": h.latestCode(addr)}); a.Status != 200 {
				t.Fatalf("email code: %+v", a)
			}
		},
		"password and recovery code": func() {
			signInPassword()
			if a := postJSON("/.keygate/api/factors/recovery/verify", map[string]any{"code": gen.Codes[0]}); a.Status != 200 {
				t.Fatalf("recovery code: %+v", a)
			}
		},
	}
	for _, name := range []string{"password and mailbox", "password and recovery code"} {
		proofs[name]()
		before := h.snapshot(testUser)
		var got map[string]attempt
		pa.EvalInto(t, &got, changeAttempts, key.ID)
		if len(got) != 6 {
			t.Fatalf("%s: attempts %+v", name, got)
		}
		for what, a := range got {
			if a.Status != 403 || a.Error != "stronger_proof_required" || !slices.Equal(a.Need, []string{"webauthn"}) {
				t.Errorf("%s: %s: %+v, want 403 stronger_proof_required need [webauthn]", name, what, a)
			}
		}
		if after := h.snapshot(testUser); after != before {
			t.Errorf("%s: factors changed:\n%s\n%s", name, before, after)
		}
		// The security page offers no way to add, and says what to use.
		pa.Navigate(t, h.origin+"/.keygate/settings")
		var state struct {
			AddButtons int    `json:"add"`
			Remove     int    `json:"remove"`
			Text       string `json:"text"`
			Link       string `json:"link"`
		}
		pa.EvalInto(t, &state, `(keyID) => ({add: document.querySelectorAll("button[data-kind]").length,
			remove: document.querySelectorAll("form[action='/.keygate/settings/factors/" + keyID + "/remove']").length,
			text: (document.getElementById("stronger-proof") || {}).textContent || "",
			link: (document.querySelector("a[href*='need=']") || {}).href || ""})`, key.ID)
		if state.AddButtons != 0 || state.Remove != 0 || !strings.Contains(state.Text, "security key") || !strings.Contains(state.Link, "need=webauthn") {
			t.Errorf("%s: security page %+v", name, state)
		}
		// And the key-only rule is not satisfied.
		pa.Navigate(t, h.origin+"/key-only/x")
		waitExact(t, pa, "/.keygate/second-factor")
	}

	// The owner, fresh from the key, swaps it for a new one on the page.
	clearCookies(t, p)
	p.Navigate(t, h.origin+"/.keygate/login")
	browserSignIn(t, p, testUser, testPassword)
	waitExact(t, p, "/.keygate/")
	p.Navigate(t, h.origin+"/.keygate/second-factor?need=webauthn&rd="+url.QueryEscape("/.keygate/settings"))
	if body := p.Text(t, "body"); strings.Contains(body, "Code by email") {
		t.Error("the chooser asked for a security key offers email codes")
	}
	p.Navigate(t, h.origin+"/.keygate/second-factor/webauthn?rd="+url.QueryEscape("/.keygate/settings"))
	p.Click(t, "#webauthn-start")
	waitExact(t, p, "/.keygate/settings")
	notices := h.noticeMails(addr)
	p.RemoveAuthenticator(t, ownerKey)
	p.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"})
	p.Fill(t, "#key-name", "New key")
	p.Click(t, "button[data-kind=security_key]")
	p.WaitURL(t, func(u string) bool { return strings.Contains(u, "done=key_added") })
	// Removing the key this session was proved with ends the session.
	p.Click(t, "form[action='/.keygate/settings/factors/"+key.ID+"/remove'] button")
	waitExact(t, p, "/.keygate/signed-out")
	creds, _ := h.mfa.Credentials(ctx, testUser)
	if slices.ContainsFunc(creds, func(c factors.Credential) bool { return c.ID == key.ID }) ||
		!slices.ContainsFunc(creds, func(c factors.Credential) bool { return c.Name == "New key" }) {
		t.Fatalf("after the swap: %+v", creds)
	}
	if got := h.noticeMails(addr); got != notices+2 {
		t.Errorf("notices for the swap: %d, want 2", got-notices)
	}
	// The new key signs in and satisfies the key-only rule.
	p.Navigate(t, h.origin+"/key-only/x")
	waitPath(t, p, "/.keygate/login")
	browserSignIn(t, p, testUser, testPassword)
	waitExact(t, p, "/.keygate/second-factor")
	p.Navigate(t, h.origin+"/.keygate/second-factor/webauthn?rd="+url.QueryEscape(h.origin+"/key-only/x"))
	p.Click(t, "#webauthn-start")
	waitExact(t, p, "/key-only/x")
}
