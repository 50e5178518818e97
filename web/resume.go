package web

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
)

const (
	// resumeCookie names a parked form submission of this browser.
	resumeCookie = "keygate_resume"
	// maxParkedBody: larger forms are not kept (uploads are not replayed).
	maxParkedBody = 64 << 10
)

// parkForm keeps a browser's form POST that met a challenge, so that it is
// submitted again once the person has signed in or stepped up. Only a
// same-origin urlencoded form is kept: a cross-site form parked here would
// be replayed with the victim's fresh authentication (CSRF).
func (s *Server) parkForm(c *gin.Context, target string) {
	r := c.Request
	if s.parked == nil || r.Method != http.MethodPost || r.ContentLength > maxParkedBody {
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return
	}
	if !sameOrigin(r, s.scheme(r)) {
		return
	}
	// Under the portal's body deadline (body.go): a form trickling in a
	// byte at a time is not parked, and its connection is not held.
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetReadDeadline(time.Now().Add(s.portalBodyTimeout))
	body, err := io.ReadAll(io.LimitReader(r.Body, maxParkedBody+1))
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil || len(body) > maxParkedBody {
		if err != nil {
			c.Header("Connection", "close") // the rest of the body may still be on its way
		}
		return
	}
	id, err := s.parked.Park(r.Context(), authn.ParkedRequest{Method: r.Method, URL: target,
		ContentType: "application/x-www-form-urlencoded", Body: body})
	if err != nil {
		s.log.Warn("park form", "err", err)
		return
	}
	http.SetCookie(c.Writer, s.resumeCookieFor(r, id, 15*60))
}

// resumeCookieFor is this browser's parked-form cookie: always host-only
// (the form is resumed on the host it was sent to), and over HTTPS named
// __Host-keygate_resume so that a sibling subdomain cannot plant the ID of
// a form it parked itself, to be replayed with the victim's fresh sign-in.
// Over plain HTTP it stays on the portal's path, as nothing can stop a
// planted one there anyway.
func (s *Server) resumeCookieFor(r *http.Request, value string, maxAge int) *http.Cookie {
	ck := &http.Cookie{Name: resumeCookie, Value: value, Path: portalPrefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if s.isHTTPS(r) {
		ck.Name, ck.Path, ck.Secure = hostPrefix+resumeCookie, "/", true
	}
	return ck
}

// sameOrigin says whether the browser reports the request as coming from
// the page's own origin (Fetch metadata, else the Origin header). Browsers
// send the page's real Origin on same-origin posts because portal pages
// use Referrer-Policy: same-origin (with no-referrer Chromium sends
// "Origin: null", and over plain HTTP on a non-localhost host there is no
// Sec-Fetch-Site to fall back on).
func sameOrigin(r *http.Request, scheme string) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	origin := r.Header.Get("Origin")
	return origin != "" && origin == scheme+"://"+r.Host
}

// hasParked says whether this browser has a form waiting.
func hasParked(r *http.Request) bool {
	_, ok := readCookie(r, resumeCookie)
	return ok
}

// resumePage submits the parked form again: a page with the same fields
// that portal.js submits at once (a button without JS).
func (s *Server) resumePage(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil // sent to sign in
	}
	ck, ok := readCookie(c.Request, resumeCookie)
	http.SetCookie(c.Writer, s.resumeCookieFor(c.Request, "", -1))
	if !ok || s.parked == nil {
		c.Redirect(http.StatusFound, s.redirectOrDefault(""))
		return nil
	}
	p, err := s.parked.Take(c.Request.Context(), ck)
	if err != nil || s.safeRedirect(p.URL) == "" {
		c.Redirect(http.StatusFound, s.redirectOrDefault(""))
		return nil
	}
	d := s.page(c)
	d.Title = d.T.T("resume.title")
	d.Redirect = p.URL
	d.Fields = formFields(p.Body)
	s.render(c, http.StatusOK, "resume", d)
	return nil
}

// formField is one name=value of a urlencoded body, in order.
type formField struct{ Name, Value string }

func formFields(body []byte) []formField {
	var out []formField
	for part := range bytes.SplitSeq(body, []byte("&")) {
		if len(part) == 0 {
			continue
		}
		k, v, _ := strings.Cut(string(part), "=")
		name, err1 := url.QueryUnescape(k)
		value, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, formField{name, value})
	}
	return out
}
