package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// keygate user recovery list|approve|cancel: people's self-service account
// recoveries, through the admin API like every admin command.

// recoveryRow is a pending recovery as the admin API lists it.
type recoveryRow struct {
	Username    string    `json:"username"`
	RequestedAt time.Time `json:"requested_at"`
	ReadyAt     time.Time `json:"ready_at"`
	ApprovedBy  string    `json:"approved_by"`
	IP          string    `json:"ip"`
	Browser     string    `json:"browser"`
}

func newRecoveryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "recovery", Short: "People's self-service account recoveries after losing every second factor"}
	list := &cobra.Command{
		Use: "list", Short: "List pending account recoveries", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd.Context(), g, func(ac *adminClient) error {
				var out struct {
					Recoveries []recoveryRow `json:"recoveries"`
				}
				if err := ac.get(cmd.Context(), "recoveries", &out); err != nil {
					return err
				}
				if len(out.Recoveries) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "no account recovery is pending")
					return nil
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "USER\tASKED\tREADY FROM\tAPPROVED BY\tFROM")
				for _, r := range out.Recoveries {
					by := r.ApprovedBy
					if by == "" {
						by = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s %s\n", r.Username, r.RequestedAt.UTC().Format("2006-01-02 15:04 UTC"),
						r.ReadyAt.UTC().Format("2006-01-02 15:04 UTC"), by, r.IP, r.Browser)
				}
				return tw.Flush()
			})
		},
	}
	approve := &cobra.Command{
		Use: "approve NAME", Short: "End the waiting period of a user's recovery now (check who is asking first)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd.Context(), g, func(ac *adminClient) error {
				if err := ac.post(cmd.Context(), userPath(args[0], "recovery", "approve"), nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "recovery of %s approved: they can sign in with the password and an email code and add a new factor now; they were told\n", args[0])
				return nil
			})
		},
	}
	cancel := &cobra.Command{
		Use: "cancel NAME", Short: "Cancel a user's pending recovery", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd.Context(), g, func(ac *adminClient) error {
				if err := ac.post(cmd.Context(), userPath(args[0], "recovery", "cancel"), nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "recovery of %s cancelled; they were told\n", args[0])
				return nil
			})
		},
	}
	cmd.AddCommand(list, approve, cancel)
	return cmd
}
