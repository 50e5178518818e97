package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseTableMaps drops from this process's resident set the pages of the
// Badger table files (*.sst) under dir, and returns the bytes of the
// ranges it released. Badger reads its tables through shared, read-only
// memory maps; the start-up load of every session touches all of them,
// and those pages would then count in RSS for the process's life although
// the proxy path never reads them again. MADV_DONTNEED on a shared file
// map only unmaps the pages: the file and the page cache keep the data,
// and a later read (a sign-in looking a user up) maps its page back in.
func releaseTableMaps(dir string) (int64, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var released int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lo, hi, path, ok := parseMapsLine(sc.Text())
		if !ok || !strings.HasSuffix(path, ".sst") || filepath.Dir(path) != abs {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, lo, hi-lo, unix.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("madvise %s: %w", filepath.Base(path), errno)
		}
		released += int64(hi - lo)
	}
	return released, sc.Err()
}

// parseMapsLine reads "lo-hi perms offset dev inode path" from
// /proc/self/maps; the path may hold spaces, so it is the rest of the line.
func parseMapsLine(line string) (lo, hi uintptr, path string, ok bool) {
	rest := line
	var fields [5]string
	for i := range fields {
		rest = strings.TrimLeft(rest, " ")
		j := strings.IndexByte(rest, ' ')
		if j < 0 {
			return 0, 0, "", false
		}
		fields[i], rest = rest[:j], rest[j:]
	}
	a, b, found := strings.Cut(fields[0], "-")
	l, err1 := strconv.ParseUint(a, 16, 64)
	h, err2 := strconv.ParseUint(b, 16, 64)
	if !found || err1 != nil || err2 != nil || h <= l {
		return 0, 0, "", false
	}
	return uintptr(l), uintptr(h), strings.TrimLeft(rest, " "), true
}
