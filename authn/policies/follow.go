package policies

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/policy"
)

// Follow backoff bounds: how long the follower waits before trying again
// when the store fails (a database restarting). Short at first, so that a
// blip costs a second of staleness, and capped, so that a long outage is
// noticed within half a minute of its end.
const (
	followRetryMin = 250 * time.Millisecond
	followRetryMax = 30 * time.Second
	followPage     = 64
)

// Follow keeps this replica's holder on the version in force in the store
// until ctx ends (it returns ctx's error) or the store closes
// (store.ErrClosed). Run it in its own goroutine after Load.
//
// The replica that saves a version puts it in force at once (Update,
// Rollback); every other replica learns of it here, from the feed of
// changes to policy/head: it compiles the version with this store's
// CompileOptions, swaps the holder and tells Events, so that the metrics,
// readiness and admin pages of every replica name the same version. The
// feed also reports this replica's own saves; a version not newer than the
// one held is old news and ignored, so a late report never undoes a newer
// save.
//
// A version that does not compile here (this replica registers other
// second-factor kinds than the one that saved it) is logged and not put
// in force: the running version stays, as it would after a failed local
// save. When the feed no longer holds the changes the follower needs
// (store.ErrGap, after a long outage), it reads head again and continues
// from there. Other errors of the store are logged and retried with a
// backoff; they never stop the follower.
func (ps *Store) Follow(ctx context.Context, feed store.Feed) error {
	retry := followRetryMin
	// fail logs err and sleeps the backoff; it reports whether to stop.
	fail := func(what string, err error) (bool, error) {
		if stop, serr := followStops(ctx, err); stop {
			return true, serr
		}
		ps.log.Warn("policy follower: "+what+"; retrying", "err", err, "retry_in", retry)
		t := time.NewTimer(retry)
		defer t.Stop()
		retry = min(retry*2, followRetryMax)
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-t.C:
			return false, nil
		}
	}
	var cur uint64
	synced := false
	for {
		if !synced {
			// Head before the read, as the feed contract asks: changes
			// after head may already be in what refresh reads, and
			// applying them again is harmless (not newer: ignored).
			head, err := feed.Head(ctx)
			if err != nil {
				if stop, serr := fail("read the feed head", err); stop {
					return serr
				}
				continue
			}
			if err := ps.refresh(ctx); err != nil {
				if stop, serr := fail("read the current policy", err); stop {
					return serr
				}
				continue
			}
			cur, synced = head, true
		}
		chs, next, err := feed.Changes(ctx, policyHeadKey, cur, followPage)
		if errors.Is(err, store.ErrGap) {
			ps.log.Warn("policy follower: the feed no longer holds the changes after the last one seen; reading the current policy again", "after", cur)
			synced = false
			continue
		}
		if err != nil {
			if stop, serr := fail("read policy changes", err); stop {
				return serr
			}
			continue
		}
		retry = followRetryMin
		ps.applyChanges(chs)
		cur = next
		if len(chs) == followPage {
			continue // a full page: more may follow at once
		}
		if _, err := feed.Wait(ctx, cur); err != nil {
			if stop, serr := fail("wait for changes", err); stop {
				return serr
			}
		}
	}
}

// followStops says whether err ends the follower: ctx is done or the store
// closed. Anything else (a connection lost) is worth a retry.
func followStops(ctx context.Context, err error) (bool, error) {
	if ctx.Err() != nil {
		return true, ctx.Err()
	}
	if errors.Is(err, store.ErrClosed) {
		return true, err
	}
	return false, nil
}

// applyChanges adopts the newest head a page of changes reports. Earlier
// heads in the same page are superseded by it (head is one key, each
// change a whole record), so compiling them would be wasted work.
func (ps *Store) applyChanges(chs []store.Change) {
	for i := len(chs) - 1; i >= 0; i-- {
		ch := chs[i]
		if ch.Key != policyHeadKey {
			continue // the prefix also matches keys that merely start with it
		}
		if ch.Deleted {
			// Nothing keygate does removes head; keep the version in
			// force rather than serve without a policy.
			ps.log.Error("policy follower: the current policy was removed from the store; the version in force stays")
			return
		}
		rec, err := decodePolicyRecord(ch.Value)
		if err != nil {
			ps.log.Error("policy follower: unreadable policy record; the version in force stays", "err", err)
			return
		}
		ps.adopt(rec)
		return
	}
}

// refresh reads head from the store and adopts it.
func (ps *Store) refresh(ctx context.Context) error {
	rec, _, err := ps.head(ctx)
	if errors.Is(err, ErrNoPolicy) {
		return nil // nothing stored yet: Load stores version 1
	}
	if err != nil {
		return err
	}
	ps.adopt(rec)
	return nil
}

// adopt puts rec in force if it is newer than the version held and
// compiles here.
func (ps *Store) adopt(rec policyRecord) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if int64(rec.Version) <= ps.held.Load() || rec.Version == ps.refused {
		return
	}
	compiled, err := ps.compileRecord(rec)
	if err != nil {
		ps.refused = rec.Version
		ps.log.Error("policy version saved on another replica does not compile here; the version in force stays",
			"version", rec.Version, "in_force", ps.held.Load(), "author", rec.Author, "err", err)
		return
	}
	ps.holder.Store(compiled)
	ps.inForce(rec.Version)
	ps.log.Info("policy version in force (saved on another replica)", "version", rec.Version, "author", rec.Author)
}

// compileRecord parses and compiles a stored version. Only Compile decides,
// as at Load: the version passed the guard where it was saved.
func (ps *Store) compileRecord(rec policyRecord) (*policy.Compiled, error) {
	v, err := rec.version()
	if err != nil {
		return nil, err
	}
	compiled, err := policy.CompileWith(v.Policy, ps.compile)
	if err != nil {
		return nil, fmt.Errorf("policy version %d: %w", rec.Version, err)
	}
	return compiled, nil
}

// InForce is the number of the version this replica's holder has in force
// (0 before Load), for readiness and status pages: after a save elsewhere
// it is the saved version once the follower has put it in force.
func (ps *Store) InForce() int { return int(ps.held.Load()) }
