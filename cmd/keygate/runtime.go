package main

import (
	"os"
	"runtime/debug"
)

// tuneRuntime applies server.gogc and server.memory_limit, once the app is
// loaded. GOGC and
// GOMEMLIMIT in the environment win: Go has already applied them, and an
// operator who sets them means them.
func (a *app) tuneRuntime() {
	s := a.cfg.Server
	if _, set := os.LookupEnv("GOGC"); !set && s.GOGC != 0 {
		debug.SetGCPercent(s.GOGC)
		a.log.Debug("go runtime", "gogc", s.GOGC)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && s.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(s.MemoryLimit))
		a.log.Debug("go runtime", "memory_limit", s.MemoryLimit.String())
	}
	// Start-up decoded every stored session (and the policy, the
	// factors' metadata): give that garbage back to the system now, not
	// minutes later when the scavenger gets to it. One collection, a few
	// milliseconds, or tens with 100k sessions.
	debug.FreeOSMemory()
}
