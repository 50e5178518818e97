package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"

	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/cmd/keygate/config"
	"github.com/keygate/keygate/web"
)

// SIGHUP reloads what can change without a restart — upstreams, email,
// the log level, the TLS certificate — atomically: the new configuration
// is loaded and validated whole first, and on any problem the old one
// keeps serving and the log says why. What needs a restart (listen
// address, storage, WebAuthn relying party, …) is reported, not applied.

// swapSender is the email sender the factors hold; a reload swaps what is
// behind it.
type swapSender struct {
	p atomic.Pointer[mail.Sender]
}

func (s *swapSender) set(v mail.Sender) { s.p.Store(&v) }

// Send implements mail.Sender.
func (s *swapSender) Send(ctx context.Context, m mail.Message) error {
	p := s.p.Load()
	if p == nil {
		return fmt.Errorf("%w: email is not configured", mail.ErrDelivery)
	}
	return (*p).Send(ctx, m)
}

// certReloader serves the current TLS certificate.
type certReloader struct {
	p atomic.Pointer[tls.Certificate]
}

func (c *certReloader) load(certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	c.p.Store(&cert)
	return nil
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.p.Load(), nil }

// reload applies the configuration file at path to the running app.
func (a *app) reload(path string) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	next, err := loadConfig(path)
	if err != nil {
		return err
	}
	old := a.cfg
	if !reflect.DeepEqual(old.Policy, next.Policy) {
		a.log.Warn("the policy section of the configuration file is only read on the very first start; the policy in force lives in the store: use keygate policy import (or the admin page) to change it")
	}
	if restart := needsRestart(old, next); len(restart) > 0 {
		a.log.Warn("configuration changes that need a restart were not applied", "keys", strings.Join(restart, ", "))
	}
	// Build everything that can fail before changing anything.
	var ups []web.Upstream
	for _, u := range next.Upstreams {
		target, err := url.Parse(u.URL)
		if err != nil {
			return fmt.Errorf("upstreams: %w", err)
		}
		ups = append(ups, web.Upstream{Host: strings.ToLower(u.Host), URL: target, Body: web.BodyLimits{Timeout: u.BodyTimeout.D()},
			Paths: u.PathOptions()})
	}
	var sender mail.Sender
	if next.Email.From != "" && a.mail != nil {
		saved := a.cfg
		a.cfg = next
		sender, err = a.mailSender()
		a.cfg = saved
		if err != nil {
			return err
		}
	}
	if a.certs != nil && next.Server.TLS.CertFile != "" {
		probe := &certReloader{}
		if err := probe.load(next.Server.TLS.CertFile, next.Server.TLS.KeyFile); err != nil {
			return err
		}
	}
	// Apply.
	if a.web != nil {
		if err := a.web.SetUpstreams(ups); err != nil {
			return err
		}
	}
	if sender != nil {
		a.mail.set(sender)
	}
	if a.certs != nil && next.Server.TLS.CertFile != "" {
		_ = a.certs.load(next.Server.TLS.CertFile, next.Server.TLS.KeyFile)
	}
	if a.level != nil {
		_ = a.level.UnmarshalText([]byte(next.Log.Level))
	}
	a.cfg = next
	a.log.Info("configuration reloaded", "upstreams", len(ups), "log_level", next.Log.Level)
	return nil
}

// needsRestart lists the keys whose change a reload cannot apply.
func needsRestart(old, next *config.Config) []string {
	var keys []string
	check := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, key)
		}
	}
	check("server.listen", old.Server.Listen, next.Server.Listen)
	check("server.trusted_proxies", old.Server.TrustedProxies, next.Server.TrustedProxies)
	check("server.protected_hosts", old.Server.ProtectedHosts, next.Server.ProtectedHosts)
	check("server.portal_url", old.Server.PortalURL, next.Server.PortalURL)
	check("server.body_timeout", old.Server.BodyTimeout, next.Server.BodyTimeout)
	check("server.body_buffer", old.Server.BodyBuffer, next.Server.BodyBuffer)
	check("server.tls.hsts_include_subdomains", old.Server.TLS.HSTSIncludeSubdomains, next.Server.TLS.HSTSIncludeSubdomains)
	check("server.admin_socket", old.AdminSocketPath(), next.AdminSocketPath())
	check("server.tls (on/off)", old.Server.TLS.CertFile == "", next.Server.TLS.CertFile == "")
	check("session", old.Session, next.Session)
	check("storage", old.Storage, next.Storage)
	check("webauthn", old.WebAuthn, next.WebAuthn)
	check("totp", old.TOTP, next.TOTP)
	check("email.code", old.Email.Code, next.Email.Code)
	check("email.from (on/off)", old.Email.From == "", next.Email.From == "")
	check("passwords", old.Passwords, next.Passwords)
	check("metrics", old.Metrics, next.Metrics)
	check("log.format", old.Log.Format, next.Log.Format)
	check("log.access", old.Log.Access, next.Log.Access)
	check("admin", old.Admin, next.Admin)
	return keys
}
