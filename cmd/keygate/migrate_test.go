package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/authn/store/pgstore"
	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
)

// badgerReplicaConfig writes the configuration of a keygate on Badger in
// dir/name, with the storage key pgReplicaConfig writes into dir (call
// that first), so one installation can move between the two.
func badgerReplicaConfig(t *testing.T, dir, name, upstream string) (replica, string) {
	t.Helper()
	rdir := filepath.Join(dir, name)
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	data := filepath.Join(rdir, "data")
	cfg := filepath.Join(rdir, "keygate.yaml")
	yml := fmt.Sprintf(`server:
  listen: %q
  admin_socket: %q
storage:
  path: %q
  encryption_key_file: %q
policy:
  default: one_factor
upstreams:
  - host: localhost
    url: %s
`, addr, filepath.Join(rdir, "admin.sock"), data, filepath.Join(dir, "storage.key"), upstream)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return replica{cfg: cfg, base: "http://localhost:" + addr[strings.LastIndex(addr, ":")+1:]}, data
}

// prefixCounts counts the live records of a store per top-level prefix,
// independently of keygate migrate.
func prefixCounts(t *testing.T, kv store.KV) map[string]int {
	t.Helper()
	out := map[string]int{}
	if err := kv.Scan(context.Background(), "", func(it store.Item) error { out[store.TopPrefix(it.Key)]++; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

var migrateTestKey = func() []byte { k, _ := badgerstore.LoadKey("", strings.Repeat("7c", 32)); return k }()

// inBadger and inPostgres open a store in this process for a look.
func inBadger(t *testing.T, path string, look func(store.KV)) {
	t.Helper()
	kv, err := badgerstore.Open(badgerstore.Options{Path: path, EncryptionKey: migrateTestKey})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	look(kv)
}

func inPostgres(t *testing.T, dsn string, look func(store.KV)) {
	t.Helper()
	kv, err := pgstore.Open(context.Background(), pgstore.Options{DSN: dsn, Key: migrateTestKey})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	look(kv)
}

// copyTable reads the table keygate migrate prints: prefix -> the
// columns SOURCE EXPIRED COPIED REMOVED TARGET and the check.
func copyTable(t *testing.T, out string) map[string][]string {
	t.Helper()
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 7 && f[0] != "PREFIX" {
			if _, err := strconv.Atoi(f[1]); err == nil {
				rows[f[0]] = f[1:]
			}
		}
	}
	if len(rows) == 0 {
		t.Fatalf("no table in %q", out)
	}
	return rows
}

// postStatus posts a JSON body through a portal and returns the status.
func (p *portal) postStatus(path string, in string) int {
	p.t.Helper()
	resp, err := p.hc.Post(p.base+path, "application/json", strings.NewReader(in))
	if err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (p *portal) cookie() *http.Cookie {
	u, _ := url.Parse(p.base)
	for _, c := range p.hc.Jar.Cookies(u) {
		if c.Name == "keygate_session" {
			return c
		}
	}
	p.t.Fatal("no session cookie")
	return nil
}

// An installation on Badger, seeded through the real app, moves to
// PostgreSQL: the same people sign in with the same password, a cookie
// from before passes, a used TOTP code and recovery code stay used, the
// policy history and the audit log are the same; the counts printed
// agree with the stores. Then the mistakes: each refused with a clear
// message, the target unchanged. And back to Badger by the same command.
func TestMigrateBadgerToPostgres(t *testing.T) {
	cluster := pgtest.Start(t)
	dsn := cluster.NewDatabase(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app:%s", r.URL.Path)
	}))
	defer up.Close()
	dir := t.TempDir()
	pgr := pgReplicaConfig(t, dir, "pg", dsn, up.URL)
	dsnFile := filepath.Join(dir, "dsn")
	bgr, data := badgerReplicaConfig(t, dir, "bg", up.URL)
	stopBadger := bgr.serve(t)

	// Seed: two people, an authenticator app, recovery codes, sessions,
	// three policy versions, audit lines.
	const pw, evePW = "violet-harbour-lantern-9", "copper-meadow-signal-42"
	for name, p := range map[string]string{"dora": pw, "eve": evePW} {
		if _, errOut, rc := run(t, p+"\n", "user", "add", name, "--email", name+"@example.com", "--password-stdin", "--config", bgr.cfg); rc != 0 {
			t.Fatalf("user add %s: %s", name, errOut)
		}
	}
	secret := enrolTOTP(t, bgr.base, bgr.cfg, "dora", pw)
	dora := newPortal(t, bgr.base)
	dora.post("/.keygate/api/login", map[string]string{"username": "dora", "password": pw})
	usedTOTP := totpCode(t, secret, time.Now().Add(30*time.Second))
	dora.post("/.keygate/api/factors/totp/verify", map[string]string{"code": usedTOTP})
	gen := dora.post("/.keygate/api/factors/recovery/generate", nil)
	codes, _ := gen["codes"].([]any)
	if len(codes) < 2 {
		t.Fatalf("recovery codes: %v", gen)
	}
	doraCk := dora.cookie()
	usedSheet := newPortal(t, bgr.base)
	usedSheet.post("/.keygate/api/login", map[string]string{"username": "dora", "password": pw})
	usedSheet.post("/.keygate/api/factors/recovery/verify", map[string]any{"code": codes[0]})
	eveCk := signIn(t, bgr.base, "eve", evePW)

	pol := filepath.Join(dir, "policy.yaml")
	for i, body := range []string{
		"default: one_factor\nrules:\n  - {name: admin, paths: [\"/admin\", \"/admin/**\"], action: two_factor}\n",
		"default: one_factor\nrules:\n  - {name: admin, paths: [\"/admin\", \"/admin/**\"], action: two_factor}\n  - {name: closed, paths: [\"/closed/**\"], action: deny}\n",
	} {
		if err := os.WriteFile(pol, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, errOut, rc := run(t, "", "policy", "import", pol, "--comment", fmt.Sprintf("step %d", i+1), "--config", bgr.cfg); rc != 0 {
			t.Fatalf("policy import: %q %q", out, errOut)
		}
	}
	if st, body := getWithCookie(t, bgr.base+"/admin/x", doraCk); st != http.StatusOK || body != "app:/admin/x" {
		t.Fatalf("dora's two-factor session on /admin: %d %q", st, body)
	}
	if st, _ := getWithCookie(t, bgr.base+"/admin/x", eveCk); st != http.StatusFound {
		t.Fatalf("eve's one-factor session on /admin: %d, want 302", st)
	}
	history, _, rc := run(t, "", "policy", "history", "--config", bgr.cfg)
	if rc != 0 || !strings.Contains(history, "3*") {
		t.Fatalf("history: %q", history)
	}

	migrate := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, "", append([]string{"migrate", "--config", pgr.cfg}, args...)...)
	}
	from, to := "badger:"+data, "postgres-file:"+dsnFile

	// keygate still runs on the directory: refused.
	if _, errOut, rc := migrate("--from", from, "--to", to); rc == 0 || !strings.Contains(errOut, "in use (a running keygate?)") {
		t.Fatalf("migrate from a directory keygate holds: rc=%d %q", rc, errOut)
	}
	stopBadger()
	var auditBefore []activity.AuditEntry
	var badgerCounts map[string]int
	inBadger(t, data, func(kv store.KV) {
		badgerCounts = prefixCounts(t, kv)
		var err error
		if auditBefore, err = activity.NewAudit(kv, nil, nil).Recent(context.Background(), 100); err != nil {
			t.Fatal(err)
		}
	})
	if len(auditBefore) < 3 {
		t.Fatalf("audit before: %+v", auditBefore)
	}

	// The mistakes, each refused before anything is written. (The real
	// run below needs no --force: proof that the target stayed empty.)
	otherKey := filepath.Join(dir, "other.key")
	writeKeyFile(t, otherKey)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown scheme", []string{"--from", from, "--to", "mysql:root:hunter2@db/keygate"}, `"mysql:…": not a storage keygate knows`},
		{"bad DSN", []string{"--from", from, "--to", "postgres:host=" + filepath.Join(dir, "nowhere") + " password=hunter2 dbname=x connect_timeout=2"}, "the target postgres (DSN given with --to)"},
		{"unparsable DSN", []string{"--from", from, "--to", "postgres:port=notanumber password=hunter2"}, "connection string"},
		{"missing Badger path", []string{"--from", "badger:" + filepath.Join(dir, "nope"), "--to", to}, "holds no keygate data"},
		{"wrong storage key", []string{"--from", from, "--from-key-file", otherKey, "--to", to}, "the storage key does not open the source"},
		{"same store", []string{"--from", to, "--to", to}, "the same store"},
		{"no endpoints", nil, "--from SOURCE --to TARGET"},
	} {
		out, errOut, rc := migrate(c.args...)
		t.Logf("%s: %s", c.name, strings.TrimSpace(errOut))
		if rc == 0 || !strings.Contains(errOut, c.want) || strings.Contains(out+errOut, "hunter2") {
			t.Errorf("%s: rc=%d out=%q err=%q, want an error with %q and no password", c.name, rc, out, errOut, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !os.IsNotExist(err) {
		t.Errorf("a missing source directory was created: %v", err)
	}

	out, errOut, rc := migrate("--from", from, "--to", to)
	if rc != 0 {
		t.Fatalf("migrate: rc=%d %s %s", rc, out, errOut)
	}
	t.Logf("keygate migrate:\n%s", out)
	table := copyTable(t, out)
	var pgCounts map[string]int
	var auditAfter []activity.AuditEntry
	inPostgres(t, dsn, func(kv store.KV) {
		pgCounts = prefixCounts(t, kv)
		var err error
		if auditAfter, err = activity.NewAudit(kv, nil, nil).Recent(context.Background(), 100); err != nil {
			t.Fatal(err)
		}
	})
	for _, p := range []string{"user/", "session/", "policy/", "audit/"} {
		if badgerCounts[p] == 0 {
			t.Errorf("the seeded store has no %s records: %v", p, badgerCounts)
		}
	}
	for p, n := range badgerCounts {
		row := table[p]
		if len(row) < 6 || row[0] != strconv.Itoa(n) || row[4] != strconv.Itoa(pgCounts[p]) || row[5] != "ok" {
			t.Errorf("%s: printed %v; Badger holds %d, PostgreSQL %d", p, row, n, pgCounts[p])
		}
		// Only short-lived records may be gone (expired on the way).
		if pgCounts[p] != n && (p == "user/" || p == "session/" || p == "policy/" || p == "audit/") {
			t.Errorf("%s: %d records in Badger, %d in PostgreSQL", p, n, pgCounts[p])
		}
	}
	if !reflect.DeepEqual(auditBefore, auditAfter) {
		t.Errorf("audit after the move:\n%+v\nbefore:\n%+v", auditAfter, auditBefore)
	}

	// Again without --force: refused, and the database is as it was.
	if _, errOut, rc := migrate("--from", from, "--to", to); rc == 0 || !strings.Contains(errOut, "is not empty") || !strings.Contains(errOut, "--force") {
		t.Errorf("migrate onto a non-empty target: rc=%d %q", rc, errOut)
	}
	if _, errOut, rc := migrate("--from", from, "--to", to, "--to-key-file", otherKey, "--force"); rc == 0 || !strings.Contains(errOut, "another storage key") {
		t.Errorf("migrate with the wrong target key: rc=%d %q", rc, errOut)
	}
	inPostgres(t, dsn, func(kv store.KV) {
		if again := prefixCounts(t, kv); !reflect.DeepEqual(again, pgCounts) {
			t.Errorf("a refused migrate changed the target: %v, was %v", again, pgCounts)
		}
	})
	if out, errOut, rc := run(t, "", "migrate", "schema", "--config", pgr.cfg); rc != 0 || !strings.Contains(out, "schema is at version") {
		t.Errorf("migrate schema: rc=%d %q %q", rc, out, errOut)
	}

	// keygate serve on PostgreSQL: all is there.
	stopPG := pgr.serve(t)
	if st, body := getWithCookie(t, pgr.base+"/admin/y", doraCk); st != http.StatusOK || body != "app:/admin/y" {
		t.Errorf("dora's cookie from before the move: %d %q", st, body)
	}
	if st, _ := getWithCookie(t, pgr.base+"/closed/z", eveCk); st != http.StatusForbidden {
		t.Errorf("eve's cookie on a path policy version 3 denies: %d", st)
	}
	if st := signInStatus(t, pgr.base, "eve", evePW); st != http.StatusOK {
		t.Errorf("eve signs in with the same password: %d", st)
	}
	if h, _, rc := run(t, "", "policy", "history", "--config", pgr.cfg); rc != 0 || h != history {
		t.Errorf("policy history after the move:\n%s\nbefore:\n%s", h, history)
	}
	again := newPortal(t, pgr.base)
	again.post("/.keygate/api/login", map[string]string{"username": "dora", "password": pw})
	if st := again.postStatus("/.keygate/api/factors/totp/verify", `{"code":"`+usedTOTP+`"}`); st == http.StatusOK {
		t.Error("a TOTP code used before the move was accepted again")
	}
	if st := again.postStatus("/.keygate/api/factors/recovery/verify", `{"code":"`+codes[0].(string)+`"}`); st == http.StatusOK {
		t.Error("a recovery code used before the move was accepted again")
	}
	if st := again.postStatus("/.keygate/api/factors/recovery/verify", `{"code":"`+codes[1].(string)+`"}`); st != http.StatusOK {
		t.Errorf("an unused recovery code after the move: %d", st)
	}
	stopPG()

	// Back to Badger by the same command, and --force onto the old
	// directory (which holds the same and more: codes used since).
	back, backData := badgerReplicaConfig(t, dir, "back", up.URL)
	out, errOut, rc = migrate("--from", to, "--to", "badger:"+backData)
	if rc != 0 || !strings.Contains(out, "source and target agree") {
		t.Fatalf("postgres to badger: rc=%d %q %q", rc, out, errOut)
	}
	if h, _, rc := run(t, "", "policy", "history", "--config", back.cfg); rc != 0 || h != history {
		t.Errorf("policy history on Badger again:\n%s", h)
	}
	if out, errOut, rc := migrate("--from", to, "--to", from, "--force"); rc != 0 || !strings.Contains(out, "source and target agree") {
		t.Errorf("--force onto the old directory: rc=%d %q %q", rc, out, errOut)
	}
}
