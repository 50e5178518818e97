package admin

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/keygate/keygate/authn"
	svc "github.com/keygate/keygate/authn/admin"
)

// The users half of the API: list and search, one user, and what admins do
// to an account. Each route decodes, calls the service, renders.

func (h *Handler) userRoutes() {
	m := h.api
	h.handle(m, "GET "+APIPrefix+"users", h.listUsers)
	h.handle(m, "POST "+APIPrefix+"users", h.addUser)
	h.handle(m, "GET "+APIPrefix+"users/{name}", h.user)
	h.handle(m, "DELETE "+APIPrefix+"users/{name}", h.deleteUser)
	h.handle(m, "PUT "+APIPrefix+"users/{name}/password", h.setPassword)
	h.handle(m, "POST "+APIPrefix+"users/{name}/disable", h.setDisabled(true))
	h.handle(m, "POST "+APIPrefix+"users/{name}/enable", h.setDisabled(false))
	h.handle(m, "GET "+APIPrefix+"users/{name}/factors", h.credentials)
	h.handle(m, "POST "+APIPrefix+"users/{name}/reset-factors", h.resetFactors)
	h.handle(m, "POST "+APIPrefix+"users/{name}/enroll-link", h.enrollLink)
	h.handle(m, "POST "+APIPrefix+"users/{name}/unlock", h.unlock)
	h.handle(m, "GET "+APIPrefix+"users/{name}/sessions", h.sessions)
	h.handle(m, "DELETE "+APIPrefix+"users/{name}/sessions", h.endSessions)
	h.handle(m, "GET "+APIPrefix+"audit", h.auditLog)
}

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	rows, err := h.o.Service.ListUsers(r.Context(), a, r.URL.Query().Get("q"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": rows})
	return nil
}

// newUserRequest is a user to create. The password travels in the body
// only, over the socket or TLS; it is never logged.
type newUserRequest struct {
	Username      string   `json:"username"`
	Email         string   `json:"email"`
	DisplayName   string   `json:"display_name"`
	Groups        []string `json:"groups"`
	Password      string   `json:"password"`
	EmailVerified bool     `json:"email_verified"`
}

func (h *Handler) addUser(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	var in newUserRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	u, err := h.o.Service.AddUser(r.Context(), a, authn.NewUser{Username: in.Username, Email: in.Email, DisplayName: in.DisplayName,
		Groups: in.Groups, Password: in.Password, EmailVerified: in.EmailVerified})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, u)
	return nil
}

func (h *Handler) user(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	d, err := h.o.Service.User(r.Context(), a, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (h *Handler) deleteUser(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	name := r.PathValue("name")
	n, err := h.o.Service.DeleteUser(r.Context(), a, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"username": name, "deleted": true, "sessions_ended": n})
	return nil
}

func (h *Handler) setPassword(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	var in struct {
		Password string `json:"password"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	name := r.PathValue("name")
	n, err := h.o.Service.SetPassword(r.Context(), a, name, in.Password)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"username": name, "sessions_ended": n})
	return nil
}

// setDisabled disables (ending every session at once) or enables a user.
func (h *Handler) setDisabled(disabled bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
		name := r.PathValue("name")
		n, err := h.o.Service.SetDisabled(r.Context(), a, name, disabled)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"username": name, "disabled": disabled, "sessions_ended": n})
		return nil
	}
}

func (h *Handler) credentials(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	cs, err := h.o.Service.Credentials(r.Context(), a, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"factors": cs})
	return nil
}

func (h *Handler) resetFactors(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	name := r.PathValue("name")
	n, err := h.o.Service.ResetFactors(r.Context(), a, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"username": name, "removed": n})
	return nil
}

// enrollLink issues a one-time enrolment link; the link is in the answer
// only.
func (h *Handler) enrollLink(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	var in struct {
		TTL string `json:"ttl"`
	}
	if hasBody(r) {
		if err := decode(w, r, &in); err != nil {
			return err
		}
	}
	var ttl time.Duration
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		if err != nil || d <= 0 {
			return badRequest(fmt.Errorf("ttl %q: want a duration up to %s", in.TTL, svc.MaxEnrollLinkTTL))
		}
		ttl = d
	}
	name := r.PathValue("name")
	token, exp, err := h.o.Service.EnrollLink(r.Context(), a, name, ttl)
	if err != nil {
		return err
	}
	link := h.o.LinkBase(r) + "/.keygate/enroll/" + url.PathEscape(token)
	writeJSON(w, http.StatusOK, map[string]any{"username": name, "url": link, "expires_at": exp.UTC()})
	return nil
}

func (h *Handler) unlock(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	name := r.PathValue("name")
	was, err := h.o.Service.Unlock(r.Context(), a, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"username": name, "was_locked": was})
	return nil
}

func (h *Handler) sessions(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	ss, err := h.o.Service.Sessions(r.Context(), a, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": ss})
	return nil
}

func (h *Handler) endSessions(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	name := r.PathValue("name")
	n, err := h.o.Service.EndSessions(r.Context(), a, name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"username": name, "sessions_ended": n})
	return nil
}

// auditLog lists recent admin actions (?limit=, default 100), or exports
// all of them as JSON lines (?format=jsonl).
func (h *Handler) auditLog(w http.ResponseWriter, r *http.Request, a svc.Actor) error {
	ctx := r.Context()
	if r.URL.Query().Get("format") == "jsonl" {
		hd := w.Header()
		hd.Set("Content-Type", "application/jsonl; charset=utf-8")
		hd.Set("Content-Disposition", `attachment; filename="keygate-audit.jsonl"`)
		hd.Set("Cache-Control", "no-store")
		cw := &countingWriter{w: w}
		if err := h.o.Service.ExportAudit(ctx, a, cw); err != nil {
			h.o.Logger.Error("audit export failed", "bytes_sent", cw.n, "err", err)
			if cw.n > 0 {
				// A 200 is out: break the connection so that the client
				// sees a failed download, never a short file that looks
				// whole.
				panic(http.ErrAbortHandler)
			}
			hd.Del("Content-Disposition")
			return err
		}
		return nil
	}
	limit := 100
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil {
			return badRequest(fmt.Errorf("limit %q: want 1 to 10000", q))
		}
		limit = n
	}
	entries, err := h.o.Service.AuditLog(ctx, a, limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
	return nil
}

// countingWriter counts what went out.
type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
