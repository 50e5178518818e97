package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const mib = 1 << 20

// The governed limit: the target while the live heap is small, 40% above
// the live heap beyond it, never above the ceiling (the hashing bound).
func TestMemoryGovernorLimit(t *testing.T) {
	g := newMemoryGovernor(128*mib, 416*mib, memoryHeadroom, nil, nil, nil)
	for _, tc := range []struct{ live, want int64 }{
		{0, 128 * mib},
		{10 * mib, 128 * mib},  // a small deployment: GOGC paces it
		{90 * mib, 128 * mib},  // 100k sessions: the target holds
		{100 * mib, 140 * mib}, // beyond: room for garbage, no thrash
		{200 * mib, 280 * mib},
		{300 * mib, 416 * mib}, // four argon2 runs live and more: the ceiling
		{2000 * mib, 416 * mib},
	} {
		if got := g.limitFor(tc.live); got != tc.want {
			t.Errorf("live %d MiB: limit %d MiB, want %d", tc.live/mib, got/mib, tc.want/mib)
		}
	}
	// A ceiling below the target (tiny hashing settings) wins.
	if got := newMemoryGovernor(128*mib, 100*mib, memoryHeadroom, nil, nil, nil).limitFor(0); got != 100*mib {
		t.Errorf("ceiling below the target: %d MiB", got/mib)
	}
}

// The peak live heap is held for memoryPeakHold, so a flood's limit does
// not fall between two collections that happen to see fewer hashes.
func TestMemoryGovernorHoldsThePeak(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var live, limit int64
	g := newMemoryGovernor(128*mib, 416*mib, memoryHeadroom,
		func(l int64) int64 { limit = l; return 0 }, func() int64 { return live }, func() time.Time { return now })
	start := now
	for _, step := range []struct {
		live int64
		at   time.Duration // after start
		want int64
	}{
		{10 * mib, 0, 128 * mib},
		{200 * mib, time.Second, 280 * mib},
		{20 * mib, 2 * time.Second, 280 * mib},                   // held
		{150 * mib, time.Second + memoryPeakHold, 280 * mib},     // still the peak's
		{20 * mib, 2*time.Second + memoryPeakHold, 128 * mib},    // released
		{150 * mib, 3*time.Second + memoryPeakHold, 210 * mib},   // a new peak
		{100 * mib, 3*time.Second + 2*memoryPeakHold, 210 * mib}, // held again
	} {
		now = start.Add(step.at)
		live = step.live
		g.adjust()
		if limit != step.want {
			t.Fatalf("live %d MiB at %v: limit %d MiB, want %d", step.live/mib, step.at, limit/mib, step.want/mib)
		}
	}
}

// Started, the governor re-sets the limit after collections; stopped, it
// leaves it alone.
func TestMemoryGovernorFollowsCollections(t *testing.T) {
	var (
		mu    sync.Mutex
		calls int
	)
	set := func(int64) int64 { mu.Lock(); calls++; mu.Unlock(); return 0 }
	count := func() int { mu.Lock(); defer mu.Unlock(); return calls }
	g := newMemoryGovernor(128*mib, 416*mib, memoryHeadroom, set, liveHeap, time.Now)
	g.start()
	if count() != 1 {
		t.Fatalf("start set the limit %d times, want once", count())
	}
	deadline := time.Now().Add(10 * time.Second)
	for count() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("after collections for 10 s the limit was set %d times", count())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // cleanups run on their own goroutine
	}
	g.stop()
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	n := count()
	for range 3 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	if count() != n {
		t.Errorf("a stopped governor set the limit %d more times", count()-n)
	}
}

// releaseTableMaps drops the resident pages of *.sst maps in the data
// directory, and only those; the data reads back unchanged.
func TestReleaseTableMaps(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SKIPPING: releaseTableMaps is a no-op off Linux")
	}
	dir := t.TempDir()
	other := t.TempDir()
	const size = 4 * mib
	mapFile := func(path string) []byte {
		t.Helper()
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Munmap(m) })
		for i := 0; i < size; i += 4096 {
			pageSink += m[i] // touch every page
		}
		return m
	}
	table := mapFile(filepath.Join(dir, "000001.sst"))
	vlog := mapFile(filepath.Join(dir, "000001.vlog"))
	elsewhere := mapFile(filepath.Join(other, "000002.sst"))
	for name, path := range map[string]string{"table": filepath.Join(dir, "000001.sst"), "vlog": filepath.Join(dir, "000001.vlog"), "other dir": filepath.Join(other, "000002.sst")} {
		if rss := mappedRSS(t, path); rss < size/2 {
			t.Fatalf("%s: %d KiB resident after touching it, want about %d", name, rss>>10, size>>10)
		}
	}

	n, err := releaseTableMaps(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != size {
		t.Errorf("released %d bytes, want the table's %d", n, size)
	}
	if rss := mappedRSS(t, filepath.Join(dir, "000001.sst")); rss != 0 {
		t.Errorf("table: %d KiB still resident", rss>>10)
	}
	for name, path := range map[string]string{"vlog": filepath.Join(dir, "000001.vlog"), "other dir": filepath.Join(other, "000002.sst")} {
		if rss := mappedRSS(t, path); rss < size/2 {
			t.Errorf("%s: released too (%d KiB resident)", name, rss>>10)
		}
	}
	for i := 0; i < size; i += 4093 {
		if table[i] != byte(i*7) || vlog[i] != byte(i*7) || elsewhere[i] != byte(i*7) {
			t.Fatalf("byte %d changed", i)
		}
	}
	// A directory with no maps, and one that does not exist: nothing.
	if n, err := releaseTableMaps(filepath.Join(dir, "none")); err != nil || n != 0 {
		t.Errorf("no maps: %d, %v", n, err)
	}
}

// pageSink keeps the reads that touch pages from being optimised away.
var pageSink byte

func TestParseMapsLine(t *testing.T) {
	for _, tc := range []struct {
		line   string
		lo, hi uintptr
		path   string
		ok     bool
	}{
		{"7f00a000-7f00c000 r--s 00000000 fd:01 1234   /data/kg/000001.sst", 0x7f00a000, 0x7f00c000, "/data/kg/000001.sst", true},
		{"7f00a000-7f00c000 r--s 00000000 fd:01 1234   /data/my dir/000001.sst", 0x7f00a000, 0x7f00c000, "/data/my dir/000001.sst", true},
		{"7f00a000-7f00c000 rw-p 00000000 00:00 0 ", 0x7f00a000, 0x7f00c000, "", true},
		{"7f00a000-7f00c000 rw-p 00000000 00:00", 0, 0, "", false},
		{"zz-7f00c000 rw-p 00000000 00:00 0 /x", 0, 0, "", false},
		{"7f00c000-7f00a000 rw-p 00000000 00:00 0 /x", 0, 0, "", false},
	} {
		lo, hi, path, ok := parseMapsLine(tc.line)
		if lo != tc.lo || hi != tc.hi || path != tc.path || ok != tc.ok {
			t.Errorf("%q: %x-%x %q %v", tc.line, lo, hi, path, ok)
		}
	}
}

// mappedRSS is the resident size of this process's maps of path
// (/proc/self/smaps).
func mappedRSS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rss int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if _, _, p, ok := parseMapsLine(line); ok { // a map's header line
			in = p == path
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			rss += kb << 10
		}
	}
	return rss
}
