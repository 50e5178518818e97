package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newBackupCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Write an encrypted, consistent backup (works while keygate is serving)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("not implemented yet") },
	}
}

func newRestoreCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a backup into an empty data directory",
		RunE:  func(*cobra.Command, []string) error { return errors.New("not implemented yet") },
	}
}
