package web

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
)

// The "lost every factor" pages: asking for an account recovery with the
// password (the session) and a code to the confirmed address, the waiting
// period, completing it once the wait is over (the security page then adds
// the new factor), and the cancel link the notice carries. The flow itself
// is authn's (authn/recovery.go).

const recoverPath = portalPrefix + "recover"

// recoveryView is what recover.html sees.
type recoveryView struct {
	Status authn.RecoveryStatus
	// ReadyAt and RequestedAt in words, UTC.
	ReadyAt, RequestedAt string
	// Token of a cancel link (the confirm page); Cancelled: done.
	Token     string
	Cancelled bool
}

// recoveryRoutes registers the pages and their JSON twins.
func (s *Server) recoveryRoutes(k, api *gin.RouterGroup) {
	if s.mfa == nil || !s.mfa.RecoveryEnabled() {
		return
	}
	k.GET("/recover", s.handle(s.recoverPage))
	k.POST("/recover/send", s.handle(s.recoverSend))
	k.POST("/recover/code", s.handle(s.recoverCode))
	k.GET("/recover/cancel/:token", s.handle(s.recoverCancelPage))
	k.POST("/recover/cancel", s.handle(s.recoverCancel))

	r := api.Group("/recovery")
	r.GET("", s.handle(s.apiRecovery))
	r.POST("/send", s.handle(s.apiRecoverySend))
	r.POST("/verify", s.handle(s.apiRecoveryVerify))
	r.POST("/cancel", s.handle(s.apiRecoveryCancel))
}

const recoverTimeLayout = "2006-01-02 15:04 UTC"

// recoverPage shows where the session's user stands: nothing asked yet
// (send a code), waiting (until when), ready (send a code to finish), or
// granted (go and add the new factor).
func (s *Server) recoverPage(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	return s.renderRecover(c, nil, http.StatusOK)
}

func (s *Server) renderRecover(c *gin.Context, pageErr *Error, status int) error {
	st, err := s.mfa.RecoveryState(c.Request.Context(), cookieID(c.Request))
	if err != nil {
		return err
	}
	d := s.page(c)
	d.Title = d.T.T("recover.title")
	d.setError(pageErr)
	switch c.Query("done") {
	case "sent":
		d.Notice = d.T.T("recover.sent")
	case "started":
		d.Notice = d.T.T("recover.started")
	}
	v := &recoveryView{Status: st}
	if st.Pending != nil {
		v.ReadyAt = st.Pending.ReadyAt.UTC().Format(recoverTimeLayout)
		v.RequestedAt = st.Pending.RequestedAt.UTC().Format(recoverTimeLayout)
	}
	d.Recovery = v
	s.render(c, status, "recover", d)
	return nil
}

// recoverFail shows a refusal on the recovery page itself (a wrong code,
// a wait not over); anything else goes to the renderer.
func (s *Server) recoverFail(c *gin.Context, err error) error {
	e := s.problem(err)
	if e.Status >= 500 {
		return err
	}
	if errors.Is(err, authn.ErrLocked) {
		s.renderLocked(c, e, false, "")
		return nil
	}
	return s.renderRecover(c, e, e.Status)
}

func (s *Server) recoverSend(c *gin.Context) error {
	if s.requireSession(c) == nil {
		return nil
	}
	if _, err := s.mfa.SendRecoveryCode(c.Request.Context(), cookieID(c.Request), s.lang(c)); err != nil {
		return s.recoverFail(c, err)
	}
	c.Redirect(http.StatusSeeOther, recoverPath+"?done=sent")
	return nil
}

func (s *Server) recoverCode(c *gin.Context) error {
	if s.requireSession(c) == nil {
		return nil
	}
	code := strings.TrimSpace(c.PostForm("code"))
	if code == "" {
		return s.recoverFail(c, errMissingCode)
	}
	step, err := s.mfa.ProveRecovery(c.Request.Context(), cookieID(c.Request), code, s.client(c))
	if err != nil {
		return s.recoverFail(c, err)
	}
	if step.Granted {
		// The security page adds the new factor; adding it completes
		// the recovery.
		s.setSessionCookie(c, step.Session.ID)
		c.Redirect(http.StatusSeeOther, settingsPath+"?done=recovery_granted")
		return nil
	}
	c.Redirect(http.StatusSeeOther, recoverPath+"?done=started")
	return nil
}

// recoverCancelPage asks to confirm a cancel link: opening it changes
// nothing (mail scanners open links), the button does.
func (s *Server) recoverCancelPage(c *gin.Context) error {
	token := c.Param("token")
	if _, err := s.mfa.CheckRecoveryLink(c.Request.Context(), token); err != nil {
		return err
	}
	d := s.page(c)
	d.Title = d.T.T("recover.cancel_title")
	d.Recovery = &recoveryView{Token: token}
	s.render(c, http.StatusOK, "recover", d)
	return nil
}

func (s *Server) recoverCancel(c *gin.Context) error {
	if _, err := s.mfa.CancelRecoveryLink(c.Request.Context(), c.PostForm("token"), s.client(c)); err != nil {
		return err
	}
	d := s.page(c)
	d.Title = d.T.T("recover.cancel_title")
	d.Recovery = &recoveryView{Cancelled: true}
	s.render(c, http.StatusOK, "recover", d)
	return nil
}

// recoveryJSON is the state as the API tells it.
func recoveryJSON(st authn.RecoveryStatus) gin.H {
	out := gin.H{"status": "none", "wait_seconds": int64(st.Wait / time.Second), "has_factors": st.HasFactors}
	if st.To != "" {
		out["to"] = st.To
	}
	if p := st.Pending; p != nil {
		out["status"] = "waiting"
		if st.Ready {
			out["status"] = "ready"
		}
		if st.Granted {
			out["status"] = "granted"
		}
		out["requested_at"], out["ready_at"] = p.RequestedAt.UTC(), p.ReadyAt.UTC()
		if p.ApprovedBy != "" {
			out["approved"] = true
		}
	}
	return out
}

// apiRecovery: GET /api/recovery.
func (s *Server) apiRecovery(c *gin.Context) error {
	if s.session(c.Request) == nil {
		return errNotSignedIn
	}
	st, err := s.mfa.RecoveryState(c.Request.Context(), cookieID(c.Request))
	if err != nil {
		return err
	}
	writeJSON(c.Writer, http.StatusOK, recoveryJSON(st))
	return nil
}

// apiRecoverySend: POST /api/recovery/send.
func (s *Server) apiRecoverySend(c *gin.Context) error {
	if s.session(c.Request) == nil {
		return errNotSignedIn
	}
	sent, err := s.mfa.SendRecoveryCode(c.Request.Context(), cookieID(c.Request), s.lang(c))
	if err != nil {
		return err
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"to": sent.To, "expires_at": sent.ExpiresAt.UTC(), "resend_at": sent.ResendAt.UTC()})
	return nil
}

// apiRecoveryVerify: POST /api/recovery/verify {"code"}: starts the
// waiting period, or (once it is over) grants the session the enrolment
// of a new factor.
func (s *Server) apiRecoveryVerify(c *gin.Context) error {
	if s.session(c.Request) == nil {
		return errNotSignedIn
	}
	var in struct {
		Code string `json:"code"`
	}
	if err := c.ShouldBindJSON(&in); err != nil {
		return errBadRequest.because(err)
	}
	if strings.TrimSpace(in.Code) == "" {
		return errMissingCode
	}
	step, err := s.mfa.ProveRecovery(c.Request.Context(), cookieID(c.Request), strings.TrimSpace(in.Code), s.client(c))
	if err != nil {
		return err
	}
	if step.Granted {
		s.setSessionCookie(c, step.Session.ID)
		writeJSON(c.Writer, http.StatusOK, gin.H{"status": "granted", "redirect": settingsPath})
		return nil
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "waiting", "requested_at": step.Recovery.RequestedAt.UTC(),
		"ready_at": step.Recovery.ReadyAt.UTC()})
	return nil
}

// apiRecoveryCancel: POST /api/recovery/cancel {"token"} (the link's).
func (s *Server) apiRecoveryCancel(c *gin.Context) error {
	var in struct {
		Token string `json:"token"`
	}
	if err := c.ShouldBindJSON(&in); err != nil {
		return errBadRequest.because(err)
	}
	if _, err := s.mfa.CancelRecoveryLink(c.Request.Context(), in.Token, s.client(c)); err != nil {
		return err
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "cancelled"})
	return nil
}
