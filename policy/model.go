// Package policy is keygate's pure policy evaluator: the rules admins edit
// come in, a Decision (allow / challenge with what is missing and why / deny)
// comes out. It does no I/O. A Policy is compiled once into a fast matcher
// (*Compiled); callers keep the compiled value behind an atomic pointer and
// swap it whole when the rules change.
package policy

import (
	"net/netip"
	"time"
)

// Actions a rule (or the default) can take.
const (
	ActionDeny      = "deny"
	ActionBypass    = "bypass"
	ActionOneFactor = "one_factor"
	ActionTwoFactor = "two_factor"
)

// Second-factor kinds a rule may accept.
const (
	FactorPassword = "password" // the first factor; never a second one
	FactorWebAuthn = "webauthn"
	FactorTOTP     = "totp"
	FactorEmail    = "email"
	FactorRecovery = "recovery"
)

// Policy is the document admins edit (YAML/JSON).
type Policy struct {
	Default string `yaml:"default" json:"default"`
	Rules   []Rule `yaml:"rules" json:"rules"`
}

// Rule is one entry of the ordered rule list; the first rule whose every
// criterion matches decides. Empty criteria match everything; within one
// criterion any listed value will do.
//
//   - Hosts: exact names (case-insensitive, IP literals allowed) or
//     "*.example.com", which covers every name below example.com at any
//     depth but not example.com itself.
//   - Paths: "/favicon.ico" exactly; "*" within one segment ("/static/*");
//     "**" as a whole segment for zero or more segments ("/api/**" is /api
//     and everything under it, "/**/*.js" any .js file). Matched
//     against every reading of the request path (Readings): exactly
//     against the exact readings, case-insensitively against the folded
//     ones, which upstreams that route case-insensitively give.
//   - Methods: HTTP methods (written in any case, matched exactly).
//   - Networks: CIDRs or single addresses, IPv4 or IPv6.
//   - Users, Groups: the signed-in user is listed, or one of their groups
//     is. For a subject not yet signed in such a rule cannot be decided and
//     the answer is "sign in first".
type Rule struct {
	Name     string   `yaml:"name" json:"name"`
	Hosts    []string `yaml:"hosts,omitempty" json:"hosts,omitempty"`       // exact or "*.example.com"
	Paths    []string `yaml:"paths,omitempty" json:"paths,omitempty"`       // globs: "/static/*", "/api/**", exact
	Methods  []string `yaml:"methods,omitempty" json:"methods,omitempty"`   // GET, POST, …
	Networks []string `yaml:"networks,omitempty" json:"networks,omitempty"` // CIDRs or single IPs
	Users    []string `yaml:"users,omitempty" json:"users,omitempty"`
	Groups   []string `yaml:"groups,omitempty" json:"groups,omitempty"`
	Action   string   `yaml:"action" json:"action"`
	// Factors lists the acceptable second factors (two_factor only);
	// empty = any second factor.
	Factors  []string         `yaml:"factors,omitempty" json:"factors,omitempty"`
	WebAuthn *WebAuthnOptions `yaml:"webauthn,omitempty" json:"webauthn,omitempty"`
	// MaxAge: the second factor must be at most this old (step-up).
	MaxAge Duration `yaml:"max_age,omitempty" json:"max_age,omitempty"`
	// TrustedDevice: may a remembered device skip the second factor here?
	// nil = yes on rules that accept any second factor, no on rules that
	// narrow factors or webauthn options (the device may have been trusted
	// after a weaker factor). Never with max_age.
	TrustedDevice *bool `yaml:"trusted_device,omitempty" json:"trusted_device,omitempty"`
}

// WebAuthnOptions narrow which WebAuthn assertions satisfy a rule; they bind
// WebAuthn proofs only, so a rule that also accepts totp still takes a TOTP
// code. Hardware and AAGUIDs rely on attestation verified at enrolment
// (Proof.Attested), never on what the browser claims.
type WebAuthnOptions struct {
	Hardware         bool     `yaml:"hardware,omitempty" json:"hardware,omitempty"`
	UserVerification string   `yaml:"user_verification,omitempty" json:"user_verification,omitempty"` // "", preferred, required, discouraged
	AAGUIDs          []string `yaml:"aaguids,omitempty" json:"aaguids,omitempty"`
	Synced           *bool    `yaml:"synced,omitempty" json:"synced,omitempty"` // false = refuse backup-eligible credentials
}

// Request is what the evaluator needs to know about an HTTP request.
//
// Host should be lower case without port; the evaluator still folds case,
// drops one trailing dot and IPv6 brackets, without allocating. Path is one
// reading of the path the upstream will act on (Readings), free of "." and
// ".." segments: a glob cannot tell that "/static/../admin" is really
// /admin. EvaluateReadings judges every reading of a raw path. An empty
// Path counts as "/". IP may
// be IPv4-mapped IPv6; it is unmapped before matching networks.
type Request struct {
	Host   string     `json:"host"`
	Path   string     `json:"path"`
	Method string     `json:"method"`
	IP     netip.Addr `json:"ip"`
	// Overridable: the request is a form POST that an app may act on as
	// another method (a "_method" parameter: Rails, Laravel, Symfony,
	// Express method-override). EvaluateReadings then judges it under
	// every method the rules name as well.
	Overridable bool `json:"overridable,omitempty"`
}

// Proof is one factor a session has satisfied.
type Proof struct {
	Kind string    `json:"kind"` // FactorPassword, FactorWebAuthn, …
	At   time.Time `json:"at"`   // when it was satisfied
	// Ref names what proved it: a credential ID, a trusted-device ID. It
	// lets a revoked credential or device end the sessions it vouched for.
	Ref string `json:"ref,omitempty"`
	// WebAuthn details (zero for other kinds).
	AAGUID         string `json:"aaguid,omitempty"`
	Attested       bool   `json:"attested,omitempty"` // attestation chained to a trusted root at enrolment
	UserVerified   bool   `json:"user_verified,omitempty"`
	BackupEligible bool   `json:"backup_eligible,omitempty"`
}

// Subject is who makes the request, as far as the session knows.
type Subject struct {
	Authenticated bool     `json:"authenticated"` // a password (or passkey) sign-in happened
	User          string   `json:"user,omitempty"`
	Groups        []string `json:"groups,omitempty"`
	Proofs        []Proof  `json:"proofs,omitempty"`
	TrustedDevice bool     `json:"trusted_device,omitempty"` // the browser carries a valid remembered-device token
}
