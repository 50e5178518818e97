package policy

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// now is the fixed clock of every test: evaluation takes time as an
// argument, so nothing here depends on the wall clock.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func before(d time.Duration) time.Time { return testNow.Add(-d) }

func compileYAML(t testing.TB, doc string) *Compiled {
	t.Helper()
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	c, err := Compile(p)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return c
}

func req(method, host, path, ip string) Request {
	r := Request{Method: method, Host: host, Path: path}
	if ip != "" {
		r.IP = netip.MustParseAddr(ip)
	}
	return r
}

var (
	anon     = Subject{}
	password = Proof{Kind: FactorPassword, At: before(time.Hour)}
	totpNow  = Proof{Kind: FactorTOTP, At: before(time.Minute)}
	totpOld  = Proof{Kind: FactorTOTP, At: before(time.Hour)}
	emailNow = Proof{Kind: FactorEmail, At: before(time.Minute)}
	recovery = Proof{Kind: FactorRecovery, At: before(time.Minute)}
	// A roaming YubiKey-like credential: attested, UV, not synced.
	yubikey = Proof{Kind: FactorWebAuthn, At: before(time.Minute), AAGUID: "CB69481E-8FF7-4039-93EC-0A2729A154A8", Attested: true, UserVerified: true}
	// A synced platform passkey: no attestation, UV, backup-eligible.
	passkey = Proof{Kind: FactorWebAuthn, At: before(time.Minute), UserVerified: true, BackupEligible: true}
)

func user(name string, groups []string, proofs ...Proof) Subject {
	return Subject{Authenticated: true, User: name, Groups: groups, Proofs: append([]Proof{password}, proofs...)}
}

type evalCase struct {
	name   string
	req    Request
	subj   Subject
	out    Outcome
	reason Reason
	rule   string // RuleName
}

type evalSuite struct {
	name  string
	doc   string
	cases []evalCase
}

// evalSuites is the behaviour table. Every case also runs through Explain
// (agreement) and AllocsPerRun (zero allocations).
var evalSuites = []evalSuite{
	{
		name: "actions",
		doc: `
rules:
  - {name: open,  hosts: [open.example.com],  action: bypass}
  - {name: closed, hosts: [closed.example.com], action: deny}
  - {name: one,   hosts: [one.example.com],   action: one_factor}
  - {name: two,   hosts: [two.example.com],   action: two_factor}
`,
		cases: []evalCase{
			{"bypass anonymous", req("GET", "open.example.com", "/", ""), anon, Allow, ReasonNone, "open"},
			{"bypass signed in", req("GET", "open.example.com", "/", ""), user("bob", nil), Allow, ReasonNone, "open"},
			{"deny anonymous", req("GET", "closed.example.com", "/", ""), anon, Deny, ReasonDenied, "closed"},
			{"deny with every factor", req("GET", "closed.example.com", "/", ""), user("bob", nil, yubikey), Deny, ReasonDenied, "closed"},
			{"one_factor anonymous", req("GET", "one.example.com", "/", ""), anon, Challenge, ReasonSignIn, "one"},
			{"one_factor signed in", req("GET", "one.example.com", "/", ""), user("bob", nil), Allow, ReasonNone, "one"},
			{"two_factor anonymous", req("GET", "two.example.com", "/", ""), anon, Challenge, ReasonSignIn, "two"},
			{"two_factor password only", req("GET", "two.example.com", "/", ""), user("bob", nil), Challenge, ReasonSecondFactor, "two"},
			{"two_factor totp", req("GET", "two.example.com", "/", ""), user("bob", nil, totpNow), Allow, ReasonNone, "two"},
			{"two_factor email", req("GET", "two.example.com", "/", ""), user("bob", nil, emailNow), Allow, ReasonNone, "two"},
			{"two_factor recovery", req("GET", "two.example.com", "/", ""), user("bob", nil, recovery), Allow, ReasonNone, "two"},
			{"two_factor webauthn", req("GET", "two.example.com", "/", ""), user("bob", nil, passkey), Allow, ReasonNone, "two"},
			{"proof without sign-in does not count", req("GET", "two.example.com", "/", ""), Subject{Proofs: []Proof{totpNow}}, Challenge, ReasonSignIn, "two"},
			{"unknown proof kind ignored", req("GET", "two.example.com", "/", ""), user("bob", nil, Proof{Kind: "sms", At: testNow}), Challenge, ReasonSecondFactor, "two"},
			{"default is two_factor", req("GET", "other.example.com", "/", ""), user("bob", nil), Challenge, ReasonSecondFactor, "default"},
			{"default allows a second factor", req("GET", "other.example.com", "/", ""), user("bob", nil, totpNow), Allow, ReasonNone, "default"},
		},
	},
	{
		name: "default deny",
		doc:  `{default: deny, rules: [{name: one, hosts: [one.example.com], action: one_factor}]}`,
		cases: []evalCase{
			{"default deny", req("GET", "x.example.com", "/", ""), user("bob", nil, yubikey), Deny, ReasonDenied, "default"},
			{"rule before default", req("GET", "one.example.com", "/", ""), user("bob", nil), Allow, ReasonNone, "one"},
		},
	},
	{
		name: "default bypass and one_factor",
		doc:  `{default: bypass}`,
		cases: []evalCase{
			{"no rules, bypass", req("GET", "x.example.com", "/", ""), anon, Allow, ReasonNone, "default"},
		},
	},
	{
		name: "hosts",
		doc: `
rules:
  - name: exact
    hosts: [App.Example.com]
    paths: [/exact]
    action: bypass
  - name: wild
    hosts: ["*.example.com"]
    paths: [/exact, /wild]
    action: one_factor
  - name: deeper-wild
    hosts: ["*.dev.example.com"]
    action: deny
  - name: hostless
    paths: [/exact, /wild, /free]
    action: two_factor
  - name: ip-hosts
    hosts: ["192.0.2.10", "[2001:db8::1]"]
    action: bypass
  - name: apex
    hosts: [example.com]
    action: deny
`,
		cases: []evalCase{
			{"exact host", req("GET", "app.example.com", "/exact", ""), anon, Allow, ReasonNone, "exact"},
			{"host case folded", req("GET", "APP.Example.COM", "/exact", ""), anon, Allow, ReasonNone, "exact"},
			{"trailing dot", req("GET", "app.example.com.", "/exact", ""), anon, Allow, ReasonNone, "exact"},
			{"exact host falls to wildcard", req("GET", "app.example.com", "/wild", ""), anon, Challenge, ReasonSignIn, "wild"},
			{"exact host falls to host-less", req("GET", "app.example.com", "/free", ""), anon, Challenge, ReasonSignIn, "hostless"},
			{"wildcard one label", req("GET", "b.example.com", "/exact", ""), anon, Challenge, ReasonSignIn, "wild"},
			{"wildcard any depth", req("GET", "a.b.example.com", "/wild", ""), anon, Challenge, ReasonSignIn, "wild"},
			// *.example.com comes first: the more specific wildcard does not
			// jump the queue.
			{"first wildcard wins over deeper one", req("GET", "x.dev.example.com", "/wild", ""), anon, Challenge, ReasonSignIn, "wild"},
			{"deeper wildcard", req("GET", "x.dev.example.com", "/other", ""), anon, Deny, ReasonDenied, "deeper-wild"},
			{"deeper wildcard, upper case", req("GET", "X.DEV.example.com", "/other", ""), anon, Deny, ReasonDenied, "deeper-wild"},
			{"wildcard does not match apex", req("GET", "example.com", "/wild", ""), anon, Challenge, ReasonSignIn, "hostless"},
			{"apex exact", req("GET", "example.com", "/other", ""), anon, Deny, ReasonDenied, "apex"},
			{"look-alike suffix", req("GET", "badexample.com", "/wild", ""), anon, Challenge, ReasonSignIn, "hostless"},
			{"unknown host to host-less", req("GET", "other.org", "/free", ""), anon, Challenge, ReasonSignIn, "hostless"},
			{"unknown host to default", req("GET", "other.org", "/x", ""), anon, Challenge, ReasonSignIn, "default"},
			{"empty host", req("GET", "", "/x", ""), anon, Challenge, ReasonSignIn, "default"},
			{"IPv4 host", req("GET", "192.0.2.10", "/x", ""), anon, Allow, ReasonNone, "ip-hosts"},
			{"IPv6 host bracketed", req("GET", "[2001:db8::1]", "/x", ""), anon, Allow, ReasonNone, "ip-hosts"},
			{"IPv6 host bare", req("GET", "2001:db8::1", "/x", ""), anon, Allow, ReasonNone, "ip-hosts"},
			{"host with port is not the host", req("GET", "app.example.com:8443", "/exact", ""), anon, Challenge, ReasonSignIn, "hostless"},
		},
	},
	{
		name: "paths",
		doc: `
rules:
  - {name: static,  paths: ["/static/*", /favicon.ico], action: bypass}
  - {name: api,     paths: ["/api/**"], action: one_factor}
  - {name: js,      paths: ["/**/*.js"], action: bypass}
  - {name: mid,     paths: ["/a/**/z"], action: deny}
  - {name: img,     paths: ["/img/*.png", "/Docs/"], action: bypass}
  - {name: root,    paths: ["/"], action: deny}
`,
		cases: []evalCase{
			{"static file", req("GET", "h", "/static/app.css", ""), anon, Allow, ReasonNone, "static"},
			{"static dir itself", req("GET", "h", "/static/", ""), anon, Allow, ReasonNone, "static"},
			{"static without slash", req("GET", "h", "/static", ""), anon, Challenge, ReasonSignIn, "default"},
			{"static star stays in segment", req("GET", "h", "/static/a/b.css", ""), anon, Challenge, ReasonSignIn, "default"},
			{"exact path", req("GET", "h", "/favicon.ico", ""), anon, Allow, ReasonNone, "static"},
			{"exact path is exact", req("GET", "h", "/favicon.ico/x", ""), anon, Challenge, ReasonSignIn, "default"},
			{"paths are case-sensitive", req("GET", "h", "/STATIC/a.css", ""), anon, Challenge, ReasonSignIn, "default"},
			{"double star self", req("GET", "h", "/api", ""), anon, Challenge, ReasonSignIn, "api"},
			{"double star slash", req("GET", "h", "/api/", ""), anon, Challenge, ReasonSignIn, "api"},
			{"double star deep", req("GET", "h", "/api/v1/users/7", ""), user("bob", nil), Allow, ReasonNone, "api"},
			{"double star not a prefix of a name", req("GET", "h", "/apix", ""), anon, Challenge, ReasonSignIn, "default"},
			{"js at depth", req("GET", "h", "/x/y/app.js", ""), anon, Allow, ReasonNone, "js"},
			{"js at root", req("GET", "h", "/app.js", ""), anon, Allow, ReasonNone, "js"},
			{"js suffix only", req("GET", "h", "/app.jsx", ""), anon, Challenge, ReasonSignIn, "default"},
			{"double star in the middle, zero", req("GET", "h", "/a/z", ""), anon, Deny, ReasonDenied, "mid"},
			{"double star in the middle, many", req("GET", "h", "/a/b/c/z", ""), anon, Deny, ReasonDenied, "mid"},
			{"double star in the middle, tail", req("GET", "h", "/a/b/z/c", ""), anon, Challenge, ReasonSignIn, "default"},
			{"star inside segment", req("GET", "h", "/img/logo.png", ""), anon, Allow, ReasonNone, "img"},
			{"trailing slash literal", req("GET", "h", "/Docs/", ""), anon, Allow, ReasonNone, "img"},
			{"root", req("GET", "h", "/", ""), anon, Deny, ReasonDenied, "root"},
			{"empty path is root", req("GET", "h", "", ""), anon, Deny, ReasonDenied, "root"},
			{"asterisk-form path matches nothing", req("OPTIONS", "h", "*", ""), anon, Challenge, ReasonSignIn, "default"},
		},
	},
	{
		name: "methods",
		doc: `
rules:
  - {name: read, methods: [GET, head], action: bypass}
  - {name: dav,  methods: [PROPFIND], action: one_factor}
`,
		cases: []evalCase{
			{"GET", req("GET", "h", "/", ""), anon, Allow, ReasonNone, "read"},
			{"HEAD from lower-case policy", req("HEAD", "h", "/", ""), anon, Allow, ReasonNone, "read"},
			{"POST", req("POST", "h", "/", ""), anon, Challenge, ReasonSignIn, "default"},
			{"request methods are case-sensitive", req("get", "h", "/", ""), anon, Challenge, ReasonSignIn, "default"},
			{"unknown method", req("BREW", "h", "/", ""), anon, Challenge, ReasonSignIn, "default"},
			{"WebDAV", req("PROPFIND", "h", "/", ""), user("bob", nil), Allow, ReasonNone, "dav"},
		},
	},
	{
		name: "networks",
		doc: `
rules:
  - {name: office, networks: [10.0.0.0/8, "2001:db8::/32"], action: bypass}
  - {name: one-ip, networks: [198.51.100.7], action: one_factor}
  - {name: mapped, networks: ["::ffff:203.0.113.0/120"], action: deny}
`,
		cases: []evalCase{
			{"v4 inside", req("GET", "h", "/", "10.1.2.3"), anon, Allow, ReasonNone, "office"},
			{"v4 outside", req("GET", "h", "/", "11.1.2.3"), anon, Challenge, ReasonSignIn, "default"},
			{"v6 inside", req("GET", "h", "/", "2001:db8:1::5"), anon, Allow, ReasonNone, "office"},
			{"v6 outside", req("GET", "h", "/", "2001:db9::5"), anon, Challenge, ReasonSignIn, "default"},
			{"v6 with zone", req("GET", "h", "/", "2001:db8::5%eth0"), anon, Allow, ReasonNone, "office"},
			{"IPv4-mapped request", req("GET", "h", "/", "::ffff:10.9.9.9"), anon, Allow, ReasonNone, "office"},
			{"single IP", req("GET", "h", "/", "198.51.100.7"), user("bob", nil), Allow, ReasonNone, "one-ip"},
			{"single IP neighbour", req("GET", "h", "/", "198.51.100.8"), user("bob", nil), Challenge, ReasonSecondFactor, "default"},
			{"mapped prefix in policy", req("GET", "h", "/", "203.0.113.9"), anon, Deny, ReasonDenied, "mapped"},
			{"unknown source", req("GET", "h", "/", ""), anon, Challenge, ReasonSignIn, "default"},
		},
	},
	{
		name: "subjects",
		doc: `
rules:
  - {name: admins, hosts: [admin.example.com], groups: [admins, ops], action: two_factor}
  - {name: alice, hosts: [admin.example.com], users: [alice], action: one_factor}
  - {name: nobody-else, hosts: [admin.example.com], action: deny}
  - {name: blocked, hosts: [app.example.com], users: [mallory], action: deny}
  - {name: vip, hosts: [app.example.com], paths: [/vip], users: [carol], groups: [vip], action: bypass}
  - {name: app, hosts: [app.example.com], action: one_factor}
`,
		cases: []evalCase{
			{"anonymous must sign in before groups are known", req("GET", "admin.example.com", "/", ""), anon, Challenge, ReasonSignIn, "admins"},
			{"group member", req("GET", "admin.example.com", "/", ""), user("bob", []string{"dev", "ops"}, totpNow), Allow, ReasonNone, "admins"},
			{"group member lacks second factor", req("GET", "admin.example.com", "/", ""), user("bob", []string{"admins"}), Challenge, ReasonSecondFactor, "admins"},
			{"user listed", req("GET", "admin.example.com", "/", ""), user("alice", nil), Allow, ReasonNone, "alice"},
			{"neither", req("GET", "admin.example.com", "/", ""), user("bob", []string{"dev"}), Deny, ReasonDenied, "nobody-else"},
			{"anonymous meets a deny rule with users", req("GET", "app.example.com", "/", ""), anon, Challenge, ReasonSignIn, "blocked"},
			{"listed user denied", req("GET", "app.example.com", "/", ""), user("mallory", nil), Deny, ReasonDenied, "blocked"},
			{"other user passes the deny", req("GET", "app.example.com", "/", ""), user("bob", nil), Allow, ReasonNone, "app"},
			{"users or groups: by user", req("GET", "app.example.com", "/vip", ""), user("carol", nil), Allow, ReasonNone, "vip"},
			{"users or groups: by group", req("GET", "app.example.com", "/vip", ""), user("dave", []string{"vip"}), Allow, ReasonNone, "vip"},
			{"users or groups: neither", req("GET", "app.example.com", "/vip", ""), user("erin", []string{"dev"}), Allow, ReasonNone, "app"},
			{"user names are exact", req("GET", "app.example.com", "/", ""), user("Mallory", nil), Allow, ReasonNone, "app"},
			{"user field without sign-in is ignored", req("GET", "app.example.com", "/", ""), Subject{User: "bob"}, Challenge, ReasonSignIn, "blocked"},
		},
	},
	{
		name: "factors",
		doc: `
rules:
  - {name: totp-only, hosts: [t.example.com], action: two_factor, factors: [totp]}
  - {name: totp-email, hosts: [te.example.com], action: two_factor, factors: [totp, email, totp]}
  - {name: keys, hosts: [k.example.com], action: two_factor, factors: [webauthn]}
`,
		cases: []evalCase{
			{"totp accepted", req("GET", "t.example.com", "/", ""), user("bob", nil, totpNow), Allow, ReasonNone, "totp-only"},
			{"webauthn refused by filter", req("GET", "t.example.com", "/", ""), user("bob", nil, yubikey), Challenge, ReasonSecondFactor, "totp-only"},
			{"recovery refused by filter", req("GET", "t.example.com", "/", ""), user("bob", nil, recovery), Challenge, ReasonSecondFactor, "totp-only"},
			{"email in list", req("GET", "te.example.com", "/", ""), user("bob", nil, emailNow), Allow, ReasonNone, "totp-email"},
			{"any of several proofs", req("GET", "k.example.com", "/", ""), user("bob", nil, totpNow, emailNow, passkey), Allow, ReasonNone, "keys"},
			{"password is no second factor", req("GET", "k.example.com", "/", ""), user("bob", nil, password), Challenge, ReasonSecondFactor, "keys"},
		},
	},
	{
		name: "webauthn options",
		doc: `
rules:
  - {name: hardware, hosts: [hw.example.com], action: two_factor, factors: [webauthn], webauthn: {hardware: true}}
  - name: models
    hosts: [models.example.com]
    action: two_factor
    factors: [webauthn]
    webauthn: {aaguids: [cb69481e-8ff7-4039-93ec-0a2729a154a8]}
  - {name: uv, hosts: [uv.example.com], action: two_factor, webauthn: {user_verification: required}}
  - {name: uv-hint, hosts: [uvp.example.com], action: two_factor, webauthn: {user_verification: preferred}}
  - {name: unsynced, hosts: [sync.example.com], action: two_factor, factors: [webauthn], webauthn: {synced: false}}
  - {name: synced-ok, hosts: [synced.example.com], action: two_factor, factors: [webauthn], webauthn: {synced: true}}
`,
		cases: []evalCase{
			{"hardware: attested key", req("GET", "hw.example.com", "/", ""), user("bob", nil, yubikey), Allow, ReasonNone, "hardware"},
			{"hardware: passkey refused", req("GET", "hw.example.com", "/", ""), user("bob", nil, passkey), Challenge, ReasonWebAuthn, "hardware"},
			{"hardware: no webauthn at all", req("GET", "hw.example.com", "/", ""), user("bob", nil), Challenge, ReasonSecondFactor, "hardware"},
			{"aaguid listed (case-insensitive)", req("GET", "models.example.com", "/", ""), user("bob", nil, yubikey), Allow, ReasonNone, "models"},
			{"aaguid not listed", req("GET", "models.example.com", "/", ""), user("bob", nil, Proof{Kind: FactorWebAuthn, At: before(time.Minute), AAGUID: "ee882879-721c-4913-9775-3dfcce97072a", Attested: true}), Challenge, ReasonWebAuthn, "models"},
			{"aaguid listed but unattested", req("GET", "models.example.com", "/", ""), user("bob", nil, Proof{Kind: FactorWebAuthn, At: before(time.Minute), AAGUID: "cb69481e-8ff7-4039-93ec-0a2729a154a8"}), Challenge, ReasonWebAuthn, "models"},
			{"uv required: verified", req("GET", "uv.example.com", "/", ""), user("bob", nil, passkey), Allow, ReasonNone, "uv"},
			{"uv required: not verified", req("GET", "uv.example.com", "/", ""), user("bob", nil, Proof{Kind: FactorWebAuthn, At: before(time.Minute), Attested: true}), Challenge, ReasonWebAuthn, "uv"},
			{"uv required does not bind totp", req("GET", "uv.example.com", "/", ""), user("bob", nil, Proof{Kind: FactorWebAuthn, At: before(time.Minute)}, totpNow), Allow, ReasonNone, "uv"},
			{"uv preferred is only a hint", req("GET", "uvp.example.com", "/", ""), user("bob", nil, Proof{Kind: FactorWebAuthn, At: before(time.Minute)}), Allow, ReasonNone, "uv-hint"},
			{"synced false: roaming key", req("GET", "sync.example.com", "/", ""), user("bob", nil, yubikey), Allow, ReasonNone, "unsynced"},
			{"synced false: synced passkey", req("GET", "sync.example.com", "/", ""), user("bob", nil, passkey), Challenge, ReasonWebAuthn, "unsynced"},
			{"synced true: synced passkey", req("GET", "synced.example.com", "/", ""), user("bob", nil, passkey), Allow, ReasonNone, "synced-ok"},
		},
	},
	{
		name: "max_age and trusted devices",
		doc: `
rules:
  - {name: step-up, hosts: [s.example.com], action: two_factor, max_age: 15m}
  - {name: step-up-keys, hosts: [sk.example.com], action: two_factor, factors: [webauthn], webauthn: {hardware: true}, max_age: 15m}
  - {name: remember-default, hosts: [r.example.com], action: two_factor}
  - {name: remember-yes, hosts: [ry.example.com], action: two_factor, trusted_device: true}
  - {name: remember-no, hosts: [rn.example.com], action: two_factor, trusted_device: false}
  - {name: keys-only, hosts: [k.example.com], action: two_factor, factors: [webauthn]}
  - {name: keys-only-remember, hosts: [kr.example.com], action: two_factor, factors: [webauthn], trusted_device: true}
  - {name: hw-keys, hosts: [hw.example.com], action: two_factor, webauthn: {hardware: true}}
`,
		cases: []evalCase{
			{"fresh", req("GET", "s.example.com", "/", ""), user("bob", nil, totpNow), Allow, ReasonNone, "step-up"},
			{"stale", req("GET", "s.example.com", "/", ""), user("bob", nil, totpOld), Challenge, ReasonStale, "step-up"},
			{"exactly max_age is fine", req("GET", "s.example.com", "/", ""), user("bob", nil, Proof{Kind: FactorTOTP, At: before(15 * time.Minute)}), Allow, ReasonNone, "step-up"},
			{"one second over", req("GET", "s.example.com", "/", ""), user("bob", nil, Proof{Kind: FactorTOTP, At: before(15*time.Minute + time.Second)}), Challenge, ReasonStale, "step-up"},
			{"a fresh one among stale ones", req("GET", "s.example.com", "/", ""), user("bob", nil, totpOld, emailNow), Allow, ReasonNone, "step-up"},
			{"stale beats weak", req("GET", "sk.example.com", "/", ""), user("bob", nil, passkey, Proof{Kind: FactorWebAuthn, At: before(time.Hour), Attested: true}), Challenge, ReasonStale, "step-up-keys"},
			{"weak and stale is weak", req("GET", "sk.example.com", "/", ""), user("bob", nil, Proof{Kind: FactorWebAuthn, At: before(time.Hour)}), Challenge, ReasonWebAuthn, "step-up-keys"},
			{"trusted device refused under max_age", req("GET", "s.example.com", "/", ""), Subject{Authenticated: true, User: "bob", Proofs: []Proof{password}, TrustedDevice: true}, Challenge, ReasonSecondFactor, "step-up"},
			{"trusted device, rule silent", req("GET", "r.example.com", "/", ""), Subject{Authenticated: true, User: "bob", Proofs: []Proof{password}, TrustedDevice: true}, Allow, ReasonNone, "remember-default"},
			{"trusted device, rule true", req("GET", "ry.example.com", "/", ""), Subject{Authenticated: true, User: "bob", Proofs: []Proof{password}, TrustedDevice: true}, Allow, ReasonNone, "remember-yes"},
			{"trusted device, rule false", req("GET", "rn.example.com", "/", ""), Subject{Authenticated: true, User: "bob", Proofs: []Proof{password}, TrustedDevice: true}, Challenge, ReasonSecondFactor, "remember-no"},
			{"trusted device, rule narrows factors", req("GET", "k.example.com", "/", ""), Subject{Authenticated: true, User: "bob", Proofs: []Proof{password}, TrustedDevice: true}, Challenge, ReasonSecondFactor, "keys-only"},
			{"trusted device, narrowed rule opts in", req("GET", "kr.example.com", "/", ""), Subject{Authenticated: true, User: "bob", Proofs: []Proof{password}, TrustedDevice: true}, Allow, ReasonNone, "keys-only-remember"},
			{"trusted device, rule sets webauthn options", req("GET", "hw.example.com", "/", ""), Subject{Authenticated: true, User: "bob", Proofs: []Proof{password}, TrustedDevice: true}, Challenge, ReasonSecondFactor, "hw-keys"},
			{"trusted device without sign-in", req("GET", "r.example.com", "/", ""), Subject{TrustedDevice: true}, Challenge, ReasonSignIn, "remember-default"},
			{"trusted device on default", req("GET", "x.example.com", "/", ""), Subject{Authenticated: true, User: "bob", TrustedDevice: true}, Allow, ReasonNone, "default"},
		},
	},
	{
		name: "first match wins",
		doc: `
rules:
  - {name: first, hosts: [app.example.com], paths: ["/a/**"], action: deny}
  - {name: second, paths: ["/a/b"], action: bypass}
  - {name: third, hosts: ["*.example.com"], paths: ["/a/b", "/c"], action: one_factor}
  - {name: fourth, hosts: [app.example.com], paths: ["/c", "/d"], action: bypass}
  - {name: fifth, paths: ["/d"], action: deny}
`,
		cases: []evalCase{
			{"exact rule before host-less", req("GET", "app.example.com", "/a/b", ""), anon, Deny, ReasonDenied, "first"},
			{"host-less before wildcard", req("GET", "www.example.com", "/a/b", ""), anon, Allow, ReasonNone, "second"},
			{"wildcard before later exact", req("GET", "app.example.com", "/c", ""), anon, Challenge, ReasonSignIn, "third"},
			{"exact before later host-less", req("GET", "app.example.com", "/d", ""), anon, Allow, ReasonNone, "fourth"},
			{"other host reaches host-less", req("GET", "www.example.com", "/d", ""), anon, Deny, ReasonDenied, "fifth"},
		},
	},
}

func TestEvaluate(t *testing.T) {
	for _, su := range evalSuites {
		c := compileYAML(t, su.doc)
		for _, tc := range su.cases {
			t.Run(su.name+"/"+tc.name, func(t *testing.T) {
				d := c.Evaluate(tc.req, tc.subj, testNow)
				if d.Outcome != tc.out || d.Reason != tc.reason || d.RuleName != tc.rule {
					t.Fatalf("got %s/%s by %q, want %s/%s by %q", d.Outcome, d.Reason, d.RuleName, tc.out, tc.reason, tc.rule)
				}
				if tc.rule == "default" && d.RuleIndex != -1 {
					t.Fatalf("default decision with RuleIndex %d", d.RuleIndex)
				}
				if tc.rule != "default" && c.Source().Rules[d.RuleIndex].Name != tc.rule {
					t.Fatalf("RuleIndex %d does not name %q", d.RuleIndex, tc.rule)
				}
			})
		}
	}
}

// TestExplainAgrees holds Explain to Evaluate over the whole table: the
// index Evaluate uses and the rule-by-rule walk Explain does must never
// disagree.
func TestExplainAgrees(t *testing.T) {
	for _, su := range evalSuites {
		c := compileYAML(t, su.doc)
		for _, tc := range su.cases {
			d := c.Evaluate(tc.req, tc.subj, testNow)
			e := c.Explain(tc.req, tc.subj, testNow)
			if !reflect.DeepEqual(d, e.Decision) {
				t.Errorf("%s/%s: Evaluate %+v, Explain %+v", su.name, tc.name, d, e.Decision)
			}
			if n := len(e.Rules); d.RuleIndex >= 0 && (n != d.RuleIndex+1 || e.Rules[n-1].Index != d.RuleIndex) {
				t.Errorf("%s/%s: explanation stops at %d rules, decision by rules[%d]", su.name, tc.name, n, d.RuleIndex)
			}
			if d.RuleIndex < 0 && len(e.Rules) != len(c.Source().Rules) {
				t.Errorf("%s/%s: default decision explains %d of %d rules", su.name, tc.name, len(e.Rules), len(c.Source().Rules))
			}
			for _, tr := range e.Rules[:max(0, len(e.Rules)-1)] {
				if tr.Matched || tr.Why == "" || tr.Criterion == "" {
					t.Errorf("%s/%s: rule before the decision without a reason: %+v", su.name, tc.name, tr)
				}
			}
			if (d.Outcome != Allow) != (e.Missing != "") || (d.Outcome == Allow) != (e.Satisfied != "") {
				t.Errorf("%s/%s: %s with missing %q, satisfied %q", su.name, tc.name, d.Outcome, e.Missing, e.Satisfied)
			}
		}
	}
}

// TestEvaluateAllocs: allocation counts are deterministic, so zero is a
// fair thing to assert (time is not).
func TestEvaluateAllocs(t *testing.T) {
	for _, su := range evalSuites {
		c := compileYAML(t, su.doc)
		for _, tc := range su.cases {
			if n := testing.AllocsPerRun(20, func() { c.Evaluate(tc.req, tc.subj, testNow) }); n != 0 {
				t.Errorf("%s/%s: %v allocs per Evaluate", su.name, tc.name, n)
			}
		}
	}
	// Hosts that need folding go through the stack buffer, still free.
	c := compileYAML(t, evalSuites[3].doc)
	r := req("GET", "X.DEV.EXAMPLE.COM.", "/other", "::ffff:10.0.0.1")
	if n := testing.AllocsPerRun(20, func() { c.Evaluate(r, anon, testNow) }); n != 0 {
		t.Errorf("%v allocs per Evaluate with a host to fold", n)
	}
}

func TestDecisionFields(t *testing.T) {
	c := compileYAML(t, `
rules:
  - name: admin-console
    hosts: [admin.example.com]
    groups: [admins]
    action: two_factor
    factors: [webauthn]
    webauthn: {hardware: true, user_verification: required}
    max_age: 15m
    trusted_device: false
  - {name: any, hosts: [any.example.com], action: two_factor}
  - {name: one, hosts: [one.example.com], action: one_factor}
`)
	bob := user("bob", []string{"admins"})
	got := c.Evaluate(req("GET", "admin.example.com", "/x", ""), bob, testNow)
	want := Decision{Outcome: Challenge, Reason: ReasonSecondFactor, RuleIndex: 0, RuleName: "admin-console",
		Action: ActionTwoFactor, Acceptable: []string{FactorWebAuthn}, MaxAge: 15 * time.Minute, TrustedDevice: false}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// The identity challenge already says what will be needed next.
	if got := c.Evaluate(req("GET", "admin.example.com", "/x", ""), anon, testNow); got.Reason != ReasonSignIn || !reflect.DeepEqual(got.Acceptable, []string{FactorWebAuthn}) {
		t.Fatalf("anonymous: %+v", got)
	}
	got = c.Evaluate(req("GET", "any.example.com", "/", ""), bob, testNow)
	if !reflect.DeepEqual(got.Acceptable, []string{"webauthn", "totp", "email", "recovery"}) || !got.TrustedDevice || got.MaxAge != 0 {
		t.Fatalf("unrestricted rule: %+v", got)
	}
	got = c.Evaluate(req("GET", "one.example.com", "/", ""), bob, testNow)
	if got.Acceptable != nil || got.TrustedDevice || got.Action != ActionOneFactor || got.Outcome != Allow {
		t.Fatalf("one_factor rule: %+v", got)
	}
	got = c.Evaluate(req("GET", "nowhere.example.com", "/", ""), anon, testNow)
	if got.RuleIndex != -1 || got.RuleName != "default" || got.Action != ActionTwoFactor || len(got.Acceptable) != 4 {
		t.Fatalf("default: %+v", got)
	}

	// Acceptable is shared with the compiled policy; an append by a caller
	// must not reach into it.
	d := c.Evaluate(req("GET", "any.example.com", "/", ""), bob, testNow)
	_ = append(d.Acceptable, "sms")
	d2 := c.Evaluate(req("GET", "nowhere.example.com", "/", ""), bob, testNow)
	if len(d2.Acceptable) != 4 || cap(d.Acceptable) != 4 {
		t.Fatalf("acceptable list changed: %v", d2.Acceptable)
	}
}

func TestNilCompiledDenies(t *testing.T) {
	var h Holder
	d := h.Load().Evaluate(req("GET", "a", "/", ""), user("bob", nil, yubikey), testNow)
	if d.Outcome != Deny || d.Reason != ReasonDenied {
		t.Fatalf("nil policy: %+v", d)
	}
	e := h.Load().Explain(req("GET", "a", "/", ""), anon, testNow)
	if e.Decision.Outcome != Deny || e.Missing == "" {
		t.Fatalf("nil policy explained: %+v", e)
	}
}

func TestHolderSwap(t *testing.T) {
	var h Holder
	a := compileYAML(t, `{default: deny}`)
	b := compileYAML(t, `{default: bypass}`)
	h.Store(a)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			if o := h.Load().Evaluate(req("GET", "h", "/", ""), anon, testNow).Outcome; o != Deny && o != Allow {
				t.Errorf("torn read: %v", o)
				return
			}
		}
	}()
	for i := range 1000 {
		if i%2 == 0 {
			h.Store(b)
		} else {
			h.Store(a)
		}
	}
	<-done
	h.Store(b)
	if h.Load() != b {
		t.Fatal("Load after Store")
	}
}

func TestSourceIsACopy(t *testing.T) {
	yes := true
	p := Policy{Rules: []Rule{{Name: "r", Hosts: []string{"a.example.com"}, Action: ActionTwoFactor, TrustedDevice: &yes,
		WebAuthn: &WebAuthnOptions{AAGUIDs: []string{"cb69481e-8ff7-4039-93ec-0a2729a154a8"}}}}}
	c, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	p.Rules[0].Hosts[0] = "b.example.com"
	*p.Rules[0].TrustedDevice = false
	src := c.Source()
	if src.Rules[0].Hosts[0] != "a.example.com" || !*src.Rules[0].TrustedDevice || src.Default != "" {
		t.Fatalf("source follows the caller's edits: %+v", src.Rules[0])
	}
	src.Rules[0].WebAuthn.AAGUIDs[0] = "x"
	if c.Source().Rules[0].WebAuthn.AAGUIDs[0] == "x" {
		t.Fatal("Source hands out compiled state")
	}
	// Changing the caller's policy after Compile does not change decisions.
	if d := c.Evaluate(req("GET", "a.example.com", "/", ""), anon, testNow); d.RuleName != "r" {
		t.Fatalf("decision changed: %+v", d)
	}
}

func TestRequiresSecondFactor(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want bool
	}{
		{"default: one_factor\n", false},
		{"default: two_factor\n", true},
		{"default: bypass\nrules:\n  - {name: a, paths: [/x], action: two_factor}\n", true},
		{"default: deny\nrules:\n  - {name: a, paths: [/x], action: one_factor}\n", false},
	} {
		p, err := Parse([]byte(tc.doc))
		if err != nil {
			t.Fatal(err)
		}
		c, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.RequiresSecondFactor(); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.doc, got, tc.want)
		}
	}
}
