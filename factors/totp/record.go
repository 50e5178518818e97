package totp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/keygate/keygate/authn/store"
)

// Key layout. All apps of a user live in one record so that a single
// compare-and-swap keeps names unique, makes RemoveAll atomic and advances
// a credential's last step; a user has a handful of apps, so the record is
// small. Users and ids are path-escaped, so a '/' in either can never reach
// into another user's keys.
const (
	credPrefix    = "totp/cred/"
	pendingPrefix = "totp/pending/"
)

func credKey(user string) string { return credPrefix + url.PathEscape(user) }

func pendingUserPrefix(user string) string { return pendingPrefix + url.PathEscape(user) + "/" }

func pendingKey(user, id string) string { return pendingUserPrefix(user) + url.PathEscape(id) }

// aad binds a sealed secret to its user and credential:
// "totp/<user>/<credential id>". The user is escaped like in keys, so no
// user and id pair can spell another pair's binding.
func aad(user, id string) []byte { return []byte("totp/" + url.PathEscape(user) + "/" + id) }

// durable is how credential writes are made: an accepted time step must
// stay accepted after a crash, or the code could be replayed.
func durable() store.WriteOptions { return store.WriteOptions{Durable: true} }

// userRecord is the stored form of a user's apps (see codec.go for its
// encoding).
type userRecord struct {
	Creds []credRecord
}

// recordVersion is the schema version of the stored records.
const recordVersion = 1

type credRecord struct {
	ID        string
	Name      string
	Algorithm string // "SHA1", "SHA256", "SHA512"
	Digits    int
	Period    uint
	// Sealed is the raw secret sealed with aad(user, ID).
	Sealed []byte
	// LastStep is the last time step accepted (enrolment included); only
	// newer steps are accepted.
	LastStep   uint64
	CreatedAt  time.Time
	LastUsedAt time.Time // zero: never used
}

// pendingRecord is a begun enrolment. Its id becomes the credential's id,
// so the secret is sealed once, for its final row.
type pendingRecord struct {
	V         int       `json:"v"`
	Algorithm string    `json:"alg"`
	Digits    int       `json:"digits"`
	Period    uint      `json:"period"`
	Sealed    []byte    `json:"sealed"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (c *credRecord) params() (params, error) {
	alg, ok := parseAlgorithm(c.Algorithm)
	if !ok || (c.Digits != 6 && c.Digits != 8) || c.Period == 0 {
		return params{}, fmt.Errorf("totp: credential %s has bad parameters", c.ID)
	}
	return params{alg: alg, digits: c.Digits, period: c.Period}, nil
}

func (p *pendingRecord) params() (params, error) {
	c := credRecord{Algorithm: p.Algorithm, Digits: p.Digits, Period: p.Period}
	return c.params()
}

// load reads the user's record; a user without one has an empty record at
// version 0, which CompareAndSet reads as "create".
func (f *Factor) load(ctx context.Context, user string) (userRecord, uint64, error) {
	it, err := f.kv.Get(ctx, credKey(user))
	if errors.Is(err, store.ErrNotFound) {
		return userRecord{}, 0, nil
	}
	if err != nil {
		return userRecord{}, 0, fmt.Errorf("totp: load credentials: %w", err)
	}
	rec, err := decodeRecord(it.Value)
	if err != nil {
		return userRecord{}, 0, err
	}
	return rec, it.Version, nil
}

// save writes rec if the stored version is still ver; an empty record is
// deleted instead. Errors wrap store.ErrConflict when someone wrote first.
func (f *Factor) save(ctx context.Context, user string, rec userRecord, ver uint64) error {
	if len(rec.Creds) == 0 {
		if ver == 0 {
			return nil
		}
		err := f.kv.CompareAndDelete(ctx, credKey(user), ver)
		if errors.Is(err, store.ErrNotFound) {
			// Someone else removed it since we read it: decide again on
			// fresh data like any other lost race.
			return fmt.Errorf("%w: %w", store.ErrConflict, err)
		}
		return err
	}
	_, err := f.kv.CompareAndSet(ctx, credKey(user), encodeRecord(rec), ver, durable())
	return err
}

// update runs fn on the user's record and saves the result, retrying when
// another writer got in first. fn sees fresh data on every attempt.
func (f *Factor) update(ctx context.Context, user string, fn func(*userRecord) error) error {
	for range maxCASRetries {
		rec, ver, err := f.load(ctx, user)
		if err != nil {
			return err
		}
		if err := fn(&rec); err != nil {
			return err
		}
		err = f.save(ctx, user, rec, ver)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("totp: save credentials: %w", err)
		}
		return nil
	}
	return fmt.Errorf("totp: save credentials: gave up after %d concurrent writes: %w", maxCASRetries, store.ErrConflict)
}

// newID returns a random 128-bit identifier, URL-safe.
func newID() string { return base64.RawURLEncoding.EncodeToString(randomBytes(16)) }

// randomBytes never fails: crypto/rand.Read panics rather than return short
// on a broken system.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// index returns the position of credential id, or -1.
func (r *userRecord) index(id string) int {
	for i := range r.Creds {
		if r.Creds[i].ID == id {
			return i
		}
	}
	return -1
}
