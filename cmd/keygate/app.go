package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/cmd/keygate/config"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/web"
)

// app is keygate's running parts, wired from one configuration.
type app struct {
	cfg      *config.Config
	log      *slog.Logger
	kv       *badgerstore.Store
	users    *authn.Users
	sessions *authn.Sessions
	policy   *policy.Holder
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

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// openApp opens the store and builds the domain services. The caller owns
// Close.
func openApp(ctx context.Context, cfg *config.Config, log *slog.Logger) (*app, error) {
	// LoadKey names the source (file or environment) in its errors.
	key, err := badgerstore.LoadKey(cfg.Storage.EncryptionKeyFile, string(cfg.Storage.EncryptionKey))
	if err != nil {
		return nil, fmt.Errorf("storage encryption key: %w", err)
	}
	kv, err := badgerstore.Open(badgerstore.Options{Path: cfg.Storage.Path, EncryptionKey: key, Logger: log})
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, log: log, kv: kv, policy: &policy.Holder{}}
	compiled, err := policy.Compile(cfg.Policy)
	if err != nil {
		_ = kv.Close()
		return nil, fmt.Errorf("policy: %w", err)
	}
	a.policy.Store(compiled)
	p := cfg.Passwords
	hasher := authn.NewHasher(authn.Argon2Params{
		MemoryKiB: uint32(p.Argon2id.MemoryKiB), Iterations: uint32(p.Argon2id.Iterations),
		Parallelism: uint8(p.Argon2id.Parallelism), SaltLen: 16, KeyLen: 32,
	}, p.MaxConcurrentHashes)
	a.users = authn.NewUsers(kv, hasher, authn.PasswordPolicy{MinLength: p.MinLength}, time.Now)
	a.sessions, err = authn.NewSessions(ctx, kv, authn.SessionOptions{
		IdleTimeout: cfg.Session.IdleTimeout.D(), Lifetime: cfg.Session.Lifetime.D(), Now: time.Now,
	})
	if err != nil {
		_ = kv.Close()
		return nil, fmt.Errorf("load sessions: %w", err)
	}
	return a, nil
}

// webServer builds the HTTP handler from the app.
func (a *app) webServer() (*web.Server, error) {
	ups := make([]web.Upstream, 0, len(a.cfg.Upstreams))
	for _, u := range a.cfg.Upstreams {
		target, err := url.Parse(u.URL)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", u.Host, err)
		}
		ups = append(ups, web.Upstream{Host: strings.ToLower(u.Host), URL: target})
	}
	return web.New(web.Options{
		Upstreams:       ups,
		Policy:          a.policy,
		Users:           a.users,
		Sessions:        a.sessions,
		CookieDomain:    a.cfg.Session.CookieDomain,
		TrustedProxies:  a.cfg.Server.TrustedProxies,
		DefaultRedirect: a.cfg.Server.DefaultRedirect,
		Logger:          a.log,
	})
}

// Close flushes what sessions kept in memory and closes the store.
func (a *app) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errFlush := a.sessions.Flush(ctx)
	return errors.Join(errFlush, a.kv.Close())
}
