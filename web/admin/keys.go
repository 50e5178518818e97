package admin

import (
	"net/http"

	svc "github.com/keygate/keygate/authn/admin"
	"github.com/keygate/keygate/factors"
)

// Security keys and passkeys: re-check their attestations against trust
// anchors the request carries, suspend and restore one.
//
//	POST keys/verify                                  {user, mds_blob, mds_root, root_certs, suspend}
//	POST users/{name}/keys/{credential}/suspend       {reason}
//	POST users/{name}/keys/{credential}/unsuspend
//
// {credential} is the credential's ID or its name (any case), escaped as
// a path segment.

func (h *Handler) keyRoutes() {
	m := h.api
	h.handle(m, "POST "+APIPrefix+"keys/verify", h.verifyKeys)
	h.handle(m, "POST "+APIPrefix+"users/{name}/keys/{credential}/suspend", h.suspendKey)
	h.handle(m, "POST "+APIPrefix+"users/{name}/keys/{credential}/unsuspend", h.unsuspendKey)
}

// maxAnchorsBody bounds a verify request: the FIDO Alliance's MDS3 blob is
// several megabytes and grows, so the policy-sized maxBody is too small.
const maxAnchorsBody = 64 << 20

// verifyRequest carries the anchors themselves, not file names: the
// command reads the admin's files (the server may not be able to) and
// sends their text.
type verifyRequest struct {
	User string `json:"user"`
	// MDSBlob is the MDS3 blob, the JWT as downloaded (text).
	MDSBlob string `json:"mds_blob"`
	// MDSRoot is the PEM the blob is signed under ("" = the FIDO
	// Alliance's).
	MDSRoot string `json:"mds_root"`
	// RootCerts are PEM documents of attestation roots.
	RootCerts []string `json:"root_certs"`
	Suspend   bool     `json:"suspend"`
}

func (h *Handler) verifyKeys(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	var in verifyRequest
	if err := decodeLimit(w, r, &in, maxAnchorsBody); err != nil {
		return err
	}
	anchors := factors.AttestationAnchors{MDSBlob: []byte(in.MDSBlob), MDSRoot: []byte(in.MDSRoot)}
	for _, pem := range in.RootCerts {
		anchors.RootCerts = append(anchors.RootCerts, []byte(pem))
	}
	kc, err := h.o.Service.VerifyKeys(r.Context(), a, in.User, anchors, in.Suspend)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, kc)
	return nil
}

func (h *Handler) suspendKey(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	var in struct {
		Reason string `json:"reason"`
	}
	if hasBody(r) {
		if err := decode(w, r, &in); err != nil {
			return err
		}
	}
	st, err := h.o.Service.SuspendKey(r.Context(), a, r.PathValue("name"), r.PathValue("credential"), in.Reason)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (h *Handler) unsuspendKey(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	if hasBody(r) {
		// Nothing to say; an object is tolerated, anything else refused.
		var in struct{}
		if err := decode(w, r, &in); err != nil {
			return err
		}
	}
	st, err := h.o.Service.UnsuspendKey(r.Context(), a, r.PathValue("name"), r.PathValue("credential"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}
