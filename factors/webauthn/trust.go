package webauthn

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/go-webauthn/webauthn/metadata/providers/memory"
	"github.com/go-webauthn/webauthn/protocol"
	gwa "github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/keygate/keygate/factors"
)

// trust decides whether an attestation chains to the anchors we were given.
//
// Registration never fails for lack of trust: go-webauthn verifies the
// attestation statement itself (the signature over authData and the client
// data hash, and the format's certificate rules) without a metadata
// provider, and we then ask, separately, whether that statement's
// certificate path reaches one of our anchors. The answer is recorded as
// Attested, and the policy ("hardware: true") decides what it is worth.
//
// An attestation counts only if all of these hold:
//   - the AAGUID is not zero (FIDO U2F keys and "none" attestations carry a
//     zero one, which names no model);
//   - the attestation type conveys a certificate path (basic_full, attca,
//     anonca), not self attestation (the credential key signing for
//     itself) and not none;
//   - go-webauthn's metadata validation passes for that path against a
//     metadata entry: the MDS blob's entry for the AAGUID (with its status
//     reports, attestation types and root certificates), or else, for an
//     AAGUID the blob does not list, an entry made of RootCertFiles.
type trust struct {
	mds   metadata.Provider // nil: no MDS blob
	roots metadata.Provider // nil: no RootCertFiles
}

// verdict is the outcome of assessing one attestation.
type verdict struct {
	attested bool
	model    string // MDS description of an attested model
	why      string // for the log
}

// loadTrust reads the anchor files of the configuration and loads them
// (loadAnchors). Nothing is ever fetched over the network.
func loadTrust(opt TrustOptions, now func() time.Time, log *slog.Logger) (*trust, error) {
	if opt.MDSBlobFile == "" && len(opt.RootCertFiles) == 0 {
		if opt.MDSRootFile != "" {
			return nil, errors.New("webauthn: trust: an MDS root without an MDS blob")
		}
		return nil, nil
	}
	var (
		a     factors.AttestationAnchors
		names anchorNames
		err   error
	)
	if opt.MDSBlobFile != "" {
		names.blob = " " + opt.MDSBlobFile
		if a.MDSBlob, err = os.ReadFile(opt.MDSBlobFile); err != nil {
			return nil, fmt.Errorf("webauthn: trust: MDS blob: %w", err)
		}
	}
	if opt.MDSRootFile != "" {
		names.root = " " + opt.MDSRootFile
		if a.MDSRoot, err = os.ReadFile(opt.MDSRootFile); err != nil {
			return nil, fmt.Errorf("webauthn: trust: MDS root: %w", err)
		}
	}
	for _, file := range opt.RootCertFiles {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("webauthn: trust: %w", err)
		}
		a.RootCerts = append(a.RootCerts, b)
		names.roots = append(names.roots, file)
	}
	return loadAnchors(a, names, now, log)
}

// anchorNames name where anchors came from, for messages (" FILE", or
// "" for bytes an admin sent).
type anchorNames struct {
	blob, root string
	roots      []string
}

func (n anchorNames) rootName(i int) string {
	if i < len(n.roots) {
		return n.roots[i]
	}
	return fmt.Sprintf("root certificate %d", i+1)
}

// loadAnchors checks and loads trust anchors given as bytes: a
// configuration's files, or what an admin's command sent in a request
// (the server may not be able to read the admin's files). The checks are
// the same either way: a blob must verify under its root (the FIDO
// Alliance's unless one is given), a root is exactly one certificate, and
// every PEM document holds at least one. Errors wrap
// factors.ErrBadAnchors. A nil trust (no error) means no anchors.
//
// The blob is decoded and its JWT signature checked with go-webauthn's
// metadata.Decoder and served by a metadata/providers/memory provider —
// exactly what metadata/providers/cached does with a local file and
// WithUpdate(false), minus the download: cached fetches the blob from the
// FIDO URL whenever the file is missing, which an offline gateway must not
// do (and which would pull net/http into a factor).
func loadAnchors(a factors.AttestationAnchors, names anchorNames, now func() time.Time, log *slog.Logger) (*trust, error) {
	if len(a.MDSBlob) == 0 && len(a.RootCerts) == 0 {
		if len(a.MDSRoot) != 0 {
			return nil, fmt.Errorf("webauthn: trust: an MDS root without an MDS blob: %w", factors.ErrBadAnchors)
		}
		return nil, nil
	}
	t := &trust{}
	if len(a.MDSBlob) != 0 {
		p, err := loadMDS(a, names, now, log)
		if err != nil {
			return nil, err
		}
		t.mds = p
	}
	if len(a.RootCerts) > 0 {
		var roots []*x509.Certificate
		for i, b := range a.RootCerts {
			certs, err := parsePEMCerts(b)
			if err != nil {
				return nil, fmt.Errorf("webauthn: trust: %s: %w: %w", names.rootName(i), factors.ErrBadAnchors, err)
			}
			roots = append(roots, certs...)
		}
		t.roots = &rootsProvider{entry: &metadata.Entry{MetadataStatement: metadata.Statement{
			AttestationTypes:            metadata.AuthenticatorAttestationTypes{metadata.BasicFull, metadata.AttCA, metadata.AnonCA},
			AttestationRootCertificates: roots,
		}}}
	}
	return t, nil
}

func loadMDS(a factors.AttestationAnchors, names anchorNames, now func() time.Time, log *slog.Logger) (metadata.Provider, error) {
	decOpts := []metadata.DecoderOption{metadata.WithIgnoreEntryParsingErrors()}
	if len(a.MDSRoot) != 0 {
		certs, err := parsePEMCerts(a.MDSRoot)
		if err != nil {
			return nil, fmt.Errorf("webauthn: trust: MDS root%s: %w: %w", names.root, factors.ErrBadAnchors, err)
		}
		if len(certs) != 1 {
			return nil, fmt.Errorf("webauthn: trust: MDS root%s: want exactly one certificate, found %d: %w", names.root, len(certs), factors.ErrBadAnchors)
		}
		decOpts = append(decOpts, metadata.WithRootCertificate(base64.StdEncoding.EncodeToString(certs[0].Raw)))
	}
	dec, err := metadata.NewDecoder(decOpts...)
	if err != nil {
		return nil, fmt.Errorf("webauthn: trust: %w", err)
	}
	payload, err := dec.DecodeBytes(a.MDSBlob)
	if err != nil {
		return nil, fmt.Errorf("webauthn: trust: MDS blob%s does not verify: %w: %w", names.blob, factors.ErrBadAnchors, err)
	}
	md, err := dec.Parse(payload)
	if err != nil {
		return nil, fmt.Errorf("webauthn: trust: MDS blob%s: %w: %w", names.blob, factors.ErrBadAnchors, err)
	}
	if len(md.Unparsed) > 0 {
		log.Warn("webauthn: MDS blob entries skipped (unparseable)", slog.Int("skipped", len(md.Unparsed)))
	}
	if now().After(md.Parsed.NextUpdate) {
		// Still used: a stale blob is better than none, and keygate never
		// downloads. The operator should fetch a fresh one.
		log.Warn("webauthn: MDS blob is past its nextUpdate; download a fresh one",
			slog.String("file", strings.TrimSpace(names.blob)), slog.Time("next_update", md.Parsed.NextUpdate))
	}
	p, err := memory.New(
		memory.WithMetadata(md.ToMap()),
		memory.WithValidateEntry(true),
		memory.WithValidateEntryPermitZeroAAGUID(false),
		memory.WithValidateTrustAnchor(true),
		memory.WithValidateStatus(true),
		memory.WithValidateAttestationTypes(true),
		// The extended checks that compare the attestation with what the
		// statement says the model can produce. Extension outputs are not
		// checked: real metadata often omits extensions keys do emit.
		memory.WithValidateAAGUID(true),
		memory.WithValidateAttestationFormats(true),
		memory.WithValidateAlgorithms(true),
		memory.WithValidateBackupEligibility(true),
		memory.WithValidateUserVerification(true),
	)
	if err != nil {
		return nil, fmt.Errorf("webauthn: trust: %w", err)
	}
	return p, nil
}

// assess re-verifies a freshly created credential's attestation (its raw
// attestation object, through go-webauthn's Credential.Verify, with the
// factor's attestation and signature policies) against the MDS entry for
// its AAGUID or the configured roots. It needs only what is stored, so it
// could be re-run later against a newer blob.
func (t *trust) assess(ctx context.Context, c *gwa.Credential, ap protocol.AttestationPolicy, sp protocol.SignaturePolicy) verdict {
	if t == nil {
		return verdict{why: "no trust anchors configured"}
	}
	aaguid, err := uuid.FromBytes(c.Authenticator.AAGUID)
	if err != nil || aaguid == uuid.Nil {
		return verdict{why: "zero AAGUID: no model to vouch for"}
	}
	switch metadata.AuthenticatorAttestationType(c.AttestationType) {
	case metadata.BasicFull, metadata.AttCA, metadata.AnonCA:
	default:
		return verdict{why: "attestation type " + c.AttestationType + " has no certificate path"}
	}
	var (
		provider metadata.Provider
		model    string
	)
	if t.mds != nil {
		entry, err := t.mds.GetEntry(ctx, aaguid)
		if err != nil {
			return verdict{why: "metadata lookup: " + err.Error()}
		}
		if entry != nil {
			provider, model = t.mds, entry.MetadataStatement.Description
		}
	}
	if provider == nil && t.roots != nil {
		provider = t.roots
	}
	if provider == nil {
		return verdict{why: "AAGUID not in the metadata and no other roots configured"}
	}
	cred := *c
	if err := cred.Verify(provider, ap, sp); err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			return verdict{why: pe.Details + " " + pe.DevInfo}
		}
		return verdict{why: err.Error()}
	}
	return verdict{attested: true, model: model, why: "attestation chains to a trust anchor"}
}

// compromiseStatuses are the MDS status reports that make every
// authenticator of a model untrustworthy: its attestation key or its users'
// keys can be extracted or forged, user verification can be bypassed, or
// the certification was revoked. RETIRED (end of support, not a weakness)
// is not among them, though go-webauthn refuses it at registration, so a
// retired model is simply no longer Attested.
var compromiseStatuses = []metadata.AuthenticatorStatus{
	metadata.Revoked,
	metadata.UserVerificationBypass,
	metadata.AttestationKeyCompromise,
	metadata.UserKeyRemoteCompromise,
	metadata.UserKeyPhysicalCompromise,
}

// standing is what the MDS blob says about a model.
type standing struct {
	listed      bool
	model       string   // the statement's description
	status      string   // the status report in effect now (MDS3: the latest)
	compromises []string // compromise statuses in effect, each once, in blob order
}

// standing looks the AAGUID up in the MDS blob. Compromise reports count
// while in effect at the time given (after their effective date, before
// their sunset), like go-webauthn's own status check, and they count even
// when a later report says something else: MDS3 does not retract a
// compromise by listing a newer status. A report scoped to one attestation
// certificate or firmware version is applied to the whole model, as
// go-webauthn does by default: we keep no firmware version to compare.
//
// A zero AAGUID names no model (FIDO U2F keys are listed by attestation
// key identifier instead, which this does not look up).
func (t *trust) standing(ctx context.Context, aaguid []byte, at time.Time) (standing, error) {
	if t == nil || t.mds == nil {
		return standing{}, nil
	}
	id, err := uuid.FromBytes(aaguid)
	if err != nil || id == uuid.Nil {
		return standing{}, nil
	}
	entry, err := t.mds.GetEntry(ctx, id)
	if err != nil {
		return standing{}, fmt.Errorf("webauthn: metadata lookup %s: %w", id, err)
	}
	if entry == nil {
		return standing{}, nil
	}
	s := standing{listed: true, model: entry.MetadataStatement.Description}
	if cur := metadata.CurrentStatusReportAt(entry.StatusReports, at); cur != nil {
		s.status = string(cur.Status)
	}
	for _, r := range metadata.EffectiveStatusReports(entry.StatusReports, at) {
		if st := string(r.Status); slices.Contains(compromiseStatuses, r.Status) && !slices.Contains(s.compromises, st) {
			s.compromises = append(s.compromises, st)
		}
	}
	return s, nil
}

// rootsProvider is a metadata provider with one entry for every non-zero
// AAGUID: the configured root certificates, for certificate-path
// attestation types. It lets go-webauthn's own trust-path check (the same
// one the MDS entries go through) verify against plain PEM roots.
type rootsProvider struct {
	entry *metadata.Entry
}

func (p *rootsProvider) GetEntry(_ context.Context, aaguid uuid.UUID) (*metadata.Entry, error) {
	if aaguid == uuid.Nil {
		return nil, nil
	}
	return p.entry, nil
}

func (p *rootsProvider) GetValidateEntry(context.Context) bool                 { return true }
func (p *rootsProvider) GetValidateEntryPermitZeroAAGUID(context.Context) bool { return false }
func (p *rootsProvider) GetValidateTrustAnchor(context.Context) bool           { return true }
func (p *rootsProvider) GetValidateStatus(context.Context) bool                { return false }
func (p *rootsProvider) GetValidateAttestationTypes(context.Context) bool      { return true }
func (p *rootsProvider) ValidateStatusReports(context.Context, []metadata.StatusReport) error {
	return nil
}

// parsePEMCerts parses every CERTIFICATE block of a PEM document (at
// least one).
func parsePEMCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

// Interface guards.
var _ metadata.Provider = (*rootsProvider)(nil)
