package pgtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// ErrNotInstalled is returned by StartStandalone when the server binaries
// are missing: the caller decides whether that is fatal (a benchmark that
// reports leaves its PostgreSQL rows out, saying why).
var ErrNotInstalled = errors.New("pgtest: PostgreSQL is not installed")

// Standalone is a cluster started outside a test (by a benchmark command):
// Close stops it and removes its directories.
type Standalone struct {
	*Cluster
	tb *standaloneTB
}

// StartStandalone starts a throwaway cluster as Start does (initdb and
// pg_ctl in a fresh directory under dir, a unix socket only), for programs
// that have no testing.TB, such as bench/cmd/proxybench. durable turns
// fsync on, as StartDurable does. Close it when done.
func StartStandalone(dir string, durable bool) (s *Standalone, err error) {
	base, err := os.MkdirTemp(dir, "pg")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	tb := &standaloneTB{base: base}
	defer func() {
		if r := recover(); r != nil {
			stop, ok := r.(standaloneStop)
			if !ok {
				panic(r)
			}
			tb.cleanup()
			err = stop.err
		}
	}()
	c := start(tb, durable)
	return &Standalone{Cluster: c, tb: tb}, nil
}

// NewDatabase is Cluster.NewDatabase for a standalone cluster.
func (s *Standalone) NewDatabase() (dsn string, err error) {
	defer func() {
		if r := recover(); r != nil {
			stop, ok := r.(standaloneStop)
			if !ok {
				panic(r)
			}
			err = stop.err
		}
	}()
	return s.Cluster.NewDatabase(s.tb), nil
}

// Close stops the server and removes its directories; the first problem
// met on the way is returned.
func (s *Standalone) Close() error {
	s.tb.cleanup()
	s.tb.mu.Lock()
	defer s.tb.mu.Unlock()
	return s.tb.firstErr
}

// standaloneTB stands in for the testing.TB that start and the Cluster's
// methods take. Fatal and Skip unwind with a panic that StartStandalone
// and NewDatabase turn back into an error; Errorf records the error for
// Close. Embedding the interface supplies testing.TB's unexported method;
// every method start calls is defined below, so the nil interface is
// never reached.
type standaloneTB struct {
	testing.TB
	base string

	mu       sync.Mutex
	cleanups []func()
	firstErr error
	dirs     int
}

// standaloneStop is the panic value of Fatal and Skip.
type standaloneStop struct{ err error }

func (t *standaloneTB) Helper()             {}
func (t *standaloneTB) Name() string        { return "pgtest.StartStandalone" }
func (t *standaloneTB) Logf(string, ...any) {}
func (t *standaloneTB) Log(...any)          {}

func (t *standaloneTB) Fatal(args ...any) { panic(standaloneStop{errors.New(fmt.Sprint(args...))}) }

func (t *standaloneTB) Fatalf(format string, args ...any) {
	panic(standaloneStop{fmt.Errorf(format, args...)})
}

// Skip is how start says the binaries are missing (outside CI).
func (t *standaloneTB) Skip(args ...any) {
	panic(standaloneStop{fmt.Errorf("%w: %s", ErrNotInstalled, fmt.Sprint(args...))})
}

func (t *standaloneTB) Error(args ...any) { t.record(errors.New(fmt.Sprint(args...))) }

func (t *standaloneTB) Errorf(format string, args ...any) { t.record(fmt.Errorf(format, args...)) }

func (t *standaloneTB) record(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.firstErr == nil {
		t.firstErr = err
	}
}

// TempDir hands out directories under the cluster's base directory, which
// Close removes.
func (t *standaloneTB) TempDir() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dirs++
	d := filepath.Join(t.base, fmt.Sprintf("%03d", t.dirs))
	if err := os.Mkdir(d, 0o700); err != nil {
		panic(standaloneStop{fmt.Errorf("pgtest: %w", err)})
	}
	return d
}

func (t *standaloneTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

// cleanup runs the cleanups last first, as testing does, then removes the
// base directory. A second call does nothing.
func (t *standaloneTB) cleanup() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	base := t.base
	t.base = ""
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					stop, ok := r.(standaloneStop)
					if !ok {
						panic(r)
					}
					t.record(stop.err)
				}
			}()
			fs[i]()
		}()
	}
	if base != "" {
		if err := os.RemoveAll(base); err != nil {
			t.record(fmt.Errorf("pgtest: %w", err))
		}
	}
}

// Interface guards.
var _ testing.TB = (*standaloneTB)(nil)
