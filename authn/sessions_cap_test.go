package authn

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
)

// One user's sessions are capped: one more ends that user's oldest, and
// never anyone else's (nor the one being created).
func TestSessionsPerUserCap(t *testing.T) {
	env := newSessEnv(t, SessionOptions{MaxPerUser: 3})
	bobs := []*Session{env.create(t, bob), env.create(t, bob)}
	var alices []*Session
	for range 3 {
		alices = append(alices, env.create(t, alice))
		env.clk.Advance(time.Second) // distinct creation times
	}
	// The oldest session, rotated, keeps its creation time and stays the
	// oldest: a privilege change does not make a session young.
	rotated, err := env.s.Rotate(context.Background(), alices[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	alices[0] = rotated
	fourth := env.create(t, alice)
	if _, ok := env.s.Lookup(alices[0].ID); ok {
		t.Fatal("the oldest of alice's sessions survived a fourth")
	}
	if _, err := env.storedSession(t, alices[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the ended session is still stored: %v", err)
	}
	for i, sess := range append(alices[1:], fourth) {
		if _, ok := env.s.Lookup(sess.ID); !ok {
			t.Fatalf("alice's session %d ended", i+1)
		}
	}
	for i, sess := range bobs {
		if _, ok := env.s.Lookup(sess.ID); !ok {
			t.Fatalf("bob's session %d ended by alice's sign-ins", i)
		}
	}
	if n := len(env.s.ListUser("alice")); n != 3 {
		t.Fatalf("alice has %d sessions, want 3", n)
	}
	// Ten more of alice's: still three, bob untouched.
	for range 10 {
		env.clk.Advance(time.Second)
		fourth = env.create(t, alice)
	}
	if n, m := len(env.s.ListUser("alice")), len(env.s.ListUser("bob")); n != 3 || m != 2 {
		t.Fatalf("alice %d, bob %d sessions; want 3 and 2", n, m)
	}
	if _, ok := env.s.Lookup(fourth.ID); !ok {
		t.Fatal("the newest session was ended")
	}

	// A lower cap applies at the next start, keeping the newest.
	env.opt.MaxPerUser = 1
	env.reopen(t)
	if n := len(env.s.ListUser("alice")); n != 1 {
		t.Fatalf("after a restart with a cap of 1 alice has %d sessions", n)
	}
	if got := env.s.ListUser("alice")[0].CreatedAt; !got.Equal(env.clk.Now()) {
		t.Fatalf("kept the session created at %v, want the newest (%v)", got, env.clk.Now())
	}
	if n := len(env.s.ListUser("bob")); n != 1 {
		t.Fatalf("bob has %d sessions after the restart, want 1", n)
	}
}

func TestSessionsPerUserCapDefault(t *testing.T) {
	env := newSessEnv(t, SessionOptions{})
	for range DefaultMaxPerUser + 5 {
		env.create(t, alice)
	}
	if n := len(env.s.ListUser("alice")); n != DefaultMaxPerUser {
		t.Fatalf("alice has %d sessions, want the default cap %d", n, DefaultMaxPerUser)
	}
}
