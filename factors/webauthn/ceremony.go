package webauthn

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	gwa "github.com/go-webauthn/webauthn/webauthn"

	"github.com/keygate/keygate/authn/store"
)

// ceremonyOp is which Begin started a ceremony; a Finish only accepts its
// own, so a login challenge cannot be spent on a registration.
type ceremonyOp string

const (
	opRegister ceremonyOp = "register"
	opLogin    ceremonyOp = "login"
	opPasskey  ceremonyOp = "passkey"
)

// ceremonyRecord is a begun ceremony, kept server-side until finished or
// expired. The challenge never leaves the server except in the options.
type ceremonyRecord struct {
	V         int               `json:"v"`
	Op        ceremonyOp        `json:"op"`
	User      string            `json:"user,omitempty"` // empty for passkey sign-in
	AuthKind  AuthenticatorKind `json:"auth_kind,omitempty"`
	Session   gwa.SessionData   `json:"session"`
	ExpiresAt time.Time         `json:"expires_at"`
}

// putCeremony stores a ceremony under a fresh random ID. Not durable: after
// a crash the user simply starts again. The store's TTL cleans up what
// nobody finishes; ExpiresAt is checked as well, against our clock, because
// the store may keep a key up to a second longer (and tests move the clock).
func (f *Factor) putCeremony(ctx context.Context, op ceremonyOp, user string, kind AuthenticatorKind, s *gwa.SessionData) (string, error) {
	rec := ceremonyRecord{V: recordVersion, Op: op, User: user, AuthKind: kind, Session: *s, ExpiresAt: f.now().Add(f.ttl)}
	b, err := json.Marshal(rec)
	if err != nil {
		return "", fmt.Errorf("webauthn: encode ceremony: %w", err)
	}
	id := newCeremonyID()
	if _, err := f.kv.CompareAndSet(ctx, ceremonyKey(id), b, 0, store.WriteOptions{TTL: f.ttl}); err != nil {
		return "", fmt.Errorf("webauthn: save ceremony: %w", err)
	}
	return id, nil
}

// takeCeremony consumes the ceremony atomically, before anything is
// verified: whatever the outcome, a ceremony is finished at most once, so a
// captured response cannot be replayed against it and concurrent finishes
// cannot both succeed. A ceremony of another op or user is consumed too
// (it was presented by someone who should not have it) and refused.
func (f *Factor) takeCeremony(ctx context.Context, id string, op ceremonyOp, user string) (*ceremonyRecord, error) {
	if id == "" || len(id) > 64 {
		return nil, ErrCeremony
	}
	b, err := f.kv.Consume(ctx, ceremonyKey(id))
	if isNotFound(err) {
		return nil, ErrCeremony
	}
	if err != nil {
		return nil, fmt.Errorf("webauthn: take ceremony: %w", err)
	}
	var rec ceremonyRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("webauthn: decode ceremony: %w", err)
	}
	if rec.V != recordVersion || rec.Op != op || rec.User != user || !f.now().Before(rec.ExpiresAt) {
		return nil, ErrCeremony
	}
	// Verify against this factor's configuration, not the one stored with
	// the session: go-webauthn prefers a session's RP ID and origin over its
	// config, and a ceremony begun under an older configuration (before a
	// reload) must not carry its RP ID or origins into the verification.
	rec.Session.RelyingPartyID = ""
	rec.Session.Origin = ""
	return &rec, nil
}
