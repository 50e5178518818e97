package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/keygate/keygate/authn/activity"
	adminsvc "github.com/keygate/keygate/authn/admin"
	"github.com/keygate/keygate/authn/policies"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/cmd/keygate/config"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/web"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// Policies live in the store, versioned (authn/policies). This file wires
// them (loading the version in force at start, the admin service) and holds
// the `keygate policy` commands: clients of the admin API, through the
// socket while keygate serves and on the data directory while it is
// stopped, except check and explain of a file, which need no store.

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
	a.policies = policies.New(a.kv, a.policy, policies.Options{
		Guard:   func(p policy.Policy) policy.ValidationErrors { return adminsvc.AreaProblems(p, maxAge) },
		Logger:  a.log,
		Events:  policyGauge{a},
		Compile: policy.CompileOptions{Factors: a.cfg.FactorKinds()},
	})
	a.audit = activity.NewAudit(a.kv, time.Now, a.log)
	v, created, err := a.policies.Load(ctx, a.cfg.Policy, "config")
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	switch {
	case created:
		a.log.Info("the configuration's policy is stored as policy version 1")
	case policies.YAML(a.cfg.Policy) != v.YAML:
		// Not a warning: after the first edit in the admin area this is
		// the normal state of things.
		a.log.Info("policy version from the store in force; the configuration's policy section is only read on the first start (use `keygate policy import` to replace the policy)",
			"version", v.Version, "author", v.Author)
	}
	return nil
}

// policyGauge shows the version in force in the metrics, once they exist
// (the policy loads first, so that metrics can read it).
type policyGauge struct{ a *app }

func (g policyGauge) PolicyInForce(v int) {
	if m := g.a.obs.metrics; m != nil {
		m.SetPolicyVersion(int64(v))
	}
}

// adminService is every admin use-case over this app's parts, built once.
func (a *app) adminService() *adminsvc.Service {
	a.adminOnce.Do(func() {
		d := adminsvc.Deps{Users: a.users, Sessions: a.sessions, Policies: a.policies, Audit: a.audit,
			Running: a.policy, Hosts: appHosts{a}, Groups: a.cfg.Admin.Groups, MaxAge: a.cfg.Admin.MaxAge.D(),
			Logger: a.log}
		if a.mfa != nil {
			d.Factors, d.Locks = a.mfa, a.reg
			d.SecondFactor = func(kind string) bool { return a.mfa.Factors().Get(kind) != nil }
		}
		svc, err := adminsvc.New(d)
		if err != nil {
			// Every part is built by openApp: this is a wiring bug.
			panic("keygate: admin service: " + err.Error())
		}
		a.admin = svc
	})
	return a.admin
}

// appHosts are the protected hosts: the running server's (current after a
// reload), else the configuration's.
type appHosts struct{ a *app }

func (h appHosts) Hosts() []string {
	if h.a.web != nil {
		return h.a.web.Hosts()
	}
	out := make([]string, 0, len(h.a.cfg.Upstreams))
	for _, u := range h.a.cfg.Upstreams {
		out = append(out, strings.ToLower(u.Host))
	}
	slices.Sort(out)
	return out
}

// adminOptions switch the admin page and API on.
func (a *app) adminOptions() *web.AdminOptions {
	return &web.AdminOptions{Service: a.adminService(), PortalURL: a.portalBase()}
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

// withAdminConfig runs fn with a client of the running keygate (through
// its admin socket) or, when none runs, of the data directory opened here:
// the same admin API either way.
func withAdminConfig(ctx context.Context, cfg *config.Config, fn func(*adminClient) error) error {
	sock := cfg.AdminSocketPath()
	if sock != "" {
		if _, err := os.Stat(sock); err == nil {
			sa := newSocketAdmin(sock)
			if err := sa.ping(ctx); err == nil {
				return fn(sa)
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
	return fn(a.localAdmin())
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

// printProblems prints every problem of a refused policy, one a line: as
// policy.Parse or Compile found them here, or as the admin API listed them.
func printProblems(w io.Writer, err error) {
	var ve policy.ValidationErrors
	if errors.As(err, &ve) {
		for _, e := range ve {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	var ae *apiError
	if errors.As(err, &ae) && len(ae.Problems) > 0 {
		for _, p := range ae.Problems {
			fmt.Fprintln(w, p.Path+": "+p.Message)
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
				if ps := adminsvc.AreaProblems(cfg.Policy, cfg.Admin.MaxAge.D()); len(ps) > 0 {
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
	_, err := policies.New(nil, nil, policies.Options{
		Guard: func(p policy.Policy) policy.ValidationErrors { return adminsvc.AreaProblems(p, maxAge) },
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
			in := policy.ExplainInput{User: user, Method: strings.ToUpper(args[0]), URL: args[1], SourceIP: ip,
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
				compiled, cerr := policy.CompileWith(p, policy.CompileOptions{Factors: g.factorKinds()})
				if cerr != nil {
					printProblems(cmd.ErrOrStderr(), cerr)
					return exitError{code: 1}
				}
				e, err = policy.ExplainRequest(compiled, in, time.Now(), nil)
			default:
				cfg, lerr := loadConfig(g.configPath)
				if lerr != nil {
					return lerr
				}
				if _, serr := os.Stat(cfg.Storage.Path); errors.Is(serr, os.ErrNotExist) {
					// Never started: the configuration's policy is what
					// will be version 1.
					compiled, cerr := policy.CompileWith(cfg.Policy, policy.CompileOptions{Factors: cfg.FactorKinds()})
					if cerr != nil {
						return cerr
					}
					e, err = policy.ExplainRequest(compiled, in, time.Now(), nil)
					break
				}
				err = withAdminConfig(cmd.Context(), cfg, func(ac *adminClient) error {
					return ac.post(cmd.Context(), "explain", in, &e)
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

// currentPolicy is the version in force, as the API answers it.
func currentPolicy(ctx context.Context, ac *adminClient) (policies.Version, error) {
	var v policies.Version
	return v, ac.get(ctx, "policy", &v)
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
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			body := map[string]string{"yaml": policies.YAML(p), "comment": comment}
			return withAdminConfig(cmd.Context(), cfg, func(ac *adminClient) error {
				ctx := cmd.Context()
				cur, err := currentPolicy(ctx, ac)
				if err != nil {
					return err
				}
				if dryRun {
					return previewImport(ctx, out, errOut, ac, body)
				}
				base := ifVersion
				if !cmd.Flags().Changed("if-version") {
					base = cur.Version
				}
				var v policies.Version
				_, err = ac.call(ctx, http.MethodPost, "policy/import", body, &v, ifMatch(base))
				var ae *apiError
				switch {
				case errors.As(err, &ae) && ae.Code == "version_mismatch":
					return fmt.Errorf("version %d is in force now, not %d: look at it (keygate policy diff %d %d) and import again", ae.CurrentVersion, base, base, ae.CurrentVersion)
				case err != nil:
					fmt.Fprintln(errOut, "the policy was refused; nothing changed:")
					printProblems(errOut, err)
					return exitError{code: 1}
				case v.Unchanged:
					fmt.Fprintf(out, "nothing to import: version %d has these rules already\n", v.Version)
				default:
					added, removed := policies.DiffStat(v.Diff)
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

// previewImport asks the API to check the policy as an import would and
// prints the text diff and the requests whose requirement would change.
func previewImport(ctx context.Context, out, errOut io.Writer, ac *adminClient, body map[string]string) error {
	var chk adminsvc.Check
	if err := ac.post(ctx, "policy/check", body, &chk); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Code == "invalid_policy" {
			fmt.Fprintln(errOut, "the policy would be refused:")
			printProblems(errOut, err)
			return exitError{code: 1}
		}
		return err
	}
	if chk.Diff == "" {
		fmt.Fprintf(out, "no change: version %d has these rules already\n", chk.Base)
		return nil
	}
	fmt.Fprint(out, chk.Diff)
	pv := chk.Preview
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
			return withAdminConfig(cmd.Context(), cfg, func(ac *adminClient) error {
				var v policies.Version
				var err error
				if version > 0 {
					err = ac.get(cmd.Context(), "policy/versions/"+strconv.Itoa(version), &v)
				} else {
					v, err = currentPolicy(cmd.Context(), ac)
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
			return withAdminConfig(cmd.Context(), cfg, func(ac *adminClient) error {
				var hist struct {
					Versions []policies.Summary `json:"versions"`
				}
				if err := ac.get(cmd.Context(), "policy/versions", &hist); err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "VERSION\tWHEN\tWHO\tLINES\tCOMMENT")
				for _, h := range hist.Versions {
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
			q := url.Values{}
			switch len(nums) {
			case 2:
				q.Set("from", strconv.Itoa(nums[0]))
				q.Set("to", strconv.Itoa(nums[1]))
			case 1:
				q.Set("to", strconv.Itoa(nums[0]))
			}
			return withAdminConfig(cmd.Context(), cfg, func(ac *adminClient) error {
				var d struct {
					From int    `json:"from"`
					To   int    `json:"to"`
					Diff string `json:"diff"`
				}
				if err := ac.get(cmd.Context(), "policy/diff?"+q.Encode(), &d); err != nil {
					return err
				}
				if d.Diff == "" {
					fmt.Fprintf(cmd.OutOrStdout(), "versions %d and %d have the same rules\n", d.From, d.To)
					return nil
				}
				_, err := io.WriteString(cmd.OutOrStdout(), d.Diff)
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
			return withAdminConfig(cmd.Context(), cfg, func(ac *adminClient) error {
				ctx := cmd.Context()
				cur, err := currentPolicy(ctx, ac)
				if err != nil {
					return err
				}
				var v policies.Version
				if _, err := ac.call(ctx, http.MethodPost, "policy/rollback", map[string]any{"version": to, "comment": comment}, &v, ifMatch(cur.Version)); err != nil {
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

// factorKinds are the second factors the configuration registers (what a
// policy may name), or round 1's four when it cannot be read: a policy
// file explained on its own needs no configuration.
func (g *globals) factorKinds() []string {
	if cfg, err := loadConfig(g.configPath); err == nil {
		return cfg.FactorKinds()
	}
	return nil
}
