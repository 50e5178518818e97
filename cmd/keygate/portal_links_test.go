package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/cmd/keygate/config"
	"github.com/keygate/keygate/policy"
)

var mailLink = regexp.MustCompile(`([^\s"<>]*)/\.keygate/not-me/[A-Za-z0-9_-]+`)

// Links in mails and the enrolment link the CLI prints are absolute
// http(s) URLs in every deployment mode, starting with the portal's
// address (configured or derived).
func TestLinksAreAbsoluteInEveryMode(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(dir string) config.Config
		want string
	}{
		{"proxy mode behind a TLS-terminating proxy", func(string) config.Config {
			c := config.Default()
			c.Upstreams = []config.Upstream{{Host: "app.example.com", URL: "http://127.0.0.1:1"}}
			c.Server.TrustedProxies = []string{"127.0.0.1"}
			c.Server.PortalURL = "https://app.example.com/"
			return c
		}, "https://app.example.com"},
		{"proxy mode, reached directly", func(string) config.Config {
			c := config.Default()
			c.Server.Listen = "127.0.0.1:9093"
			c.Upstreams = []config.Upstream{{Host: "localhost", URL: "http://127.0.0.1:1"}}
			return c
		}, "http://localhost:9093"},
		{"proxy mode behind a proxy, derived", func(string) config.Config {
			c := config.Default()
			c.Upstreams = []config.Upstream{{Host: "app.example.com", URL: "http://127.0.0.1:1"}}
			c.Server.TrustedProxies = []string{"127.0.0.1"}
			return c
		}, "https://app.example.com"},
		{"forward-auth mode (no upstreams)", func(string) config.Config {
			c := config.Default()
			c.Server.TrustedProxies = []string{"127.0.0.1"}
			c.Server.PortalURL = "https://auth.example.net"
			c.Policy.Rules = []policy.Rule{{Name: "grafana", Hosts: []string{"grafana.example.net"}, Action: policy.ActionTwoFactor}}
			return c
		}, "https://auth.example.net"},
		{"demo", func(dir string) config.Config {
			return demoConfig("127.0.0.1:18089", filepath.Join(dir, "data"), "http://127.0.0.1:1")
		}, "http://localhost:18089"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := tc.cfg(dir)
			cfg.Storage.Path = filepath.Join(dir, "data")
			cfg.Storage.EncryptionKeyFile = ""
			cfg.Server.AdminSocket = filepath.Join(dir, "k.sock")
			cfg.Email.From = "keygate <keygate@example.com>"
			cfg.Email.Outbox = filepath.Join(dir, "outbox")
			if err := cfg.Validate(); err != nil {
				t.Fatalf("config: %v", err)
			}
			ctx := context.Background()
			a, err := openApp(ctx, &cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			u, err := a.users.Add(ctx, authn.NewUser{Username: "alice", Email: "alice@example.com", Password: "correct-staple-battery-7", EmailVerified: true})
			if err != nil {
				t.Fatal(err)
			}
			a.activity.Changed(ctx, u.Person(), activity.EventFactorAdded, policy.FactorTOTP, "", authn.Client{})
			mails, _ := filepath.Glob(filepath.Join(cfg.Email.Outbox, "*"))
			found := false
			for _, f := range mails {
				raw, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				// Both parts are quoted-printable.
				b, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
				for _, m := range mailLink.FindAllStringSubmatch(string(b), -1) {
					found = true
					if m[1] != tc.want || !absoluteLink(m[0]) {
						t.Errorf("mail link %q does not start with %s", m[0], tc.want)
					}
				}
			}
			if !found {
				var b []byte
				if len(mails) > 0 {
					b, _ = os.ReadFile(mails[0])
				}
				t.Fatalf("no \"this wasn't me\" link in %d mail(s): %s", len(mails), b)
			}
			l, err := a.localAdmin().EnrollLink(ctx, "alice", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(l.URL, tc.want+"/.keygate/enroll/") || !absoluteLink(l.URL) {
				t.Errorf("enrolment link %q", l.URL)
			}
		})
	}
}

// Where the portal's address cannot be derived, validate says so with the
// YAML path; a bad portal_url is refused.
func TestPortalURLDemandedWhenNotDerivable(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*config.Config)
	}{
		{"forward-auth without origins", func(c *config.Config) {
			c.Server.TrustedProxies = []string{"127.0.0.1"}
			c.Policy.Rules = []policy.Rule{{Name: "g", Hosts: []string{"grafana.example.net"}, Action: policy.ActionTwoFactor}}
		}},
		{"forward-auth, TLS listener, no host known", func(c *config.Config) {
			c.Server.TrustedProxies = []string{"127.0.0.1"}
			c.Server.Listen = "0.0.0.0:0"
			c.Policy.Rules = []policy.Rule{{Name: "g", Hosts: []string{"*.example.net"}, Action: policy.ActionOneFactor}}
		}},
		{"a path in portal_url", func(c *config.Config) { c.Server.PortalURL = "https://app.example.com/portal" }},
		{"not http(s)", func(c *config.Config) { c.Server.PortalURL = "ftp://app.example.com" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			tc.mut(&c)
			var ps config.Problems
			if err := c.Validate(); !errors.As(err, &ps) {
				t.Fatalf("validate: %v", err)
			}
			found := false
			for _, p := range ps {
				found = found || p.Path == "server.portal_url"
			}
			if !found {
				t.Fatalf("no server.portal_url problem in %v", ps)
			}
		})
	}
}
