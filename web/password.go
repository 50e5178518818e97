package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/factors"
)

// A person's own password: the change page and POST /api/password (signed
// in), and "Forgot your password?" with its JSON twin under
// /api/password/reset/…. The rules live in authn (password.go); here are
// the forms, the reset's cookie and the answers.

const (
	passwordPath = portalPrefix + "password"
	resetPath    = portalPrefix + "password/reset"
	// resetCookie names the reset under way in this browser (its token;
	// the server keeps the state). Only the reset's own routes read it: it
	// is no session, and the gate knows nothing of it.
	resetCookie = "keygate_reset"
)

// errPasswordMismatch: the new password and its confirmation differ
// (forms only; the API takes the password once).
var errPasswordMismatch = &Error{Status: http.StatusBadRequest, Code: "password_mismatch", Key: "err.password_mismatch"}

// passwordView is what the password templates see.
type passwordView struct {
	// Change page: a fresh second factor is needed first (Need names the
	// strength for the chooser).
	Elevate bool
	Need    string
	// Reset page: the step shown ("" = ask for the login), the factors
	// that may confirm it, and how long it stays open.
	Step      string
	Factors   []authn.Method
	ValidFor  time.Duration
	MinLength int
	// Reasons are the policy's reasons for refusing a new password, in
	// the page's language.
	Reasons []string
}

// passwords serves the password flows.
type passwords struct {
	s *Server
	p *authn.Passwords
}

// passwordRoutes registers the change and reset pages and their API.
func (s *Server) passwordRoutes(k, api *gin.RouterGroup) {
	if s.mfa == nil {
		return
	}
	pw := &passwords{s: s, p: authn.NewPasswords(s.mfa, authn.PasswordOptions{Logger: s.log})}
	k.GET("/password", s.handle(pw.changePage))
	k.POST("/password", s.handle(pw.changeSubmit))
	api.POST("/password", s.handle(pw.apiChange))

	k.GET("/password/reset", s.handle(pw.resetPage))
	k.POST("/password/reset", s.handle(pw.resetBegin))
	k.POST("/password/reset/code", s.handle(pw.resetCode))
	k.POST("/password/reset/factor/:kind", s.handle(pw.resetFactor))
	k.POST("/password/reset/finish", s.handle(pw.resetFinish))
	k.POST("/password/reset/restart", s.handle(pw.resetRestart))

	r := api.Group("/password/reset")
	r.GET("", s.handle(pw.apiResetState))
	r.POST("/begin", s.handle(pw.apiResetBegin))
	r.POST("/verify", s.handle(pw.apiResetVerify))
	r.POST("/factor/:kind/begin", s.handle(pw.apiResetFactorBegin))
	r.POST("/factor/:kind/verify", s.handle(pw.apiResetFactorVerify))
	r.POST("/finish", s.handle(pw.apiResetFinish))
}

// ---------------------------------------------------------------------
// Change

// changePage shows the change form, or first the way to a fresh second
// factor when the account has one and this session has none lately.
func (pw *passwords) changePage(c *gin.Context) error {
	sess := pw.s.requireSession(c)
	if sess == nil {
		return nil
	}
	return pw.renderChange(c, sess, nil, nil, http.StatusOK)
}

func (pw *passwords) renderChange(c *gin.Context, sess *authn.Session, pageErr *Error, reasons []string, status int) error {
	s := pw.s
	st, err := s.mfa.State(c.Request.Context(), sess)
	if err != nil {
		return err
	}
	d := s.page(c)
	d.Title = d.T.T("password.change.title")
	d.Session = sess
	v := &passwordView{MinLength: pw.p.MinLength(), Reasons: reasons}
	if st.HasFactors && st.Have < factors.StrengthCode {
		v.Elevate, v.Need = true, factors.StrengthCode.String()
	}
	d.setError(pageErr)
	d.Redirect = passwordPath
	d.Password = v
	s.render(c, status, "password", d)
	return nil
}

// changeSubmit is the form's POST: done, the security page says so.
func (pw *passwords) changeSubmit(c *gin.Context) error {
	s := pw.s
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	next := c.PostForm("new")
	if next != c.PostForm("confirm") {
		return pw.renderChange(c, sess, errPasswordMismatch, nil, errPasswordMismatch.Status)
	}
	ns, err := pw.p.ChangePassword(c.Request.Context(), cookieID(c.Request), c.PostForm("current"), next, s.client(c))
	if err != nil {
		e := s.problem(err)
		if e.Status >= 500 {
			return err
		}
		return pw.renderChange(c, sess, e, pw.reasons(c, err), e.Status)
	}
	s.settingsDone(c, ns, "password_changed")
	return nil
}

// changeRequest is the body of POST /api/password.
type changeRequest struct {
	Current string `json:"current"`
	New     string `json:"new"`
}

// apiChange: POST /api/password {current, new} → {status: "changed"} with
// the session's new cookie; the other sessions have ended.
func (pw *passwords) apiChange(c *gin.Context) error {
	s := pw.s
	if s.session(c.Request) == nil {
		return errNotSignedIn
	}
	var req changeRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Current == "" || req.New == "" {
		return errMissingCreds
	}
	ns, err := pw.p.ChangePassword(c.Request.Context(), cookieID(c.Request), req.Current, req.New, s.client(c))
	if err != nil {
		return err
	}
	s.setSessionCookie(c, ns.ID)
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "changed"})
	return nil
}

// reasons are the policy's reasons for refusing a new password, in the
// page's language ("" when err is no such refusal).
func (pw *passwords) reasons(c *gin.Context, err error) []string {
	var ne *authn.NewPasswordError
	if !errors.As(err, &ne) {
		return nil
	}
	t := pw.s.page(c).T
	out := make([]string, 0, len(ne.Codes))
	for _, code := range ne.Codes {
		key := "password.reason." + code
		switch code {
		case authn.PolicyCodeTooShort:
			out = append(out, t.Tf(key, ne.MinLength))
		case authn.PolicyCodeTooLong:
			out = append(out, t.Tf(key, authn.MaxPasswordLength))
		default:
			out = append(out, t.T(key))
		}
	}
	return out
}

// ---------------------------------------------------------------------
// Reset: pages

// resetToken is the reset this browser has under way ("" = none).
func resetToken(r *http.Request) string {
	v, _ := readCookie(r, resetCookie)
	return v
}

// setResetCookie names the reset's token (a new one at every step) until
// the reset's window ends; SameSite=Strict: no other site starts a step.
func (pw *passwords) setResetCookie(c *gin.Context, rs authn.Reset) {
	age := max(int(rs.ExpiresAt.Sub(pw.s.now()).Seconds()), 1)
	ck := pw.s.cookieFor(c.Request, resetCookie, rs.Token, age)
	ck.SameSite = http.SameSiteStrictMode
	http.SetCookie(c.Writer, ck)
}

func (pw *passwords) clearResetCookie(c *gin.Context) {
	ck := pw.s.cookieFor(c.Request, resetCookie, "", -1)
	ck.SameSite = http.SameSiteStrictMode
	http.SetCookie(c.Writer, ck)
}

// resetPage shows the step of the reset under way, or asks for the login.
func (pw *passwords) resetPage(c *gin.Context) error {
	var rs authn.Reset
	if tok := resetToken(c.Request); tok != "" {
		var err error
		if rs, err = pw.p.ResetState(c.Request.Context(), tok); err != nil {
			if !errors.Is(err, authn.ErrResetExpired) {
				return err
			}
			pw.clearResetCookie(c)
			rs = authn.Reset{}
		}
	}
	return pw.renderReset(c, rs, nil, nil, http.StatusOK)
}

func (pw *passwords) renderReset(c *gin.Context, rs authn.Reset, pageErr *Error, reasons []string, status int) error {
	s := pw.s
	d := s.page(c)
	d.Title = d.T.T("password.reset.title")
	v := &passwordView{Step: string(rs.Step), Factors: rs.Factors, MinLength: pw.p.MinLength(), Reasons: reasons}
	if rs.Step != "" {
		v.ValidFor = rs.ExpiresAt.Sub(s.now()).Round(time.Minute)
	}
	d.setError(pageErr)
	d.Username = c.PostForm("login")
	d.Password = v
	s.render(c, status, "password_reset", d)
	return nil
}

// resetFail shows a refused step on the reset page: a reset that is over
// starts again (its cookie goes), anything else stays at its step.
func (pw *passwords) resetFail(c *gin.Context, err error) error {
	e := pw.s.problem(err)
	if e.Status >= 500 {
		return err
	}
	var rs authn.Reset
	if errors.Is(err, authn.ErrResetExpired) || errors.Is(err, authn.ErrResetDead) || errors.Is(err, authn.ErrResetNoFactor) {
		pw.clearResetCookie(c)
	} else if tok := resetToken(c.Request); tok != "" {
		if cur, serr := pw.p.ResetState(c.Request.Context(), tok); serr == nil {
			rs = cur
		}
	}
	return pw.renderReset(c, rs, e, pw.reasons(c, err), e.Status)
}

// resetBegin asks for a code: the same page follows whatever was typed.
func (pw *passwords) resetBegin(c *gin.Context) error {
	s := pw.s
	rs, err := pw.p.BeginReset(c.Request.Context(), c.PostForm("login"), s.lang(c), s.client(c))
	if err != nil {
		return err
	}
	pw.setResetCookie(c, rs)
	c.Redirect(http.StatusSeeOther, resetPath)
	return nil
}

func (pw *passwords) resetCode(c *gin.Context) error {
	rs, err := pw.p.VerifyResetCode(c.Request.Context(), resetToken(c.Request), c.PostForm("code"), pw.s.client(c))
	if err != nil {
		return pw.resetFail(c, err)
	}
	pw.setResetCookie(c, rs)
	c.Redirect(http.StatusSeeOther, resetPath)
	return nil
}

// resetFactor confirms the reset with a code factor (an app, a recovery
// code, an SMS sent by its "send" button: code empty).
func (pw *passwords) resetFactor(c *gin.Context) error {
	s := pw.s
	ctx, kind, tok := c.Request.Context(), c.Param("kind"), resetToken(c.Request)
	if c.PostForm("send") == "1" {
		if _, err := pw.p.BeginResetFactor(ctx, tok, kind, s.lang(c), s.client(c)); err != nil {
			return pw.resetFail(c, err)
		}
		c.Redirect(http.StatusSeeOther, resetPath+"?sent="+url.QueryEscape(kind))
		return nil
	}
	rs, err := pw.p.ProveResetFactor(ctx, tok, kind, s.lang(c), factors.Response{Code: c.PostForm("code")}, s.client(c))
	if err != nil {
		return pw.resetFail(c, err)
	}
	pw.setResetCookie(c, rs)
	c.Redirect(http.StatusSeeOther, resetPath)
	return nil
}

func (pw *passwords) resetFinish(c *gin.Context) error {
	s := pw.s
	next := c.PostForm("new")
	if next != c.PostForm("confirm") {
		return pw.resetFail(c, errPasswordMismatch)
	}
	if _, err := pw.p.FinishReset(c.Request.Context(), resetToken(c.Request), next, s.client(c)); err != nil {
		return pw.resetFail(c, err)
	}
	pw.resetDone(c)
	d := s.page(c)
	d.Title = d.T.T("password.reset.done_title")
	d.Paragraphs = []string{d.T.T("password.reset.done")}
	d.LinkURL, d.LinkText = portalPrefix+"login", d.T.T("signedout.again")
	s.render(c, http.StatusOK, "message", d)
	return nil
}

// resetDone ends what this browser held: the reset, and its session (every
// session of the person ended).
func (pw *passwords) resetDone(c *gin.Context) {
	pw.clearResetCookie(c)
	if hasSessionCookie(c.Request) {
		pw.s.clearSessionCookie(c)
	}
}

// resetRestart forgets the reset under way in this browser ("start
// again").
func (pw *passwords) resetRestart(c *gin.Context) error {
	pw.clearResetCookie(c)
	c.Redirect(http.StatusSeeOther, resetPath)
	return nil
}

// ---------------------------------------------------------------------
// Reset: JSON API

// resetRequest is every body of /api/password/reset/…; each route reads
// what it needs.
type resetRequest struct {
	Login      string          `json:"login"`
	Code       string          `json:"code"`
	Ceremony   string          `json:"ceremony"`
	Credential json.RawMessage `json:"credential"`
	Password   string          `json:"password"`
}

func decodeReset(c *gin.Context) (resetRequest, error) {
	var req resetRequest
	if c.Request.ContentLength == 0 {
		return req, nil
	}
	return req, decodeJSON(c, &req)
}

// resetAnswer is where a reset stands, for API clients.
func resetAnswer(rs authn.Reset) gin.H {
	status := map[authn.ResetStep]string{
		authn.ResetStepCode:     "code_sent",
		authn.ResetStepFactor:   "second_factor_required",
		authn.ResetStepPassword: "password_required",
	}[rs.Step]
	out := gin.H{"status": status, "expires_at": rs.ExpiresAt}
	if rs.Step == authn.ResetStepFactor {
		fs := rs.Factors
		if fs == nil {
			fs = []authn.Method{}
		}
		out["factors"] = fs
	}
	return out
}

// apiResetBegin: POST /api/password/reset/begin {login} → {status:
// "code_sent", expires_at, message}, whatever the login names.
func (pw *passwords) apiResetBegin(c *gin.Context) error {
	s := pw.s
	req, err := decodeReset(c)
	if err != nil {
		return err
	}
	rs, err := pw.p.BeginReset(c.Request.Context(), req.Login, s.lang(c), s.client(c))
	if err != nil {
		return err
	}
	pw.setResetCookie(c, rs)
	out := resetAnswer(rs)
	out["message"] = s.page(c).T.T("password.reset.sent")
	writeJSON(c.Writer, http.StatusOK, out)
	return nil
}

// apiResetState: GET /api/password/reset → where the reset stands.
func (pw *passwords) apiResetState(c *gin.Context) error {
	rs, err := pw.p.ResetState(c.Request.Context(), resetToken(c.Request))
	if err != nil {
		return err
	}
	writeJSON(c.Writer, http.StatusOK, resetAnswer(rs))
	return nil
}

// apiResetVerify: POST /api/password/reset/verify {code}.
func (pw *passwords) apiResetVerify(c *gin.Context) error {
	req, err := decodeReset(c)
	if err != nil {
		return err
	}
	if req.Code == "" {
		return errMissingCode
	}
	rs, err := pw.p.VerifyResetCode(c.Request.Context(), resetToken(c.Request), req.Code, pw.s.client(c))
	if err != nil {
		return err
	}
	pw.setResetCookie(c, rs)
	writeJSON(c.Writer, http.StatusOK, resetAnswer(rs))
	return nil
}

// apiResetFactorBegin: POST /api/password/reset/factor/{kind}/begin → a
// ceremony's options or a code sent, as /api/factors/{kind}/begin.
func (pw *passwords) apiResetFactorBegin(c *gin.Context) error {
	s := pw.s
	ch, err := pw.p.BeginResetFactor(c.Request.Context(), resetToken(c.Request), c.Param("kind"), s.lang(c), s.client(c))
	if err != nil {
		return err
	}
	writeChallenge(c, ch)
	return nil
}

// apiResetFactorVerify: POST /api/password/reset/factor/{kind}/verify
// {code} or {ceremony, credential}.
func (pw *passwords) apiResetFactorVerify(c *gin.Context) error {
	s := pw.s
	req, err := decodeReset(c)
	if err != nil {
		return err
	}
	r := factors.Response{Code: req.Code, Challenge: req.Ceremony, Data: req.Credential}
	if r.Code == "" && len(r.Data) == 0 {
		return errMissingCode
	}
	rs, err := pw.p.ProveResetFactor(c.Request.Context(), resetToken(c.Request), c.Param("kind"), s.lang(c), r, s.client(c))
	if err != nil {
		return err
	}
	pw.setResetCookie(c, rs)
	writeJSON(c.Writer, http.StatusOK, resetAnswer(rs))
	return nil
}

// apiResetFinish: POST /api/password/reset/finish {password} → {status:
// "reset", login_url}; every session of the person has ended.
func (pw *passwords) apiResetFinish(c *gin.Context) error {
	s := pw.s
	req, err := decodeReset(c)
	if err != nil {
		return err
	}
	if req.Password == "" {
		return errMissingCreds
	}
	if _, err := pw.p.FinishReset(c.Request.Context(), resetToken(c.Request), req.Password, s.client(c)); err != nil {
		return err
	}
	pw.resetDone(c)
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "reset", "login_url": portalPrefix + "login"})
	return nil
}
