package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/factors"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

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

// explain turns the API's refusals into what a person at the terminal can
// act on.
func explain(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Code == "weak_password" && len(ae.Reasons) > 0 {
		return fmt.Errorf("password refused: %s", strings.Join(ae.Reasons, "; "))
	}
	return err
}

// userRow is a user as the admin API lists it.
type userRow struct {
	Username      string    `json:"username"`
	Email         string    `json:"email"`
	DisplayName   string    `json:"display_name"`
	Groups        []string  `json:"groups"`
	Disabled      bool      `json:"disabled"`
	EmailVerified bool      `json:"email_verified"`
	AlwaysAsk     bool      `json:"always_ask"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

func userPath(name string, rest ...string) string {
	return strings.Join(append([]string{"users/" + url.PathEscape(name)}, rest...), "/")
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
			nu := map[string]any{"username": args[0], "email": email, "display_name": displayName, "password": pw,
				"email_verified": verified, "groups": splitList(groups)}
			return withAdmin(cmd.Context(), g, func(ac *adminClient) error {
				var u userRow
				if err := ac.post(cmd.Context(), "users", nu, &u); err != nil {
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
			return withAdmin(cmd.Context(), g, func(ac *adminClient) error {
				// The search is the admin page's: name, email, display
				// name or a group contains it, any case.
				var out struct {
					Users []userRow `json:"users"`
				}
				if err := ac.get(cmd.Context(), "users?q="+url.QueryEscape(search), &out); err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "USER\tEMAIL\tGROUPS\tSTATUS")
				for _, u := range out.Users {
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
			return withAdmin(cmd.Context(), g, func(ac *adminClient) error {
				var d struct {
					User userRow `json:"user"`
				}
				if err := ac.get(cmd.Context(), userPath(args[0]), &d); err != nil {
					return err
				}
				u, w := d.User, cmd.OutOrStdout()
				fmt.Fprintf(w, "user:           %s\nemail:          %s (verified: %t)\ndisplay name:   %s\ngroups:         %s\ndisabled:       %t\nalways ask 2FA: %t\ncreated:        %s\nupdated:        %s\n",
					u.Username, u.Email, u.EmailVerified, u.DisplayName, strings.Join(u.Groups, ","), u.Disabled, u.AlwaysAsk,
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
			return withAdmin(cmd.Context(), g, func(ac *adminClient) error {
				if _, err := ac.call(cmd.Context(), http.MethodPut, userPath(args[0], "password"), map[string]string{"password": pw}, nil, nil); err != nil {
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
				action := "enable"
				if disabled {
					action = "disable"
				}
				return withAdmin(cmd.Context(), g, func(ac *adminClient) error {
					if err := ac.post(cmd.Context(), userPath(args[0], action), nil, nil); err != nil {
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
			return withAdmin(cmd.Context(), g, func(ac *adminClient) error {
				if _, err := ac.call(cmd.Context(), http.MethodDelete, userPath(args[0]), nil, nil, nil); err != nil {
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
			return withAdmin(cmd.Context(), g, func(ac *adminClient) error {
				l, err := ac.EnrollLink(cmd.Context(), args[0], linkTTL)
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
			return withAdmin(cmd.Context(), g, func(ac *adminClient) error {
				var out struct {
					Factors []factors.Credential `json:"factors"`
				}
				if err := ac.get(cmd.Context(), userPath(args[0], "factors"), &out); err != nil {
					return err
				}
				cs := out.Factors
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
			return withAdmin(cmd.Context(), g, func(ac *adminClient) error {
				var out struct {
					Removed int `json:"removed"`
				}
				if err := ac.post(cmd.Context(), userPath(args[0], "reset-factors"), nil, &out); err != nil {
					return err
				}
				n := out.Removed
				fmt.Fprintf(cmd.OutOrStdout(), "removed %d second factor(s) of %s; their sessions and remembered devices ended\nissue an enrolment link: keygate user enroll-link %s\n", n, args[0], args[0])
				return nil
			})
		},
	}

	unlock := &cobra.Command{
		Use: "unlock NAME", Short: "End a user's lock after failed attempts or a reported sign-in", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd.Context(), g, func(ac *adminClient) error {
				var out struct {
					WasLocked bool `json:"was_locked"`
				}
				if err := ac.post(cmd.Context(), userPath(args[0], "unlock"), nil, &out); err != nil {
					return err
				}
				was := out.WasLocked
				if !was {
					fmt.Fprintf(cmd.OutOrStdout(), "user %s was not locked\n", args[0])
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "user %s unlocked; if the lock followed a reported sign-in, set a new password: keygate user passwd %s\n", args[0], args[0])
				return nil
			})
		},
	}

	cmd.AddCommand(newRecoveryCmd(g))
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
