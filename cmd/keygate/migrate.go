package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/authn/store/pgstore"
	"github.com/keygate/keygate/cmd/keygate/config"
	"github.com/spf13/cobra"
)

// `keygate migrate` has two meanings, kept apart:
//
//   - keygate migrate --from A --to B copies a whole store from one
//     backend to another (Badger to PostgreSQL when outgrowing one
//     machine, or back), through the store contract (store.Copy): pgstore
//     seals values bound to their row and blinds some keys, and Badger keeps
//     its versions inside its values, so rows are never copied as they lie.
//   - keygate migrate schema applies the PostgreSQL schema migrations
//     (keygate serve applies them at start as well).

// endpointHelp is the syntax of --from and --to, for help and errors.
const endpointHelp = `  badger:PATH          a Badger data directory
  badger               storage.path of the configuration
  postgres:DSN         a PostgreSQL connection string (visible to other users in ps: prefer a file)
  postgres-file:PATH   a file holding the connection string
  postgres             the configuration's database (KEYGATE_STORAGE_POSTGRES_DSN or storage.postgres.dsn_file)`

func newMigrateCmd(g *globals) *cobra.Command {
	var from, to, fromKey, toKey string
	var force bool
	cmd := &cobra.Command{
		Use:   "migrate --from SOURCE --to TARGET [--force] | migrate schema",
		Short: "Copy every record from one storage backend to another, or apply the database schema",
		Long: `Copy every record (users, credentials, sessions, policy history, audit,
regulation counters, codes …) from SOURCE to TARGET, keeping the time each
record has left and skipping expired ones, then read both again and compare
them record by record; the counts per key prefix are printed, and any
difference makes the exit status non-zero.

SOURCE and TARGET are one of:
` + endpointHelp + `

Nothing may write to SOURCE meanwhile: stop keygate (every replica) first.
A Badger directory that a running keygate holds is refused. TARGET must be
empty, so that two installations are never mixed by accident; with --force
its records are replaced by SOURCE's (records only TARGET has are deleted).

Values are opened with the storage key of SOURCE and sealed with that of
TARGET: both default to the configuration's storage key
(storage.encryption_key_file or KEYGATE_STORAGE_ENCRYPTION_KEY); give
--from-key-file or --to-key-file when they differ (this also changes the key).

Example, moving to PostgreSQL:
  keygate migrate --from badger:/var/lib/keygate --to postgres-file:/run/secrets/keygate_dsn

"keygate migrate schema" applies the database schema migrations instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return errors.New("say where from and where to (--from SOURCE --to TARGET) to copy a store, or run \"keygate migrate schema\" to apply the database schema; see keygate migrate --help")
			}
			m := &migration{g: g, force: force, stdout: cmd.OutOrStdout()}
			return m.run(cmd.Context(), from, to, fromKey, toKey)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "where to copy from (badger:PATH, postgres-file:PATH, … see above)")
	cmd.Flags().StringVar(&to, "to", "", "where to copy to (must be empty unless --force)")
	cmd.Flags().BoolVar(&force, "force", false, "replace the records of a target that is not empty")
	cmd.Flags().StringVar(&fromKey, "from-key-file", "", "storage key of the source (default: the configuration's)")
	cmd.Flags().StringVar(&toKey, "to-key-file", "", "storage key of the target (default: the configuration's)")
	cmd.AddCommand(newMigrateSchemaCmd(g))
	return cmd
}

func newMigrateSchemaCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Apply the PostgreSQL schema migrations to the configured database",
		Long: `Apply the schema migrations this keygate carries to the database of the
configuration (storage.backend: postgres), under the same advisory lock
keygate serve takes at start, so it is safe while replicas start. A schema
newer than this keygate is refused. The storage key is checked against the
database as well. With storage.backend: badger there is nothing to do.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			if cfg.Storage.Backend != config.BackendPostgres {
				fmt.Fprintf(cmd.OutOrStdout(), "storage.backend is %s: it has no schema to migrate, nothing to do\n", backendName(cfg))
				return nil
			}
			key, err := configStorageKey(cfg)
			if err != nil {
				return err
			}
			// Open applies the migrations (see pgstore/migrate.go).
			kv, err := openBackend(cmd.Context(), cfg, key, quietLogger())
			if err != nil {
				return fmt.Errorf("migrate schema: %w", err)
			}
			if err := kv.Close(); err != nil {
				return fmt.Errorf("migrate schema: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "the database schema is at version %d, the newest this keygate knows\n", pgstore.SchemaVersion())
			return nil
		},
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// configStorageKey is the configuration's storage key (nil when the
// storage is not encrypted).
func configStorageKey(cfg *config.Config) ([]byte, error) {
	k, err := badgerstore.LoadKey(cfg.Storage.EncryptionKeyFile, string(cfg.Storage.EncryptionKey))
	if err != nil {
		return nil, fmt.Errorf("storage encryption key: %w", err)
	}
	return k, nil
}

// Backend kinds of an endpoint.
const (
	kindBadger   = "badger"
	kindPostgres = "postgres"
)

// endpoint is one side of a migration.
type endpoint struct {
	kind string
	path string // badger: the data directory
	dsn  string // postgres: the connection string (a secret: never printed)
	// name is how messages call it: the directory, or where the DSN came
	// from, never the DSN itself (it may hold a password).
	name string
}

// migration is one run of keygate migrate.
type migration struct {
	g      *globals
	force  bool
	stdout io.Writer

	cfg    *config.Config
	cfgErr error
	loaded bool
}

// config loads the configuration the first time an endpoint or a key
// needs it: with explicit endpoints and key files none is needed.
func (m *migration) config(why string) (*config.Config, error) {
	if !m.loaded {
		m.cfg, m.cfgErr = loadConfig(m.g.configPath)
		m.loaded = true
	}
	if m.cfgErr != nil {
		return nil, fmt.Errorf("%s comes from the configuration, which does not load: %w", why, m.cfgErr)
	}
	return m.cfg, nil
}

// parseEndpoint reads the --from or --to value.
func (m *migration) parseEndpoint(flag, s string) (endpoint, error) {
	scheme, rest, hasRest := strings.Cut(s, ":")
	switch {
	case scheme == kindBadger && !hasRest:
		cfg, err := m.config(flag + " badger (storage.path)")
		if err != nil {
			return endpoint{}, err
		}
		return badgerEndpoint(cfg.Storage.Path)
	case scheme == kindBadger && rest != "":
		return badgerEndpoint(rest)
	case scheme == kindPostgres && !hasRest:
		cfg, err := m.config(flag + " postgres (the database)")
		if err != nil {
			return endpoint{}, err
		}
		src, dsn, err := cfg.PostgresDSN()
		if err != nil {
			return endpoint{}, fmt.Errorf("%s postgres: %w", flag, err)
		}
		if dsn == "" {
			return endpoint{}, fmt.Errorf("%s postgres: the configuration names no database (storage.postgres.dsn_file or KEYGATE_STORAGE_POSTGRES_DSN)", flag)
		}
		return endpoint{kind: kindPostgres, dsn: dsn, name: "postgres (DSN from " + src + ")"}, nil
	case scheme == kindPostgres && strings.TrimSpace(rest) != "":
		return endpoint{kind: kindPostgres, dsn: strings.TrimSpace(rest), name: "postgres (DSN given with " + flag + ")"}, nil
	case scheme == "postgres-file" && rest != "":
		b, err := os.ReadFile(rest)
		if err != nil {
			return endpoint{}, fmt.Errorf("%s postgres-file: %w", flag, err)
		}
		dsn := strings.TrimSpace(string(b))
		if dsn == "" {
			return endpoint{}, fmt.Errorf("%s postgres-file: %s is empty", flag, rest)
		}
		return endpoint{kind: kindPostgres, dsn: dsn, name: "postgres (DSN from " + rest + ")"}, nil
	}
	// Show only the scheme: the rest may be a DSN with a password.
	return endpoint{}, fmt.Errorf("%s %q: not a storage keygate knows; use one of:\n%s", flag, scheme+":…", endpointHelp)
}

func badgerEndpoint(path string) (endpoint, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return endpoint{}, fmt.Errorf("badger:%s: %w", path, err)
	}
	return endpoint{kind: kindBadger, path: abs, name: "badger:" + abs}, nil
}

// key returns the storage key for one side: the key file given, else the
// configuration's.
func (m *migration) key(flag, role, keyFile string) ([]byte, error) {
	if keyFile != "" {
		k, err := badgerstore.LoadKey(keyFile, "")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		return k, nil
	}
	cfg, err := m.config("the storage key of the " + role + " (no " + flag + " given)")
	if err != nil {
		return nil, err
	}
	return configStorageKey(cfg)
}

// open opens one side. The source must already hold data: Badger would
// create an empty store in a mistyped directory and copy nothing.
func openEndpoint(ctx context.Context, e endpoint, key []byte, source bool) (store.KV, error) {
	role, keyFlag := "target", "--to-key-file"
	if source {
		role, keyFlag = "source", "--from-key-file"
	}
	switch e.kind {
	case kindBadger:
		if source {
			entries, err := os.ReadDir(e.path)
			if err != nil || len(entries) == 0 {
				return nil, fmt.Errorf("the source %s holds no keygate data (missing or empty directory)", e.name)
			}
		}
		kv, err := badgerstore.Open(badgerstore.Options{Path: e.path, EncryptionKey: key, Logger: quietLogger()})
		switch {
		case errors.Is(err, store.ErrLocked):
			return nil, fmt.Errorf("the %s %s is in use (a running keygate?): stop it first, migrate copies a store nobody writes to: %w", role, e.name, err)
		case errors.Is(err, store.ErrWrongKey):
			return nil, fmt.Errorf("the storage key does not open the %s %s: give the key it was created with (%s, or the configuration's storage.encryption_key_file): %w", role, e.name, keyFlag, err)
		case err != nil:
			return nil, fmt.Errorf("the %s %s: %w", role, e.name, err)
		}
		return kv, nil
	case kindPostgres:
		if len(key) == 0 {
			return nil, fmt.Errorf("the %s %s needs a storage key: every value in the database is sealed with it (%s, or storage.encryption_key_file)", role, e.name, keyFlag)
		}
		kv, err := pgstore.Open(ctx, pgstore.Options{DSN: e.dsn, Key: key, MaxConns: 4, Logger: quietLogger()})
		switch {
		case errors.Is(err, store.ErrWrongKey):
			return nil, fmt.Errorf("the %s %s was created with another storage key (%s): %w", role, e.name, keyFlag, err)
		case err != nil:
			return nil, fmt.Errorf("the %s %s: %w", role, e.name, err)
		}
		return kv, nil
	}
	return nil, fmt.Errorf("unknown storage kind %q", e.kind)
}

func (m *migration) run(ctx context.Context, from, to, fromKeyFile, toKeyFile string) (err error) {
	src, err := m.parseEndpoint("--from", from)
	if err != nil {
		return err
	}
	dst, err := m.parseEndpoint("--to", to)
	if err != nil {
		return err
	}
	if src.kind == dst.kind && src.path == dst.path && src.dsn == dst.dsn {
		return fmt.Errorf("--from and --to are the same store (%s)", src.name)
	}
	srcKey, err := m.key("--from-key-file", "source", fromKeyFile)
	if err != nil {
		return err
	}
	dstKey, err := m.key("--to-key-file", "target", toKeyFile)
	if err != nil {
		return err
	}
	// The source first: a mistake there (wrong key, wrong path, a running
	// keygate) is refused before the target is touched.
	srcKV, err := openEndpoint(ctx, src, srcKey, true)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeErr("the source", srcKV.Close())) }()
	dstKV, err := openEndpoint(ctx, dst, dstKey, false)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeErr("the target", dstKV.Close())) }()

	fmt.Fprintf(m.stdout, "copying %s to %s\n", src.name, dst.name)
	report, err := store.Copy(ctx, dstKV, srcKV, store.CopyOptions{Replace: m.force})
	if errors.Is(err, store.ErrNotEmpty) {
		return fmt.Errorf("the target %s is not empty (%w). Nothing was written: copying into it would mix two installations' users and sessions. "+
			"To replace what it holds with the source's records, run again with --force", dst.name, err)
	}
	if report != nil {
		printCopyReport(m.stdout, report)
	}
	if errors.Is(err, store.ErrMismatch) {
		return fmt.Errorf("the check after the copy failed (%w): see the table; did something write to the source meanwhile? Run again with --force once it is stopped", err)
	}
	if err != nil {
		return fmt.Errorf("the copy stopped half way (%w); run again with --force to replace the partial copy", err)
	}
	t := report.Total()
	fmt.Fprintf(m.stdout, "copied %d records (%d expired ones skipped); source and target agree\n", t.Copied, t.Expired)
	return nil
}

func closeErr(what string, err error) error {
	if err != nil {
		return fmt.Errorf("close %s: %w", what, err)
	}
	return nil
}

// printCopyReport writes the counts per prefix as a table.
func printCopyReport(w io.Writer, r *store.CopyReport) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tSOURCE\tEXPIRED\tCOPIED\tREMOVED\tTARGET\tCHECK")
	row := func(p store.PrefixCount) {
		check := "ok"
		if !p.OK() {
			check = fmt.Sprintf("MISMATCH: %d missing, %d extra, %d different", p.Missing, p.Extra, p.Differ)
		}
		if p.ExpiredSince > 0 {
			check += fmt.Sprintf(" (%d expired meanwhile)", p.ExpiredSince)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", printablePrefix(p.Prefix), p.Source, p.Expired, p.Copied, p.Removed, p.Target, check)
	}
	for _, p := range r.Prefixes {
		row(p)
	}
	t := r.Total()
	t.Prefix = "total"
	row(t)
	_ = tw.Flush()
}

// printablePrefix quotes a prefix that is not plain text (keys are byte
// strings).
func printablePrefix(p string) string {
	for _, r := range p {
		if r < 0x21 || r > 0x7e {
			return strconv.Quote(p)
		}
	}
	return p
}
