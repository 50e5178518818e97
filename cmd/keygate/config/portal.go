package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ErrNoPortalURL: server.portal_url is not set and cannot be derived, so
// keygate cannot write absolute links to its portal.
var ErrNoPortalURL = errors.New("server.portal_url is not set and cannot be derived")

// PortalURL is the origin (scheme://host[:port], no trailing slash) that
// links in mails and links printed by the CLI point to. The portal is
// served on every protected host, so any origin people use will do; what
// must be right is the scheme and port they reach it on. In order:
//   - server.portal_url;
//   - webauthn.origins[0], the exact origin browsers report;
//   - with keygate's own TLS listener: https://upstreams[0].host, with the
//     listen port unless it is 443;
//   - with a plain listener that people reach directly (no trusted proxy,
//     and either a non-loopback listen address or a localhost upstream):
//     http://upstreams[0].host, with the listen port unless it is 80;
//   - behind a proxy (trusted_proxies set, or keygate on loopback for a
//     public name): https://upstreams[0].host, the TLS-terminating proxy
//     on the default port that the shipped snippets set up.
//
// In forward-auth mode (trusted proxies, no upstreams) no host is known as the
// portal's: server.portal_url must be set (or webauthn.origins), and
// Validate says so when anything is protected.
func (c *Config) PortalURL() (string, error) {
	if p := c.Server.PortalURL; p != "" {
		return strings.TrimSuffix(p, "/"), nil
	}
	if len(c.WebAuthn.Origins) > 0 {
		return strings.TrimSuffix(c.WebAuthn.Origins[0], "/"), nil
	}
	if len(c.Upstreams) == 0 || c.Upstreams[0].Host == "" {
		return "", fmt.Errorf("%w: no upstreams (forward-auth mode) and no webauthn.origins", ErrNoPortalURL)
	}
	host := c.Upstreams[0].Host
	lhost, port, err := net.SplitHostPort(c.Server.Listen)
	if err != nil || port == "0" {
		return "", fmt.Errorf("%w: server.listen %q names no fixed port", ErrNoPortalURL, c.Server.Listen)
	}
	if c.Server.TLS.CertFile != "" {
		return origin("https", host, port, "443"), nil
	}
	direct := len(c.Server.TrustedProxies) == 0 &&
		(lhost == "" || !isLocalHost(lhost) || host == "localhost" || strings.HasSuffix(host, ".localhost"))
	if direct {
		return origin("http", host, port, "80"), nil
	}
	// A proxy in front (trusted_proxies set, or keygate on loopback for a
	// public name): in production it terminates TLS on the default port,
	// as the shipped snippets do. Anything else needs server.portal_url.
	return "https://" + host, nil
}

func origin(scheme, host, port, defaultPort string) string {
	if port == defaultPort {
		return scheme + "://" + host
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// protectsHosts says whether keygate guards hosts, so people get links and
// the portal's address must be known: upstreams (proxy mode), WebAuthn
// origins, or forward-auth mode (a trusted front proxy asks about the
// hosts the policy's rules name; without a trusted proxy forward-auth
// cannot work, and a file with rules only is not a deployment yet).
func (c *Config) protectsHosts() bool {
	if len(c.Upstreams) > 0 || len(c.WebAuthn.Origins) > 0 {
		return true
	}
	if len(c.Server.TrustedProxies) == 0 {
		return false
	}
	for _, r := range c.Policy.Rules {
		if len(r.Hosts) > 0 {
			return true
		}
	}
	return false
}

// validatePortalURL checks server.portal_url, and demands it where it
// cannot be derived (see PortalURL).
func (c *Config) validatePortalURL(ps *Problems) {
	if p := c.Server.PortalURL; p != "" {
		if msg := checkPortalURL(p); msg != "" {
			ps.add("server.portal_url", "%s", msg)
		}
		return
	}
	if !c.protectsHosts() {
		return // nothing protected yet, nothing to link to
	}
	if _, err := c.PortalURL(); err != nil {
		ps.add("server.portal_url", "required: links in mails and printed by the CLI need the address people open the portal at (such as https://app.example.com); it cannot be derived here (%v)",
			strings.TrimPrefix(err.Error(), ErrNoPortalURL.Error()+": "))
	}
}

// checkPortalURL accepts an origin: http(s)://host[:port], nothing after.
func checkPortalURL(p string) string {
	if msg := checkHTTPURL(p); msg != "" {
		return msg
	}
	u, _ := url.Parse(p)
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return fmt.Sprintf("%q: want scheme://host[:port] only, such as %s://%s (the portal is always under /.keygate/)", p, u.Scheme, u.Host)
	}
	return ""
}
