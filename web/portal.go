package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/policy"
)

// Statuses of a sign-in step (the "status" of POST /.keygate/api/login).
const (
	stepOK           = "ok"
	stepSecondFactor = "second_factor_required"
	stepDenied       = "denied"
)

// step is where a signed-in person goes next.
type step struct {
	Status   string   `json:"status"`
	Factors  []string `json:"factors,omitempty"` // with status second_factor: those the person has and the rule accepts
	Redirect string   `json:"redirect"`
}

// signIn checks the password and starts a fresh session. Unknown users,
// disabled users, wrong passwords and locked accounts get one and the same
// answer; only right credentials learn that a lock holds (authn decides).
//
// tz is the IANA time zone the browser reported (the form's hidden field,
// the API's "tz"), kept for the mails about this account; a value that is
// not a zone is dropped.
func (s *Server) signIn(c *gin.Context, login, password, rd, tz string) (*authn.Session, step, error) {
	if strings.TrimSpace(login) == "" || password == "" {
		return nil, step{}, errMissingCreds
	}
	r := c.Request
	u, err := s.users.SignIn(r.Context(), login, password, s.signInClient(c, tz))
	s.metrics.SignIn(policy.FactorPassword, err)
	var locked *authn.LockedError
	switch {
	case errors.Is(err, authn.ErrInvalidCredentials), errors.As(err, &locked):
		return nil, step{}, err // authn says how they are answered
	case err != nil:
		// The renderer answers it: a database out of reach is "try again
		// shortly" (store.Problems), anything else internal.
		return nil, step{}, fmt.Errorf("authenticate: %w", err)
	}
	// Every session the browser named ends here: a new sign-in never
	// inherits an ID that someone else may have planted (fixation), and
	// no planted cookie stays live beside the new one to shadow it.
	for _, old := range sessionCookieIDs(r) {
		_ = s.sessions.Revoke(r.Context(), old)
	}
	sess, err := s.sessions.Create(r.Context(), u, policy.Proof{Kind: policy.FactorPassword, At: s.now()},
		authn.Meta{IP: clientAddr(c).String(), UserAgent: r.UserAgent()})
	if err != nil {
		return nil, step{}, fmt.Errorf("create session: %w", err)
	}
	if s.mfa != nil {
		// A remembered device lets this session skip the second factor
		// where the rule allows it; the token is checked once, here.
		if token, ok := readCookie(r, deviceCookie); ok {
			if sess, err = s.mfa.UseDevice(r.Context(), sess, token, clientAddr(c).String()); err != nil {
				return nil, step{}, errInternal.because(fmt.Errorf("remembered device: %w", err))
			}
		}
	}
	s.setSessionCookie(c, sess.ID)
	s.expireShadows(c.Writer, r, s.redirectOrDefault(rd))
	s.log.Info("sign-in", "user", u.Username, "factor", policy.FactorPassword, "ip", clientAddr(c).String())
	return sess, s.nextStep(c, sess, rd), nil
}

// nextStep asks the policy what the redirect target needs from this session.
func (s *Server) nextStep(c *gin.Context, sess *authn.Session, rd string) step {
	target := s.redirectOrDefault(rd)
	d, ok := s.decisionFor(c, sess, target)
	if !ok {
		return step{Status: stepOK, Redirect: target}
	}
	switch d.Outcome {
	case policy.Allow:
		if hasParked(c.Request) {
			// A form waits to be sent on; the resume page does it.
			return step{Status: stepOK, Redirect: portalPrefix + "resume"}
		}
		return step{Status: stepOK, Redirect: target}
	case policy.Challenge:
		return step{Status: stepSecondFactor, Factors: s.offered(c, sess, d.Acceptable), Redirect: portalPrefix + "second-factor?rd=" + url.QueryEscape(target)}
	default:
		return step{Status: stepDenied, Redirect: portalPrefix + "denied"}
	}
}

// offered is what the next step can ask of this person: the factors the
// rule accepts that they have (the chooser shows the same). Naming a kind
// they never enrolled would send an API client to a dead end; the chooser
// explains what to do when the list is empty.
func (s *Server) offered(c *gin.Context, sess *authn.Session, acceptable []string) []string {
	out := []string{}
	if s.mfa == nil {
		return out
	}
	methods, err := s.methodsFor(c.Request.Context(), sess.Username, acceptable)
	if err != nil {
		// The chooser will show the store's problem; the step itself
		// stays right without a list.
		s.log.WarnContext(c.Request.Context(), "listing second factors", "error", err)
		return out
	}
	for _, m := range methods {
		out = append(out, m.Kind)
	}
	return out
}

// decisionFor evaluates the policy for a GET of target as this session.
// ok is false for keygate's own pages, which the policy does not cover, and
// for paths the gate refuses outright.
func (s *Server) decisionFor(c *gin.Context, sess *authn.Session, target string) (policy.Decision, bool) {
	u, err := url.Parse(target)
	if err != nil {
		return policy.Decision{}, false
	}
	host := hostOnly(c.Request.Host)
	if u.Host != "" {
		host = strings.ToLower(u.Hostname())
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	// Judged as the gate will judge it when the browser gets there, in
	// every reading: a looser answer here than there would send a person
	// round between the portal and the gate.
	q := question{pol: s.policy.Load(), up: s.upstream(host), host: host, path: p, method: http.MethodGet,
		ip: clientAddr(c), subject: subjectOf(sess), now: s.now(), ask: s.askOf(sess)}
	d, err := decide(&q, nil)
	if err != nil {
		return policy.Decision{}, false
	}
	return d, true
}

func (s *Server) setSessionCookie(c *gin.Context, id string) {
	ck := s.cookie(c.Request, id, 0)
	http.SetCookie(c.Writer, ck)
	s.expireStale(c.Writer, c.Request, ck)
}

func (s *Server) clearSessionCookie(c *gin.Context) {
	ck := s.cookie(c.Request, "", -1)
	http.SetCookie(c.Writer, ck)
	s.expireStale(c.Writer, c.Request, ck)
}

// cookie builds the session cookie (see cookieFor for its name and
// scope). It is a browser-session cookie (no Expires): the server enforces
// idle and absolute limits, and a closed browser on a shared computer
// should not stay signed in.
func (s *Server) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return s.cookieFor(r, CookieName, value, maxAge)
}

func (s *Server) page(c *gin.Context) pageData {
	return pageData{T: s.tr.pick(c.GetHeader("Accept-Language")), RecoveryOffered: s.mfa != nil && s.mfa.RecoveryEnabled()}
}

func (s *Server) loginPage(c *gin.Context) error {
	rd := c.Query("rd")
	if sess := s.session(c.Request); sess != nil {
		st := s.nextStep(c, sess, rd)
		c.Redirect(http.StatusFound, st.Redirect)
		return nil
	}
	d := s.page(c)
	d.Title = d.T.T("login.heading")
	d.Redirect = s.safeRedirect(rd)
	d.Passkeys = s.mfa != nil && s.mfa.PasskeysEnabled()
	s.render(c, http.StatusOK, "login", d)
	return nil
}

func (s *Server) loginSubmit(c *gin.Context) error {
	login, password, rd := c.PostForm("username"), c.PostForm("password"), c.PostForm("rd")
	_, st, err := s.signIn(c, login, password, rd, c.PostForm("tz"))
	if err != nil {
		e := s.problem(err)
		switch {
		case errors.Is(err, authn.ErrLocked):
			s.renderLocked(c, e, false, "")
		case e.Status < 500:
			// Show the form again, with the message, keeping what the
			// person typed except the password.
			d := s.page(c)
			d.Title = d.T.T("login.heading")
			d.Error = message(d.T, e)
			d.Redirect = s.safeRedirect(rd)
			d.Username = login
			s.render(c, e.Status, "login", d)
		default:
			return e
		}
		return nil
	}
	c.Redirect(http.StatusSeeOther, st.Redirect)
	return nil
}

func (s *Server) homePage(c *gin.Context) error {
	sess := s.session(c.Request)
	if sess == nil {
		c.Redirect(http.StatusFound, portalPrefix+"login")
		return nil
	}
	d := s.page(c)
	d.Title = d.T.T("home.title")
	d.Session = sess
	d.Redirect = s.defaultRedirect
	s.render(c, http.StatusOK, "home", d)
	return nil
}

func (s *Server) logoutPage(c *gin.Context) error {
	d := s.page(c)
	d.Title = d.T.T("logout.title")
	s.render(c, http.StatusOK, "logout", d)
	return nil
}

func (s *Server) logoutSubmit(c *gin.Context) error {
	if err := s.signOut(c, c.PostForm("everywhere") == "1"); err != nil {
		return err
	}
	c.Redirect(http.StatusSeeOther, portalPrefix+"signed-out")
	return nil
}

// signOut ends this session, or every session of its user.
func (s *Server) signOut(c *gin.Context, everywhere bool) error {
	r := c.Request
	s.clearSessionCookie(c)
	sess := s.session(r)
	if sess == nil {
		// Nothing live, or live sessions of several users (see
		// liveSession): whatever this browser holds ends.
		for _, id := range sessionCookieIDs(r) {
			_ = s.sessions.Revoke(r.Context(), id)
		}
		return nil
	}
	if everywhere {
		n, err := s.sessions.RevokeUser(r.Context(), sess.Username)
		if err != nil {
			return errInternal.because(fmt.Errorf("revoke sessions: %w", err))
		}
		s.activity().Note(r.Context(), sess.Username, activity.EventSignedOutAll, strconv.Itoa(n), s.client(c))
		s.log.Info("sign-out everywhere", "user", sess.Username, "sessions", n)
		return nil
	}
	// Every session this browser names ends, the live one first: a
	// stale or planted cookie left beside it must not come back to life
	// as "the" session once the live one is gone.
	_, live := s.liveSession(r, s.now())
	if err := s.sessions.Revoke(r.Context(), live); err != nil {
		return errInternal.because(fmt.Errorf("revoke session: %w", err))
	}
	for _, id := range sessionCookieIDs(r) {
		if id != live {
			_ = s.sessions.Revoke(r.Context(), id)
		}
	}
	s.log.Info("sign-out", "user", sess.Username)
	return nil
}

func (s *Server) signedOutPage(c *gin.Context) error {
	d := s.page(c)
	d.Title = d.T.T("signedout.title")
	d.Paragraphs = []string{d.T.T("signedout.text")}
	d.LinkURL, d.LinkText = portalPrefix+"login", d.T.T("signedout.again")
	s.render(c, http.StatusOK, "message", d)
	return nil
}

func (s *Server) deniedPage(c *gin.Context) error {
	d := s.page(c)
	d.Title = d.T.T("denied.title")
	d.Paragraphs = []string{d.T.T("denied.text")}
	d.LinkURL, d.LinkText = portalPrefix+"logout", d.T.T("denied.other_account")
	s.render(c, http.StatusForbidden, "message", d)
	return nil
}
