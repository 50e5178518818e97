package web

import (
	"strconv"

	"github.com/gin-gonic/gin"
)

// hstsMaxAge is one year, the least HSTS preload lists accept: long
// enough that a person who came once over HTTPS is not downgraded by a
// network attacker on their next visit.
const hstsMaxAge = 365 * 24 * 60 * 60

// hstsValue is the Strict-Transport-Security value keygate sends.
// includeSubDomains only when the admin says every subdomain speaks HTTPS:
// keygate cannot know, and the header would lock browsers out of a plain
// HTTP app on a subdomain for a year.
func hstsValue(includeSubdomains bool) []string {
	v := "max-age=" + strconv.Itoa(hstsMaxAge)
	if includeSubdomains {
		v += "; includeSubDomains"
	}
	return []string{v}
}

// strictTransport adds HSTS to every answer (portal, API and the apps'
// own) that went out over keygate's own TLS listener. Behind a TLS-
// terminating proxy the proxy owns the connection's promises, so an answer
// that reached keygate over plain HTTP never carries it, whatever
// X-Forwarded-Proto says. The value is built once; setting it allocates
// nothing.
func (s *Server) strictTransport(c *gin.Context) {
	if c.Request.TLS != nil {
		c.Writer.Header()["Strict-Transport-Security"] = s.hsts
	}
	c.Next()
}
