package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/cmd/keygate/config"
	"github.com/spf13/cobra"
)

// Backups are taken inside the process that has the data directory open:
// Badger allows one process per directory, and its own tools can back up
// neither an encrypted nor a running database. So `keygate backup` asks a
// running keygate over the admin socket to stream one, and opens the
// directory itself only when no keygate runs. Either way the file is
// encrypted (see badgerstore/backup.go) and read back and verified before it
// takes its final name, so a file named --out is always a complete backup.
//
// A backend that writes no backup of its own (PostgreSQL: no store.Backuper)
// is backed up and restored through the store contract: its records are
// copied into a throwaway Badger store (encrypted with a random key that
// never leaves memory) and that is backed up, or a backup is restored into
// one and copied from there. So a backup file has one format whatever the
// backend: a Badger backup can be restored onto PostgreSQL and back. A
// database serves many processes, so no running keygate is needed for it.

func newBackupCmd(g *globals) *cobra.Command {
	var out, keyFile string
	cmd := &cobra.Command{
		Use:   "backup --out FILE [--key-file K]",
		Short: "Write an encrypted, consistent backup (works while keygate is serving)",
		Long: `Write an encrypted backup of the store to FILE.

Badger: while keygate serves, the backup is taken by the running process
through the admin socket; otherwise the data directory is opened directly.
The backup is one consistent snapshot.

PostgreSQL: the records are read from the database through the store, also
while replicas serve; each record is as it was when it was read, not all
at one instant (for that, back up when nothing writes, or use pg_dump: the
values stay sealed in a dump).

The backup is
encrypted with the storage encryption key, or with the key in --key-file
(64 hex characters or base64 of 32 bytes, e.g. from: openssl rand -hex 32).
Keep that key apart from the backups: without it a backup cannot be restored.
FILE is replaced only once the new backup is complete and verified.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			key, _, err := backupKeys(cfg, keyFile)
			if err != nil {
				return err
			}
			return runBackup(cmd.Context(), cfg, key, out, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "backup file to write (required)")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "file with the backup key (default: the storage encryption key)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func newRestoreCmd(g *globals) *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "restore FILE [--key-file K]",
		Short: "Restore a backup into an empty data directory or database",
		Long: `Restore the backup FILE into the configured store, which must be empty:
storage.path (empty or missing; keygate must not be running on it), or with
storage.backend: postgres the configured database (empty: no records; its
schema may exist). A backup of either backend restores onto either. The
restored data is
encrypted with the configured storage key, which may differ from the one of
the installation that made the backup (this is how the storage key is
changed). The backup is opened with --key-file, or else with the configured
storage key. Nothing is written unless the whole backup authenticates.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(g.configPath)
			if err != nil {
				return err
			}
			key, storageKey, err := backupKeys(cfg, keyFile)
			if err != nil {
				return err
			}
			return runRestore(cmd.Context(), cfg, args[0], key, storageKey, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&keyFile, "key-file", "", "file with the backup key (default: the storage encryption key)")
	return cmd
}

// backupKeys returns the key that encrypts backups (--key-file, else the
// storage key) and the storage key (nil for a plain store).
func backupKeys(cfg *config.Config, keyFile string) (backupKey, storageKey []byte, err error) {
	storageKey, err = badgerstore.LoadKey(cfg.Storage.EncryptionKeyFile, string(cfg.Storage.EncryptionKey))
	if err != nil {
		return nil, nil, fmt.Errorf("storage encryption key: %w", err)
	}
	if keyFile != "" {
		k, err := badgerstore.LoadKey(keyFile, "")
		if err != nil {
			return nil, nil, fmt.Errorf("--key-file: %w", err)
		}
		return k, storageKey, nil
	}
	if storageKey == nil {
		return nil, nil, errors.New("the storage is not encrypted (no storage.encryption_key_file or " + badgerstore.KeyEnv +
			"), so there is no key for the backup: give the backup key with --key-file (a new one: openssl rand -hex 32 > backup.key)")
	}
	return storageKey, storageKey, nil
}

// runBackup writes the backup to a temporary file next to out, verifies it
// and renames it into place.
func runBackup(ctx context.Context, cfg *config.Config, key []byte, out string, stdout io.Writer) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".partial-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	how, err := writeBackup(ctx, cfg, key, tmp, filepath.Dir(out))
	if err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("backup: sync %s: %w", tmp.Name(), err)
	}
	// Read back what is on disk: a stream cut short, a server that failed
	// half way or a bad disk shows up here, not on the day of the restore.
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	info, err := badgerstore.VerifyBackup(bufio.NewReaderSize(tmp, 64<<10), key)
	if err != nil {
		return fmt.Errorf("backup: the written file does not verify: %w", err)
	}
	size, _ := tmp.Seek(0, io.SeekCurrent)
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if d, err := os.Open(filepath.Dir(out)); err == nil {
		_ = d.Sync() // make the rename durable
		_ = d.Close()
	}
	fmt.Fprintf(stdout, "backup written to %s (%d records, %d bytes, %s)\n", out, info.Records, size, how)
	return nil
}

// writeBackup streams the backup into w from the running keygate or, when
// none answers on the admin socket, from the data directory itself. A
// database backend is read directly. tmpDir is where a store that is not a
// store.Backuper is staged (see above).
func writeBackup(ctx context.Context, cfg *config.Config, key []byte, w io.Writer, tmpDir string) (how string, err error) {
	if backendName(cfg) != config.BackendBadger {
		return backupDatabase(ctx, cfg, key, w, tmpDir)
	}
	sock := cfg.AdminSocketPath()
	if sock != "" {
		if _, err := os.Stat(sock); err == nil && newSocketAdmin(sock).ping(ctx) == nil {
			if err := socketBackup(ctx, sock, key, w); err != nil {
				return "", err
			}
			return "taken by the running keygate", nil
		}
	}
	path := cfg.Storage.Path
	// Open would create an empty store in a missing directory and back
	// that up; a typo in storage.path deserves an error instead.
	if entries, err := os.ReadDir(path); err != nil || len(entries) == 0 {
		return "", fmt.Errorf("backup: no data in %s (storage.path) and no keygate answers on the admin socket %q", path, sock)
	}
	storageKey, err := badgerstore.LoadKey(cfg.Storage.EncryptionKeyFile, string(cfg.Storage.EncryptionKey))
	if err != nil {
		return "", fmt.Errorf("storage encryption key: %w", err)
	}
	kv, err := badgerstore.Open(badgerstore.Options{Path: path, EncryptionKey: storageKey, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return "", fmt.Errorf("%w; and no keygate answers on the admin socket %q", err, sock)
		}
		return "", err
	}
	defer kv.Close()
	if err := kv.Backup(w, key); err != nil {
		return "", err
	}
	return "keygate was not running", nil
}

// backupDatabase backs up a shared backend (PostgreSQL), which this
// process may open while replicas serve.
func backupDatabase(ctx context.Context, cfg *config.Config, key []byte, w io.Writer, tmpDir string) (string, error) {
	storageKey, err := configStorageKey(cfg)
	if err != nil {
		return "", err
	}
	kv, err := openBackend(ctx, cfg, storageKey, quietLogger())
	if err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	defer kv.Close()
	if b, ok := kv.(store.Backuper); ok {
		if err := b.Backup(w, key); err != nil {
			return "", fmt.Errorf("backup: %w", err)
		}
		return "read from the " + backendName(cfg) + " database", nil
	}
	n, err := backupThroughBadger(ctx, kv, key, w, tmpDir)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("read record by record from the %s database, %d records", backendName(cfg), n), nil
}

// backupThroughBadger copies kv into a throwaway Badger store and writes
// that one's backup to w. The staging store is encrypted with a random key
// held only in memory, so nothing readable is left on disk if the removal
// fails.
func backupThroughBadger(ctx context.Context, kv store.KV, key []byte, w io.Writer, tmpDir string) (int, error) {
	stage, cleanup, err := stagingStore(tmpDir, func(opts badgerstore.Options) error { return nil })
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer cleanup()
	// No check after the copy: replicas may write meanwhile.
	report, err := store.Copy(ctx, stage, kv, store.CopyOptions{NoCheck: true})
	if err != nil {
		return 0, fmt.Errorf("backup: read the records: %w", err)
	}
	if err := stage.Backup(w, key); err != nil {
		return 0, err
	}
	return report.Total().Copied, nil
}

// stagingStore creates a Badger store in a new directory under tmpDir
// ("" = the system's), encrypted with a random key; prepare runs on the
// empty directory before the store is opened (a restore writes it there).
// cleanup closes the store and removes the directory.
func stagingStore(tmpDir string, prepare func(badgerstore.Options) error) (*badgerstore.Store, func(), error) {
	dir, err := os.MkdirTemp(tmpDir, ".keygate-staging-")
	if err != nil {
		return nil, nil, err
	}
	k := make([]byte, badgerstore.KeySize)
	_, _ = rand.Read(k)
	opts := badgerstore.Options{Path: filepath.Join(dir, "data"), EncryptionKey: k, Logger: quietLogger()}
	if err := prepare(opts); err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, err
	}
	s, err := badgerstore.Open(opts)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("staging store: %w", err)
	}
	return s, func() { _ = s.Close(); _ = os.RemoveAll(dir) }, nil
}

// backupRequest is the body of POST /backup on the admin socket. The key
// travels over the socket, which only the owner of the data directory can
// open (and who can read the key files anyway).
type backupRequest struct {
	Key []byte `json:"key"`
}

// socketBackup asks the running keygate for the backup stream. Its client
// has no overall timeout (adminsock's has 30 s): a backup takes as long as
// the data needs; ctx (Ctrl+C) still ends it.
func socketBackup(ctx context.Context, sock string, key []byte, w io.Writer) error {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		ResponseHeaderTimeout: 30 * time.Second,
	}}
	defer hc.CloseIdleConnections()
	body, err := json.Marshal(backupRequest{Key: key})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://keygate/backup", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("backup through the admin socket: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("backup through the admin socket: %w", readAPIError(resp))
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("backup through the admin socket: the stream broke off: %w", err)
	}
	return nil
}

// restoreError explains the errors of badgerstore.Restore.
func restoreError(file string, err error) error {
	switch {
	case errors.Is(err, badgerstore.ErrBackupKey):
		return fmt.Errorf("restore %s: %w: it was made with another key (give the right one with --key-file, or use the storage key of the installation that made it)", file, err)
	case errors.Is(err, badgerstore.ErrRestoreNotEmpty):
		return fmt.Errorf("restore: %w; point storage.path of the configuration at a new directory", err)
	case err != nil:
		return fmt.Errorf("restore %s: %w", file, err)
	}
	return nil
}

// runRestore restores file into the configured store and checks the
// result.
func runRestore(ctx context.Context, cfg *config.Config, file string, key, storageKey []byte, stdout io.Writer) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	if backendName(cfg) != config.BackendBadger {
		return restoreDatabase(ctx, cfg, file, bufio.NewReaderSize(f, 64<<10), key, storageKey, stdout)
	}
	quiet := quietLogger()
	opts := badgerstore.Options{Path: cfg.Storage.Path, EncryptionKey: storageKey, Logger: quiet}
	if err := restoreError(file, badgerstore.Restore(opts, bufio.NewReaderSize(f, 64<<10), key)); err != nil {
		return err
	}
	kv, err := badgerstore.Open(opts)
	if err != nil {
		return fmt.Errorf("restore: the restored data does not open: %w", err)
	}
	var n int
	err = kv.Scan(context.Background(), "", func(store.Item) error { n++; return nil })
	if cerr := kv.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore: read back the restored data: %w", err)
	}
	fmt.Fprintf(stdout, "restored %s into %s (%d records); start keygate with this configuration\n", file, cfg.Storage.Path, n)
	return nil
}

// restoreDatabase restores a backup onto a shared backend (PostgreSQL)
// that must hold no records: the backup is restored into a throwaway
// Badger store (so a wrong key or a damaged file is found before the
// database is touched), then copied into the database and checked.
func restoreDatabase(ctx context.Context, cfg *config.Config, file string, r io.Reader, key, storageKey []byte, stdout io.Writer) error {
	if len(storageKey) == 0 {
		return errors.New("restore: storage.backend: " + backendName(cfg) + " needs the storage key (storage.encryption_key_file): every value in the database is sealed with it")
	}
	stage, cleanup, err := stagingStore("", func(opts badgerstore.Options) error {
		return restoreError(file, badgerstore.Restore(opts, r, key))
	})
	if err != nil {
		return err
	}
	defer cleanup()
	kv, err := openBackend(ctx, cfg, storageKey, quietLogger())
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer kv.Close()
	report, err := store.Copy(ctx, kv, stage, store.CopyOptions{})
	if errors.Is(err, store.ErrNotEmpty) {
		return fmt.Errorf("restore: the %s database is not empty (%w); nothing was written. Restore into a new, empty database (or move the data with keygate migrate --force)", backendName(cfg), err)
	}
	if report != nil {
		printCopyReport(stdout, report)
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", file, err)
	}
	fmt.Fprintf(stdout, "restored %s into the %s database (%d records, %d expired ones skipped); start keygate with this configuration\n",
		file, backendName(cfg), report.Total().Copied, report.Total().Expired)
	return nil
}
