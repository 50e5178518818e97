package authn

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/authn/store"
)

// ErrParkedGone: the parked request is unknown, used or expired.
var ErrParkedGone = errors.New("authn: the saved request is gone")

const parkedPrefix = "parked/"

// ParkedRequest is a form submission that met a challenge (a step-up, an
// expired session): it waits here while the person proves who they are,
// then the portal submits it again, so the typed form is not lost.
type ParkedRequest struct {
	Method      string `json:"method"`
	URL         string `json:"url"`
	ContentType string `json:"content_type"`
	Body        []byte `json:"body"`
}

// ParkedRequests keeps them briefly, each usable once.
type ParkedRequests struct {
	kv  KV
	ttl time.Duration
}

// NewParkedRequests keeps parked requests for ttl (default 15 minutes).
func NewParkedRequests(kv KV, ttl time.Duration) *ParkedRequests {
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	return &ParkedRequests{kv: kv, ttl: ttl}
}

// Park stores p and returns its ID.
func (pr *ParkedRequests) Park(ctx context.Context, p ParkedRequest) (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("park request: %w", err)
	}
	id := base64.RawURLEncoding.EncodeToString(b)
	raw, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("park request: %w", err)
	}
	if _, err := pr.kv.Set(ctx, parkedPrefix+id, raw, store.WriteOptions{TTL: pr.ttl}); err != nil {
		return "", fmt.Errorf("park request: %w", err)
	}
	return id, nil
}

// Take returns the parked request and forgets it (once).
func (pr *ParkedRequests) Take(ctx context.Context, id string) (ParkedRequest, error) {
	if len(id) != 32 {
		return ParkedRequest{}, ErrParkedGone
	}
	raw, err := pr.kv.Consume(ctx, parkedPrefix+id)
	if errors.Is(err, store.ErrNotFound) {
		return ParkedRequest{}, ErrParkedGone
	}
	if err != nil {
		return ParkedRequest{}, fmt.Errorf("take parked request: %w", err)
	}
	var p ParkedRequest
	if err := json.Unmarshal(raw, &p); err != nil {
		return ParkedRequest{}, ErrParkedGone
	}
	return p, nil
}
