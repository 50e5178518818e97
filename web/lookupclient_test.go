package web

import (
	"net/http/httptest"
	"testing"
)

// An unseen cookie is charged to the client that sent it: the peer, or
// behind a trusted proxy the address that proxy appended (never an address
// the client wrote into X-Forwarded-For itself).
func TestLookupClient(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"10.0.0.0/8"}})
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"direct client", "198.51.100.7:4242", nil, "198.51.100.7"},
		{"direct client claiming another address", "198.51.100.7:4242", []string{"203.0.113.1"}, "198.51.100.7"},
		{"direct IPv6 client", "[2001:db8::1]:4242", nil, "2001:db8::1"},
		{"trusted proxy", "10.1.2.3:80", []string{"203.0.113.9"}, "203.0.113.9"},
		{"trusted proxy, client-written entries first", "10.1.2.3:80", []string{"1.1.1.1, 203.0.113.9"}, "203.0.113.9"},
		{"trusted proxy, two header lines", "10.1.2.3:80", []string{"1.1.1.1", "203.0.113.9 "}, "203.0.113.9"},
		{"trusted proxy without the header", "10.1.2.3:80", nil, "10.1.2.3"},
		{"trusted proxy, empty last entry", "10.1.2.3:80", []string{"203.0.113.9,"}, "10.1.2.3"},
	} {
		r := httptest.NewRequest("GET", "http://app.example.com/", nil)
		r.RemoteAddr = tc.peer
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := h.web.lookupClient(r); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
