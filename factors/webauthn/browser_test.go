package webauthn

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// Authenticators as the virtual authenticator models them.
var (
	securityKey = browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"}
	platformKey = browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "internal", ResidentKey: true, UserVerification: true, IsUserVerified: true}
	u2fKey      = browsertest.AuthenticatorOptions{Protocol: "u2f", Transport: "usb"}
)

// virtualAAGUID is what Chromium's virtual ctap2 authenticator reports.
const virtualAAGUID = "01020304-0506-0708-0102-030405060708"

// A roaming security key and a platform authenticator, each registered and
// used through the page (webauthn.js, the JSON endpoints, the factor), and
// passkey sign-in without a username.
func TestBrowserSecurityKeyAndPlatform(t *testing.T) {
	e := newEnv(t, nil)
	keyPage, platPage := e.page(t), e.page(t)
	keyPage.AddAuthenticator(t, securityKey)
	platAuth := platPage.AddAuthenticator(t, platformKey)

	sk := mustRun(t, keyPage, opRegister, "alice", SecurityKey, "").Credential
	pl := mustRun(t, platPage, opRegister, "alice", Platform, "").Credential
	if sk.Name != "Security key" || sk.Detail != "Security key" || pl.Name != "This device" || pl.Detail != "Platform authenticator" {
		t.Errorf("credentials %+v / %+v", sk, pl)
	}

	infos, err := e.f.Credentials(ctx, "alice")
	if err != nil || len(infos) != 2 {
		t.Fatal(infos, err)
	}
	for _, c := range infos {
		if c.AAGUID != virtualAAGUID || c.AttestationFormat != "packed" || c.AttestationType != "basic_full" || c.Attested {
			t.Errorf("%s: attestation %s %s %s attested=%v", c.Name, c.AAGUID, c.AttestationFormat, c.AttestationType, c.Attested)
		}
	}
	if s, p := infos[0], infos[1]; s.AuthenticatorKind != SecurityKey || s.UserVerified || s.ResidentKey == nil || *s.ResidentKey ||
		!slices.Equal(s.Transports, []string{"usb"}) ||
		p.AuthenticatorKind != Platform || !p.UserVerified || p.ResidentKey == nil || !*p.ResidentKey || !slices.Equal(p.Transports, []string{"internal"}) {
		t.Errorf("details: %+v\n%+v", s, p)
	}

	a := mustRun(t, keyPage, opLogin, "alice", "", "").Assertion
	if a.CredentialID != sk.ID || a.UserVerified || a.Attested || a.AAGUID != virtualAAGUID {
		t.Errorf("security key login %+v", a)
	}
	a = mustRun(t, platPage, opLogin, "alice", "", "").Assertion
	if a.CredentialID != pl.ID || !a.UserVerified {
		t.Errorf("platform login %+v", a)
	}
	pk := mustRun(t, platPage, opPasskey, "", "", "")
	if pk.Username != "alice" || pk.Assertion.CredentialID != pl.ID || !pk.Assertion.UserVerified {
		t.Errorf("passkey %+v", pk)
	}

	// The resident credential carries the random handle, not the username.
	r, _ := e.record(t, "alice")
	creds := platPage.Credentials(t, platAuth)
	if len(creds) != 1 || !creds[0].Resident || !bytes.Equal(creds[0].UserHandle, r.Handle) || len(r.Handle) != 32 ||
		bytes.Contains(r.Handle, []byte("alice")) || creds[0].RPID != "localhost" {
		t.Errorf("resident credential %+v, handle %x", creds, r.Handle)
	}

	infos, _ = e.f.Credentials(ctx, "alice")
	if infos[0].SignCount == 0 || infos[0].LastUsedAt.IsZero() || infos[1].SignCount < 2 {
		t.Errorf("counters not advanced: %d %d", infos[0].SignCount, infos[1].SignCount)
	}
}

// The browser refuses to enrol an authenticator the user already has
// (excludeCredentials), and webauthn.js says so with a stable code.
func TestBrowserExcludesSameAuthenticator(t *testing.T) {
	e := newEnv(t, nil)
	p := e.page(t)
	p.AddAuthenticator(t, securityKey)
	mustRun(t, p, opRegister, "alice", SecurityKey, "")
	o := run(t, p, opRegister, "alice", SecurityKey, "", false)
	if o.JSError != "already_registered" {
		t.Fatalf("second enrolment: %+v", o)
	}
	// The exclusion is per user: bob may enrol the same authenticator.
	mustRun(t, p, opRegister, "bob", SecurityKey, "")
	if list, _ := e.f.List(ctx, "alice"); len(list) != 1 {
		t.Errorf("alice has %d credentials", len(list))
	}
}

// Refused assertions leave the stored credential as it was.
func TestBrowserRefusals(t *testing.T) {
	e := newEnv(t, nil)
	p := e.page(t)
	p.AddAuthenticator(t, securityKey)
	mustRun(t, p, opRegister, "alice", SecurityKey, "")
	mustRun(t, p, opRegister, "bob", SecurityKey, "")

	// A captured response is accepted once.
	o := run(t, p, opLogin, "alice", "", "", true)
	if _, err := e.f.FinishLogin(ctx, "alice", o.Ceremony, o.Response); err != nil {
		t.Fatal(err)
	}
	_, before := e.record(t, "alice")

	t.Run("replay on the same ceremony", func(t *testing.T) {
		if _, err := e.f.FinishLogin(ctx, "alice", o.Ceremony, o.Response); !errors.Is(err, ErrCeremony) {
			t.Fatalf("replay: %v", err)
		}
		e.unchanged(t, "alice", before)
	})
	t.Run("replay on a new ceremony", func(t *testing.T) {
		_, id, _ := e.f.BeginLogin(ctx, "alice")
		_, err := e.f.FinishLogin(ctx, "alice", id, o.Response)
		verifyReason(t, err, ReasonBadChallenge)
		e.unchanged(t, "alice", before)
	})
	t.Run("ceremony reused after success", func(t *testing.T) {
		o := run(t, p, opLogin, "alice", "", "", false)
		if o.Finish == nil || !o.Finish.OK {
			t.Fatalf("login: %+v", o)
		}
		_, before := e.record(t, "alice")
		if _, err := e.f.FinishLogin(ctx, "alice", o.Ceremony, o.Response); !errors.Is(err, ErrCeremony) {
			t.Fatalf("reuse: %v", err)
		}
		e.unchanged(t, "alice", before)
	})
	_, before = e.record(t, "alice")

	// Another factor, configured for another origin or RP ID, verifying a
	// response made for this one (same store, so it can take the ceremony).
	for _, tc := range []struct {
		name, reason string
		mod          func(*Options)
	}{
		{"wrong origin", ReasonBadOrigin, func(o *Options) { o.Origins = []string{"http://localhost:1"} }},
		{"wrong origin scheme", ReasonBadOrigin, func(o *Options) { o.Origins = []string{"https" + e.origin[len("http"):]} }},
		{"wrong RP ID", ReasonBadRPID, func(o *Options) { o.RPID = "example.com" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := e.factor(t, tc.mod)
			opts, id, err := e.f.BeginLogin(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			_, err = other.FinishLogin(ctx, "alice", id, browserSign(t, p, opts))
			verifyReason(t, err, tc.reason)
			e.unchanged(t, "alice", before)
		})
	}
	t.Run("wrong RP ID at registration", func(t *testing.T) {
		other := e.factor(t, func(o *Options) { o.RPID = "example.com" })
		opts, id, err := e.f.BeginRegistration(ctx, User{Username: "alice"}, SecurityKey)
		if err != nil {
			t.Fatal(err)
		}
		p2 := e.page(t)
		p2.AddAuthenticator(t, securityKey)
		_, err = other.FinishRegistration(ctx, User{Username: "alice"}, id, browserCreate(t, p2, opts), "")
		verifyReason(t, err, ReasonBadRPID)
		e.unchanged(t, "alice", before)
	})

	t.Run("another user's credential", func(t *testing.T) {
		// Alice's challenge signed with bob's credential: the client
		// swapped the allowed list.
		opts, id, err := e.f.BeginLogin(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		bobOpts, _, err := e.f.BeginLogin(ctx, "bob")
		if err != nil {
			t.Fatal(err)
		}
		var a, b map[string]json.RawMessage
		_ = json.Unmarshal(opts, &a)
		_ = json.Unmarshal(bobOpts, &b)
		a["allowCredentials"] = b["allowCredentials"]
		swapped, _ := json.Marshal(a)
		_, bobBefore := e.record(t, "bob")
		_, err = e.f.FinishLogin(ctx, "alice", id, browserSign(t, p, swapped))
		verifyReason(t, err, ReasonUnknownCredential)
		e.unchanged(t, "alice", before)
		e.unchanged(t, "bob", bobBefore)
	})
	t.Run("removed credential", func(t *testing.T) {
		opts, id, err := e.f.BeginLogin(ctx, "bob")
		if err != nil {
			t.Fatal(err)
		}
		resp := browserSign(t, p, opts)
		list, _ := e.f.List(ctx, "bob")
		if err := e.f.Remove(ctx, "bob", list[0].ID); err != nil {
			t.Fatal(err)
		}
		_, err = e.f.FinishLogin(ctx, "bob", id, resp)
		verifyReason(t, err, ReasonUnknownCredential)
		e.unchanged(t, "alice", before)
	})
}

// A sign counter that does not advance is refused and recorded; the stored
// counter never moves backwards.
func TestBrowserCounterRegression(t *testing.T) {
	e := newEnv(t, nil)
	p := e.page(t)
	auth := p.AddAuthenticator(t, securityKey)
	mustRun(t, p, opRegister, "alice", SecurityKey, "")

	t.Run("stored counter ahead", func(t *testing.T) {
		r, _ := e.record(t, "alice")
		r.Creds[0].SignCount = 1000
		e.setRecord(t, "alice", r)
		_, err := signIn(t, e.f, p, "alice")
		if !errors.Is(err, ErrCloneWarning) {
			t.Fatalf("login with a lower counter: %v", err)
		}
		r, _ = e.record(t, "alice")
		if c := r.Creds[0]; c.SignCount != 1000 || c.CloneWarnings != 1 || c.CloneWarningAt.IsZero() || !c.LastUsedAt.IsZero() {
			t.Errorf("after clone warning: count %d warnings %d at %v used %v", c.SignCount, c.CloneWarnings, c.CloneWarningAt, c.LastUsedAt)
		}
		r.Creds[0].SignCount = 0
		e.setRecord(t, "alice", r)
	})

	t.Run("cloned authenticator", func(t *testing.T) {
		// Export the credential, sign in with the original twice, then
		// sign in with the copy, whose counter is behind.
		if _, err := signIn(t, e.f, p, "alice"); err != nil {
			t.Fatal(err)
		}
		creds := p.Credentials(t, auth)
		if len(creds) != 1 {
			t.Fatalf("authenticator holds %d credentials", len(creds))
		}
		for range 2 {
			if _, err := signIn(t, e.f, p, "alice"); err != nil {
				t.Fatal(err)
			}
		}
		r, _ := e.record(t, "alice")
		stored := r.Creds[0].SignCount

		clone := e.page(t)
		clone.AddCredential(t, clone.AddAuthenticator(t, securityKey), creds[0])
		_, err := signIn(t, e.f, clone, "alice")
		if !errors.Is(err, ErrCloneWarning) {
			t.Fatalf("clone: %v", err)
		}
		infos, _ := e.f.Credentials(ctx, "alice")
		if infos[0].SignCount != stored || infos[0].CloneWarnings != 2 {
			t.Errorf("counter %d (want %d), warnings %d", infos[0].SignCount, stored, infos[0].CloneWarnings)
		}
		// The original, ahead of the stored counter, still signs in.
		if _, err := signIn(t, e.f, p, "alice"); err != nil {
			t.Errorf("original after the clone: %v", err)
		}
	})
}

// UserVerified comes from this assertion, not from the credential record
// (which keeps the UV of the enrolment).
func TestBrowserUserVerificationFromAssertion(t *testing.T) {
	e := newEnv(t, nil)
	p := e.page(t)
	auth := p.AddAuthenticator(t, platformKey)
	mustRun(t, p, opRegister, "alice", Platform, "")
	_, before := e.record(t, "alice")

	// When its user verification fails, Chromium's virtual authenticator
	// fails the whole ceremony (UV "preferred" is asked of an authenticator
	// that can verify): webauthn.js reports "cancelled", nothing reaches
	// the server. Passkey sign-in likewise.
	p.SetUserVerified(t, auth, false)
	for _, op := range []ceremonyOp{opLogin, opPasskey} {
		if o := run(t, p, op, "alice", "", "", false); o.JSError != "cancelled" {
			t.Errorf("%s with failing UV: %+v", op, o)
		}
	}
	e.unchanged(t, "alice", before)
	p.SetUserVerified(t, auth, true)
	if a := mustRun(t, p, opLogin, "alice", "", "").Assertion; !a.UserVerified {
		t.Fatal("UV login reported not verified")
	}

	// The same credential on an authenticator that cannot verify (exported
	// and imported): its assertion is not user-verified, while the record
	// keeps the UV flag of the enrolment.
	creds := p.Credentials(t, auth)
	noUV := e.page(t)
	noUV.AddCredential(t, noUV.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "internal", ResidentKey: true}), creds[0])
	if a := mustRun(t, noUV, opLogin, "alice", "", "").Assertion; a.UserVerified {
		t.Error("assertion without UV reported UserVerified")
	}
	if infos, _ := e.f.Credentials(ctx, "alice"); !infos[0].UserVerified {
		t.Error("stored UV flag lost")
	}
	// Passkey sign-in requires UV: refused by the browser or by us.
	o := run(t, noUV, opPasskey, "", "", "", false)
	if o.JSError == "" && (o.Finish == nil || o.Finish.OK || o.Finish.Error != ReasonUVRequired) {
		t.Errorf("passkey without UV: %+v", o)
	}
}

// webauthn.js without PublicKeyCredential.parse*FromJSON and toJSON (older
// browsers) falls back to its own base64url conversion, and the server
// cannot tell.
func TestBrowserJSFallback(t *testing.T) {
	e := newEnv(t, nil)
	p := e.page(t)
	p.AddAuthenticator(t, platformKey)
	p.Eval(t, `() => {
		delete PublicKeyCredential.parseCreationOptionsFromJSON;
		delete PublicKeyCredential.parseRequestOptionsFromJSON;
		delete PublicKeyCredential.prototype.toJSON;
		return typeof PublicKeyCredential.parseRequestOptionsFromJSON + typeof PublicKeyCredential.prototype.toJSON;
	}`)
	var gone string
	p.EvalInto(t, &gone, `() => typeof PublicKeyCredential.parseCreationOptionsFromJSON + typeof PublicKeyCredential.prototype.toJSON`)
	if gone != "undefinedundefined" {
		t.Fatalf("JSON helpers still there: %s", gone)
	}
	c := mustRun(t, p, opRegister, "alice", Platform, "").Credential
	if a := mustRun(t, p, opLogin, "alice", "", "").Assertion; a.CredentialID != c.ID || !a.UserVerified {
		t.Errorf("login %+v", a)
	}
	if pk := mustRun(t, p, opPasskey, "", "", ""); pk.Username != "alice" {
		t.Errorf("passkey %+v", pk)
	}
	if infos, _ := e.f.Credentials(ctx, "alice"); infos[0].ResidentKey == nil || !*infos[0].ResidentKey {
		t.Errorf("credProps lost in the fallback: %+v", infos[0])
	}
}

// webauthn.js reports failures with stable codes.
func TestBrowserJSErrorCodes(t *testing.T) {
	e := newEnv(t, nil)
	opts, _, err := e.f.BeginRegistration(ctx, User{Username: "alice"}, SecurityKey)
	if err != nil {
		t.Fatal(err)
	}
	var o map[string]any
	_ = json.Unmarshal(opts, &o)
	with := func(key string, v any) map[string]any {
		c := map[string]any{}
		for k, v := range o {
			c[k] = v
		}
		c[key] = v
		return c
	}
	p := e.page(t) // no authenticator: nothing answers
	for _, tc := range []struct {
		name, code, setup string
		options           any
	}{
		{"no challenge", "unknown", "", with("challenge", nil)},
		{"RP ID of another site", "security", "", with("rp", map[string]any{"id": "example.com", "name": "x"})},
		{"nobody answers in time", "timeout", "", with("timeout", 500)},
		{"no WebAuthn", "not_supported", "delete window.PublicKeyCredential", o},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got struct{ Code, Name string }
			js := `async (options) => {
				` + tc.setup + `;
				try { await window.kg.raw.register(options); return { code: "none" }; }
				catch (e) { return { code: e.code, name: e.name }; }
			}`
			p.EvalInto(t, &got, js, tc.options)
			if got.Code != tc.code || got.Name != "WebAuthnError" {
				t.Errorf("code %q (%s), want %q", got.Code, got.Name, tc.code)
			}
		})
	}
}
