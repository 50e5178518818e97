package activity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/keygate/keygate/authn/store"
)

// The audit log records what admins did: who, when, from where, to whom,
// with what result. It is append-only: nothing in keygate edits or deletes
// an entry.
//
// Storage keys:
//
//	audit/<%016x unix ns>-<%08x sequence>   AuditEntry (JSON), durable
//
// The fixed-width hex time makes the store's key order the time order, so
// listing and export need no sorting; the sequence keeps two entries of the
// same nanosecond (a test clock) apart and in the order they were made.
const auditPrefix = "audit/"

// Audit actions.
const (
	AuditPolicyUpdate   = "policy.update"
	AuditPolicyRollback = "policy.rollback"
	AuditPolicyImport   = "policy.import"
	AuditUserAdd        = "user.add"
	AuditUserDelete     = "user.delete"
	AuditUserPassword   = "user.password"
	AuditUserDisable    = "user.disable"
	AuditUserEnable     = "user.enable"
	AuditResetFactors   = "user.reset_factors"
	AuditEnrollLink     = "user.enroll_link"
	AuditUnlock         = "user.unlock"
	// An admin approved (ended the waiting period of) or cancelled a
	// person's self-service account recovery.
	AuditRecoveryApprove = "user.recovery_approve"
	AuditRecoveryCancel  = "user.recovery_cancel"
)

// Channels an admin acts through.
const (
	ViaWeb = "web" // the admin page or the admin JSON API, with a session
	ViaCLI = "cli" // the keygate command (admin socket or the data directory)
)

// AuditEntry is one admin action.
type AuditEntry struct {
	ID     string    `json:"id"`
	At     time.Time `json:"at"`
	Admin  string    `json:"admin"` // the admin's username; the OS user for the CLI
	Via    string    `json:"via"`   // ViaWeb or ViaCLI
	IP     string    `json:"ip,omitempty"`
	Action string    `json:"action"`           // Audit* constants
	Target string    `json:"target,omitempty"` // the user acted on, or "policy"
	// Details are the particulars: the policy version made, how many
	// factors were removed, when a link expires. Never secrets (no link
	// tokens, no passwords).
	Details map[string]string `json:"details,omitempty"`
}

// Audit keeps the audit log in the store.
type Audit struct {
	kv  KV
	now func() time.Time
	log *slog.Logger
	mu  sync.Mutex
	seq uint32
}

// NewAudit returns the audit log over kv. now and log may be nil.
func NewAudit(kv KV, now func() time.Time, log *slog.Logger) *Audit {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Audit{kv: kv, now: now, log: log}
}

// Record appends e (its ID and time are set here) and returns it as stored.
// The action has already happened when Record is called, so a storage
// failure is logged with the whole entry, where operators still find it,
// as well as returned.
func (a *Audit) Record(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	e.At = a.now().Round(0).UTC()
	ctx = context.WithoutCancel(ctx) // a client that went away must not cost the record
	for range maxCASRetries {
		a.mu.Lock()
		a.seq++
		seq := a.seq
		a.mu.Unlock()
		e.ID = fmt.Sprintf("%016x-%08x", e.At.UnixNano(), seq)
		b, err := json.Marshal(e)
		if err != nil {
			return e, fmt.Errorf("audit: encode: %w", err)
		}
		_, err = a.kv.CompareAndSet(ctx, auditPrefix+e.ID, b, 0, store.WriteOptions{Durable: true})
		if errors.Is(err, store.ErrConflict) {
			continue // an entry of an earlier run with the same time and sequence
		}
		if err != nil {
			a.log.Error("audit entry not stored", "entry", string(b), "err", err)
			return e, fmt.Errorf("audit: store: %w", err)
		}
		a.log.Info("admin action", "action", e.Action, "admin", e.Admin, "via", e.Via, "target", e.Target, "ip", e.IP)
		return e, nil
	}
	return e, fmt.Errorf("audit: store: %w", store.ErrConflict)
}

// Scan calls fn for every entry, oldest first.
func (a *Audit) Scan(ctx context.Context, fn func(AuditEntry) error) error {
	err := a.kv.Scan(ctx, auditPrefix, func(it store.Item) error {
		var e AuditEntry
		if err := json.Unmarshal(it.Value, &e); err != nil {
			return fmt.Errorf("%s: %w", it.Key, err)
		}
		return fn(e)
	})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// Recent returns up to limit entries, newest first.
func (a *Audit) Recent(ctx context.Context, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		return nil, nil
	}
	// A ring of the last limit entries: the store lists oldest first.
	ring := make([]AuditEntry, 0, limit)
	next := 0
	err := a.Scan(ctx, func(e AuditEntry) error {
		if len(ring) < limit {
			ring = append(ring, e)
		} else {
			ring[next] = e
			next = (next + 1) % limit
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]AuditEntry, 0, len(ring))
	for i := range ring {
		out = append(out, ring[(next+len(ring)-1-i)%len(ring)])
	}
	return out, nil
}

// Export writes every entry as one JSON object per line (JSON Lines),
// oldest first.
func (a *Audit) Export(ctx context.Context, w io.Writer) error {
	enc := json.NewEncoder(w)
	return a.Scan(ctx, func(e AuditEntry) error {
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		return nil
	})
}
