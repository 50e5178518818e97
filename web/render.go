package web

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/factors"
	adminweb "github.com/keygate/keygate/web/admin"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages holds one template set per page, each built on the shared layout.
type pages map[string]*template.Template

func loadPages() (pages, error) {
	funcs := template.FuncMap{"join": strings.Join}
	base, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/logout.html")
	if err != nil {
		return nil, fmt.Errorf("parse layout: %w", err)
	}
	p := pages{}
	for _, name := range []string{"login", "home", "logout", "message", "chooser", "code", "webauthn", "settings", "totp_enroll", "enroll_code", "recovery_codes", "enroll", "resume", "admin", "admin_user", "activity", "sessions", "locked", "notme", "recover", "password", "password_reset", "email_change", "security"} {
		set, err := base.Clone()
		if err != nil {
			return nil, fmt.Errorf("clone layout: %w", err)
		}
		if name != "logout" {
			if _, err := set.ParseFS(templateFS, "templates/"+name+".html"); err != nil {
				return nil, fmt.Errorf("parse %s: %w", name, err)
			}
		}
		p[name] = set
	}
	return p, nil
}

// addressEnrol is a factor the security page enrols from an address the
// person types: its kind and the HTML input type of the field.
type addressEnrol struct{ Kind, Input string }

// pageData is what every template receives.
type pageData struct {
	T          *catalog
	Title      string
	Error      string
	Redirect   string
	Username   string
	Session    any
	Paragraphs []string
	LinkURL    string
	LinkText   string
	Notice     string
	Passkeys   bool // offer "sign in with a passkey"

	// Second factor pages.
	Kind        string
	Methods     []authn.Method
	Lost        bool
	Remember    bool          // offer "remember this device"
	RememberFor time.Duration // how long a remembered device is trusted
	Sends       bool          // the factor sends its codes (email, SMS)
	Pending     *factors.Sent // the code waiting to be typed, if any
	ResendIn    int           // seconds until a new code may be sent (the script counts down)
	ResendWait  time.Duration // the same, for the sentence
	ValidFor    time.Duration // how long the code sent stays valid

	// Security page.
	AddressEnrol    []addressEnrol // factors enrolled from a typed address (a phone number)
	State           authn.EnrollState
	Credentials     []factors.Credential
	Devices         []authn.Device
	User            *authn.User
	EmailEnrollment bool
	EnrollID        string
	EnrollName      string          // the name typed for a new credential, kept when a code is refused
	Enrollable      map[string]bool // kinds this keygate can enrol (a key only when WebAuthn is configured)
	Secret          string
	OTPURL          string
	QR              template.URL
	Codes           []string
	Download        template.URL
	Token           string
	Fields          []formField // a parked form to submit again

	// Admin pages (web/admin).
	Admin *adminweb.View

	// Account pages (account.go): activity, sessions, unlock, "this wasn't me".
	Account *accountView

	// Password pages (password.go): change and reset.
	Password *passwordView

	// The email address change page (email_change.go).
	EmailChange *emailChangeView

	// The account recovery pages (recover.go); RecoveryOffered: the
	// sign-in page and the chooser link to them.
	Recovery        *recoveryView
	RecoveryOffered bool

	// The security check-up (security_page.go).
	Security *securityView
}

// wantsJSON decides between a JSON answer and an HTML page: the API prefix,
// XHR/fetch clients, and clients that accept JSON but not HTML.
func wantsJSON(r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, apiPrefix) {
		return true
	}
	if r.Header.Get("X-Requested-With") != "" {
		return true
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

// render executes a page into a buffer first so that a template error
// becomes a clean 500 instead of half a page.
func (s *Server) render(c *gin.Context, status int, page string, d pageData) {
	s.renderHTTP(c.Writer, status, page, d)
}

func (s *Server) renderHTTP(w http.ResponseWriter, status int, page string, d pageData) {
	var buf bytes.Buffer
	h := w.Header()
	if err := s.pages[page].ExecuteTemplate(&buf, "layout", d); err != nil {
		s.log.Error("render page", "page", page, "err", err)
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("internal error"))
		return
	}
	portalHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// writeJSON writes an API answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal","message":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// portalHeaders are set on every page keygate itself serves.
func portalHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: with no-referrer Chromium sends
	// "Origin: null" on the portal's own form posts, and over plain HTTP
	// on a host other than localhost it sends no Sec-Fetch-Site either,
	// so the cross-origin check could not tell them from a forgery and
	// nobody could sign in. same-origin still sends nothing to other
	// sites.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
}

// logAttrsFor keeps logs free of query strings, which can carry codes.
func logAttrsFor(r *http.Request) []any {
	return []any{slog.String("method", r.Method), slog.String("host", r.Host), slog.String("path", r.URL.Path)}
}

// setError shows a refusal on the page, its arguments filled in (a
// cooldown's wait, a lock's end): a message is never shown with its verbs.
func (d *pageData) setError(e *Error) {
	if e == nil {
		return
	}
	d.Error = message(d.T, e)
}
