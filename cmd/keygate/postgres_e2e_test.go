package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
)

// keygate serve on the PostgreSQL backend, with a cluster the test starts
// itself: the CLI adds a person over the admin socket, the person signs in
// and reaches a one-factor app; after a restart of keygate the session
// and the person are still there (they live in the database, not in the
// process); a dump of the database shows neither the address, nor the
// session ID, nor the password hash in clear.
func TestServeOnPostgres(t *testing.T) {
	cluster := pgtest.Start(t)
	dsn := cluster.NewDatabase(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app:%s", r.URL.Path)
	}))
	defer up.Close()

	r := pgReplicaConfig(t, t.TempDir(), "r0", dsn, up.URL)
	cfgFile, base := r.cfg, r.base
	if out, errOut, rc := run(t, "", "config", "validate", "--config", cfgFile); rc != 0 {
		t.Fatalf("config validate: %s %s", out, errOut)
	}
	serve := func() func() { return r.serve(t) }
	stop := serve()

	const password = "violet-harbour-lantern-9"
	if _, errOut, rc := run(t, password+"\n", "user", "add", "dora", "--email", "dora.secret@example.com", "--password-stdin", "--config", cfgFile); rc != 0 {
		stop()
		t.Fatalf("user add over the socket: %s", errOut)
	}
	ck := signIn(t, base, "dora", password)
	if st, body := getWithCookie(t, base+"/x", ck); st != http.StatusOK || body != "app:/x" {
		stop()
		t.Fatalf("signed-in request: %d %q", st, body)
	}
	stop()

	// A new process: nothing in memory, all in the database.
	stop = serve()
	defer stop()
	if st, body := getWithCookie(t, base+"/y", ck); st != http.StatusOK || body != "app:/y" {
		t.Fatalf("the session after a restart: %d %q", st, body)
	}
	if out, _, rc := run(t, "", "user", "list", "--config", cfgFile); rc != 0 || !strings.Contains(out, "dora") {
		t.Fatalf("user list after a restart: %q", out)
	}

	// The database away: a known session keeps working (sessions are in
	// memory), a sign-in is told to try again shortly (no 500), readyz
	// says 503; all is well again once the database is back.
	cluster.Stop(t)
	if st, body := getWithCookie(t, base+"/z", ck); st != http.StatusOK || body != "app:/z" {
		t.Errorf("a known session with the database down: %d %q", st, body)
	}
	lb, _ := json.Marshal(map[string]string{"username": "dora", "password": password})
	resp, err := http.Post(base+"/.keygate/api/login", "application/json", bytes.NewReader(lb))
	if err != nil {
		t.Fatal(err)
	}
	var ans map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || ans["error"] != "store_unavailable" || !strings.Contains(fmt.Sprint(ans["message"]), "Try again") {
		t.Errorf("a sign-in with the database down: %d %v, want 502 store_unavailable", resp.StatusCode, ans)
	}
	if st, _ := getWithCookie(t, base+"/.keygate/readyz", nil); st != http.StatusServiceUnavailable {
		t.Errorf("readyz with the database down: %d, want 503", st)
	}
	cluster.Resume(t)
	if took, ok := within(10*time.Second, func() bool { return signInStatus(t, base, "dora", password) == http.StatusOK }); !ok {
		t.Errorf("sign-in did not recover within %v of the database's return", took)
	}

	dump := cluster.Dump(t, dsn)
	for _, secret := range []string{"dora.secret@example.com", ck.Value, "$argon2id$"} {
		if bytes.Contains(dump, []byte(secret)) {
			t.Errorf("pg_dump shows %q in clear", secret)
		}
	}
	if len(dump) < 1000 {
		t.Fatalf("the dump is suspiciously small (%d bytes): %s", len(dump), dump)
	}
}
