package pgtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Without the server binaries a test fails under CI=true and is skipped,
// saying why, otherwise. Run in a child process, since a failing t is the
// point.
func TestMissingBinaries(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") == "1" {
		Start(t)
		t.Fatal("Start returned without PostgreSQL")
	}
	for _, tc := range []struct {
		ci       string
		wantFail bool
		wantOut  string
	}{
		{"true", true, "PostgreSQL is not installed"},
		{"", false, "SKIPPING: pgtest: PostgreSQL is not installed"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingBinaries$", "-test.v")
		cmd.Env = append(os.Environ(), "PGTEST_CHILD=1", "KEYGATE_PG_BINDIR=/nonexistent", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.wantFail {
			t.Errorf("CI=%q: child failed = %v, want %v\n%s", tc.ci, failed, tc.wantFail, out)
		}
		if !strings.Contains(string(out), tc.wantOut) {
			t.Errorf("CI=%q: output lacks %q:\n%s", tc.ci, tc.wantOut, out)
		}
	}
}

// A cluster starts, takes connections for fresh databases, and dumps.
func TestStart(t *testing.T) {
	c := Start(t)
	a, b := c.NewDatabase(t), c.NewDatabase(t)
	if a == b {
		t.Fatalf("two NewDatabase calls gave the same DSN %q", a)
	}
	if dump := c.Dump(t, a); !strings.Contains(string(dump), "PostgreSQL database dump") {
		t.Fatalf("Dump output does not look like pg_dump's:\n%.300s", dump)
	}
}
