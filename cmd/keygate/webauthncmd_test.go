package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/authn/store/badgerstore"
	fwa "github.com/keygate/keygate/factors/webauthn"
	"github.com/keygate/keygate/factors/webauthn/browsertest"
	"github.com/keygate/keygate/factors/webauthn/webauthntest"
)

// The data directory is populated in-process (real Badger, encrypted, and
// credentials made by Chromium's virtual authenticators), closed, and then
// checked by the real binary, as an operator's cron job would.
func TestWebAuthnVerifyCLI(t *testing.T) {
	ctx := context.Background()
	b := browsertest.Start(t)
	origin := webauthntest.Serve(t)
	dir := t.TempDir()
	data, keyFile := filepath.Join(dir, "data"), filepath.Join(dir, "keygate.key")
	writeKeyFile(t, keyFile)
	key, err := badgerstore.LoadKey(keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	open := func() *badgerstore.Store {
		t.Helper()
		kv, err := badgerstore.Open(badgerstore.Options{Path: data, EncryptionKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return kv
	}
	factor := func(kv *badgerstore.Store, trust fwa.TrustOptions) *fwa.Factor {
		t.Helper()
		f, err := fwa.New(kv, fwa.Options{RPID: "localhost", Origins: []string{origin}, Trust: trust})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	keyPage, u2fPage := b.NewPage(t, origin+"/"), b.NewPage(t, origin+"/")
	keyPage.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"})
	u2fPage.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "u2f", Transport: "usb"})
	enrol := func(f *fwa.Factor, p *browsertest.Page, user, name string) {
		t.Helper()
		opts, id, err := f.BeginRegistration(ctx, fwa.User{Username: user}, fwa.SecurityKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.FinishRegistration(ctx, fwa.User{Username: user}, id, webauthntest.Create(t, p, opts), name); err != nil {
			t.Fatal(err)
		}
	}

	kv := open()
	// One creation (never finished) shows the virtual authenticator's
	// attestation certificate, whose fixed key the test CA certifies.
	opts, _, err := factor(kv, fwa.TrustOptions{}).BeginRegistration(ctx, fwa.User{Username: "probe"}, fwa.SecurityKey)
	if err != nil {
		t.Fatal(err)
	}
	anchors := webauthntest.NewAnchors(t, webauthntest.ResponseAttestationCert(t, webauthntest.Create(t, keyPage, opts)))
	const model = "Chromium virtual authenticator (keygate test)"
	v1 := anchors.VirtualBlob(t, model, []string{"FIDO_CERTIFIED"})
	v2 := anchors.VirtualBlob(t, model, []string{"FIDO_CERTIFIED", "ATTESTATION_KEY_COMPROMISE"})
	f := factor(kv, fwa.TrustOptions{MDSBlobFile: v1, MDSRootFile: anchors.MDSRootFile})
	enrol(f, keyPage, "alice", "YubiKey 5")
	enrol(f, u2fPage, "bob", "Old U2F key")
	if cs, err := f.Credentials(ctx, "alice"); err != nil || !cs[0].Attested {
		t.Fatalf("alice's key not attested at enrolment: %+v %v", cs, err)
	}
	if err := kv.Close(); err != nil {
		t.Fatal(err)
	}

	cfg := filepath.Join(dir, "keygate.yaml")
	yml := fmt.Sprintf(`
storage:
  path: %q
  encryption_key_file: %q
upstreams:
  - host: localhost
    url: http://127.0.0.1:1
webauthn:
  rp_id: localhost
  rp_name: keygate test
  origins: [%q]
`, data, keyFile, origin)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	verify := func(blob string, extra ...string) (string, string, int) {
		t.Helper()
		return run(t, "", append([]string{"webauthn", "verify", "--mds-blob", blob, "--mds-root", anchors.MDSRootFile, "--config", cfg}, extra...)...)
	}
	row := func(out, user string) string {
		for line := range strings.Lines(out) {
			if strings.HasPrefix(line, user+" ") {
				return line
			}
		}
		t.Fatalf("no row for %s in:\n%s", user, out)
		return ""
	}
	// last is the row's last n columns, single-spaced.
	last := func(line string, n int) string {
		f := strings.Fields(line)
		return strings.Join(f[max(0, len(f)-n):], " ")
	}

	// The blob of enrolment: nothing compromised, exit 0.
	out, errOut, rc := verify(v1)
	if rc != 0 {
		t.Fatalf("verify v1: rc=%d\n%s%s", rc, out, errOut)
	}
	if r := row(out, "alice"); !strings.Contains(r, "YubiKey 5") || !strings.Contains(r, model) || !strings.Contains(r, webauthntest.VirtualAAGUID) ||
		last(r, 4) != "yes yes FIDO_CERTIFIED ok" {
		t.Errorf("alice with v1: %q", r)
	}
	if r := row(out, "bob"); last(r, 4) != "no no - not_attested" || !strings.Contains(r, "Old U2F key") {
		t.Errorf("bob with v1: %q", r)
	}

	// The newer blob reports the model's attestation key compromised.
	out, errOut, rc = verify(v2)
	if rc != 1 {
		t.Fatalf("verify v2: rc=%d, want 1\n%s%s", rc, out, errOut)
	}
	if r := row(out, "alice"); last(r, 4) != "yes no ATTESTATION_KEY_COMPROMISE compromised" {
		t.Errorf("alice with v2: %q", r)
	}
	for _, want := range []string{`COMPROMISED: alice's "YubiKey 5"`, "2 credential(s): 0 ok, 1 not attested, 1 compromised", "--suspend"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify v2 output lacks %q:\n%s", want, out)
		}
	}
	if r := row(out, "bob"); last(r, 1) != "not_attested" {
		t.Errorf("bob with v2: %q", r)
	}
	// A blob that does not verify is an error (2), never "all fine" (0)
	// or "compromised" (1).
	otherKey, _ := webauthntest.NewCA(t, "not the MDS root")
	forged := webauthntest.WriteBlob(t, otherKey, webauthntest.MDSEntry(webauthntest.VirtualAAGUID, model, []string{"FIDO_CERTIFIED"}, []string{"basic_full"}, anchors.VirtualRoot))
	if _, errOut, rc := verify(forged); rc != 2 || !strings.Contains(errOut, "does not verify") {
		t.Errorf("verify with a blob signed by another key: rc=%d %q", rc, errOut)
	}
	// Only bob: nothing of his is compromised.
	if out, errOut, rc := verify(v2, "--user", "bob"); rc != 0 || strings.Contains(out, "alice") {
		t.Errorf("verify --user bob: rc=%d\n%s%s", rc, out, errOut)
	}

	// --suspend suspends alice's key and still exits 1; again, it says so.
	out, errOut, rc = verify(v2, "--suspend")
	if rc != 1 || !strings.Contains(out, `suspended alice's "YubiKey 5"`) || !strings.Contains(out, "ATTESTATION_KEY_COMPROMISE") {
		t.Fatalf("verify --suspend: rc=%d\n%s%s", rc, out, errOut)
	}
	out, _, rc = verify(v2, "--suspend")
	if rc != 1 || !strings.Contains(row(out, "alice"), "compromised (suspended)") || !strings.Contains(out, "suspended already (ATTESTATION_KEY_COMPROMISE)") {
		t.Fatalf("verify --suspend again: rc=%d\n%s", rc, out)
	}
	// The admin listing shows the suspension.
	if _, errOut, rc := run(t, "a-long-enough-passphrase\n", "user", "add", "alice", "--email", "alice@example.com", "--password-stdin", "--config", cfg); rc != 0 {
		t.Fatalf("user add alice: %s", errOut)
	}
	if out, errOut, rc := run(t, "", "user", "factors", "alice", "--config", cfg); rc != 0 || !strings.Contains(out, "suspended: ATTESTATION_KEY_COMPROMISE") {
		t.Errorf("user factors alice: rc=%d\n%s%s", rc, out, errOut)
	}

	// While something holds the data directory (a running keygate), the
	// command says what to do.
	kv = open()
	_, errOut, rc = verify(v2)
	if rc != 2 || !strings.Contains(errOut, "stop keygate or run this while it is stopped") {
		t.Errorf("verify on a locked directory: rc=%d %q", rc, errOut)
	}
	// alice's suspended key cannot sign in.
	f = factor(kv, fwa.TrustOptions{})
	if _, _, err := f.BeginLogin(ctx, "alice"); !errors.Is(err, fwa.ErrAllSuspended) {
		t.Fatalf("BeginLogin with the suspended key: %v", err)
	}
	if err := kv.Close(); err != nil {
		t.Fatal(err)
	}

	// An admin restores it; it signs in again.
	if out, errOut, rc := run(t, "", "webauthn", "unsuspend", "alice", "yubikey 5", "--config", cfg); rc != 0 || !strings.Contains(out, "can sign in again") {
		t.Fatalf("unsuspend: rc=%d\n%s%s", rc, out, errOut)
	}
	kv = open()
	defer kv.Close()
	f = factor(kv, fwa.TrustOptions{})
	opts, id, err := f.BeginLogin(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.FinishLogin(ctx, "alice", id, webauthntest.Get(t, keyPage, opts)); err != nil {
		t.Fatalf("login after unsuspend: %v", err)
	}
}
