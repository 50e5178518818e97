package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/policy"
)

// validBase is a configuration that uses every section, so that each case
// below breaks exactly one thing.
func validBase() Config {
	c := Default()
	c.Session.CookieDomain = "example.com"
	c.Upstreams = []Upstream{
		{Host: "app.example.com", URL: "http://127.0.0.1:8080"},
		{Host: "wiki.example.com", URL: "https://wiki.internal:8443/base"},
	}
	c.WebAuthn = WebAuthn{RPID: "example.com", RPName: "Example", Origins: []string{"https://app.example.com", "https://wiki.example.com:8443"}}
	c.Email.From = "keygate <no-reply@example.com>"
	c.Metrics.Listen = "127.0.0.1:9092"
	c.Server.TrustedProxies = []string{"10.0.0.0/8", "192.168.1.1", "::1"}
	c.Policy.Rules = []policy.Rule{{Name: "admin", Hosts: []string{"app.example.com"}, Action: policy.ActionTwoFactor, Factors: []string{"webauthn", "email"}}}
	return c
}

func TestValidBaseIsValid(t *testing.T) {
	c := validBase()
	if err := c.Validate(); err != nil {
		t.Fatalf("validBase:\n%v", err)
	}
}

// Each Validate check has a failing case; only the paths are compared, so
// messages can be reworded freely.
func TestValidateChecks(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")

	cases := []struct {
		name   string
		mutate func(c *Config)
		want   []string
	}{
		// server
		{"listen empty", func(c *Config) { c.Server.Listen = "" }, []string{"server.listen"}},
		{"listen no port", func(c *Config) { c.Server.Listen = "127.0.0.1" }, []string{"server.listen"}},
		{"listen bad port", func(c *Config) { c.Server.Listen = "127.0.0.1:99999" }, []string{"server.listen"}},
		{"listen named port", func(c *Config) { c.Server.Listen = "127.0.0.1:http" }, []string{"server.listen"}},
		{"listen bad host", func(c *Config) { c.Server.Listen = "bad_host:80" }, []string{"server.listen"}},
		{"trusted proxy junk", func(c *Config) { c.Server.TrustedProxies = []string{"10.0.0.0/8", "banana"} }, []string{"server.trusted_proxies[1]"}},
		{"trusted proxy host bits", func(c *Config) { c.Server.TrustedProxies = []string{"10.1.2.3/8"} }, []string{"server.trusted_proxies[0]"}},
		{"protected host with a scheme", func(c *Config) {
			c.Server.ProtectedHosts = []string{"wiki.example.com", "*.apps.example.com", "https://x.example.com"}
		}, []string{"server.protected_hosts[2]"}},
		{"protected host everything", func(c *Config) { c.Server.ProtectedHosts = []string{"*", "*.", ""} },
			[]string{"server.protected_hosts[0]", "server.protected_hosts[1]", "server.protected_hosts[2]"}},
		{"protected host with a port or path", func(c *Config) { c.Server.ProtectedHosts = []string{"*.a.example:8080", "a.example/x"} },
			[]string{"server.protected_hosts[0]", "server.protected_hosts[1]"}},
		{"admin socket too long", func(c *Config) { c.Server.AdminSocket = "/" + strings.Repeat("s", 120) }, []string{"server.admin_socket"}},
		{"derived admin socket too long", func(c *Config) { c.Storage.Path = "/" + strings.Repeat("d", 100) }, []string{"server.admin_socket"}},
		{"default redirect javascript", func(c *Config) { c.Server.DefaultRedirect = "javascript:alert(1)" }, []string{"server.default_redirect"}},
		{"default redirect relative", func(c *Config) { c.Server.DefaultRedirect = "/home" }, []string{"server.default_redirect"}},
		{"default redirect userinfo", func(c *Config) { c.Server.DefaultRedirect = "https://u:p@app.example.com/" }, []string{"server.default_redirect"}},
		// session
		{"cookie domain leading dot", func(c *Config) { c.Session.CookieDomain = ".example.com" }, []string{"session.cookie_domain"}},
		{"cookie domain upper case", func(c *Config) { c.Session.CookieDomain = "Example.com" }, []string{"session.cookie_domain"}},
		{"cookie domain IP", func(c *Config) { c.Session.CookieDomain = "10.0.0.1"; c.Upstreams = nil }, []string{"session.cookie_domain"}},
		{"idle timeout zero", func(c *Config) { c.Session.IdleTimeout = 0 }, []string{"session.idle_timeout"}},
		{"lifetime zero", func(c *Config) { c.Session.Lifetime = 0 }, []string{"session.lifetime"}},
		{"idle longer than lifetime", func(c *Config) { c.Session.IdleTimeout = c.Session.Lifetime + 1 }, []string{"session.idle_timeout"}},
		// storage
		{"storage path empty", func(c *Config) { c.Storage.Path = ""; c.Server.AdminSocket = "/run/k.sock" }, []string{"storage.path"}},
		{"key file missing", func(c *Config) { c.Storage.EncryptionKeyFile = missing }, []string{"storage.encryption_key_file"}},
		{"key file empty", func(c *Config) { c.Storage.EncryptionKeyFile = emptyFile }, []string{"storage.encryption_key_file"}},
		{"key file is a directory", func(c *Config) { c.Storage.EncryptionKeyFile = dir }, []string{"storage.encryption_key_file"}},
		{"key file and env", func(c *Config) { c.Storage.EncryptionKeyFile = keyFile; c.Storage.EncryptionKey = "x" }, []string{"storage.encryption_key_file"}},
		{"unknown backend", func(c *Config) { c.Storage.Backend = "redis" }, []string{"storage.backend"}},
		{"postgres without a DSN or a key", func(c *Config) { c.Storage.Backend = BackendPostgres },
			[]string{"storage.postgres.dsn_file", "storage.encryption_key_file"}},
		{"postgres DSN twice", func(c *Config) {
			c.Storage.Backend, c.Storage.EncryptionKeyFile = BackendPostgres, keyFile
			c.Storage.Postgres.DSNFile, c.Storage.Postgres.DSN = keyFile, "host=/tmp"
		}, []string{"storage.postgres.dsn_file"}},
		{"postgres DSN file missing, pool negative", func(c *Config) {
			c.Storage.Backend, c.Storage.EncryptionKeyFile = BackendPostgres, keyFile
			c.Storage.Postgres.DSNFile, c.Storage.Postgres.MaxConns = missing, -1
		}, []string{"storage.postgres.dsn_file", "storage.postgres.max_conns"}},
		{"postgres DSN unparsable", func(c *Config) {
			c.Storage.Backend, c.Storage.EncryptionKeyFile = BackendPostgres, keyFile
			c.Storage.Postgres.DSN = "host=db.example.com port=notaport password=hunter2"
		}, []string{"storage.postgres.dsn"}},
		{"postgres remote without TLS", func(c *Config) {
			c.Storage.Backend, c.Storage.EncryptionKeyFile = BackendPostgres, keyFile
			c.Storage.Postgres.DSN = "host=db.example.com sslmode=disable"
		}, []string{"storage.postgres.dsn"}},
		{"postgres remote, TLS maybe (the default prefer)", func(c *Config) {
			c.Storage.Backend, c.Storage.EncryptionKeyFile = BackendPostgres, keyFile
			c.Storage.Postgres.DSN = "postgres://keygate@db.example.com/keygate"
		}, []string{"storage.postgres.dsn"}},
		{"postgres remote, certificate unchecked", func(c *Config) {
			c.Storage.Backend, c.Storage.EncryptionKeyFile = BackendPostgres, keyFile
			c.Storage.Postgres.DSN = "host=/run/postgresql,db.example.com sslmode=require"
		}, []string{"storage.postgres.dsn"}},
		// upstreams
		{"upstream host empty", func(c *Config) { c.Upstreams[1].Host = "" }, []string{"upstreams[1].host"}},
		{"upstream host scheme", func(c *Config) { c.Upstreams[1].Host = "https://wiki.example.com" }, []string{"upstreams[1].host"}},
		{"upstream host port", func(c *Config) { c.Upstreams[1].Host = "wiki.example.com:443" }, []string{"upstreams[1].host"}},
		{"upstream host path", func(c *Config) { c.Upstreams[1].Host = "wiki.example.com/x" }, []string{"upstreams[1].host"}},
		{"upstream host upper case", func(c *Config) { c.Upstreams[1].Host = "Wiki.example.com" }, []string{"upstreams[1].host"}},
		{"upstream host IP", func(c *Config) { c.Upstreams[1].Host = "10.0.0.1" }, []string{"upstreams[1].host"}},
		{"upstream host bad label", func(c *Config) { c.Upstreams[1].Host = "-wiki.example.com" }, []string{"upstreams[1].host"}},
		{"upstream host duplicate", func(c *Config) { c.Upstreams[1].Host = "app.example.com" }, []string{"upstreams[1].host"}},
		{"upstream host outside cookie domain", func(c *Config) { c.Upstreams[1].Host = "wiki.example.org" }, []string{"upstreams[1].host"}},
		{"upstream host suffix trick", func(c *Config) { c.Upstreams[1].Host = "evilexample.com" }, []string{"upstreams[1].host"}},
		{"upstream url empty", func(c *Config) { c.Upstreams[0].URL = "" }, []string{"upstreams[0].url"}},
		{"upstream url scheme", func(c *Config) { c.Upstreams[0].URL = "ftp://127.0.0.1" }, []string{"upstreams[0].url"}},
		{"upstream url relative", func(c *Config) { c.Upstreams[0].URL = "127.0.0.1:8080" }, []string{"upstreams[0].url"}},
		{"upstream url no host", func(c *Config) { c.Upstreams[0].URL = "http:///x" }, []string{"upstreams[0].url"}},
		{"upstream url userinfo", func(c *Config) { c.Upstreams[0].URL = "http://u:p@127.0.0.1" }, []string{"upstreams[0].url"}},
		// webauthn
		{"rp id IP", func(c *Config) { c.WebAuthn.RPID = "127.0.0.1" }, []string{"webauthn.rp_id"}},
		{"rp id bad", func(c *Config) { c.WebAuthn.RPID = "https://example.com" }, []string{"webauthn.rp_id"}},
		{"origins without rp id", func(c *Config) { c.WebAuthn.RPID = ""; c.Policy.Rules = nil }, []string{"webauthn.rp_id"}},
		{"rp name empty", func(c *Config) { c.WebAuthn.RPName = " " }, []string{"webauthn.rp_name"}},
		{"origins empty", func(c *Config) { c.WebAuthn.Origins = nil }, []string{"webauthn.origins"}},
		{"origin other domain", func(c *Config) { c.WebAuthn.Origins[1] = "https://example.org" }, []string{"webauthn.origins[1]"}},
		{"origin suffix trick", func(c *Config) { c.WebAuthn.Origins[1] = "https://evilexample.com" }, []string{"webauthn.origins[1]"}},
		{"origin plain http", func(c *Config) { c.WebAuthn.Origins[1] = "http://app.example.com" }, []string{"webauthn.origins[1]"}},
		{"origin with path", func(c *Config) { c.WebAuthn.Origins[1] = "https://app.example.com/login" }, []string{"webauthn.origins[1]"}},
		{"origin trailing slash", func(c *Config) { c.WebAuthn.Origins[1] = "https://app.example.com/" }, []string{"webauthn.origins[1]"}},
		{"origin not a URL", func(c *Config) { c.WebAuthn.Origins[1] = "app.example.com" }, []string{"webauthn.origins[1]"}},
		{"origin upper case", func(c *Config) { c.WebAuthn.Origins[1] = "https://APP.example.com" }, []string{"webauthn.origins[1]"}},
		// email
		{"from bad", func(c *Config) { c.Email.From = "keygate at example" }, []string{"email.from"}},
		{"smtp host needed", func(c *Config) { c.Email.SMTP.Host = "" }, []string{"email.smtp.host"}},
		{"smtp host bad", func(c *Config) { c.Email.SMTP.Host = "smtp example" }, []string{"email.smtp.host"}},
		{"smtp port zero", func(c *Config) { c.Email.SMTP.Port = 0 }, []string{"email.smtp.port"}},
		{"smtp port high", func(c *Config) { c.Email.SMTP.Port = 65536 }, []string{"email.smtp.port"}},
		{"smtp tls unknown", func(c *Config) { c.Email.SMTP.TLS = "ssl" }, []string{"email.smtp.tls"}},
		{"smtp password in clear", func(c *Config) { c.Email.SMTP.Host = "smtp.example.com"; c.Email.SMTP.Username = "u" }, []string{"email.smtp.tls"}},
		{"smtp password file missing", func(c *Config) { c.Email.SMTP.PasswordFile = missing }, []string{"email.smtp.password_file"}},
		{"smtp password file and env", func(c *Config) { c.Email.SMTP.PasswordFile = keyFile; c.Email.SMTP.Password = "x" }, []string{"email.smtp.password_file"}},
		{"outbox is a file", func(c *Config) { c.Email.Outbox = keyFile }, []string{"email.outbox"}},
		// admin
		{"admin groups empty", func(c *Config) { c.Admin.Groups = nil }, []string{"admin.groups"}},
		{"admin group blank", func(c *Config) { c.Admin.Groups = []string{"admins", ""} }, []string{"admin.groups[1]"}},
		{"admin max_age off", func(c *Config) { c.Admin.MaxAge = 0 }, []string{"admin.max_age"}},
		{"admin max_age too long", func(c *Config) { c.Admin.MaxAge = policy.Duration(48 * time.Hour) }, []string{"admin.max_age"}},
		// passwords
		{"min length", func(c *Config) { c.Passwords.MinLength = 7 }, []string{"passwords.min_length"}},
		{"argon2 memory low", func(c *Config) { c.Passwords.Argon2id.MemoryKiB = 19455 }, []string{"passwords.argon2id.memory_kib"}},
		{"argon2 memory high", func(c *Config) { c.Passwords.Argon2id.MemoryKiB = 5 << 20 }, []string{"passwords.argon2id.memory_kib"}},
		{"argon2 iterations", func(c *Config) { c.Passwords.Argon2id.Iterations = 0 }, []string{"passwords.argon2id.iterations"}},
		{"argon2 parallelism zero", func(c *Config) { c.Passwords.Argon2id.Parallelism = 0 }, []string{"passwords.argon2id.parallelism"}},
		{"argon2 parallelism high", func(c *Config) { c.Passwords.Argon2id.Parallelism = 17 }, []string{"passwords.argon2id.parallelism"}},
		{"max concurrent hashes", func(c *Config) { c.Passwords.MaxConcurrentHashes = 0 }, []string{"passwords.max_concurrent_hashes"}},
		// metrics, log
		{"metrics listen bad", func(c *Config) { c.Metrics.Listen = "9092" }, []string{"metrics.listen"}},
		{"metrics listen same as server", func(c *Config) { c.Metrics.Listen = c.Server.Listen }, []string{"metrics.listen"}},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, []string{"log.level"}},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, []string{"log.format"}},
		// policy: Compile's paths, prefixed; and factors this config turned off
		{"policy default", func(c *Config) { c.Policy.Default = "maybe" }, []string{"policy.default"}},
		{"policy rule network", func(c *Config) {
			c.Policy.Rules = append(c.Policy.Rules, policy.Rule{Name: "n", Networks: []string{"10.0.0.0/8", "nope"}, Action: policy.ActionOneFactor})
		}, []string{"policy.rules[1].networks[1]"}},
		{"policy email factor without email", func(c *Config) { c.Email.From = "" }, []string{"policy.rules[0].factors[1]"}},
		{"policy webauthn factor without webauthn", func(c *Config) { c.WebAuthn = WebAuthn{} }, []string{"policy.rules[0].factors[0]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validBase()
			tc.mutate(&c)
			err := c.Validate()
			got := paths(problemsOf(t, err))
			if !sameSet(got, tc.want) {
				t.Fatalf("paths = %q, want %q\n%v", got, tc.want, err)
			}
		})
	}
}

// Validate keeps going: many broken sections give one problem each.
func TestValidateReportsEverything(t *testing.T) {
	c := validBase()
	c.Server.Listen = "x"
	c.Session.Lifetime = 0
	c.Upstreams[0].URL = "ftp://x"
	c.Log.Level = "loud"
	c.Policy.Default = "maybe"
	got := paths(problemsOf(t, c.Validate()))
	want := []string{"server.listen", "session.lifetime", "upstreams[0].url", "log.level", "policy.default"}
	if !sameSet(got, want) {
		t.Fatalf("paths = %v, want %v", got, want)
	}
}

// Problems found by Validate after Parse point at the line of the key (or of
// the nearest key written, for a missing one).
func TestValidateProblemsGetLines(t *testing.T) {
	doc := `webauthn:
  rp_id: example.com
  origins: ["https://app.example.com", "https://example.org"]
log:
  level: loud
`
	_, err := Parse([]byte(doc), nil)
	ps := problemsOf(t, err)
	want := map[string]int{"webauthn.rp_name": 1, "webauthn.origins[1]": 3, "log.level": 5}
	if len(ps) != len(want) {
		t.Fatalf("got:\n%v", err)
	}
	for _, p := range ps {
		if want[p.Path] != p.Line {
			t.Errorf("%s: line %d, want %d", p.Path, p.Line, want[p.Path])
		}
	}
}

func TestLocalSMTPMayAuthenticateWithoutTLS(t *testing.T) {
	c := validBase()
	c.Email.SMTP.Username = "u" // host is 127.0.0.1: net/smtp allows it
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Email.SMTP.Host, c.Email.SMTP.TLS = "smtp.example.com", TLSStartTLS
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestOriginsOnLocalhostMayUseHTTP(t *testing.T) {
	c := validBase()
	c.Session.CookieDomain = ""
	c.Upstreams = []Upstream{{Host: "app.localhost", URL: "http://127.0.0.1:8080"}}
	c.WebAuthn = WebAuthn{RPID: "localhost", RPName: "Demo", Origins: []string{"http://localhost:9091", "http://app.localhost:9091"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// A database on this machine needs no TLS; one elsewhere needs verified
// TLS or the operator's explicit allow_unverified_tls; the password in a
// connection string never appears in a message.
func TestPostgresTransport(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dsn   string
		allow bool
		ok    bool
	}{
		{"host=/run/postgresql dbname=keygate", false, true},
		{"host=localhost sslmode=disable", false, true},
		{"postgres://keygate:pw@127.0.0.1:5432/keygate?sslmode=disable", false, true},
		{"host=::1 sslmode=disable", false, true},
		{"host=db.example.com sslmode=verify-full", false, true},
		{"host=db.example.com sslmode=verify-ca", false, true},
		{"host=db.example.com sslmode=disable", true, true},
		{"host=db.example.com sslmode=require password=hunter2", false, false},
		{"host=10.0.0.5 sslmode=prefer password=hunter2", false, false},
		{"host=db.example.com port=x password=hunter2", true, false},
	} {
		c := validBase()
		c.Storage.Backend, c.Storage.EncryptionKeyFile = BackendPostgres, keyFile
		c.Storage.Postgres.DSN, c.Storage.Postgres.AllowUnverifiedTLS = Secret(tc.dsn), tc.allow
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%q (allow %v): %v", tc.dsn, tc.allow, err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: the message shows the password: %v", tc.dsn, err)
		}
	}
}
