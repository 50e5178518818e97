package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
)

// TestFeedHoldsBackOutOfOrderCommits: a write that took a lower number but
// commits later holds back the higher ones, so a follower never sees a
// lower Seq after a higher one.
func TestFeedHoldsBackOutOfOrderCommits(t *testing.T) {
	s := mustOpen(t, t.TempDir(), nil)
	defer s.Close()
	ctx := t.Context()
	h0 := mustHeadOf(t, s)

	held := make(chan uint64)
	release := make(chan struct{})
	var calls atomic.Int32
	s.feed.beforePublish = func(seq uint64) {
		if calls.Add(1) == 1 {
			held <- seq
			<-release
		}
	}
	aDone := make(chan error, 1)
	go func() {
		_, err := s.Set(ctx, "a", []byte("first number"), store.WriteOptions{})
		aDone <- err
	}()
	seqA := <-held
	vb, err := s.Set(ctx, "b", []byte("second number"), store.WriteOptions{})
	if err != nil {
		t.Fatalf("Set(b): %v", err)
	}
	if vb <= seqA {
		t.Fatalf("b got version %d, not above a's %d", vb, seqA)
	}
	// b is committed and readable, but not in the feed while a is held.
	if _, err := s.Get(ctx, "b"); err != nil {
		t.Fatalf("Get(b): %v", err)
	}
	if h := mustHeadOf(t, s); h >= seqA {
		t.Errorf("Head = %d while %d is not committed, want < %d", h, seqA, seqA)
	}
	if chs, _, err := s.Changes(ctx, "", h0, 0); err != nil || len(chs) != 0 {
		t.Errorf("Changes while a lower number is held = %v, %v; want none", chs, err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.Wait(short, h0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait while a lower number is held: %v, want DeadlineExceeded", err)
	}

	close(release)
	if err := <-aDone; err != nil {
		t.Fatalf("Set(a): %v", err)
	}
	chs, next, err := s.Changes(ctx, "", h0, 0)
	if err != nil {
		t.Fatalf("Changes: %v", err)
	}
	if len(chs) != 2 || chs[0].Key != "a" || chs[0].Seq != seqA || chs[1].Key != "b" || chs[1].Seq != vb || next != vb {
		t.Errorf("Changes after release = %+v, next %d; want a (%d) then b (%d)", chs, next, seqA, vb)
	}
}

// TestFeedSameKeyCommitOrder: racing writes of one key reach the feed in
// the order they committed, so the feed's last word on the key is what the
// store holds.
func TestFeedSameKeyCommitOrder(t *testing.T) {
	s := mustOpen(t, t.TempDir(), nil)
	defer s.Close()
	ctx := t.Context()
	for round := range 20 {
		h := mustHeadOf(t, s)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				if _, err := s.Set(ctx, "k", fmt.Appendf(nil, "%d/%d", round, w), store.WriteOptions{}); err != nil {
					t.Errorf("Set: %v", err)
				}
			})
		}
		wg.Wait()
		chs, _, err := s.Changes(ctx, "k", h, 0)
		if err != nil || len(chs) != 8 {
			t.Fatalf("round %d: Changes = %d changes, %v; want 8", round, len(chs), err)
		}
		it, err := s.Get(ctx, "k")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if last := chs[len(chs)-1]; last.Version != it.Version || !bytes.Equal(last.Value, it.Value) {
			t.Fatalf("round %d: feed ends with %q v%d, the store holds %q v%d", round, last.Value, last.Version, it.Value, it.Version)
		}
	}
}

// TestFeedAfterReopen: the feed starts empty at Open, at a head above every
// version of the previous run, so a follower from that run gets ErrGap.
func TestFeedAfterReopen(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, nil)
	v := mustSetT(t, s, "k", "v")
	old := mustHeadOf(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, nil)
	defer s.Close()
	ctx := t.Context()
	h := mustHeadOf(t, s)
	if h < v || h < old {
		t.Fatalf("Head after reopen = %d, want >= %d", h, max(v, old))
	}
	if _, _, err := s.Changes(ctx, "", old-1, 0); !errors.Is(err, store.ErrGap) {
		t.Errorf("Changes from the previous run: %v, want ErrGap", err)
	}
	v2 := mustSetT(t, s, "k", "w")
	chs, _, err := s.Changes(ctx, "", h, 0)
	if err != nil || len(chs) != 1 || chs[0].Version != v2 || v2 <= h {
		t.Errorf("Changes after reopen = %+v, %v; want k v%d (> head %d)", chs, err, v2, h)
	}
}

// TestFeedBytesBound: big values are evicted by bytes before the count
// bound, and the newest change stays however big it is.
func TestFeedBytesBound(t *testing.T) {
	s, err := Open(Options{Path: t.TempDir(), FeedBytes: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	h0 := mustHeadOf(t, s)
	val := bytes.Repeat([]byte("x"), 1<<10)
	for i := range 100 {
		mustSetT(t, s, fmt.Sprintf("k%d", i), string(val))
	}
	huge := mustSetT(t, s, "huge", string(bytes.Repeat([]byte("y"), 64<<10)))
	s.feed.mu.Lock()
	n, size := len(s.feed.ring)-s.feed.start, s.feed.bytes
	s.feed.mu.Unlock()
	if n != 1 || size < 64<<10 {
		t.Errorf("feed keeps %d changes, %d bytes; want only the huge newest one", n, size)
	}
	if _, _, err := s.Changes(ctx, "", h0, 0); !errors.Is(err, store.ErrGap) {
		t.Errorf("Changes from the start: %v, want ErrGap", err)
	}
	chs, _, err := s.Changes(ctx, "", huge-1, 0)
	if err != nil || len(chs) != 1 || chs[0].Key != "huge" {
		t.Errorf("Changes(newest) = %d changes, %v; want huge", len(chs), err)
	}
}

func mustHeadOf(t *testing.T, s *Store) uint64 {
	t.Helper()
	h, err := s.Head(context.Background())
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return h
}

func mustSetT(t *testing.T, s *Store, key, value string) uint64 {
	t.Helper()
	v, err := s.Set(context.Background(), key, []byte(value), store.WriteOptions{})
	if err != nil {
		t.Fatalf("Set(%s): %v", key, err)
	}
	return v
}

// BenchmarkFeedResolve is the feed's share of a write: recording a
// committed change of a session-sized value (the copy is changeOf's).
func BenchmarkFeedResolve(b *testing.B) {
	f := newFeed(1, 0, 0)
	value := bytes.Repeat([]byte("x"), 256)
	seq := uint64(1)
	b.ReportAllocs()
	for b.Loop() {
		f.resolve(seq, changeOf("session/0123456789abcdef", value, seq, 0))
		seq++
	}
}
