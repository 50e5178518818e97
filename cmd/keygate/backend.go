package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/authn/store/pgstore"
	"github.com/keygate/keygate/cmd/keygate/config"
)

// openBackend opens the configured storage backend: Badger in the data
// directory (the embedded default), or the PostgreSQL database several
// replicas share. The rest of keygate sees a store.Backend and asks for
// the optional capabilities (backup, size, GC) by interface.
func openBackend(ctx context.Context, cfg *config.Config, key []byte, log *slog.Logger) (store.Backend, error) {
	switch cfg.Storage.Backend {
	case "", config.BackendBadger:
		return badgerstore.Open(badgerstore.Options{Path: cfg.Storage.Path, EncryptionKey: key, Logger: log})
	case config.BackendPostgres:
		_, dsn, err := cfg.PostgresDSN()
		if err != nil {
			return nil, err
		}
		if dsn == "" {
			return nil, fmt.Errorf("storage.postgres.dsn_file (or %s) is required with storage.backend: postgres", "KEYGATE_STORAGE_POSTGRES_DSN")
		}
		s, err := pgstore.Open(ctx, pgstore.Options{DSN: dsn, Key: key, MaxConns: int32(cfg.Storage.Postgres.MaxConns), Logger: log})
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("storage.backend %q is not badger or postgres", cfg.Storage.Backend)
}

// backendName is the backend in messages and logs.
func backendName(cfg *config.Config) string {
	if cfg.Storage.Backend == "" {
		return config.BackendBadger
	}
	return cfg.Storage.Backend
}
