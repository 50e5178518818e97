package totp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// maxNameLen is the longest credential name, in characters.
const maxNameLen = 64

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

// cleanName trims a credential name and checks it: 1 to 64 characters of
// printable text. Names are shown in pages and in the admin's lists, so
// control characters and bidi overrides (which can make a name read as
// another) are refused rather than escaped.
func cleanName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxNameLen ||
		strings.ContainsFunc(name, isUnsafeRune) {
		return "", fmt.Errorf("totp: %w: a name has 1 to %d characters of printable text", factors.ErrInvalidName, maxNameLen)
	}
	return name, nil
}

// isUnsafeRune: control characters and the bidirectional formatting
// characters that can reorder how text is displayed.
func isUnsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)
}

// checkUser refuses an empty user, which would otherwise address keys
// shared by nobody in particular.
func checkUser(user string) error {
	if user == "" {
		return errors.New("totp: no user given")
	}
	return nil
}
