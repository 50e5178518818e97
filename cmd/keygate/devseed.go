package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/policy"
	"github.com/spf13/cobra"
)

// SeedPassword is the password of every seeded user: seeded data is for
// measurements and load tests, never for people.
const SeedPassword = "seeded-password-not-for-people"

func newDevCmd(g *globals) *cobra.Command {
	dev := &cobra.Command{
		Use:   "dev",
		Short: "Developer tools: test data for benchmarks and load tests",
	}
	dev.AddCommand(newDevSeedCmd(g))
	return dev
}

type seedOptions struct {
	users      int
	sessions   int
	sessionOut string
	force      bool
	workers    int
}

func newDevSeedCmd(g *globals) *cobra.Command {
	var o seedOptions
	cmd := &cobra.Command{
		Use:   "seed",
		Short: "Fill the data directory with generated users (and sessions) for benchmarks",
		Long: `Seed writes --users generated users (user000000, user000001, …; password
"` + SeedPassword + `") and --sessions live sessions into the data
directory of --config. keygate must not be running (Badger allows one process).

For speed the users' password hashes use the cheapest argon2id parameters
(8 KiB, one pass, one lane) and writes are not fsynced one by one (the store
is synced when it is closed): seeded data is for measurements, never for
people. A data directory that already holds users is refused unless --force.

--session-out writes the cookie value of a two-factor session (password and
TOTP) of user000000 to a file, for load tests through the proxy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			key, err := badgerstore.LoadKey(cfg.Storage.EncryptionKeyFile, string(cfg.Storage.EncryptionKey))
			if err != nil {
				return fmt.Errorf("storage encryption key: %w", err)
			}
			kv, err := badgerstore.Open(badgerstore.Options{Path: cfg.Storage.Path, EncryptionKey: key,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				return err
			}
			start := time.Now()
			err = seed(cmd.Context(), bulkKV{kv}, cfg.Session.IdleTimeout.D(), cfg.Session.Lifetime.D(), o, cmd.OutOrStdout())
			if cerr := kv.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "seeded %d users and %d sessions in %s\n", o.users, o.sessions, time.Since(start).Round(time.Millisecond))
			}
			return err
		},
	}
	cmd.Flags().IntVar(&o.users, "users", 1000, "users to create")
	cmd.Flags().IntVar(&o.sessions, "sessions", 0, "live sessions to create, spread over the users")
	cmd.Flags().StringVar(&o.sessionOut, "session-out", "", "write the cookie value of a two-factor session of user000000 to this file")
	cmd.Flags().BoolVar(&o.force, "force", false, "seed even when the directory already holds users")
	cmd.Flags().IntVar(&o.workers, "workers", 16, "concurrent writers (Badger batches concurrent commits)")
	return cmd
}

func seedUsername(i int) string { return fmt.Sprintf("user%06d", i) }

// seed writes the users and sessions.
func seed(ctx context.Context, kv authn.KV, idle, lifetime time.Duration, o seedOptions, out io.Writer) error {
	if o.users < 1 {
		return errors.New("--users must be at least 1")
	}
	if o.sessions < 0 {
		return errors.New("--sessions must not be negative")
	}
	// The cheapest parameters the hasher accepts; see the command's help.
	hasher := authn.NewHasher(authn.Argon2Params{MemoryKiB: 8, Iterations: 1, Parallelism: 1}, o.workers)
	users := authn.NewUsers(kv, authn.UserOptions{Hasher: hasher, Policy: authn.PasswordPolicy{MinLength: 12}, Now: time.Now})
	if !o.force {
		if _, err := users.Get(ctx, seedUsername(0)); err == nil {
			return fmt.Errorf("the data directory already holds %s: pass --force to seed anyway", seedUsername(0))
		}
		list, err := users.List(ctx)
		if err != nil {
			return err
		}
		if len(list) > 0 {
			return fmt.Errorf("the data directory already holds %d user(s): pass --force to seed anyway", len(list))
		}
	}
	// Sessions are kept alive long enough for a benchmark run; eviction must
	// not drop seeded sessions.
	sessions, err := authn.NewSessions(ctx, kv, authn.SessionOptions{IdleTimeout: idle, Lifetime: lifetime,
		MaxSessions: max(o.sessions+1, authn.DefaultMaxSessions),
		// One user may get many when --sessions exceeds --users; keygate
		// applies its own cap (session.max_per_user) when it next starts.
		MaxPerUser: max(o.sessions/max(o.users, 1)+1, authn.DefaultMaxPerUser)})
	if err != nil {
		return err
	}
	groups := [][]string{{"staff"}, {"staff", "dev"}, {"staff", "admins"}, {"contractors"}}
	var done atomic.Int64
	progress := func(what string, total int) func() {
		step := max(total/10, 1)
		return func() {
			if n := done.Add(1); n%int64(step) == 0 {
				fmt.Fprintf(out, "  %s: %d/%d\n", what, n, total)
			}
		}
	}
	tick := progress("users", o.users)
	if err := parallel(ctx, o.workers, o.users, func(i int) error {
		name := seedUsername(i)
		_, err := users.Add(ctx, authn.NewUser{Username: name, Email: name + "@seed.example.com", DisplayName: "Seeded " + name,
			Groups: groups[i%len(groups)], Password: SeedPassword, EmailVerified: true})
		if errors.Is(err, authn.ErrUserExists) {
			err = nil
		}
		tick()
		return err
	}); err != nil {
		return err
	}
	done.Store(0)
	tick = progress("sessions", o.sessions)
	var first string
	var firstMu sync.Mutex
	n := o.sessions
	if o.sessionOut != "" && n == 0 {
		n = 1
	}
	if err := parallel(ctx, o.workers, n, func(i int) error {
		u, err := users.Get(ctx, seedUsername(i%o.users))
		if err != nil {
			return err
		}
		now := time.Now()
		s, err := sessions.Create(ctx, u, policy.Proof{Kind: policy.FactorPassword, At: now}, authn.Meta{IP: "127.0.0.1", UserAgent: "keygate dev seed"})
		if err != nil {
			return err
		}
		if s, err = sessions.AddProof(ctx, s.ID, policy.Proof{Kind: policy.FactorTOTP, At: now, Ref: "seed"}); err != nil {
			return err
		}
		if i == 0 {
			firstMu.Lock()
			first = s.ID
			firstMu.Unlock()
		}
		tick()
		return nil
	}); err != nil {
		return err
	}
	if err := sessions.Flush(ctx); err != nil {
		return err
	}
	if o.sessionOut != "" {
		if err := os.WriteFile(o.sessionOut, []byte(first+"\n"), 0o600); err != nil {
			return fmt.Errorf("session cookie: %w", err)
		}
	}
	return nil
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first
// error; after one, the workers stop taking new items.
func parallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	failed := func() bool { errMu.Lock(); defer errMu.Unlock(); return first != nil }
	for range max(workers, 1) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil || failed() {
					return
				}
				if err := fn(i); err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// bulkKV drops the per-write fsync a durable write asks for: seeding
// writes hundreds of thousands of records, and Close syncs everything once.
// Only `keygate dev seed` uses it.
type bulkKV struct{ *badgerstore.Store }

func (b bulkKV) Set(ctx context.Context, key string, value []byte, opt store.WriteOptions) (uint64, error) {
	opt.Durable = false
	return b.Store.Set(ctx, key, value, opt)
}

func (b bulkKV) CompareAndSet(ctx context.Context, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error) {
	opt.Durable = false
	return b.Store.CompareAndSet(ctx, key, value, prev, opt)
}

// Delete writes an already expired tombstone instead: the store's Delete
// always fsyncs, and every seeded two-factor session replaces its
// one-factor predecessor (AddProof) with a delete. An expired record reads
// as not found and is dropped at the next compaction.
func (b bulkKV) Delete(ctx context.Context, key string) error {
	_, err := b.Store.Set(ctx, key, nil, store.WriteOptions{TTL: time.Nanosecond})
	return err
}

var _ authn.KV = bulkKV{}
