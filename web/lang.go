package web

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
)

// The portal's language. A person's own choice (the switcher on every
// page, kept in the keygate_lang cookie) comes before the browser's
// Accept-Language, which stays the default when nothing was chosen. The
// language the portal shows at sign-in is the one remembered on the user
// record for the mails that come later (authn.Users.SignIn).

const (
	// langCookie keeps the chosen language's tag ("ru"). Like every
	// keygate_ cookie it never reaches an app (proxy.go strips them).
	langCookie = "keygate_lang"
	// langCookieAge: a choice of language is kept for a year.
	langCookieAge = 365 * 24 * 3600
)

// errNoSuchLanguage: the switcher was asked for a language keygate has no
// catalogue for.
var errNoSuchLanguage = &Error{Status: http.StatusNotFound, Code: "not_found", Key: "err.not_found"}

// byTag is the catalogue whose tag is exactly tag, or nil.
func (t *translator) byTag(tag string) *catalog {
	for _, c := range t.cats {
		if c.tag.String() == tag {
			return c
		}
	}
	return nil
}

// forRequest is the catalogue for r: the language its keygate_lang cookie
// names, else its Accept-Language. A cookie naming no catalogue (an old
// choice, a forged value) is ignored.
func (t *translator) forRequest(r *http.Request) *catalog {
	if v, ok := readCookie(r, langCookie); ok {
		if c := t.byTag(v); c != nil {
			return c
		}
	}
	return t.pick(r.Header.Get("Accept-Language"))
}

// portalLanguage runs first on every request to /.keygate/: a chosen
// language stands in for the request's Accept-Language there, so that
// every handler and page of the portal, now and later, answers in it
// while reading only that header (s.tr.pick). Only the portal's own
// requests are rewritten: they are never forwarded to an app. The gate's
// pages on an app's paths ask forRequest instead (failHTTP), leaving the
// request that may go upstream as it came.
func (s *Server) portalLanguage(c *gin.Context) {
	if v, ok := readCookie(c.Request, langCookie); ok {
		if cat := s.tr.byTag(v); cat != nil {
			c.Request.Header.Set("Accept-Language", cat.tag.String())
		}
	}
	c.Next()
}

// langRoutes: GET /.keygate/lang/{tag}, the switcher's links.
func (s *Server) langRoutes(k *gin.RouterGroup) {
	k.GET("/lang/:tag", s.handle(s.langSwitch))
}

// langSwitch keeps the chosen language in the cookie and sends the person
// back to the page they were on, now in that language. It is a plain link
// (a GET) so that it works without JavaScript and reads as a link to
// screen readers; all it changes is a preference, so a link from another
// site can do no more than switch the portal's language.
func (s *Server) langSwitch(c *gin.Context) error {
	cat := s.tr.byTag(c.Param("tag"))
	if cat == nil {
		return errNoSuchLanguage
	}
	http.SetCookie(c.Writer, s.plainCookie(c.Request, langCookie, cat.tag.String(), langCookieAge))
	c.Redirect(http.StatusSeeOther, s.langBack(c.Request))
	return nil
}

// langBack is where the switcher returns to: the page it was clicked on,
// from the Referer (the portal's pages send it to their own origin:
// Referrer-Policy same-origin), as a path on this host only, never
// another site. Without a usable one, the portal's home.
func (s *Server) langBack(r *http.Request) string {
	const home = portalPrefix
	ref := r.Referer()
	if ref == "" {
		return home
	}
	u, err := url.Parse(ref)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) || (u.Scheme != "http" && u.Scheme != "https") {
		return home
	}
	p := u.EscapedPath()
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") || strings.ContainsAny(p, "\\\r\n\t") {
		return home
	}
	if strings.HasPrefix(p, portalPrefix+"lang/") {
		return home // a switcher link is no page to go back to
	}
	if !s.getsPage(p) {
		return home
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return p
}

// getsPage says whether a GET of path p shows a page. Outside /.keygate/
// every path is the gate's, which answers any GET. In the portal, a page
// shown in answer to a form (POST /.keygate/settings/totp) has no GET of
// its own: going back there would be a "not found".
func (s *Server) getsPage(p string) bool {
	if !strings.HasPrefix(p, portalPrefix) {
		return true
	}
	want := strings.Split(strings.Trim(p, "/"), "/")
	for _, rt := range s.engine.Routes() {
		if rt.Method == http.MethodGet && routeMatches(strings.Split(strings.Trim(rt.Path, "/"), "/"), want) {
			return true
		}
	}
	return false
}

// routeMatches matches path segments against a Gin route's: ":name" is
// any one segment, "*name" the rest.
func routeMatches(route, path []string) bool {
	for i, seg := range route {
		if strings.HasPrefix(seg, "*") {
			return true
		}
		if i >= len(path) || (!strings.HasPrefix(seg, ":") && seg != path[i]) {
			return false
		}
	}
	return len(route) == len(path)
}

// langLink is one entry of the switcher.
type langLink struct {
	Tag     string // "ru": the link's lang and hreflang, and its path
	Name    string // the language's own name for itself ("Русский")
	Current bool   // the page is in this language
}

// Languages are the switcher's entries for a page in c's language: every
// catalogue, named in its own language.
func (c *catalog) Languages() []langLink {
	out := make([]langLink, 0, len(c.peers))
	for _, p := range c.peers {
		out = append(out, langLink{Tag: p.tag.String(), Name: p.T("lang.name"), Current: p == c})
	}
	return out
}

// signInClient is the client of a sign-in: the request's (address,
// browser, the portal's language, and whether the person chose it with
// the switcher), with the time zone the browser reported when it is one
// this machine knows. A sign-in remembers them on the user record for
// later mails (authn.Users.SignIn).
func (s *Server) signInClient(c *gin.Context, tz string) authn.Client {
	cl := s.client(c)
	cl.TimeZone = activity.TimeZone(tz)
	if v, ok := readCookie(c.Request, langCookie); ok {
		cl.LangChosen = s.tr.byTag(v) != nil
	}
	return cl
}
