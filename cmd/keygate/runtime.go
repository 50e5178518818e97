package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/cmd/keygate/config"
)

// memoryBaseline is what keygate needs besides password hashing: Badger's
// caches and memtables, the sessions in memory, buffers of requests in
// flight, the Go runtime. Measured idle at 30–50 MiB with a small store;
// the rest is headroom for sessions and traffic.
const memoryBaseline = 160 << 20

// defaultMemoryLimit is the soft memory limit when server.memory_limit is
// unset: the baseline plus the most that password hashing can hold live at
// once (passwords.max_concurrent_hashes runs of passwords.argon2id.memory_kib
// each; the hasher never runs more). Each argon2 run allocates its work
// area afresh (x/crypto/argon2 takes no buffer from the caller), so
// without a limit the collector, pacing by GOGC, lets the dead 64 MiB areas
// pile up to several times the live ones: 1 GB RSS was measured under a
// flood of wrong passwords. With the limit it collects them first. It is
// the ceiling of the governed limit (memoryGovernor): what keygate may
// take during such a flood.
func defaultMemoryLimit(cfg *config.Config) int64 {
	p := cfg.Passwords
	return memoryBaseline + int64(max(p.MaxConcurrentHashes, 1))*int64(p.Argon2id.MemoryKiB)<<10
}

// memoryTarget is the Go memory (heap, stacks, the runtime's own) keygate
// keeps to while nothing forces more, when server.memory_limit is unset.
// With the ~25 MiB of the binary's own mapped pages it makes about 150 MiB
// of RSS: 100k live sessions (~90 MiB of live heap) under load stay within
// it, at the price of more collections then (bench/results.md), and a
// small deployment (10–30 MiB of heap) never reaches it, so GOGC alone
// paces it as before.
const memoryTarget = 128 << 20

// memoryHeadroom is the room, in percent of the live heap, the governed
// limit leaves above it once that is more than memoryTarget: the runtime's
// own memory and room for garbage, as GOGC=40 would give, so that with a
// live heap beyond the target (many more sessions; argon2's work areas
// during a flood of sign-ins) the collector runs every so much allocation
// instead of back to back. At 100k sessions (~90 MiB live) it is below the
// target, which then holds.
const memoryHeadroom = 40

// tuneRuntime applies server.gogc and server.memory_limit, or when the
// latter is unset the governed default (memoryGovernor), once the app is
// loaded. GOGC and GOMEMLIMIT in the environment win: Go has already
// applied them, and an operator who sets them means them. The returned
// stop ends the governor (serve calls it when it returns).
func (a *app) tuneRuntime() (stop func()) {
	stop = func() {}
	s := a.cfg.Server
	if _, set := os.LookupEnv("GOGC"); !set && s.GOGC != 0 {
		debug.SetGCPercent(s.GOGC)
		a.log.Debug("go runtime", "gogc", s.GOGC)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		if limit := int64(s.MemoryLimit); limit > 0 {
			debug.SetMemoryLimit(limit)
			a.log.Info("go runtime", "memory_limit", config.ByteSize(limit).String(), "from", "server.memory_limit")
		} else {
			ceiling := defaultMemoryLimit(a.cfg)
			g := newMemoryGovernor(memoryTarget, ceiling, memoryHeadroom, debug.SetMemoryLimit, liveHeap, time.Now)
			g.start()
			stop = g.stop
			a.log.Info("go runtime", "memory_limit", config.ByteSize(ceiling).String(),
				"from", "default: 160MiB + passwords.max_concurrent_hashes × argon2id memory",
				"memory_target", config.ByteSize(memoryTarget).String())
		}
	}
	// Start-up decoded every stored session (and the policy, the
	// factors' metadata): give that garbage back to the system now, not
	// minutes later when the scavenger gets to it. One collection, a few
	// milliseconds, or tens with 100k sessions.
	debug.FreeOSMemory()
	// The same load read Badger's tables through its memory maps; the
	// proxy path never reads them again (sessions are in memory), so
	// their pages need not stay in this process's resident set.
	if backendName(a.cfg) == config.BackendBadger {
		if n, err := releaseTableMaps(a.cfg.Storage.Path); err != nil {
			a.log.Debug("go runtime: table pages not released", "err", err)
		} else if n > 0 {
			a.log.Debug("go runtime: released the start-up load's table pages", "bytes", n)
		}
	}
	return stop
}

// memoryGovernor keeps the Go runtime's soft memory limit at
//
//	min(ceiling, max(target, peak live heap × (1 + headroom/100)))
//
// re-computed after every collection, where the peak is the highest live
// heap a collection found in the last memoryPeakHold. One static limit
// cannot serve both cases keygate has: a flood of sign-ins needs the
// ceiling (argon2's work areas are live then; below it the collector would
// run back to back), while the proxy path under load, with a large live
// heap of sessions, should hold to the target rather than let GOGC triple
// the heap. Between the two, the limit follows the live heap with
// proportional headroom. Holding the peak keeps it up for as long as hashes keep
// starting and ending (the live heap a collection sees depends on how many
// happen to run at that moment); it lags one collection at the start of a
// flood, which runs against the older, lower limit.
type memoryGovernor struct {
	target, ceiling int64
	headroom        int64             // percent of the live heap
	set             func(int64) int64 // debug.SetMemoryLimit
	live            func() int64      // the heap the last collection found live
	now             func() time.Time

	mu      sync.Mutex // guards the peak and serialises adjust
	peak    int64
	peakAt  time.Time
	stopped atomic.Bool
}

// memoryPeakHold is how long the governed limit keeps room for the highest
// live heap it saw: longer than the gaps between the sign-ins of a flood.
const memoryPeakHold = 5 * time.Second

func newMemoryGovernor(target, ceiling, headroom int64, set func(int64) int64, live func() int64, now func() time.Time) *memoryGovernor {
	return &memoryGovernor{target: min(target, ceiling), ceiling: ceiling, headroom: headroom, set: set, live: live, now: now}
}

// limitFor is the limit for a (peak) live heap of live bytes.
func (g *memoryGovernor) limitFor(live int64) int64 {
	return min(g.ceiling, max(g.target, live+live*g.headroom/100))
}

// adjust sets the limit from the live heap now and the held peak.
func (g *memoryGovernor) adjust() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped.Load() {
		return
	}
	live, now := g.live(), g.now()
	if live >= g.peak || now.Sub(g.peakAt) > memoryPeakHold {
		g.peak, g.peakAt = live, now
	}
	g.set(g.limitFor(g.peak))
}

// start sets the limit for the heap now and re-sets it after every
// collection from then on.
func (g *memoryGovernor) start() {
	g.adjust()
	g.arm()
}

// arm registers a cleanup on a fresh object that nothing references: the
// next collection finds it unreachable and runs the cleanup, which adjusts
// the limit and arms again. No ticker: nothing runs while the process
// allocates nothing.
func (g *memoryGovernor) arm() {
	if g.stopped.Load() {
		return
	}
	// A pointer field keeps the object out of the tiny allocator, whose
	// blocks are freed together and would delay the cleanup.
	type gcMarker struct{ _ *int }
	runtime.AddCleanup(&gcMarker{}, func(g *memoryGovernor) {
		g.adjust()
		g.arm()
	}, g)
}

// stop ends the adjustments; the limit stays where it was last set.
func (g *memoryGovernor) stop() {
	g.mu.Lock()
	g.stopped.Store(true)
	g.mu.Unlock()
}

// liveHeap is the heap the last collection marked live (the metric Go's
// own pacer starts from).
func liveHeap() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}
