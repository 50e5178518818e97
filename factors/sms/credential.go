package sms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sentcode"
)

// credKey holds a user's one number. Codes and send logs live under
// "sms/code/" and "sms/sends/" (the engine's).
func credKey(user string) string { return "sms/cred/" + user }

// credAAD binds a sealed number to its user and credential: copied onto
// another account's record, or into another credential, it does not open.
func credAAD(user, id string) string { return "sms/" + user + "/" + id }

// enrollAAD binds the number kept with a confirmation code to the user and
// the enrolment.
func enrollAAD(user, id string) string { return "sms/enroll/" + user + "/" + id }

const credFormat = 1

// maxCASAttempts bounds the read–modify–compare-and-set loops: each lost
// round means another writer made progress; the bound only stops a
// livelock.
const maxCASAttempts = 64

// credRecord is a stored number. The number is sealed; the masked form is
// kept beside it for lists and the chooser, which then need no key.
type credRecord struct {
	Format     int       `json:"f"`
	ID         string    `json:"i"`
	Name       string    `json:"n"`
	Phone      []byte    `json:"p"`
	Masked     string    `json:"m"`
	CreatedAt  time.Time `json:"c"`
	LastUsedAt time.Time `json:"l,omitzero"`
}

func (r credRecord) public() factors.Credential {
	return factors.Credential{ID: r.ID, Kind: Kind, Name: r.Name, Detail: r.Masked, CreatedAt: r.CreatedAt, LastUsedAt: r.LastUsedAt}
}

// load reads the user's number: factors.ErrNotEnrolled when there is none.
func (f *Factor) load(ctx context.Context, user string) (credRecord, store.Item, error) {
	if user == "" {
		return credRecord{}, store.Item{}, errors.New("sms: no user given")
	}
	item, err := f.kv.Get(ctx, credKey(user))
	if errors.Is(err, store.ErrNotFound) {
		return credRecord{}, store.Item{}, fmt.Errorf("sms: %w", factors.ErrNotEnrolled)
	}
	if err != nil {
		return credRecord{}, store.Item{}, fmt.Errorf("sms: read number: %w", err)
	}
	var rec credRecord
	if err := json.Unmarshal(item.Value, &rec); err != nil {
		return credRecord{}, store.Item{}, fmt.Errorf("sms: decode number: %w", err)
	}
	if rec.Format != credFormat || rec.ID == "" || len(rec.Phone) == 0 {
		return credRecord{}, store.Item{}, errors.New("sms: stored number of an unknown format")
	}
	return rec, item, nil
}

// write stores rec over version prev (0: only if there is none).
func (f *Factor) write(ctx context.Context, user string, prev uint64, rec credRecord) error {
	rec.Format = credFormat
	val, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("sms: encode number: %w", err)
	}
	_, err = f.kv.CompareAndSet(ctx, credKey(user), val, prev, store.WriteOptions{Durable: true})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("sms: write number: %w", err)
	}
	return err
}

// AddressInput: enrolment starts from a phone number the person types.
func (f *Factor) AddressInput() string { return "tel" }

var _ factors.AddressEnroller = (*Factor)(nil)

// Enroll texts a confirmation code to the number r.Address (E.164). The
// number is kept, sealed, with the code; nothing is stored as the user's
// until ConfirmEnroll gets the code back. Refusals: factors.ErrBadAddress
// (not E.164), ErrHasNumber, and Begin's (cooldown, cap, send failure).
func (f *Factor) Enroll(ctx context.Context, s factors.Subject, r factors.EnrollRequest) (factors.Enrollment, error) {
	phone, err := ParsePhone(r.Address)
	if err != nil {
		return factors.Enrollment{}, err
	}
	if _, _, err := f.load(ctx, s.Username); err == nil {
		return factors.Enrollment{}, ErrHasNumber
	} else if !errors.Is(err, factors.ErrNotEnrolled) {
		return factors.Enrollment{}, err
	}
	id, err := sentcode.NewID()
	if err != nil {
		return factors.Enrollment{}, fmt.Errorf("sms: %w", err)
	}
	sealed, err := f.secrets.Seal([]byte(phone), []byte(enrollAAD(s.Username, id)))
	if err != nil {
		return factors.Enrollment{}, err
	}
	sent, err := f.eng.Send(ctx, sentcode.Send{
		User: s.Username, Purpose: factors.PurposeVerifyAddress, To: phone, Lang: s.Lang,
		// The code confirms this enrolment's number and no other: a code
		// that reached one phone never confirms a number typed later.
		Ref: id, Keep: sealed,
	})
	if err != nil {
		return factors.Enrollment{}, err
	}
	return factors.Enrollment{ID: id, Sent: &sent, ExpiresAt: sent.ExpiresAt}, nil
}

// ConfirmEnroll stores the number of enrolment id once r.Code is its
// confirmation code, named name ("Phone" when empty). Refusals: the
// code's (factors.ErrWrongResponse, ErrNoChallenge for another or an
// unknown enrolment, ErrExpired, ErrReplayed, ErrTooManyTries),
// factors.ErrInvalidName, ErrHasNumber.
func (f *Factor) ConfirmEnroll(ctx context.Context, s factors.Subject, id string, r factors.Response, name string) (factors.Credential, error) {
	if name == "" {
		name = defaultName
	}
	name, err := factors.CleanName(name)
	if err != nil {
		return factors.Credential{}, fmt.Errorf("sms: %w", err)
	}
	if _, _, err := f.load(ctx, s.Username); err == nil {
		return factors.Credential{}, ErrHasNumber
	} else if !errors.Is(err, factors.ErrNotEnrolled) {
		return factors.Credential{}, err
	}
	if id == "" {
		return factors.Credential{}, fmt.Errorf("sms: no enrolment named: %w", factors.ErrNoChallenge)
	}
	kept, err := f.eng.Check(ctx, s.Username, factors.PurposeVerifyAddress, id, r.Code)
	if err != nil {
		return factors.Credential{}, err
	}
	phone, err := f.openPhone(kept, enrollAAD(s.Username, id))
	if err != nil {
		return factors.Credential{}, err
	}
	credID, err := sentcode.NewID()
	if err != nil {
		return factors.Credential{}, fmt.Errorf("sms: %w", err)
	}
	sealed, err := f.secrets.Seal([]byte(phone), []byte(credAAD(s.Username, credID)))
	if err != nil {
		return factors.Credential{}, err
	}
	rec := credRecord{ID: credID, Name: name, Phone: sealed, Masked: Mask(phone), CreatedAt: f.now()}
	if err := f.write(ctx, s.Username, 0, rec); err != nil {
		if errors.Is(err, store.ErrConflict) {
			// Another enrolment finished first.
			return factors.Credential{}, ErrHasNumber
		}
		return factors.Credential{}, err
	}
	return rec.public(), nil
}

// List returns the user's number, masked (none: an empty list).
func (f *Factor) List(ctx context.Context, user string) ([]factors.Credential, error) {
	rec, _, err := f.load(ctx, user)
	if errors.Is(err, factors.ErrNotEnrolled) {
		return []factors.Credential{}, nil
	}
	if err != nil {
		return nil, err
	}
	return []factors.Credential{rec.public()}, nil
}

// Rename gives the number a new name.
func (f *Factor) Rename(ctx context.Context, user, id, name string) error {
	name, err := factors.CleanName(name)
	if err != nil {
		return fmt.Errorf("sms: %w", err)
	}
	return f.withNumber(ctx, user, id, "rename", func(rec credRecord, version uint64) error {
		rec.Name = name
		return f.write(ctx, user, version, rec)
	})
}

// Remove deletes the number id; its pending codes stop working at once
// (they are bound to it).
func (f *Factor) Remove(ctx context.Context, user, id string) error {
	return f.withNumber(ctx, user, id, "remove", func(_ credRecord, version uint64) error {
		err := f.kv.CompareAndDelete(ctx, credKey(user), version)
		switch {
		case err == nil, errors.Is(err, store.ErrConflict):
			return err
		case errors.Is(err, store.ErrNotFound):
			return nil // removed meanwhile
		}
		return fmt.Errorf("sms: remove number: %w", err)
	})
}

// withNumber runs op on the user's number id as read at version, and again
// on fresh data when a concurrent write (a sign-in noting its time) made op
// lose its compare-and-set. factors.ErrNotFound: no number id.
func (f *Factor) withNumber(ctx context.Context, user, id, what string, op func(rec credRecord, version uint64) error) error {
	for range maxCASAttempts {
		rec, item, err := f.load(ctx, user)
		if errors.Is(err, factors.ErrNotEnrolled) || (err == nil && rec.ID != id) {
			return fmt.Errorf("sms: %w", factors.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := op(rec, item.Version); !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("sms: %s: gave up after %d conflicting writes: %w", what, maxCASAttempts, store.ErrConflict)
}

// RemoveAll deletes the user's number and cancels any enrolment left
// pending (an admin reset must not leave a confirmation code that could
// still add a number), and returns how many numbers were removed.
func (f *Factor) RemoveAll(ctx context.Context, user string) (int, error) {
	if err := f.eng.Cancel(ctx, user, factors.PurposeVerifyAddress); err != nil {
		return 0, err
	}
	rec, _, err := f.load(ctx, user)
	if errors.Is(err, factors.ErrNotEnrolled) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if err := f.Remove(ctx, user, rec.ID); err != nil {
		if errors.Is(err, factors.ErrNotFound) {
			return 0, nil // removed meanwhile
		}
		return 0, err
	}
	return 1, nil
}
