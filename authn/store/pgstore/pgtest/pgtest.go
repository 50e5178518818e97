// Package pgtest starts a throwaway PostgreSQL cluster for tests: Debian's
// initdb and pg_ctl in a temporary directory, listening on a unix socket
// only (no TCP port to clash with anything), stopped when the test ends.
//
// Tests never rely on a server someone else started. When the binaries are
// missing the test fails under CI=true (CI installs them) and is skipped,
// loudly, otherwise.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir is where Debian's postgresql-15 package installs the server tools.
// KEYGATE_PG_BINDIR overrides it.
const BinDir = "/usr/lib/postgresql/15/bin"

// superuser is the role initdb creates; tests connect as it.
const superuser = "keygate"

// Cluster is one running PostgreSQL server.
type Cluster struct {
	dataDir string
	sockDir string
	binDir  string
	asUser  []string // command prefix that runs a tool as the cluster's OS user
	opts    string   // the server's options (pg_ctl -o)
	logFile string

	mu      sync.Mutex
	running bool
}

func binDir() string {
	if d := os.Getenv("KEYGATE_PG_BINDIR"); d != "" {
		return d
	}
	return BinDir
}

// Start initialises and starts a cluster for t; it is stopped and removed
// when t's cleanup runs.
func Start(t testing.TB) *Cluster {
	t.Helper()
	return start(t, false)
}

// StartDurable is Start with fsync on, as a production server runs: for
// benchmarks whose figure includes a commit's flush to disk (Start's
// cluster skips it).
func StartDurable(t testing.TB) *Cluster {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, durable bool) *Cluster {
	t.Helper()
	bin := binDir()
	for _, tool := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, tool)); err != nil {
			msg := fmt.Sprintf("pgtest: PostgreSQL is not installed (%s missing; apt-get install postgresql): %v", tool, err)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip("SKIPPING: " + msg)
		}
	}
	c := &Cluster{binDir: bin}

	// PostgreSQL refuses to run as root. As root we run the tools as the
	// "postgres" OS user that the Debian package creates, and hand that
	// user the directories it writes to.
	var uid, gid int = -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pgtest: running as root and no postgres OS user to run the server as: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		c.asUser = []string{"runuser", "-u", "postgres", "--"}
	}

	base := t.TempDir()
	// The server's user must be able to reach its directories: t.TempDir
	// and its parent are 0700 and owned by us.
	if uid >= 0 {
		for _, d := range []string{filepath.Dir(base), base} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatalf("pgtest: %v", err)
			}
		}
	}
	c.dataDir = filepath.Join(base, "data")
	c.sockDir = filepath.Join(base, "sock")
	// A unix socket path must fit in 107 bytes; a long test name can make
	// the temp dir too deep, so fall back to a short directory then.
	if len(c.sockDir)+len("/.s.PGSQL.5432") > 100 {
		short, err := os.MkdirTemp("", "kgpg")
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(short) })
		if uid >= 0 {
			_ = os.Chmod(short, 0o711)
		}
		c.sockDir = filepath.Join(short, "s")
	}
	for _, d := range []string{c.dataDir, c.sockDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if uid >= 0 {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatalf("pgtest: %v", err)
			}
		}
	}

	start := time.Now()
	// trust on the socket only: nothing listens on TCP, and the socket's
	// directory is reachable by this machine's root and postgres only.
	c.run(t, "initdb", "-D", c.dataDir, "-U", superuser, "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions")
	// fsync off: a test cluster is thrown away, and fsyncs would make the
	// suite slow on a busy machine. Durability is PostgreSQL's, not ours
	// to test; synchronous_commit still behaves as configured.
	flush := []string{"-c fsync=off", "-c full_page_writes=off"}
	if durable {
		flush = []string{"-c fsync=on", "-c full_page_writes=on"}
	}
	c.opts = strings.Join(append([]string{
		"-c listen_addresses=''",
		"-k " + c.sockDir,
		"-c max_connections=200",
		"-c shared_buffers=16MB",
	}, flush...), " ")
	c.logFile = filepath.Join(c.dataDir, "server.log")
	t.Cleanup(func() { c.Stop(t) })
	c.Resume(t)
	t.Logf("pgtest: PostgreSQL cluster up in %v (socket dir %s)", time.Since(start).Round(time.Millisecond), c.sockDir)
	return c
}

func (c *Cluster) cmd(tool string, args ...string) *exec.Cmd {
	argv := append(append([]string{}, c.asUser...), filepath.Join(c.binDir, tool))
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func (c *Cluster) run(t testing.TB, tool string, args ...string) {
	t.Helper()
	if out, err := c.cmd(tool, args...).CombinedOutput(); err != nil {
		t.Fatalf("pgtest: %s: %v\n%s", tool, err, out)
	}
}

// Stop stops the server (as an outage would: immediately, connections
// cut). It is a no-op when the server is not running.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return
	}
	// "immediate": no checkpoint, connections dropped; the data survives
	// (crash recovery on the next start).
	if out, err := c.cmd("pg_ctl", "-D", c.dataDir, "-m", "immediate", "-w", "stop").CombinedOutput(); err != nil {
		t.Errorf("pgtest: pg_ctl stop: %v\n%s", err, out)
		return
	}
	c.running = false
}

// Resume starts the server again after Stop, on the same socket and data.
func (c *Cluster) Resume(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return
	}
	if out, err := c.cmd("pg_ctl", "-D", c.dataDir, "-o", c.opts, "-l", c.logFile, "-w", "-t", "30", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(c.logFile)
		t.Fatalf("pgtest: pg_ctl start: %v\n%s\nserver log:\n%s", err, out, log)
	}
	c.running = true
}

// DSN returns the connection string for database db on this cluster.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("host=%s port=5432 user=%s dbname=%s sslmode=disable", c.sockDir, superuser, db)
}

// NewDatabase creates an empty database and returns its DSN. It is dropped
// with the cluster.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "t_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return c.DSN(name)
}

// Dump runs pg_dump on the database of dsn (from NewDatabase) and returns
// the SQL text: what a stolen backup would reveal.
func (c *Cluster) Dump(t testing.TB, dsn string) []byte {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cmd := c.cmd("pg_dump", "-h", c.sockDir, "-U", superuser, "-d", cfg.Database)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pgtest: pg_dump: %v", err)
	}
	return out
}
