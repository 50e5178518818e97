package webauthn

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
)

// countingKV is a real Badger store that names each write made through it.
type countingKV struct {
	*badgerstore.Store
	mu     sync.Mutex
	writes []string
}

func (c *countingKV) note(op string) {
	c.mu.Lock()
	c.writes = append(c.writes, op)
	c.mu.Unlock()
}

func (c *countingKV) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.writes
	c.writes = nil
	return w
}

func (c *countingKV) CompareAndSet(ctx context.Context, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error) {
	c.note("compare-and-set")
	return c.Store.CompareAndSet(ctx, key, value, prev, opt)
}

func (c *countingKV) CompareAndDelete(ctx context.Context, key string, prev uint64) error {
	c.note("compare-and-delete")
	return c.Store.CompareAndDelete(ctx, key, prev)
}

func (c *countingKV) Consume(ctx context.Context, key string) ([]byte, error) {
	c.note("consume")
	return c.Store.Consume(ctx, key)
}

func (c *countingKV) ConsumeAndSet(ctx context.Context, take string, takeVer uint64, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error) {
	c.note("consume-and-set")
	return c.Store.ConsumeAndSet(ctx, take, takeVer, key, value, prev, opt)
}

// plainKV hides the store's ConsumeSetter: the factor then takes the
// ceremony first and writes the counter second, as before the capability.
type plainKV struct{ KV }

// An accepted sign-in (second factor or passkey) is one write: the
// ceremony consumed and the counter written together. A refused one
// consumes the ceremony alone and leaves the record as it was; either way
// the ceremony is gone.
func TestFinishIsOneDurableWrite(t *testing.T) {
	kv := &countingKV{Store: openStore(t)}
	origin := "https://app.example.test"
	f, err := New(kv, Options{RPID: "localhost", Origins: []string{origin}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{kv: kv.Store, f: f, origin: origin}
	k := newSoftKey(t, origin)
	softEnrol(t, f, "alice", k, "")

	opts, id, _ := f.BeginLogin(ctx, "alice")
	kv.take()
	if _, err := f.FinishLogin(ctx, "alice", id, k.get(opts)); err != nil {
		t.Fatal(err)
	}
	if w := kv.take(); !slices.Equal(w, []string{"consume-and-set"}) {
		t.Errorf("accepted sign-in wrote %q, want one consume-and-set", w)
	}
	if r, _ := e.record(t, "alice"); r.Creds[0].SignCount != k.counter {
		t.Errorf("counter %d, want %d", r.Creds[0].SignCount, k.counter)
	}
	if _, err := kv.Get(ctx, ceremonyKey(id)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ceremony after the sign-in: %v, want gone", err)
	}

	opts, id, _ = f.BeginPasskey(ctx)
	kv.take()
	if user, _, err := f.FinishPasskey(ctx, id, k.get(opts)); err != nil || user != "alice" {
		t.Fatalf("passkey: %q, %v", user, err)
	}
	if w := kv.take(); !slices.Equal(w, []string{"consume-and-set"}) {
		t.Errorf("accepted passkey sign-in wrote %q, want one consume-and-set", w)
	}

	// Refused: an answer to another challenge. The ceremony is consumed
	// (compare-and-delete by the version read), the record untouched, and
	// the right answer afterwards finds no ceremony.
	_, before := e.record(t, "alice")
	opts, id, _ = f.BeginLogin(ctx, "alice")
	other, _, _ := f.BeginLogin(ctx, "alice")
	kv.take()
	k.counter++
	if _, err := f.FinishLogin(ctx, "alice", id, k.sign(challengeOf(t, other))); err == nil {
		t.Fatal("an answer to another challenge was accepted")
	}
	if w := kv.take(); !slices.Equal(w, []string{"compare-and-delete"}) {
		t.Errorf("refused sign-in wrote %q, want the ceremony's compare-and-delete only", w)
	}
	e.unchanged(t, "alice", before)
	if _, err := f.FinishLogin(ctx, "alice", id, k.get(opts)); !errors.Is(err, ErrCeremony) {
		t.Errorf("the right answer after a refusal: %v, want ErrCeremony", err)
	}
	e.unchanged(t, "alice", before)
}

// Without the capability the finish takes the ceremony first, as it did:
// one winner of concurrent finishes, refusals still spend the ceremony,
// and the counter is written.
func TestFinishWithoutConsumeSetter(t *testing.T) {
	origin := "https://app.example.test"
	kv := openStore(t)
	f, err := New(plainKV{kv}, Options{RPID: "localhost", Origins: []string{origin}})
	if err != nil {
		t.Fatal(err)
	}
	if f.cs != nil {
		t.Fatal("plainKV still offers ConsumeAndSet")
	}
	k := newSoftKey(t, origin)
	softEnrol(t, f, "alice", k, "")
	testOneWinner(t, &env{kv: kv, f: f, origin: origin}, k)
	opts, id, _ := f.BeginLogin(ctx, "alice")
	other, _, _ := f.BeginLogin(ctx, "alice")
	k.counter++
	if _, err := f.FinishLogin(ctx, "alice", id, k.sign(challengeOf(t, other))); err == nil {
		t.Fatal("an answer to another challenge was accepted")
	}
	if _, err := f.FinishLogin(ctx, "alice", id, k.get(opts)); !errors.Is(err, ErrCeremony) {
		t.Errorf("the right answer after a refusal: %v, want ErrCeremony", err)
	}
}

// Of concurrent finishes of one ceremony, on the one-write path, exactly
// one is accepted and every other is ErrCeremony (not a clone warning: a
// loser writes nothing).
func TestConcurrentFinishOneWrite(t *testing.T) {
	e := softEnv(t, nil)
	if e.f.cs == nil {
		t.Fatal("Badger store without ConsumeAndSet")
	}
	k := newSoftKey(t, e.origin)
	softEnrol(t, e.f, "alice", k, "")
	testOneWinner(t, e, k)
}

func testOneWinner(t *testing.T, e *env, k *softKey) {
	t.Helper()
	opts, id, _ := e.f.BeginLogin(ctx, "alice")
	resp := k.get(opts)
	errs := make([]error, 12)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { _, errs[i] = e.f.FinishLogin(ctx, "alice", id, resp) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrCeremony):
			t.Errorf("a losing finish: %v, want ErrCeremony", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d finishes of one ceremony accepted: %v", won, errs)
	}
	if r, _ := e.record(t, "alice"); r.Creds[0].SignCount != k.counter || r.Creds[0].CloneWarnings != 0 {
		t.Errorf("counter %d (want %d), clone warnings %d (want 0)", r.Creds[0].SignCount, k.counter, r.Creds[0].CloneWarnings)
	}
}
