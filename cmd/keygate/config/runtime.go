package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultGOGC is server.gogc's default. A proxy allocates per request and
// keeps a small live heap (Badger's caches, sessions), so doubling Go's
// default target halves the collections for a few MiB more heap under load;
// bench/results.md has the measurement.
const DefaultGOGC = 200

// minMemoryLimit keeps a typo ("64KiB") from making the collector run
// without pause: keygate's idle heap alone is about 10 MiB.
const minMemoryLimit = 32 << 20

// ByteSize is a number of bytes written as an integer or with a unit:
// 512MiB, 1GiB, 300MB (units of 1024 with "i", of 1000 without).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// ParseByteSize reads "512MiB", "1GiB", "300MB" or a plain number of bytes.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size such as 512MiB or 1GiB", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return ByteSize(n * mult), nil
}

// UnmarshalYAML reads a size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalYAML writes the size in the largest binary unit that divides it.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

func (b ByteSize) String() string {
	for i := 3; i >= 0; i-- {
		if u := byteUnits[i]; b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// validateRuntime checks the Go runtime keys.
func (c *Config) validateRuntime(ps *Problems) {
	s := c.Server
	if s.GOGC < -1 {
		ps.add("server.gogc", "%d: use a percentage (100 is Go's default), 0 for the runtime's own setting, or -1 for off", s.GOGC)
	}
	if s.GOGC == -1 && s.MemoryLimit == 0 {
		ps.add("server.gogc", "-1 (collector off) needs server.memory_limit, or the heap grows without bound")
	}
	if s.MemoryLimit != 0 && s.MemoryLimit < minMemoryLimit {
		ps.add("server.memory_limit", "%s is below 32MiB: the collector would run without pause", s.MemoryLimit)
	}
	c.validateLimits(ps)
}

// validateLimits checks the limits that hold under abuse: request bodies
// and sessions per user.
func (c *Config) validateLimits(ps *Problems) {
	s := c.Server
	if d := s.BodyTimeout.D(); d < time.Second || d > 24*time.Hour {
		ps.add("server.body_timeout", "%s must be between 1s and 24h", d)
	}
	if b := s.BodyBuffer; b < 1<<10 || b > 64<<20 {
		ps.add("server.body_buffer", "%s must be between 1KiB and 64MiB (it is held in memory for every request in flight)", b)
	}
	for i, u := range c.Upstreams {
		if d := u.BodyTimeout.D(); d != 0 && (d < time.Second || d > 24*time.Hour) {
			ps.add(fmt.Sprintf("upstreams[%d].body_timeout", i), "%s must be 0 (server.body_timeout) or between 1s and 24h", d)
		}
	}
	if n := c.Session.MaxPerUser; n < 1 || n > 10000 {
		ps.add("session.max_per_user", "%d must be between 1 and 10000", n)
	}
}
