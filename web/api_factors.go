package web

import (
	"encoding/base64"
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/factors/emailcode"
	fwa "github.com/keygate/keygate/factors/webauthn"
	"github.com/keygate/keygate/policy"
)

// The JSON API of the second factors: what the portal's own JS calls, and
// stable for scripts and tests. Every answer is {status, …} or
// {error, message}.

type codeRequest struct {
	Code     string `json:"code"`
	Redirect string `json:"rd"`
	Remember bool   `json:"remember"`
}

// apiVerifyCode: POST /api/factors/{totp,email,recovery}/verify.
func (s *Server) apiVerifyCode(kind string) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req codeRequest
		if err := decodeJSON(c, &req); err != nil {
			s.fail(c, err)
			return
		}
		next, err := s.verifyCode(c, kind, req.Code)
		s.metrics.SecondFactor(kind, err)
		if err != nil {
			s.fail(c, mfaError(err))
			return
		}
		writeJSON(c.Writer, http.StatusOK, s.afterSecondFactor(c, next, kind, req.Redirect, req.Remember))
	}
}

// apiEmailSend: POST /api/factors/email/send.
func (s *Server) apiEmailSend(c *gin.Context) {
	t := s.tr.pick(c.GetHeader("Accept-Language"))
	sent, err := s.mfa.SendEmailCode(c.Request.Context(), cookieID(c.Request), langOf(t), emailcode.PurposeSignIn)
	if err != nil {
		s.fail(c, mfaError(err))
		return
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "sent", "to": sent.Masked, "resend_at": sent.ResendAt, "expires_at": sent.ExpiresAt})
}

type ceremonyRequest struct {
	Ceremony   string          `json:"ceremony"`
	Credential json.RawMessage `json:"credential"`
	Name       string          `json:"name"`
	Kind       string          `json:"kind"`
	Redirect   string          `json:"rd"`
	Remember   bool            `json:"remember"`
}

func (s *Server) decodeCeremony(c *gin.Context) (ceremonyRequest, bool) {
	var req ceremonyRequest
	if c.Request.ContentLength == 0 {
		return req, true
	}
	if err := decodeJSON(c, &req); err != nil {
		s.fail(c, err)
		return req, false
	}
	return req, true
}

func writeOptions(c *gin.Context, opts json.RawMessage, ceremony string) {
	writeJSON(c.Writer, http.StatusOK, gin.H{"ceremony": ceremony, "publicKey": opts})
}

// apiWebAuthnLoginBegin / Finish: the security key as second factor.
func (s *Server) apiWebAuthnLoginBegin(c *gin.Context) {
	opts, cer, err := s.mfa.BeginWebAuthnLogin(c.Request.Context(), cookieID(c.Request))
	if err != nil {
		s.fail(c, mfaError(err))
		return
	}
	writeOptions(c, opts, cer)
}

func (s *Server) apiWebAuthnLoginFinish(c *gin.Context) {
	req, ok := s.decodeCeremony(c)
	if !ok {
		return
	}
	next, err := s.mfa.FinishWebAuthnLogin(c.Request.Context(), cookieID(c.Request), req.Ceremony, req.Credential)
	s.metrics.SecondFactor(policy.FactorWebAuthn, err)
	if err != nil {
		s.fail(c, mfaError(err))
		return
	}
	writeJSON(c.Writer, http.StatusOK, s.afterSecondFactor(c, next, policy.FactorWebAuthn, req.Redirect, req.Remember))
}

// apiPasskeyBegin / Finish: sign in with a passkey, no username typed.
func (s *Server) apiPasskeyBegin(c *gin.Context) {
	opts, cer, err := s.mfa.BeginPasskey(c.Request.Context())
	if err != nil {
		s.fail(c, mfaError(err))
		return
	}
	writeOptions(c, opts, cer)
}

func (s *Server) apiPasskeyFinish(c *gin.Context) {
	req, ok := s.decodeCeremony(c)
	if !ok {
		return
	}
	r := c.Request
	sess, err := s.mfa.FinishPasskey(r.Context(), req.Ceremony, req.Credential, authn.Meta{IP: clientAddr(c).String(), UserAgent: r.UserAgent()})
	s.metrics.SignIn("passkey", err)
	if err != nil {
		s.fail(c, mfaError(err))
		return
	}
	// As with a password sign-in (portal.go): every session the browser
	// named ends, and no planted cookie stays beside the new one.
	for _, old := range sessionCookieIDs(r) {
		_ = s.sessions.Revoke(r.Context(), old)
	}
	s.setSessionCookie(c, sess.ID)
	s.expireShadows(c.Writer, r, s.redirectOrDefault(req.Redirect))
	s.log.Info("sign-in", "user", sess.Username, "factor", "passkey", "ip", clientAddr(c).String())
	writeJSON(c.Writer, http.StatusOK, s.nextStep(c, sess, req.Redirect))
}

// apiWebAuthnEnrollBegin / Finish: add a security key or this device.
func (s *Server) apiWebAuthnEnrollBegin(c *gin.Context) {
	req, ok := s.decodeCeremony(c)
	if !ok {
		return
	}
	kind := fwa.AuthenticatorKind(req.Kind)
	if kind != fwa.SecurityKey && kind != fwa.Platform {
		s.fail(c, errf(http.StatusBadRequest, "bad_request", "err.bad_request", nil))
		return
	}
	opts, cer, err := s.mfa.BeginWebAuthnEnroll(c.Request.Context(), cookieID(c.Request), kind)
	if err != nil {
		s.fail(c, mfaError(err))
		return
	}
	writeOptions(c, opts, cer)
}

func (s *Server) apiWebAuthnEnrollFinish(c *gin.Context) {
	req, ok := s.decodeCeremony(c)
	if !ok {
		return
	}
	cred, next, err := s.mfa.FinishWebAuthnEnroll(c.Request.Context(), cookieID(c.Request), req.Ceremony, req.Credential, req.Name)
	if err != nil {
		s.fail(c, mfaError(err))
		return
	}
	s.setSessionCookie(c, next.ID)
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok", "credential": cred})
}

// apiTOTPEnrollBegin / Finish: add an authenticator app.
func (s *Server) apiTOTPEnrollBegin(c *gin.Context) {
	en, err := s.mfa.BeginTOTPEnroll(c.Request.Context(), cookieID(c.Request))
	if err != nil {
		s.fail(c, mfaError(err))
		return
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"id": en.ID, "secret": en.Secret, "url": en.URL,
		"qr_png": base64.StdEncoding.EncodeToString(en.QRPNG), "expires_at": en.ExpiresAt})
}

type totpFinishRequest struct {
	ID   string `json:"id"`
	Code string `json:"code"`
	Name string `json:"name"`
}

func (s *Server) apiTOTPEnrollFinish(c *gin.Context) {
	var req totpFinishRequest
	if err := decodeJSON(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	cred, next, err := s.mfa.FinishTOTPEnroll(c.Request.Context(), cookieID(c.Request), req.ID, req.Code, req.Name)
	if err != nil {
		s.fail(c, mfaError(err))
		return
	}
	s.setSessionCookie(c, next.ID)
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok", "credential": cred})
}

// apiRecoveryGenerate: POST /api/factors/recovery/generate.
func (s *Server) apiRecoveryGenerate(c *gin.Context) {
	codes, next, err := s.mfa.GenerateRecovery(c.Request.Context(), cookieID(c.Request))
	if err != nil {
		s.fail(c, mfaError(err))
		return
	}
	s.setSessionCookie(c, next.ID)
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok", "codes": codes})
}

// apiFactors: GET /api/factors lists the credentials.
func (s *Server) apiFactors(c *gin.Context) {
	sess := s.session(c.Request)
	if sess == nil {
		s.fail(c, errf(http.StatusUnauthorized, "not_signed_in", "err.not_signed_in", nil))
		return
	}
	creds, err := s.mfa.Credentials(c.Request.Context(), sess.Username)
	if err != nil {
		s.fail(c, mfaError(err))
		return
	}
	if creds == nil {
		creds = creds[:0]
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"factors": creds})
}

// apiFactorRename: PATCH /api/factors/:id {"name"}.
func (s *Server) apiFactorRename(c *gin.Context) {
	var req struct {
		Name string `json:"name"`
	}
	if err := decodeJSON(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	if err := s.mfa.RenameCredential(c.Request.Context(), cookieID(c.Request), c.Param("id"), req.Name); err != nil {
		s.fail(c, mfaError(err))
		return
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok"})
}

// apiFactorRemove: DELETE /api/factors/:id.
func (s *Server) apiFactorRemove(c *gin.Context) {
	next, err := s.mfa.RemoveCredential(c.Request.Context(), cookieID(c.Request), c.Param("id"))
	if err != nil {
		s.fail(c, mfaError(err))
		return
	}
	if _, ok := s.sessions.Lookup(next.ID); !ok {
		// The session was proved with the removed credential and ended
		// with it (as the security page says): say so, and drop the cookie.
		s.clearSessionCookie(c)
		writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok", "signed_out": true})
		return
	}
	s.setSessionCookie(c, next.ID)
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok"})
}

// apiEnrollLink: POST /api/enroll-link {"token"} redeems an admin's link.
func (s *Server) apiEnrollLink(c *gin.Context) {
	var req struct {
		Token string `json:"token"`
	}
	if err := decodeJSON(c, &req); err != nil {
		s.fail(c, err)
		return
	}
	next, err := s.mfa.RedeemEnrollLink(c.Request.Context(), cookieID(c.Request), req.Token)
	if err != nil {
		s.fail(c, mfaError(err))
		return
	}
	s.setSessionCookie(c, next.ID)
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok"})
}
