// Package config loads, overrides and validates keygate's one YAML
// configuration file.
//
// The order is fixed: Default() values, then the YAML file (strict: unknown
// keys and type errors are problems, each with its YAML path and line), then
// environment variables KEYGATE_<SECTION>_<KEY> (derived from the yaml tags,
// so a new key gets its variable for free), then derived defaults, then
// Validate. Every problem is collected and reported together, never only the
// first, so that `keygate config validate` can show an admin everything to
// fix in one pass. Secrets are never read from the YAML itself: they come
// from a *_file key (read lazily by an accessor) or from an environment
// variable.
package config

import (
	"github.com/keygate/keygate/factors/sentcode"
	smsgw "github.com/keygate/keygate/factors/sms/gateway"
	"path/filepath"
	"time"

	"github.com/keygate/keygate/policy"
)

// Config is the whole configuration. The yaml tags are the user-facing
// contract documented in examples/keygate.yaml.
type Config struct {
	Server    Server        `yaml:"server"`
	Session   Session       `yaml:"session"`
	Storage   Storage       `yaml:"storage"`
	Upstreams []Upstream    `yaml:"upstreams"`
	WebAuthn  WebAuthn      `yaml:"webauthn"`
	TOTP      TOTP          `yaml:"totp"`
	Email     Email         `yaml:"email"`
	SMS       smsgw.Config  `yaml:"sms"`
	Admin     Admin         `yaml:"admin"`
	Passwords Passwords     `yaml:"passwords"`
	Metrics   Metrics       `yaml:"metrics"`
	Log       Log           `yaml:"log"`
	Policy    policy.Policy `yaml:"policy"`

	// Regulation limits failed attempts; Activity keeps the per-user log.
	Regulation Regulation `yaml:"regulation"`
	Activity   Activity   `yaml:"activity"`
	// Recovery is the self-service recovery after losing every factor.
	Recovery Recovery `yaml:"recovery"`
}

// Server is the HTTP listener and what it trusts.
type Server struct {
	// Listen is the host:port of the gateway's HTTP listener.
	Listen string `yaml:"listen"`
	// TrustedProxies are CIDRs or single IPs whose X-Forwarded-* and
	// X-Original-* headers are believed. Empty = nobody's.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ProtectedHosts are hosts (exact names or "*.suffix") keygate protects
	// besides the upstreams' hosts and the hosts policy rules name. Forward-
	// auth judges only protected hosts and refuses questions about any
	// other (403 unknown_host), so that a host the front proxy routes by
	// mistake is never judged by policy.default alone.
	ProtectedHosts []string `yaml:"protected_hosts"`
	// AdminSocket is the unix socket the CLI uses for admin commands.
	// Empty in Default(); Parse fills it with <storage.path>/keygate.sock so
	// that it follows a changed storage.path.
	AdminSocket string `yaml:"admin_socket"`
	// DefaultRedirect is where people go after sign-in when no rd was given.
	// Empty = the portal's own page.
	DefaultRedirect string `yaml:"default_redirect"`
	// PortalURL is the origin people open the portal at
	// (scheme://host[:port]); links in mails and printed by the CLI start
	// with it. Empty = derived where that is unambiguous (see
	// Config.PortalURL); required behind a proxy and in forward-auth mode.
	PortalURL string `yaml:"portal_url"`
	// TLS, when set, makes the listener speak HTTPS itself (for setups
	// without a TLS-terminating proxy). The files are read again on SIGHUP.
	TLS ServerTLS `yaml:"tls"`
	// GOGC is the Go garbage collector's target (percent heap growth
	// between collections; -1 = off, 0 = the runtime's own setting). A
	// proxy's live heap is small and its garbage is per request, so a
	// higher target trades a few MiB for fewer collections. The GOGC
	// environment variable, when set, wins.
	GOGC int `yaml:"gogc"`
	// MemoryLimit is the Go runtime's soft memory limit: the collector
	// works harder as the heap nears it. 0 = governed by keygate (between
	// a 128 MiB target and the hashing bound; cmd/keygate/runtime.go).
	// GOMEMLIMIT, when set, wins.
	MemoryLimit ByteSize `yaml:"memory_limit"`
	// BodyTimeout: a request body to an upstream must arrive within this
	// (upstreams[].body_timeout overrides it per app); slower ones are cut
	// with 408.
	BodyTimeout policy.Duration `yaml:"body_timeout"`
	// BodyBuffer: request bodies up to this size are read whole before
	// the upstream is dialled, so slow clients hold no upstream
	// connection; larger ones are streamed.
	BodyBuffer ByteSize `yaml:"body_buffer"`
}

// ServerTLS names the certificate chain and key of the HTTPS listener.
type ServerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// HSTSIncludeSubdomains adds includeSubDomains to the HSTS header
	// keygate sends over this listener (max-age is one year). Only when
	// every subdomain speaks HTTPS: browsers refuse plain HTTP on all of
	// them for a year.
	HSTSIncludeSubdomains bool `yaml:"hsts_include_subdomains"`
}

// Session is the session cookie's scope and life.
type Session struct {
	// CookieDomain scopes the session cookie; empty = host-only cookie.
	CookieDomain string `yaml:"cookie_domain"`
	// IdleTimeout ends a session that saw no request for this long.
	IdleTimeout policy.Duration `yaml:"idle_timeout"`
	// Lifetime ends a session this long after sign-in, active or not.
	Lifetime policy.Duration `yaml:"lifetime"`
	// RememberDeviceDays: how long "remember this device" lasts; 0 turns
	// the option off. Rules decide where a remembered device may skip
	// the second factor.
	RememberDeviceDays int `yaml:"remember_device_days"`
	// MaxPerUser bounds one user's sessions; one more ends that user's
	// oldest.
	MaxPerUser int `yaml:"max_per_user"`
}

// Storage is where Badger keeps its files and how they are encrypted.
type Storage struct {
	// Backend is badger (embedded, the default) or postgres (one
	// database shared by several replicas).
	Backend string `yaml:"backend"`
	// Path is Badger's data directory; with postgres it still holds the
	// admin socket by default.
	Path string `yaml:"path"`
	// EncryptionKeyFile holds the at-rest encryption key (as text).
	EncryptionKeyFile string `yaml:"encryption_key_file"`
	// EncryptionKey comes only from KEYGATE_STORAGE_ENCRYPTION_KEY; the
	// loader refuses it in the YAML file. Use EncryptionKeyMaterial.
	EncryptionKey Secret `yaml:"encryption_key" keygate:"env-only"`
	// Postgres is the shared database (storage.backend: postgres).
	Postgres Postgres `yaml:"postgres"`
}

// Storage backends.
const (
	BackendBadger   = "badger"
	BackendPostgres = "postgres"
)

// Postgres is the PostgreSQL backend's connection.
type Postgres struct {
	// DSNFile holds the connection string (a libpq DSN or URL; it may
	// hold a password, so it is a secret).
	DSNFile string `yaml:"dsn_file"`
	// DSN comes only from KEYGATE_STORAGE_POSTGRES_DSN. Use PostgresDSN.
	DSN Secret `yaml:"dsn" keygate:"env-only"`
	// MaxConns caps each replica's pool (0: max(4, CPUs)).
	MaxConns int `yaml:"max_conns"`
	// AllowUnverifiedTLS accepts a database on another machine reached
	// without TLS or without checking its certificate (sslmode below
	// verify-ca): sealed values are safe either way, but whoever sits on
	// the path sees which sessions exist and could feed a replica
	// revocations, so it takes saying so.
	AllowUnverifiedTLS bool `yaml:"allow_unverified_tls"`
}

// Upstream maps one protected host to the app behind it.
type Upstream struct {
	// Host is the Host header value (lower case, no port) that selects it.
	Host string `yaml:"host"`
	// URL is the upstream's base URL (http or https).
	URL string `yaml:"url"`
	// BodyTimeout overrides server.body_timeout for this app (0 = that),
	// for apps that take real uploads.
	BodyTimeout policy.Duration `yaml:"body_timeout"`
	// CaseSensitive: the app routes paths case-sensitively, so keygate
	// does not also judge a path's case-folded reading. Default false, the
	// safe side: Express, ASP.NET and IIS fold case.
	CaseSensitive bool `yaml:"case_sensitive"`
	// PathParameters: the app takes ";" path parameters (a servlet
	// container's ;jsessionid). A ";" is then allowed and the path is
	// judged with the parameters stripped; by default a path holding one
	// is refused (400).
	PathParameters bool `yaml:"path_parameters"`
	// MethodOverride: the app may act on a POST as another method (a
	// "_method" form, query or JSON field: Rails, Laravel, Symfony,
	// Express method-override), so a POST is judged under every method the
	// rules name as well. nil = true, the safe side.
	MethodOverride *bool `yaml:"method_override"`
}

// PathOptions is how the app reads paths and methods, for the gate's
// readings.
func (u Upstream) PathOptions() policy.PathOptions {
	return policy.PathOptions{CaseSensitive: u.CaseSensitive, PathParameters: u.PathParameters,
		NoMethodOverride: u.MethodOverride != nil && !*u.MethodOverride}
}

// WebAuthn is the relying party. An empty RPID turns WebAuthn off.
type WebAuthn struct {
	// RPID is the parent domain so one key works on every subdomain.
	RPID   string `yaml:"rp_id"`
	RPName string `yaml:"rp_name"`
	// Origins are the exact origins (scheme://host[:port]) browsers report.
	Origins []string `yaml:"origins"`
	// PasskeyTwoFactor: a passkey sign-in with user verification satisfies
	// two_factor on its own (NIST AAL2); false = it counts as one factor.
	PasskeyTwoFactor bool `yaml:"passkey_two_factor"`
	// MDSBlobFile is an offline FIDO Metadata Service (MDS3) blob; with it
	// (or RootCertFiles) attestation is checked against trust anchors.
	MDSBlobFile string `yaml:"mds_blob_file"`
	// MDSRootFile is the PEM root the blob must be signed under; empty =
	// the FIDO Alliance's production MDS root.
	MDSRootFile string `yaml:"mds_root_file"`
	// RootCertFiles are PEM files of attestation roots to trust.
	RootCertFiles []string `yaml:"root_cert_files"`
}

// TOTP is the authenticator-app factor.
type TOTP struct {
	Issuer    string `yaml:"issuer"`
	Algorithm string `yaml:"algorithm"`
	Digits    int    `yaml:"digits"`
	Period    int    `yaml:"period"`
	Skew      int    `yaml:"skew"`
}

// EmailCode tunes the one-time codes by email.
type EmailCode = sentcode.Tuning

// Email is how one-time codes and notices are sent. An empty From turns
// email off.
type Email struct {
	From string `yaml:"from"`
	SMTP SMTP   `yaml:"smtp"`
	// Outbox, when set, is a directory mails are written to instead of
	// being sent (development).
	Outbox string `yaml:"outbox"`
	// Code tunes the one-time codes.
	Code EmailCode `yaml:"code"`
	// Enrollment lets a code to the verified address stand in for an
	// admin's enrolment link when enrolling the first second factor.
	Enrollment bool `yaml:"enrollment"`
}

// SMTP TLS modes.
const (
	TLSNone     = "none"
	TLSStartTLS = "starttls"
	TLSImplicit = "tls"
)

// SMTP is the outgoing mail server.
type SMTP struct {
	Host         string `yaml:"host"`
	Port         int    `yaml:"port"`
	TLS          string `yaml:"tls"`
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// Password comes only from KEYGATE_EMAIL_SMTP_PASSWORD; the loader
	// refuses it in the YAML file. Use SMTPPassword.
	Password Secret `yaml:"password" keygate:"env-only"`
}

// Admin says who may administer keygate.
type Admin struct {
	Groups []string `yaml:"groups"`
	// MaxAge: the admin area needs a second factor at most this old. It
	// can be shorter or longer, never off: the admin area always needs two
	// factors.
	MaxAge policy.Duration `yaml:"max_age"`
}

// Passwords is the first-factor password policy and hashing cost.
type Passwords struct {
	MinLength int      `yaml:"min_length"`
	Argon2id  Argon2id `yaml:"argon2id"`
	// MaxConcurrentHashes bounds memory: each hash takes Argon2id.MemoryKiB.
	MaxConcurrentHashes int `yaml:"max_concurrent_hashes"`
}

// Argon2id are the password hashing parameters.
type Argon2id struct {
	MemoryKiB   int `yaml:"memory_kib"`
	Iterations  int `yaml:"iterations"`
	Parallelism int `yaml:"parallelism"`
}

// Metrics is the Prometheus endpoint.
type Metrics struct {
	// Listen is host:port; empty = off.
	Listen string `yaml:"listen"`
}

// Regulation limits failed attempts at every verifier (password, TOTP,
// email and recovery codes, security keys), per account and per client
// address, with locks that double on every repeat.
type Regulation struct {
	// MaxFailures per account within Window before it locks.
	MaxFailures int `yaml:"max_failures"`
	// IPMaxFailures per client address within Window before it locks.
	IPMaxFailures int             `yaml:"ip_max_failures"`
	Window        policy.Duration `yaml:"window"`
	// Lockout is the first lock; each further one doubles, up to MaxLockout.
	Lockout    policy.Duration `yaml:"lockout"`
	MaxLockout policy.Duration `yaml:"max_lockout"`
}

// Activity is the per-user log of sign-ins, failures and security changes.
type Activity struct {
	// RetentionDays: how long events are kept.
	RetentionDays int `yaml:"retention_days"`
}

// Log is the log output.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
	// Access writes one line per request (with its request ID).
	Access bool `yaml:"access"`
}

// factorSections are the configuration sections factor packages own
// (factors.ConfigSection), each under its key, in the chooser's order: a factor
// with a section of its own is one field above and one entry here.
// A section checks itself and says whether it turns its factor on; the
// loader only hands it a checker.
func (c *Config) factorSections() []section {
	return []section{{"sms", &c.SMS}}
}

// Default returns the configuration used for every key the file and the
// environment leave unset.
func Default() Config {
	return Config{
		Server: Server{Listen: "127.0.0.1:9091", GOGC: DefaultGOGC,
			BodyTimeout: policy.Duration(60 * time.Second), BodyBuffer: 64 << 10},
		Session: Session{
			IdleTimeout:        policy.Duration(30 * time.Minute),
			Lifetime:           policy.Duration(12 * time.Hour),
			RememberDeviceDays: 30,
			MaxPerUser:         20,
		},
		WebAuthn: WebAuthn{PasskeyTwoFactor: true},
		TOTP:     TOTP{Issuer: "keygate", Algorithm: "SHA1", Digits: 6, Period: 30, Skew: 1},
		Storage:  Storage{Path: "./keygate-data"},
		Email: Email{
			SMTP:       SMTP{Host: "127.0.0.1", Port: 1025, TLS: TLSNone},
			Code:       EmailCode{Length: 6, TTL: policy.Duration(10 * time.Minute), MaxTries: 5, Cooldown: policy.Duration(time.Minute), HourlyCap: 5},
			Enrollment: true,
		},
		SMS:   smsgw.DefaultConfig(),
		Admin: Admin{Groups: []string{"admins"}, MaxAge: policy.Duration(15 * time.Minute)},
		Passwords: Passwords{
			MinLength: 12,
			// 64 MiB, t=1, p=2: well above OWASP's memory floor (19 MiB)
			// and measured at 47-65 ms per hash on a 2-core machine; memory,
			// not passes, is what slows GPU guessing most.
			Argon2id:            Argon2id{MemoryKiB: 65536, Iterations: 1, Parallelism: 2},
			MaxConcurrentHashes: 4,
		},
		Log:    Log{Level: "info", Format: "text", Access: true},
		Policy: policy.Policy{Default: policy.ActionTwoFactor},

		Regulation: Regulation{MaxFailures: 5, IPMaxFailures: 20, Window: policy.Duration(10 * time.Minute),
			Lockout: policy.Duration(5 * time.Minute), MaxLockout: policy.Duration(time.Hour)},
		Activity: Activity{RetentionDays: 90},
		Recovery: Recovery{WaitingPeriod: policy.Duration(72 * time.Hour)},
	}
}

// defaultAdminSocket is the admin socket when server.admin_socket is empty.
func defaultAdminSocket(storagePath string) string {
	return filepath.Join(storagePath, "keygate.sock")
}

// Secret is a string that never prints: a Config dumped to a log, to YAML
// or to JSON shows "[redacted]" instead of the value.
type Secret string

const redacted = "[redacted]"

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return `config.Secret("` + s.String() + `")` }

// MarshalYAML redacts the value.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalJSON redacts the value.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }
