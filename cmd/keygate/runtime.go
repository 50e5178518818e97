package main

import (
	"os"
	"runtime/debug"

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
// flood of wrong passwords. With the limit it collects them first.
func defaultMemoryLimit(cfg *config.Config) int64 {
	p := cfg.Passwords
	return memoryBaseline + int64(max(p.MaxConcurrentHashes, 1))*int64(p.Argon2id.MemoryKiB)<<10
}

// tuneRuntime applies server.gogc and server.memory_limit (or the default
// limit derived from the hashing configuration), once the app is loaded.
// GOGC and GOMEMLIMIT in the environment win: Go has already applied them,
// and an operator who sets them means them.
func (a *app) tuneRuntime() {
	s := a.cfg.Server
	if _, set := os.LookupEnv("GOGC"); !set && s.GOGC != 0 {
		debug.SetGCPercent(s.GOGC)
		a.log.Debug("go runtime", "gogc", s.GOGC)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		limit, from := int64(s.MemoryLimit), "server.memory_limit"
		if limit <= 0 {
			limit, from = defaultMemoryLimit(a.cfg), "default: 160MiB + passwords.max_concurrent_hashes × argon2id memory"
		}
		debug.SetMemoryLimit(limit)
		a.log.Info("go runtime", "memory_limit", config.ByteSize(limit).String(), "from", from)
	}
	// Start-up decoded every stored session (and the policy, the
	// factors' metadata): give that garbage back to the system now, not
	// minutes later when the scavenger gets to it. One collection, a few
	// milliseconds, or tens with 100k sessions.
	debug.FreeOSMemory()
}
