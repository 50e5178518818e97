// Package nginxtest finds a real nginx for tests and waits for servers the
// tests start as processes. It is a test helper, shared by the web suites
// (forward-auth behind nginx) and cmd/keygate's (replicas behind an nginx
// load balancer); never imported by production code.
package nginxtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Binary finds nginx, or fails when CI=true (CI installs it) and skips
// loudly elsewhere, naming what did not run.
func Binary(t testing.TB, what string) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx" // not on a non-root user's PATH
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx missing: .ci/run installs it")
	}
	t.Skipf("SKIPPED: nginx is not installed (apt-get install nginx); %s did not run", what)
	return ""
}

// WaitAccept waits until addr accepts a connection, the process behind it
// exits (done closes), or timeout passes.
func WaitAccept(addr string, done <-chan struct{}, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); ; {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return errors.New("exited before accepting on " + addr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("does not accept on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TempPaths is the http block's *_temp_path lines for a test nginx whose
// every file lives under dir.
func TempPaths(dir string) string {
	var b strings.Builder
	for _, name := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&b, "    %s_temp_path %s;\n", name, filepath.Join(dir, name))
	}
	return b.String()
}
