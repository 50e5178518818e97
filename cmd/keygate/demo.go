package main

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/cmd/keygate/config"
	"github.com/keygate/keygate/policy"
	"github.com/spf13/cobra"
)

// The demo's fixed account. It exists only in `keygate demo` data
// directories and is printed at every start, so nobody mistakes it for a
// secret.
const (
	demoUser     = "alice"
	demoPassword = "open-the-gate-42"
)

func newDemoCmd() *cobra.Command {
	var listen, data string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run keygate on embedded defaults with a demo app and a demo user",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), listen, data, nil)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9091", "address to serve on")
	cmd.Flags().StringVar(&data, "data", "./keygate-data", "data directory (reused on the next start)")
	return cmd
}

// demoConfig is the embedded default configuration of `keygate demo`.
func demoConfig(listen, data, upstreamURL string) config.Config {
	cfg := config.Default()
	cfg.Server.Listen = listen
	cfg.Server.AdminSocket = filepath.Join(data, "keygate.sock")
	cfg.Storage.Path = data
	cfg.Storage.EncryptionKeyFile = data + ".key"
	_, port, _ := net.SplitHostPort(listen)
	origin := "http://localhost:" + port
	cfg.Upstreams = []config.Upstream{{Host: "localhost", URL: upstreamURL}}
	cfg.WebAuthn.RPID, cfg.WebAuthn.RPName, cfg.WebAuthn.Origins = "localhost", "keygate demo", []string{origin}
	cfg.Email.From = "keygate demo <keygate@localhost>"
	cfg.Email.Outbox = filepath.Join(data, "outbox")
	if listen != demoMetricsListen {
		cfg.Metrics.Listen = demoMetricsListen
	}
	cfg.Policy = policy.Policy{
		Default: policy.ActionOneFactor,
		Rules: []policy.Rule{
			{Name: "public", Hosts: []string{"localhost"}, Paths: []string{"/public", "/public/**", "/favicon.ico"}, Action: policy.ActionBypass},
			{Name: "admin-area", Hosts: []string{"localhost"}, Paths: []string{"/admin", "/admin/**"}, Action: policy.ActionTwoFactor},
			{Name: "closed", Hosts: []string{"localhost"}, Paths: []string{"/closed", "/closed/**"}, Action: policy.ActionDeny},
		},
	}
	return cfg
}

// runDemo starts the demo upstream and keygate until ctx ends. ready (tests)
// gets keygate's address.
func runDemo(ctx context.Context, stdout, stderr io.Writer, listen, data string, ready func(addr string)) error {
	// The demo prints its user's password and enrols factors for anyone
	// who reaches it: it must never be reachable from another machine.
	if host, _, err := net.SplitHostPort(listen); err != nil || !isLoopback(host) {
		return fmt.Errorf("keygate demo listens only on a loopback address (127.0.0.1, ::1 or localhost), not %q: its demo account's password is public; run keygate serve with a configuration to serve a network", listen)
	}
	data = filepath.Clean(data)
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	// Listen first: the WebAuthn origin and the links name the real port
	// (--listen 127.0.0.1:0 picks one).
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	defer ln.Close()
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo upstream: %w", err)
	}
	cfg := demoConfig(ln.Addr().String(), data, "http://"+upLn.Addr().String())
	// The demo app shows the outbox, so email codes work without SMTP.
	outbox, err := mail.NewOutbox(cfg.Email.Outbox, cfg.Email.From)
	if err != nil {
		return fmt.Errorf("demo outbox: %w", err)
	}
	up := startDemoUpstream(upLn, outbox)
	defer up.Close()

	if _, err := os.Stat(cfg.Storage.EncryptionKeyFile); errors.Is(err, os.ErrNotExist) {
		if _, err := badgerstore.GenerateKeyFile(cfg.Storage.EncryptionKeyFile); err != nil {
			return fmt.Errorf("create demo encryption key: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("demo configuration: %w", err)
	}
	log, _ := newLogger(&cfg, stderr)
	a, err := openApp(ctx, &cfg, log)
	if err != nil {
		return err
	}
	a.obs.optional = true // another demo may hold the metrics port
	a.startAccessLog(stderr)
	defer func() {
		if err := a.Close(); err != nil {
			log.Error("close", "err", err)
		}
	}()
	_, err = a.users.Add(ctx, authn.NewUser{
		Username: demoUser, Email: "alice@example.com", DisplayName: "Alice Demo",
		Groups: []string{"admins", "dev"}, Password: demoPassword, EmailVerified: true,
	})
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "created the demo user %q\n", demoUser)
	case errors.Is(err, authn.ErrUserExists):
		// Second start: the data directory is reused as it is.
	default:
		return fmt.Errorf("create demo user: %w", err)
	}
	return a.serve(ctx, ln, func(addr string) {
		_, port, _ := net.SplitHostPort(addr)
		base := "http://localhost:" + port
		fmt.Fprintf(stdout, `
keygate demo is running (data in %s).

  Open            %s/             (needs a password: one_factor)
  Public page     %s/public/      (bypass: no sign-in)
  Admin area      %s/admin/       (two_factor)
  Closed area     %s/closed/      (deny)
  Your session    %s/.keygate/
  Security page   %s/.keygate/settings   (add an authenticator app, a security key, recovery codes)
  Demo outbox     %s/outbox       (the emails keygate "sent": codes, notices)

  Sign in as      %s / %s   (demo only; change it with: keygate user passwd %s --config <your config>)

Press Ctrl+C to stop.
`, data, base, base, base, base, base, base, base, demoUser, demoPassword, demoUser)
		if ready != nil {
			ready(addr)
		}
	})
}

// demoUpstream is the app behind keygate in the demo: it shows what it
// received, identity headers first.
type demoUpstream struct {
	Addr string
	srv  *http.Server
}

func (d *demoUpstream) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = d.srv.Shutdown(ctx)
}

var demoPage = template.Must(template.New("demo").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>keygate demo app</title>
<style>body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}td{padding:.2rem .6rem;border-bottom:1px solid #ddd;font-family:monospace}</style></head>
<body><h1>keygate demo app</h1>
<p>You reached <code>{{.Method}} {{.Path}}</code> through keygate.</p>
<h2>Identity headers keygate set</h2>
{{if .Identity}}<table>{{range .Identity}}<tr><td>{{.Name}}</td><td>{{.Value}}</td></tr>{{end}}</table>{{else}}<p>None: this page is public (bypass), so keygate did not require a sign-in.</p>{{end}}
<h2>Try</h2>
<ul><li><a href="/">/</a> one factor (password)</li><li><a href="/public/">/public/</a> no sign-in</li>
<li><a href="/admin/">/admin/</a> two factors</li><li><a href="/closed/">/closed/</a> denied to everyone</li>
<li><a href="/.keygate/">/.keygate/</a> your keygate session</li>
<li><a href="/.keygate/settings">/.keygate/settings</a> your security page: add a second factor</li>
<li><a href="/outbox">/outbox</a> the demo's mail (codes and notices)</li></ul>
<h2>All request headers</h2>
<table>{{range .All}}<tr><td>{{.Name}}</td><td>{{.Value}}</td></tr>{{end}}</table>
</body></html>`))

type headerRow struct{ Name, Value string }

var outboxPage = template.Must(template.New("outbox").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>keygate demo outbox</title>
<style>body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}pre{background:#f4f4f4;padding:.8rem;white-space:pre-wrap}</style></head>
<body><h1>Demo outbox</h1><p>In the demo keygate writes mail here instead of sending it. Newest first.</p>
{{range .}}<h2>{{.Subject}}</h2><p>To {{.To}}, {{.Time.Format "2006-01-02 15:04:05"}}</p><pre>{{.Text}}</pre>{{else}}<p>No mail yet.</p>{{end}}
<p><a href="/">Back</a></p></body></html>`))

func startDemoUpstream(ln net.Listener, outbox *mail.Outbox) *demoUpstream {
	mux := http.NewServeMux()
	mux.HandleFunc("/outbox", func(w http.ResponseWriter, r *http.Request) {
		mails, err := outbox.List()
		if err != nil {
			http.Error(w, "outbox: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = outboxPage.Execute(w, mails)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var ident, all []headerRow
		for name, vals := range r.Header {
			row := headerRow{name, strings.Join(vals, ", ")}
			all = append(all, row)
			if strings.HasPrefix(name, "Remote-") {
				ident = append(ident, row)
			}
		}
		sort.Slice(ident, func(i, j int) bool { return ident[i].Name < ident[j].Name })
		sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = demoPage.Execute(w, map[string]any{"Method": r.Method, "Path": r.URL.Path, "Identity": ident, "All": all})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &demoUpstream{Addr: ln.Addr().String(), srv: srv}
}
