package badgerstore

import (
	"context"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/keygate/keygate/authn/store"
)

// ConsumeAndSet consumes take (while its version is takeVer) and
// compare-and-sets key in one Badger transaction, with one sync for both
// (see store.ConsumeSetter). Both keys are read in the transaction, so a
// concurrent writer of either makes the commit lose a Badger conflict; the
// retry re-reads and decides again, as write does for one key.
func (s *Store) ConsumeAndSet(ctx context.Context, take string, takeVer uint64, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error) {
	if take == key {
		return 0, errors.New("badgerstore: consume-and-set: the consumed key and the written key are one key; they must differ")
	}
	if err := s.enter(ctx); err != nil {
		return 0, err
	}
	defer s.leave()
	unlock := s.lockTwo(take, key)
	defer unlock()
	for range maxRetries {
		var (
			takeSeq, ver uint64
			removal, set *store.Change
		)
		err := s.db.Update(func(txn *badger.Txn) error {
			// The removal's number first: the feed reports the removal,
			// then the write, both committed at once.
			var err error
			if takeSeq, err = s.nextVersion(); err != nil {
				return err
			}
			if ver, err = s.nextVersion(); err != nil {
				return err
			}
			cur, err := getItem(txn, take)
			switch {
			case errors.Is(err, store.ErrNotFound):
				return store.ErrNotFound
			case err != nil:
				return err
			case cur.Version != takeVer:
				return store.ErrNotFound // written again: not the value read
			}
			old, err := getItem(txn, key)
			switch {
			case errors.Is(err, store.ErrNotFound):
				if prev != 0 {
					return store.ErrConflict
				}
			case err != nil:
				return err
			case old.Version != prev:
				return store.ErrConflict
			}
			if err := txn.Delete(dataKey(take)); err != nil {
				return err
			}
			e := newEntry(key, value, ver, opt.TTL)
			if err := txn.SetEntry(e); err != nil {
				return err
			}
			removal, set = deletionOf(take, takeSeq), changeOf(key, value, ver, e.ExpiresAt)
			return nil
		})
		// Every number taken is resolved in the feed, as write does: with
		// its change once committed, as abandoned otherwise.
		if err != nil {
			removal, set = nil, nil
		}
		if takeSeq != 0 {
			s.feed.resolve(takeSeq, removal)
		}
		if ver != 0 {
			s.feed.resolve(ver, set)
		}
		if errors.Is(err, badger.ErrConflict) {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("badgerstore: consume-and-set: %w", err)
		}
		// One sync makes both durable: the consumed value must not come
		// back after a crash, the record must not go.
		if err := s.sync("consume-and-set"); err != nil {
			return 0, err
		}
		return ver, nil
	}
	return 0, fmt.Errorf("badgerstore: consume-and-set: %w", store.ErrConflict)
}

// lockTwo takes the key locks of two keys (see write) in stripe order, so
// that two such writers cannot deadlock, and returns their release.
func (s *Store) lockTwo(a, b string) (unlock func()) {
	i, j := keyStripe(a), keyStripe(b)
	if i == j {
		s.keyLocks[i].Lock()
		return s.keyLocks[i].Unlock
	}
	if i > j {
		i, j = j, i
	}
	s.keyLocks[i].Lock()
	s.keyLocks[j].Lock()
	return func() {
		s.keyLocks[j].Unlock()
		s.keyLocks[i].Unlock()
	}
}

// Interface guards
var _ store.ConsumeSetter = (*Store)(nil)
