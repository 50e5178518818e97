package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/keygate/keygate/policy"
)

// Limits Validate enforces, with the reason for each.
const (
	// minPasswordLength: below 8 characters NIST SP 800-63B calls a
	// memorised secret too weak whatever the hashing.
	minPasswordLength = 8
	// minArgon2MemoryKiB is OWASP's floor for Argon2id (19 MiB).
	minArgon2MemoryKiB = 19456
	// maxArgon2MemoryKiB: argon2 takes the memory as uint32 KiB, and more
	// than 4 GiB per hash is a typo, not a choice.
	maxArgon2MemoryKiB = 4 << 20
	maxArgon2Threads   = 16
	// maxUnixSocketPath: sun_path is 108 bytes on Linux and 104 on the BSDs
	// and macOS; a longer admin socket path fails only at bind time.
	maxUnixSocketPath = 104
)

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
	smtpTLS    = []string{TLSNone, TLSStartTLS, TLSImplicit}
)

// Validate checks the whole configuration and returns Problems listing every
// problem found (nil when there is none). It is pure apart from checking
// that *_file secrets can be read, so the same checks serve `config
// validate`, `serve` and configs built in code (demo, tests).
func (c *Config) Validate() error {
	var ps Problems
	c.validateServer(&ps)
	c.validatePortalURL(&ps)
	c.validateSession(&ps)
	c.validateStorage(&ps)
	c.validateUpstreams(&ps)
	c.validateWebAuthn(&ps)
	c.validateFactors(&ps)
	c.validateEmail(&ps)
	c.validateAdmin(&ps)
	c.validatePasswords(&ps)
	c.validateMetrics(&ps)
	c.validateLog(&ps)
	c.validatePolicy(&ps)
	c.validateRegulation(&ps)
	c.validateRecovery(&ps)
	return ps.err()
}

// validateFactors checks the second factors' tuning.
func (c *Config) validateFactors(ps *Problems) {
	if d := c.Session.RememberDeviceDays; d < 0 || d > 365 {
		ps.add("session.remember_device_days", "%d must be between 0 (off) and 365", d)
	}
	for i, f := range c.WebAuthn.RootCertFiles {
		if _, err := os.Stat(f); err != nil {
			ps.add(fmt.Sprintf("webauthn.root_cert_files[%d]", i), "cannot be read: %v", err)
		}
	}
	for path, f := range map[string]string{"webauthn.mds_blob_file": c.WebAuthn.MDSBlobFile, "webauthn.mds_root_file": c.WebAuthn.MDSRootFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			ps.add(path, "cannot be read: %v", err)
		}
	}
	t := c.TOTP
	if t.Issuer == "" {
		ps.add("totp.issuer", "required: the name authenticator apps show (such as Example)")
	}
	if !slices.Contains([]string{"SHA1", "SHA256", "SHA512"}, t.Algorithm) {
		ps.add("totp.algorithm", "%q is not SHA1, SHA256 or SHA512 (most apps only support SHA1)", t.Algorithm)
	}
	if t.Digits != 6 && t.Digits != 8 {
		ps.add("totp.digits", "%d must be 6 or 8", t.Digits)
	}
	if t.Period < 15 || t.Period > 120 {
		ps.add("totp.period", "%d must be between 15 and 120 seconds (apps use 30)", t.Period)
	}
	if t.Skew < 1 || t.Skew > 3 {
		ps.add("totp.skew", "%d must be between 1 and 3 steps (phones' clocks drift)", t.Skew)
	}
	c.Email.Code.Check("email.code", ps.add)
	c.validateSections(ps)
}

func (c *Config) validateServer(ps *Problems) {
	s := c.Server
	c.validateRuntime(ps)
	if s.Listen == "" {
		ps.add("server.listen", "required (host:port such as 127.0.0.1:9091)")
	} else if msg := checkListen(s.Listen); msg != "" {
		ps.add("server.listen", "%s", msg)
	}
	for i, p := range s.TrustedProxies {
		if _, err := parsePrefix(p); errors.Is(err, errHostBits) {
			ps.add(fmt.Sprintf("server.trusted_proxies[%d]", i), "%v", err)
		} else if err != nil {
			ps.add(fmt.Sprintf("server.trusted_proxies[%d]", i), "%q is not a CIDR (10.0.0.0/8) or an IP address", p)
		}
	}
	for i, h := range s.ProtectedHosts {
		if msg := checkHostPattern(h); msg != "" {
			ps.add(fmt.Sprintf("server.protected_hosts[%d]", i), "%q %s", h, msg)
		}
	}
	sock := s.AdminSocket
	if sock == "" {
		sock = defaultAdminSocket(c.Storage.Path)
	}
	if len(sock) > maxUnixSocketPath {
		ps.add("server.admin_socket", "%q is %d bytes; unix socket paths are limited to %d, choose a shorter path", sock, len(sock), maxUnixSocketPath)
	}
	if s.DefaultRedirect != "" {
		if msg := checkHTTPURL(s.DefaultRedirect); msg != "" {
			ps.add("server.default_redirect", "%s", msg)
		}
	}
	switch t := s.TLS; {
	case t.CertFile == "" && t.KeyFile == "":
	case t.CertFile == "" || t.KeyFile == "":
		ps.add("server.tls", "cert_file and key_file go together: set both (HTTPS) or neither (plain HTTP)")
	default:
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			ps.add("server.tls.cert_file", "cannot load the certificate and key: %v", err)
		}
	}
}

func (c *Config) validateSession(ps *Problems) {
	s := c.Session
	if s.CookieDomain != "" {
		if msg := checkHostName(s.CookieDomain); msg != "" {
			ps.add("session.cookie_domain", "%s", msg)
		}
	}
	if s.IdleTimeout <= 0 {
		ps.add("session.idle_timeout", "must be longer than 0 (such as 30m)")
	}
	if s.Lifetime <= 0 {
		ps.add("session.lifetime", "must be longer than 0 (such as 12h)")
	}
	if s.IdleTimeout > 0 && s.Lifetime > 0 && s.IdleTimeout > s.Lifetime {
		ps.add("session.idle_timeout", "%s is longer than session.lifetime (%s), so it would never apply", s.IdleTimeout, s.Lifetime)
	}
}

func (c *Config) validateStorage(ps *Problems) {
	if c.Storage.Path == "" {
		ps.add("storage.path", "required (the directory keygate keeps its data in)")
	}
	checkSecret(ps, c.Storage.EncryptionKey, "storage.encryption_key", c.Storage.EncryptionKeyFile)
	pg := c.Storage.Postgres
	switch c.Storage.Backend {
	case "", BackendBadger:
	case BackendPostgres:
		checkSecret(ps, pg.DSN, "storage.postgres.dsn", pg.DSNFile)
		if pg.DSN == "" && pg.DSNFile == "" {
			ps.add("storage.postgres.dsn_file", "required with storage.backend: postgres (or %s)", envName("storage.postgres.dsn"))
		}
		if src, dsn, err := c.PostgresDSN(); err == nil && dsn != "" {
			checkPostgresDSN(ps, src, dsn, pg.AllowUnverifiedTLS)
		}
		if c.Storage.EncryptionKey == "" && c.Storage.EncryptionKeyFile == "" {
			ps.add("storage.encryption_key_file", "required with storage.backend: postgres: every value is sealed with it, so a database dump reveals no secret (every replica needs the same key)")
		}
	default:
		ps.add("storage.backend", "%q is not badger or postgres", c.Storage.Backend)
	}
	if pg.MaxConns < 0 || pg.MaxConns > 1000 {
		ps.add("storage.postgres.max_conns", "%d must be between 0 (the default) and 1000", pg.MaxConns)
	}
}

// checkSecret refuses a secret given twice (which one would win is not
// obvious, and guessing wrong on the storage key locks the data away) and a
// *_file that cannot be read now rather than at first use.
func checkSecret(ps *Problems, env Secret, path, file string) {
	if file == "" {
		return
	}
	if env != "" {
		ps.add(path+"_file", "set while %s is also set; keep one of them", envName(path))
		return
	}
	if _, err := readSecretFile(file); err != nil {
		ps.add(path+"_file", "cannot be used: %v", err)
	}
}

func (c *Config) validateUpstreams(ps *Problems) {
	first := map[string]int{}
	for i, u := range c.Upstreams {
		p := fmt.Sprintf("upstreams[%d]", i)
		switch msg := checkHostName(u.Host); {
		case u.Host == "":
			ps.add(p+".host", "required (the host name people use, such as app.example.com)")
		case msg != "":
			ps.add(p+".host", "%s", msg)
		default:
			if j, dup := first[u.Host]; dup {
				ps.add(p+".host", "%q is already upstreams[%d].host", u.Host, j)
			} else {
				first[u.Host] = i
			}
			if d := c.Session.CookieDomain; d != "" && checkHostName(d) == "" && !underDomain(u.Host, d) {
				ps.add(p+".host", "%q is not session.cookie_domain (%s) or below it, so the session cookie would never reach it", u.Host, d)
			}
		}
		if u.URL == "" {
			ps.add(p+".url", "required (such as http://127.0.0.1:8080)")
		} else if msg := checkHTTPURL(u.URL); msg != "" {
			ps.add(p+".url", "%s", msg)
		}
	}
}

func (c *Config) validateWebAuthn(ps *Problems) {
	w := c.WebAuthn
	if w.RPID == "" {
		if len(w.Origins) > 0 {
			ps.add("webauthn.rp_id", "required when webauthn.origins are set (the parent domain, such as example.com)")
		}
		return
	}
	if _, err := netip.ParseAddr(w.RPID); err == nil {
		ps.add("webauthn.rp_id", "%q is an IP address; WebAuthn needs a domain name (browsers and go-webauthn refuse IPs)", w.RPID)
		return
	}
	if msg := checkDomain(w.RPID); msg != "" {
		ps.add("webauthn.rp_id", "%s", msg)
		return
	}
	if strings.TrimSpace(w.RPName) == "" {
		ps.add("webauthn.rp_name", "required when webauthn.rp_id is set (the name authenticators show, such as Example)")
	}
	if len(w.Origins) == 0 {
		ps.add("webauthn.origins", "at least one origin is required when webauthn.rp_id is set (such as https://app.%s)", w.RPID)
	}
	for i, o := range w.Origins {
		if msg := checkOrigin(o, w.RPID); msg != "" {
			ps.add(fmt.Sprintf("webauthn.origins[%d]", i), "%s", msg)
		}
	}
}

// checkOrigin checks one WebAuthn origin against the RP ID: browsers only
// offer credentials scoped to the RP ID on that domain or its subdomains,
// and only in a secure context.
func checkOrigin(o, rpID string) string {
	u, err := url.Parse(o)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Sprintf("%q is not an origin such as https://app.%s", o, rpID)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Sprintf("%q: an origin is scheme://host[:port] only, such as %s://%s", o, u.Scheme, u.Host)
	}
	if u.Path == "/" {
		// Browsers report the origin without the slash; with it, no
		// ceremony would ever match.
		return fmt.Sprintf("%q: drop the trailing slash (browsers send %s://%s)", o, u.Scheme, u.Host)
	}
	host := u.Hostname()
	if host != strings.ToLower(host) {
		return fmt.Sprintf("%q: write the host in lower case", o)
	}
	if !underDomain(host, rpID) {
		return fmt.Sprintf("%q: host %s is not webauthn.rp_id (%s) or a subdomain of it", o, host, rpID)
	}
	if u.Scheme == "http" && host != "localhost" && !strings.HasSuffix(host, ".localhost") {
		return fmt.Sprintf("%q: browsers allow WebAuthn over plain http only on localhost; use https", o)
	}
	return ""
}

func (c *Config) validateEmail(ps *Problems) {
	e := c.Email
	if e.From != "" {
		if _, err := mail.ParseAddress(e.From); err != nil {
			ps.add("email.from", "%q is not an address such as \"keygate <no-reply@example.com>\": %v", e.From, err)
		}
	}
	s := e.SMTP
	sending := e.From != "" && e.Outbox == ""
	if sending && s.Host == "" {
		ps.add("email.smtp.host", "required to send mail (or set email.outbox)")
	} else if s.Host != "" {
		if msg := checkHostOrIP(s.Host); msg != "" {
			ps.add("email.smtp.host", "%s", msg)
		}
	}
	if s.Port < 1 || s.Port > 65535 {
		ps.add("email.smtp.port", "%d is not a port (1-65535)", s.Port)
	}
	if !slices.Contains(smtpTLS, s.TLS) {
		ps.add("email.smtp.tls", "%q is not one of %s", s.TLS, strings.Join(smtpTLS, ", "))
	} else if sending && s.TLS == TLSNone && s.Username != "" && !isLocalHost(s.Host) {
		// Go's net/smtp refuses PLAIN auth over an unencrypted connection
		// to anything but localhost, and rightly: the password would
		// cross the network in clear.
		ps.add("email.smtp.tls", "none would send the password in clear to %s; use starttls or tls", s.Host)
	}
	checkSecret(ps, s.Password, "email.smtp.password", s.PasswordFile)
	if e.Outbox != "" {
		// A missing directory is created at start; a file in the way is
		// a mistake.
		if fi, err := os.Stat(e.Outbox); err == nil && !fi.IsDir() {
			ps.add("email.outbox", "%q exists and is not a directory", e.Outbox)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			ps.add("email.outbox", "cannot be used: %v", err)
		}
	}
}

func (c *Config) validateAdmin(ps *Problems) {
	if len(c.Admin.Groups) == 0 {
		ps.add("admin.groups", "at least one group is required, or nobody could administer keygate")
	}
	for i, g := range c.Admin.Groups {
		if strings.TrimSpace(g) == "" {
			ps.add(fmt.Sprintf("admin.groups[%d]", i), "empty group name")
		}
	}
	// A second factor older than a working day is no step-up at all; one
	// younger than a minute sends admins to their key between two clicks.
	if m := c.Admin.MaxAge.D(); m < time.Minute || m > 24*time.Hour {
		ps.add("admin.max_age", "%s is outside 1m to 24h; the admin area always needs a recent second factor", c.Admin.MaxAge)
	}
}

func (c *Config) validatePasswords(ps *Problems) {
	p := c.Passwords
	if p.MinLength < minPasswordLength {
		ps.add("passwords.min_length", "%d is below %d; shorter passwords are too easy to guess", p.MinLength, minPasswordLength)
	}
	a := p.Argon2id
	if a.MemoryKiB < minArgon2MemoryKiB || a.MemoryKiB > maxArgon2MemoryKiB {
		ps.add("passwords.argon2id.memory_kib", "%d is outside %d (OWASP's minimum, 19 MiB) to %d (4 GiB)", a.MemoryKiB, minArgon2MemoryKiB, maxArgon2MemoryKiB)
	}
	if a.Iterations < 1 {
		ps.add("passwords.argon2id.iterations", "%d must be at least 1", a.Iterations)
	}
	if a.Parallelism < 1 || a.Parallelism > maxArgon2Threads {
		ps.add("passwords.argon2id.parallelism", "%d is outside 1 to %d", a.Parallelism, maxArgon2Threads)
	}
	if p.MaxConcurrentHashes < 1 {
		ps.add("passwords.max_concurrent_hashes", "%d must be at least 1", p.MaxConcurrentHashes)
	}
}

func (c *Config) validateMetrics(ps *Problems) {
	l := c.Metrics.Listen
	if l == "" {
		return
	}
	if msg := checkListen(l); msg != "" {
		ps.add("metrics.listen", "%s", msg)
	} else if l == c.Server.Listen {
		ps.add("metrics.listen", "%q is also server.listen; metrics need their own address", l)
	}
}

func (c *Config) validateLog(ps *Problems) {
	if !slices.Contains(logLevels, c.Log.Level) {
		ps.add("log.level", "%q is not one of %s", c.Log.Level, strings.Join(logLevels, ", "))
	}
	if !slices.Contains(logFormats, c.Log.Format) {
		ps.add("log.format", "%q is not one of %s", c.Log.Format, strings.Join(logFormats, ", "))
	}
}

// validatePolicy leaves the policy's own rules to policy.Compile, the one
// place that knows them, and adds what only the whole config can see: a
// rule asking for a factor that this configuration turned off.
func (c *Config) validatePolicy(ps *Problems) {
	if _, err := policy.CompileWith(c.Policy, policy.CompileOptions{Factors: c.FactorKinds()}); err != nil {
		if verrs, ok := errors.AsType[policy.ValidationErrors](err); ok {
			for _, fe := range verrs {
				path := "policy"
				if fe.Path != "" {
					path += "." + fe.Path
				}
				ps.add(path, "%s", fe.Message)
			}
		} else {
			ps.add("policy", "%v", err)
		}
	}
	for i, r := range c.Policy.Rules {
		for j, f := range r.Factors {
			p := fmt.Sprintf("policy.rules[%d].factors[%d]", i, j)
			switch {
			case f == policy.FactorEmail && c.Email.From == "":
				ps.add(p, "email codes need email.from to be set")
			case f == policy.FactorWebAuthn && c.WebAuthn.RPID == "":
				ps.add(p, "webauthn needs webauthn.rp_id to be set")
			}
		}
	}
}

// checkListen checks a host:port listen address; an empty host means every
// interface and port 0 a free port (handy in tests).
func checkListen(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not host:port such as 127.0.0.1:9091", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Sprintf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if host != "" {
		if msg := checkHostOrIP(host); msg != "" {
			return fmt.Sprintf("%q: %s", addr, msg)
		}
	}
	return ""
}

// errHostBits: "10.1.2.3/8" is most likely a typo for an address or for a
// narrower network, so it is refused rather than silently widened (as
// policy networks are).
var errHostBits = errors.New("bits set after the prefix length")

// parsePrefix reads a CIDR or a single IP (as a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("parse CIDR: %w", err)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%s: %w (did you mean %s?)", s, errHostBits, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parse IP: %w", err)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// TrustedProxyPrefixes returns server.trusted_proxies as prefixes (single
// IPs become /32 or /128), skipping entries Validate would refuse.
func (c *Config) TrustedProxyPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(c.Server.TrustedProxies))
	for _, s := range c.Server.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// AdminSocketPath returns server.admin_socket, or its default under
// storage.path when empty (Parse fills it; a Config built in code may not).
func (c *Config) AdminSocketPath() string {
	if c.Server.AdminSocket != "" {
		return c.Server.AdminSocket
	}
	return defaultAdminSocket(c.Storage.Path)
}

// checkHTTPURL checks an absolute http(s) URL with a host and no
// credentials (a URL with user:password ends up in logs and is not how
// either redirect targets or upstreams authenticate).
func checkHTTPURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Sprintf("%q is not a URL: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Sprintf("%q: want an absolute http:// or https:// URL", s)
	}
	if u.Host == "" {
		return fmt.Sprintf("%q has no host", s)
	}
	if u.User != nil {
		return fmt.Sprintf("%q: user:password in the URL is not supported", s)
	}
	return ""
}

// checkHostName checks a protected host: a lower-case DNS name as it
// appears in the Host header without its port.
func checkHostName(h string) string {
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return fmt.Sprintf("%q is an IP address; a host name is needed here (cookies and WebAuthn need one)", h)
	}
	return checkDomain(h)
}

// checkHostOrIP accepts an IP address or a DNS name (SMTP server, listen
// host).
func checkHostOrIP(h string) string {
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	return checkDomain(strings.ToLower(h))
}

// checkDomain checks a lower-case DNS name and explains the usual slips
// (scheme, port, path, wildcard, leading or trailing dot).
func checkDomain(d string) string {
	switch {
	case strings.Contains(d, "://"):
		return fmt.Sprintf("%q: write the host name only, without the scheme", d)
	case strings.Contains(d, "/"):
		return fmt.Sprintf("%q: write the host name only, without a path", d)
	case strings.Contains(d, ":"):
		return fmt.Sprintf("%q: write the host name only, without a port", d)
	case strings.Contains(d, "*"):
		return fmt.Sprintf("%q: wildcards are not supported here", d)
	case strings.HasPrefix(d, "."):
		return fmt.Sprintf("%q: drop the leading dot", d)
	case strings.HasSuffix(d, "."):
		return fmt.Sprintf("%q: drop the trailing dot", d)
	case d != strings.ToLower(d):
		return fmt.Sprintf("%q: write it in lower case (%s)", d, strings.ToLower(d))
	case len(d) > 253:
		return fmt.Sprintf("%q is longer than 253 characters", d)
	}
	for label := range strings.SplitSeq(d, ".") {
		if !validLabel(label) {
			return fmt.Sprintf("%q is not a valid host name (label %q)", d, label)
		}
	}
	return ""
}

// validLabel: 1 to 63 of a-z, 0-9 and inner hyphens (RFC 1123).
func validLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// underDomain reports whether host is domain or a subdomain of it.
func underDomain(host, domain string) bool {
	return host == domain || strings.HasSuffix(host, "."+domain)
}

func isLocalHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// checkHostPattern accepts what server.protected_hosts may hold: a host
// name or IP literal, or "*." and a name (every host under it). Anything
// else — a port, a scheme, a path, a bare "*" that would protect every
// host — gets a message.
func checkHostPattern(h string) string {
	name, wild := strings.CutPrefix(h, "*.")
	if name == "" {
		return "is not a host name: write app.example.com or *.example.com"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_' || (!wild && (c == ':' || c == '[' || c == ']'))) {
			return "is not a host name (no scheme, port, path or wildcard other than a leading \"*.\"): write app.example.com or *.example.com"
		}
	}
	return ""
}

// checkPostgresDSN parses the connection string as pgx will and refuses a
// database on another machine reached without verified TLS (sslmode
// verify-ca or verify-full), unless allowed. Messages name where the string
// came from, never the string (it may hold a password).
func checkPostgresDSN(ps *Problems, source, dsn string, allowUnverified bool) {
	at := "storage.postgres.dsn_file"
	if strings.HasPrefix(source, SourceEnv) {
		at = "storage.postgres.dsn"
	}
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		why := err
		if inner := errors.Unwrap(err); inner != nil {
			why = inner
		}
		ps.add(at, "the connection string from %s is not valid: %v", source, why)
		return
	}
	if allowUnverified {
		return
	}
	hosts := []*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig}}
	hosts = append(hosts, cfg.Fallbacks...)
	for _, h := range hosts {
		if local(h.Host) {
			continue
		}
		switch {
		case h.TLSConfig == nil:
			ps.add(at, "connects to %s without TLS (sslmode disable, allow or prefer): use sslmode=verify-full with sslrootcert, or set storage.postgres.allow_unverified_tls", h.Host)
			return
		case h.TLSConfig.InsecureSkipVerify && h.TLSConfig.VerifyPeerCertificate == nil:
			ps.add(at, "connects to %s with TLS but without checking its certificate (sslmode=require): use sslmode=verify-full with sslrootcert, or set storage.postgres.allow_unverified_tls", h.Host)
			return
		}
	}
}

// local says whether host is this machine: a unix socket directory or a
// loopback name or address.
func local(host string) bool {
	if strings.HasPrefix(host, "/") || host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
