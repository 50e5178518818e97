package web

import (
	"encoding/base64"
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/factors"
)

// The JSON API of the second factors: what the portal's own JS calls, and
// stable for scripts and tests. One route set serves every registered
// factor (/api/factors/{kind}/…); the paths of round 1 stay as aliases.
// Every answer is {status, …} or {error, message}.

// factorRequest is every body the factor routes take; each reads the
// fields its factor's shape needs.
type factorRequest struct {
	Code       string          `json:"code"`       // a typed code
	Ceremony   string          `json:"ceremony"`   // a ceremony's ID
	Credential json.RawMessage `json:"credential"` // a ceremony's response
	ID         string          `json:"id"`         // an enrolment's ID (codes)
	Name       string          `json:"name"`       // a new credential's name
	Kind       string          `json:"kind"`       // an enrolment option (WebAuthn's authenticator kind)
	Address    string          `json:"address"`    // where a new credential's codes go (SMS: E.164)
	Redirect   string          `json:"rd"`
	Remember   bool            `json:"remember"`
}

// decodeFactor reads the body; an empty body is an empty request (a begin
// that needs nothing).
func decodeFactor(c *gin.Context) (factorRequest, error) {
	var req factorRequest
	if c.Request.ContentLength == 0 {
		return req, nil
	}
	return req, decodeJSON(c, &req)
}

// factorOf resolves the :kind of the route (or a fixed one for aliases):
// a kind nobody registered is not found.
func (s *Server) factorOf(c *gin.Context, kind string) (factors.Factor, error) {
	if kind == "" {
		kind = c.Param("kind")
	}
	if s.mfa != nil {
		if f := s.mfa.Factors().Get(kind); f != nil {
			return f, nil
		}
	}
	return nil, errNoSuchFactor
}

// factorCall resolves the route's factor and reads the request body.
func (s *Server) factorCall(c *gin.Context, kind string) (factors.Factor, factorRequest, error) {
	f, err := s.factorOf(c, kind)
	if err != nil {
		return nil, factorRequest{}, err
	}
	req, err := decodeFactor(c)
	return f, req, err
}

func (s *Server) lang(c *gin.Context) string {
	return langOf(s.tr.pick(c.GetHeader("Accept-Language")))
}

// apiFactorBegin: POST /api/factors/{kind}/begin starts a proof: a code
// sent ({status: sent, to, resend_at, expires_at}), a ceremony's options
// ({ceremony, publicKey}), or nothing to do for a code the person keeps
// ({status: ready}). Aliases: /email/send, /webauthn/login/begin.
func (s *Server) apiFactorBegin(kind string) handler {
	return func(c *gin.Context) error {
		f, err := s.factorOf(c, kind)
		if err != nil {
			return err
		}
		ch, err := s.mfa.Begin(c.Request.Context(), cookieID(c.Request), f.Kind(), s.lang(c))
		if err != nil {
			return err
		}
		writeChallenge(c, ch)
		return nil
	}
}

func writeChallenge(c *gin.Context, ch factors.Challenge) {
	switch {
	case ch.Sent != nil:
		writeJSON(c.Writer, http.StatusOK, gin.H{"status": "sent", "to": ch.Sent.To, "resend_at": ch.Sent.ResendAt, "expires_at": ch.Sent.ExpiresAt})
	case ch.Options != nil:
		writeJSON(c.Writer, http.StatusOK, gin.H{"ceremony": ch.ID, "publicKey": ch.Options})
	default:
		writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ready"})
	}
}

// apiFactorPending: GET /api/factors/{kind}/pending says where the code
// waiting to be typed went and when another may be sent.
func (s *Server) apiFactorPending(c *gin.Context) error {
	f, err := s.factorOf(c, "")
	if err != nil {
		return err
	}
	p, pending, err := s.mfa.Pending(c.Request.Context(), cookieID(c.Request), f.Kind())
	if err != nil {
		return err
	}
	if !pending {
		writeJSON(c.Writer, http.StatusOK, gin.H{"status": "none"})
		return nil
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "pending", "to": p.To, "resend_at": p.ResendAt, "expires_at": p.ExpiresAt, "tries_left": p.TriesLeft})
	return nil
}

// apiFactorVerify: POST /api/factors/{kind}/verify checks a code
// ({code}) or a ceremony's response ({ceremony, credential}) and says
// where to go next. Alias: /webauthn/login/finish.
func (s *Server) apiFactorVerify(kind string) handler {
	return func(c *gin.Context) error {
		f, req, err := s.factorCall(c, kind)
		if err != nil {
			return err
		}
		r := factors.Response{Challenge: req.Ceremony, Data: req.Credential}
		var next *authn.Session
		if f.Shape() == factors.ShapeCode {
			next, err = s.verifyCode(c, f.Kind(), req.Code)
		} else {
			next, _, err = s.mfa.Prove(c.Request.Context(), cookieID(c.Request), f.Kind(), s.lang(c), r)
		}
		s.metrics.SecondFactor(f.Kind(), err)
		if err != nil {
			return err
		}
		writeJSON(c.Writer, http.StatusOK, s.afterSecondFactor(c, next, f.Kind(), req.Redirect, req.Remember))
		return nil
	}
}

// apiPasskeyBegin / Finish: sign in with a passkey, no username typed.
func (s *Server) apiPasskeyBegin(c *gin.Context) error {
	if s.mfa == nil {
		return authn.ErrFactorUnavailable
	}
	ch, err := s.mfa.BeginPasskey(c.Request.Context())
	if err != nil {
		return err
	}
	writeChallenge(c, ch)
	return nil
}

func (s *Server) apiPasskeyFinish(c *gin.Context) error {
	req, err := decodeFactor(c)
	if err != nil {
		return err
	}
	r := c.Request
	sess, err := s.mfa.FinishPasskey(r.Context(), factors.Response{Challenge: req.Ceremony, Data: req.Credential},
		authn.Meta{IP: clientAddr(c).String(), UserAgent: r.UserAgent()})
	s.metrics.SignIn("passkey", err)
	if err != nil {
		return err
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
	return nil
}

// apiEnrollBegin: POST /api/factors/{kind}/enroll/begin starts adding a
// credential: a ceremony's options ({ceremony, publicKey}), an app's key
// ({id, secret, url, qr_png, expires_at}), a confirmation code sent
// ({status: sent, id, to, …}), or a recovery sheet ({status: ok,
// codes}). Aliases: /webauthn/enroll/begin, /totp/enroll/begin,
// /recovery/generate.
func (s *Server) apiEnrollBegin(kind string) handler {
	return func(c *gin.Context) error {
		f, req, err := s.factorCall(c, kind)
		if err != nil {
			return err
		}
		en, next, err := s.mfa.Enroll(c.Request.Context(), cookieID(c.Request), f.Kind(), s.lang(c),
			factors.EnrollRequest{Option: req.Kind, Address: req.Address})
		if err != nil {
			return err
		}
		switch {
		case next != nil: // complete at once (a recovery sheet)
			s.setSessionCookie(c, next.ID)
			writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok", "codes": en.Codes})
		case en.Options != nil:
			writeJSON(c.Writer, http.StatusOK, gin.H{"ceremony": en.ID, "publicKey": en.Options})
		case en.Sent != nil:
			writeJSON(c.Writer, http.StatusOK, gin.H{"status": "sent", "id": en.ID, "to": en.Sent.To,
				"resend_at": en.Sent.ResendAt, "expires_at": en.Sent.ExpiresAt})
		default:
			writeJSON(c.Writer, http.StatusOK, gin.H{"id": en.ID, "secret": en.Secret, "url": en.URI,
				"qr_png": base64.StdEncoding.EncodeToString(en.QRPNG), "expires_at": en.ExpiresAt})
		}
		return nil
	}
}

// apiEnrollFinish: POST /api/factors/{kind}/enroll/finish confirms the
// enrolment ({id, code, name} or {ceremony, credential, name}). Aliases:
// /webauthn/enroll/finish, /totp/enroll/finish.
func (s *Server) apiEnrollFinish(kind string) handler {
	return func(c *gin.Context) error {
		f, req, err := s.factorCall(c, kind)
		if err != nil {
			return err
		}
		id := req.ID
		if id == "" {
			id = req.Ceremony
		}
		cred, next, err := s.mfa.ConfirmEnroll(c.Request.Context(), cookieID(c.Request), f.Kind(), id, s.lang(c),
			factors.Response{Challenge: req.Ceremony, Code: req.Code, Data: req.Credential}, req.Name)
		if err != nil {
			return err
		}
		s.setSessionCookie(c, next.ID)
		writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok", "credential": cred})
		return nil
	}
}

// apiFactors: GET /api/factors lists the credentials.
func (s *Server) apiFactors(c *gin.Context) error {
	sess := s.session(c.Request)
	if sess == nil {
		return errNotSignedIn
	}
	creds, err := s.mfa.Credentials(c.Request.Context(), sess.Username)
	if err != nil {
		return err
	}
	if creds == nil {
		creds = creds[:0]
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"factors": creds})
	return nil
}

// apiFactorRename: PATCH /api/factors/:id {"name"}.
func (s *Server) apiFactorRename(c *gin.Context) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := s.mfa.RenameCredential(c.Request.Context(), cookieID(c.Request), c.Param("id"), req.Name); err != nil {
		return err
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok"})
	return nil
}

// apiFactorRemove: DELETE /api/factors/:id.
func (s *Server) apiFactorRemove(c *gin.Context) error {
	next, err := s.mfa.RemoveCredential(c.Request.Context(), cookieID(c.Request), c.Param("id"))
	if err != nil {
		return err
	}
	if _, ok := s.sessions.Lookup(next.ID); !ok {
		// The session was proved with the removed credential and ended
		// with it (as the security page says): say so, and drop the cookie.
		s.clearSessionCookie(c)
		writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok", "signed_out": true})
		return nil
	}
	s.setSessionCookie(c, next.ID)
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok"})
	return nil
}

// apiEnrollLink: POST /api/enroll-link {"token"} redeems an admin's link.
func (s *Server) apiEnrollLink(c *gin.Context) error {
	var req struct {
		Token string `json:"token"`
	}
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	next, err := s.mfa.RedeemEnrollLink(c.Request.Context(), cookieID(c.Request), req.Token)
	if err != nil {
		return err
	}
	s.setSessionCookie(c, next.ID)
	writeJSON(c.Writer, http.StatusOK, gin.H{"status": "ok"})
	return nil
}
