package web

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/web/nginxtest"
)

// The real apps of the path battery (realapps_test.go). Each routes on
// paths with its own stack's rules and has the areas public, one, two and
// deny (plus the reserved prefix /.keygate/ and a catch-all "none"); every
// answer names the app and the area that produced it
// ("KG-REALAPP APP=tomcat AREA=two …"), and carries X-Realapp, so the test
// learns what the app served, not what keygate claims.

const realappsDir = "testdata/realapps"

// realApp is a started app, or why it could not start.
type realApp struct {
	name string
	addr string // host:port
	// missing names a part that is not installed: the app's subtests fail
	// in CI and skip loudly elsewhere.
	missing string
	err     error // it is installed but did not start
}

// need fails or skips the calling subtest when the app did not start.
func (a *realApp) need(t *testing.T) {
	t.Helper()
	if a.missing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: %s (.ci/run installs it)", a.name, a.missing)
		}
		t.Skipf("SKIPPED: %s: %s — this part of the real-app path battery did not run; CI fails instead", a.name, a.missing)
	}
	if a.err != nil {
		t.Fatalf("%s did not start: %v", a.name, a.err)
	}
}

// startRealApps starts every app at once (Tomcat's compile and JVM start
// dominate); they stop when t ends.
func startRealApps(t *testing.T) map[string]*realApp {
	starters := map[string]func(*testing.T) *realApp{
		"tomcat":  startTomcatApp,
		"express": startExpressApp,
		"gomux":   startGoMuxApp,
		"nginx":   startStaticNginxApp,
	}
	apps := map[string]*realApp{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, start := range starters {
		wg.Go(func() {
			a := start(t)
			a.name = name
			mu.Lock()
			apps[name] = a
			mu.Unlock()
		})
	}
	wg.Wait()
	return apps
}

// startAppProcess runs cmd until t ends and returns the port it prints as
// "PORT=<n>" on stdout.
func startAppProcess(t *testing.T, cmd *exec.Cmd) (int, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	done, err := startUntilCleanup(t, cmd)
	if err != nil {
		return 0, err
	}
	portc := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "PORT="); ok {
				n, _ := strconv.Atoi(p)
				portc <- n
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case p := <-portc:
		return p, nil
	case <-done:
		return 0, fmt.Errorf("%s exited before it listened:\n%s", cmd.Path, stderr.String())
	case <-time.After(45 * time.Second):
		return 0, fmt.Errorf("%s printed no PORT= in 45 s:\n%s", cmd.Path, stderr.String())
	}
}

// tomcatJar matches Debian's unversioned tomcat10 jar names (the versioned
// ones are the same files).
var tomcatJar = regexp.MustCompile(`^tomcat10-[a-z-]+\.jar$`)

// startTomcatApp compiles testdata/realapps/tomcat/RealApp.java against
// Debian's Tomcat 10 jars and runs it.
func startTomcatApp(t *testing.T) *realApp {
	a := &realApp{}
	javac, err1 := exec.LookPath("javac")
	java, err2 := exec.LookPath("java")
	if err1 != nil || err2 != nil {
		a.missing = "java/javac are not installed (apt-get install default-jdk-headless)"
		return a
	}
	if _, err := os.Stat("/usr/share/java/tomcat10-catalina.jar"); err != nil {
		a.missing = "Tomcat 10's jars are not installed (apt-get install libtomcat10-java)"
		return a
	}
	entries, err := os.ReadDir("/usr/share/java")
	if err != nil {
		a.err = err
		return a
	}
	var cp []string
	for _, e := range entries {
		if tomcatJar.MatchString(e.Name()) {
			cp = append(cp, filepath.Join("/usr/share/java", e.Name()))
		}
	}
	classes, base := t.TempDir(), t.TempDir()
	src, _ := filepath.Abs(filepath.Join(realappsDir, "tomcat", "RealApp.java"))
	if out, err := exec.Command(javac, "-nowarn", "-d", classes, "-cp", strings.Join(cp, ":"), src).CombinedOutput(); err != nil {
		a.err = fmt.Errorf("javac: %v\n%s", err, out)
		return a
	}
	// A small, quick-starting JVM: the app is tiny and runs for seconds.
	cmd := exec.Command(java, "-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
		"-cp", strings.Join(append(cp, classes), ":"), "RealApp", base)
	port, err := startAppProcess(t, cmd)
	if err != nil {
		a.err = err
		return a
	}
	a.addr = fmt.Sprintf("127.0.0.1:%d", port)
	return a
}

// startExpressApp runs testdata/realapps/express/app.js with the packages
// `npm ci` installed there.
func startExpressApp(t *testing.T) *realApp {
	a := &realApp{}
	node, err := exec.LookPath("node")
	if err != nil {
		a.missing = "node is not installed (apt-get install nodejs npm)"
		return a
	}
	dir, _ := filepath.Abs(filepath.Join(realappsDir, "express"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "express", "package.json")); err != nil {
		a.missing = "Express is not installed: run `npm ci` in web/" + realappsDir + "/express"
		return a
	}
	cmd := exec.Command(node, "app.js")
	cmd.Dir = dir
	port, err := startAppProcess(t, cmd)
	if err != nil {
		a.err = err
		return a
	}
	a.addr = fmt.Sprintf("127.0.0.1:%d", port)
	return a
}

// startGoMuxApp serves the areas with the standard library's ServeMux
// (Go 1.22+ patterns), which cleans paths and redirects to the clean form.
func startGoMuxApp(t *testing.T) *realApp {
	mux := http.NewServeMux()
	area := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "KG-REALAPP APP=gomux AREA=%s URI=%s\n", name, r.RequestURI)
		}
	}
	for _, name := range realAreas {
		mux.Handle("/"+name+"/", area(name))
	}
	mux.Handle("/.keygate/", area("reserved"))
	mux.Handle("/", area("none"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Realapp", "gomux") // also on the mux's own redirects and 404s
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return &realApp{addr: srv.Listener.Addr().String()}
}

// findNginx is nginxBinary without failing: the caller decides.
func findNginx() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	return ""
}

// startStaticNginxApp runs nginx with testdata/realapps/nginx/static.conf
// over a directory tree that has one directory per area.
func startStaticNginxApp(t *testing.T) *realApp {
	a := &realApp{}
	bin := findNginx()
	if bin == "" {
		a.missing = "nginx is not installed (apt-get install nginx)"
		return a
	}
	dir, root := t.TempDir(), t.TempDir()
	for _, name := range append(append([]string{}, realAreas...), ".keygate") {
		areaName := name
		if name == ".keygate" {
			areaName = "reserved"
		}
		for _, f := range []string{"index.html", "file.txt", "x/index.html", "x/file.txt"} {
			p := filepath.Join(root, name, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				a.err = err
				return a
			}
			body := fmt.Sprintf("KG-REALAPP APP=nginx AREA=%s FILE=/%s/%s\n", areaName, name, f)
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				a.err = err
				return a
			}
		}
	}
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("KG-REALAPP APP=nginx AREA=none FILE=/index.html\n"), 0o644); err != nil {
		a.err = err
		return a
	}
	tmpl, err := os.ReadFile(filepath.Join(realappsDir, "nginx", "static.conf"))
	if err != nil {
		a.err = err
		return a
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.err = err
		return a
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	user := ""
	if os.Geteuid() == 0 {
		// As root nginx's worker would run as nobody, which cannot enter
		// the test's temp dirs.
		user = "user root;"
	}
	conf := strings.NewReplacer("@USER@", user, "@DIR@", dir, "@ROOT@", root, "@PORT@", strconv.Itoa(port)).Replace(string(tmpl))
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		a.err = err
		return a
	}
	args := []string{"-e", filepath.Join(dir, "error.log"), "-p", dir + "/", "-c", confPath}
	if out, err := exec.Command(bin, append(args, "-t")...).CombinedOutput(); err != nil {
		a.err = fmt.Errorf("nginx -t refuses static.conf: %v\n%s", err, out)
		return a
	}
	cmd := exec.Command(bin, append(args, "-g", "daemon off;")...)
	var stderr syncBuffer // written by exec's copying goroutine
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	done, err := startUntilCleanup(t, cmd)
	if err != nil {
		a.err = err
		return a
	}
	a.addr = fmt.Sprintf("127.0.0.1:%d", port)
	if err := nginxtest.WaitAccept(a.addr, done, 10*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		a.err = fmt.Errorf("nginx %v: %s\n%s", err, stderr.String(), log)
	}
	return a
}

// startSnippetNginx runs real nginx with the shipped forward-auth snippet
// (examples/nginx/keygate.conf, templated by renderNginxConf like
// TestNginxAuthRequestSnippet does: only ports and addresses change) in
// front of appAddr, asking keygateAddr. It returns nginx's address. On
// failure it logs only the tail of nginx's error log: the battery makes
// nginx log one line per refused request.
func startSnippetNginx(t *testing.T, keygateAddr, appAddr string) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", startNginx(t, keygateAddr, appAddr))
}
