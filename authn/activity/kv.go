package activity

import (
	"context"

	"github.com/keygate/keygate/authn/store"
)

// KV is the part of store.KV the logs use: events and audit entries are
// written once (compare-and-set against absence), "This wasn't me" tokens
// are set with a TTL and consumed once, and both logs are read by prefix.
type KV interface {
	Get(ctx context.Context, key string) (store.Item, error)
	CompareAndSet(ctx context.Context, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error)
	Set(ctx context.Context, key string, value []byte, opt store.WriteOptions) (uint64, error)
	Consume(ctx context.Context, key string) ([]byte, error)
	Scan(ctx context.Context, prefix string, fn func(store.Item) error) error
}

// maxCASRetries bounds the audit log's retries of a lost compare-and-set
// (an entry of an earlier run with the same time and sequence).
const maxCASRetries = 16

// Interface guards: every store backend can be handed to the logs.
var _ KV = (store.KV)(nil)
