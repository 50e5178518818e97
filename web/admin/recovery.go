package admin

import (
	"net/http"

	svc "github.com/keygate/keygate/authn/admin"
)

// Pending account recoveries over the API: the list, and an admin's
// approval (the waiting period ends now) or cancellation. The user page's
// buttons post to the same routes (data-action "recovery/approve").

func (h *Handler) recoveryRoutes() {
	m := h.api
	h.handle(m, "GET "+APIPrefix+"recoveries", h.recoveries)
	h.handle(m, "POST "+APIPrefix+"users/{name}/recovery/approve", h.approveRecovery)
	h.handle(m, "POST "+APIPrefix+"users/{name}/recovery/cancel", h.cancelRecovery)
}

func (h *Handler) recoveries(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	list, err := h.o.Service.Recoveries(r.Context(), a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"recoveries": list})
	return nil
}

func (h *Handler) approveRecovery(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	rec, err := h.o.Service.ApproveRecovery(r.Context(), a, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"username": rec.Username, "approved": true, "ready_at": rec.ReadyAt.UTC()})
	return nil
}

func (h *Handler) cancelRecovery(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	rec, err := h.o.Service.CancelRecovery(r.Context(), a, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"username": rec.Username, "cancelled": true})
	return nil
}
