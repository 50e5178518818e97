package web

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
)

// The person's account pages beyond the security page: recent activity,
// their sessions, unlocking a locked account by email, and "this wasn't
// me". They need the second-factor flows (MFA), which hold the activity log
// and the regulator.

// sessionLister is what the sessions page needs beyond SessionStore;
// authn.Sessions has it. Checked once, when the routes are registered.
type sessionLister interface {
	ListUser(username string) []*authn.Session
	RevokeHandle(ctx context.Context, username, handle string) error
}

// activityLimit is how many events the activity page shows.
const activityLimit = 100

// accountView is what the account templates see.
type accountView struct {
	Events   []eventView
	Sessions []sessionView
	// Unlock page: the ticket from a lock shown to right credentials, the
	// masked address a code goes to, and whether one was sent.
	Ticket   string
	MaskedTo string
	CodeSent bool
	Token    string // "this wasn't me"
}

type eventView struct {
	Date, Time, Kind, Factor, Detail, IP, Browser string
	Failure                                       bool
}

type sessionView struct {
	Handle, Browser, IP, Created, LastSeen string
	Current                                bool
}

// accountRoutes registers the account pages and their JSON twins.
func (s *Server) accountRoutes(k, api *gin.RouterGroup) {
	if s.mfa == nil {
		return
	}
	k.GET("/activity", s.handle(s.activityPage))
	api.GET("/activity", s.handle(s.apiActivity))
	if _, ok := s.sessions.(sessionLister); ok {
		k.GET("/sessions", s.handle(s.sessionsPage))
		k.POST("/sessions/:handle/revoke", s.handle(s.sessionRevoke))
		api.GET("/sessions", s.handle(s.apiSessions))
		api.DELETE("/sessions/:handle", s.handle(s.apiSessionRevoke))
	}
	k.POST("/unlock/send", s.handle(s.unlockSend))
	k.POST("/unlock", s.handle(s.unlockSubmit))
	k.GET("/not-me/:token", s.handle(s.notMePage))
	k.POST("/not-me", s.handle(s.notMeSubmit))
}

// client describes the request for regulation, the activity log and
// notices.
func (s *Server) client(c *gin.Context) authn.Client {
	cl := authn.Client{UserAgent: c.Request.UserAgent(), Lang: langOf(s.tr.pick(c.GetHeader("Accept-Language")))}
	if a := clientAddr(c); a.IsValid() {
		cl.IP = a.String()
	}
	return cl
}

// activity is the log, or nil without second factors (its methods then do
// nothing).
func (s *Server) activity() *activity.Log {
	if s.mfa == nil {
		return nil
	}
	return s.mfa.ActivityLog()
}

func (s *Server) events(c *gin.Context, username string) ([]activity.Event, error) {
	return s.mfa.Activity(c.Request.Context(), username, activityLimit)
}

// activityPage lists the person's recent sign-ins, failures and security
// changes with when, where from and how.
func (s *Server) activityPage(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil // sent to sign in
	}
	events, err := s.events(c, sess.Username)
	if err != nil {
		return err
	}
	d := s.page(c)
	d.Title = d.T.T("activity.title")
	v := &accountView{}
	for _, e := range events {
		ev := eventView{Date: e.At.UTC().Format("2006-01-02"), Time: e.At.UTC().Format("15:04:05 UTC"), Kind: d.T.T("activity.kind." + e.Kind),
			Detail: e.Detail, IP: e.IP, Browser: e.Browser,
			Failure: e.Kind == activity.EventSignInFailed || e.Kind == activity.EventSecondFactorFailed || e.Kind == activity.EventLocked ||
				e.Kind == activity.EventChangeRefused}
		if e.Factor != "" {
			ev.Factor = d.T.T("factor." + e.Factor)
		}
		if e.Kind == activity.EventLocked {
			// The detail of a lock is when it ends, for people to read.
			if t, err := time.Parse(time.RFC3339, e.Detail); err == nil {
				ev.Detail = d.T.Tf("activity.locked_until", t.UTC().Format("2006-01-02 15:04 UTC"))
			}
		}
		v.Events = append(v.Events, ev)
	}
	d.Account = v
	s.render(c, http.StatusOK, "activity", d)
	return nil
}

// apiActivity: GET /api/activity.
func (s *Server) apiActivity(c *gin.Context) error {
	sess := s.session(c.Request)
	if sess == nil {
		return errNotSignedIn
	}
	events, err := s.events(c, sess.Username)
	if err != nil {
		return err
	}
	if events == nil {
		events = []activity.Event{}
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"events": events})
	return nil
}

func (s *Server) sessionViews(sess *authn.Session) []sessionView {
	var out []sessionView
	for _, o := range s.sessions.(sessionLister).ListUser(sess.Username) {
		out = append(out, sessionView{Handle: o.Handle, Browser: activity.DescribeUserAgent(o.UserAgent), IP: o.IP,
			Created: o.CreatedAt.UTC().Format("2006-01-02 15:04 UTC"), LastSeen: o.LastSeen.UTC().Format("2006-01-02 15:04 UTC"),
			Current: o.Handle == sess.Handle})
	}
	return out
}

// sessionsPage lists the person's sessions (browser, address, last use),
// each with a button to end it, and "sign out everywhere".
func (s *Server) sessionsPage(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil // sent to sign in
	}
	d := s.page(c)
	d.Title = d.T.T("sessions.title")
	if c.Query("done") == "revoked" {
		d.Notice = d.T.T("sessions.revoked")
	}
	d.Account = &accountView{Sessions: s.sessionViews(sess)}
	s.render(c, http.StatusOK, "sessions", d)
	return nil
}

// revokeSession ends one of the person's sessions by its handle; it says
// whether that was the session of this very browser.
func (s *Server) revokeSession(c *gin.Context, sess *authn.Session, handle string) (bool, error) {
	// authn.ErrSessionNotFound is answered 404 by authn's table.
	if err := s.sessions.(sessionLister).RevokeHandle(c.Request.Context(), sess.Username, handle); err != nil {
		return false, err
	}
	s.activity().Note(c.Request.Context(), sess.Username, activity.EventSessionRevoked, handle, s.client(c))
	current := handle == sess.Handle
	if current {
		s.clearSessionCookie(c)
	}
	return current, nil
}

func (s *Server) sessionRevoke(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil // sent to sign in
	}
	current, err := s.revokeSession(c, sess, c.Param("handle"))
	if err != nil {
		return err
	}
	if current {
		c.Redirect(http.StatusSeeOther, portalPrefix+"signed-out")
		return nil
	}
	c.Redirect(http.StatusSeeOther, portalPrefix+"sessions?done=revoked")
	return nil
}

// apiSessions: GET /api/sessions.
func (s *Server) apiSessions(c *gin.Context) error {
	sess := s.session(c.Request)
	if sess == nil {
		return errNotSignedIn
	}
	type row struct {
		Handle   string    `json:"handle"`
		Browser  string    `json:"browser"`
		IP       string    `json:"ip"`
		Created  time.Time `json:"created_at"`
		LastSeen time.Time `json:"last_seen"`
		Current  bool      `json:"current"`
	}
	out := []row{}
	for _, o := range s.sessions.(sessionLister).ListUser(sess.Username) {
		out = append(out, row{o.Handle, activity.DescribeUserAgent(o.UserAgent), o.IP, o.CreatedAt, o.LastSeen, o.Handle == sess.Handle})
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"sessions": out})
	return nil
}

// apiSessionRevoke: DELETE /api/sessions/:handle.
func (s *Server) apiSessionRevoke(c *gin.Context) error {
	sess := s.session(c.Request)
	if sess == nil {
		return errNotSignedIn
	}
	current, err := s.revokeSession(c, sess, c.Param("handle"))
	if err != nil {
		return err
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "revoked", "current": current})
	return nil
}

// renderLocked shows a lock to someone who gave right credentials: until
// when, and (with a ticket) the way to unlock it now by email.
func (s *Server) renderLocked(c *gin.Context, e *Error, sent bool, masked string) {
	d := s.page(c)
	d.Title = d.T.T("locked.title")
	d.Error = message(d.T, e)
	v := &accountView{CodeSent: sent, MaskedTo: masked}
	if t, ok := e.Extra["unlock_ticket"].(string); ok {
		v.Ticket = t
	}
	if v.Ticket != "" && masked == "" {
		if m, err := s.mfa.UnlockTarget(c.Request.Context(), v.Ticket); err == nil {
			v.MaskedTo = m
		} else {
			v.Ticket = "" // no way to send a code: only waiting or an admin helps
		}
	}
	d.Account = v
	status := e.Status
	if status == 0 {
		status = http.StatusTooManyRequests
	}
	s.render(c, status, "locked", d)
}

// unlockForm reads the ticket and code of the unlock forms (form fields,
// or a JSON body from scripts).
func (s *Server) unlockForm(c *gin.Context) (ticket, code string, err error) {
	if wantsJSON(c.Request) && c.ContentType() == "application/json" {
		var req struct {
			Ticket string `json:"ticket"`
			Code   string `json:"code"`
		}
		if err := decodeJSON(c, &req); err != nil {
			return "", "", err
		}
		return req.Ticket, req.Code, nil
	}
	return c.PostForm("ticket"), c.PostForm("code"), nil
}

// unlockFail shows a refused unlock step on the unlock page itself, so
// the person can try again without signing in again; scripts, failures
// and an expired ticket (nothing to try again with) get the renderer's
// answer.
func (s *Server) unlockFail(c *gin.Context, ticket string, err error) error {
	e := s.problem(err)
	if wantsJSON(c.Request) || e.Status >= 500 || errors.Is(err, authn.ErrTicketInvalid) {
		return e
	}
	d := s.page(c)
	d.Title = d.T.T("locked.title")
	d.Error = message(d.T, e)
	v := &accountView{Ticket: ticket, CodeSent: true}
	v.MaskedTo, _ = s.mfa.UnlockTarget(c.Request.Context(), ticket)
	d.Account = v
	s.render(c, e.Status, "locked", d)
	return nil
}

// unlockSend mails an unlock code (POST /unlock/send {ticket}).
func (s *Server) unlockSend(c *gin.Context) error {
	ticket, _, err := s.unlockForm(c)
	if err != nil {
		return err
	}
	sent, err := s.mfa.SendUnlockCode(c.Request.Context(), ticket, langOf(s.tr.pick(c.GetHeader("Accept-Language"))))
	if err != nil {
		return s.unlockFail(c, ticket, err)
	}
	if wantsJSON(c.Request) {
		writeJSON(c.Writer, http.StatusOK, gin.H{"status": "sent", "to": sent.To, "resend_at": sent.ResendAt, "expires_at": sent.ExpiresAt})
		return nil
	}
	d := s.page(c)
	d.Title = d.T.T("locked.title")
	d.Account = &accountView{Ticket: ticket, CodeSent: true, MaskedTo: sent.To}
	s.render(c, http.StatusOK, "locked", d)
	return nil
}

// unlockSubmit checks the unlock code (POST /unlock {ticket, code}).
func (s *Server) unlockSubmit(c *gin.Context) error {
	ticket, code, err := s.unlockForm(c)
	if err != nil {
		return err
	}
	if code == "" {
		return s.unlockFail(c, ticket, errMissingCode)
	}
	user, err := s.mfa.Unlock(c.Request.Context(), ticket, code, s.client(c))
	if err != nil {
		return s.unlockFail(c, ticket, err)
	}
	s.log.Info("account unlocked by email code", "user", user, "ip", s.client(c).IP)
	if wantsJSON(c.Request) {
		writeJSON(c.Writer, http.StatusOK, gin.H{"status": "unlocked"})
		return nil
	}
	d := s.page(c)
	d.Title = d.T.T("unlocked.title")
	d.Paragraphs = []string{d.T.T("unlocked.text")}
	d.LinkURL, d.LinkText = portalPrefix+"login", d.T.T("signedout.again")
	s.render(c, http.StatusOK, "message", d)
	return nil
}

// notMePage is where a notice's "This wasn't me" link lands: it explains
// what will happen and asks to confirm with a button (a GET never changes
// anything: mail scanners follow links).
func (s *Server) notMePage(c *gin.Context) error {
	token := c.Param("token")
	if err := s.mfa.CheckNotMe(c.Request.Context(), token); err != nil {
		return err
	}
	d := s.page(c)
	d.Title = d.T.T("notme.title")
	d.Account = &accountView{Token: token}
	s.render(c, http.StatusOK, "notme", d)
	return nil
}

// notMeSubmit secures the account: every session ends, remembered devices
// are forgotten, and the account stays locked until unlocked by email or
// by an admin.
func (s *Server) notMeSubmit(c *gin.Context) error {
	token := c.PostForm("token")
	if wantsJSON(c.Request) && c.ContentType() == "application/json" {
		var req struct {
			Token string `json:"token"`
		}
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
		token = req.Token
	}
	user, err := s.mfa.ReportNotMe(c.Request.Context(), token, s.client(c))
	if err != nil {
		return err
	}
	s.log.Warn("account reported as used by someone else: signed out everywhere and locked", "user", user, "ip", s.client(c).IP)
	s.clearSessionCookie(c)
	if wantsJSON(c.Request) {
		writeJSON(c.Writer, http.StatusOK, gin.H{"status": "locked"})
		return nil
	}
	d := s.page(c)
	d.Title = d.T.T("notme.done_title")
	d.Paragraphs = []string{d.T.T("notme.done_text"), d.T.T("notme.done_next")}
	d.LinkURL, d.LinkText = portalPrefix+"login", d.T.T("notme.done_link")
	s.render(c, http.StatusOK, "message", d)
	return nil
}
