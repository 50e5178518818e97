package authn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
)

const goodPW = "plum-lantern-orbit-42"

func newTestUsers(t *testing.T) (*Users, KV, *clock) {
	t.Helper()
	kv := openStore(t, t.TempDir())
	c := newClock()
	return NewUsers(kv, UserOptions{Hasher: testHasher(), Now: c.Now}), kv, c
}

func mustAdd(t *testing.T, us *Users, nu NewUser) User {
	t.Helper()
	if nu.Password == "" {
		nu.Password = goodPW
	}
	u, err := us.Add(context.Background(), nu)
	if err != nil {
		t.Fatalf("Add(%s): %v", nu.Username, err)
	}
	return u
}

func TestUsersLifecycle(t *testing.T) {
	ctx := context.Background()
	us, _, c := newTestUsers(t)

	alice := mustAdd(t, us, NewUser{Username: "Alice", Email: "Alice@Example.com", DisplayName: " Alice A. ",
		Groups: []string{"admins", "dev", "admins"}, EmailVerified: true})
	if alice.Username != "alice" || alice.DisplayName != "Alice A." || !slices.Equal(alice.Groups, []string{"admins", "dev"}) {
		t.Fatalf("Add normalised badly: %+v", alice)
	}
	if !strings.HasPrefix(alice.PasswordHash, "$argon2id$") || !alice.CreatedAt.Equal(c.Now()) {
		t.Fatalf("hash or time: %+v", alice)
	}
	mustAdd(t, us, NewUser{Username: "bob", Email: "bob@example.com"})

	got, err := us.Get(ctx, "ALICE")
	if err != nil {
		t.Fatal(err)
	}
	if got.Email != "Alice@Example.com" || !got.EmailVerified || !got.CreatedAt.Equal(alice.CreatedAt) || got.PasswordHash != alice.PasswordHash {
		t.Fatalf("Get = %+v, want %+v", got, alice)
	}

	list, err := us.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range list {
		names = append(names, u.Username)
	}
	if !slices.Equal(names, []string{"alice", "bob"}) {
		t.Fatalf("List = %v", names)
	}

	c.Advance(time.Minute)
	up, err := us.Update(ctx, "alice", func(u *User) error {
		u.DisplayName = "Alice Liddell"
		u.Groups = append(u.Groups, "ops")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if up.DisplayName != "Alice Liddell" || !slices.Equal(up.Groups, []string{"admins", "dev", "ops"}) ||
		!up.UpdatedAt.Equal(c.Now()) || !up.CreatedAt.Equal(alice.CreatedAt) || !up.EmailVerified {
		t.Fatalf("Update = %+v", up)
	}

	// A new email moves the index and is unverified until proven.
	up, err = us.Update(ctx, "alice", func(u *User) error { u.Email = "liddell@example.org"; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if up.EmailVerified {
		t.Fatal("changing the email kept EmailVerified")
	}
	if _, err := us.Authenticate(ctx, "liddell@example.org", goodPW); err != nil {
		t.Fatalf("sign-in by new email: %v", err)
	}
	if _, err := us.Authenticate(ctx, "alice@example.com", goodPW); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("sign-in by old email: %v", err)
	}
	// The old address is free again.
	mustAdd(t, us, NewUser{Username: "carol", Email: "alice@example.com"})

	if err := us.SetDisabled(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	if got, _ := us.Get(ctx, "alice"); !got.Disabled {
		t.Fatal("SetDisabled did not stick")
	}

	if err := us.Delete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := us.Get(ctx, "alice"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if err := us.Delete(ctx, "alice"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
	if _, err := us.Update(ctx, "alice", func(*User) error { return nil }); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("Update after Delete: %v", err)
	}
	// Name and address are both reusable.
	mustAdd(t, us, NewUser{Username: "alice", Email: "liddell@example.org"})
}

func TestUsersDuplicates(t *testing.T) {
	ctx := context.Background()
	us, kv, _ := newTestUsers(t)
	mustAdd(t, us, NewUser{Username: "dave", Email: "dave@example.com"})

	_, err := us.Add(ctx, NewUser{Username: "DAVE", Email: "other@example.com", Password: goodPW})
	if !errors.Is(err, ErrUserExists) || errors.Is(err, ErrEmailTaken) {
		t.Fatalf("duplicate name: %v", err)
	}
	_, err = us.Add(ctx, NewUser{Username: "david", Email: "DAVE@example.COM", Password: goodPW})
	if !errors.Is(err, ErrEmailTaken) || !errors.Is(err, ErrUserExists) {
		t.Fatalf("duplicate email: %v", err)
	}
	if _, err := us.Get(ctx, "david"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("refused Add left a record: %v", err)
	}
	// Nobody may take an address by changing to it either.
	mustAdd(t, us, NewUser{Username: "erin"})
	if _, err := us.Update(ctx, "erin", func(u *User) error { u.Email = "dave@example.com"; return nil }); !errors.Is(err, ErrEmailTaken) {
		t.Fatalf("Update to a taken email: %v", err)
	}
	// An index entry whose owner is gone (a delete that crashed half way)
	// does not block the address for ever.
	if _, err := kv.CompareAndSet(ctx, emailKey("ghost@example.com"), []byte("ghost"), 0, durable()); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, us, NewUser{Username: "frank", Email: "ghost@example.com"})
	if u, err := us.Authenticate(ctx, "ghost@example.com", goodPW); err != nil || u.Username != "frank" {
		t.Fatalf("stale entry not taken over: %v %v", u.Username, err)
	}
}

func TestUsersConcurrentAdd(t *testing.T) {
	us, _, _ := newTestUsers(t)
	const n = 20
	run := func(mk func(i int) NewUser) (ok int, exists int, other []error) {
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { _, errs[i] = us.Add(context.Background(), mk(i)) })
		}
		wg.Wait()
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrUserExists):
				exists++
			default:
				other = append(other, err)
			}
		}
		return ok, exists, other
	}
	ok, exists, other := run(func(int) NewUser { return NewUser{Username: "grace", Password: goodPW} })
	if ok != 1 || exists != n-1 || other != nil {
		t.Fatalf("one name: %d ok, %d exists, other %v", ok, exists, other)
	}
	ok, exists, other = run(func(i int) NewUser {
		return NewUser{Username: fmt.Sprintf("h%02d", i), Email: "shared@example.com", Password: goodPW}
	})
	if ok != 1 || exists != n-1 || other != nil {
		t.Fatalf("one email: %d ok, %d exists, other %v", ok, exists, other)
	}
	list, _ := us.List(context.Background())
	if len(list) != 2 {
		t.Fatalf("%d users after the races, want 2", len(list))
	}
}

func TestUsersInvalidInput(t *testing.T) {
	us, _, _ := newTestUsers(t)
	bad := []NewUser{
		{Username: ""},
		{Username: strings.Repeat("a", 65)},
		{Username: "bad name"},
		{Username: "a@b"},
		{Username: ".hidden"},
		{Username: "ümlaut"},
		{Username: "ok", Email: "not-an-email"},
		{Username: "ok", Email: "Name <x@example.com>"},
		{Username: "ok", Groups: []string{"admins,root"}},
		{Username: "ok", Groups: []string{"has space"}},
		{Username: "ok", Groups: []string{""}},
		{Username: "ok", DisplayName: "Evil\r\nX-Remote-User: root"},
	}
	for _, nu := range bad {
		nu.Password = goodPW
		if _, err := us.Add(context.Background(), nu); !errors.Is(err, ErrInvalidUser) {
			t.Errorf("Add(%+v) = %v, want ErrInvalidUser", nu, err)
		}
	}
	var perr *PasswordPolicyError
	if _, err := us.Add(context.Background(), NewUser{Username: "weak", Password: "password1234"}); !errors.As(err, &perr) {
		t.Fatalf("weak password: %v", err)
	}
	mustAdd(t, us, NewUser{Username: "ivy"})
	if _, err := us.Update(context.Background(), "ivy", func(u *User) error { u.Username = "root"; return nil }); !errors.Is(err, ErrInvalidUser) {
		t.Fatalf("renaming via Update: %v", err)
	}
	if _, err := us.Update(context.Background(), "ivy", func(u *User) error { u.PasswordHash = ""; return nil }); !errors.Is(err, ErrInvalidUser) {
		t.Fatalf("clearing the hash via Update: %v", err)
	}
	errStop := errors.New("stop")
	if _, err := us.Update(context.Background(), "ivy", func(*User) error { return errStop }); err != errStop {
		t.Fatalf("fn error not returned as is: %v", err)
	}
}

func TestUsersSetPassword(t *testing.T) {
	ctx := context.Background()
	us, _, _ := newTestUsers(t)
	mustAdd(t, us, NewUser{Username: "judy", Email: "judy@example.com"})
	var perr *PasswordPolicyError
	if err := us.SetPassword(ctx, "judy", "judy-is-my-name"); !errors.As(err, &perr) || !slices.Contains(perr.Codes, PolicyCodeContainsUsername) {
		t.Fatalf("SetPassword(contains name) = %v", err)
	}
	if err := us.SetPassword(ctx, "judy", "violet-harbour-seven"); err != nil {
		t.Fatal(err)
	}
	if _, err := us.Authenticate(ctx, "judy", goodPW); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("old password still works: %v", err)
	}
	if _, err := us.Authenticate(ctx, "judy", "violet-harbour-seven"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if err := us.SetPassword(ctx, "nobody", "violet-harbour-seven"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("SetPassword(unknown) = %v", err)
	}
}

func TestAuthenticate(t *testing.T) {
	ctx := context.Background()
	us, _, _ := newTestUsers(t)
	mustAdd(t, us, NewUser{Username: "kim", Email: "Kim@Example.com"})
	mustAdd(t, us, NewUser{Username: "leo", Email: "leo@example.com"})
	if err := us.SetDisabled(ctx, "leo", true); err != nil {
		t.Fatal(err)
	}
	// NFC and NFD spellings of one password are the same password.
	mustAdd(t, us, NewUser{Username: "zoe", Password: "caf\u00e9-au-lait-sans-sucre"})
	if _, err := us.Authenticate(ctx, "zoe", "cafe\u0301-au-lait-sans-sucre"); err != nil {
		t.Fatalf("NFD spelling refused: %v", err)
	}

	for _, login := range []string{"kim", "KIM", " kim ", "kim@example.com", "KIM@EXAMPLE.COM"} {
		u, err := us.Authenticate(ctx, login, goodPW)
		if err != nil || u.Username != "kim" {
			t.Errorf("Authenticate(%q) = %q, %v", login, u.Username, err)
		}
	}

	h := us.hasher
	var texts []string
	for _, tc := range []struct{ name, login, pw string }{
		{"wrong password", "kim", "plum-lantern-orbit-43"},
		{"wrong password by email", "kim@example.com", "nope"},
		{"unknown user", "nobody", goodPW},
		{"unknown email", "nobody@example.com", goodPW},
		{"invalid username", "no body!", goodPW},
		{"disabled user", "leo", goodPW},
		{"empty password", "kim", ""},
	} {
		before := h.runs.Load()
		u, err := us.Authenticate(ctx, tc.login, tc.pw)
		if !errors.Is(err, ErrInvalidCredentials) || u.Username != "" {
			t.Errorf("%s: %q, %v; want ErrInvalidCredentials", tc.name, u.Username, err)
			continue
		}
		// The same argon2 work whatever the reason: exactly one run.
		if runs := h.runs.Load() - before; runs != 1 {
			t.Errorf("%s: %d argon2 runs, want 1", tc.name, runs)
		}
		texts = append(texts, err.Error())
	}
	if len(slices.Compact(slices.Clone(texts))) != 1 {
		t.Errorf("error texts differ: %q", texts)
	}
}

// TestAuthenticateUnknownUserTiming backs the run counter with a clock:
// an unknown user must cost at least half of what a known user costs. The
// two are measured in turns (so a busy moment of the machine falls on
// both alike) and compared by their medians.
func TestAuthenticateUnknownUserTiming(t *testing.T) {
	ctx := context.Background()
	us, _, _ := newTestUsers(t)
	mustAdd(t, us, NewUser{Username: "mia"})
	timed := func(login string) time.Duration {
		start := time.Now()
		_, _ = us.Authenticate(ctx, login, "plum-lantern-orbit-00")
		return time.Since(start)
	}
	var knownD, unknownD []time.Duration
	for range 9 {
		knownD = append(knownD, timed("mia"))
		unknownD = append(unknownD, timed("nobody"))
	}
	median := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	known, unknown := median(knownD), median(unknownD)
	if unknown < known/2 {
		t.Fatalf("unknown user took %v, known user %v: timing tells them apart", unknown, known)
	}
}

func TestAuthenticateUpgradesHash(t *testing.T) {
	ctx := context.Background()
	kv := openStore(t, t.TempDir())
	old := NewUsers(kv, UserOptions{Hasher: testHasher()})
	mustAdd(t, old, NewUser{Username: "nina"})

	stronger := cheapParams()
	stronger.Iterations = 2
	us := NewUsers(kv, UserOptions{Hasher: NewHasher(stronger, 2)})
	if _, err := us.Authenticate(ctx, "nina", goodPW); err != nil {
		t.Fatal(err)
	}
	u, _ := us.Get(ctx, "nina")
	if !strings.Contains(u.PasswordHash, ",t=2,") {
		t.Fatalf("hash not upgraded: %s", u.PasswordHash)
	}
	if _, err := us.Authenticate(ctx, "nina", goodPW); err != nil {
		t.Fatalf("upgraded hash: %v", err)
	}
}

func TestUserRecordHasNoSurprises(t *testing.T) {
	ctx := context.Background()
	us, kv, _ := newTestUsers(t)
	mustAdd(t, us, NewUser{Username: "olga", Email: "olga@example.com"})
	it, err := kv.Get(ctx, "user/olga")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(it.Value), goodPW) {
		t.Fatal("record contains the clear password")
	}
	// The index maps the lower-case address to the name.
	if it, err := kv.Get(ctx, "user_email/olga@example.com"); err != nil || string(it.Value) != "olga" {
		t.Fatalf("email index: %q %v", it.Value, err)
	}
	if _, err := kv.Get(ctx, "user_email/nobody@example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unexpected index entry: %v", err)
	}
}
