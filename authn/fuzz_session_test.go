package authn

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keygate/keygate/policy"
)

// FuzzSessionLookup: the session ID comes from a cookie anyone can set.
// Whatever it is, the lookup, revocation and rotation paths answer without
// panicking, find nothing but the real session, and change nothing.
func FuzzSessionLookup(f *testing.F) {
	kv := openStore(f, f.TempDir())
	clk := newClock()
	s, err := NewSessions(context.Background(), kv, SessionOptions{Now: clk.Now, Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	real, err := s.Create(context.Background(), User{Username: "alice"}, policy.Proof{Kind: policy.FactorPassword}, Meta{})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		"", real.ID, real.ID[:42], real.ID + "A", strings.Repeat("A", idLen), strings.Repeat("\xff", idLen),
		sessionPrefix + strings.Repeat("0", 64), sessionPrefix + strings.Repeat("g", 64), `{"v":1,"username":"x"}`, `{"v":1,"proofs":null}`,
	} {
		f.Add(seed)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, id string) {
		if id == real.ID {
			if _, ok := s.Lookup(id); !ok {
				t.Fatal("the real session is gone")
			}
			return
		}
		if got, ok := s.Lookup(id); ok {
			t.Fatalf("%q found %+v", id, got)
		}
		if err := s.Revoke(ctx, id); !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("revoke %q: %v", id, err)
		}
		if _, err := s.AddProof(ctx, id, policy.Proof{Kind: policy.FactorTOTP}); !errors.Is(err, ErrSessionNotFound) {
			t.Fatalf("add proof to %q: %v", id, err)
		}
		if k, ok := parseStoreKey(id); ok && storeKey(k) != strings.ToLower(id) {
			t.Fatalf("parseStoreKey(%q) round-trips to %q", id, storeKey(k))
		}
		_, _ = decodeSession([]byte(id))
		if s.Len() != 1 {
			t.Fatalf("%d sessions after %q", s.Len(), id)
		}
	})
}
