package web

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// authz is the forward-auth endpoint for nginx auth_request, Traefik
// ForwardAuth and Caddy forward_auth (GET /.keygate/api/authz).
func (s *Server) authz(c *gin.Context) {
	s.fail(c, errf(http.StatusNotImplemented, "not_implemented", "err.internal", nil))
}
