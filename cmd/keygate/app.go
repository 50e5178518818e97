package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	adminsvc "github.com/keygate/keygate/authn/admin"
	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/authn/policies"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/cmd/keygate/config"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/emailcode"
	"github.com/keygate/keygate/factors/recovery"
	"github.com/keygate/keygate/factors/sms"
	"github.com/keygate/keygate/factors/totp"
	fwa "github.com/keygate/keygate/factors/webauthn"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/problem"
	"github.com/keygate/keygate/web"
)

// app is keygate's running parts, wired from one configuration.
type app struct {
	cfg       *config.Config
	log       *slog.Logger
	kv        store.Backend
	users     *authn.Users
	sessions  *authn.Sessions
	policy    *policy.Holder
	mfa       *authn.MFA
	links     *authn.EnrollLinks
	devices   *authn.Devices
	policies  *policies.Store   // versioned policies in the store (policycmd.go)
	admin     *adminsvc.Service // every admin use-case (adminService)
	adminOnce sync.Once
	audit     *activity.Audit  // what admins did
	reg       *authn.Regulator // brute-force limits of every verifier
	activity  *activity.Log    // per-user activity log and its notices
	outbox    *mail.Outbox     // set when email goes to a directory (demo)
	obs       observability    // metrics and access log (metrics.go)

	// Reloadable parts (SIGHUP).
	reloadMu sync.Mutex
	level    *slog.LevelVar
	mail     *swapSender
	certs    *certReloader
	web      *web.Server
}

// loadConfig reads and validates the configuration file, printing every
// problem when it is unusable.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path, os.Getenv)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			return nil, fmt.Errorf("%s has %d problem(s):\n%w", path, len(ps), err)
		}
		return nil, err
	}
	return cfg, nil
}

// newLogger builds the logger; its level can change on a reload.
func newLogger(cfg *config.Config, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	lvl := new(slog.LevelVar)
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), lvl
	}
	return slog.New(slog.NewTextHandler(w, opts)), lvl
}

// openApp opens the store and builds the domain services. The caller owns
// Close.
func openApp(ctx context.Context, cfg *config.Config, log *slog.Logger) (*app, error) {
	// LoadKey names the source (file or environment) in its errors.
	key, err := badgerstore.LoadKey(cfg.Storage.EncryptionKeyFile, string(cfg.Storage.EncryptionKey))
	if err != nil {
		return nil, fmt.Errorf("storage encryption key: %w", err)
	}
	kv, err := openBackend(ctx, cfg, key, log)
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, log: log, kv: kv, policy: &policy.Holder{}}
	// The policy in force is the store's current version; the
	// configuration's policy only seeds version 1 on the first start.
	if err := a.loadPolicy(ctx); err != nil {
		_ = kv.Close()
		return nil, err
	}
	a.sessions, err = authn.NewSessions(ctx, kv, authn.SessionOptions{
		IdleTimeout: cfg.Session.IdleTimeout.D(), Lifetime: cfg.Session.Lifetime.D(), Now: time.Now,
		MaxPerUser: cfg.Session.MaxPerUser,
	})
	if err != nil {
		_ = kv.Close()
		return nil, fmt.Errorf("load sessions: %w", err)
	}
	if err := a.initMetrics(); err != nil {
		_ = kv.Close()
		return nil, err
	}
	if err := a.wireFactors(ctx, key); err != nil {
		_ = kv.Close()
		return nil, err
	}
	return a, nil
}

// factorKinds are the kinds of every factor keygate can register (those
// the configuration turns on are a subset), in the chooser's order: the
// metrics have a series for each.
var factorKinds = []string{fwa.Kind, totp.Kind, factors.KindEmail, factors.KindSMS, recovery.Kind}

// wireFactors builds the second factors the configuration turns on.
func (a *app) wireFactors(ctx context.Context, storageKey []byte) error {
	cfg := a.cfg
	master, err := a.secretsKey(ctx, storageKey)
	if err != nil {
		return err
	}
	secrets := func(purpose string) (*factors.Secrets, error) { return factors.NewSecrets(master, purpose) }
	a.links = authn.NewEnrollLinks(a.kv, time.Now)
	a.devices = authn.NewDevices(a.kv, time.Now)
	o := authn.MFAOptions{
		Links: a.links, Devices: a.devices,
		EmailEnrollment:    cfg.Email.Enrollment && cfg.Email.From != "",
		PasskeyIsTwoFactor: cfg.WebAuthn.PasskeyTwoFactor,
		RequireSecondFactor: func() bool {
			return a.policy.Load().RequiresSecondFactor()
		},
	}
	totpSecrets, err := secrets("totp")
	if err != nil {
		return err
	}
	// The registry of second factors, in the chooser's order (strongest
	// first). This is the one place that names the concrete factors: authn
	// and web drive them through factors.Factor.
	var set factors.Set
	var webauthnFactor, emailFactor, smsFactor factors.Factor
	// notices mail people about their account (through the activity log),
	// when email is on.
	var notices *activity.Notices
	if w := cfg.WebAuthn; w.RPID != "" {
		f, err := fwa.New(a.kv, fwa.Options{RPID: w.RPID, RPName: w.RPName, Origins: w.Origins, Logger: a.log,
			Trust: fwa.TrustOptions{MDSBlobFile: w.MDSBlobFile, MDSRootFile: w.MDSRootFile, RootCertFiles: w.RootCertFiles}})
		if err != nil {
			return fmt.Errorf("webauthn: %w", err)
		}
		webauthnFactor = f
	}
	t := cfg.TOTP
	totpFactor, err := totp.New(a.kv, totp.Options{Issuer: t.Issuer, Algorithm: t.Algorithm, Digits: t.Digits,
		Period: uint(t.Period), Skew: uint(t.Skew), Secrets: totpSecrets})
	if err != nil {
		return fmt.Errorf("totp: %w", err)
	}
	recSecrets, err := secrets("recovery")
	if err != nil {
		return err
	}
	recoveryFactor, err := recovery.New(a.kv, recovery.Options{Secrets: recSecrets})
	if err != nil {
		return fmt.Errorf("recovery codes: %w", err)
	}
	if cfg.Email.From != "" {
		direct, err := a.mailSender()
		if err != nil {
			return err
		}
		// The factors hold the swappable sender, so a reload can change
		// the SMTP server under them.
		a.mail = &swapSender{}
		a.mail.set(direct)
		sender := countingSender{next: a.mail, m: a.obs.metrics}
		mailSecrets, err := secrets("email")
		if err != nil {
			return err
		}
		notices = activity.NewNotices(sender, "keygate", a.log, time.Now)
		e := cfg.Email.Code
		f, err := emailcode.New(a.kv, sender, emailcode.Options{Length: e.Length, TTL: e.TTL.D(), MaxTries: e.MaxTries,
			Cooldown: e.Cooldown.D(), HourlyCap: e.HourlyCap, Secrets: mailSecrets})
		if err != nil {
			return fmt.Errorf("email codes: %w", err)
		}
		emailFactor = f
	}
	if snd, err := cfg.SMS.Sender(config.ReadSecretFile); err != nil {
		return fmt.Errorf("sms: %w", err)
	} else if snd != nil {
		smsSecrets, err := secrets("sms")
		if err != nil {
			return err
		}
		if smsFactor, err = sms.New(a.kv, smsSecrets, snd, cfg.SMS.Options()); err != nil {
			return fmt.Errorf("sms: %w", err)
		}
	}
	for _, f := range []factors.Factor{webauthnFactor, totpFactor, emailFactor, smsFactor, recoveryFactor} {
		if f != nil {
			set = append(set, f)
		}
	}
	o.Factors = set
	// Every verifier is regulated and every sign-in and security change
	// logged (and mailed, when email is on).
	// One listener hears what happens to accounts: the activity log (which
	// mails the notices) and the lockout metrics. Users and the regulator
	// get it, and each other, when they are built.
	a.activity = activity.NewLog(a.kv, activity.Options{Retention: time.Duration(cfg.Activity.RetentionDays) * 24 * time.Hour,
		Notices: notices, PortalURL: a.portalBase(), Logger: a.log})
	events := authn.Tee(a.activity, lockoutMetrics{m: a.obs.metrics})
	r := cfg.Regulation
	a.reg = authn.NewRegulator(a.kv, authn.RegulationOptions{MaxFailures: r.MaxFailures, IPMaxFailures: r.IPMaxFailures,
		Window: r.Window.D(), Lockout: r.Lockout.D(), MaxLockout: r.MaxLockout.D(), Logger: a.log, Events: events})
	p := cfg.Passwords
	hasher := authn.NewHasher(authn.Argon2Params{
		MemoryKiB: uint32(p.Argon2id.MemoryKiB), Iterations: uint32(p.Argon2id.Iterations),
		Parallelism: uint8(p.Argon2id.Parallelism), SaltLen: 16, KeyLen: 32,
	}, p.MaxConcurrentHashes)
	a.users = authn.NewUsers(a.kv, authn.UserOptions{Hasher: hasher, Policy: authn.PasswordPolicy{MinLength: p.MinLength},
		Regulator: a.reg, Events: events})
	o.Regulator, o.Activity = a.reg, a.activity
	// Self-service recovery needs a mailbox to prove and to tell.
	if notices != nil {
		o.Recoveries = authn.NewRecoveryRequests(a.kv, authn.RecoveryOptions{Wait: cfg.Recovery.WaitingPeriod.D(),
			PortalURL: a.portalBase(), Logger: a.log})
	}
	a.mfa = authn.NewMFA(a.users, a.sessions, o)
	return nil
}

// portalBase is the origin that links to the portal start with (mails,
// enrolment links): server.portal_url or what config.PortalURL derives.
// Validate demands one whenever keygate protects a host, so "" means
// nothing is protected yet; a link built from it is refused before it is
// shown (see user enroll-link).
func (a *app) portalBase() string {
	u, err := a.cfg.PortalURL()
	if err != nil {
		return ""
	}
	return u
}

// mailSender is SMTP, or a directory when email.outbox is set.
func (a *app) mailSender() (mail.Sender, error) {
	cfg := a.cfg
	if cfg.Email.Outbox != "" {
		ob, err := mail.NewOutbox(cfg.Email.Outbox, cfg.Email.From)
		if err != nil {
			return nil, fmt.Errorf("email outbox: %w", err)
		}
		a.outbox = ob
		return ob, nil
	}
	_, password, err := cfg.SMTPPassword()
	if err != nil {
		return nil, err
	}
	sm := cfg.Email.SMTP
	s, err := mail.NewSMTP(mail.SMTPOptions{From: cfg.Email.From, Host: sm.Host, Port: sm.Port, TLS: sm.TLS,
		Username: sm.Username, Password: password, Logger: a.log})
	if err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	return s, nil
}

// secretsKey is the master key factor secrets are sealed with: the storage
// encryption key. Without one, a random key kept in the store itself is
// used — which protects nothing at rest, so keygate says so.
func (a *app) secretsKey(ctx context.Context, storageKey []byte) ([]byte, error) {
	if len(storageKey) >= 32 {
		return storageKey, nil
	}
	a.log.Warn("storage is not encrypted: set storage.encryption_key_file (or KEYGATE_STORAGE_ENCRYPTION_KEY); TOTP secrets and code hashes are then only as safe as the data directory")
	const key = "meta/secrets-key"
	it, err := a.kv.Get(ctx, key)
	if err == nil && len(it.Value) == 32 {
		return it.Value, nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if _, err := a.kv.CompareAndSet(ctx, key, b, 0, store.WriteOptions{Durable: true}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return a.secretsKey(ctx, storageKey)
		}
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	return b, nil
}

// webServer builds the HTTP handler from the app.
func (a *app) webServer() (*web.Server, error) {
	ups := make([]web.Upstream, 0, len(a.cfg.Upstreams))
	for _, u := range a.cfg.Upstreams {
		target, err := url.Parse(u.URL)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", u.Host, err)
		}
		ups = append(ups, web.Upstream{Host: strings.ToLower(u.Host), URL: target, Body: web.BodyLimits{Timeout: u.BodyTimeout.D()},
			Paths: u.PathOptions()})
	}
	return web.New(web.Options{
		Upstreams:       ups,
		Policy:          a.policy,
		Users:           a.users,
		Sessions:        a.sessions,
		CookieDomain:    a.cfg.Session.CookieDomain,
		TrustedProxies:  a.cfg.Server.TrustedProxies,
		ProtectedHosts:  a.cfg.Server.ProtectedHosts,
		DefaultRedirect: a.cfg.Server.DefaultRedirect,
		Logger:          a.log,
		MFA:             a.mfa,
		Problems:        []problem.Table{fwa.Problems, sms.Problems},
		RememberDevice:  time.Duration(a.cfg.Session.RememberDeviceDays) * 24 * time.Hour,
		EmailEnrollment: a.cfg.Email.Enrollment && a.cfg.Email.From != "",
		Parked:          authn.NewParkedRequests(a.kv, 0),
		Metrics:         a.obs.metrics,
		AccessLog:       a.obs.access,
		Admin:           a.adminOptions(),
		Body:            web.BodyLimits{Timeout: a.cfg.Server.BodyTimeout.D(), Buffer: int64(a.cfg.Server.BodyBuffer)},
		Ready: func(ctx context.Context) error {
			_, err := a.kv.Get(ctx, "meta/ready-probe")
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		},
		PolicyVersion: func() int {
			if a.policies == nil {
				return 0
			}
			return a.policies.InForce()
		},
		// HSTS rides answers over the TLS listener only (web/hsts.go).
		HSTSIncludeSubdomains: a.cfg.Server.TLS.HSTSIncludeSubdomains,
	})
}

// Close flushes what sessions kept in memory and closes the store.
func (a *app) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errFlush := a.sessions.Flush(ctx)
	return errors.Join(errFlush, a.obs.flush(), a.kv.Close())
}
