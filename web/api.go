package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// decodeJSON reads one JSON object, refusing unknown fields, trailing data
// and oversized bodies with errors people can act on.
func decodeJSON(c *gin.Context, v any) error {
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errTooLarge.because(err)
		}
		return errBadRequest.because(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errBadRequest.because(errors.New("trailing data after the JSON object"))
	}
	return nil
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Redirect string `json:"rd"`
	// TimeZone is the browser's IANA zone ("Europe/Berlin"), for the
	// mails about the account; optional.
	TimeZone string `json:"tz"`
}

func (s *Server) apiLogin(c *gin.Context) error {
	var req loginRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	_, st, err := s.signIn(c, req.Username, req.Password, req.Redirect, req.TimeZone)
	if err != nil {
		return err
	}
	writeJSON(c.Writer, http.StatusOK, st)
	return nil
}

type logoutRequest struct {
	Everywhere bool `json:"everywhere"`
}

func (s *Server) apiLogout(c *gin.Context) error {
	var req logoutRequest
	if c.Request.ContentLength != 0 {
		if err := decodeJSON(c, &req); err != nil {
			return err
		}
	}
	if err := s.signOut(c, req.Everywhere); err != nil {
		return err
	}
	writeJSON(c.Writer, http.StatusOK, map[string]string{"status": "signed_out"})
	return nil
}

type proofJSON struct {
	Kind string    `json:"kind"`
	At   time.Time `json:"at"`
}

type sessionJSON struct {
	User      string      `json:"user"`
	Email     string      `json:"email"`
	Name      string      `json:"name"`
	Groups    []string    `json:"groups"`
	Factors   []proofJSON `json:"factors"`
	CreatedAt time.Time   `json:"created_at"`
	ExpiresAt time.Time   `json:"expires_at"`
}

func (s *Server) apiSession(c *gin.Context) error {
	sess := s.session(c.Request)
	if sess == nil {
		return errNotSignedIn
	}
	out := sessionJSON{User: sess.Username, Email: sess.Email, Name: sess.DisplayName, Groups: sess.Groups,
		CreatedAt: sess.CreatedAt, ExpiresAt: sess.ExpiresAt, Factors: make([]proofJSON, 0, len(sess.Proofs))}
	if out.Groups == nil {
		out.Groups = []string{}
	}
	for _, p := range sess.Proofs {
		out.Factors = append(out.Factors, proofJSON{Kind: p.Kind, At: p.At})
	}
	writeJSON(c.Writer, http.StatusOK, out)
	return nil
}
