package web

import (
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/factors"
)

// Changing one's own email address: the page /.keygate/email (linked from
// the security page) and POST /api/email/change {new}, then
// /api/email/change/confirm {code}. The rules live in authn
// (email_change.go); here are the forms and the answers.

const emailChangePath = portalPrefix + "email"

// emailChangeView is what the email_change template sees.
type emailChangeView struct {
	// Elevate: a fresh second factor is needed first (Need names the
	// strength for the chooser).
	Elevate bool
	Need    string
	// Current is the account's address now ("" = none).
	Current string
	// Sent is the masked address a code went to, while the change waits
	// for it ("" = ask for the new address).
	Sent string
	// Typed is the address typed before a refusal (kept in the field).
	Typed string
}

// emailChanges serves the address change.
type emailChanges struct {
	s *Server
	e *authn.EmailChanges
}

// emailChangeRoutes registers the page and its API.
func (s *Server) emailChangeRoutes(k, api *gin.RouterGroup) {
	if s.mfa == nil {
		return
	}
	ec := &emailChanges{s: s, e: authn.NewEmailChanges(s.mfa, authn.EmailChangeOptions{Logger: s.log})}
	k.GET("/email", s.handle(ec.page))
	k.POST("/email", s.handle(ec.beginSubmit))
	k.POST("/email/confirm", s.handle(ec.confirmSubmit))
	k.POST("/email/restart", s.handle(ec.restartSubmit))
	a := api.Group("/email/change")
	a.GET("", s.handle(ec.apiState))
	a.POST("", s.handle(ec.apiBegin))
	a.POST("/confirm", s.handle(ec.apiConfirm))
}

// page shows the way to a fresh factor, the form for the new address, or
// the form for the code when one was sent.
func (ec *emailChanges) page(c *gin.Context) error {
	sess := ec.s.requireSession(c)
	if sess == nil {
		return nil
	}
	return ec.render(c, sess, nil, "", http.StatusOK)
}

func (ec *emailChanges) render(c *gin.Context, sess *authn.Session, pageErr *Error, typed string, status int) error {
	s := ec.s
	ctx := c.Request.Context()
	u, err := s.mfa.User(ctx, sess.Username)
	if err != nil {
		return err
	}
	d := s.page(c)
	d.Title = d.T.T("email.change.title")
	d.Session = sess
	v := &emailChangeView{Current: u.Email, Typed: typed}
	if err := ec.e.ProofForEmailChange(ctx, cookieID(c.Request)); errors.Is(err, authn.ErrElevationRequired) {
		v.Elevate, v.Need = true, factors.StrengthCode.String()
	} else if err != nil {
		return err
	} else if ch, err := ec.e.PendingEmailChange(ctx, cookieID(c.Request)); err == nil {
		v.Sent = ch.To
	} else if !errors.Is(err, authn.ErrNoEmailChange) {
		return err
	}
	d.setError(pageErr)
	d.Redirect = emailChangePath
	d.EmailChange = v
	s.render(c, status, "email_change", d)
	return nil
}

// refused renders the page again with a refusal, or hands a technical
// failure to the error page.
func (ec *emailChanges) refused(c *gin.Context, sess *authn.Session, err error, typed string) error {
	e := ec.s.problem(err)
	if e.Status >= 500 {
		return err
	}
	return ec.render(c, sess, e, typed, e.Status)
}

// beginSubmit is the form's POST of the new address.
func (ec *emailChanges) beginSubmit(c *gin.Context) error {
	s := ec.s
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	next := c.PostForm("new")
	if _, err := ec.e.BeginEmailChange(c.Request.Context(), cookieID(c.Request), next, s.lang(c), s.client(c)); err != nil {
		return ec.refused(c, sess, err, next)
	}
	c.Redirect(http.StatusSeeOther, emailChangePath)
	return nil
}

// confirmSubmit is the form's POST of the code: done, the security page
// says so.
func (ec *emailChanges) confirmSubmit(c *gin.Context) error {
	s := ec.s
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	ns, _, err := ec.e.ConfirmEmailChange(c.Request.Context(), cookieID(c.Request), c.PostForm("code"), s.lang(c), s.client(c))
	if err != nil {
		return ec.refused(c, sess, err, "")
	}
	s.settingsDone(c, ns, "email_changed")
	return nil
}

// restartSubmit drops the change waiting for its code: another address.
func (ec *emailChanges) restartSubmit(c *gin.Context) error {
	sess := ec.s.requireSession(c)
	if sess == nil {
		return nil
	}
	if err := ec.e.CancelEmailChange(c.Request.Context(), cookieID(c.Request)); err != nil {
		return err
	}
	c.Redirect(http.StatusSeeOther, emailChangePath)
	return nil
}

// emailChangeState is the API's answer about a change.
type emailChangeState struct {
	Status    string     `json:"status"`
	To        string     `json:"to,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	ResendAt  *time.Time `json:"resend_at,omitempty"`
}

func stateOf(status string, ch authn.EmailChange) emailChangeState {
	return emailChangeState{Status: status, To: ch.To, ExpiresAt: &ch.ExpiresAt, ResendAt: &ch.ResendAt}
}

// apiState: GET /api/email/change → {status: "code_sent", to, expires_at,
// resend_at} while a change waits for its code, {status: "none"} else.
func (ec *emailChanges) apiState(c *gin.Context) error {
	if ec.s.session(c.Request) == nil {
		return errNotSignedIn
	}
	ch, err := ec.e.PendingEmailChange(c.Request.Context(), cookieID(c.Request))
	if errors.Is(err, authn.ErrNoEmailChange) {
		writeJSON(c.Writer, http.StatusOK, emailChangeState{Status: "none"})
		return nil
	}
	if err != nil {
		return err
	}
	writeJSON(c.Writer, http.StatusOK, stateOf("code_sent", ch))
	return nil
}

// apiBegin: POST /api/email/change {new} → 202 {status: "code_sent", to,
// expires_at, resend_at}; the same answer whether or not another account
// uses the address (a code goes only to a free one).
func (ec *emailChanges) apiBegin(c *gin.Context) error {
	s := ec.s
	if s.session(c.Request) == nil {
		return errNotSignedIn
	}
	var req struct {
		New string `json:"new"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	ch, err := ec.e.BeginEmailChange(c.Request.Context(), cookieID(c.Request), req.New, s.lang(c), s.client(c))
	if err != nil {
		return err
	}
	writeJSON(c.Writer, http.StatusAccepted, stateOf("code_sent", ch))
	return nil
}

// apiConfirm: POST /api/email/change/confirm {code} → {status: "changed",
// email} with the session's new cookie.
func (ec *emailChanges) apiConfirm(c *gin.Context) error {
	s := ec.s
	if s.session(c.Request) == nil {
		return errNotSignedIn
	}
	var req struct {
		Code string `json:"code"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	ns, u, err := ec.e.ConfirmEmailChange(c.Request.Context(), cookieID(c.Request), req.Code, s.lang(c), s.client(c))
	if err != nil {
		return err
	}
	s.setSessionCookie(c, ns.ID)
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "changed", "email": u.Email})
	return nil
}
