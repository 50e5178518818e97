package webauthn

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkFinishLogin measures a second-factor assertion's finish: take
// the ceremony (a durable delete), parse, verify the ES256 signature, and
// write the new counter (durable compare-and-swap), on a real Badger store.
// Begin and the authenticator's signing are outside the timer. Reports the
// median and 99th percentile besides the mean (budget: p50 ≤ 1 ms).
func BenchmarkFinishLogin(b *testing.B) {
	e := softEnv(b, nil)
	k := newSoftKey(b, e.origin)
	softEnrol(b, e.f, "alice", k, "")
	durs := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		opts, id, err := e.f.BeginLogin(ctx, "alice")
		if err != nil {
			b.Fatal(err)
		}
		resp := k.get(opts)
		b.StartTimer()
		start := time.Now()
		if _, err := e.f.FinishLogin(ctx, "alice", id, resp); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkBeginLogin: load the user, make the options, store the ceremony.
func BenchmarkBeginLogin(b *testing.B) {
	e := softEnv(b, nil)
	softEnrol(b, e.f, "alice", newSoftKey(b, e.origin), "")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := e.f.BeginLogin(ctx, "alice"); err != nil {
			b.Fatal(err)
		}
	}
}
