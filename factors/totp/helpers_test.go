package totp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/factors"
)

// openStore opens a real Badger store in a fresh directory and closes it
// when the test ends.
func openStore(t testing.TB) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(badgerstore.Options{
		Path:   t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func testSecrets(t testing.TB) *factors.Secrets {
	t.Helper()
	s, err := factors.NewSecrets(bytes.Repeat([]byte{42}, 32), "test")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clock is a settable clock. Its start sits 10 s into a 30 s (and 60 s)
// time step, so that "the previous step" and "the next step" are plain
// additions of the period.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func clockStart() time.Time { return time.Date(2030, 1, 2, 3, 4, 10, 0, time.UTC) }

func newClock() *clock { return &clock{t: clockStart()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a Factor on a real store with a settable clock.
type fixture struct {
	f   *Factor
	kv  *badgerstore.Store
	clk *clock
	opt Options
}

func newFixture(t testing.TB, opt Options) *fixture {
	t.Helper()
	kv := openStore(t)
	clk := newClock()
	if opt.Now == nil {
		opt.Now = clk.Now
	}
	if opt.Secrets == nil {
		opt.Secrets = testSecrets(t)
	}
	f, err := New(kv, opt)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &fixture{f: f, kv: kv, clk: clk, opt: opt}
}

// codeAt is the code of secret at time at, by pquerna/otp's own TOTP
// generator (the oathtool test checks both against an independent one).
func (fx *fixture) codeAt(t testing.TB, secret string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{
		Period:    fx.f.period,
		Digits:    otp.Digits(fx.f.digits),
		Algorithm: fx.f.algorithm,
	})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// wrongCode is a well-formed code valid at no step near at (a fixed
// "000000" would be right once in a million runs).
func (fx *fixture) wrongCode(t testing.TB, secret string, at time.Time) string {
	t.Helper()
	for c := 0; ; c++ {
		code := fmt.Sprintf("%0*d", fx.f.digits, c)
		valid := false
		for s := -3; s <= 3; s++ {
			valid = valid || fx.codeAt(t, secret, at.Add(time.Duration(s)*fx.step())) == code
		}
		if !valid {
			return code
		}
	}
}

// step is one time step of the fixture's factor.
func (fx *fixture) step() time.Duration { return time.Duration(fx.f.period) * time.Second }

// enroll adds an app for user, confirmed with the code of enrolledAt, and
// returns it with its base32 secret. The clock is left at enrolledAt.
func (fx *fixture) enroll(t testing.TB, user, name string, enrolledAt time.Time) (factors.Credential, string) {
	t.Helper()
	fx.clk.Set(enrolledAt)
	ctx := context.Background()
	e, err := fx.f.BeginEnroll(ctx, user, user+"@example.com")
	if err != nil {
		t.Fatalf("BeginEnroll: %v", err)
	}
	cred, err := fx.f.FinishEnroll(ctx, user, e.ID, fx.codeAt(t, e.Secret, enrolledAt), name)
	if err != nil {
		t.Fatalf("FinishEnroll: %v", err)
	}
	return cred, e.Secret
}

// Interface guards: the real store is what the factor gets in production.
var _ KV = (*badgerstore.Store)(nil)
