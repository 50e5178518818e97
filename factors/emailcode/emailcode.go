// Package emailcode is the one-time-code-by-email second factor: a short
// numeric code that arrives in a minute, works once, expires in minutes and
// can be re-sent after a short wait.
//
// The code's life and its safeguards (uniform digits from crypto/rand,
// keyed hashes at rest, single use under concurrency, tries per code,
// resend cooldown, hourly cap, nothing recorded when delivery fails) are
// the engine's, package factors/sentcode, shared with the SMS factor. What
// is here is what is particular to mail: which addresses are accepted,
// how they are masked, and the mail itself (subject, text and HTML, en and
// ru, worded for each purpose).
//
// Records keep the keys they had before the engine was shared
// ("emailcode/code/<purpose>/<user>", "emailcode/sends/<user>", hash
// context "email/<purpose>/<user>"), so pending codes and send logs
// survive an upgrade.
//
// The factor never imports net/http: it returns typed errors
// (*CooldownError, *CapError, and sentinels) and the web layer decides what
// people see. Per-IP and per-user lockouts across factors are authn's job.
package emailcode

import (
	"context"
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sentcode"
)

// Mask hides most of an address while leaving enough for its owner to
// recognise it; see mail.Mask.
func Mask(address string) string { return mail.Mask(address) }

// KV is the part of store.KV the factor uses (see sentcode.KV).
type KV = sentcode.KV

// Purpose says what a code is for. It is part of the stored key and of the
// hash context, so a code mailed to confirm an address never signs anyone
// in, and the mail says in words what the code will do.
type Purpose = factors.Purpose

// The purposes a code can be sent for.
const (
	PurposeSignIn        = factors.PurposeSignIn
	PurposeVerifyAddress = factors.PurposeVerifyAddress
	PurposeEnroll        = factors.PurposeEnroll
	PurposeUnlock        = factors.PurposeUnlock
)

// Errors callers branch on (with errors.Is). They are the shared refusals
// of package factors under the names this package had before, so callers
// of either spelling keep working.
var (
	// ErrCooldown: a code for this purpose was sent less than
	// Options.Cooldown ago. The error is a *CooldownError with the wait.
	ErrCooldown = factors.ErrCooldown
	// ErrHourlyCap: the user had Options.HourlyCap codes in the last hour.
	// The error is a *CapError saying when the next one is possible.
	ErrHourlyCap = factors.ErrHourlyCap
	// ErrTooManyTries: the code had Options.MaxTries wrong tries and is dead.
	ErrTooManyTries = factors.ErrTooManyTries
	// ErrNoCode: no code is pending for this user and purpose.
	ErrNoCode = factors.ErrNoChallenge
	// ErrDelivery: the mail could not be sent; nothing was recorded.
	// It is mail.ErrDelivery itself, so a Sender's error matches as is;
	// the error also matches factors.ErrSendFailed.
	ErrDelivery = mail.ErrDelivery
	// ErrInvalidAddress: the address is not a single bare email address.
	// It matches factors.ErrBadAddress.
	ErrInvalidAddress = fmt.Errorf("emailcode: not a valid email address: %w", factors.ErrBadAddress)
)

// CooldownError refuses a Send made before the cooldown passed. It
// unwraps to a *factors.CooldownError (and so to ErrCooldown).
type CooldownError struct {
	// Remaining is the wait, rounded up to a whole second.
	Remaining time.Duration
	// Until is when the cooldown ends.
	Until time.Time
}

func (e *CooldownError) Error() string {
	return fmt.Sprintf("emailcode: a code was sent moments ago; ask for another in %s", e.Remaining)
}

// Unwrap makes errors.Is(err, ErrCooldown) and errors.As(err,
// **factors.CooldownError) true.
func (e *CooldownError) Unwrap() error { return &factors.CooldownError{Until: e.Until} }

// CapError refuses a Send over the hourly cap. It unwraps to a
// *factors.CapError (and so to ErrHourlyCap).
type CapError struct {
	// RetryAt is when the oldest send of the last hour stops counting.
	RetryAt time.Time
}

func (e *CapError) Error() string {
	return fmt.Sprintf("emailcode: too many codes asked for in the last hour; next one possible at %s", e.RetryAt.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrHourlyCap) and errors.As(err,
// **factors.CapError) true.
func (e *CapError) Unwrap() error { return &factors.CapError{Until: e.RetryAt} }

// Options tune the factor. Zero values take the defaults.
type Options struct {
	// Length of a code in digits: 6 by default, 6..10.
	Length int
	// TTL is how long a code is valid: 10 minutes by default, 1 min..1 h.
	TTL time.Duration
	// MaxTries is the number of wrong tries a code survives: 5 by default,
	// 1..20. After that the code is dead, even for the right value.
	MaxTries int
	// Cooldown is the wait before a new code for the same purpose: 60 s by
	// default; it must be shorter than TTL so a dead code can always be
	// replaced before the page gives up.
	Cooldown time.Duration
	// HourlyCap is how many codes one user may be sent in a rolling hour,
	// all purposes together: 5 by default, 1..100.
	HourlyCap int
	// Product names the service in the subject and body: "keygate" by default.
	Product string
	// Now is the clock (time.Now by default); tests inject their own.
	Now func() time.Time
	// Secrets hashes codes before they are stored. Required.
	Secrets *factors.Secrets
}

const defaultProduct = "keygate"

// Factor sends and checks email codes. It is safe for concurrent use.
type Factor struct {
	eng     *sentcode.Engine
	sender  mail.Sender
	product string
	tmpl    *templates
}

// New checks the options, fills in defaults and parses the mail templates.
func New(kv KV, s mail.Sender, opt Options) (*Factor, error) {
	if s == nil {
		return nil, errors.New("emailcode: no sender")
	}
	if opt.Product == "" {
		opt.Product = defaultProduct
	}
	if strings.ContainsFunc(opt.Product, isControl) || len(opt.Product) > 64 {
		return nil, errors.New("emailcode: product name has control characters or is longer than 64 bytes")
	}
	t, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	f := &Factor{sender: s, product: opt.Product, tmpl: t}
	f.eng, err = sentcode.New(kv, sentcode.DeliveryFunc(f.deliver), sentcode.Options{
		Name: "emailcode", HashLabel: "email", Mask: Mask, Secrets: opt.Secrets, Now: opt.Now,
		Limits: sentcode.Limits{Length: opt.Length, TTL: opt.TTL, MaxTries: opt.MaxTries,
			Cooldown: opt.Cooldown, HourlyCap: opt.HourlyCap},
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Kind names the factor in sessions, policies and the audit log.
func (f *Factor) Kind() string { return factors.KindEmail }

// deliver renders the mail for m and sends it.
func (f *Factor) deliver(ctx context.Context, m sentcode.Message) error {
	msg, err := f.tmpl.render(m.Lang, mailData{
		Product: f.product,
		Code:    m.Code,
		Minutes: int(m.TTL / time.Minute),
		Purpose: m.Purpose,
	})
	if err != nil {
		return err
	}
	msg.To = m.To
	if err := f.sender.Send(ctx, msg); err != nil {
		if !errors.Is(err, ErrDelivery) {
			err = fmt.Errorf("%w: %w", ErrDelivery, err)
		}
		return err
	}
	return nil
}

// Sent describes a code that went out.
type Sent struct {
	// Masked is the address it went to, masked for display (see Mask).
	Masked string
	// ResendAt is the earliest time another code for this purpose will be
	// accepted (cooldown, or the hourly cap when that is the later).
	ResendAt time.Time
	// ExpiresAt is when the code stops working.
	ExpiresAt time.Time
}

// Send makes a new code for (user, purpose), mails it to address in lang
// ("en" or "ru"; anything else is English) and, only once the mail went
// out, stores it in place of any pending one.
//
// Refusals: *CooldownError (ErrCooldown), *CapError (ErrHourlyCap),
// ErrInvalidAddress. A delivery failure returns an error wrapping
// ErrDelivery (and factors.ErrSendFailed) and changes nothing: no code
// stored, cooldown and cap not consumed, an earlier pending code still
// valid.
func (f *Factor) Send(ctx context.Context, user, address, lang string, p Purpose) (Sent, error) {
	sent, err := f.send(ctx, user, address, lang, p)
	if err != nil {
		return Sent{}, f.legacyRefusal(err)
	}
	return Sent{Masked: sent.To, ResendAt: sent.ResendAt, ExpiresAt: sent.ExpiresAt}, nil
}

func (f *Factor) send(ctx context.Context, user, address, lang string, p Purpose) (factors.Sent, error) {
	if user == "" || !sentcode.ValidPurpose(p) {
		// Checked before the address so a caller's bug is named as such.
		return f.eng.Send(ctx, sentcode.Send{User: user, Purpose: p})
	}
	addr, err := parseAddress(address)
	if err != nil {
		return factors.Sent{}, err
	}
	return f.eng.Send(ctx, sentcode.Send{User: user, Purpose: p, To: addr, Lang: lang})
}

// legacyRefusal turns the shared cooldown and cap refusals into this
// package's types (which unwrap to the shared ones): Send's callers read
// Remaining and RetryAt.
func (f *Factor) legacyRefusal(err error) error {
	var ce *factors.CooldownError
	var ke *factors.CapError
	switch {
	case errors.As(err, &ce):
		return &CooldownError{Remaining: ceilSecond(ce.Until.Sub(f.eng.Now())), Until: ce.Until}
	case errors.As(err, &ke):
		return &CapError{RetryAt: ke.Until}
	}
	return err
}

// Verify checks code for (user, purpose). ok=true comes exactly once per
// code. A wrong code is ok=false with a nil error, and the try is counted.
// Errors: ErrNoCode (none pending), factors.ErrExpired (past its lifetime),
// ErrTooManyTries (dead after MaxTries wrong tries, even for the right
// code), factors.ErrReplayed (this code was already used).
//
// Input that cannot be a code (wrong length, not digits, after dropping
// spaces and dashes) is ok=false without counting a try.
func (f *Factor) Verify(ctx context.Context, user string, p Purpose, code string) (bool, error) {
	_, err := f.eng.Check(ctx, user, p, "", code)
	switch {
	case errors.Is(err, factors.ErrWrongResponse):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// Pending is what the page shows while a code is waiting to be entered.
type Pending struct {
	Masked    string
	ResendAt  time.Time
	ExpiresAt time.Time
	TriesLeft int
}

// Waiting reports the code waiting for (user, purpose): ok is false when
// there is none that can still be entered (none sent, used, expired or out
// of tries); the page then offers to send one.
func (f *Factor) Waiting(ctx context.Context, user string, p Purpose) (Pending, bool, error) {
	s, ok, err := f.eng.Pending(ctx, user, p)
	if err != nil || !ok {
		return Pending{}, false, err
	}
	return Pending{Masked: s.To, ResendAt: s.ResendAt, ExpiresAt: s.ExpiresAt, TriesLeft: s.TriesLeft}, true, nil
}

// parseAddress accepts one bare address ("alice@example.com"), no display
// name, no list, nothing that could smuggle a header.
func parseAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsFunc(s, isControl) {
		return "", ErrInvalidAddress
	}
	a, err := netmail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", ErrInvalidAddress
	}
	return a.Address, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// ceilSecond rounds d up to a whole second: "wait 0 s" would be a lie.
func ceilSecond(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// Interface guards.
var (
	_ error = (*CooldownError)(nil)
	_ error = (*CapError)(nil)
)
