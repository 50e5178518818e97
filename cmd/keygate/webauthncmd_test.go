package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/activity"
	adminsvc "github.com/keygate/keygate/authn/admin"
	"github.com/keygate/keygate/authn/store/badgerstore"
	fwa "github.com/keygate/keygate/factors/webauthn"
	"github.com/keygate/keygate/factors/webauthn/browsertest"
	"github.com/keygate/keygate/factors/webauthn/webauthntest"
	adminweb "github.com/keygate/keygate/web/admin"
)

// webauthnData is a data directory populated in-process (real Badger,
// encrypted, and credentials made by Chromium's virtual authenticators:
// alice's security key attested at enrolment, bob's U2F key never), then
// closed, with a configuration for the real binary and two metadata
// blobs: v1 certifies alice's model, v2 reports its attestation key
// compromised.
type webauthnData struct {
	dir, data, keyFile, cfg, origin string
	anchors                         *webauthntest.Anchors
	v1, v2                          string
	keyPage                         *browsertest.Page
	key                             []byte
}

const webauthnModel = "Chromium virtual authenticator (keygate test)"

func newWebAuthnData(t *testing.T, serverYAML string) *webauthnData {
	t.Helper()
	ctx := context.Background()
	b := browsertest.Start(t)
	w := &webauthnData{origin: webauthntest.Serve(t), dir: t.TempDir()}
	w.data, w.keyFile = filepath.Join(w.dir, "data"), filepath.Join(w.dir, "keygate.key")
	writeKeyFile(t, w.keyFile)
	var err error
	if w.key, err = badgerstore.LoadKey(w.keyFile, ""); err != nil {
		t.Fatal(err)
	}
	kv := w.open(t)
	w.keyPage = b.NewPage(t, w.origin+"/")
	u2fPage := b.NewPage(t, w.origin+"/")
	w.keyPage.AddAuthenticator(t, browsertest.AuthenticatorOptions{Protocol: "ctap2", Transport: "usb"})
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
	// One creation (never finished) shows the virtual authenticator's
	// attestation certificate, whose fixed key the test CA certifies.
	opts, _, err := w.factor(t, kv, fwa.TrustOptions{}).BeginRegistration(ctx, fwa.User{Username: "probe"}, fwa.SecurityKey)
	if err != nil {
		t.Fatal(err)
	}
	w.anchors = webauthntest.NewAnchors(t, webauthntest.ResponseAttestationCert(t, webauthntest.Create(t, w.keyPage, opts)))
	w.v1 = w.anchors.VirtualBlob(t, webauthnModel, []string{"FIDO_CERTIFIED"})
	w.v2 = w.anchors.VirtualBlob(t, webauthnModel, []string{"FIDO_CERTIFIED", "ATTESTATION_KEY_COMPROMISE"})
	f := w.factor(t, kv, fwa.TrustOptions{MDSBlobFile: w.v1, MDSRootFile: w.anchors.MDSRootFile})
	enrol(f, w.keyPage, "alice", "YubiKey 5")
	enrol(f, u2fPage, "bob", "Old U2F key")
	if cs, err := f.Credentials(ctx, "alice"); err != nil || !cs[0].Attested {
		t.Fatalf("alice's key not attested at enrolment: %+v %v", cs, err)
	}
	if err := kv.Close(); err != nil {
		t.Fatal(err)
	}

	w.cfg = filepath.Join(w.dir, "keygate.yaml")
	yml := fmt.Sprintf(`%s
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
`, serverYAML, w.data, w.keyFile, w.origin)
	if err := os.WriteFile(w.cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *webauthnData) open(t *testing.T) *badgerstore.Store {
	t.Helper()
	kv, err := badgerstore.Open(badgerstore.Options{Path: w.data, EncryptionKey: w.key})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func (w *webauthnData) factor(t *testing.T, kv *badgerstore.Store, trust fwa.TrustOptions) *fwa.Factor {
	t.Helper()
	f, err := fwa.New(kv, fwa.Options{RPID: "localhost", Origins: []string{w.origin}, Trust: trust})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// verify runs `keygate webauthn verify` against blob and the test root.
func (w *webauthnData) verify(t *testing.T, blob string, extra ...string) (string, string, int) {
	t.Helper()
	return run(t, "", append([]string{"webauthn", "verify", "--mds-blob", blob, "--mds-root", w.anchors.MDSRootFile, "--config", w.cfg}, extra...)...)
}

// forged is a blob for the same model signed by a key that is not the
// MDS root's.
func (w *webauthnData) forged(t *testing.T) string {
	t.Helper()
	otherKey, _ := webauthntest.NewCA(t, "not the MDS root")
	return webauthntest.WriteBlob(t, otherKey, webauthntest.MDSEntry(webauthntest.VirtualAAGUID, webauthnModel, []string{"FIDO_CERTIFIED"}, []string{"basic_full"}, w.anchors.VirtualRoot))
}

// row is user's row of verify's table.
func row(t *testing.T, out, user string) string {
	t.Helper()
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, user+" ") {
			return line
		}
	}
	t.Fatalf("no row for %s in:\n%s", user, out)
	return ""
}

// last is the row's last n columns, single-spaced.
func last(line string, n int) string {
	f := strings.Fields(line)
	return strings.Join(f[max(0, len(f)-n):], " ")
}

// The data directory is checked by the real binary while keygate is
// stopped, as an operator's cron job would: the command runs the admin
// API in-process on the directory.
func TestWebAuthnVerifyCLI(t *testing.T) {
	ctx := context.Background()
	w := newWebAuthnData(t, "")
	cfg, v1, v2, model := w.cfg, w.v1, w.v2, webauthnModel
	verify := func(blob string, extra ...string) (string, string, int) {
		t.Helper()
		return w.verify(t, blob, extra...)
	}
	row := func(out, user string) string { t.Helper(); return row(t, out, user) }

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
	if _, errOut, rc := verify(w.forged(t)); rc != 2 || !strings.Contains(errOut, "does not verify") {
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
	kv := w.open(t)
	_, errOut, rc = verify(v2)
	if rc != 2 || !strings.Contains(errOut, "stop keygate or run this while it is stopped") {
		t.Errorf("verify on a locked directory: rc=%d %q", rc, errOut)
	}
	// alice's suspended key cannot sign in.
	f := w.factor(t, kv, fwa.TrustOptions{})
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
	kv = w.open(t)
	defer kv.Close()
	f = w.factor(t, kv, fwa.TrustOptions{})
	opts, id, err := f.BeginLogin(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.FinishLogin(ctx, "alice", id, webauthntest.Get(t, w.keyPage, opts)); err != nil {
		t.Fatalf("login after unsuspend: %v", err)
	}
}

// The same commands against a RUNNING keygate: it holds the data
// directory, so they can only work through its admin socket, as the OS
// user running them (channel cli), and what they change is what the
// running server then refuses.
func TestWebAuthnCommandsOverTheSocket(t *testing.T) {
	addr := freeAddr(t)
	w := newWebAuthnData(t, fmt.Sprintf("server:\n  listen: %q\n", addr))
	srv := exec.Command(keygateBin(t), "serve", "--config", w.cfg)
	var stderr syncBuffer
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	stop := func() {
		if srv.ProcessState != nil {
			return
		}
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("keygate exit: %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = srv.Process.Kill()
			t.Error("keygate did not stop on SIGTERM")
		}
	}
	t.Cleanup(stop)
	waitFor(t, "keygate to serve", func() bool { return strings.Contains(stderr.String(), "keygate is serving") })

	if _, errOut, rc := run(t, "a-long-enough-passphrase\n", "user", "add", "alice", "--email", "alice@example.com", "--password-stdin", "--config", w.cfg); rc != 0 {
		t.Fatalf("user add alice: %s", errOut)
	}
	out, errOut, rc := w.verify(t, w.v1)
	if rc != 0 || last(row(t, out, "alice"), 4) != "yes yes FIDO_CERTIFIED ok" || last(row(t, out, "bob"), 1) != "not_attested" {
		t.Fatalf("verify v1 over the socket: rc=%d\n%s%s", rc, out, errOut)
	}
	out, errOut, rc = w.verify(t, w.v2)
	if rc != 1 || !strings.Contains(out, `COMPROMISED: alice's "YubiKey 5"`) || last(row(t, out, "alice"), 4) != "yes no ATTESTATION_KEY_COMPROMISE compromised" {
		t.Fatalf("verify v2 over the socket: rc=%d\n%s%s", rc, out, errOut)
	}
	// A blob that does not verify: an error (2), and the server says why.
	if _, errOut, rc := w.verify(t, w.forged(t), "--suspend"); rc != 2 || !strings.Contains(errOut, "does not verify") {
		t.Errorf("forged blob over the socket: rc=%d %q", rc, errOut)
	}
	// A file the command cannot read is its own error, before any request.
	if _, errOut, rc := w.verify(t, filepath.Join(w.dir, "missing.jwt")); rc != 2 || !strings.Contains(errOut, "--mds-blob") {
		t.Errorf("missing blob file: rc=%d %q", rc, errOut)
	}
	if out, _, _ := run(t, "", "user", "factors", "alice", "--config", w.cfg); strings.Contains(out, "suspended") {
		t.Fatalf("a refused or plain verify suspended something:\n%s", out)
	}

	out, errOut, rc = w.verify(t, w.v2, "--suspend")
	if rc != 1 || !strings.Contains(out, `suspended alice's "YubiKey 5"`) {
		t.Fatalf("verify --suspend over the socket: rc=%d\n%s%s", rc, out, errOut)
	}
	if out, errOut, rc := run(t, "", "user", "factors", "alice", "--config", w.cfg); rc != 0 || !strings.Contains(out, "suspended: ATTESTATION_KEY_COMPROMISE") {
		t.Errorf("user factors alice: rc=%d\n%s%s", rc, out, errOut)
	}
	// The running keygate refuses the suspended key at once: no
	// credential is left to offer alice.
	if code := beginWebAuthnLogin(t, addr, "alice", "a-long-enough-passphrase"); code == http.StatusOK {
		t.Error("the running keygate still offers alice's suspended key")
	}

	if out, errOut, rc := run(t, "", "webauthn", "unsuspend", "alice", "yubikey 5", "--config", w.cfg); rc != 0 || !strings.Contains(out, `alice's "YubiKey 5" can sign in again`) {
		t.Fatalf("unsuspend over the socket: rc=%d\n%s%s", rc, out, errOut)
	}
	if code := beginWebAuthnLogin(t, addr, "alice", "a-long-enough-passphrase"); code != http.StatusOK {
		t.Errorf("after unsuspend, beginning a sign-in with the key: %d", code)
	}
	if out, errOut, rc := run(t, "", "webauthn", "suspend", "alice", "YubiKey 5", "--reason", "lost on a train", "--config", w.cfg); rc != 0 || out != "suspended alice's \"YubiKey 5\"\n" {
		t.Fatalf("suspend over the socket: rc=%d\n%s%s", rc, out, errOut)
	}
	if out, errOut, rc := run(t, "", "webauthn", "suspend", "alice", "yubikey 5", "--config", w.cfg); rc != 0 || !strings.Contains(out, "is suspended already (lost on a train)") {
		t.Errorf("suspend again: rc=%d\n%s%s", rc, out, errOut)
	}
	if _, errOut, rc := run(t, "", "webauthn", "suspend", "alice", "Titan", "--config", w.cfg); rc == 0 || !strings.Contains(errOut, `alice has no security key or passkey named or with ID "Titan"`) {
		t.Errorf("suspend an unknown key: rc=%d %q", rc, errOut)
	}
	stop()

	// The audit log names the OS user, through the CLI, for each.
	kv := w.open(t)
	defer kv.Close()
	entries, err := activity.NewAudit(kv, nil, nil).Recent(context.Background(), 50)
	if err != nil {
		t.Fatal(err)
	}
	me := uidName(uint32(os.Getuid()))
	var got []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Admin, me) || e.Via != activity.ViaCLI {
			t.Errorf("audit entry by %q via %q, want the OS user %q via cli: %+v", e.Admin, e.Via, me, e)
		}
		got = append(got, e.Action+" "+e.Target+" "+e.Details["changed"])
	}
	want := []string{
		"user.suspend_key alice false", "user.suspend_key alice true", "user.unsuspend_key alice true",
		"keys.verify * ", "user.suspend_key alice true", "keys.verify * ", "keys.verify * ", "user.add alice ",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("audit, newest first:\n got %q\nwant %q", got, want)
	}
}

// beginWebAuthnLogin signs user in with the password on the running
// keygate at addr and asks to begin a security-key sign-in: 200 when a
// credential is offered.
func beginWebAuthnLogin(t *testing.T, addr, user, password string) int {
	t.Helper()
	// The protected host is localhost (the upstream's and the RP ID).
	base := "http://" + strings.Replace(addr, "127.0.0.1", "localhost", 1)
	ck := signIn(t, base, user, password)
	req, _ := http.NewRequest(http.MethodPost, base+"/.keygate/api/factors/webauthn/login/begin", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(ck)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The admin API refuses bad requests to the key endpoints in its error
// format ({error, message}) and changes nothing: malformed JSON, unknown
// fields, a blob that does not verify, no anchors, an unknown credential,
// another user's credential, a reason that is not printable text.
func TestWebAuthnAPIRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	w := newWebAuthnData(t, "")
	cfg, err := loadConfig(w.cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := openApp(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ac := a.localAdmin()
	send := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://keygate"+adminweb.APIPrefix+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := ac.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
		}
		return resp.StatusCode, out
	}
	read := func(file string) string {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	jsonOf := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	root := read(w.anchors.MDSRootFile)
	check := func(suspend bool) adminsvc.KeyCheck {
		t.Helper()
		var kc adminsvc.KeyCheck
		if err := ac.post(ctx, "keys/verify", map[string]any{"mds_blob": read(w.v2), "mds_root": root, "suspend": suspend}, &kc); err != nil {
			t.Fatal(err)
		}
		return kc
	}
	kc := check(false)
	var bobID string
	for _, k := range kc.Keys {
		if k.User == "bob" {
			bobID = k.CredentialID
		}
	}
	audited := func() int {
		t.Helper()
		es, err := a.audit.Recent(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	before := audited()

	for _, tc := range []struct {
		name, path, body string
		status           int
		code, detail     string
	}{
		{"malformed JSON", "keys/verify", `{"mds_blob":`, 400, "bad_request", ""},
		{"wrong type", "keys/verify", `{"mds_blob": 5}`, 400, "bad_request", ""},
		{"unknown field", "keys/verify", `{"mds_blob_file": "/etc/keygate/blob.jwt"}`, 400, "bad_request", "unknown field"},
		{"trailing data", "keys/verify", `{"suspend": true} {}`, 400, "bad_request", "trailing data"},
		{"no anchors", "keys/verify", `{"suspend": true}`, 400, "bad_request", "nothing to verify against"},
		{"forged blob", "keys/verify", jsonOf(map[string]any{"mds_blob": read(w.forged(t)), "mds_root": root, "suspend": true}), 400, "bad_request", "does not verify"},
		{"not a blob", "keys/verify", jsonOf(map[string]any{"mds_blob": "not a JWT", "mds_root": root, "suspend": true}), 400, "bad_request", "does not verify"},
		{"root not PEM", "keys/verify", jsonOf(map[string]any{"mds_blob": read(w.v2), "mds_root": "garbage", "suspend": true}), 400, "bad_request", "no PEM certificate"},
		{"unknown credential", "users/alice/keys/Titan/suspend", `{}`, 404, "no_such_credential", ""},
		{"another user's credential", "users/alice/keys/" + bobID + "/suspend", `{"reason": "x"}`, 404, "no_such_credential", ""},
		{"unknown user", "users/nobody/keys/" + bobID + "/unsuspend", ``, 404, "no_such_credential", ""},
		{"reason with a control character", "users/alice/keys/YubiKey%205/suspend", `{"reason": "bad\u0000reason"}`, 400, "bad_request", "printable text"},
		{"suspend body not JSON", "users/alice/keys/YubiKey%205/suspend", `reason=x`, 400, "bad_request", ""},
		{"unsuspend body not an object", "users/alice/keys/YubiKey%205/unsuspend", `[1]`, 400, "bad_request", ""},
	} {
		status, out := send(http.MethodPost, tc.path, tc.body)
		msg, _ := out["message"].(string)
		detail, _ := out["detail"].(string)
		if status != tc.status || out["error"] != tc.code || msg == "" || !strings.Contains(detail, tc.detail) {
			t.Errorf("%s: %d %v", tc.name, status, out)
		}
	}
	// Nothing was suspended, nothing audited.
	for _, k := range check(false).Keys {
		if k.Suspended {
			t.Errorf("suspended after refusals: %+v", k)
		}
	}
	if n := audited(); n != before+1 { // the check just made
		t.Errorf("%d audit entries after refusals, want %d", n, before+1)
	}

	// And the good requests, by name escaped as a path segment.
	if status, out := send(http.MethodPost, "users/alice/keys/yubikey%205/suspend", `{"reason": "lost"}`); status != 200 ||
		out["changed"] != true || out["suspended"] != true || out["name"] != "YubiKey 5" || out["reason"] != "lost" {
		t.Errorf("suspend: %d %v", status, out)
	}
	if status, out := send(http.MethodPost, "users/alice/keys/YubiKey%205/unsuspend", ``); status != 200 || out["changed"] != true || out["suspended"] != false {
		t.Errorf("unsuspend: %d %v", status, out)
	}
}
