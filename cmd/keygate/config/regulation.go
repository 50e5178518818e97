package config

import "time"

// validateRegulation checks the brute-force limits and the activity log's
// retention. The bounds keep the limits meaningful: no setting may switch
// regulation off, and none may lock people out for longer than a day on
// its own (an admin or an email code unlocks earlier).
func (c *Config) validateRegulation(ps *Problems) {
	r := c.Regulation
	if r.MaxFailures < 1 || r.MaxFailures > 100 {
		ps.add("regulation.max_failures", "%d must be between 1 and 100", r.MaxFailures)
	}
	if r.IPMaxFailures < r.MaxFailures || r.IPMaxFailures > 10000 {
		ps.add("regulation.ip_max_failures", "%d must be at least regulation.max_failures (%d) and at most 10000", r.IPMaxFailures, r.MaxFailures)
	}
	if r.Window.D() < time.Minute || r.Window.D() > 24*time.Hour {
		ps.add("regulation.window", "%s must be between 1m and 24h", r.Window)
	}
	if r.Lockout.D() < 10*time.Second || r.Lockout.D() > 24*time.Hour {
		ps.add("regulation.lockout", "%s must be between 10s and 24h", r.Lockout)
	}
	if r.MaxLockout.D() < r.Lockout.D() || r.MaxLockout.D() > 24*time.Hour {
		ps.add("regulation.max_lockout", "%s must be at least regulation.lockout (%s) and at most 24h", r.MaxLockout, r.Lockout)
	}
	if d := c.Activity.RetentionDays; d < 1 || d > 3650 {
		ps.add("activity.retention_days", "%d must be between 1 and 3650", d)
	}
}
