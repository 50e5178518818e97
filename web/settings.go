package web

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/factors"
)

const settingsPath = portalPrefix + "settings"

// requireSession sends a visitor without a session to sign in first and
// come back here.
func (s *Server) requireSession(c *gin.Context) *authn.Session {
	sess := s.session(c.Request)
	if sess == nil {
		c.Redirect(http.StatusSeeOther, portalPrefix+"login?rd="+url.QueryEscape(c.Request.URL.RequestURI()))
		c.Abort()
	}
	return sess
}

// settingsPage is the person's security page: their factors, remembered
// devices, email address, and the buttons to change them.
func (s *Server) settingsPage(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	return s.renderSettings(c, sess, nil, http.StatusOK)
}

func (s *Server) renderSettings(c *gin.Context, sess *authn.Session, pageErr *Error, status int) error {
	ctx := c.Request.Context()
	d := s.page(c)
	d.Title = d.T.T("settings.title")
	d.setError(pageErr)
	if msg := c.Query("done"); msg != "" {
		d.Notice = d.T.T("settings.done." + msg)
	}
	st, err := s.mfa.State(ctx, sess)
	if err != nil {
		return err
	}
	creds, err := s.mfa.Credentials(ctx, sess.Username)
	if err != nil {
		return err
	}
	devs, err := s.mfa.Devices(ctx, sess.Username)
	if err != nil {
		return err
	}
	u, err := s.userOf(c, sess)
	if err != nil {
		return err
	}
	d.Session = sess
	d.State = st
	d.Enrollable = map[string]bool{}
	for _, f := range s.mfa.Factors() {
		if _, ok := f.(factors.Enroller); ok {
			d.Enrollable[f.Kind()] = true
		}
		if a, ok := f.(factors.AddressEnroller); ok {
			d.AddressEnrol = append(d.AddressEnrol, addressEnrol{Kind: f.Kind(), Input: a.AddressInput()})
		}
	}
	d.Credentials = creds
	d.Devices = devs
	d.User = &u
	d.EmailEnrollment = s.emailEnrollment && u.EmailVerified
	d.Redirect = settingsPath
	s.render(c, status, "settings", d)
	return nil
}

// settingsFail shows a refused change on the security page itself.
func (s *Server) settingsFail(c *gin.Context, sess *authn.Session, err error) error {
	e := s.problem(err)
	if e.Status >= 500 {
		return err
	}
	return s.renderSettings(c, sess, e, e.Status)
}

func (s *Server) settingsDone(c *gin.Context, sess *authn.Session, what string) {
	if sess != nil && sess.ID != "" {
		s.setSessionCookie(c, sess.ID)
	}
	c.Redirect(http.StatusSeeOther, settingsPath+"?done="+what)
}

// totpEnrollBegin shows the QR code and the secret of a new app.
func (s *Server) totpEnrollBegin(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	return s.enrollBegin(c, sess, factors.KindTOTP)
}

// enrollForm starts adding a credential of :kind from the security page
// (no script): an app's QR code, a code sent to the number given, or a
// recovery sheet. Security keys enrol through the page's script and the
// JSON API (a browser ceremony).
func (s *Server) enrollForm(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	return s.enrollBegin(c, sess, c.Param("kind"))
}

func (s *Server) enrollBegin(c *gin.Context, sess *authn.Session, kind string) error {
	en, next, err := s.mfa.Enroll(c.Request.Context(), cookieID(c.Request), kind, s.lang(c),
		factors.EnrollRequest{Option: c.PostForm("option"), Address: c.PostForm("address")})
	switch {
	case err != nil:
		s.settingsFail(c, sess, err)
	case next != nil:
		s.renderRecovery(c, next, en.Codes)
	case en.Sent != nil:
		s.renderEnrollCode(c, kind, en.ID, en.Sent.To, nil, http.StatusOK)
	case en.QRPNG != nil:
		s.renderTOTPEnroll(c, en.ID, en.Secret, en.URI, en.QRPNG, nil, http.StatusOK)
	default:
		s.settingsFail(c, sess, authn.ErrFactorUnavailable)
	}
	return nil
}

// renderEnrollCode asks for the code sent to confirm a new credential
// (an SMS to the number given).
func (s *Server) renderEnrollCode(c *gin.Context, kind, id, to string, pageErr *Error, status int) {
	d := s.page(c)
	d.Kind = kind
	d.Title = d.T.T("factor." + kind + ".enroll_title")
	d.setError(pageErr)
	d.EnrollID, d.EnrollName = id, c.PostForm("name")
	d.Pending = &factors.Sent{To: to}
	s.render(c, status, "enroll_code", d)
}

// keepsEnrolment says whether a refused confirmation leaves the pending
// enrolment usable (a wrong code, a name taken or unfit): the page then
// asks again with what it showed, instead of starting over.
func keepsEnrolment(err error) bool {
	return errors.Is(err, authn.ErrWrongCode) || errors.Is(err, factors.ErrNameTaken) || errors.Is(err, factors.ErrInvalidName)
}

// enrollConfirm confirms a credential of :kind with the code sent.
func (s *Server) enrollConfirm(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	kind := c.Param("kind")
	_, next, err := s.mfa.ConfirmEnroll(c.Request.Context(), cookieID(c.Request), kind, c.PostForm("id"), s.lang(c),
		factors.Response{Code: c.PostForm("code")}, c.PostForm("name"))
	if err != nil {
		e := s.problem(err)
		if keepsEnrolment(err) {
			// The pending enrolment is still there: try again without a
			// new code.
			s.renderEnrollCode(c, kind, c.PostForm("id"), c.PostForm("to"), e, e.Status)
			return nil
		}
		return s.settingsFail(c, sess, err)
	}
	s.settingsDone(c, next, kind+"_added")
	return nil
}

func (s *Server) renderTOTPEnroll(c *gin.Context, id, secret, otpURL string, png []byte, pageErr *Error, status int) {
	d := s.page(c)
	d.Title = d.T.T("totp.enroll.title")
	d.setError(pageErr)
	d.EnrollID, d.Secret, d.OTPURL = id, secret, otpURL
	d.EnrollName = c.PostForm("name")
	if len(png) > 0 {
		// A data: URL the page's own CSP allows (img-src data:); the
		// secret never goes to a third-party QR service.
		d.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
	}
	s.render(c, status, "totp_enroll", d)
}

// totpEnrollFinish confirms the app with one code.
func (s *Server) totpEnrollFinish(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	_, next, err := s.mfa.ConfirmEnroll(c.Request.Context(), cookieID(c.Request), factors.KindTOTP, c.PostForm("id"), s.lang(c),
		factors.Response{Code: c.PostForm("code")}, c.PostForm("name"))
	if err != nil {
		e := s.problem(err)
		if keepsEnrolment(err) {
			// The pending app is still there: show it again (secret and
			// QR code from the server's sealed copy) with the name typed,
			// so the person tries another code without scanning anew.
			en, rerr := s.mfa.ResumeEnroll(c.Request.Context(), cookieID(c.Request), factors.KindTOTP, c.PostForm("id"), s.lang(c))
			if rerr != nil {
				return s.settingsFail(c, sess, rerr)
			}
			s.renderTOTPEnroll(c, en.ID, en.Secret, en.URI, en.QRPNG, e, e.Status)
			return nil
		}
		return s.settingsFail(c, sess, err)
	}
	s.settingsDone(c, next, "totp_added")
	return nil
}

// recoveryGenerate makes a new set of recovery codes and shows them once.
func (s *Server) recoveryGenerate(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	return s.enrollBegin(c, sess, factors.KindRecovery)
}

// renderRecovery shows a new recovery sheet, once.
func (s *Server) renderRecovery(c *gin.Context, next *authn.Session, codes []string) {
	s.setSessionCookie(c, next.ID)
	d := s.page(c)
	d.Title = d.T.T("recovery.title")
	d.Codes = codes
	text := ""
	for _, code := range codes {
		text += code + "\n"
	}
	d.Download = template.URL("data:text/plain;charset=utf-8," + url.PathEscape(text))
	s.render(c, http.StatusOK, "recovery_codes", d)
}

// credentialRename and credentialRemove change one credential.
func (s *Server) credentialRename(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	if err := s.mfa.RenameCredential(c.Request.Context(), cookieID(c.Request), c.Param("id"), c.PostForm("name")); err != nil {
		return s.settingsFail(c, sess, err)
	}
	s.settingsDone(c, nil, "renamed")
	return nil
}

func (s *Server) credentialRemove(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	next, err := s.mfa.RemoveCredential(c.Request.Context(), cookieID(c.Request), c.Param("id"))
	if err != nil {
		return s.settingsFail(c, sess, err)
	}
	if _, ok := s.sessions.Lookup(next.ID); !ok {
		// This session was proved with the removed credential, and what
		// it vouched for does not outlive it.
		s.clearSessionCookie(c)
		c.Redirect(http.StatusSeeOther, portalPrefix+"signed-out")
		return nil
	}
	s.settingsDone(c, next, "removed")
	return nil
}

// deviceForget revokes one remembered device, or all ("all").
func (s *Server) deviceForget(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	id := c.Param("id")
	if id == "all" {
		id = ""
	}
	if err := s.mfa.ForgetDevice(c.Request.Context(), cookieID(c.Request), id); err != nil {
		return s.settingsFail(c, sess, err)
	}
	if s.session(c.Request) == nil {
		// This browser was one of them: its session ended too.
		c.Redirect(http.StatusSeeOther, portalPrefix+"signed-out")
		return nil
	}
	s.settingsDone(c, nil, "devices_forgotten")
	return nil
}

// emailCodeFor sends a code for an account purpose from the settings page:
// confirming the address, or enrolling the first factor.
func (s *Server) emailCodeFor(purpose factors.Purpose) handler {
	return func(c *gin.Context) error {
		sess := s.requireSession(c)
		if sess == nil {
			return nil
		}
		t := s.tr.pick(c.GetHeader("Accept-Language"))
		if purpose == factors.PurposeEnroll && !s.emailEnrollment {
			return s.settingsFail(c, sess, authn.ErrFactorUnavailable)
		}
		_, err := s.mfa.SendAddressCode(c.Request.Context(), cookieID(c.Request), langOf(t), purpose)
		if errors.Is(err, authn.ErrEnrollCodeClosed) {
			// Nothing is sent, and the answer is the one a sent code
			// gets: its wording covers both cases and says what to do.
			err = nil
		}
		if err != nil {
			return s.settingsFail(c, sess, err)
		}
		s.settingsDone(c, nil, "code_sent_"+string(purpose))
		return nil
	}
}

// emailCodeVerify checks such a code.
func (s *Server) emailCodeVerify(purpose factors.Purpose) handler {
	return func(c *gin.Context) error {
		sess := s.requireSession(c)
		if sess == nil {
			return nil
		}
		next, err := s.mfa.ProveAddressCode(c.Request.Context(), cookieID(c.Request), purpose, c.PostForm("code"))
		if err != nil {
			return s.settingsFail(c, sess, err)
		}
		s.settingsDone(c, next, "code_ok_"+string(purpose))
		return nil
	}
}

// enrollLinkPage is where an admin's enrolment link lands: sign in first,
// then confirm with a button (a GET never changes anything).
func (s *Server) enrollLinkPage(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	d := s.page(c)
	d.Title = d.T.T("enroll.title")
	d.Token = c.Param("token")
	s.render(c, http.StatusOK, "enroll", d)
	return nil
}

func (s *Server) enrollLinkRedeem(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	next, err := s.mfa.RedeemEnrollLink(c.Request.Context(), cookieID(c.Request), c.PostForm("token"))
	if err != nil {
		return s.settingsFail(c, sess, err)
	}
	s.settingsDone(c, next, "link_ok")
	return nil
}

func (s *Server) userOf(c *gin.Context, sess *authn.Session) (authn.User, error) {
	return s.mfa.User(c.Request.Context(), sess.Username)
}
