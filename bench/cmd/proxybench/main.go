// Command proxybench measures keygate's proxy path against the alternatives
// on loopback, with wrk: the upstream directly, a tuned bare
// httputil.ReverseProxy (keygate's transport and buffer pool), keygate
// itself (the real binary, a two-factor session cookie in every request,
// its default configuration: access log and metrics on) and nginx
// proxy_pass. Targets run interleaved, round after round, so that the
// noise of a shared machine hits all of them alike; the table shows
// medians over the rounds, and CPU time per request (utime+stime of the
// server's processes from /proc, divided by the requests wrk completed),
// the steadiest figure on a noisy machine.
//
// `make bench` runs it; it never fails on a number, it reports. Usage:
//
//	proxybench [-keygate bin/keygate] [-rounds 3] [-duration 10s] [-scale]
//	proxybench upstream   (internal: the fixed upstream)
//	proxybench bare UPSTREAM_URL   (internal: the bare proxy)
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
	"github.com/keygate/keygate/web"
)

const benchHost = "app.bench.test"

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "upstream":
			serveUpstream()
			return
		case "bare":
			serveBare(os.Args[2])
			return
		}
	}
	o := options{}
	flag.StringVar(&o.keygate, "keygate", "bin/keygate", "the keygate binary")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "wrk duration at 64 connections")
	flag.DurationVar(&o.c1, "c1-duration", 2*time.Second, "wrk duration at 1 connection")
	flag.BoolVar(&o.scale, "scale", true, "also measure start-up and memory with 100k users and 100k sessions")
	flag.IntVar(&o.scaleN, "scale-n", 100_000, "users and sessions for -scale")
	flag.BoolVar(&o.noLog, "variant-nolog", false, "also run keygate with log.access: false")
	flag.StringVar(&o.gogc, "variant-gogc", "", "also run keygate with these GOGC values (comma-separated)")
	flag.IntVar(&o.pairs, "pairs", 4, "rounds of keygate and the bare proxy loaded at the same time")
	flag.BoolVar(&o.bareIdentity, "pair-bare-identity", false, "also pair keygate with a bare proxy that sends keygate's identity headers")
	flag.BoolVar(&o.aa, "pair-aa", false, "also pair two identical bare proxies (the method's own bias and noise)")
	flag.DurationVar(&o.pairDuration, "pair-duration", 6*time.Second, "wrk duration of a paired round")
	flag.BoolVar(&o.postgres, "postgres", true, "also load keygate on storage.backend: postgres (a throwaway cluster, fsync on)")
	flag.IntVar(&o.signIns, "signins", 100, "password sign-ins through the login API on each backend (0: none)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "proxybench:", err)
		os.Exit(1)
	}
}

type options struct {
	keygate      string
	rounds       int
	duration, c1 time.Duration
	scale, noLog bool
	scaleN       int
	gogc         string
	pairs        int
	pairDuration time.Duration
	bareIdentity bool
	aa           bool
	postgres     bool
	signIns      int
}

// serveUpstream is the fixed app: 1 KiB of text for every request.
func serveUpstream() {
	body := []byte(strings.Repeat("k", 1024))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	fmt.Println(ln.Addr().String())
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "1024")
		_, _ = w.Write(body)
	})
	fatal((&http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}).Serve(ln))
}

// serveBare is the reference proxy: what a Go developer would write with
// the standard library when tuning it as keygate does (same transport,
// same buffer pool, same server timeouts), and nothing else.
func serveBare(upstream string) {
	target, err := url.Parse(upstream)
	if err != nil {
		fatal(err)
	}
	// PROXYBENCH_IDENTITY=1 makes the bare proxy send the headers keygate
	// sends besides X-Forwarded-* (identity and request ID, fixed values):
	// it separates the cost of carrying them from keygate's own work.
	identity := os.Getenv("PROXYBENCH_IDENTITY") == "1"
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			if identity {
				h := pr.Out.Header
				h["X-Request-Id"] = []string{"0123456789abcdef"}
				h["Remote-User"] = []string{"user000000"}
				h["Remote-Email"] = []string{"user000000@seed.example.com"}
				h["Remote-Groups"] = []string{"staff"}
				h["Remote-Name"] = []string{"Seeded user000000"}
				h["Remote-Factors"] = []string{"password,totp"}
			}
		},
		Transport:  web.NewTransport(),
		BufferPool: web.NewBufferPool(),
		// wrk closes its connections mid-request at the end of a run;
		// ReverseProxy's default handler would log each.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	fmt.Println(ln.Addr().String())
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	fatal(srv.Serve(ln))
}

func fatal(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// proc is a server under test.
type proc struct {
	name string
	cmd  *exec.Cmd
	addr string
	// pids lists the processes whose CPU time counts (nginx: master and
	// workers).
	pids func() []int
}

// URL is the server's base URL.
func (p *proc) URL() string { return "http://" + p.addr }

func (p *proc) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// startChild runs this program in one of its server modes and reads the
// address it prints.
func startChild(name string, env []string, args ...string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, addr: strings.TrimSpace(line)}
	p.pids = func() []int { return []int{cmd.Process.Pid} }
	return p, nil
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitHTTP polls url until it answers want.
func waitHTTP(url string, header http.Header, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header = header.Clone()
		req.Host = header.Get("Host")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", url, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// keygateConfig writes a configuration for one keygate under test: on
// Badger in dir, or on PostgreSQL when dsnFile names a file holding the
// connection string.
func keygateConfig(dir, listen, metrics, upstream string, access bool, dsnFile string) (string, error) {
	keyFile := filepath.Join(dir, "storage.key")
	if _, err := os.Stat(keyFile); errors.Is(err, os.ErrNotExist) {
		if _, err := badgerstore.GenerateKeyFile(keyFile); err != nil {
			return "", err
		}
	}
	backend := ""
	if dsnFile != "" {
		backend = fmt.Sprintf("  backend: postgres\n  postgres:\n    dsn_file: %q\n", dsnFile)
	}
	cfg := fmt.Sprintf(`server:
  listen: %q
storage:
  path: %q
  encryption_key_file: %q
%ssession:
  idle_timeout: 12h
metrics:
  listen: %q
log:
  access: %v
upstreams:
  - host: %s
    url: %s
policy:
  default: two_factor
  rules:
    - name: public
      hosts: [%s]
      paths: ["/static/*"]
      action: bypass
`, listen, filepath.Join(dir, "data"), keyFile, backend, metrics, access, benchHost, upstream, benchHost)
	path := filepath.Join(dir, "keygate.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// startKeygate seeds a store (one user with a two-factor session unless
// users/sessions say more) and starts keygate serve on it.
func startKeygate(bin, dir, upstream string, access bool, users, sessions int, env ...string) (*proc, string, time.Duration, error) {
	cfg, listen, cookie, err := seedKeygate(bin, dir, upstream, access, users, sessions)
	if err != nil {
		return nil, "", 0, err
	}
	p, took, err := launchKeygate(bin, cfg, dir, listen, env...)
	return p, cookie, took, err
}

// seedKeygate writes a Badger configuration in dir and seeds its store
// with keygate dev seed; it returns the configuration, the address to
// listen on and the two-factor session's cookie.
func seedKeygate(bin, dir, upstream string, access bool, users, sessions int) (cfg, listen, cookie string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", "", err
	}
	listen = freeAddr()
	cfg, err = keygateConfig(dir, listen, freeAddr(), upstream, access, "")
	if err != nil {
		return "", "", "", err
	}
	cookieFile := filepath.Join(dir, "cookie")
	seed := exec.Command(bin, "dev", "seed", "--config", cfg, "--users", strconv.Itoa(users), "--sessions", strconv.Itoa(sessions), "--session-out", cookieFile)
	if out, err := seed.CombinedOutput(); err != nil {
		return "", "", "", fmt.Errorf("keygate dev seed: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(cookieFile)
	if err != nil {
		return "", "", "", err
	}
	return cfg, listen, strings.TrimSpace(string(raw)), nil
}

// startKeygatePostgres is startKeygate on storage.backend: postgres: dev
// seed writes Badger only, so the seeded store is moved into a fresh
// database of the cluster with keygate migrate (sessions keep their
// cookies), and keygate serve runs on that database.
func startKeygatePostgres(bin, dir, upstream string, pg *pgtest.Standalone, users, sessions int) (*proc, string, string, error) {
	cfg, listen, cookie, err := seedKeygate(bin, dir, upstream, true, users, sessions)
	if err != nil {
		return nil, "", "", err
	}
	dsn, err := pg.NewDatabase()
	if err != nil {
		return nil, "", "", err
	}
	dsnFile := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		return nil, "", "", err
	}
	mig := exec.Command(bin, "migrate", "--config", cfg, "--from", "badger:"+filepath.Join(dir, "data"), "--to", "postgres-file:"+dsnFile)
	if out, err := mig.CombinedOutput(); err != nil {
		return nil, "", "", fmt.Errorf("keygate migrate to PostgreSQL: %v\n%s", err, out)
	}
	if _, err := keygateConfig(dir, listen, freeAddr(), upstream, true, dsnFile); err != nil {
		return nil, "", "", err
	}
	p, _, err := launchKeygate(bin, cfg, dir, listen)
	if err != nil {
		return nil, "", "", err
	}
	return p, cookie, dsn, nil
}

// launchKeygate starts keygate serve and returns how long it took to
// answer its health check.
func launchKeygate(bin, cfg, dir, listen string, env ...string) (*proc, time.Duration, error) {
	logf, err := os.Create(filepath.Join(dir, "keygate.log"))
	if err != nil {
		return nil, 0, err
	}
	cmd := exec.Command(bin, "serve", "--config", cfg)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	p := &proc{name: "keygate", cmd: cmd, addr: listen}
	p.pids = func() []int { return []int{cmd.Process.Pid} }
	h := http.Header{"Host": {benchHost}}
	if err := waitHTTP("http://"+listen+"/.keygate/healthz", h, http.StatusOK, 60*time.Second); err != nil {
		p.stop()
		log, _ := os.ReadFile(logf.Name())
		return nil, 0, fmt.Errorf("keygate did not start: %v\n%s", err, log)
	}
	return p, time.Since(start), nil
}

// startNginx runs nginx with proxy_pass to the upstream, keep-alive to it,
// and a buffered access log, as one would run it in production.
func startNginx(dir, upstream string) (*proc, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return nil, err
		}
		bin = "/usr/sbin/nginx"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	listen := freeAddr()
	up := strings.TrimPrefix(upstream, "http://")
	conf := fmt.Sprintf(`worker_processes 2;
error_log %[1]s/error.log warn;
pid %[1]s/nginx.pid;
events { worker_connections 4096; }
http {
    access_log %[1]s/access.log combined buffer=64k flush=1s;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    proxy_max_temp_file_size 0;
    upstream app {
        server %[2]s;
        keepalive 256;
    }
    server {
        listen %[3]s;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
}
`, dir, up, listen)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-e", filepath.Join(dir, "error.log"), "-p", dir+"/", "-c", path, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{name: "nginx proxy_pass", cmd: cmd, addr: listen}
	p.pids = func() []int { return append([]int{cmd.Process.Pid}, children(cmd.Process.Pid)...) }
	if err := waitHTTP("http://"+listen+"/", http.Header{"Host": {benchHost}}, http.StatusOK, 10*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(n); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// statFields are the fields of /proc/PID/stat after the command name:
// [0] state, [1] ppid, …, [11] utime, [12] stime (in clock ticks).
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	return strings.Fields(s)
}

var clkTck = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		return 100
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil || v <= 0 {
		return 100
	}
	return v
}()

// cpuSeconds is the user+system CPU time of the processes so far.
func cpuSeconds(pids []int) float64 {
	var ticks float64
	for _, pid := range pids {
		f := statFields(pid)
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseFloat(f[11], 64)
		s, _ := strconv.ParseFloat(f[12], 64)
		ticks += u + s
	}
	return ticks / clkTck
}

// rssMiB is the resident memory of a process (VmRSS).
func rssMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// wrkResult is one wrk run.
type wrkResult struct {
	rps       float64
	p50, p99  time.Duration
	requests  float64
	errors    int
	cpuPerReq time.Duration
}

func runWrk(ctx context.Context, p *proc, threads, conns int, d time.Duration, header http.Header) (wrkResult, error) {
	args := []string{fmt.Sprintf("-t%d", threads), fmt.Sprintf("-c%d", conns), "-d" + d.String(), "--latency"}
	for k, vs := range header {
		for _, v := range vs {
			args = append(args, "-H", k+": "+v)
		}
	}
	args = append(args, "http://"+p.addr+pathOf(p))
	cpu0 := cpuSeconds(p.pids())
	out, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
	cpu1 := cpuSeconds(p.pids())
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	r, err := parseWrk(string(out))
	if err != nil {
		return r, fmt.Errorf("%w\n%s", err, out)
	}
	if r.requests > 0 {
		r.cpuPerReq = time.Duration((cpu1 - cpu0) / r.requests * 1e9)
	}
	return r, nil
}

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.rps, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "50%":
			r.p50 = parseWrkDuration(f[1])
		case len(f) == 2 && f[0] == "99%":
			r.p99 = parseWrkDuration(f[1])
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			r.requests, _ = strconv.ParseFloat(f[0], 64)
		case strings.HasPrefix(strings.TrimSpace(line), "Non-2xx or 3xx responses:"):
			r.errors, _ = strconv.Atoi(f[len(f)-1])
		case strings.HasPrefix(strings.TrimSpace(line), "Socket errors:"):
			r.errors++
		}
	}
	if r.rps == 0 || r.requests == 0 {
		return r, errors.New("could not read wrk's output")
	}
	return r, nil
}

// parseWrkDuration reads wrk's "812.00us", "1.23ms", "2.00s".
func parseWrkDuration(s string) time.Duration {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"m", time.Minute}, {"s", time.Second}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0
			}
			return time.Duration(f * float64(u.unit))
		}
	}
	return 0
}

type sample struct {
	c64 wrkResult
	c1  wrkResult
}

func run(o options) error {
	for _, tool := range []string{"wrk"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (make bench installs it with apt-get)", tool)
		}
	}
	if _, err := os.Stat(o.keygate); err != nil {
		return fmt.Errorf("keygate binary: %w (make bench builds it)", err)
	}
	tmp, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil { // nginx's workers run as nobody
		return err
	}

	up, err := startChild("direct (no proxy)", nil, "upstream")
	if err != nil {
		return err
	}
	defer up.stop()
	upURL := "http://" + up.addr
	// The bare proxy runs with keygate's GC target, so the comparison
	// measures keygate's own work, not a runtime setting.
	bare, err := startChild("bare ReverseProxy", []string{"GOGC=200"}, "bare", upURL)
	if err != nil {
		return err
	}
	defer bare.stop()
	// user000000 holds the session; the others are for the sign-in phase.
	kg, cookie, startup, err := startKeygate(o.keygate, filepath.Join(tmp, "keygate"), upURL, true, 1+o.signIns, 1)
	if err != nil {
		return err
	}
	defer kg.stop()
	idleRSS := rssMiB(kg.cmd.Process.Pid)
	var kgPG *proc
	var db *dbCounter
	if o.postgres {
		pg, err := pgtest.StartStandalone(tmp, true)
		if err != nil {
			fmt.Fprintln(os.Stderr, "proxybench: the PostgreSQL row left out:", err)
		} else {
			defer func() {
				if err := pg.Close(); err != nil {
					fmt.Fprintln(os.Stderr, "proxybench: stopping PostgreSQL:", err)
				}
			}()
			p, c, dsn, err := startKeygatePostgres(o.keygate, filepath.Join(tmp, "keygate-pg"), upURL, pg, 1+o.signIns, 1)
			if err != nil {
				return err
			}
			defer p.stop()
			if db, err = newDBCounter(pg, dsn); err != nil {
				return err
			}
			defer db.close()
			p.name = "keygate on PostgreSQL (storage.backend: postgres)"
			kgPG = withCookie(p, c)
		}
	}
	// The same keygate for a path that is judged in several readings
	// (upper case, a trailing dot, an encoded slash, a double-encoded
	// letter: ten readings), the cost of policy.Readings off the hot path.
	kgReadings := withPath(&proc{name: "keygate, a path with 10 readings (" + readingsPath + ")", addr: kg.addr, pids: kg.pids}, readingsPath)
	targets := []*proc{up, bare, kg, kgReadings}
	if kgPG != nil {
		targets = append(targets, kgPG)
	}
	if o.noLog {
		kn, _, _, err := startKeygate(o.keygate, filepath.Join(tmp, "keygate-nolog"), upURL, false, 1, 1)
		if err != nil {
			return err
		}
		defer kn.stop()
		kn.name = "keygate (log.access: false)"
		// The seeded session of this store is a different one.
		raw, _ := os.ReadFile(filepath.Join(tmp, "keygate-nolog", "cookie"))
		targets = append(targets, withCookie(kn, strings.TrimSpace(string(raw))))
	}
	for g := range strings.SplitSeq(o.gogc, ",") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		dir := filepath.Join(tmp, "keygate-gogc-"+g)
		kv, c, _, err := startKeygate(o.keygate, dir, upURL, true, 1, 1, "GOGC="+g)
		if err != nil {
			return err
		}
		defer kv.stop()
		kv.name = "keygate (GOGC=" + g + ")"
		targets = append(targets, withCookie(kv, c))
	}
	ng, err := startNginx(filepath.Join(tmp, "nginx"), upURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxybench: nginx left out:", err)
	} else {
		defer ng.stop()
		targets = append(targets, ng)
	}

	header := http.Header{"Host": {benchHost}, "Cookie": {"keygate_session=" + cookie}}
	headerOf := func(p *proc) http.Header {
		if c, ok := cookies[p]; ok {
			h := header.Clone()
			h.Set("Cookie", "keygate_session="+c)
			return h
		}
		return header
	}
	// Every target must answer 200 with the cookie: a challenge (302/401)
	// would measure the wrong thing.
	for _, p := range targets {
		if err := waitHTTP("http://"+p.addr+pathOf(p), headerOf(p), http.StatusOK, 5*time.Second); err != nil {
			return fmt.Errorf("%s does not answer 200: %w", p.name, err)
		}
	}
	ctx := context.Background()
	fmt.Printf("warming up %d servers…\n", len(targets))
	for _, p := range targets {
		if _, err := runWrk(ctx, p, 2, 64, 2*time.Second, headerOf(p)); err != nil {
			return err
		}
	}
	results := map[*proc][]sample{}
	var txLoaded, txIdle dbWindow // the database's transactions while kgPG was loaded, and while others were
	for round := range o.rounds {
		// Rotate the order each round so that no target always runs
		// first or last (thermal and neighbour noise drift).
		order := slices.Clone(targets)
		for range round {
			order = append(order[1:], order[0])
		}
		for _, p := range order {
			var s sample
			w := db.begin()
			if s.c64, err = runWrk(ctx, p, 2, 64, o.duration, headerOf(p)); err != nil {
				return err
			}
			if s.c1, err = runWrk(ctx, p, 1, 1, o.c1, headerOf(p)); err != nil {
				return err
			}
			if db != nil {
				w = db.end(w, s.c64.requests+s.c1.requests)
				if p == kgPG {
					txLoaded.add(w)
					fmt.Printf("round %d database: %d transactions in %.1f s while keygate on PostgreSQL served %.0f requests\n", round+1, w.tx, w.seconds, w.requests)
				} else {
					txIdle.add(w)
				}
			}
			results[p] = append(results[p], s)
			fmt.Printf("round %d %-28s %8.0f req/s  p50 %-8s p99 %-8s c1 p50 %-8s CPU %5.1f µs/req  errors %d\n", round+1, p.name,
				s.c64.rps, s.c64.p50, s.c64.p99, s.c1.p50, float64(s.c64.cpuPerReq.Nanoseconds())/1e3, s.c64.errors+s.c1.errors)
		}
	}
	loadRSS := rssMiB(kg.cmd.Process.Pid)
	report(targets, results, up, bare, kg, ng, o)
	if db != nil {
		reportDB(txLoaded, txIdle)
	}
	if o.pairs > 0 {
		if err := paired(ctx, kg, bare, header, header, o); err != nil {
			return err
		}
		if o.aa {
			b2, err := startChild("a second bare ReverseProxy", []string{"GOGC=200"}, "bare", up.URL())
			if err != nil {
				return err
			}
			defer b2.stop()
			if err := paired(ctx, b2, bare, header, header, o); err != nil {
				return err
			}
		}
		if o.bareIdentity {
			bi, err := startChild("bare ReverseProxy + keygate's headers", []string{"GOGC=200", "PROXYBENCH_IDENTITY=1"}, "bare", up.URL())
			if err != nil {
				return err
			}
			defer bi.stop()
			if err := paired(ctx, kg, bi, header, header, o); err != nil {
				return err
			}
		}
		for _, p := range targets {
			if c := cookies[p]; c != "" { // the variants, against the bare proxy too
				if err := paired(ctx, p, bare, headerOf(p), header, o); err != nil {
					return err
				}
			}
		}
		if kgPG != nil {
			// The two backends against each other, loaded together: the
			// direct answer to "does PostgreSQL cost the hot path anything".
			if err := paired(ctx, kgPG, kg, headerOf(kgPG), header, o); err != nil {
				return err
			}
		}
	}
	if o.signIns > 0 {
		if err := signIns(o.signIns, kg, kgPG); err != nil {
			fmt.Fprintln(os.Stderr, "proxybench: sign-in phase:", err)
		}
	}
	fmt.Printf("\nkeygate memory: %.1f MiB RSS idle after start, %.1f MiB after the load; start-up (exec to healthz) %s\n",
		idleRSS, loadRSS, startup.Round(time.Millisecond))
	if o.scale {
		if err := scale(o, tmp, upURL); err != nil {
			fmt.Fprintln(os.Stderr, "proxybench: scale phase:", err)
		}
	}
	return nil
}

// cookies holds the session cookie of targets that have their own store.
var cookies = map[*proc]string{}

func withCookie(p *proc, c string) *proc { cookies[p] = c; return p }

// readingsPath needs several readings (policy.Readings) where /page has one.
const readingsPath = "/Page.%2FSub%2520/x"

// paths holds the request path of targets that do not ask for /page.
var paths = map[*proc]string{}

func withPath(p *proc, path string) *proc { paths[p] = path; return p }

func pathOf(p *proc) string {
	if path, ok := paths[p]; ok {
		return path
	}
	return "/page"
}

func median[T any](xs []T, key func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = key(x)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func report(targets []*proc, res map[*proc][]sample, direct, bare, kg, ng *proc, o options) {
	fmt.Printf("\n## wrk -t2 -c64 -d%s, 1 KiB responses, loopback; medians of %d interleaved rounds\n\n", o.duration, o.rounds)
	fmt.Println("| server | req/s (c64) | p50 (c64) | p99 (c64) | p50 (c1) | CPU µs/request |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	us := func(d float64) string { return strconv.FormatFloat(d/1e3, 'f', 0, 64) + " µs" }
	for _, p := range targets {
		s := res[p]
		fmt.Printf("| %s | %.0f | %s | %s | %s | %.1f |\n", p.name,
			median(s, func(x sample) float64 { return x.c64.rps }),
			us(median(s, func(x sample) float64 { return float64(x.c64.p50) })),
			us(median(s, func(x sample) float64 { return float64(x.c64.p99) })),
			us(median(s, func(x sample) float64 { return float64(x.c1.p50) })),
			median(s, func(x sample) float64 { return float64(x.c64.cpuPerReq) })/1e3)
	}
	// Ratios per round (the targets of one round shared its conditions),
	// then their median.
	ratio := func(a, b *proc) float64 {
		if b == nil || len(res[b]) == 0 {
			return 0
		}
		var rs []float64
		for i := range min(len(res[a]), len(res[b])) {
			rs = append(rs, res[a][i].c64.rps/res[b][i].c64.rps)
		}
		return median(rs, func(x float64) float64 { return x })
	}
	cpuDiff := func(a, b *proc) float64 {
		var ds []float64
		for i := range min(len(res[a]), len(res[b])) {
			ds = append(ds, float64(res[a][i].c64.cpuPerReq-res[b][i].c64.cpuPerReq)/1e3)
		}
		return median(ds, func(x float64) float64 { return x })
	}
	fmt.Println()
	fmt.Printf("- keygate / bare proxy req/s: %.2f× (budget ≥ 0.95×); CPU keygate − bare: %+.1f µs/request (budget ≤ +5 µs)\n", ratio(kg, bare), cpuDiff(kg, bare))
	fmt.Printf("- keygate / direct req/s: %.2f× (budget ≥ 0.25×)\n", ratio(kg, direct))
	if ng != nil {
		fmt.Printf("- keygate / nginx proxy_pass req/s: %.2f×; CPU keygate − nginx: %+.1f µs/request\n", ratio(kg, ng), cpuDiff(kg, ng))
		fmt.Printf("- bare / nginx req/s: %.2f×\n", ratio(bare, ng))
	}
	for _, p := range targets {
		if cookies[p] != "" || paths[p] != "" {
			fmt.Printf("- %s / keygate req/s: %.2f×; CPU difference %+.1f µs/request\n", p.name, ratio(p, kg), cpuDiff(p, kg))
		}
	}
}

// paired loads keygate and the bare proxy at the same time (wrk -t1 -c32
// each), round after round. Whatever the neighbours do to the machine then
// hits both alike, so the difference in CPU time per request is far
// steadier than between runs taken one after the other; and with the CPU
// shared, the ratio of their req/s is the ratio of their costs.
func paired(ctx context.Context, kg, bare *proc, kgHeader, header http.Header, o options) error {
	var diffs, ratios []float64
	fmt.Printf("\n## Paired: %s and %s under load at the same time (wrk -t1 -c32 each, %s, %d rounds)\n\n", kg.name, bare.name, o.pairDuration, o.pairs)
	for round := range o.pairs {
		var k, b wrkResult
		var errK, errB error
		done := make(chan struct{})
		go func() { k, errK = runWrk(ctx, kg, 1, 32, o.pairDuration, kgHeader); close(done) }()
		b, errB = runWrk(ctx, bare, 1, 32, o.pairDuration, header)
		<-done
		if err := errors.Join(errK, errB); err != nil {
			return err
		}
		d := float64(k.cpuPerReq-b.cpuPerReq) / 1e3
		diffs, ratios = append(diffs, d), append(ratios, k.rps/b.rps)
		fmt.Printf("- round %d: %.0f req/s, %.1f µs CPU/request against %.0f req/s, %.1f µs: difference %+.1f µs, ratio %.2f×\n",
			round+1, k.rps, float64(k.cpuPerReq.Nanoseconds())/1e3, b.rps, float64(b.cpuPerReq.Nanoseconds())/1e3, d, k.rps/b.rps)
	}
	id := func(x float64) float64 { return x }
	fmt.Printf("- median: %s − %s %+.1f µs CPU/request (budget for keygate ≤ +5 µs); ratio %.2f× req/s (budget ≥ 0.95×)\n",
		kg.name, bare.name, median(diffs, id), median(ratios, id))
	return nil
}

// scale seeds a store with many users, then many sessions, and reports
// keygate's start-up time and memory with them.
func scale(o options, tmp, upURL string) error {
	n := o.scaleN
	dir := filepath.Join(tmp, "scale")
	fmt.Printf("\n## Scale: %d users, then %d live sessions (keygate dev seed, cheap argon2id for seeding speed)\n\n", n, n)
	t0 := time.Now()
	p, _, startup, err := startKeygate(o.keygate, dir, upURL, true, n, 0)
	if err != nil {
		return err
	}
	seedUsers := time.Since(t0) - startup
	time.Sleep(time.Second)
	idle := rssMiB(p.cmd.Process.Pid)
	p.stop()
	// Start-up again on the warm page cache, as a restart would see it;
	// three times, the median.
	var starts []float64
	cfg := filepath.Join(dir, "keygate.yaml")
	for range 3 {
		q, took, err := launchKeygate(o.keygate, cfg, dir, addrOf(cfg))
		if err != nil {
			return err
		}
		starts = append(starts, float64(took))
		q.stop()
	}
	fmt.Printf("- %d users: seeding took %s; start-up (exec to healthz answered) %s first, median of 3 restarts %s; idle RSS %.1f MiB\n",
		n, seedUsers.Round(time.Second), startup.Round(time.Millisecond), time.Duration(median(starts, func(x float64) float64 { return x })).Round(time.Millisecond), idle)

	t1 := time.Now()
	cookieFile := filepath.Join(dir, "cookie")
	seed := exec.Command(o.keygate, "dev", "seed", "--config", cfg, "--force", "--users", strconv.Itoa(n), "--sessions", strconv.Itoa(n),
		"--session-out", cookieFile)
	if out, err := seed.CombinedOutput(); err != nil {
		return fmt.Errorf("seed sessions: %v\n%s", err, out)
	}
	seedSessions := time.Since(t1)
	q, took, err := launchKeygate(o.keygate, cfg, dir, addrOf(cfg))
	if err != nil {
		return err
	}
	defer q.stop()
	time.Sleep(time.Second)
	idleRSS := rssMiB(q.cmd.Process.Pid)
	raw, _ := os.ReadFile(cookieFile)
	h := http.Header{"Host": {benchHost}, "Cookie": {"keygate_session=" + strings.TrimSpace(string(raw))}}
	r, err := runWrk(context.Background(), q, 2, 64, 5*time.Second, h)
	if err != nil {
		return err
	}
	fmt.Printf("- %d live sessions (+%d users): seeding took %s; start-up %s (decodes every session); RSS %.1f MiB idle, %.1f MiB after 5 s of wrk -c64 (%.0f req/s, %.1f µs CPU/request)\n",
		n, n, seedSessions.Round(time.Second), took.Round(time.Millisecond), idleRSS, rssMiB(q.cmd.Process.Pid),
		r.rps, float64(r.cpuPerReq.Nanoseconds())/1e3)
	q.stop()
	if o.postgres {
		return scalePostgres(o, tmp, upURL)
	}
	return nil
}

// scalePostgres is the sessions half of scale on storage.backend:
// postgres: the same seed moved into a throwaway cluster with keygate
// migrate, then the same idle and loaded readings. The sessions are the
// same in-memory cache; what differs is where they are loaded from and the
// feed that follows them.
func scalePostgres(o options, tmp, upURL string) error {
	n := o.scaleN
	pg, err := pgtest.StartStandalone(tmp, true)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxybench: the PostgreSQL scale row left out:", err)
		return nil
	}
	defer func() { _ = pg.Close() }()
	t0 := time.Now()
	p, cookie, _, err := startKeygatePostgres(o.keygate, filepath.Join(tmp, "scale-pg"), upURL, pg, n, n)
	if err != nil {
		return err
	}
	defer p.stop()
	prepared := time.Since(t0)
	time.Sleep(time.Second)
	idle := rssMiB(p.cmd.Process.Pid)
	h := http.Header{"Host": {benchHost}, "Cookie": {"keygate_session=" + cookie}}
	r, err := runWrk(context.Background(), p, 2, 64, 5*time.Second, h)
	if err != nil {
		return err
	}
	fmt.Printf("- on PostgreSQL, %d live sessions (+%d users; seeded, migrated and started in %s): RSS %.1f MiB idle, %.1f MiB after 5 s of wrk -c64 (%.0f req/s, %.1f µs CPU/request)\n",
		n, n, prepared.Round(time.Second), idle, rssMiB(p.cmd.Process.Pid), r.rps, float64(r.cpuPerReq.Nanoseconds())/1e3)
	return nil
}

// addrOf reads server.listen back from a configuration written by
// keygateConfig.
func addrOf(cfg string) string {
	b, _ := os.ReadFile(cfg)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "listen: "); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}
