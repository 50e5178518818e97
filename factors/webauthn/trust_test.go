package webauthn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/factors/webauthn/webauthntest"
)

// The trust test, and what it shows about Chromium's virtual authenticator.
//
// The virtual ctap2 authenticator answers "direct" attestation with a
// "packed" statement whose x5c is a single self-signed certificate
// (C=US, O=Chromium, OU=Authenticator Attestation, CN=Batch Certificate),
// minted anew for every registration (its notAfter is "now + 20 years", and
// ECDSA signatures differ) but always by the same key: Chromium's
// VirtualFidoDevice signs attestations with a fixed key, the example
// attestation key of the FIDO U2F raw message formats specification
// (device/fido/virtual_fido_device.cc, kAttestationKey and
// GenerateAttestationCertificate). go-webauthn verifies the statement as
// attestation type basic_full with that certificate as the trust path.
//
// Trusting one of those certificates as a root does not work, and must
// not: it is a leaf (basicConstraints CA:FALSE, which packed attestation
// requires), so crypto/x509 will not accept it as the issuer of the next
// registration's certificate (Certificate.CheckSignatureFrom refuses a
// parent that is not a CA), and byte-for-byte it is never presented again.
//
// What works without weakening any check is what a vendor's attestation
// root is: a CA certificate for the key that signs the attestations. The
// test's own attestation CA issues a CA certificate whose subject is the
// virtual authenticator's issuer name and whose public key is its fixed
// attestation key. It needs a subjectAltName: crypto/x509's path builder
// treats a candidate parent with the same subject, public key and SAN as a
// certificate already in the chain (alreadyInChain, its loop detection),
// and a self-signed leaf has the same subject and key as its issuer, so
// without a SAN no chain is ever built through it. The test's MDS blob
// (signed by the test's MDS root) lists AAGUID
// 01020304-0506-0708-0102-030405060708 with attestation type basic_full and
// that certificate as its attestationRootCertificates. Then go-webauthn's
// metadata validation (entry present, attestation type listed, status
// reports acceptable, x5c verified to the roots with x509.Verify) passes,
// and only then is the credential Attested.
//
// This is test-only by nature: the private half of that key is published
// (in the U2F specification and Chromium's source), so anyone can mint such
// an attestation. No real MDS blob lists this AAGUID, so in production the
// virtual authenticator is never Attested.

// attestationCert returns the x5c[0] certificate of a stored credential's
// attestation.
func attestationCert(t testing.TB, e *env, user string) *x509.Certificate {
	t.Helper()
	r, _ := e.record(t, user)
	att, err := e.f.storedAttestation(ctx, r.Creds[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	return webauthntest.AttestationCert(t, att.Object)
}

func TestBrowserTrust(t *testing.T) {
	e := newEnv(t, nil)
	key := e.page(t)
	key.AddAuthenticator(t, securityKey)
	u2f := e.page(t)
	u2f.AddAuthenticator(t, u2fKey)

	// Without trust anchors nothing is attested, whatever is claimed.
	if _, err := enrol(t, e.f, key, "plain", SecurityKey); err != nil {
		t.Fatal(err)
	}
	if _, err := enrol(t, e.f, u2f, "plain-u2f", SecurityKey); err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string][3]string{
		"plain":     {virtualAAGUID, "packed", "basic_full"},
		"plain-u2f": {"00000000-0000-0000-0000-000000000000", "fido-u2f", "basic_full"},
	} {
		infos, _ := e.f.Credentials(ctx, user)
		c := infos[0]
		if c.Attested || c.AAGUID != want[0] || c.AttestationFormat != want[1] || c.AttestationType != want[2] {
			t.Errorf("%s: attested=%v %s %s %s", user, c.Attested, c.AAGUID, c.AttestationFormat, c.AttestationType)
		}
	}

	// Every registration mints a new self-signed leaf with the same key.
	leaf := attestationCert(t, e, "plain")
	other := e.page(t)
	other.AddAuthenticator(t, securityKey)
	if _, err := enrol(t, e.f, other, "plain2", SecurityKey); err != nil {
		t.Fatal(err)
	}
	leaf2 := attestationCert(t, e, "plain2")
	if bytes.Equal(leaf.Raw, leaf2.Raw) || !leaf.PublicKey.(*ecdsa.PublicKey).Equal(leaf2.PublicKey) ||
		leaf.IsCA || !bytes.Equal(leaf.RawIssuer, leaf.RawSubject) || leaf.Subject.CommonName != "Batch Certificate" {
		t.Fatalf("virtual authenticator attestation is not what the notes say: %v / %v", leaf.Subject, leaf2.Subject)
	}
	// A leaf is no trust anchor for the next one.
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	if _, err := leaf2.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Fatal("a self-signed attestation leaf verified another")
	}

	mdsKey, mdsRoot := webauthntest.NewCA(t, "keygate test MDS root")
	mdsRootFile := webauthntest.WritePEM(t, mdsRoot)
	caKey, ca := webauthntest.NewCA(t, "keygate test attestation CA")
	virtualRoot := webauthntest.CertifyAttestationKey(t, caKey, ca, leaf)
	_, unrelated := webauthntest.NewCA(t, "unrelated attestation CA")
	const model = "Chromium virtual authenticator (keygate test)"
	basicFull := []string{"basic_full"}
	blob := func(entries ...map[string]any) TrustOptions {
		return TrustOptions{MDSBlobFile: webauthntest.WriteBlob(t, mdsKey, entries...), MDSRootFile: mdsRootFile}
	}
	listed := blob(webauthntest.MDSEntry(virtualAAGUID, model, []string{"NOT_FIDO_CERTIFIED"}, basicFull, virtualRoot))

	for i, tc := range []struct {
		name     string
		trust    TrustOptions
		u2f      bool
		attested bool
		model    string
		why      string // in the log
	}{
		{name: "MDS lists the model, root = its attestation key", trust: listed, attested: true, model: model, why: "chains to a trust anchor"},
		{name: "MDS, U2F key (zero AAGUID)", trust: listed, u2f: true, why: "zero AAGUID"},
		{name: "MDS, model revoked", trust: blob(webauthntest.MDSEntry(virtualAAGUID, model, []string{"REVOKED"}, basicFull, virtualRoot)), why: "undesired status reports were present: REVOKED"},
		{name: "MDS, model's root is another CA", trust: blob(webauthntest.MDSEntry(virtualAAGUID, model, []string{"NOT_FIDO_CERTIFIED"}, basicFull, unrelated)), why: "could not be verified due to an error validating the trust chain"},
		{name: "MDS, model only does self attestation", trust: blob(webauthntest.MDSEntry(virtualAAGUID, model, []string{"NOT_FIDO_CERTIFIED"}, []string{"basic_surrogate"}, virtualRoot)), why: "attestation type 'basic_full' is not known to be used"},
		{name: "MDS lists other models only", trust: blob(webauthntest.MDSEntry("2fc0579f-8113-47ea-b116-bb5a8db9202a", "Other key", []string{"FIDO_CERTIFIED"}, basicFull, virtualRoot)), why: "not in the metadata"},
		{name: "PEM root", trust: TrustOptions{RootCertFiles: []string{webauthntest.WritePEM(t, virtualRoot)}}, attested: true, why: "chains to a trust anchor"},
		{name: "PEM root, U2F key", trust: TrustOptions{RootCertFiles: []string{webauthntest.WritePEM(t, virtualRoot)}}, u2f: true, why: "zero AAGUID"},
		{name: "PEM root, unrelated", trust: TrustOptions{RootCertFiles: []string{webauthntest.WritePEM(t, unrelated)}}, why: "could not be verified due to an error validating the trust chain"},
		{name: "PEM root for what MDS does not list", attested: true, why: "chains to a trust anchor", trust: TrustOptions{
			MDSBlobFile: webauthntest.WriteBlob(t, mdsKey, webauthntest.MDSEntry("2fc0579f-8113-47ea-b116-bb5a8db9202a", "Other key", []string{"FIDO_CERTIFIED"}, basicFull, unrelated)),
			MDSRootFile: mdsRootFile, RootCertFiles: []string{webauthntest.WritePEM(t, virtualRoot)},
		}},
		{name: "MDS entry wins over PEM root", why: "REVOKED", trust: TrustOptions{
			MDSBlobFile: webauthntest.WriteBlob(t, mdsKey, webauthntest.MDSEntry(virtualAAGUID, model, []string{"REVOKED"}, basicFull, virtualRoot)),
			MDSRootFile: mdsRootFile, RootCertFiles: []string{webauthntest.WritePEM(t, virtualRoot)},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log syncBuffer
			f := e.factor(t, func(o *Options) { o.Trust = tc.trust; o.Logger = slog.New(slog.NewTextHandler(&log, nil)) })
			page, user := key, fmt.Sprintf("user%d", i)
			if tc.u2f {
				page = u2f
			}
			c, err := enrol(t, f, page, user, SecurityKey)
			if err != nil {
				t.Fatal(err)
			}
			infos, _ := f.Credentials(ctx, user)
			if infos[0].Attested != tc.attested || infos[0].Model != tc.model {
				t.Fatalf("attested=%v model=%q, want %v %q\n%s", infos[0].Attested, infos[0].Model, tc.attested, tc.model, log.String())
			}
			if !strings.Contains(log.String(), tc.why) {
				t.Errorf("log does not say %q:\n%s", tc.why, log.String())
			}
			wantDetail := "Security key"
			if tc.model != "" {
				wantDetail = tc.model
			}
			if c.Detail != wantDetail {
				t.Errorf("detail %q, want %q", c.Detail, wantDetail)
			}
			a, err := signIn(t, f, page, user)
			if err != nil || a.Attested != tc.attested {
				t.Errorf("login: attested=%v, %v", a.Attested, err)
			}
		})
	}

	// A blob that does not verify against the configured MDS root is
	// refused at start-up, never half-trusted.
	_, otherRoot := webauthntest.NewCA(t, "another MDS root")
	for name, trust := range map[string]TrustOptions{
		"blob signed by another root": {MDSBlobFile: listed.MDSBlobFile, MDSRootFile: webauthntest.WritePEM(t, otherRoot)},
		"blob from the FIDO root":     {MDSBlobFile: listed.MDSBlobFile},
		"tampered blob":               {MDSBlobFile: tamper(t, listed.MDSBlobFile), MDSRootFile: mdsRootFile},
	} {
		if _, err := New(e.kv, Options{RPID: "localhost", Origins: []string{e.origin}, Trust: trust}); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

// tamper flips the blob's payload (its nextUpdate) keeping the signature.
func tamper(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	parts := bytes.Split(b, []byte("."))
	payload, err := base64.RawURLEncoding.DecodeString(string(parts[1]))
	if err != nil {
		t.Fatal(err)
	}
	payload = bytes.Replace(payload, []byte(`"no":1`), []byte(`"no":2`), 1)
	parts[1] = []byte(base64.RawURLEncoding.EncodeToString(payload))
	out := filepath.Join(t.TempDir(), "tampered.jwt")
	if err := os.WriteFile(out, bytes.Join(parts, []byte(".")), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
