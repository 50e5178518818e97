// Package totp is the authenticator-app factor (RFC 6238): enrolment with a
// QR code and a confirming code, and verification that accepts every time
// step at most once per credential.
//
// pquerna/otp makes the key, the otpauth:// URL, the QR code and the HOTP
// value of a step. Everything around it is ours, because the library has no
// memory: it cannot refuse a code that was already used, and its
// ValidateCustom does not say which step matched. So Verify computes the
// codes of the skew window itself, finds the step, and accepts it only if it
// is newer than the last step accepted for that credential, advancing that
// step with a compare-and-swap so that concurrent requests cannot both win.
//
// Secrets are sealed (factors.Secrets) with associated data
// "totp/<user>/<credential id>", so a sealed secret copied onto another
// user's credential does not open.
package totp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// Kind is the factor's name in credentials, sessions and policies.
const Kind = "totp"

// ErrInvalidCode: FinishEnroll got a code that does not match the pending
// secret. The enrolment stays pending, so the user can try again.
var ErrInvalidCode = errors.New("totp: wrong code")

// KV is the part of store.KV this package uses: one durable record per user
// holding all their apps (compare-and-swap keeps names unique and time steps
// single-use), and short-lived pending enrolments consumed once.
type KV interface {
	Get(ctx context.Context, key string) (store.Item, error)
	CompareAndSet(ctx context.Context, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error)
	Delete(ctx context.Context, key string) error
	CompareAndDelete(ctx context.Context, key string, prev uint64) error
	Consume(ctx context.Context, key string) ([]byte, error)
	Scan(ctx context.Context, prefix string, fn func(store.Item) error) error
}

// Options configure a Factor. Zero values take the defaults (SHA1, 6
// digits, 30 s), the only parameters every authenticator app honours: some
// ignore the algorithm, digits and period in the QR code and then show
// codes that never match.
type Options struct {
	// Issuer is the label the app shows above the account ("keygate").
	Issuer string
	// Algorithm is "SHA1" (default), "SHA256" or "SHA512".
	Algorithm string
	// Digits is 6 (default) or 8.
	Digits int
	// Period is the time step in seconds (30 by default, at most 300).
	Period uint
	// Skew is how many steps before and after the current one are accepted,
	// for phones whose clock drifts (1 by default, at most 5). A window
	// without skew is not offered: 0 means the default.
	Skew uint
	// SecretSize is the secret's length in bytes (20 by default; 16 to 64:
	// RFC 4226 asks for at least 128 bits).
	SecretSize uint
	// EnrollTTL is how long a begun enrolment can be finished (10 min).
	EnrollTTL time.Duration
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Secrets seals the secrets at rest. Required.
	Secrets *factors.Secrets
}

// Limits on Options and inputs.
const (
	maxPeriod     = 300
	maxSkew       = 5
	minSecretSize = 16
	maxSecretSize = 64
	// maxAccountLen bounds what ends up in the otpauth:// URL and the QR code.
	maxAccountLen = 128
	// maxCASRetries bounds read-modify-write loops that lost a
	// compare-and-swap. Each retry re-reads, so the bound only matters under
	// a storm of writes to one user's record.
	maxCASRetries = 16
)

// Factor is the TOTP factor. It keeps no state of its own besides its
// configuration: several Factors (or processes sharing a backend) stay
// consistent through the store alone.
type Factor struct {
	kv         KV
	secrets    *factors.Secrets
	issuer     string
	algorithm  otp.Algorithm
	digits     int
	period     uint
	skew       uint
	secretSize uint
	enrollTTL  time.Duration
	now        func() time.Time
}

// New checks the options, fills in the defaults and returns the factor.
func New(kv KV, opt Options) (*Factor, error) {
	if kv == nil {
		return nil, errors.New("totp: no store")
	}
	if opt.Secrets == nil {
		return nil, errors.New("totp: no Secrets: TOTP secrets are never stored unsealed")
	}
	f := &Factor{
		kv:         kv,
		secrets:    opt.Secrets,
		issuer:     opt.Issuer,
		digits:     opt.Digits,
		period:     opt.Period,
		skew:       opt.Skew,
		secretSize: opt.SecretSize,
		enrollTTL:  opt.EnrollTTL,
		now:        opt.Now,
	}
	if f.issuer == "" {
		f.issuer = "keygate"
	}
	// The key URI format uses ':' to separate the issuer from the account.
	if strings.Contains(f.issuer, ":") || strings.ContainsFunc(f.issuer, factors.UnsafeRune) {
		return nil, fmt.Errorf("totp: issuer %q may not contain ':' or control characters", f.issuer)
	}
	alg, ok := parseAlgorithm(opt.Algorithm)
	if !ok {
		return nil, fmt.Errorf("totp: algorithm %q: want SHA1, SHA256 or SHA512", opt.Algorithm)
	}
	f.algorithm = alg
	switch f.digits {
	case 0:
		f.digits = 6
	case 6, 8:
	default:
		return nil, fmt.Errorf("totp: %d digits: want 6 or 8", opt.Digits)
	}
	if f.period == 0 {
		f.period = 30
	}
	if f.period > maxPeriod {
		return nil, fmt.Errorf("totp: period of %d s: at most %d", f.period, maxPeriod)
	}
	if f.skew == 0 {
		f.skew = 1
	}
	if f.skew > maxSkew {
		return nil, fmt.Errorf("totp: skew of %d steps: at most %d", f.skew, maxSkew)
	}
	if f.secretSize == 0 {
		f.secretSize = 20
	}
	if f.secretSize < minSecretSize || f.secretSize > maxSecretSize {
		return nil, fmt.Errorf("totp: secret size of %d bytes: want %d to %d", f.secretSize, minSecretSize, maxSecretSize)
	}
	if f.enrollTTL < 0 {
		return nil, fmt.Errorf("totp: negative enrolment lifetime %v", f.enrollTTL)
	}
	if f.enrollTTL == 0 {
		f.enrollTTL = 10 * time.Minute
	}
	if f.now == nil {
		f.now = time.Now
	}
	return f, nil
}

// Kind returns "totp".
func (f *Factor) Kind() string { return Kind }

func parseAlgorithm(s string) (otp.Algorithm, bool) {
	switch strings.ToUpper(s) {
	case "", "SHA1":
		return otp.AlgorithmSHA1, true
	case "SHA256":
		return otp.AlgorithmSHA256, true
	case "SHA512":
		return otp.AlgorithmSHA512, true
	}
	return 0, false
}

// Interface guards.
var (
	_ factors.Registry = (*Factor)(nil)
	_ KV               = (store.KV)(nil)
)
