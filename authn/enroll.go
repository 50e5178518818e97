package authn

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/authn/store"
)

// ErrLinkInvalid: an enrolment link that is unknown, used, expired, or
// meant for another user. One error for all, so a link's state is not
// revealed to whoever holds it.
var ErrLinkInvalid = errors.New("authn: the enrolment link is invalid, used or expired")

// DefaultEnrollLinkTTL is how long an enrolment link works.
const DefaultEnrollLinkTTL = 72 * time.Hour

// EnrollLinks are one-time links an admin issues so that a person can enrol
// their first second factor: a password alone never enrols one. Only a hash
// of the token is stored, so a copy of the database holds no usable link.
type EnrollLinks struct {
	kv  KV
	now func() time.Time
}

// NewEnrollLinks builds the link issuer.
func NewEnrollLinks(kv KV, now func() time.Time) *EnrollLinks {
	if now == nil {
		now = time.Now
	}
	return &EnrollLinks{kv: kv, now: now}
}

// Issue creates a link token for username, valid for ttl (0 = default).
func (l *EnrollLinks) Issue(ctx context.Context, username string, ttl time.Duration) (token string, expires time.Time, err error) {
	if ttl <= 0 {
		ttl = DefaultEnrollLinkTTL
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", time.Time{}, fmt.Errorf("enrolment link: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	if _, err := l.kv.Set(ctx, linkKey(token), []byte(username), store.WriteOptions{TTL: ttl, Durable: true}); err != nil {
		return "", time.Time{}, fmt.Errorf("enrolment link: %w", err)
	}
	return token, l.now().Add(ttl), nil
}

// Redeem consumes the token for username: it works once, for that user,
// before it expires. A token presented by another user is consumed too:
// a link that leaked to the wrong person is dead either way.
func (l *EnrollLinks) Redeem(ctx context.Context, username, token string) error {
	if len(token) != 43 {
		return ErrLinkInvalid
	}
	owner, err := l.kv.Consume(ctx, linkKey(token))
	if errors.Is(err, store.ErrNotFound) {
		return ErrLinkInvalid
	}
	if err != nil {
		return fmt.Errorf("enrolment link: %w", err)
	}
	if string(owner) != username {
		return ErrLinkInvalid
	}
	return nil
}

func linkKey(token string) string {
	h := sha256.Sum256([]byte(token))
	return linkPrefix + hex.EncodeToString(h[:])
}
