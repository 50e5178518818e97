package recovery

import (
	"context"
	"errors"
	"fmt"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// List returns the user's set as one credential ("Recovery codes", "7 of
// 10 left"), or none. A set with every code used is still listed, with 0
// left, so the user sees it is time for a new one.
func (f *Factor) List(ctx context.Context, user string) ([]factors.Credential, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	rec, _, err := f.load(ctx, user)
	if errors.Is(err, factors.ErrNotEnrolled) {
		return []factors.Credential{}, nil
	}
	if err != nil {
		return nil, err
	}
	return []factors.Credential{{
		ID:         rec.ID,
		Kind:       Kind,
		Name:       credentialName,
		Detail:     fmt.Sprintf("%d of %d left", rec.remaining(), len(rec.Codes)),
		CreatedAt:  rec.CreatedAt,
		LastUsedAt: rec.LastUsedAt,
	}}, nil
}

// Rename returns factors.ErrNotSupported: a user has one set, and its name
// is fixed.
func (f *Factor) Rename(context.Context, string, string, string) error {
	return fmt.Errorf("recovery: rename: %w", factors.ErrNotSupported)
}

// Remove deletes the set if id is its id (factors.ErrNotFound otherwise:
// an id of a replaced set removes nothing).
func (f *Factor) Remove(ctx context.Context, user, id string) error {
	if err := checkUser(user); err != nil {
		return err
	}
	n, err := f.remove(ctx, user, id)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("recovery: %w", factors.ErrNotFound)
	}
	return nil
}

// RemoveAll deletes the user's set and returns 1, or 0 if there was none.
func (f *Factor) RemoveAll(ctx context.Context, user string) (int, error) {
	if err := checkUser(user); err != nil {
		return 0, err
	}
	return f.remove(ctx, user, "")
}

// remove deletes the set (only if its id is id, unless id is empty) with a
// compare-and-delete, so a set generated meanwhile is not removed unseen.
func (f *Factor) remove(ctx context.Context, user, id string) (int, error) {
	for range maxCASRetries {
		rec, ver, err := f.load(ctx, user)
		if errors.Is(err, factors.ErrNotEnrolled) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		if id != "" && rec.ID != id {
			return 0, nil
		}
		err = f.kv.CompareAndDelete(ctx, setKey(user), ver)
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("recovery: delete codes: %w", err)
		}
		return 1, nil
	}
	return 0, fmt.Errorf("recovery: delete codes: gave up after %d concurrent writes: %w", maxCASRetries, store.ErrConflict)
}
