package pgtest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A standalone cluster (no testing.TB, as a benchmark command starts it)
// takes connections for a fresh database, and Close stops it and removes
// its directories.
func TestStartStandalone(t *testing.T) {
	Start(t) // fails under CI=true, skips loudly otherwise, when not installed
	dir := t.TempDir()
	s, err := StartStandalone(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	dsn, err := s.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1: %d, %v", one, err)
	}
	_ = conn.Close(ctx)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("Close left %d entries in %s", len(ents), dir)
	}
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Fatal("the server still answers after Close")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
}

// Without the binaries StartStandalone returns ErrNotInstalled (outside
// CI), leaving nothing behind, instead of panicking or exiting.
func TestStartStandaloneNotInstalled(t *testing.T) {
	t.Setenv("KEYGATE_PG_BINDIR", "/nonexistent")
	t.Setenv("CI", "")
	dir := t.TempDir()
	s, err := StartStandalone(dir, false)
	if !errors.Is(err, ErrNotInstalled) || s != nil {
		t.Fatalf("StartStandalone without binaries: %v, %v; want ErrNotInstalled", s, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a failed start left %d entries in %s", len(ents), dir)
	}
}
