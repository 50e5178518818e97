package authn

import (
	"context"

	"github.com/keygate/keygate/authn/store"
)

// KV is the part of store.KV that authn uses. Users and sessions are durable
// records updated by compare-and-swap; one-time values (enrolment links,
// trusted-device tokens) are consumed or written with a TTL.
// Errors follow the store contract: store.ErrNotFound and store.ErrConflict.
type KV interface {
	Get(ctx context.Context, key string) (store.Item, error)
	CompareAndSet(ctx context.Context, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error)
	Set(ctx context.Context, key string, value []byte, opt store.WriteOptions) (uint64, error)
	Consume(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
	CompareAndDelete(ctx context.Context, key string, prev uint64) error
	Scan(ctx context.Context, prefix string, fn func(store.Item) error) error
}

// Key prefixes. "user/" and "user_email/" do not prefix one another, so a
// Scan of users never sees the email index.
const (
	userPrefix    = "user/"
	emailPrefix   = "user_email/"
	sessionPrefix = "session/"
	linkPrefix    = "enroll_link/"
	devicePrefix  = "device/"
)

// maxCASRetries bounds read-modify-write loops that lost a compare-and-swap.
// Losing means someone else wrote in between; each retry re-reads, so the
// bound only matters under a storm of writes to one record.
const maxCASRetries = 16

// Interface guards: every store backend can be handed to authn.
var _ KV = (store.KV)(nil)
