// Package recovery is the recovery-code factor: a set of one-time codes,
// shown once, for the day a user's phone or key is lost.
//
// Codes are stored only as keyed hashes (factors.Secrets.Hash with the
// context "recovery/<user>"), so a copy of the database neither shows the
// codes nor lets anyone test guesses offline, and a hash copied onto another
// user does not match there. A user has one set; generating a new one
// replaces it whole in one write, so the old codes die at once. Using a code
// marks it in the set with a durable compare-and-swap, so a code works once
// even when two requests race with it.
package recovery

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// Kind is the factor's name in credentials, sessions and policies.
const Kind = "recovery"

// KV is the part of store.KV this package uses: one durable record per user
// holding the set, replaced whole by Set and updated by compare-and-swap.
type KV interface {
	Get(ctx context.Context, key string) (store.Item, error)
	Set(ctx context.Context, key string, value []byte, opt store.WriteOptions) (uint64, error)
	CompareAndSet(ctx context.Context, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error)
	CompareAndDelete(ctx context.Context, key string, prev uint64) error
}

// Options configure a Factor.
type Options struct {
	// Count is how many codes a set has (10 by default, at most 64).
	Count int
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Secrets hashes the codes. Required.
	Secrets *factors.Secrets
}

const (
	defaultCount = 10
	maxCount     = 64
	// maxCASRetries bounds read-modify-write loops that lost a
	// compare-and-swap. Each retry re-reads, and a request that lost to
	// another use of the same code stops at once (replayed); only uses
	// of many different codes at the same instant could run it out.
	maxCASRetries = 16
	// credentialName is how the set is listed among the user's factors.
	credentialName = "Recovery codes"
)

// Factor is the recovery-code factor. It keeps no state of its own besides
// its configuration.
type Factor struct {
	kv      KV
	secrets *factors.Secrets
	count   int
	now     func() time.Time
}

// New checks the options, fills in the defaults and returns the factor.
func New(kv KV, opt Options) (*Factor, error) {
	if kv == nil {
		return nil, errors.New("recovery: no store")
	}
	if opt.Secrets == nil {
		return nil, errors.New("recovery: no Secrets: codes are never stored in clear")
	}
	f := &Factor{kv: kv, secrets: opt.Secrets, count: opt.Count, now: opt.Now}
	if f.count == 0 {
		f.count = defaultCount
	}
	if f.count < 1 || f.count > maxCount {
		return nil, fmt.Errorf("recovery: %d codes per set: want 1 to %d", opt.Count, maxCount)
	}
	if f.now == nil {
		f.now = time.Now
	}
	return f, nil
}

// Kind returns "recovery".
func (f *Factor) Kind() string { return Kind }

// Generate makes a new set of codes for user, replacing any previous set at
// once (its unused codes stop working), and returns the codes formatted for
// reading ("k7qm-xt4p-9wzc"). They are returned this once: only their
// hashes are kept, so show them to the user and forget them.
func (f *Factor) Generate(ctx context.Context, user string) ([]string, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	rec := setRecord{V: recordVersion, ID: newID(), CreatedAt: f.now()}
	codes := make([]string, 0, f.count)
	seen := make(map[string]bool, f.count)
	for len(codes) < f.count {
		c := newCode()
		// A repeat is all but impossible at 59 bits, but two equal codes
		// would make one of them a dud, so it costs nothing to rule out.
		if seen[c] {
			continue
		}
		seen[c] = true
		codes = append(codes, format(c))
		rec.Codes = append(rec.Codes, codeRecord{Hash: f.hash(user, c)})
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("recovery: encode codes: %w", err)
	}
	// One unconditional write replaces the whole set: a Verify that read
	// the old set loses its compare-and-swap, re-reads and finds only the
	// new codes.
	if _, err := f.kv.Set(ctx, setKey(user), b, durable()); err != nil {
		return nil, fmt.Errorf("recovery: save codes: %w", err)
	}
	return codes, nil
}

// Verify checks a code of user's set. It accepts the code however it is
// typed: any case, with or without spaces and dashes. An unknown code is
// ok=false with no error; a code already used is ok=false with an error
// wrapping factors.ErrReplayed; a user without a set gets
// factors.ErrNotEnrolled. remaining is the number of unused codes left,
// so callers can warn the user as the set runs low.
//
// Each code works once, even across concurrent requests: it is marked used
// with a durable compare-and-swap on the set, and a request that loses the
// race re-reads the set, finds the code used and is refused.
func (f *Factor) Verify(ctx context.Context, user, code string) (ok bool, remaining int, err error) {
	if err := checkUser(user); err != nil {
		return false, 0, err
	}
	norm, wellFormed := normalize(code)
	var h []byte
	if wellFormed {
		h = f.hash(user, norm)
	}
	for range maxCASRetries {
		rec, ver, err := f.load(ctx, user)
		if err != nil {
			return false, 0, err
		}
		left := rec.remaining()
		if !wellFormed {
			return false, left, nil
		}
		// Compare with every hash, without stopping at a match, so the
		// time taken does not say where in the set the code is.
		hit := -1
		for i := range rec.Codes {
			if factors.Equal(rec.Codes[i].Hash, h) && hit < 0 {
				hit = i
			}
		}
		if hit < 0 {
			return false, left, nil
		}
		if !rec.Codes[hit].UsedAt.IsZero() {
			return false, left, fmt.Errorf("recovery: code already used: %w", factors.ErrReplayed)
		}
		now := f.now()
		rec.Codes[hit].UsedAt, rec.LastUsedAt = now, now
		err = f.save(ctx, user, rec, ver)
		if errors.Is(err, store.ErrConflict) {
			// Someone used a code (maybe this one) or made a new set
			// since we read: decide again on what they wrote.
			continue
		}
		if err != nil {
			return false, left, fmt.Errorf("recovery: mark code used: %w", err)
		}
		return true, left - 1, nil
	}
	return false, 0, fmt.Errorf("recovery: mark code used: gave up after %d concurrent writes: %w", maxCASRetries, store.ErrConflict)
}

// Remaining returns how many unused codes user has left, or
// factors.ErrNotEnrolled when they have no set.
func (f *Factor) Remaining(ctx context.Context, user string) (int, error) {
	if err := checkUser(user); err != nil {
		return 0, err
	}
	rec, _, err := f.load(ctx, user)
	if err != nil {
		return 0, err
	}
	return rec.remaining(), nil
}

// setKey is where user's set lives. The user is path-escaped so that no
// user name can address another user's key.
func setKey(user string) string { return "recovery/" + url.PathEscape(user) }

// hash is the stored form of a code in normal form. The context binds it
// to the user: the same code hashes differently for everyone.
func (f *Factor) hash(user, code string) []byte {
	return f.secrets.Hash("recovery/"+user, code)
}

// durable is how sets are written: a used code must stay used, and a
// replaced set must stay replaced, after a crash.
func durable() store.WriteOptions { return store.WriteOptions{Durable: true} }

// setRecord is the stored form of a set; V is its schema version.
type setRecord struct {
	V          int          `json:"v"`
	ID         string       `json:"id"`
	Codes      []codeRecord `json:"codes"`
	CreatedAt  time.Time    `json:"created_at"`
	LastUsedAt time.Time    `json:"last_used_at,omitzero"`
}

const recordVersion = 1

// codeRecord is one code: its keyed hash, and when it was used (zero: not
// yet). Used codes are kept so that a second use is told apart from a
// wrong code (factors.ErrReplayed).
type codeRecord struct {
	Hash   []byte    `json:"h"`
	UsedAt time.Time `json:"used_at,omitzero"`
}

func (r *setRecord) remaining() int {
	n := 0
	for i := range r.Codes {
		if r.Codes[i].UsedAt.IsZero() {
			n++
		}
	}
	return n
}

// load reads user's set, or returns factors.ErrNotEnrolled.
func (f *Factor) load(ctx context.Context, user string) (setRecord, uint64, error) {
	it, err := f.kv.Get(ctx, setKey(user))
	if errors.Is(err, store.ErrNotFound) {
		return setRecord{}, 0, fmt.Errorf("recovery: %w", factors.ErrNotEnrolled)
	}
	if err != nil {
		return setRecord{}, 0, fmt.Errorf("recovery: load codes: %w", err)
	}
	var rec setRecord
	if err := json.Unmarshal(it.Value, &rec); err != nil {
		return setRecord{}, 0, fmt.Errorf("recovery: decode codes: %w", err)
	}
	if rec.V != recordVersion {
		return setRecord{}, 0, fmt.Errorf("recovery: codes record of unknown schema version %d", rec.V)
	}
	return rec, it.Version, nil
}

// save writes rec if the stored version is still ver (store.ErrConflict
// otherwise).
func (f *Factor) save(ctx context.Context, user string, rec setRecord, ver uint64) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("recovery: encode codes: %w", err)
	}
	_, err = f.kv.CompareAndSet(ctx, setKey(user), b, ver, durable())
	return err
}

// newID returns a random 128-bit identifier for a set, URL-safe. Each set
// has its own, so Remove with the id of a replaced set removes nothing.
func newID() string {
	b := make([]byte, 16)
	// crypto/rand.Read never returns short: it panics on a broken system.
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// checkUser refuses an empty user, which would otherwise address a key
// shared by nobody in particular.
func checkUser(user string) error {
	if user == "" {
		return errors.New("recovery: no user given")
	}
	return nil
}

// Interface guards.
var (
	_ factors.Registry = (*Factor)(nil)
	_ KV               = (store.KV)(nil)
)
