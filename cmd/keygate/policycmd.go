package main

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/keygate/keygate/policy"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

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

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Check and explain factor policies"}

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
				fmt.Fprintf(cmd.OutOrStdout(), "%s is valid: %d rule(s), default %s\n", args[0], len(cfg.Policy.Rules), cfg.Policy.Default)
				return nil
			}
			p, err := policy.Parse(raw)
			if err == nil {
				_, err = policy.Compile(p)
			}
			if err != nil {
				var ve policy.ValidationErrors
				if errors.As(err, &ve) {
					for _, e := range ve {
						fmt.Fprintln(cmd.ErrOrStderr(), e.Error())
					}
				} else {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
				}
				return exitError{code: 1}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is valid: %d rule(s), default %s\n", args[0], len(p.Rules), p.Default)
			return nil
		},
	}

	var user, groups, ip, factors, policyFile string
	var trusted bool
	explain := &cobra.Command{
		Use:   "explain [--user U] [--groups a,b] [--factors password,totp] [--ip IP] METHOD URL",
		Short: "Show which rule matches a request, why others do not, and what is missing",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p policy.Policy
			if policyFile != "" {
				raw, err := os.ReadFile(policyFile)
				if err != nil {
					return err
				}
				if p, err = policy.Parse(raw); err != nil {
					return err
				}
			} else {
				cfg, err := loadConfig(g.configPath)
				if err != nil {
					return err
				}
				p = cfg.Policy
			}
			compiled, err := policy.Compile(p)
			if err != nil {
				return err
			}
			u, err := url.Parse(args[1])
			if err != nil || u.Host == "" {
				return fmt.Errorf("%q is not an absolute URL such as https://app.example.com/path", args[1])
			}
			req := policy.Request{Host: strings.ToLower(u.Hostname()), Path: u.EscapedPath(), Method: strings.ToUpper(args[0])}
			if req.Path == "" {
				req.Path = "/"
			}
			if ip != "" {
				if req.IP, err = netip.ParseAddr(ip); err != nil {
					return fmt.Errorf("--ip: %w", err)
				}
			}
			now := time.Now()
			subj := policy.Subject{TrustedDevice: trusted}
			if user != "" {
				subj.Authenticated, subj.User = true, user
				subj.Proofs = []policy.Proof{{Kind: policy.FactorPassword, At: now}}
				for _, f := range splitList(factors) {
					if f != policy.FactorPassword {
						subj.Proofs = append(subj.Proofs, policy.Proof{Kind: f, At: now})
					}
				}
				subj.Groups = splitList(groups)
			}
			fmt.Fprintln(cmd.OutOrStdout(), compiled.Explain(req, subj, now).String())
			return nil
		},
	}
	explain.Flags().StringVar(&user, "user", "", "the signed-in user (empty = anonymous)")
	explain.Flags().StringVar(&groups, "groups", "", "the user's groups, comma-separated")
	explain.Flags().StringVar(&factors, "factors", "", "second factors the session has, e.g. totp,webauthn")
	explain.Flags().StringVar(&ip, "ip", "", "source IP address")
	explain.Flags().BoolVar(&trusted, "trusted-device", false, "the browser is a remembered device")
	explain.Flags().StringVar(&policyFile, "policy", "", "a policy file instead of the configuration's policy")
	cmd.AddCommand(check, explain)
	return cmd
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
