package totp

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// List returns the user's apps in the order they were enrolled (none: an
// empty list, no error).
func (f *Factor) List(ctx context.Context, user string) ([]factors.Credential, error) {
	if err := checkUser(user); err != nil {
		return nil, err
	}
	rec, _, err := f.load(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]factors.Credential, 0, len(rec.Creds))
	for i := range rec.Creds {
		out = append(out, rec.Creds[i].public())
	}
	return out, nil
}

// Rename gives app id a new name, unique among the user's apps (compared
// without regard to case, so "Phone" and "phone" cannot both be listed).
func (f *Factor) Rename(ctx context.Context, user, id, name string) error {
	if err := checkUser(user); err != nil {
		return err
	}
	name, err := cleanName(name)
	if err != nil {
		return err
	}
	return f.update(ctx, user, func(rec *userRecord) error {
		i := rec.index(id)
		if i < 0 {
			return fmt.Errorf("totp: %w", factors.ErrNotFound)
		}
		if rec.nameTaken(name, id) {
			return fmt.Errorf("totp: %q: %w", name, factors.ErrNameTaken)
		}
		rec.Creds[i].Name = name
		return nil
	})
}

// Remove deletes app id; its codes stop working at once.
func (f *Factor) Remove(ctx context.Context, user, id string) error {
	if err := checkUser(user); err != nil {
		return err
	}
	return f.update(ctx, user, func(rec *userRecord) error {
		i := rec.index(id)
		if i < 0 {
			return fmt.Errorf("totp: %w", factors.ErrNotFound)
		}
		rec.Creds = append(rec.Creds[:i], rec.Creds[i+1:]...)
		return nil
	})
}

// RemoveAll deletes every app of the user and any enrolment they left
// pending (an admin reset must not leave a half-enrolled secret that could
// still be finished), and returns how many apps were removed.
func (f *Factor) RemoveAll(ctx context.Context, user string) (int, error) {
	if err := checkUser(user); err != nil {
		return 0, err
	}
	var n int
	err := f.update(ctx, user, func(rec *userRecord) error {
		n = len(rec.Creds)
		rec.Creds = nil
		return nil
	})
	if err != nil {
		return 0, err
	}
	var pending []string
	err = f.kv.Scan(ctx, pendingUserPrefix(user), func(it store.Item) error {
		pending = append(pending, it.Key)
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("totp: list pending enrolments: %w", err)
	}
	for _, k := range pending {
		if err := f.kv.Delete(ctx, k); err != nil {
			return n, fmt.Errorf("totp: delete pending enrolment: %w", err)
		}
	}
	return n, nil
}

// public is the credential as people and admins see it.
func (c *credRecord) public() factors.Credential {
	return factors.Credential{
		ID:         c.ID,
		Kind:       Kind,
		Name:       c.Name,
		CreatedAt:  c.CreatedAt,
		LastUsedAt: c.LastUsedAt,
	}
}

// nameTaken reports whether another credential than except has name.
func (r *userRecord) nameTaken(name, except string) bool {
	for i := range r.Creds {
		if r.Creds[i].ID != except && strings.EqualFold(r.Creds[i].Name, name) {
			return true
		}
	}
	return false
}

// cleanName checks a name with the rules every factor shares.
func cleanName(name string) (string, error) {
	n, err := factors.CleanName(name)
	if err != nil {
		return "", fmt.Errorf("totp: %w", err)
	}
	return n, nil
}

// checkUser refuses an empty user, which would otherwise address keys
// shared by nobody in particular.
func checkUser(user string) error {
	if user == "" {
		return errors.New("totp: no user given")
	}
	return nil
}
