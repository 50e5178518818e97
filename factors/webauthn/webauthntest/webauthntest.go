// Package webauthntest builds WebAuthn attestation trust anchors for tests:
// a FIDO Metadata Service (MDS3) blob signed by a test root, and an
// attestation root under which Chromium's virtual authenticator (driven by
// factors/webauthn/browsertest) counts as attested. It also serves a bare
// page on http://localhost:PORT to run ceremonies on. Test helper only:
// importable by any package's tests, never by production code.
//
// Why the virtual authenticator can be made attested at all: its "packed"
// attestation is a self-signed leaf minted per registration, but always
// for the same fixed key (the FIDO U2F specification's example key, which
// Chromium's VirtualFidoDevice uses). A test CA certifies that key under
// the leaf's issuer name (CertifyAttestationKey); the test blob lists the
// virtual AAGUID with that certificate as its root. The private key is
// public knowledge, so no real metadata ever lists this AAGUID.
package webauthntest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncbor"

	"github.com/keygate/keygate/factors/webauthn/browsertest"
)

// VirtualAAGUID is what Chromium's virtual ctap2 authenticator reports.
const VirtualAAGUID = "01020304-0506-0708-0102-030405060708"

// NewCA makes a self-signed CA valid from an hour ago for a day.
func NewCA(t testing.TB, cn string) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"keygate tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// CertifyAttestationKey issues, from ca, a CA certificate for the key and
// issuer name of an attestation certificate: the root an authenticator
// vendor would publish for its attestation key.
func CertifyAttestationKey(t testing.TB, caKey *ecdsa.PrivateKey, ca, att *x509.Certificate) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		RawSubject:            att.RawIssuer, // names must match byte for byte to chain
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
		// Without a subjectAltName this certificate (same subject, same
		// key) is, to crypto/x509's loop detection (alreadyInChain), the
		// self-signed leaf itself, and no chain is built through it.
		URIs: []*url.URL{{Scheme: "urn", Opaque: "keygate:test:chromium-virtual-attestation-root"}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, att.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// serial is a random certificate serial number: two certificates of one
// issuer made within the same nanosecond must still differ.
func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// WritePEM writes the certificates to a PEM file in a temp dir.
func WritePEM(t testing.TB, certs ...*x509.Certificate) string {
	t.Helper()
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	path := filepath.Join(t.TempDir(), "certs.pem")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// MDSEntry is one MDS3 BLOB payload entry. statuses is the model's status
// history, oldest first; their effective dates are a month apart from
// 2024-01-01, all in the past.
func MDSEntry(aaguid, description string, statuses, types []string, roots ...*x509.Certificate) map[string]any {
	rs := make([]string, len(roots))
	for i, r := range roots {
		rs[i] = base64.StdEncoding.EncodeToString(r.Raw)
	}
	reports := make([]map[string]any, len(statuses))
	last := "2024-01-01"
	for i, st := range statuses {
		last = time.Date(2024, time.Month(1+i), 1, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
		reports[i] = map[string]any{"status": st, "effectiveDate": last}
	}
	return map[string]any{
		"aaguid": aaguid,
		"metadataStatement": map[string]any{
			"aaguid":                      aaguid,
			"description":                 description,
			"protocolFamily":              "fido2",
			"schema":                      3,
			"attestationTypes":            types,
			"attestationRootCertificates": rs,
		},
		"statusReports":          reports,
		"timeOfLastStatusChange": last,
	}
}

// WriteBlob writes an MDS3 blob: a JWT (ES256) signed by key, without an
// x5c header, so the decoder verifies it with the configured root itself.
func WriteBlob(t testing.TB, key *ecdsa.PrivateKey, entries ...map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(map[string]any{
		"legalHeader": "keygate test metadata", "no": 1, "nextUpdate": time.Now().AddDate(0, 1, 0).Format(time.DateOnly), "entries": entries,
	})
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(`{"alg":"ES256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	path := filepath.Join(t.TempDir(), "mds.jwt")
	if err := os.WriteFile(path, []byte(signed+"."+enc.EncodeToString(sig)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// AttestationCert returns the x5c[0] certificate of a CBOR attestation
// object (as stored, or from a registration response).
func AttestationCert(t testing.TB, attestationObject []byte) *x509.Certificate {
	t.Helper()
	var obj protocol.AttestationObject
	if err := webauthncbor.Unmarshal(attestationObject, &obj); err != nil {
		t.Fatal(err)
	}
	x5c, ok := obj.AttStatement["x5c"].([]any)
	if !ok || len(x5c) != 1 {
		t.Fatalf("webauthntest: x5c %T len %d, want one certificate", obj.AttStatement["x5c"], len(x5c))
	}
	der, _ := x5c[0].([]byte)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// ResponseAttestationCert is AttestationCert of a registration response
// (credential.toJSON()).
func ResponseAttestationCert(t testing.TB, response []byte) *x509.Certificate {
	t.Helper()
	var r struct {
		Response struct {
			AttestationObject string `json:"attestationObject"`
		} `json:"response"`
	}
	if err := json.Unmarshal(response, &r); err != nil {
		t.Fatal(err)
	}
	obj, err := base64.RawURLEncoding.DecodeString(r.Response.AttestationObject)
	if err != nil {
		t.Fatal(err)
	}
	return AttestationCert(t, obj)
}

// Anchors are a test MDS root (signing blobs) and the attestation root of
// the virtual authenticator's fixed key.
type Anchors struct {
	MDSKey      *ecdsa.PrivateKey
	MDSRoot     *x509.Certificate
	MDSRootFile string
	// VirtualRoot certifies the virtual authenticator's attestation key.
	VirtualRoot *x509.Certificate
}

// NewAnchors makes the anchors from one attestation certificate the
// virtual authenticator produced (any registration's: the key is fixed).
func NewAnchors(t testing.TB, leaf *x509.Certificate) *Anchors {
	t.Helper()
	mdsKey, mdsRoot := NewCA(t, "keygate test MDS root")
	caKey, ca := NewCA(t, "keygate test attestation CA")
	return &Anchors{
		MDSKey:      mdsKey,
		MDSRoot:     mdsRoot,
		MDSRootFile: WritePEM(t, mdsRoot),
		VirtualRoot: CertifyAttestationKey(t, caKey, ca, leaf),
	}
}

// VirtualBlob writes a blob listing the virtual authenticator as model
// with the status history given (oldest first), basic_full attestation and
// VirtualRoot, plus any other entries.
func (a *Anchors) VirtualBlob(t testing.TB, model string, statuses []string, others ...map[string]any) string {
	t.Helper()
	entries := append([]map[string]any{MDSEntry(VirtualAAGUID, model, statuses, []string{"basic_full"}, a.VirtualRoot)}, others...)
	return WriteBlob(t, a.MDSKey, entries...)
}

// Serve starts a server with an empty page at http://localhost:PORT/ (the
// origin to configure and to open pages at) until t ends.
func Serve(t testing.TB) (origin string) {
	t.Helper()
	ln, err := net.Listen("tcp", "localhost:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><html><head><meta charset="utf-8"><title>keygate webauthn test</title></head><body></body></html>`))
	})}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	return fmt.Sprintf("http://localhost:%d", ln.Addr().(*net.TCPAddr).Port)
}

// Create runs navigator.credentials.create on creation options (the
// `publicKey` JSON a factor's BeginRegistration returns) and returns
// credential.toJSON(), as the portal's script would send it.
func Create(t testing.TB, p *browsertest.Page, options json.RawMessage) json.RawMessage {
	t.Helper()
	return ceremony(t, p, `async (o) => (await navigator.credentials.create({publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(o)})).toJSON()`, options)
}

// Get runs navigator.credentials.get on request options (BeginLogin's)
// and returns credential.toJSON().
func Get(t testing.TB, p *browsertest.Page, options json.RawMessage) json.RawMessage {
	t.Helper()
	return ceremony(t, p, `async (o) => (await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(o)})).toJSON()`, options)
}

func ceremony(t testing.TB, p *browsertest.Page, js string, options json.RawMessage) json.RawMessage {
	t.Helper()
	raw, err := p.TryEval(js, options)
	if err != nil {
		t.Fatalf("webauthntest: browser: %v", err)
	}
	return raw
}
