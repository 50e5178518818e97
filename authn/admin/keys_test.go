package admin

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/policies"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/factors"
	fwa "github.com/keygate/keygate/factors/webauthn"
	"github.com/keygate/keygate/factors/webauthn/browsertest"
	"github.com/keygate/keygate/factors/webauthn/webauthntest"
	"github.com/keygate/keygate/policy"
)

// The key use-cases against real parts: Badger, the real WebAuthn factor
// registered in authn.MFA, credentials made by Chromium's virtual
// authenticators, and metadata blobs signed by a test MDS root over the
// virtual authenticator's attestation key.

const keyModel = "Chromium virtual authenticator (keygate test)"

type keysEnv struct {
	svc    *Service
	f      *fwa.Factor
	audit  *activity.Audit
	v1, v2 factors.AttestationAnchors // the model certified; then its attestation key compromised
	forged factors.AttestationAnchors // v1's blob, signed by another key
	alice  factors.Credential         // a security key, attested at enrolment
	bob    factors.Credential         // a U2F key: never attested
}

func newKeysEnv(t *testing.T) *keysEnv {
	t.Helper()
	ctx := context.Background()
	b := browsertest.Start(t)
	origin := webauthntest.Serve(t)
	kv, err := badgerstore.Open(badgerstore.Options{Path: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Close() })
	newFactor := func(trust fwa.TrustOptions) *fwa.Factor {
		f, err := fwa.New(kv, fwa.Options{RPID: "localhost", Origins: []string{origin}, Trust: trust, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	keyPage, u2fPage := b.NewPage(t, origin+"/"), b.NewPage(t, origin+"/")
	keyPage.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"})
	u2fPage.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "u2f", Transport: "usb"})
	// One creation, never finished, shows the virtual authenticator's
	// attestation certificate, whose fixed key the test CA certifies.
	opts, _, err := newFactor(fwa.TrustOptions{}).BeginRegistration(ctx, fwa.User{Username: "probe"}, fwa.SecurityKey)
	if err != nil {
		t.Fatal(err)
	}
	anchors := webauthntest.NewAnchors(t, webauthntest.ResponseAttestationCert(t, webauthntest.Create(t, keyPage, opts)))
	read := func(file string) []byte {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	root := read(anchors.MDSRootFile)
	v1File := anchors.VirtualBlob(t, keyModel, []string{"FIDO_CERTIFIED"})
	e := &keysEnv{
		v1: factors.AttestationAnchors{MDSBlob: read(v1File), MDSRoot: root},
		v2: factors.AttestationAnchors{MDSBlob: read(anchors.VirtualBlob(t, keyModel, []string{"FIDO_CERTIFIED", "ATTESTATION_KEY_COMPROMISE"})), MDSRoot: root},
	}
	otherKey, _ := webauthntest.NewCA(t, "not the MDS root")
	e.forged = factors.AttestationAnchors{MDSRoot: root, MDSBlob: read(webauthntest.WriteBlob(t, otherKey,
		webauthntest.MDSEntry(webauthntest.VirtualAAGUID, keyModel, []string{"FIDO_CERTIFIED"}, []string{"basic_full"}, anchors.VirtualRoot)))}

	e.f = newFactor(fwa.TrustOptions{MDSBlobFile: v1File, MDSRootFile: anchors.MDSRootFile})
	enrol := func(p *browsertest.Page, user, name string) factors.Credential {
		t.Helper()
		opts, id, err := e.f.BeginRegistration(ctx, fwa.User{Username: user}, fwa.SecurityKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := e.f.FinishRegistration(ctx, fwa.User{Username: user}, id, webauthntest.Create(t, p, opts), name)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	e.alice = enrol(keyPage, "alice", "YubiKey 5")
	e.bob = enrol(u2fPage, "bob", "Old U2F key")

	c := &testClock{t: time.Now()}
	holder := &policy.Holder{}
	sessions, err := authn.NewSessions(ctx, kv, authn.SessionOptions{IdleTimeout: time.Hour, Lifetime: 12 * time.Hour, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	reg := authn.NewRegulator(kv, authn.RegulationOptions{Now: c.Now, Logger: quiet()})
	users := authn.NewUsers(kv, authn.UserOptions{Hasher: authn.NewHasher(authn.Argon2Params{MemoryKiB: 8 * 1024, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, 2),
		Policy: authn.PasswordPolicy{MinLength: 12}, Now: c.Now, Regulator: reg})
	mfa := authn.NewMFA(users, sessions, authn.MFAOptions{Links: authn.NewEnrollLinks(kv, c.Now), Devices: authn.NewDevices(kv, c.Now),
		Regulator: reg, Now: c.Now, Factors: factors.Set{e.f}})
	pols := policies.New(kv, holder, policies.Options{Now: c.Now, Logger: quiet()})
	p, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pols.Load(ctx, p, "config"); err != nil {
		t.Fatal(err)
	}
	e.audit = activity.NewAudit(kv, c.Now, quiet())
	if e.svc, err = New(Deps{Users: users, Sessions: sessions, Factors: mfa, Locks: reg, Policies: pols, Audit: e.audit,
		Running: holder, Now: c.Now, Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	return e
}

// suspension is alice's or bob's key's state in the factor's own store.
func (e *keysEnv) suspension(t *testing.T, user, id string) factors.Suspension {
	t.Helper()
	s, err := e.f.Suspension(context.Background(), user, id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *keysEnv) auditActions(t *testing.T) []string {
	t.Helper()
	es, err := e.audit.Recent(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range es {
		out = append(out, x.Action+" "+x.Target+" by "+x.Admin+"/"+x.Via)
	}
	return out
}

func keyOf(t *testing.T, kc KeyCheck, user string) CheckedKey {
	t.Helper()
	for _, k := range kc.Keys {
		if k.User == user {
			return k
		}
	}
	t.Fatalf("no key of %s in %+v", user, kc)
	return CheckedKey{}
}

func TestVerifyAndSuspendKeys(t *testing.T) {
	ctx := context.Background()
	e := newKeysEnv(t)

	// The blob of enrolment: nothing compromised, nothing suspended.
	kc, err := e.svc.VerifyKeys(ctx, root, "", e.v1, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(kc.Keys) != 2 || kc.OK != 1 || kc.NotAttested != 1 || kc.Compromised != 0 || kc.SuspendedNow != 0 {
		t.Fatalf("v1: %+v", kc)
	}
	if k := keyOf(t, kc, "alice"); k.Kind != "webauthn" || k.CredentialID != e.alice.ID || k.Name != "YubiKey 5" || k.Model != keyModel ||
		!k.WasAttested || !k.Attested || k.Verdict != factors.VerdictOK {
		t.Errorf("alice with v1: %+v", k)
	}
	if k := keyOf(t, kc, "bob"); k.Verdict != factors.VerdictNotAttested || k.Attested {
		t.Errorf("bob with v1: %+v", k)
	}

	// Refused, with nothing checked, suspended or audited: no actor, no
	// anchors, a blob that does not verify, a root that is not PEM.
	before := e.auditActions(t)
	for name, tc := range map[string]struct {
		a       Actor
		anchors factors.AttestationAnchors
		want    func(error) bool
	}{
		"no actor":   {Actor{}, e.v2, func(err error) bool { return errors.Is(err, ErrNoActor) }},
		"no anchors": {root, factors.AttestationAnchors{}, isInput("anchors", "nothing to verify against")},
		"forged":     {root, e.forged, isInput("anchors", "does not verify")},
		"bad root":   {root, factors.AttestationAnchors{MDSBlob: e.v2.MDSBlob, MDSRoot: []byte("garbage")}, isInput("anchors", "no PEM certificate")},
	} {
		if kc, err := e.svc.VerifyKeys(ctx, tc.a, "", tc.anchors, true); !tc.want(err) || kc.Keys != nil {
			t.Errorf("%s: %+v %v", name, kc, err)
		}
	}
	if s := e.suspension(t, "alice", e.alice.ID); s.Suspended {
		t.Fatalf("a refused verify suspended alice's key: %+v", s)
	}
	if after := e.auditActions(t); len(after) != len(before) {
		t.Errorf("refused verifies were audited: %q", after[:len(after)-len(before)])
	}

	// The newer blob: alice's model is compromised; without suspend it is
	// reported only.
	kc, err = e.svc.VerifyKeys(ctx, root, "", e.v2, false)
	if err != nil {
		t.Fatal(err)
	}
	if k := keyOf(t, kc, "alice"); k.Verdict != factors.VerdictCompromised || k.Attested || k.SuspendedNow || k.Suspended ||
		strings.Join(k.Compromises, ",") != "ATTESTATION_KEY_COMPROMISE" || kc.Compromised != 1 {
		t.Errorf("alice with v2: %+v", kc)
	}
	if s := e.suspension(t, "alice", e.alice.ID); s.Suspended {
		t.Fatal("verify without suspend suspended")
	}
	// One user only.
	if kc, err := e.svc.VerifyKeys(ctx, root, "bob", e.v2, true); err != nil || len(kc.Keys) != 1 || kc.Compromised != 0 || kc.SuspendedNow != 0 {
		t.Errorf("bob only: %+v %v", kc, err)
	}

	// With suspend: suspended with the compromise as its reason, and
	// audited as who did it; a second run finds it suspended already.
	kc, err = e.svc.VerifyKeys(ctx, root, "", e.v2, true)
	if err != nil {
		t.Fatal(err)
	}
	if k := keyOf(t, kc, "alice"); !k.SuspendedNow || k.Suspended || kc.SuspendedNow != 1 {
		t.Errorf("suspend: %+v", kc)
	}
	if s := e.suspension(t, "alice", e.alice.ID); !s.Suspended || s.Reason != "ATTESTATION_KEY_COMPROMISE" {
		t.Errorf("alice's key after verify --suspend: %+v", s)
	}
	if s := e.suspension(t, "bob", e.bob.ID); s.Suspended {
		t.Error("bob's (not compromised) key suspended")
	}
	if got := e.auditActions(t); len(got) < 2 || got[0] != "keys.verify * by root/cli" || got[1] != "user.suspend_key alice by root/cli" {
		t.Errorf("audit after verify --suspend: %q", got)
	}
	kc, err = e.svc.VerifyKeys(ctx, root, "", e.v2, true)
	if err != nil {
		t.Fatal(err)
	}
	if k := keyOf(t, kc, "alice"); k.SuspendedNow || !k.Suspended || k.SuspendedReason != "ATTESTATION_KEY_COMPROMISE" || kc.SuspendedNow != 0 {
		t.Errorf("again: %+v", kc)
	}
	if _, _, err := e.f.BeginLogin(ctx, "alice"); !errors.Is(err, fwa.ErrAllSuspended) {
		t.Errorf("alice can still begin a sign-in: %v", err)
	}

	// Unsuspend by name, any case; again changes nothing.
	st, err := e.svc.UnsuspendKey(ctx, alice, "alice", "yubikey 5")
	if err != nil || !st.Changed || st.Suspended || st.ID != e.alice.ID || st.Name != "YubiKey 5" || st.Kind != "webauthn" {
		t.Fatalf("unsuspend: %+v %v", st, err)
	}
	if s := e.suspension(t, "alice", e.alice.ID); s.Suspended {
		t.Fatal("still suspended")
	}
	if st, err := e.svc.UnsuspendKey(ctx, alice, "alice", e.alice.ID); err != nil || st.Changed {
		t.Errorf("unsuspend again: %+v %v", st, err)
	}
	if got := e.auditActions(t); got[0] != "user.unsuspend_key alice by alice/web" {
		t.Errorf("audit after unsuspend: %q", got)
	}

	// Suspend by ID with a reason; again keeps the first reason.
	st, err = e.svc.SuspendKey(ctx, root, "alice", e.alice.ID, "  reported lost ")
	if err != nil || !st.Changed || !st.Suspended || st.Reason != "reported lost" {
		t.Fatalf("suspend: %+v %v", st, err)
	}
	st, err = e.svc.SuspendKey(ctx, root, "alice", "YUBIKEY 5", "another reason")
	if err != nil || st.Changed || !st.Suspended || st.Reason != "reported lost" {
		t.Errorf("suspend again: %+v %v", st, err)
	}

	// Refused with nothing changed or audited: no actor, an unknown name,
	// another user's key, a reason that is not printable text, no user.
	before = e.auditActions(t)
	for name, err := range map[string]error{
		"no actor":          second(e.svc.UnsuspendKey(ctx, Actor{Name: "x"}, "alice", e.alice.ID)),
		"unknown name":      second(e.svc.UnsuspendKey(ctx, root, "alice", "Titan")),
		"bob's key":         second(e.svc.UnsuspendKey(ctx, root, "alice", e.bob.ID)),
		"unknown user":      second(e.svc.SuspendKey(ctx, root, "nobody", e.alice.ID, "")),
		"control character": second(e.svc.SuspendKey(ctx, root, "bob", e.bob.ID, "bad\x00reason")),
		"too long":          second(e.svc.SuspendKey(ctx, root, "bob", e.bob.ID, strings.Repeat("x", MaxSuspendReason+1))),
		"no user":           second(e.svc.SuspendKey(ctx, root, "", e.bob.ID, "")),
	} {
		var ie *InputError
		if !errors.Is(err, ErrNoSuchKey) && !errors.As(err, &ie) && !errors.Is(err, ErrNoActor) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if s := e.suspension(t, "alice", e.alice.ID); !s.Suspended || s.Reason != "reported lost" {
		t.Errorf("alice's key after refusals: %+v", s)
	}
	if s := e.suspension(t, "bob", e.bob.ID); s.Suspended {
		t.Errorf("bob's key after refusals: %+v", s)
	}
	if after := e.auditActions(t); len(after) != len(before) {
		t.Errorf("refusals were audited: %q", after[:len(after)-len(before)])
	}
}

// Without a factor that can re-check or suspend, the key use-cases say the
// factor is unavailable.
func TestKeysWithoutWebAuthn(t *testing.T) {
	e := newEnv(t) // authn.MFA with no factor registered
	ctx := context.Background()
	anchors := factors.AttestationAnchors{MDSBlob: []byte("x")}
	if _, err := e.svc.VerifyKeys(ctx, root, "", anchors, false); !errors.Is(err, authn.ErrFactorUnavailable) {
		t.Errorf("verify: %v", err)
	}
	if _, err := e.svc.SuspendKey(ctx, root, "alice", "x", ""); !errors.Is(err, authn.ErrFactorUnavailable) {
		t.Errorf("suspend: %v", err)
	}
	if _, err := e.svc.UnsuspendKey(ctx, root, "alice", "x"); !errors.Is(err, authn.ErrFactorUnavailable) {
		t.Errorf("unsuspend: %v", err)
	}
}

func isInput(field, contains string) func(error) bool {
	return func(err error) bool {
		var ie *InputError
		return errors.As(err, &ie) && ie.Field == field && strings.Contains(ie.Message, contains)
	}
}

func second[T any](_ T, err error) error { return err }
