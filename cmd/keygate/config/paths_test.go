package config

import (
	"testing"

	"github.com/keygate/keygate/policy"
)

// upstreams[].case_sensitive and path_parameters reach the gate's path
// options; left out, they are the safe defaults; a wrong type is a problem
// named by its path.
func TestUpstreamPathOptions(t *testing.T) {
	c := mustParse(t, `upstreams:
  - {host: app.example.com, url: "http://127.0.0.1:8080"}
  - {host: java.example.com, url: "http://127.0.0.1:8081", path_parameters: true}
  - {host: go.example.com, url: "http://127.0.0.1:8082", case_sensitive: true}
`, nil)
	want := []policy.PathOptions{{}, {PathParameters: true}, {CaseSensitive: true}}
	for i, u := range c.Upstreams {
		if got := u.PathOptions(); got != want[i] {
			t.Errorf("upstreams[%d] (%s): %+v, want %+v", i, u.Host, got, want[i])
		}
	}
	_, err := Parse([]byte("upstreams:\n  - {host: a.example.com, url: \"http://127.0.0.1:1\", case_sensitive: maybe}\n"), nil)
	if ps := problemsOf(t, err); len(ps) != 1 || ps[0].Path != "upstreams[0].case_sensitive" {
		t.Errorf("problems %+v", ps)
	}
}
