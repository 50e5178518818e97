package web

import (
	"net/url"
	"strings"
)

// safeRedirect returns rd when it is a place keygate may send a browser
// after sign-in, or "" when it is not. Accepted: a path on the current host
// ("/x", never "//x" or "/\x", which browsers read as another host), or an
// absolute http(s) URL without userinfo whose host is one keygate protects.
// Everything else — other hosts, javascript:, data:, scheme-relative URLs,
// backslashes, control characters — is refused, and callers fall back to a
// safe default.
func (s *Server) safeRedirect(rd string) string {
	if rd == "" || len(rd) > 4096 {
		return ""
	}
	for i := 0; i < len(rd); i++ {
		// Browsers strip tabs/newlines and treat "\" as "/" in URLs, which
		// turns innocent-looking strings into other hosts.
		if b := rd[i]; b < 0x20 || b == 0x7f || b == '\\' {
			return ""
		}
	}
	if strings.HasPrefix(rd, "/") {
		if strings.HasPrefix(rd, "//") {
			return ""
		}
		u, err := url.Parse(rd)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
			return ""
		}
		return rd
	}
	u, err := url.Parse(rd)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return ""
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return ""
	}
	if !s.protectedHost(strings.ToLower(u.Hostname())) {
		return ""
	}
	return u.String()
}

// redirectOrDefault applies safeRedirect and falls back to the configured
// default, else keygate's own session page.
func (s *Server) redirectOrDefault(rd string) string {
	if v := s.safeRedirect(rd); v != "" {
		return v
	}
	if s.defaultRedirect != "" {
		return s.defaultRedirect
	}
	return portalPrefix
}
