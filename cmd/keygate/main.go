// Command keygate is the WebAuthn and hardware-token 2FA gateway: a
// reverse proxy that lets a request through only when its session has the
// factors the admins' policy asks for. This package is the CLI and the one
// place that wires the concrete parts together.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

// exitError carries a process exit code through cobra without printing
// twice.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "keygate:", err)
		os.Exit(1)
	}
}

// globals are the flags every command shares.
type globals struct {
	configPath string
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "keygate",
		Short:         "A WebAuthn and hardware-token 2FA gateway in front of your web apps",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.configPath, "config", envOr("KEYGATE_CONFIG", "keygate.yaml"), "configuration file (env KEYGATE_CONFIG)")
	root.AddCommand(
		newServeCmd(g),
		newDemoCmd(),
		newUserCmd(g),
		newPolicyCmd(g),
		newConfigCmd(g),
		newBackupCmd(g),
		newRestoreCmd(g),
		newMigrateCmd(g),
		newWebAuthnCmd(g),
		newDevCmd(g),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Run: func(cmd *cobra.Command, _ []string) {
				fmt.Fprintln(cmd.OutOrStdout(), "keygate", version)
			},
		},
	)
	return root
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
