package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	fwa "github.com/keygate/keygate/factors/webauthn"
)

func newWebAuthnCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "webauthn", Short: "Security keys and passkeys (run while keygate is stopped)"}
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
Nothing is fetched over the network. The data directory is opened directly,
so keygate must be stopped.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if blob == "" && len(rootCerts) == 0 {
				err = errors.New("nothing to verify against: give --mds-blob FILE (and --mds-root FILE unless it is the FIDO Alliance's blob) and/or --root-cert FILE")
			} else {
				trust := fwa.TrustOptions{MDSBlobFile: blob, MDSRootFile: root, RootCertFiles: rootCerts}
				err = withWebAuthn(cmd.Context(), g, cmd.ErrOrStderr(), func(f *fwa.Factor) error {
					return verify(cmd.Context(), cmd.OutOrStdout(), f, user, trust, suspend)
				})
			}
			// Exit status 1 means "compromised" here, so a failure to check
			// at all (a bad blob, keygate running) must not look like it.
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

// verify prints the assessments as a table, suspends the compromised ones
// when asked, and turns "something is compromised" into exit status 1.
func verify(ctx context.Context, w io.Writer, f *fwa.Factor, user string, trust fwa.TrustOptions, suspend bool) error {
	as, err := f.Reassess(ctx, user, trust)
	if err != nil {
		return err
	}
	if len(as) == 0 {
		if user != "" {
			fmt.Fprintf(w, "%s has no security keys or passkeys\n", user)
		} else {
			fmt.Fprintln(w, "no security keys or passkeys are enrolled")
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tNAME\tMODEL\tAAGUID\tWAS ATTESTED\tNOW\tSTATUS\tVERDICT")
	count := map[fwa.Verdict]int{}
	for _, a := range as {
		count[a.Verdict]++
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
		len(as), count[fwa.VerdictOK], count[fwa.VerdictNotAttested], count[fwa.VerdictCompromised])
	if count[fwa.VerdictCompromised] == 0 {
		return nil
	}
	usable := 0 // compromised and still able to sign in
	for _, a := range as {
		if a.Verdict != fwa.VerdictCompromised {
			continue
		}
		reason := strings.Join(a.Compromises, ",")
		switch {
		case a.Suspended:
			fmt.Fprintf(w, "%s's %q (%s) is suspended already (%s)\n", a.User, a.Name, a.CredentialID, a.SuspendedReason)
		case suspend:
			if err := f.Suspend(ctx, a.User, a.CredentialID, reason); err != nil {
				return fmt.Errorf("suspend %s's %q: %w", a.User, a.Name, err)
			}
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

func newWebAuthnSuspendCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "suspend USER CREDENTIAL [--reason R]",
		Short: "Suspend a security key or passkey (by name or ID): it cannot sign in until unsuspended",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withWebAuthn(cmd.Context(), g, cmd.ErrOrStderr(), func(f *fwa.Factor) error {
				c, err := findCredential(cmd.Context(), f, args[0], args[1])
				if err != nil {
					return err
				}
				if c.Suspended {
					fmt.Fprintf(cmd.OutOrStdout(), "%s's %q is suspended already (%s)\n", args[0], c.Name, c.SuspendedReason)
					return nil
				}
				if err := f.Suspend(cmd.Context(), args[0], c.ID, reason); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "suspended %s's %q\n", args[0], c.Name)
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
			return withWebAuthn(cmd.Context(), g, cmd.ErrOrStderr(), func(f *fwa.Factor) error {
				c, err := findCredential(cmd.Context(), f, args[0], args[1])
				if err != nil {
					return err
				}
				if err := f.Unsuspend(cmd.Context(), args[0], c.ID); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s's %q can sign in again\n", args[0], c.Name)
				return nil
			})
		},
	}
}

// findCredential picks the user's credential by ID or (case-insensitive,
// since names are unique that way) name.
func findCredential(ctx context.Context, f *fwa.Factor, user, ref string) (fwa.CredentialInfo, error) {
	cs, err := f.Credentials(ctx, user)
	if err != nil {
		return fwa.CredentialInfo{}, err
	}
	for _, c := range cs {
		if c.ID == ref || strings.EqualFold(c.Name, ref) {
			return c, nil
		}
	}
	return fwa.CredentialInfo{}, fmt.Errorf("%s has no security key or passkey named or with ID %q", user, ref)
}

// withWebAuthn runs fn with the WebAuthn factor over the data directory,
// opened directly. There is no admin-socket path yet, and Badger lets one
// process at a time open a directory, so keygate must be stopped.
//
// The factor is built from the configuration's relying party but without
// its trust anchors: it is only used to read and update credentials here,
// and verify brings the anchors it checks against.
func withWebAuthn(ctx context.Context, g *globals, stderr io.Writer, fn func(*fwa.Factor) error) error {
	cfg, err := loadConfig(g.configPath)
	if err != nil {
		return err
	}
	w := cfg.WebAuthn
	if w.RPID == "" {
		return fmt.Errorf("WebAuthn is off in %s (webauthn.rp_id is empty): no security keys to check", g.configPath)
	}
	// Badger creates a missing directory; a typo in storage.path must not
	// look like "nothing enrolled".
	if _, err := os.Stat(cfg.Storage.Path); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	log, _ := newLogger(cfg, stderr)
	key, err := badgerstore.LoadKey(cfg.Storage.EncryptionKeyFile, string(cfg.Storage.EncryptionKey))
	if err != nil {
		return fmt.Errorf("storage encryption key: %w", err)
	}
	kv, err := badgerstore.Open(badgerstore.Options{Path: cfg.Storage.Path, EncryptionKey: key, Logger: log})
	if errors.Is(err, store.ErrLocked) {
		// Not badgerstore's own advice (the admin socket): it has no
		// WebAuthn endpoints yet.
		return fmt.Errorf("the data directory %s is in use, keygate is running: stop keygate or run this while it is stopped; a running-server path comes with the admin API (%w)", cfg.Storage.Path, store.ErrLocked)
	}
	if err != nil {
		return err
	}
	f, err := fwa.New(kv, fwa.Options{RPID: w.RPID, RPName: w.RPName, Origins: w.Origins, Logger: log})
	if err != nil {
		_ = kv.Close()
		return fmt.Errorf("webauthn: %w", err)
	}
	err = fn(f)
	if cerr := kv.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close data directory: %w", cerr)
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
