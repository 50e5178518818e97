package web

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/gin-gonic/gin"
)

// trustedPeers are the proxies whose forwarding headers keygate believes.
type trustedPeers []netip.Prefix

func parseTrusted(list []string) (trustedPeers, error) {
	out := make(trustedPeers, 0, len(list))
	for _, v := range list {
		if strings.Contains(v, "/") {
			p, err := netip.ParsePrefix(v)
			if err != nil {
				return nil, fmt.Errorf("web: trusted proxy %q: %w", v, err)
			}
			// Peers are compared unmapped, so an IPv4-mapped range
			// (::ffff:10.0.0.0/104) is kept as the IPv4 range it names,
			// as Gin reads it.
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("web: trusted proxy %q: %w", v, err)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (t trustedPeers) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr is the address of the TCP peer (the last hop).
func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// peerOf is peerAddr plus the address as text, without allocating in the
// common case: RemoteAddr's host part is already the canonical form, except
// for an IPv4-mapped IPv6 address, which is unmapped.
func peerOf(r *http.Request) (netip.Addr, string) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, ""
	}
	if a.Is4In6() {
		a = a.Unmap()
		return a, a.String()
	}
	return a, host
}

// clientInfo is who sent a request, worked out once per request.
type clientInfo struct {
	ip      netip.Addr // the client: the peer, or what a trusted proxy reports
	ipStr   string     // ip as text, for X-Forwarded-For and the access line
	trusted bool       // the peer is a trusted proxy
}

// clientOf works out the client of a proxied request. Requests straight from
// clients (the peer is not a trusted proxy) are answered from RemoteAddr
// without Gin's ClientIP, which parses it into a net.IP and walks the
// forwarding headers; behind a trusted proxy Gin walks X-Forwarded-For as
// for every other handler.
func (s *Server) clientOf(c *gin.Context) clientInfo {
	peer, peerStr := peerOf(c.Request)
	if peer.IsValid() && !s.trusted.contains(peer) {
		return clientInfo{ip: peer, ipStr: peerStr}
	}
	// A trusted proxy, or a peer that is not an IP address (a unix
	// socket, which Gin trusts).
	ip := clientAddr(c)
	return clientInfo{ip: ip, ipStr: ip.String(), trusted: peer.IsValid()}
}

// clientAddr is the client's address: the peer, or what a trusted proxy
// reports in X-Forwarded-For (Gin walks the chain, given SetTrustedProxies).
func clientAddr(c *gin.Context) netip.Addr {
	a, err := netip.ParseAddr(c.ClientIP())
	if err != nil {
		return peerAddr(c.Request)
	}
	return a.Unmap()
}

// isHTTPS says whether the client reached us over HTTPS: directly, or as a
// trusted proxy in front of us reports.
func (s *Server) isHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if len(s.trusted) == 0 || !s.trusted.contains(peerAddr(r)) {
		return false
	}
	return strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (s *Server) scheme(r *http.Request) string {
	if s.isHTTPS(r) {
		return "https"
	}
	return "http"
}

// hostOnly lower-cases the Host header and drops the port.
func hostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// lookupClient names the client whose budget an unseen session cookie is
// read from the store within (authn.Sessions.LookupAtFrom): the peer, or,
// behind a trusted proxy, the address that proxy appended last to
// X-Forwarded-For (the one it saw; earlier entries are the client's to
// write). It only slices strings: it runs on the path of every cookie.
func (s *Server) lookupClient(r *http.Request) string {
	peer, peerStr := peerOf(r)
	if len(s.trusted) == 0 || !peer.IsValid() || !s.trusted.contains(peer) {
		return peerStr
	}
	xff := r.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return peerStr
	}
	last := xff[len(xff)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	if last = strings.TrimSpace(last); last != "" {
		return last
	}
	return peerStr
}
