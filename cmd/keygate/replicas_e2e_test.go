package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
	"github.com/keygate/keygate/web/nginxtest"
)

// replica is one `keygate serve` of several on one database.
type replica struct {
	cfg, base string
	addr      string // 127.0.0.1:PORT, what a load balancer points at
}

// replicaOptions adds to a replica's configuration.
type replicaOptions struct {
	Server string // more keys under "server:", each line indented two spaces
	More   string // more top-level sections
}

// pgReplicaConfig writes the configuration of one replica on the
// database of dsn into its own directory under dir (its listener and
// admin socket); every replica of dir shares the storage key.
func pgReplicaConfig(t *testing.T, dir, name, dsn, upstream string) replica {
	t.Helper()
	return pgReplicaConfigWith(t, dir, name, dsn, upstream, replicaOptions{})
}

// pgReplicaConfigWith is pgReplicaConfig with more configuration.
func pgReplicaConfigWith(t *testing.T, dir, name, dsn, upstream string, o replicaOptions) replica {
	t.Helper()
	keyFile, dsnFile := filepath.Join(dir, "storage.key"), filepath.Join(dir, "dsn")
	for f, v := range map[string]string{keyFile: strings.Repeat("7c", 32) + "\n", dsnFile: dsn + "\n"} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rdir := filepath.Join(dir, name)
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfg := filepath.Join(rdir, "keygate.yaml")
	yml := fmt.Sprintf(`server:
  listen: %q
  admin_socket: %q
%sstorage:
  backend: postgres
  path: %q
  encryption_key_file: %q
  postgres:
    dsn_file: %q
policy:
  default: one_factor
upstreams:
  - host: localhost
    url: %s
%s`, addr, filepath.Join(rdir, "admin.sock"), o.Server, filepath.Join(rdir, "data"), keyFile, dsnFile, upstream, o.More)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return replica{cfg: cfg, base: "http://localhost:" + addr[strings.LastIndex(addr, ":")+1:], addr: addr}
}

// serve starts `keygate serve` for r and returns once it serves; stop
// kills it (and logs its output if the test failed). Cleanup stops it too.
func (r replica) serve(t *testing.T) (stop func()) {
	t.Helper()
	cmd := exec.Command(keygateBin(t), "serve", "--config", r.cfg)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("%s's log:\n%s", r.base, stderr.String())
			}
		})
	}
	t.Cleanup(stop)
	waitFor(t, r.base+" to serve", func() bool { return strings.Contains(stderr.String(), "keygate is serving") })
	return stop
}

// lbReplicas tunes startReplicasBehindLB.
type lbReplicas struct {
	// More is more top-level configuration for every replica, given the
	// origins people use (the load balancers', http://localhost:PORT).
	More func(origins []string) string
	// Pins returns the load balancer's pinned locations, given the
	// replicas (see lbOptions.Pinned).
	Pins func(rs []replica) []lbPin
	// Extra is how many more load balancers (plain round robin, no pins)
	// run over the same replicas, each with its own origin.
	Extra int
}

// startReplicasBehindLB runs n replicas on one PostgreSQL database (a
// cluster the test starts) behind a real nginx round robin, the snippet of
// docs/high-availability.md. As that page says, every replica trusts
// nginx's forwarded headers; its portal URL is the first load balancer's
// origin. The first load balancer has the pins, the extra ones none.
func startReplicasBehindLB(t *testing.T, n int, upstream string, o lbReplicas) ([]replica, []*nginxLB) {
	t.Helper()
	nginxtest.Binary(t, "the load-balancer test") // before the database and the replicas: skip (or fail) early
	cluster := pgtest.Start(t)
	dsn := cluster.NewDatabase(t)
	dir := t.TempDir()
	listens := make([]string, 1+o.Extra)
	origins := make([]string, len(listens))
	for i := range listens {
		listens[i] = freeAddr(t)
		origins[i] = "http://localhost:" + listens[i][strings.LastIndex(listens[i], ":")+1:]
	}
	ro := replicaOptions{Server: fmt.Sprintf("  trusted_proxies: [\"127.0.0.1\"]\n  portal_url: %q\n", origins[0])}
	if o.More != nil {
		ro.More = o.More(origins)
	}
	var rs []replica
	var addrs []string
	for i := range n {
		r := pgReplicaConfigWith(t, dir, fmt.Sprintf("r%d", i), dsn, upstream, ro)
		r.serve(t)
		rs = append(rs, r)
		addrs = append(addrs, r.addr)
	}
	var lbs []*nginxLB
	for i, listen := range listens {
		opts := lbOptions{Listen: listen}
		if i == 0 && o.Pins != nil {
			opts.Pinned = o.Pins(rs)
		}
		lbs = append(lbs, runNginxLB(t, addrs, opts))
	}
	return rs, lbs
}

// distinct is how many different values vs holds.
func distinct(vs ...string) int {
	seen := map[string]bool{}
	for _, v := range vs {
		seen[v] = true
	}
	return len(seen)
}

// upstreamsOf lists which replica answered each hit.
func upstreamsOf(hs []lbHit) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Upstream
	}
	return out
}

// within polls cond for up to d and reports how long it took.
func within(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start), true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start), cond()
}

// throughLB sends GET path with ck through lb n times, one after another,
// and returns "STATUS BODY" of each. With n replicas, round robin lands
// them on every one: the access log must say so, or the test fails.
func throughLB(t *testing.T, lb *nginxLB, n int, path string, ck *http.Cookie) []string {
	t.Helper()
	mark := len(lb.hits(t))
	out := make([]string, n)
	for i := range out {
		st, body := getWithCookie(t, lb.Base+path, ck)
		out[i] = fmt.Sprintf("%d %s", st, body)
	}
	if ups := upstreamsOf(lb.hitsSince(t, mark, n)); distinct(ups...) != n {
		t.Fatalf("%d requests for %s through nginx landed on %v, want %d replicas", n, path, ups, n)
	}
	return out
}

// allAre reports whether every answer of throughLB starts with want.
func allAre(answers []string, want string) bool {
	for _, a := range answers {
		if !strings.HasPrefix(a, want) {
			return false
		}
	}
	return true
}

// Three replicas on one PostgreSQL behind a real nginx round robin behave
// as one, each sentence checked through nginx (the access log names the
// replica that answered, proving the steps cross replicas) and on each
// replica directly: a person added through one replica's CLI signs in,
// and the next request lands on another replica and passes; a policy
// saved through one replica is in force on the others within a second
// and readyz agrees; a TOTP code used on one is refused on another; five
// wrong passwords spread over the three lock the account; "sign out
// everywhere" on one ends the session on the others within a second.
func TestReplicasBehaveAsOne(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app:%s", r.URL.Path)
	}))
	defer up.Close()
	rs, lbs := startReplicasBehindLB(t, 3, up.URL, lbReplicas{})
	a, b, c := rs[0], rs[1], rs[2]
	lb := lbs[0]

	const password = "violet-harbour-lantern-9"
	for user, r := range map[string]replica{"erin": a, "hana": b, "fred": b, "gina": c} {
		if _, errOut, rc := run(t, password+"\n", "user", "add", user, "--email", user+"@example.com", "--password-stdin", "--config", r.cfg); rc != 0 {
			t.Fatalf("user add %s: %s", user, errOut)
		}
	}
	// Directly: signed in on B, the cookie passes on all three.
	ck := signIn(t, b.base, "erin", password)
	for _, r := range []replica{a, b, c} {
		if st, body := getWithCookie(t, r.base+"/x", ck); st != http.StatusOK || body != "app:/x" {
			t.Fatalf("a session from B on %s: %d %q", r.base, st, body)
		}
	}
	// Through nginx: signed in on one replica, the next request lands on
	// another and passes, and so do requests on all three.
	mark := len(lb.hits(t))
	ckLB := signIn(t, lb.Base, "hana", password)
	if got := throughLB(t, lb, 3, "/x", ckLB); !allAre(got, "200 app:/x") {
		t.Fatalf("a session signed in through nginx, on the three replicas: %q", got)
	}
	hs := lb.hitsSince(t, mark, 4)
	if hs[0].Path != "/.keygate/api/login" || hs[0].Status != "200" || hs[1].Upstream == hs[0].Upstream {
		t.Fatalf("sign-in then the next request: %+v, want the next on another replica", hs[:2])
	}

	// A policy saved through A's CLI is in force on B and C: through
	// nginx (each replica in turn) and on each directly.
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte("default: one_factor\nrules:\n  - name: closed\n    paths: [\"/closed/**\"]\n    action: deny\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, rc := run(t, "", "policy", "import", pol, "--config", a.cfg); rc != 0 {
		t.Fatalf("policy import on A: %s %s", out, errOut)
	}
	if took, ok := within(5*time.Second, func() bool {
		return allAre(throughLB(t, lb, 3, "/closed/x", ckLB), "403 ")
	}); !ok || took > time.Second {
		t.Errorf("the new policy through nginx: in force on all three %v after %v", ok, took)
	}
	for _, r := range []replica{a, b, c} {
		took, ok := within(5*time.Second, func() bool { st, _ := getWithCookie(t, r.base+"/closed/x", ck); return st == http.StatusForbidden })
		if !ok || took > time.Second {
			t.Errorf("the new policy on %s: in force %v after %v", r.base, ok, took)
		}
	}

	// A TOTP code used through A is refused through B (the replay guard
	// is in the shared store); the next code works on C.
	secret := enrolTOTP(t, a.base, a.cfg, "erin", password)
	// The next step's code: within the allowed skew, and not the step the
	// enrolment confirmed with.
	code := totpCode(t, secret, time.Now().Add(30*time.Second))
	pa, pb := newPortal(t, a.base), newPortal(t, b.base)
	pa.post("/.keygate/api/login", map[string]string{"username": "erin", "password": password})
	pb.post("/.keygate/api/login", map[string]string{"username": "erin", "password": password})
	pa.post("/.keygate/api/factors/totp/verify", map[string]string{"code": code})
	if st, ans := pb.call(http.MethodPost, "/.keygate/api/factors/totp/verify", map[string]string{"code": code}); st == http.StatusOK {
		t.Errorf("a TOTP code used on A was accepted on B: %v", ans)
	}
	// Through nginx: hana enrols (each step of the enrolment on whichever
	// replica nginx picks), then one code is accepted on one replica and
	// refused on the next.
	secretLB := enrolTOTP(t, lb.Base, c.cfg, "hana", password)
	codeLB := totpCode(t, secretLB, time.Now().Add(30*time.Second))
	p1, p2 := newPortal(t, lb.Base), newPortal(t, lb.Base)
	p1.post("/.keygate/api/login", map[string]string{"username": "hana", "password": password})
	p2.post("/.keygate/api/login", map[string]string{"username": "hana", "password": password})
	mark = len(lb.hits(t))
	p1.post("/.keygate/api/factors/totp/verify", map[string]string{"code": codeLB})
	if st, ans := p2.call(http.MethodPost, "/.keygate/api/factors/totp/verify", map[string]string{"code": codeLB}); st == http.StatusOK {
		t.Errorf("a TOTP code used through nginx was accepted again: %v", ans)
	}
	if hs := lb.hitsSince(t, mark, 2); hs[0].Upstream == hs[1].Upstream || hs[0].Status != "200" {
		t.Errorf("the TOTP code's two uses: %+v, want accepted on one replica, then another", hs)
	}

	// Five wrong passwords spread over the three replicas lock the
	// account on all of them: the right password is refused next.
	for i := range 5 {
		if st := signInStatus(t, rs[i%3].base, "fred", "not-the-password"); st != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i+1, st)
		}
	}
	for _, r := range rs {
		if st := signInStatus(t, r.base, "fred", password); st == http.StatusOK {
			t.Errorf("the account was not locked on %s after 5 failures over 3 replicas", r.base)
		}
	}
	// The same through nginx, for gina.
	mark = len(lb.hits(t))
	for i := range 5 {
		if st := signInStatus(t, lb.Base, "gina", "not-the-password"); st != http.StatusUnauthorized {
			t.Fatalf("wrong password %d through nginx: %d", i+1, st)
		}
	}
	for range 3 {
		if st := signInStatus(t, lb.Base, "gina", password); st == http.StatusOK {
			t.Errorf("the account was not locked after 5 failures through nginx")
		}
	}
	if ups := upstreamsOf(lb.hitsSince(t, mark, 8)); distinct(ups[:5]...) != 3 || distinct(ups[5:]...) != 3 {
		t.Errorf("the failures and the refused sign-ins landed on %v, want all three replicas each", ups)
	}

	// Every replica names the same policy version in readyz.
	for _, r := range rs {
		if st, body := getWithCookie(t, r.base+"/.keygate/readyz", nil); st != http.StatusOK || body != "ready policy_version=2" {
			t.Errorf("readyz on %s: %d %q, want version 2 everywhere", r.base, st, body)
		}
	}
	if got := throughLB(t, lb, 3, "/.keygate/readyz", nil); !allAre(got, "200 ready policy_version=2") {
		t.Errorf("readyz through nginx: %q, want version 2 everywhere", got)
	}

	// Sign out everywhere on C: A and B refuse the cookie.
	logoutEverywhere(t, c.base, ck)
	for _, r := range []replica{a, b} {
		took, ok := within(5*time.Second, func() bool { st, _ := getWithCookie(t, r.base+"/x", ck); return st != http.StatusOK })
		if !ok || took > time.Second {
			t.Errorf("the ended session on %s: refused %v after %v", r.base, ok, took)
		}
	}
	// Sign out everywhere through nginx: the cookie is refused on every
	// replica, through nginx and directly.
	logoutEverywhere(t, lb.Base, ckLB)
	if took, ok := within(5*time.Second, func() bool {
		for _, a := range throughLB(t, lb, 3, "/x", ckLB) {
			if strings.HasPrefix(a, "200 ") {
				return false
			}
		}
		return true
	}); !ok || took > time.Second {
		t.Errorf("the session ended through nginx: refused on all three %v after %v", ok, took)
	}
	for _, r := range rs {
		if st, _ := getWithCookie(t, r.base+"/x", ckLB); st == http.StatusOK {
			t.Errorf("the session ended through nginx still passes on %s", r.base)
		}
	}
}

// logoutEverywhere signs ck's person out of every session, through base.
func logoutEverywhere(t *testing.T, base string, ck *http.Cookie) {
	t.Helper()
	body, _ := json.Marshal(map[string]bool{"everywhere": true})
	req, _ := http.NewRequest(http.MethodPost, base+"/.keygate/api/logout", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(ck)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign out everywhere through %s: %d", base, resp.StatusCode)
	}
}
