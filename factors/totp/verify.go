package totp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// Verify checks code against every app of user. A wrong code is ok=false
// with no error. A code right for a time step at or before the last one
// accepted for that app (the same code again, or an older code once a newer
// one was used) is ok=false with an error wrapping factors.ErrReplayed;
// credentialID then names the app, for the audit log. A user without apps
// gets factors.ErrNotEnrolled.
//
// Each time step is accepted at most once per app, even across concurrent
// requests and processes: the accepted step is stored with a durable
// compare-and-swap on the user's record, and of two requests racing with
// the same code the loser re-reads, sees the step taken and is refused.
// Steps only move forward, so a code stolen over a shoulder is worthless
// once the user has signed in with the same or a later one.
func (f *Factor) Verify(ctx context.Context, user, code string) (credentialID string, ok bool, err error) {
	if err := checkUser(user); err != nil {
		return "", false, err
	}
	for range maxCASRetries {
		rec, ver, err := f.load(ctx, user)
		if err != nil {
			return "", false, err
		}
		if len(rec.Creds) == 0 {
			return "", false, fmt.Errorf("totp: %w", factors.ErrNotEnrolled)
		}
		now := f.now()
		hit, replayed := -1, -1
		var step uint64
		// Every app is checked even after a hit, so the time taken does not
		// depend on which app the code belongs to.
		for i := range rec.Creds {
			m, err := f.checkCred(user, &rec.Creds[i], code, now)
			if err != nil {
				return "", false, err
			}
			if m.fresh && hit < 0 {
				hit, step = i, m.step
			}
			if m.stale && replayed < 0 {
				replayed = i
			}
		}
		if hit < 0 {
			if replayed >= 0 {
				return rec.Creds[replayed].ID, false, fmt.Errorf("totp: time step already used: %w", factors.ErrReplayed)
			}
			return "", false, nil
		}
		c := &rec.Creds[hit]
		c.LastStep, c.LastUsedAt = step, now
		err = f.save(ctx, user, rec, ver)
		if errors.Is(err, store.ErrConflict) {
			// Another request (maybe with this very code) or a rename
			// wrote first: decide again on what it wrote.
			continue
		}
		if err != nil {
			return "", false, fmt.Errorf("totp: record used time step: %w", err)
		}
		return c.ID, true, nil
	}
	return "", false, fmt.Errorf("totp: record used time step: gave up after %d concurrent writes: %w", maxCASRetries, store.ErrConflict)
}

// checkCred opens one credential's secret and checks code against it.
func (f *Factor) checkCred(user string, c *credRecord, code string, now time.Time) (match, error) {
	p, err := c.params()
	if err != nil {
		return match{}, err
	}
	secret, err := f.secrets.Open(c.Sealed, aad(user, c.ID))
	if err != nil {
		return match{}, fmt.Errorf("totp: open secret of credential %s: %w", c.ID, err)
	}
	m := check(secret, p, code, now, f.skew, c.LastStep)
	clear(secret)
	return m, nil
}
