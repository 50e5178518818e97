package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/store/badgerstore"
	"github.com/keygate/keygate/policy"
)

// Policies as an operator handles them with the real binary: versions in
// the store, import/export/diff/rollback through the admin socket while
// the demo serves and on the data directory when it is stopped, explain
// agreeing with the live gateway, and the audit log naming the OS user.

func TestPolicyVersionsThroughTheCLI(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	d := startDemo(t, data)
	cfg := demoConfigFile(t, data)
	ck := signIn(t, d.base, demoUser, demoPassword) // a password, no second factor

	out, errOut, rc := run(t, "", "policy", "history", "--config", cfg)
	if rc != 0 || !strings.Contains(out, "1*") || !strings.Contains(out, "config") {
		t.Fatalf("history: rc=%d %q %q", rc, out, errOut)
	}
	exported, _, rc := run(t, "", "policy", "export", "--config", cfg)
	if rc != 0 || !strings.Contains(exported, "# keygate policy version 1") || !strings.Contains(exported, "default: one_factor") {
		t.Fatalf("export: rc=%d %q", rc, exported)
	}
	if code, _ := getWithCookie(t, d.base+"/", ck); code != 200 {
		t.Fatalf("before: one factor is enough for /: %d", code)
	}

	// Import a stricter policy: in force at once, no restart.
	dir := t.TempDir()
	strict := filepath.Join(dir, "strict.yaml")
	if err := os.WriteFile(strict, []byte(strings.Replace(exported, "default: one_factor", "default: two_factor", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, rc = run(t, "", "policy", "import", strict, "--comment", "two factors by default", "--config", cfg)
	if rc != 0 || !strings.Contains(out, "policy version 2 is in force") {
		t.Fatalf("import: rc=%d %q %q", rc, out, errOut)
	}
	if code, _ := getWithCookie(t, d.base+"/", ck); code != http.StatusFound {
		t.Fatalf("after: a password alone still opens /: %d", code)
	}

	// A bad policy: every problem listed, nothing changes.
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte(`
default: two_factor
rules:
  - {name: a, hosts: [localhost], action: two_factor, factors: [sms]}
  - {name: a, networks: ["10.0.0.0/33"], action: one_factor}
  - {name: glob, paths: ["/x/**y"], action: bypass}
  - {name: sneaky, paths: ["/.keygate/admin"], action: bypass}
`), 0o600)
	_, errOut, rc = run(t, "", "policy", "import", bad, "--config", cfg)
	if rc == 0 {
		t.Fatal("a bad policy was imported")
	}
	for _, p := range []string{"rules[0].factors[0]", "rules[1].name", "rules[1].networks[0]", "rules[2].paths[0]", "rules[3].paths[0]: a rule that weakens the admin area"} {
		if !strings.Contains(errOut, p) {
			t.Errorf("import of a bad policy does not list %s:\n%s", p, errOut)
		}
	}
	out, _, _ = run(t, "", "policy", "history", "--config", cfg)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], "2*") {
		t.Fatalf("history after a refused import:\n%s", out)
	}
	out, _, rc = run(t, "", "policy", "import", "--dry-run", strict, "--config", cfg)
	if rc != 0 || !strings.Contains(out, "no change") {
		t.Fatalf("dry run of the policy in force: rc=%d %q", rc, out)
	}
	loose := filepath.Join(dir, "loose.yaml")
	_ = os.WriteFile(loose, []byte(exported), 0o600)
	out, _, rc = run(t, "", "policy", "import", "--dry-run", loose, "--config", cfg)
	if rc != 0 || !strings.Contains(out, "+default: one_factor") || !strings.Contains(out, "go from two_factor to one_factor") {
		t.Fatalf("dry run: rc=%d %q", rc, out)
	}

	// Explain through the socket gives the live gateway's answers.
	for _, tc := range []struct {
		args   []string
		cookie *http.Cookie
		path   string
	}{
		{[]string{"--user", demoUser}, ck, "/"},
		{[]string{"--user", demoUser}, ck, "/public/x"},
		{[]string{"--user", demoUser}, ck, "/closed/x"},
		{[]string{"--user", demoUser}, ck, "/admin/x"},
		{nil, nil, "/"},
		{nil, nil, "/public/"},
	} {
		code, _ := getWithCookie(t, d.base+tc.path, tc.cookie)
		live := map[int]string{200: "allow", http.StatusFound: "challenge", http.StatusForbidden: "deny"}[code]
		args := append([]string{"policy", "explain", "--json", "--ip", "127.0.0.1", "--config", cfg}, tc.args...)
		out, errOut, rc := run(t, "", append(args, "GET", d.base+tc.path)...)
		var e policy.Explanation
		if rc != 0 || json.Unmarshal([]byte(out), &e) != nil {
			t.Fatalf("explain %s: rc=%d %q %q", tc.path, rc, out, errOut)
		}
		if e.Decision.Outcome.String() != live {
			t.Errorf("%s %v: explain says %s, the gateway %s (%d)", tc.path, tc.args, e.Decision.Outcome, live, code)
		}
		if tc.args != nil && !strings.Contains(strings.Join(e.Subject.Groups, ","), "admins") {
			t.Errorf("explain did not take the user's groups from the store: %v", e.Subject.Groups)
		}
	}

	out, _, rc = run(t, "", "user", "list", "--search", "ADMIN", "--config", cfg)
	if rc != 0 || !strings.Contains(out, demoUser) {
		t.Fatalf("user list --search: rc=%d %q", rc, out)
	}
	if out, _, _ = run(t, "", "user", "list", "--search", "nobody-like-this", "--config", cfg); strings.Contains(out, demoUser) {
		t.Fatalf("user list --search matched too much: %q", out)
	}

	// Rollback: version 1's rules are back, as version 3.
	out, _, rc = run(t, "", "policy", "diff", "--config", cfg)
	if rc != 0 || !strings.Contains(out, "-default: one_factor") || !strings.Contains(out, "+default: two_factor") {
		t.Fatalf("diff: rc=%d %q", rc, out)
	}
	out, errOut, rc = run(t, "", "policy", "rollback", "1", "--config", cfg)
	if rc != 0 || !strings.Contains(out, "policy version 3 (a copy of version 1) is in force") {
		t.Fatalf("rollback: rc=%d %q %q", rc, out, errOut)
	}
	if code, _ := getWithCookie(t, d.base+"/", ck); code != 200 {
		t.Fatalf("after rollback: %d", code)
	}
	// An import based on an old version is refused.
	_, errOut, rc = run(t, "", "policy", "import", strict, "--if-version", "1", "--config", cfg)
	if rc == 0 || !strings.Contains(errOut, "version 3 is in force now") {
		t.Fatalf("stale import: rc=%d %q", rc, errOut)
	}
	d.stop(t)

	// Stopped: the CLI opens the data directory itself.
	out, errOut, rc = run(t, "", "policy", "history", "--config", cfg)
	if rc != 0 || !strings.Contains(out, "3*") || !strings.Contains(out, "two factors by default") {
		t.Fatalf("offline history: rc=%d %q %q", rc, out, errOut)
	}
	v2, _, rc := run(t, "", "policy", "export", "--version", "2", "--config", cfg)
	if rc != 0 || !strings.Contains(v2, "default: two_factor") {
		t.Fatalf("offline export of version 2: rc=%d %q", rc, v2)
	}

	// The audit log names the OS user for every CLI change.
	key, err := badgerstore.LoadKey(data+".key", "")
	if err != nil {
		t.Fatal(err)
	}
	kv, err := badgerstore.Open(badgerstore.Options{Path: data, EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	entries, err := activity.NewAudit(kv, nil, nil).Recent(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	me := osAdmin()
	if u, err := user.Current(); err == nil && me == "unknown" {
		me = u.Username
	}
	if len(entries) != 2 || entries[0].Action != activity.AuditPolicyRollback || entries[1].Action != activity.AuditPolicyImport ||
		entries[0].Admin != me || entries[1].Via != activity.ViaCLI || entries[1].Details["comment"] != "two factors by default" {
		t.Fatalf("audit (want admin %q): %+v", me, entries)
	}
}
