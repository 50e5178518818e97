package bench

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	otptotp "github.com/pquerna/otp/totp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/authn/store/pgstore"
	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/totp"
	"github.com/keygate/keygate/policy"
)

// backend is one storage engine keygate runs on, opened as keygate serve
// opens it: durable writes are flushed (Badger's fsync; PostgreSQL with
// fsync on, as a production server runs).
type backend struct {
	name string
	kv   store.Backend
}

// durableBackends opens Badger in a temp dir and a fresh database on a
// throwaway PostgreSQL cluster with fsync on (failing under CI=true and
// skipping loudly otherwise when PostgreSQL is not installed).
func durableBackends(b *testing.B) []backend {
	b.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	key := bytes.Repeat([]byte{7}, 32)
	bs, err := badgerstore.Open(badgerstore.Options{Path: b.TempDir(), EncryptionKey: key, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bs.Close() })
	pg := pgtest.StartDurable(b)
	ps, err := pgstore.Open(ctx, pgstore.Options{DSN: pg.NewDatabase(b), Key: key, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ps.Close() })
	return []backend{{"badger", bs}, {"postgres", ps}}
}

// latencies collects one duration per operation and reports the median
// and the 99th percentile as metrics of b.
type latencies struct{ d []time.Duration }

func (l *latencies) time(f func()) {
	t := time.Now()
	f()
	l.d = append(l.d, time.Since(t))
}

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	b.ReportMetric(float64(l.d[len(l.d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(l.d[len(l.d)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkSignInStore: a password sign-in's work in authn on each backend
// (the user read, the hash check, the regulator's bookkeeping, the new
// session's durable write), with the dev seed's cheap argon2id (8 KiB, one
// pass) so that the store's share shows; the production hash adds its
// ~50 ms to both alike (BenchmarkHash). proxybench times the same end to
// end through keygate serve with the production hash.
func BenchmarkSignInStore(b *testing.B) {
	const users = 64
	for _, be := range durableBackends(b) {
		hasher := authn.NewHasher(authn.Argon2Params{MemoryKiB: 8, Iterations: 1, Parallelism: 1}, 4)
		us := authn.NewUsers(be.kv, authn.UserOptions{Hasher: hasher, Policy: authn.PasswordPolicy{MinLength: 12}, Now: time.Now})
		for i := range users {
			name := fmt.Sprintf("user%06d", i)
			if _, err := us.Add(ctx, authn.NewUser{Username: name, Email: name + "@seed.example.com", Password: "seeded-password-not-for-people"}); err != nil {
				b.Fatal(err)
			}
		}
		// A user's sessions are capped (20 by default; the oldest ends):
		// room for every sign-in of the run, so each one is one write.
		sessions, err := authn.NewSessions(ctx, be.kv, authn.SessionOptions{IdleTimeout: time.Hour, MaxPerUser: 10_000, MaxSessions: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		i := 0
		b.Run(be.name, func(b *testing.B) {
			var l latencies
			b.ReportAllocs()
			for b.Loop() {
				name := fmt.Sprintf("user%06d", i%users)
				i++
				l.time(func() {
					u, err := us.Authenticate(ctx, name, "seeded-password-not-for-people")
					if err != nil {
						b.Fatal(err)
					}
					if _, err := sessions.Create(ctx, u, policy.Proof{Kind: policy.FactorPassword}, authn.Meta{IP: "192.0.2.1"}); err != nil {
						b.Fatal(err)
					}
				})
			}
			l.report(b)
		})
	}
}

// BenchmarkTOTPVerifyStore: an accepted TOTP code on each backend,
// including the durable write of its replay guard (the used time step,
// compare-and-set on the user's record), one fresh step per operation.
func BenchmarkTOTPVerifyStore(b *testing.B) {
	secrets, err := factors.NewSecrets(bytes.Repeat([]byte{42}, 32), "bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, be := range durableBackends(b) {
		clk := &stepClock{t: time.Date(2030, 1, 2, 3, 4, 10, 0, time.UTC)}
		f, err := totp.New(be.kv, totp.Options{Now: clk.Now, Secrets: secrets})
		if err != nil {
			b.Fatal(err)
		}
		e, err := f.BeginEnroll(ctx, "alice", "alice@example.com")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.FinishEnroll(ctx, "alice", e.ID, totpCode(b, e.Secret, clk.Now()), "phone"); err != nil {
			b.Fatal(err)
		}
		b.Run(be.name, func(b *testing.B) {
			// Codes are made before the timer runs, one step apart.
			codes := make([]string, b.N)
			steps := make([]time.Time, b.N)
			for i := range codes {
				steps[i] = clk.Now().Add(time.Duration(i+10) * 30 * time.Second)
				codes[i] = totpCode(b, e.Secret, steps[i])
			}
			var l latencies
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				clk.Set(steps[i])
				l.time(func() {
					if _, ok, err := f.Verify(ctx, "alice", codes[i]); !ok || err != nil {
						b.Fatalf("Verify: ok=%v err=%v", ok, err)
					}
				})
			}
			b.StopTimer()
			clk.Set(steps[b.N-1].Add(30 * time.Second))
			l.report(b)
		})
	}
}

func totpCode(b *testing.B, secret string, at time.Time) string {
	b.Helper()
	c, err := otptotp.GenerateCodeCustom(secret, at, otptotp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// stepClock is a clock the benchmark sets to each code's time step.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}
