package web

import "github.com/gin-gonic/gin"

// accountRoutes registers the person's account pages beyond the security
// page: recent activity, sessions, "this wasn't me".
func (s *Server) accountRoutes(k, api *gin.RouterGroup) {}
