package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newWebAuthnCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "webauthn", Short: "Security keys and passkeys"}
	cmd.AddCommand(&cobra.Command{
		Use:   "verify [--user U] [--mds-blob FILE] [--suspend]",
		Short: "Re-check stored credentials against a (newer) metadata blob",
		RunE:  func(*cobra.Command, []string) error { return errors.New("not implemented yet") },
	})
	return cmd
}
