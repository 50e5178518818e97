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
	return f.checkCeremony(b, op, user)
}

// checkCeremony decodes a stored ceremony and refuses one of another op or
// user, or one expired on our clock.
func (f *Factor) checkCeremony(b []byte, op ceremonyOp, user string) (*ceremonyRecord, error) {
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

// heldCeremony is a sign-in ceremony as its finish holds it. On a store
// that can consume one key and write another in one step
// (store.ConsumeSetter) it is read, not consumed, and ver is the version
// read: an accepted assertion consumes it together with the sign counter's
// write (saveUserEnding: one durable write where there were two, the
// WebAuthn finish's budget), a refused one consumes it on its own
// (endCeremony). On any other store it was consumed before anything was
// verified (takeCeremony) and ver is 0. Either way it is finished at most
// once: of concurrent finishes only one consumes it, and a finish that
// loses gets ErrCeremony, with nothing written.
type heldCeremony struct {
	rec *ceremonyRecord
	key string
	ver uint64 // the version read while still held; 0 once consumed
}

// holdCeremony starts a sign-in finish (see heldCeremony). A ceremony of
// another op or user, or an expired one, is consumed and refused, as
// takeCeremony does.
func (f *Factor) holdCeremony(ctx context.Context, id string, op ceremonyOp, user string) (*heldCeremony, error) {
	if f.cs == nil {
		rec, err := f.takeCeremony(ctx, id, op, user)
		if err != nil {
			return nil, err
		}
		return &heldCeremony{rec: rec}, nil
	}
	if id == "" || len(id) > 64 {
		return nil, ErrCeremony
	}
	h := &heldCeremony{key: ceremonyKey(id)}
	it, err := f.kv.Get(ctx, h.key)
	if isNotFound(err) {
		return nil, ErrCeremony
	}
	if err != nil {
		return nil, fmt.Errorf("webauthn: read ceremony: %w", err)
	}
	h.ver = it.Version
	if h.rec, err = f.checkCeremony(it.Value, op, user); err != nil {
		f.endCeremony(ctx, h)
		return nil, err
	}
	return h, nil
}

// endCeremony consumes a ceremony still held: a finish that accepted
// nothing ends it all the same. It runs on a refusal path whose own error
// is what the caller reports, so a failure here is logged, not returned:
// the ceremony then lapses with its TTL, and its counter guards a replay
// meanwhile as before. The delete is by the version read, so it never
// removes anything but the ceremony this finish read.
func (f *Factor) endCeremony(ctx context.Context, h *heldCeremony) {
	if h == nil || h.ver == 0 {
		return
	}
	err := f.kv.CompareAndDelete(context.WithoutCancel(ctx), h.key, h.ver)
	h.ver = 0
	if err != nil && !isNotFound(err) && !isConflict(err) {
		f.log.Warn("webauthn: could not end a refused ceremony; it lapses with its TTL", "error", err.Error())
	}
}
