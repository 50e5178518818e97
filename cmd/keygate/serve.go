package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/cmd/keygate/config"
)

func newServeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway with the configuration file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			log, level := newLogger(cfg, cmd.ErrOrStderr())
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := openApp(ctx, cfg, log)
			if err != nil {
				return err
			}
			a.level = level
			a.startAccessLog(cmd.ErrOrStderr())
			defer func() {
				if err := a.Close(); err != nil {
					log.Error("close", "err", err)
				}
			}()
			ln, err := net.Listen("tcp", cfg.Server.Listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", cfg.Server.Listen, err)
			}
			if t := cfg.Server.TLS; t.CertFile != "" {
				a.certs = &certReloader{}
				if err := a.certs.load(t.CertFile, t.KeyFile); err != nil {
					_ = ln.Close()
					return err
				}
			}
			// SIGHUP: reload what can change without a restart; a broken
			// file leaves the running configuration in place.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						if err := a.reload(g.configPath); err != nil {
							log.Error("configuration reload failed; still serving with the previous configuration", "err", err)
						}
					}
				}
			}()
			return a.serve(ctx, ln, nil)
		},
	}
}

// serve runs the gateway on ln until ctx ends, then drains in-flight
// requests.
// ready, when set, is called with the bound address once it accepts.
func (a *app) serve(ctx context.Context, ln net.Listener, ready func(addr string)) error {
	h, err := a.webServer()
	if err != nil {
		_ = ln.Close()
		return err
	}
	a.web = h
	defer a.tuneRuntime()() // stops the memory governor when serving ends
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); !isLoopback(host) && a.certs == nil {
		a.log.Warn("serving plain HTTP on a non-loopback address: put a TLS-terminating proxy in front and list it in server.trusted_proxies", "listen", ln.Addr().String())
	}
	adminStop, err := a.startAdminSocket(a.cfg.AdminSocketPath())
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer adminStop()
	_, metricsStop, err := a.startMetrics(a.cfg.Metrics.Listen)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer metricsStop()

	bg, cancelBG := context.WithCancel(context.Background())
	defer cancelBG()
	go a.sessions.Run(bg, 15*time.Second)
	if backendName(a.cfg) != config.BackendBadger { // shared with other replicas: follow their session changes
		if err := a.sessions.StartFollowing(bg, a.kv); err != nil {
			return err
		}
	}
	go a.obs.runAccessLog(bg)
	// Policy versions saved on other replicas are put in force here
	// from the store's feed.
	go func() { _ = a.policies.Follow(bg, a.kv) }()
	if gc, ok := a.kv.(store.Collector); ok {
		go gc.RunGC(bg, 10*time.Minute)
	}

	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// net/http's own complaints (TLS handshake errors, broken
		// connections, panics) go to the app's log, in its format (JSON
		// when log.format is json), not to stderr as bare text.
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	if a.certs != nil {
		// ServeTLS (rather than a tls.NewListener around ln) is what
		// turns HTTP/2 on: it offers "h2" by ALPN and hands such
		// connections to the HTTP/2 server. The certificate comes from
		// the reloader, so a renewed one needs no restart.
		srv.TLSConfig = &tls.Config{GetCertificate: a.certs.get, MinVersion: tls.VersionTLS12}
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetHTTP2(true)
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	a.log.Info("keygate is serving", "listen", ln.Addr().String(), "version", version)
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	a.log.Info("shutting down: draining in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
