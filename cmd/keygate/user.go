package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/store"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// withAdmin runs fn against the running keygate (through its admin socket)
// or, when none runs, against the data directory directly.
func withAdmin(ctx context.Context, g *globals, fn func(userAdmin) error) error {
	cfg, err := loadConfig(g.configPath)
	if err != nil {
		return err
	}
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

// readPassword takes the password from stdin (--password-stdin, for
// scripts) or asks twice on the terminal without echo.
func readPassword(cmd *cobra.Command, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password from stdin: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", errors.New("no password on stdin")
		}
		return pw, nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New("stdin is not a terminal: pass the password with --password-stdin")
	}
	out := cmd.ErrOrStderr()
	fmt.Fprint(out, "Password: ")
	a, err := term.ReadPassword(fd)
	fmt.Fprintln(out)
	if err != nil {
		return "", err
	}
	fmt.Fprint(out, "Repeat password: ")
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(out)
	if err != nil {
		return "", err
	}
	if string(a) != string(b) {
		return "", errors.New("the two passwords differ")
	}
	return string(a), nil
}

// explain turns domain errors into what a person at the terminal can act on.
func explain(err error) error {
	var pe *authn.PasswordPolicyError
	if errors.As(err, &pe) {
		return fmt.Errorf("password refused: %s", strings.Join(pe.Reasons, "; "))
	}
	return err
}

func newUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users (works while keygate is serving)"}

	var email, groups, displayName string
	var pwStdin, verified bool
	add := &cobra.Command{
		Use:   "add NAME --email E [--groups a,b] [--display-name N] [--password-stdin]",
		Short: "Create a user",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readPassword(cmd, pwStdin)
			if err != nil {
				return err
			}
			nu := authn.NewUser{Username: args[0], Email: email, DisplayName: displayName, Password: pw, EmailVerified: verified}
			if groups != "" {
				for _, gr := range strings.Split(groups, ",") {
					if gr = strings.TrimSpace(gr); gr != "" {
						nu.Groups = append(nu.Groups, gr)
					}
				}
			}
			return withAdmin(cmd.Context(), g, func(ua userAdmin) error {
				u, err := ua.Add(cmd.Context(), nu)
				if err != nil {
					return explain(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s added\n", u.Username)
				return nil
			})
		},
	}
	add.Flags().StringVar(&email, "email", "", "email address (required)")
	add.Flags().StringVar(&groups, "groups", "", "comma-separated groups")
	add.Flags().StringVar(&displayName, "display-name", "", "name shown to apps (Remote-Name)")
	add.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from stdin")
	add.Flags().BoolVar(&verified, "email-verified", false, "mark the email address as verified")
	_ = add.MarkFlagRequired("email")

	var search string
	list := &cobra.Command{
		Use: "list [--search TEXT]", Short: "List users (or those whose name, email or a group contains TEXT)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd.Context(), g, func(ua userAdmin) error {
				us, err := ua.List(cmd.Context())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "USER\tEMAIL\tGROUPS\tSTATUS")
				for _, u := range us {
					if !matchesUser(u, search) {
						continue
					}
					status := "active"
					if u.Disabled {
						status = "disabled"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Username, u.Email, strings.Join(u.Groups, ","), status)
				}
				return tw.Flush()
			})
		},
	}

	list.Flags().StringVar(&search, "search", "", "show only users whose name, email, display name or a group contains this (any case)")

	show := &cobra.Command{
		Use: "show NAME", Short: "Show one user", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd.Context(), g, func(ua userAdmin) error {
				u, err := ua.Get(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "user:           %s\nemail:          %s (verified: %t)\ndisplay name:   %s\ngroups:         %s\ndisabled:       %t\ncreated:        %s\nupdated:        %s\n",
					u.Username, u.Email, u.EmailVerified, u.DisplayName, strings.Join(u.Groups, ","), u.Disabled,
					u.CreatedAt.Format("2006-01-02 15:04:05 MST"), u.UpdatedAt.Format("2006-01-02 15:04:05 MST"))
				return nil
			})
		},
	}

	var pwStdin2 bool
	passwd := &cobra.Command{
		Use: "passwd NAME [--password-stdin]", Short: "Set a user's password (ends their sessions)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readPassword(cmd, pwStdin2)
			if err != nil {
				return err
			}
			return withAdmin(cmd.Context(), g, func(ua userAdmin) error {
				if err := ua.SetPassword(cmd.Context(), args[0], pw); err != nil {
					return explain(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "password of %s changed; their sessions ended\n", args[0])
				return nil
			})
		},
	}
	passwd.Flags().BoolVar(&pwStdin2, "password-stdin", false, "read the password from stdin")

	setDisabled := func(use, short string, disabled bool, done string) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return withAdmin(cmd.Context(), g, func(ua userAdmin) error {
					if err := ua.SetDisabled(cmd.Context(), args[0], disabled); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "user %s %s\n", args[0], done)
					return nil
				})
			},
		}
	}

	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a user (ends their sessions)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd.Context(), g, func(ua userAdmin) error {
				if err := ua.Delete(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s deleted\n", args[0])
				return nil
			})
		},
	}

	var linkTTL time.Duration
	link := &cobra.Command{
		Use: "enroll-link NAME [--ttl 72h]", Short: "Issue a one-time link to enrol a first second factor", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd.Context(), g, func(ua userAdmin) error {
				l, err := ua.EnrollLink(cmd.Context(), args[0], linkTTL)
				if err != nil {
					return err
				}
				if !absoluteLink(l.URL) {
					// A path alone is useless in a message to the person;
					// an admin must say where the portal is.
					return fmt.Errorf("the link %q is not absolute: keygate does not know the portal's address; set server.portal_url (such as https://app.example.com)", l.URL)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\n(works once, until %s; give it to %s only)\n", l.URL, l.ExpiresAt.Format("2006-01-02 15:04 MST"), args[0])
				return nil
			})
		},
	}
	link.Flags().DurationVar(&linkTTL, "ttl", authn.DefaultEnrollLinkTTL, "how long the link works")

	factorsCmd := &cobra.Command{
		Use: "factors NAME", Short: "List a user's second factors", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd.Context(), g, func(ua userAdmin) error {
				cs, err := ua.Factors(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tKIND\tMODEL\tCREATED\tLAST USED")
				for _, c := range cs {
					last := "never"
					if !c.LastUsedAt.IsZero() {
						last = c.LastUsedAt.Format("2006-01-02 15:04")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, c.Kind, c.Detail, c.CreatedAt.Format("2006-01-02 15:04"), last)
				}
				return tw.Flush()
			})
		},
	}

	reset := &cobra.Command{
		Use: "reset-factors NAME", Short: "Remove a user's second factors, remembered devices and sessions", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			by := os.Getenv("SUDO_USER")
			if by == "" {
				by = os.Getenv("USER")
			}
			return withAdmin(cmd.Context(), g, func(ua userAdmin) error {
				n, err := ua.ResetFactors(cmd.Context(), args[0], by)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %d second factor(s) of %s; their sessions and remembered devices ended\nissue an enrolment link: keygate user enroll-link %s\n", n, args[0], args[0])
				return nil
			})
		},
	}

	unlock := &cobra.Command{
		Use: "unlock NAME", Short: "End a user's lock after failed attempts or a reported sign-in", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd.Context(), g, func(ua userAdmin) error {
				was, err := ua.Unlock(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if !was {
					fmt.Fprintf(cmd.OutOrStdout(), "user %s was not locked\n", args[0])
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s unlocked; if the lock followed a reported sign-in, set a new password: keygate user passwd %s\n", args[0], args[0])
				return nil
			})
		},
	}

	cmd.AddCommand(unlock, link, factorsCmd, reset, add, list, show, passwd,
		setDisabled("disable NAME", "Disable a user (ends their sessions)", true, "disabled; their sessions ended"),
		setDisabled("enable NAME", "Enable a disabled user", false, "enabled"),
		del)
	return cmd
}

// absoluteLink says whether a link given to a person is an absolute
// http(s) URL with a host, which they can open from a mail or a chat.
func absoluteLink(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
