package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	adminsvc "github.com/keygate/keygate/authn/admin"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// The webauthn commands are clients of the admin API (keys/verify,
// users/NAME/keys/CREDENTIAL/{suspend,unsuspend}), like every other admin
// command: through the admin socket while keygate runs, or in-process on
// the data directory while it is stopped (withAdminConfig). What they
// check and change is the admin service's; here are flags, files and
// printing.

func newWebAuthnCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "webauthn", Short: "Security keys and passkeys (works while keygate is serving)"}
	cmd.AddCommand(newWebAuthnVerifyCmd(g), newWebAuthnSuspendCmd(g), newWebAuthnUnsuspendCmd(g))
	return cmd
}

func newWebAuthnVerifyCmd(g *globals) *cobra.Command {
	var (
		user, blob, root string
		rootCerts        []string
		suspend          bool
	)
	cmd := &cobra.Command{
		Use:   "verify [--user U] --mds-blob FILE [--mds-root FILE] [--root-cert FILE ...] [--suspend]",
		Short: "Re-check stored attestations against a (newer) metadata blob; exit 1 if a model is compromised",
		Long: `Re-verifies the attestation stored with every security key and passkey (or
--user's) against the trust anchors given here — typically a freshly
downloaded FIDO MDS3 blob — and reports, per credential, whether it is still
attested and whether the metadata now reports its model compromised
(REVOKED, USER_VERIFICATION_BYPASS, ATTESTATION_KEY_COMPROMISE,
USER_KEY_REMOTE_COMPROMISE, USER_KEY_PHYSICAL_COMPROMISE).

Exit status: 0 when nothing is compromised, 1 when something is (so cron can
alert), 2 or more on errors. --suspend suspends the compromised credentials:
they stay listed but cannot sign in until "keygate webauthn unsuspend".
Nothing is fetched over the network. The files are read by this command and
their contents sent to keygate (through its admin socket while it runs, or
checked here on the data directory while it is stopped).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if blob == "" && len(rootCerts) == 0 {
				err = errors.New("nothing to verify against: give --mds-blob FILE (and --mds-root FILE unless it is the FIDO Alliance's blob) and/or --root-cert FILE")
			} else {
				var in verifyRequest
				if in, err = readAnchors(user, blob, root, rootCerts, suspend); err == nil {
					err = withWebAuthn(cmd.Context(), g, func(ac *adminClient) error {
						return verify(cmd.Context(), cmd.OutOrStdout(), ac, in)
					})
				}
			}
			// Exit status 1 means "compromised" here, so a failure to check
			// at all (a bad blob, an unreadable data directory) must not
			// look like it.
			var ee exitError
			if err == nil || errors.As(err, &ee) {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "keygate:", err)
			return exitError{code: 2}
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "check this user's credentials only")
	cmd.Flags().StringVar(&blob, "mds-blob", "", "FIDO MDS3 blob file (the JWT from https://mds3.fidoalliance.org/)")
	cmd.Flags().StringVar(&root, "mds-root", "", "PEM root the blob is signed under (default: the FIDO Alliance MDS root)")
	cmd.Flags().StringArrayVar(&rootCerts, "root-cert", nil, "PEM attestation root for models the blob does not list (repeatable)")
	cmd.Flags().BoolVar(&suspend, "suspend", false, "suspend the credentials whose model is compromised")
	return cmd
}

// verifyRequest is the body of keys/verify: the anchors' contents.
type verifyRequest struct {
	User      string   `json:"user,omitempty"`
	MDSBlob   string   `json:"mds_blob,omitempty"`
	MDSRoot   string   `json:"mds_root,omitempty"`
	RootCerts []string `json:"root_certs,omitempty"`
	Suspend   bool     `json:"suspend"`
}

// readAnchors reads the operator's files here: keygate's process may run
// as another OS user that cannot read them.
func readAnchors(user, blob, root string, rootCerts []string, suspend bool) (verifyRequest, error) {
	in := verifyRequest{User: user, Suspend: suspend}
	read := func(flag, file string) (string, error) {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", flag, err)
		}
		return string(b), nil
	}
	var err error
	if blob != "" {
		if in.MDSBlob, err = read("--mds-blob", blob); err != nil {
			return in, err
		}
	}
	if root != "" {
		if in.MDSRoot, err = read("--mds-root", root); err != nil {
			return in, err
		}
	}
	for _, f := range rootCerts {
		pem, err := read("--root-cert", f)
		if err != nil {
			return in, err
		}
		in.RootCerts = append(in.RootCerts, pem)
	}
	return in, nil
}

// verify asks keygate to check (and, when asked, suspend), prints the
// assessments as a table, and turns "something is compromised" into exit
// status 1.
func verify(ctx context.Context, w io.Writer, ac *adminClient, in verifyRequest) error {
	var kc adminsvc.KeyCheck
	if err := ac.post(ctx, "keys/verify", in, &kc); err != nil {
		return err
	}
	if len(kc.Keys) == 0 {
		if in.User != "" {
			fmt.Fprintf(w, "%s has no security keys or passkeys\n", in.User)
		} else {
			fmt.Fprintln(w, "no security keys or passkeys are enrolled")
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tNAME\tMODEL\tAAGUID\tWAS ATTESTED\tNOW\tSTATUS\tVERDICT")
	for _, a := range kc.Keys {
		status := a.Status
		if len(a.Compromises) > 0 {
			status = strings.Join(a.Compromises, ",")
		}
		verdict := string(a.Verdict)
		if a.Suspended {
			verdict += " (suspended)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.User, a.Name, orDash(a.Model), a.AAGUID,
			yesNo(a.WasAttested), yesNo(a.Attested), orDash(status), verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d credential(s): %d ok, %d not attested, %d compromised\n",
		len(kc.Keys), kc.OK, kc.NotAttested, kc.Compromised)
	if kc.Compromised == 0 {
		return nil
	}
	usable := 0 // compromised and still able to sign in
	for _, a := range kc.Keys {
		if a.Verdict != factors.VerdictCompromised {
			continue
		}
		reason := strings.Join(a.Compromises, ",")
		switch {
		case a.Suspended:
			fmt.Fprintf(w, "%s's %q (%s) is suspended already (%s)\n", a.User, a.Name, a.CredentialID, a.SuspendedReason)
		case a.SuspendedNow:
			fmt.Fprintf(w, "suspended %s's %q (%s): %s\n", a.User, a.Name, a.CredentialID, reason)
		default:
			usable++
			fmt.Fprintf(w, "COMPROMISED: %s's %q (%s): %s\n", a.User, a.Name, a.CredentialID, reason)
		}
	}
	if usable > 0 {
		fmt.Fprintln(w, "suspend them with --suspend (or one by one: keygate webauthn suspend USER NAME), or remove them")
	}
	// Still 1 after suspending: a compromised credential is in the store
	// until someone removes it, and cron should say so.
	return exitError{code: 1}
}

func keyPath(user, ref, op string) string {
	return userPath(user, "keys", url.PathEscape(ref), op)
}

func newWebAuthnSuspendCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "suspend USER CREDENTIAL [--reason R]",
		Short: "Suspend a security key or passkey (by name or ID): it cannot sign in until unsuspended",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withWebAuthn(cmd.Context(), g, func(ac *adminClient) error {
				var st adminsvc.KeyState
				if err := ac.post(cmd.Context(), keyPath(args[0], args[1], "suspend"), map[string]string{"reason": reason}, &st); err != nil {
					return explainKey(err, args[0], args[1])
				}
				if !st.Changed {
					fmt.Fprintf(cmd.OutOrStdout(), "%s's %q is suspended already (%s)\n", args[0], st.Name, st.Reason)
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "suspended %s's %q\n", args[0], st.Name)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "suspended by an admin", "shown with the credential")
	return cmd
}

func newWebAuthnUnsuspendCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unsuspend USER CREDENTIAL",
		Short: "Put a suspended security key or passkey (by name or ID) back in use",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withWebAuthn(cmd.Context(), g, func(ac *adminClient) error {
				var st adminsvc.KeyState
				if err := ac.post(cmd.Context(), keyPath(args[0], args[1], "unsuspend"), nil, &st); err != nil {
					return explainKey(err, args[0], args[1])
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s's %q can sign in again\n", args[0], st.Name)
				return nil
			})
		},
	}
}

// explainKey says an unknown credential as the command always has.
func explainKey(err error, user, ref string) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Code == "no_such_credential" {
		return fmt.Errorf("%s has no security key or passkey named or with ID %q", user, ref)
	}
	return err
}

// withWebAuthn runs fn with a client of the admin API (withAdminConfig),
// after the checks that make the command's own mistakes plain: WebAuthn
// off in the configuration, a data directory that does not exist (Badger
// would create it, and a typo in storage.path must not look like
// "nothing enrolled"), a directory held by a keygate whose socket does not
// answer.
func withWebAuthn(ctx context.Context, g *globals, fn func(*adminClient) error) error {
	cfg, err := loadConfig(g.configPath)
	if err != nil {
		return err
	}
	if cfg.WebAuthn.RPID == "" {
		return fmt.Errorf("WebAuthn is off in %s (webauthn.rp_id is empty): no security keys to check", g.configPath)
	}
	if _, err := os.Stat(cfg.Storage.Path); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	err = withAdminConfig(ctx, cfg, fn)
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("the data directory %s is in use and no keygate answers on the admin socket %s: stop keygate or run this while it is stopped, or start keygate with its admin socket (%w)",
			cfg.Storage.Path, cfg.AdminSocketPath(), store.ErrLocked)
	}
	return err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
