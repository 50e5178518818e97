package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/policy"
)

// problemsOf returns the Problems inside err, failing the test when err is
// something else.
func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	if err == nil {
		t.Fatal("want problems, got none")
	}
	ps, ok := errors.AsType[Problems](err)
	if !ok {
		t.Fatalf("want Problems, got %T: %v", err, err)
	}
	return ps
}

func paths(ps Problems) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Path
	}
	return out
}

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func mustParse(t *testing.T, doc string, getenv func(string) string) *Config {
	t.Helper()
	c, err := Parse([]byte(doc), getenv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

// The acceptance item: `keygate config validate` on a file with three
// mistakes reports all three, with paths (and lines). One of each kind: an
// unknown key, a type error, a value Validate refuses.
func TestThreeMistakesReportedTogether(t *testing.T) {
	doc := `server:
  listn: 0.0.0.0:9091
session:
  idle_timeout: soon
upstreams:
  - host: app.example.com
    url: ftp://127.0.0.1:8080
`
	_, err := Parse([]byte(doc), nil)
	ps := problemsOf(t, err)
	want := []Problem{
		{Path: "server.listn", Line: 2},
		{Path: "session.idle_timeout", Line: 4},
		{Path: "upstreams[0].url", Line: 7},
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want 3:\n%v", len(ps), err)
	}
	for i, w := range want {
		if ps[i].Path != w.Path || ps[i].Line != w.Line {
			t.Errorf("problem %d = %s line %d, want %s line %d", i, ps[i].Path, ps[i].Line, w.Path, w.Line)
		}
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 {
		t.Fatalf("Error() has %d lines, want one per problem:\n%s", len(lines), err)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, want[i].Path+": ") {
			t.Errorf("line %d = %q, want it to start with %q", i, l, want[i].Path+": ")
		}
	}
	if !strings.Contains(lines[0], `did you mean "listen"?`) {
		t.Errorf("no suggestion for listn: %q", lines[0])
	}
}

func TestUnknownKeysAtEveryDepth(t *testing.T) {
	doc := `sever: {}
server:
  listn: x
email:
  smtp:
    prot: 25
upstreams:
  - host: app.example.com
    url: http://127.0.0.1:8080
  - hots: wiki.example.com
    url: http://127.0.0.1:8081
policy:
  rules:
    - name: a
      hosts: [admin.example.com]
      action: two_factor
      webauthn: {hardwre: true}
    - nmae: b
      action: deny
`
	_, err := Parse([]byte(doc), nil)
	ps := problemsOf(t, err)
	want := []string{
		"sever", "server.listn", "email.smtp.prot", "upstreams[1].hots",
		"policy.rules[0].webauthn.hardwre", "policy.rules[1].nmae",
	}
	got := paths(ps)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("missing problem at %s; got:\n%v", w, err)
		}
	}
	// Every unknown key is reported, at its line, with a suggestion when
	// one is close.
	byPath := map[string]Problem{}
	for _, p := range ps {
		byPath[p.Path] = p
	}
	for path, line := range map[string]int{"sever": 1, "server.listn": 3, "email.smtp.prot": 6, "upstreams[1].hots": 10, "policy.rules[0].webauthn.hardwre": 17, "policy.rules[1].nmae": 18} {
		if byPath[path].Line != line {
			t.Errorf("%s: line %d, want %d", path, byPath[path].Line, line)
		}
	}
	if m := byPath["email.smtp.prot"].Message; !strings.Contains(m, `"port"`) {
		t.Errorf("email.smtp.prot: want a suggestion of port, got %q", m)
	}
}

func TestTypeErrors(t *testing.T) {
	cases := []struct {
		name, doc string
		path      string
		line      int
	}{
		{"duration", "session:\n  idle_timeout: soon\n", "session.idle_timeout", 2},
		{"negative duration", "session:\n  lifetime: -1h\n", "session.lifetime", 2},
		{"duration as mapping", "session:\n  lifetime: {h: 1}\n", "session.lifetime", 2},
		{"int", "email:\n  smtp:\n    port: twenty-five\n", "email.smtp.port", 3},
		{"int overflow", "passwords:\n  min_length: 99999999999999999999\n", "passwords.min_length", 2},
		{"mapping for a section", "server: [a, b]\n", "server", 1},
		{"scalar for a section", "log: loud\n", "log", 1},
		{"scalar for a list", "admin:\n  groups: admins\n", "admin.groups", 2},
		{"mapping for a list", "upstreams:\n  host: app.example.com\n", "upstreams", 2},
		{"mapping in a string list", "server:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - {a: b}\n", "server.trusted_proxies[1]", 4},
		{"string for text is fine but a list is not", "server:\n  listen: [a]\n", "server.listen", 2},
		{"bool", "policy:\n  rules:\n    - name: a\n      hosts: [a.example.com]\n      action: two_factor\n      trusted_device: maybe\n", "policy.rules[0].trusted_device", 6},
		{"policy duration", "policy:\n  rules:\n    - name: a\n      hosts: [a.example.com]\n      action: two_factor\n      max_age: 5 minutes\n", "policy.rules[0].max_age", 6},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", "log.level", 3},
		{"document is a list", "- a\n- b\n", "", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), nil)
			ps := problemsOf(t, err)
			if len(ps) != 1 || ps[0].Path != tc.path || ps[0].Line != tc.line {
				t.Fatalf("want exactly %q at line %d, got:\n%v", tc.path, tc.line, err)
			}
		})
	}
}

func TestTypeErrorKeepsDefaultAndGoesOn(t *testing.T) {
	// The bad value must not also be reported by Validate (its default
	// stays), and problems after it must still be found.
	_, err := Parse([]byte("session:\n  idle_timeout: soon\nlog:\n  level: loud\n"), nil)
	if got, want := paths(problemsOf(t, err)), []string{"session.idle_timeout", "log.level"}; !slices.Equal(got, want) {
		t.Fatalf("paths = %v, want %v", got, want)
	}
}

func TestSyntaxErrorIsOneProblemWithLine(t *testing.T) {
	_, err := Parse([]byte("server:\n  listen: \"127.0.0.1:9091\n  admin_socket: x\n"), nil)
	ps := problemsOf(t, err)
	if len(ps) != 1 || ps[0].Path != "" || ps[0].Line == 0 {
		t.Fatalf("want one problem with a line and no path, got %#v", ps)
	}
	_, err = Parse([]byte("server:\n\tlisten: x\n"), nil) // a tab
	if ps := problemsOf(t, err); len(ps) != 1 || ps[0].Line != 2 {
		t.Fatalf("tab: want one problem on line 2, got %#v", ps)
	}
}

func TestSecondDocumentRefused(t *testing.T) {
	_, err := Parse([]byte("log: {level: info}\n---\nlog: {level: debug}\n"), nil)
	ps := problemsOf(t, err)
	if len(ps) != 1 || ps[0].Line != 3 {
		t.Fatalf("want one problem at line 3, got %#v", ps)
	}
	// A trailing "---" hides nothing.
	mustParse(t, "log: {level: info}\n---\n", nil)
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	doc := `x-app: &app {url: "http://127.0.0.1:8080"}
upstreams:
  - <<: *app
    host: app.example.com
  - <<: *app
    host: wiki.example.com
    url: http://127.0.0.1:9000
admin:
  groups: &g [ops]
policy:
  rules:
    - name: ops
      hosts: [app.example.com]
      groups: *g
      action: two_factor
`
	// x-app is not a key keygate knows: anchors have to live somewhere
	// known. Report it, and check the rest decoded.
	_, err := Parse([]byte(doc), nil)
	if got := paths(problemsOf(t, err)); !slices.Equal(got, []string{"x-app"}) {
		t.Fatalf("paths = %v, want [x-app]", got)
	}
	doc = strings.Replace(doc, "x-app: &app {url: \"http://127.0.0.1:8080\"}\n", "", 1)
	doc = strings.Replace(doc, "  - <<: *app\n    host: app.example.com\n", "  - &app\n    url: http://127.0.0.1:8080\n    host: app.example.com\n", 1)
	c := mustParse(t, doc, nil)
	want := []Upstream{{Host: "app.example.com", URL: "http://127.0.0.1:8080"}, {Host: "wiki.example.com", URL: "http://127.0.0.1:9000"}}
	if !reflect.DeepEqual(c.Upstreams, want) {
		t.Errorf("upstreams = %+v, want %+v", c.Upstreams, want)
	}
	if !slices.Equal(c.Policy.Rules[0].Groups, []string{"ops"}) {
		t.Errorf("alias not followed: %v", c.Policy.Rules[0].Groups)
	}
}

func TestDefaultsApplied(t *testing.T) {
	for _, doc := range []string{"", "# nothing\n", "server:\nsession: {}\n"} {
		c := mustParse(t, doc, nil)
		want := Default()
		want.Server.AdminSocket = filepath.Join("keygate-data", "keygate.sock")
		if !reflect.DeepEqual(*c, want) {
			t.Errorf("%q:\n got %+v\nwant %+v", doc, *c, want)
		}
	}
	d := Default()
	if d.Server.Listen != "127.0.0.1:9091" || d.Session.IdleTimeout.D() != 30*time.Minute ||
		d.Session.Lifetime.D() != 12*time.Hour || d.Storage.Path != "./keygate-data" ||
		d.Email.SMTP.Port != 1025 || d.Email.SMTP.TLS != TLSNone || !slices.Equal(d.Admin.Groups, []string{"admins"}) ||
		d.Passwords.MinLength != 12 || d.Passwords.Argon2id != (Argon2id{65536, 1, 2}) || d.Passwords.MaxConcurrentHashes != 4 ||
		d.Metrics.Listen != "" || d.Log != (Log{"info", "text", true}) || d.Policy.Default != policy.ActionTwoFactor {
		t.Errorf("Default() = %+v", d)
	}
	if err := (&d).Validate(); err != nil {
		t.Errorf("Default() does not validate:\n%v", err)
	}
}

func TestPartialSectionKeepsOtherDefaults(t *testing.T) {
	c := mustParse(t, "passwords:\n  argon2id:\n    memory_kib: 131072\nstorage:\n  path: /var/lib/keygate\n", nil)
	if c.Passwords.Argon2id != (Argon2id{MemoryKiB: 131072, Iterations: 1, Parallelism: 2}) || c.Passwords.MinLength != 12 {
		t.Errorf("passwords = %+v", c.Passwords)
	}
	if c.Server.AdminSocket != "/var/lib/keygate/keygate.sock" {
		t.Errorf("admin socket does not follow storage.path: %q", c.Server.AdminSocket)
	}
	c = mustParse(t, "server:\n  admin_socket: /run/kg.sock\n", nil)
	if c.Server.AdminSocket != "/run/kg.sock" || c.AdminSocketPath() != "/run/kg.sock" {
		t.Errorf("admin socket = %q", c.Server.AdminSocket)
	}
}

func TestEnvOverrides(t *testing.T) {
	doc := "server:\n  listen: 127.0.0.1:1\nlog:\n  level: debug\n"
	c := mustParse(t, doc, env(map[string]string{
		"KEYGATE_SERVER_LISTEN":                 "0.0.0.0:9091",                 // scalar over the file
		"KEYGATE_SESSION_IDLE_TIMEOUT":          "1h",                           // duration
		"KEYGATE_SESSION_LIFETIME":              "24h",                          //
		"KEYGATE_SERVER_TRUSTED_PROXIES":        " 10.0.0.0/8, 192.168.1.1 ,, ", // list
		"KEYGATE_EMAIL_SMTP_HOST":               "smtp.example.com",             // nested
		"KEYGATE_EMAIL_SMTP_PORT":               "587",                          // int
		"KEYGATE_PASSWORDS_ARGON2ID_MEMORY_KIB": "131072",                       // deeper
		"KEYGATE_POLICY_DEFAULT":                "deny",                         // policy scalar
		"KEYGATE_STORAGE_ENCRYPTION_KEY":        "from-env",                     // env-only secret
		"KEYGATE_ADMIN_GROUPS":                  "ops",                          //
		"KEYGATE_SERVER_ADMIN_SOCKET":           "null",                         // text stays text
	}))
	if c.Server.Listen != "0.0.0.0:9091" {
		t.Errorf("listen = %q", c.Server.Listen)
	}
	if c.Session.IdleTimeout.D() != time.Hour || c.Session.Lifetime.D() != 24*time.Hour {
		t.Errorf("session = %+v", c.Session)
	}
	if !slices.Equal(c.Server.TrustedProxies, []string{"10.0.0.0/8", "192.168.1.1"}) {
		t.Errorf("trusted_proxies = %q", c.Server.TrustedProxies)
	}
	if c.Email.SMTP.Host != "smtp.example.com" || c.Email.SMTP.Port != 587 {
		t.Errorf("smtp = %+v", c.Email.SMTP)
	}
	if c.Passwords.Argon2id.MemoryKiB != 131072 || c.Policy.Default != policy.ActionDeny || !slices.Equal(c.Admin.Groups, []string{"ops"}) {
		t.Errorf("passwords/policy/admin not overridden: %+v %+v %+v", c.Passwords, c.Policy, c.Admin)
	}
	if c.Log.Level != "debug" {
		t.Errorf("file value lost: log.level = %q", c.Log.Level)
	}
	if c.Server.AdminSocket != "null" {
		t.Errorf("admin_socket = %q, want the literal text", c.Server.AdminSocket)
	}
	src, v, err := c.EncryptionKeyMaterial()
	if err != nil || v != "from-env" || src != "env KEYGATE_STORAGE_ENCRYPTION_KEY" {
		t.Errorf("EncryptionKeyMaterial = %q, %q, %v", src, v, err)
	}
}

func TestEnvProblemsNameTheVariable(t *testing.T) {
	_, err := Parse([]byte("session:\n  lifetime: 12h\n"), env(map[string]string{
		"KEYGATE_SESSION_LIFETIME":       "forever",
		"KEYGATE_EMAIL_SMTP_PORT":        "smtp",
		"KEYGATE_LOG_FORMAT":             "xml", // decodes, Validate refuses
		"KEYGATE_SERVER_TRUSTED_PROXIES": "10.0.0.0/8,banana",
	}))
	ps := problemsOf(t, err)
	want := []string{"session.lifetime", "email.smtp.port", "server.trusted_proxies[1]", "log.format"}
	if got := paths(ps); !sameSet(got, want) {
		t.Fatalf("paths = %v, want %v\n%v", got, want, err)
	}
	for _, p := range ps {
		if p.Line != 0 {
			t.Errorf("%s: line %d for a value from the environment", p.Path, p.Line)
		}
		if !strings.Contains(p.Message, envName(strings.Split(p.Path, "[")[0])) {
			t.Errorf("%s: message %q does not name the variable", p.Path, p.Message)
		}
	}
}

// Two keys must never share a variable name (a.b_c and a_b.c would).
func TestEnvNamesAreUnique(t *testing.T) {
	seen := map[string]int{}
	c := Default()
	var ps Problems
	applyEnv(reflect.ValueOf(&c).Elem(), "", func(k string) string { seen[k]++; return "" }, map[string]string{}, &ps)
	for k, n := range seen {
		if n > 1 {
			t.Errorf("%s stands for %d keys", k, n)
		}
	}
	for _, k := range []string{"KEYGATE_SERVER_LISTEN", "KEYGATE_SESSION_IDLE_TIMEOUT", "KEYGATE_LOG_LEVEL", "KEYGATE_EMAIL_SMTP_HOST", "KEYGATE_STORAGE_ENCRYPTION_KEY", "KEYGATE_EMAIL_SMTP_PASSWORD"} {
		if seen[k] == 0 {
			t.Errorf("%s is not read", k)
		}
	}
}

func TestSecretsRefusedInYAML(t *testing.T) {
	_, err := Parse([]byte("storage:\n  encryption_key: hunter2\nemail:\n  smtp:\n    password: hunter2\n"), nil)
	ps := problemsOf(t, err)
	if got := paths(ps); !slices.Equal(got, []string{"storage.encryption_key", "email.smtp.password"}) {
		t.Fatalf("paths = %v", got)
	}
	for _, p := range ps {
		if !strings.Contains(p.Message, p.Path+"_file") || !strings.Contains(p.Message, envName(p.Path)) {
			t.Errorf("%s: %q should point at the _file key and the variable", p.Path, p.Message)
		}
		if strings.Contains(p.Message, "hunter2") {
			t.Errorf("%s: message echoes the secret", p.Path)
		}
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSecretFiles(t *testing.T) {
	key := writeFile(t, "key", "0123456789abcdef\r\n")
	pw := writeFile(t, "pw", "p@ss word\n\n")
	c := mustParse(t, fmt.Sprintf("storage:\n  encryption_key_file: %s\nemail:\n  smtp:\n    password_file: %s\n", key, pw), nil)

	src, v, err := c.EncryptionKeyMaterial()
	if err != nil || v != "0123456789abcdef" || src != "file "+key {
		t.Errorf("EncryptionKeyMaterial = %q, %q, %v", src, v, err)
	}
	src, v, err = c.SMTPPassword()
	if err != nil || v != "p@ss word" || src != "file "+pw {
		t.Errorf("SMTPPassword = %q, %q, %v", src, v, err)
	}

	// Read lazily: a rotated file is picked up, a vanished one is an error
	// wrapping the cause.
	if err := os.WriteFile(key, []byte("rotated"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, v, _ := c.EncryptionKeyMaterial(); v != "rotated" {
		t.Errorf("after rotation: %q", v)
	}
	if err := os.Remove(pw); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.SMTPPassword(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist", err)
	}

	// None configured.
	c = mustParse(t, "", nil)
	if src, v, err := c.EncryptionKeyMaterial(); src != "" || v != "" || err != nil {
		t.Errorf("no key: %q, %q, %v", src, v, err)
	}
	// Env wins in the accessor (Validate refuses having both).
	c.Email.SMTP.Password = "env-pw"
	if src, v, _ := c.SMTPPassword(); v != "env-pw" || src != "env KEYGATE_EMAIL_SMTP_PASSWORD" {
		t.Errorf("env password: %q, %q", src, v)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	c := Default()
	c.Storage.EncryptionKey = "topsecret-key"
	c.Email.SMTP.Password = "topsecret-pw"
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), string(y), string(j)} {
		if strings.Contains(s, "topsecret") {
			t.Errorf("secret printed: %s", s)
		}
	}
}

func TestLoad(t *testing.T) {
	p := writeFile(t, "keygate.yaml", "log:\n  level: warn\n")
	c, err := Load(p, nil)
	if err != nil || c.Log.Level != "warn" {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	_, err = Load(filepath.Join(t.TempDir(), "missing.yaml"), nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	if _, ok := errors.AsType[Problems](err); ok {
		t.Errorf("an unreadable file is not a config problem")
	}
}

func TestProblemFormat(t *testing.T) {
	ps := Problems{
		{Path: "server.listen", Message: "bad", Line: 3},
		{Path: "log.level", Message: "worse"},
		{Message: "YAML syntax error: x", Line: 1},
	}
	want := "server.listen: bad (line 3)\nlog.level: worse\nYAML syntax error: x (line 1)"
	if ps.Error() != want {
		t.Errorf("Error() = %q, want %q", ps.Error(), want)
	}
}

func TestTrustedProxyPrefixes(t *testing.T) {
	c := Default()
	c.Server.TrustedProxies = []string{"10.0.0.0/8", "192.168.1.1", "::1", "10.1.2.3/8", "junk"}
	got := fmt.Sprint(c.TrustedProxyPrefixes())
	if got != "[10.0.0.0/8 192.168.1.1/32 ::1/128]" {
		t.Errorf("TrustedProxyPrefixes = %s", got)
	}
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
