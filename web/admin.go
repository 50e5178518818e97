package web

import "github.com/gin-gonic/gin"

// adminRoutes registers the admin page and the admin JSON API
// (/.keygate/admin, /.keygate/api/admin/…).
func (s *Server) adminRoutes(k, api *gin.RouterGroup) {}
