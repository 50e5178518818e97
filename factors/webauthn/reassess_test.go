package webauthn

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/webauthn/browsertest"
	"github.com/keygate/keygate/factors/webauthn/webauthntest"
)

const testModel = "Chromium virtual authenticator (keygate test)"

func byUser(t *testing.T, as []Assessment) map[string]Assessment {
	t.Helper()
	m := map[string]Assessment{}
	for _, a := range as {
		if _, dup := m[a.User]; dup {
			t.Fatalf("two assessments for %s: %+v", a.User, as)
		}
		m[a.User] = a
	}
	return m
}

func TestBrowserReassessAndSuspend(t *testing.T) {
	e := newEnv(t, nil)
	keyPage, u2fPage, platPage := e.page(t), e.page(t), e.page(t)
	keyPage.AddAuthenticator(t, securityKey)
	u2fPage.AddAuthenticator(t, u2fKey)
	platPage.AddAuthenticator(t, platformKey)

	// Enrolled with no anchors; its attestation certificate gives the test
	// CA the virtual authenticator's (fixed) attestation key.
	if _, err := enrol(t, e.f, keyPage, "early", SecurityKey); err != nil {
		t.Fatal(err)
	}
	anchors := webauthntest.NewAnchors(t, attestationCert(t, e, "early"))
	blob := func(statuses ...string) TrustOptions {
		return TrustOptions{MDSBlobFile: anchors.VirtualBlob(t, testModel, statuses), MDSRootFile: anchors.MDSRootFile}
	}
	v1 := blob("FIDO_CERTIFIED")
	f := e.factor(t, func(o *Options) { o.Trust = v1 })
	alice, err := enrol(t, f, keyPage, "alice", SecurityKey)
	if err != nil {
		t.Fatal(err)
	}
	if alice.Detail != testModel {
		t.Fatalf("alice's key enrolled as %q, want the attested model", alice.Detail)
	}
	bob, err := enrol(t, f, u2fPage, "bob", SecurityKey)
	if err != nil {
		t.Fatal(err)
	}
	records := map[string][]byte{}
	for _, u := range []string{"early", "alice", "bob"} {
		_, records[u] = e.record(t, u)
	}

	// The same blob: alice still ok; the early key is attested now; the
	// U2F key never is.
	as, err := f.Reassess(ctx, "", readAnchors(t, v1))
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 3 || as[0].User != "alice" || as[1].User != "bob" || as[2].User != "early" {
		t.Fatalf("assessments not one per credential in user order: %+v", as)
	}
	got := byUser(t, as)
	if a := got["alice"]; a.Verdict != VerdictOK || !a.WasAttested || !a.Attested || a.Model != testModel || a.Status != "FIDO_CERTIFIED" ||
		a.CredentialID != alice.ID || a.Name != "Security key" || a.AAGUID != virtualAAGUID || len(a.Compromises) != 0 {
		t.Errorf("alice with v1: %+v", a)
	}
	if a := got["early"]; a.Verdict != VerdictOK || a.WasAttested || !a.Attested {
		t.Errorf("early with v1: %+v", a)
	}
	if a := got["bob"]; a.Verdict != VerdictNotAttested || a.WasAttested || a.Attested || a.Model != "" || a.Status != "" ||
		a.CredentialID != bob.ID || !strings.Contains(a.Why, "zero AAGUID") {
		t.Errorf("bob with v1: %+v", a)
	}

	// Newer blobs: each compromise status makes the model compromised
	// (and the attestation no longer verifies); others do not.
	for _, tc := range []struct {
		statuses    []string
		verdict     Verdict
		compromises []string
	}{
		{[]string{"FIDO_CERTIFIED", "ATTESTATION_KEY_COMPROMISE"}, VerdictCompromised, []string{"ATTESTATION_KEY_COMPROMISE"}},
		{[]string{"FIDO_CERTIFIED_L1", "REVOKED"}, VerdictCompromised, []string{"REVOKED"}},
		{[]string{"FIDO_CERTIFIED", "USER_VERIFICATION_BYPASS"}, VerdictCompromised, []string{"USER_VERIFICATION_BYPASS"}},
		{[]string{"USER_KEY_REMOTE_COMPROMISE", "FIDO_CERTIFIED"}, VerdictCompromised, []string{"USER_KEY_REMOTE_COMPROMISE"}}, // a later report does not retract it
		{[]string{"FIDO_CERTIFIED", "USER_KEY_PHYSICAL_COMPROMISE", "REVOKED"}, VerdictCompromised, []string{"USER_KEY_PHYSICAL_COMPROMISE", "REVOKED"}},
		{[]string{"FIDO_CERTIFIED", "RETIRED"}, VerdictNotAttested, nil},
		{[]string{"FIDO_CERTIFIED", "UPDATE_AVAILABLE"}, VerdictOK, nil},
	} {
		t.Run(strings.Join(tc.statuses, ">"), func(t *testing.T) {
			as, err := f.Reassess(ctx, "alice", readAnchors(t, blob(tc.statuses...)))
			if err != nil {
				t.Fatal(err)
			}
			if len(as) != 1 {
				t.Fatalf("%d assessments for alice", len(as))
			}
			a := as[0]
			if a.Verdict != tc.verdict || !slices.Equal(a.Compromises, tc.compromises) || a.Status != tc.statuses[len(tc.statuses)-1] ||
				a.Model != testModel || !a.WasAttested || a.Attested != (tc.verdict == VerdictOK) {
				t.Errorf("%+v", a)
			}
		})
	}

	v2 := blob("FIDO_CERTIFIED", "ATTESTATION_KEY_COMPROMISE")
	got = byUser(t, mustReassess(t, f, "", v2))
	if got["alice"].Verdict != VerdictCompromised || got["early"].Verdict != VerdictCompromised || got["bob"].Verdict != VerdictNotAttested {
		t.Errorf("with v2: %+v", got)
	}
	// Reassessing writes nothing.
	for u, before := range records {
		e.unchanged(t, u, before)
	}

	// No anchors, no assessment; a user without credentials has none.
	if _, err := f.Reassess(ctx, "", readAnchors(t, TrustOptions{})); !errors.Is(err, factors.ErrBadAnchors) {
		t.Errorf("reassessed against no anchors: %v", err)
	}
	if as, err := f.Reassess(ctx, "nobody", readAnchors(t, v2)); err != nil || len(as) != 0 {
		t.Errorf("unknown user: %+v %v", as, err)
	}

	// Anchors sent as bytes get the configuration's checks: a blob under
	// another root, a tampered blob, a root without a blob, PEM without a
	// certificate are all refused as bad anchors (never "nothing
	// compromised"), and nothing is written.
	_, otherRoot := webauthntest.NewCA(t, "another MDS root")
	good := readAnchors(t, v2)
	tampered := readAnchors(t, TrustOptions{MDSBlobFile: tamper(t, v2.MDSBlobFile), MDSRootFile: v2.MDSRootFile})
	for name, a := range map[string]factors.AttestationAnchors{
		"blob under another root":  {MDSBlob: good.MDSBlob, MDSRoot: readAnchors(t, TrustOptions{MDSBlobFile: webauthntest.WritePEM(t, otherRoot)}).MDSBlob},
		"blob under the FIDO root": {MDSBlob: good.MDSBlob},
		"tampered blob":            tampered,
		"root without a blob":      {MDSRoot: good.MDSRoot},
		"root that is not PEM":     {MDSBlob: good.MDSBlob, MDSRoot: []byte("not a certificate")},
		"attestation root not PEM": {RootCerts: [][]byte{[]byte("-----BEGIN NOTHING-----\n-----END NOTHING-----\n")}},
		"not a JWT":                {MDSBlob: []byte("{}"), MDSRoot: good.MDSRoot},
	} {
		if as, err := f.Reassess(ctx, "", a); !errors.Is(err, factors.ErrBadAnchors) || as != nil {
			t.Errorf("%s: %d assessments, %v", name, len(as), err)
		}
	}
	for u, before := range records {
		e.unchanged(t, u, before)
	}

	// alice also has a platform authenticator (a passkey), still usable.
	plat, err := enrol(t, f, platPage, "alice", Platform)
	if err != nil {
		t.Fatal(err)
	}

	// A login begun before the suspension is refused after it, and the
	// refusal leaves the record as the suspension wrote it.
	opts, ceremony, err := f.BeginLogin(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	_, beforeSuspend := e.record(t, "alice")
	if err := f.Suspend(ctx, "alice", alice.ID, "ATTESTATION_KEY_COMPROMISE"); err != nil {
		t.Fatal(err)
	}
	_, suspended := e.record(t, "alice")
	onlySuspensionChanged(t, beforeSuspend, suspended, alice.ID)
	if st, err := f.Suspension(ctx, "alice", alice.ID); err != nil || !st.Suspended || st.Reason != "ATTESTATION_KEY_COMPROMISE" || st.At.IsZero() {
		t.Errorf("Suspension of the suspended key: %+v %v", st, err)
	}
	if st, err := f.Suspension(ctx, "alice", plat.ID); err != nil || st.Suspended || st.Reason != "" {
		t.Errorf("Suspension of the usable passkey: %+v %v", st, err)
	}
	if _, err := f.Suspension(ctx, "alice", bob.ID); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("Suspension of another user's key: %v", err)
	}
	_, err = f.FinishLogin(ctx, "alice", ceremony, browserSign(t, keyPage, opts))
	verifyReason(t, err, ReasonSuspended)
	e.unchanged(t, "alice", suspended)

	infos, err := f.Credentials(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if c := infos[0]; !c.Suspended || c.SuspendedReason != "ATTESTATION_KEY_COMPROMISE" || c.SuspendedAt.IsZero() ||
		c.Detail != testModel+"; suspended: ATTESTATION_KEY_COMPROMISE" || infos[1].Suspended {
		t.Errorf("suspended credential listed as %+v", c)
	}
	// Suspending again keeps the first reason.
	if err := f.Suspend(ctx, "alice", alice.ID, "again"); err != nil {
		t.Fatal(err)
	}
	e.unchanged(t, "alice", suspended)
	if as := mustReassess(t, f, "alice", v2); len(as) != 2 || as[0].CredentialID != alice.ID || !as[0].Suspended ||
		as[0].SuspendedReason != "ATTESTATION_KEY_COMPROMISE" || as[1].Suspended {
		t.Errorf("assessments with one credential suspended: %+v", as)
	}

	// New sign-ins offer only the usable credential.
	opts, ceremony, err = f.BeginLogin(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if ids := allowedIDs(t, opts); !slices.Equal(ids, []string{plat.ID}) {
		t.Errorf("allowCredentials %v, want only %s", ids, plat.ID)
	}
	if a, err := f.FinishLogin(ctx, "alice", ceremony, browserSign(t, platPage, opts)); err != nil || a.CredentialID != plat.ID {
		t.Fatalf("login with the usable credential: %+v %v", a, err)
	}

	// A suspended passkey is refused too.
	if err := f.Suspend(ctx, "alice", plat.ID, ""); err != nil {
		t.Fatal(err)
	}
	_, platSuspended := e.record(t, "alice")
	_, _, err = passkey(t, f, platPage)
	verifyReason(t, err, ReasonSuspended)
	e.unchanged(t, "alice", platSuspended)
	if infos, _ := f.Credentials(ctx, "alice"); infos[1].Detail != testModel+"; suspended" {
		t.Errorf("suspended without a reason: %q", infos[1].Detail)
	}
	// With everything suspended there is nothing to offer.
	if _, _, err := f.BeginLogin(ctx, "alice"); !errors.Is(err, ErrAllSuspended) || !errors.Is(err, factors.ErrNotEnrolled) {
		t.Fatalf("BeginLogin with every credential suspended: %v", err)
	}

	// Unsuspend restores the credential exactly; sign-in works again.
	if err := f.Unsuspend(ctx, "alice", alice.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.Unsuspend(ctx, "alice", plat.ID); err != nil {
		t.Fatal(err)
	}
	r, _ := e.record(t, "alice")
	if r.Creds[0].Suspended || r.Creds[0].SuspendedReason != "" || !r.Creds[0].SuspendedAt.IsZero() {
		t.Errorf("unsuspended record %+v", r.Creds[0])
	}
	if a, err := signIn(t, f, keyPage, "alice"); err != nil || a.CredentialID != alice.ID || !a.Attested {
		t.Fatalf("login after unsuspend: %+v %v", a, err)
	}
	if name, a, err := passkey(t, f, platPage); err != nil || name != "alice" || a.CredentialID != plat.ID {
		t.Fatalf("passkey after unsuspend: %s %+v %v", name, a, err)
	}

	// Unknown credentials and unprintable reasons are refused.
	if err := f.Suspend(ctx, "alice", bob.ID, "x"); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("suspend another user's credential: %v", err)
	}
	if err := f.Unsuspend(ctx, "nobody", alice.ID); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("unsuspend for an unknown user: %v", err)
	}
	if err := f.Suspend(ctx, "alice", alice.ID, "bad\x00reason"); err == nil {
		t.Error("a reason with a control character was accepted")
	}
}

func mustReassess(t *testing.T, f *Factor, user string, trust TrustOptions) []Assessment {
	t.Helper()
	as, err := f.Reassess(ctx, user, readAnchors(t, trust))
	if err != nil {
		t.Fatal(err)
	}
	return as
}

// readAnchors reads the files of trust, as an admin's command does before
// it sends their contents.
func readAnchors(t *testing.T, trust TrustOptions) factors.AttestationAnchors {
	t.Helper()
	read := func(file string) []byte {
		if file == "" {
			return nil
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := factors.AttestationAnchors{MDSBlob: read(trust.MDSBlobFile), MDSRoot: read(trust.MDSRootFile)}
	for _, f := range trust.RootCertFiles {
		a.RootCerts = append(a.RootCerts, read(f))
	}
	return a
}

// onlySuspensionChanged fails unless the two records differ only in the
// suspension fields of credential id.
func onlySuspensionChanged(t *testing.T, before, after []byte, id string) {
	t.Helper()
	var a userRecord
	if err := json.Unmarshal(after, &a); err != nil {
		t.Fatal(err)
	}
	raw, _ := unb64(id)
	i := a.index(raw)
	if i < 0 || !a.Creds[i].Suspended {
		t.Fatalf("credential %s not suspended", id)
	}
	a.Creds[i].Suspended, a.Creds[i].SuspendedReason, a.Creds[i].SuspendedAt = false, "", time.Time{}
	b, err := json.Marshal(&a)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, before) {
		t.Errorf("suspension changed more than its fields:\nbefore %s\nafter  %s", before, after)
	}
}

// allowedIDs are the credential IDs of request options' allowCredentials.
func allowedIDs(t *testing.T, options json.RawMessage) []string {
	t.Helper()
	var o struct {
		AllowCredentials []struct {
			ID string `json:"id"`
		} `json:"allowCredentials"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(o.AllowCredentials))
	for i, c := range o.AllowCredentials {
		ids[i] = c.ID
	}
	return ids
}

// passkey runs a passkey sign-in on page p with factor f, in Go.
func passkey(t *testing.T, f *Factor, p *browsertest.Page) (string, Assertion, error) {
	t.Helper()
	opts, id, err := f.BeginPasskey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return f.FinishPasskey(ctx, id, browserSign(t, p, opts))
}
