package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/cmd/keygate/config"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/web"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// Policies live in the store, versioned (authn.Policies). This file wires
// them: loading the version in force at start, the admin area's options,
// the admin socket's policy endpoints, and the `keygate policy` commands,
// which work through the socket while keygate serves and on the data
// directory while it is stopped.

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with the configuration file"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate",
		Short: "Check the configuration file and print every problem with its YAML path",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := loadConfig(g.configPath); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitError{code: 1}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is valid\n", g.configPath)
			return nil
		},
	})
	return cmd
}

// loadPolicy puts the store's current policy version in force, storing the
// configuration's policy as version 1 on the very first start.
func (a *app) loadPolicy(ctx context.Context) error {
	maxAge := a.cfg.Admin.MaxAge.D()
	a.policies = authn.NewPolicies(a.kv, a.policy, authn.PolicyOptions{
		Guard:  func(p policy.Policy) policy.ValidationErrors { return web.AdminAreaProblems(p, maxAge) },
		Logger: a.log,
	})
	a.audit = activity.NewAudit(a.kv, time.Now, a.log)
	v, created, err := a.policies.Load(ctx, a.cfg.Policy, "config")
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	switch {
	case created:
		a.log.Info("the configuration's policy is stored as policy version 1")
	case authn.PolicyYAML(a.cfg.Policy) != v.YAML:
		// Not a warning: after the first edit in the admin area this is
		// the normal state of things.
		a.log.Info("policy version from the store in force; the configuration's policy section is only read on the first start (use `keygate policy import` to replace the policy)",
			"version", v.Version, "author", v.Author)
	}
	return nil
}

// adminOptions switch the admin page and API on.
func (a *app) adminOptions() *web.AdminOptions {
	return &web.AdminOptions{
		Groups: a.cfg.Admin.Groups, MaxAge: a.cfg.Admin.MaxAge.D(),
		Policies: a.policies, Audit: a.audit, Users: a.users, Sessions: a.sessions, Locks: a.reg,
	}
}

// adminHeader is where the CLI of round 1 named its OS user. The socket
// now takes the actor from the kernel (peerActor, SO_PEERCRED) and drops
// this header before any handler sees it.
const adminHeader = "X-Keygate-Admin"

type actorKey struct{}

// actorOf is the admin acting: the CLI's OS user sent through the socket,
// else (the CLI on the data directory itself) this process's OS user.
func actorOf(ctx context.Context) string {
	if v, ok := ctx.Value(actorKey{}).(string); ok {
		return v
	}
	return osAdmin()
}

// osAdmin names the person at the terminal: the user sudo ran as, else the
// login.
func osAdmin() string {
	for _, k := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if v := cleanActor(os.Getenv(k)); v != "" {
			return v
		}
	}
	if u, err := user.Current(); err == nil {
		if v := cleanActor(u.Username); v != "" {
			return v
		}
	}
	return "unknown"
}

// cleanActor keeps a name short and printable: it goes into logs and the
// audit log.
func cleanActor(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 64 || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return ""
	}
	return s
}

// record writes an admin action of the CLI to the audit log.
func (l localAdmin) record(ctx context.Context, action, target string, details map[string]string) {
	if l.audit == nil {
		return
	}
	_, _ = l.audit.Record(ctx, activity.AuditEntry{Admin: actorOf(ctx), Via: activity.ViaCLI, Action: action, Target: target, Details: details})
}

// policyAdmin is what the `keygate policy` commands need; localPolicies
// works on an open store, socketPolicies asks a running keygate.
type policyAdmin interface {
	Current(ctx context.Context) (authn.PolicyVersion, error)
	Version(ctx context.Context, n int) (authn.PolicyVersion, error)
	History(ctx context.Context) ([]authn.PolicySummary, error)
	Diff(ctx context.Context, a, b int) (string, error)
	Import(ctx context.Context, p policy.Policy, ifVersion int, comment string) (authn.PolicyVersion, error)
	Rollback(ctx context.Context, to, ifVersion int, comment string) (authn.PolicyVersion, error)
	Explain(ctx context.Context, in web.ExplainInput) (policy.Explanation, error)
}

type localPolicies struct {
	ps     *authn.Policies
	audit  *activity.Audit
	users  *authn.Users
	holder *policy.Holder
}

func (a *app) localPolicies() localPolicies {
	return localPolicies{ps: a.policies, audit: a.audit, users: a.users, holder: a.policy}
}

func (l localPolicies) Current(ctx context.Context) (authn.PolicyVersion, error) {
	return l.ps.Current(ctx)
}

func (l localPolicies) Version(ctx context.Context, n int) (authn.PolicyVersion, error) {
	return l.ps.Version(ctx, n)
}

func (l localPolicies) History(ctx context.Context) ([]authn.PolicySummary, error) {
	return l.ps.History(ctx)
}

func (l localPolicies) Diff(ctx context.Context, a, b int) (string, error) {
	return l.ps.Diff(ctx, a, b)
}

func (l localPolicies) Import(ctx context.Context, p policy.Policy, ifVersion int, comment string) (authn.PolicyVersion, error) {
	v, err := l.ps.Update(ctx, p, ifVersion, actorOf(ctx), comment)
	if err == nil && !v.Unchanged {
		added, removed := authn.DiffStat(v.Diff)
		_, _ = l.audit.Record(ctx, activity.AuditEntry{Admin: actorOf(ctx), Via: activity.ViaCLI, Action: activity.AuditPolicyImport, Target: "policy",
			Details: map[string]string{"version": strconv.Itoa(v.Version), "comment": comment, "lines": fmt.Sprintf("+%d -%d", added, removed)}})
	}
	return v, err
}

func (l localPolicies) Rollback(ctx context.Context, to, ifVersion int, comment string) (authn.PolicyVersion, error) {
	v, err := l.ps.Rollback(ctx, to, ifVersion, actorOf(ctx), comment)
	if err == nil && !v.Unchanged {
		_, _ = l.audit.Record(ctx, activity.AuditEntry{Admin: actorOf(ctx), Via: activity.ViaCLI, Action: activity.AuditPolicyRollback, Target: "policy",
			Details: map[string]string{"version": strconv.Itoa(v.Version), "restored_from": strconv.Itoa(to), "comment": v.Comment}})
	}
	return v, err
}

// Explain answers with the policy in force, as the admin API does
// (web.ExplainPolicy), filling in the user's groups from the store when
// none are given.
func (l localPolicies) Explain(ctx context.Context, in web.ExplainInput) (policy.Explanation, error) {
	if in.User != "" && in.Groups == nil {
		u, err := l.users.Get(ctx, in.User)
		switch {
		case err == nil:
			in.Groups = u.Groups
		case !errors.Is(err, authn.ErrUserNotFound):
			return policy.Explanation{}, err
		}
	}
	return web.ExplainPolicy(l.holder.Load(), in, time.Now())
}

// policyWire is an error of the socket's policy endpoints.
type policyWire struct {
	Code     string                  `json:"error"`
	Message  string                  `json:"message"`
	Problems policy.ValidationErrors `json:"problems,omitempty"`
	Current  int                     `json:"current_version,omitempty"`
}

func policyToWire(err error) (int, policyWire) {
	var ve policy.ValidationErrors
	var conflict *authn.PolicyConflictError
	switch {
	case errors.As(err, &ve):
		return http.StatusUnprocessableEntity, policyWire{Code: "invalid_policy", Message: err.Error(), Problems: ve}
	case errors.As(err, &conflict):
		return http.StatusPreconditionFailed, policyWire{Code: "version_mismatch", Message: err.Error(), Current: conflict.Current}
	case errors.Is(err, authn.ErrPolicyVersionNotFound):
		return http.StatusNotFound, policyWire{Code: "no_such_version", Message: err.Error()}
	case errors.Is(err, web.ErrExplainInput):
		return http.StatusBadRequest, policyWire{Code: "bad_explain", Message: err.Error()}
	}
	var bad badRequestError
	if errors.As(err, &bad) {
		return http.StatusBadRequest, policyWire{Code: codeBadRequest, Message: err.Error()}
	}
	return http.StatusInternalServerError, policyWire{Code: codeInternal, Message: err.Error()}
}

func policyFromWire(w policyWire) error {
	switch w.Code {
	case "invalid_policy":
		return w.Problems
	case "version_mismatch":
		return &authn.PolicyConflictError{Current: w.Current}
	case "no_such_version":
		return fmt.Errorf("%w (%s)", authn.ErrPolicyVersionNotFound, w.Message)
	case "bad_explain":
		return fmt.Errorf("%w: %s", web.ErrExplainInput, strings.TrimPrefix(w.Message, web.ErrExplainInput.Error()+": "))
	}
	return fmt.Errorf("keygate answered %s: %s", w.Code, w.Message)
}

// policyWrite is a new version sent through the socket.
type policyWrite struct {
	YAML      string `json:"yaml"`
	Comment   string `json:"comment"`
	IfVersion int    `json:"if_version"`
}

type rollbackWrite struct {
	Version   int    `json:"version"`
	Comment   string `json:"comment"`
	IfVersion int    `json:"if_version"`
}

// policyOps registers the policy endpoints of the admin socket.
func (a *app) policyOps(mux *http.ServeMux) {
	pa := a.localPolicies()
	reply := func(w http.ResponseWriter, v any, err error) { socketReply(w, v, err, policyToWire) }
	decode := func(r *http.Request, v any) error { return socketDecode(r, v, 4<<20) }
	h := http.NewServeMux()
	h.HandleFunc("GET /policy", func(w http.ResponseWriter, r *http.Request) {
		v, err := pa.Current(r.Context())
		reply(w, v, err)
	})
	h.HandleFunc("GET /policy/versions", func(w http.ResponseWriter, r *http.Request) {
		hist, err := pa.History(r.Context())
		reply(w, hist, err)
	})
	h.HandleFunc("GET /policy/versions/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil {
			reply(w, nil, badRequestError{fmt.Errorf("version %q: %w", r.PathValue("n"), err)})
			return
		}
		v, err := pa.Version(r.Context(), n)
		reply(w, v, err)
	})
	h.HandleFunc("GET /policy/diff", func(w http.ResponseWriter, r *http.Request) {
		from, err1 := strconv.Atoi(r.URL.Query().Get("from"))
		to, err2 := strconv.Atoi(r.URL.Query().Get("to"))
		if err := errors.Join(err1, err2); err != nil {
			reply(w, nil, badRequestError{fmt.Errorf("from/to: %w", err)})
			return
		}
		d, err := pa.Diff(r.Context(), from, to)
		reply(w, map[string]string{"diff": d}, err)
	})
	h.HandleFunc("PUT /policy", func(w http.ResponseWriter, r *http.Request) {
		var in policyWrite
		if err := decode(r, &in); err != nil {
			reply(w, nil, err)
			return
		}
		p, err := policy.Parse([]byte(in.YAML))
		if err != nil {
			reply(w, nil, badRequestError{err})
			return
		}
		v, err := pa.Import(r.Context(), p, in.IfVersion, in.Comment)
		reply(w, v, err)
	})
	h.HandleFunc("POST /policy/rollback", func(w http.ResponseWriter, r *http.Request) {
		var in rollbackWrite
		if err := decode(r, &in); err != nil {
			reply(w, nil, err)
			return
		}
		v, err := pa.Rollback(r.Context(), in.Version, in.IfVersion, in.Comment)
		reply(w, v, err)
	})
	h.HandleFunc("POST /policy/explain", func(w http.ResponseWriter, r *http.Request) {
		var in web.ExplainInput
		if err := decode(r, &in); err != nil {
			reply(w, nil, err)
			return
		}
		e, err := pa.Explain(r.Context(), in)
		reply(w, e, err)
	})
	mux.Handle("/policy", h)
	mux.Handle("/policy/", h)
}

// socketPolicies is the client side.
type socketPolicies struct{ sa socketAdmin }

func (s socketPolicies) do(ctx context.Context, method, p string, in, out any) error {
	return socketCall(ctx, s.sa.hc, method, p, in, out, policyFromWire)
}

func (s socketPolicies) Current(ctx context.Context) (authn.PolicyVersion, error) {
	var v authn.PolicyVersion
	return v, s.do(ctx, http.MethodGet, "/policy", nil, &v)
}

func (s socketPolicies) Version(ctx context.Context, n int) (authn.PolicyVersion, error) {
	var v authn.PolicyVersion
	return v, s.do(ctx, http.MethodGet, "/policy/versions/"+strconv.Itoa(n), nil, &v)
}

func (s socketPolicies) History(ctx context.Context) ([]authn.PolicySummary, error) {
	var h []authn.PolicySummary
	return h, s.do(ctx, http.MethodGet, "/policy/versions", nil, &h)
}

func (s socketPolicies) Diff(ctx context.Context, a, b int) (string, error) {
	var out struct {
		Diff string `json:"diff"`
	}
	err := s.do(ctx, http.MethodGet, fmt.Sprintf("/policy/diff?from=%d&to=%d", a, b), nil, &out)
	return out.Diff, err
}

func (s socketPolicies) Import(ctx context.Context, p policy.Policy, ifVersion int, comment string) (authn.PolicyVersion, error) {
	var v authn.PolicyVersion
	return v, s.do(ctx, http.MethodPut, "/policy", policyWrite{YAML: authn.PolicyYAML(p), Comment: comment, IfVersion: ifVersion}, &v)
}

func (s socketPolicies) Rollback(ctx context.Context, to, ifVersion int, comment string) (authn.PolicyVersion, error) {
	var v authn.PolicyVersion
	return v, s.do(ctx, http.MethodPost, "/policy/rollback", rollbackWrite{Version: to, Comment: comment, IfVersion: ifVersion}, &v)
}

func (s socketPolicies) Explain(ctx context.Context, in web.ExplainInput) (policy.Explanation, error) {
	var e policy.Explanation
	return e, s.do(ctx, http.MethodPost, "/policy/explain", in, &e)
}

// withPolicies runs fn against the running keygate (through its admin
// socket) or, when none runs, against the data directory directly.
func withPolicies(ctx context.Context, cfg *config.Config, fn func(policyAdmin) error) error {
	sock := cfg.AdminSocketPath()
	if sock != "" {
		if _, err := os.Stat(sock); err == nil {
			sa := newSocketAdmin(sock)
			if err := sa.ping(ctx); err == nil {
				return fn(socketPolicies{sa: sa})
			}
		}
	}
	a, err := openApp(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("%w; and no keygate answers on the admin socket %q", err, sock)
		}
		return err
	}
	defer a.Close()
	return fn(a.localPolicies())
}

// readPolicyFile reads a policy document, or the policy of a whole
// configuration file.
func readPolicyFile(path string) (policy.Policy, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return policy.Policy{}, err
	}
	var top map[string]any
	if yaml.Unmarshal(raw, &top) == nil && top["policy"] != nil {
		cfg, err := loadConfig(path)
		if err != nil {
			return policy.Policy{}, err
		}
		return cfg.Policy, nil
	}
	return policy.Parse(raw)
}

// printProblems prints every problem of a refused policy, one a line.
func printProblems(w io.Writer, err error) {
	var ve policy.ValidationErrors
	if errors.As(err, &ve) {
		for _, e := range ve {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Check, explain, import, export and roll back factor policies (works while keygate is serving)"}

	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a policy file (default: + rules:) and print every problem",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			// A whole configuration file is checked as one (its problems
			// then carry "policy." paths); anything else is a policy document.
			var top map[string]any
			if yaml.Unmarshal(raw, &top) == nil && top["policy"] != nil {
				cfg, err := loadConfig(args[0])
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					return exitError{code: 1}
				}
				if ps := web.AdminAreaProblems(cfg.Policy, cfg.Admin.MaxAge.D()); len(ps) > 0 {
					for _, e := range ps {
						fmt.Fprintln(cmd.ErrOrStderr(), "policy."+e.Error())
					}
					return exitError{code: 1}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s is valid: %d rule(s), default %s\n", args[0], len(cfg.Policy.Rules), cfg.Policy.Default)
				return nil
			}
			p, err := policy.Parse(raw)
			if err == nil {
				err = checkPolicy(p, 0)
			}
			if err != nil {
				printProblems(cmd.ErrOrStderr(), err)
				return exitError{code: 1}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is valid: %d rule(s), default %s\n", args[0], len(p.Rules), p.Default)
			return nil
		},
	}

	cmd.AddCommand(check, newPolicyExplainCmd(g), newPolicyImportCmd(g), newPolicyExportCmd(g),
		newPolicyHistoryCmd(g), newPolicyDiffCmd(g), newPolicyRollbackCmd(g))
	return cmd
}

// checkPolicy validates p exactly as the store would before storing it
// (maxAge 0 = the default admin max_age). Check touches neither the store
// nor the holder, so a Policies without them does.
func checkPolicy(p policy.Policy, maxAge time.Duration) error {
	_, err := authn.NewPolicies(nil, nil, authn.PolicyOptions{
		Guard: func(p policy.Policy) policy.ValidationErrors { return web.AdminAreaProblems(p, maxAge) },
	}).Check(p)
	return err
}

func newPolicyExplainCmd(g *globals) *cobra.Command {
	var user, groups, ip, factors, policyFile, age string
	var trusted, asJSON bool
	explain := &cobra.Command{
		Use:   "explain [--user U] [--groups a,b] [--factors totp,webauthn] [--factor-age 20m] [--ip IP] METHOD URL",
		Short: "Show which rule matches a request, why others do not, and what is missing (the policy in force, as the gateway decides)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			in := web.ExplainInput{User: user, Method: strings.ToUpper(args[0]), URL: args[1], SourceIP: ip,
				Factors: splitList(factors), FactorAge: age, TrustedDevice: trusted}
			if cmd.Flags().Changed("groups") {
				in.Groups = splitList(groups)
				if in.Groups == nil {
					in.Groups = []string{} // --groups "": no groups, not the stored ones
				}
			}
			var e policy.Explanation
			var err error
			switch {
			case policyFile != "":
				// A file: explained on its own, nothing stored is read.
				p, rerr := readPolicyFile(policyFile)
				if rerr != nil {
					return rerr
				}
				compiled, cerr := policy.Compile(p)
				if cerr != nil {
					printProblems(cmd.ErrOrStderr(), cerr)
					return exitError{code: 1}
				}
				e, err = web.ExplainPolicy(compiled, in, time.Now())
			default:
				cfg, lerr := loadConfig(g.configPath)
				if lerr != nil {
					return lerr
				}
				if _, serr := os.Stat(cfg.Storage.Path); errors.Is(serr, os.ErrNotExist) {
					// Never started: the configuration's policy is what
					// will be version 1.
					compiled, cerr := policy.Compile(cfg.Policy)
					if cerr != nil {
						return cerr
					}
					e, err = web.ExplainPolicy(compiled, in, time.Now())
					break
				}
				err = withPolicies(cmd.Context(), cfg, func(pa policyAdmin) error {
					var xerr error
					e, xerr = pa.Explain(cmd.Context(), in)
					return xerr
				})
			}
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(e)
			}
			fmt.Fprintln(cmd.OutOrStdout(), e.String())
			return nil
		},
	}
	f := explain.Flags()
	f.StringVar(&user, "user", "", "the signed-in user (empty = anonymous)")
	f.StringVar(&groups, "groups", "", "the user's groups, comma-separated (default: the user's groups in the store)")
	f.StringVar(&factors, "factors", "", "second factors the session has, e.g. totp,webauthn")
	f.StringVar(&age, "factor-age", "", "how long ago the factors were verified, e.g. 20m (default: just now)")
	f.StringVar(&ip, "ip", "", "source IP address")
	f.BoolVar(&trusted, "trusted-device", false, "the browser is a remembered device")
	f.StringVar(&policyFile, "policy", "", "a policy file (or whole configuration) instead of the policy in force")
	f.BoolVar(&asJSON, "json", false, "print the explanation as JSON")
	return explain
}

func newPolicyImportCmd(g *globals) *cobra.Command {
	var comment string
	var ifVersion int
	var dryRun bool
	c := &cobra.Command{
		Use:   "import FILE [--comment WHY] [--if-version N] [--dry-run]",
		Short: "Store a policy file (or a configuration's policy) as the next version and put it in force",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			p, err := readPolicyFile(args[0])
			if err != nil {
				printProblems(cmd.ErrOrStderr(), err)
				return exitError{code: 1}
			}
			out := cmd.OutOrStdout()
			return withPolicies(cmd.Context(), cfg, func(pa policyAdmin) error {
				cur, err := pa.Current(cmd.Context())
				if err != nil && !errors.Is(err, authn.ErrNoPolicy) {
					return err
				}
				base := ifVersion
				if !cmd.Flags().Changed("if-version") {
					base = cur.Version
				}
				if dryRun {
					return previewImport(out, cmd.ErrOrStderr(), cfg, cur, p)
				}
				v, err := pa.Import(cmd.Context(), p, base, comment)
				var conflict *authn.PolicyConflictError
				switch {
				case errors.As(err, &conflict):
					return fmt.Errorf("version %d is in force now, not %d: look at it (keygate policy diff %d %d) and import again", conflict.Current, base, base, conflict.Current)
				case err != nil:
					fmt.Fprintln(cmd.ErrOrStderr(), "the policy was refused; nothing changed:")
					printProblems(cmd.ErrOrStderr(), err)
					return exitError{code: 1}
				case v.Unchanged:
					fmt.Fprintf(out, "nothing to import: version %d has these rules already\n", v.Version)
				default:
					added, removed := authn.DiffStat(v.Diff)
					fmt.Fprintf(out, "policy version %d is in force (+%d -%d lines against version %d)\n", v.Version, added, removed, cur.Version)
				}
				return nil
			})
		},
	}
	c.Flags().StringVar(&comment, "comment", "", "why the policy changes (shown in the history)")
	c.Flags().IntVar(&ifVersion, "if-version", 0, "import only if this version is in force (default: the version in force when the command starts)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "check the file and show what would change, storing nothing")
	return c
}

// previewImport checks p as an import would and prints the text diff and
// the requests whose requirement would change.
func previewImport(out, errOut io.Writer, cfg *config.Config, cur authn.PolicyVersion, p policy.Policy) error {
	if err := checkPolicy(p, cfg.Admin.MaxAge.D()); err != nil {
		fmt.Fprintln(errOut, "the policy would be refused:")
		printProblems(errOut, err)
		return exitError{code: 1}
	}
	oldC, err := policy.Compile(cur.Policy)
	if err != nil {
		return fmt.Errorf("policy version %d: %w", cur.Version, err)
	}
	newC, _ := policy.Compile(p)
	d := authn.LineDiff(cur.YAML, authn.PolicyYAML(p), fmt.Sprintf("version %d", cur.Version), "import")
	if d == "" {
		fmt.Fprintf(out, "no change: version %d has these rules already\n", cur.Version)
		return nil
	}
	fmt.Fprint(out, d)
	hosts := make([]string, 0, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
		hosts = append(hosts, strings.ToLower(u.Host))
	}
	pv := web.PreviewChange(oldC, newC, hosts)
	if len(pv.Summary) == 0 {
		fmt.Fprintln(out, "\nno sampled request changes what it needs")
		return nil
	}
	fmt.Fprintln(out)
	for _, s := range pv.Summary {
		fmt.Fprintf(out, "%d path(s) go from %s to %s\n", s.Paths, s.From, s.To)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tPATH\tMETHODS\tWHO\tBEFORE\tAFTER")
	for _, c := range pv.Changes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Host, c.Path, orAll(c.Methods), orAll(append(c.Who, c.Sources...)), c.From, c.To)
	}
	return tw.Flush()
}

func orAll(l []string) string {
	if len(l) == 0 {
		return "all"
	}
	return strings.Join(l, ",")
}

func newPolicyExportCmd(g *globals) *cobra.Command {
	var version int
	var out string
	c := &cobra.Command{
		Use:   "export [--version N] [--out FILE]",
		Short: "Write the policy in force (or version N) as YAML, ready for `keygate policy import`",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			return withPolicies(cmd.Context(), cfg, func(pa policyAdmin) error {
				var v authn.PolicyVersion
				var err error
				if version > 0 {
					v, err = pa.Version(cmd.Context(), version)
				} else {
					v, err = pa.Current(cmd.Context())
				}
				if err != nil {
					return err
				}
				var b strings.Builder
				fmt.Fprintf(&b, "# keygate policy version %d, by %s at %s\n", v.Version, v.Author, v.At.Format(time.RFC3339))
				if v.Comment != "" {
					fmt.Fprintf(&b, "# %s\n", strings.ReplaceAll(v.Comment, "\n", " "))
				}
				b.WriteString(v.YAML)
				if out == "" || out == "-" {
					_, err = io.WriteString(cmd.OutOrStdout(), b.String())
					return err
				}
				return os.WriteFile(out, []byte(b.String()), 0o600)
			})
		},
	}
	c.Flags().IntVar(&version, "version", 0, "the version to export (default: the one in force)")
	c.Flags().StringVar(&out, "out", "", "write to this file instead of stdout")
	return c
}

func newPolicyHistoryCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "history",
		Short: "List the policy versions: who made each, when and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			return withPolicies(cmd.Context(), cfg, func(pa policyAdmin) error {
				hist, err := pa.History(cmd.Context())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "VERSION\tWHEN\tWHO\tLINES\tCOMMENT")
				for _, h := range hist {
					v := strconv.Itoa(h.Version)
					if h.Current {
						v += "*"
					}
					comment := h.Comment
					if h.RestoredFrom > 0 && !strings.Contains(comment, "rollback") {
						comment = strings.TrimSpace(fmt.Sprintf("(copy of %d) %s", h.RestoredFrom, comment))
					}
					lines := fmt.Sprintf("+%d -%d", h.Added, h.Removed)
					if h.Version == 1 {
						lines = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v, h.At.Local().Format("2006-01-02 15:04"), h.Author, lines, comment)
				}
				return tw.Flush()
			})
		},
	}
}

func newPolicyDiffCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff [FROM] [TO]",
		Short: "Show what changed between two versions (default: the one in force against the one before)",
		Args:  cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			nums := make([]int, len(args))
			for i, a := range args {
				n, err := strconv.Atoi(a)
				if err != nil || n <= 0 {
					return fmt.Errorf("%q is not a policy version", a)
				}
				nums[i] = n
			}
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			return withPolicies(cmd.Context(), cfg, func(pa policyAdmin) error {
				var from, to int
				switch len(nums) {
				case 2:
					from, to = nums[0], nums[1]
				case 1:
					to = nums[0]
					from = to - 1
				default:
					cur, err := pa.Current(cmd.Context())
					if err != nil {
						return err
					}
					to, from = cur.Version, cur.Version-1
				}
				if from < 1 {
					return fmt.Errorf("version %d is the first; there is nothing before it", to)
				}
				d, err := pa.Diff(cmd.Context(), from, to)
				if err != nil {
					return err
				}
				if d == "" {
					fmt.Fprintf(cmd.OutOrStdout(), "versions %d and %d have the same rules\n", from, to)
					return nil
				}
				_, err = io.WriteString(cmd.OutOrStdout(), d)
				return err
			})
		},
	}
}

func newPolicyRollbackCmd(g *globals) *cobra.Command {
	var comment string
	c := &cobra.Command{
		Use:   "rollback VERSION [--comment WHY]",
		Short: "Put an earlier version back in force (stored as a new version: history only grows)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			to, err := strconv.Atoi(args[0])
			if err != nil || to <= 0 {
				return fmt.Errorf("%q is not a policy version", args[0])
			}
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			return withPolicies(cmd.Context(), cfg, func(pa policyAdmin) error {
				cur, err := pa.Current(cmd.Context())
				if err != nil {
					return err
				}
				v, err := pa.Rollback(cmd.Context(), to, cur.Version, comment)
				if err != nil {
					printProblems(cmd.ErrOrStderr(), err)
					return exitError{code: 1}
				}
				if v.Unchanged {
					fmt.Fprintf(cmd.OutOrStdout(), "version %d in force has the rules of version %d already\n", v.Version, to)
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "policy version %d (a copy of version %d) is in force\n", v.Version, to)
				return nil
			})
		},
	}
	c.Flags().StringVar(&comment, "comment", "", "why (shown in the history)")
	return c
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// matchesUser is `keygate user list --search`: the admin page's search
// (name, email, display name or a group contains q, any case).
func matchesUser(u userView, q string) bool {
	q = strings.ToLower(strings.TrimSpace(q))
	if q == "" {
		return true
	}
	for _, f := range append([]string{u.Username, u.Email, u.DisplayName}, u.Groups...) {
		if strings.Contains(strings.ToLower(f), q) {
			return true
		}
	}
	return false
}
