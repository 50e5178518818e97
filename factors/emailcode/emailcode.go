// Package emailcode is the one-time-code-by-email second factor: a short
// numeric code that arrives in a minute, works once, expires in minutes and
// can be re-sent after a short wait.
//
// Safeguards, and why each is here:
//   - Codes come from crypto/rand with every digit uniform, and are stored
//     only as keyed hashes (factors.Secrets, context "email/<purpose>/<user>"):
//     a copy of the database neither shows a code nor lets anyone test
//     guesses offline.
//   - A code is single use: Verify marks it used with a compare-and-set on
//     the record's version, so of any number of concurrent correct
//     submissions exactly one succeeds; the others get factors.ErrReplayed.
//     The used record is kept (not deleted) until it expires so that a
//     replay is told apart from "no code".
//   - At most MaxTries wrong tries per code, each counted with a
//     compare-and-set (no lost updates under concurrency); then the code is
//     dead, even for the right value.
//   - A resend cooldown per (user, purpose) and an hourly cap per user, so a
//     stolen password cannot be used to flood the owner's mailbox.
//   - A failed delivery leaves no trace: no code is stored, the cooldown
//     and cap are not consumed and an earlier pending code keeps working, so
//     nobody is stuck because the mail server hiccupped.
//
// The factor never imports net/http: it returns typed errors
// (*CooldownError, *CapError, and sentinels) and the web layer decides what
// people see. Per-IP and per-user lockouts across factors are authn's job.
package emailcode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// Mask hides most of an address while leaving enough for its owner to
// recognise it; see mail.Mask.
func Mask(address string) string { return mail.Mask(address) }

// KV is the part of store.KV the factor uses: reads, unconditional writes
// (a new code replaces the old one) and compare-and-set (counting tries,
// consuming a code, reserving a send) — nothing else.
type KV interface {
	Get(ctx context.Context, key string) (store.Item, error)
	Set(ctx context.Context, key string, value []byte, opt store.WriteOptions) (uint64, error)
	CompareAndSet(ctx context.Context, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error)
}

// Purpose says what a code is for. It is part of the stored key and of the
// hash context, so a code mailed to confirm an address never signs anyone
// in, and the mail says in words what the code will do.
type Purpose string

// The purposes a code can be sent for.
const (
	PurposeSignIn        Purpose = "sign_in"
	PurposeVerifyAddress Purpose = "verify_address"
	PurposeEnroll        Purpose = "enroll"
	PurposeUnlock        Purpose = "unlock"
)

// Valid reports whether p is one of the known purposes.
func (p Purpose) Valid() bool {
	switch p {
	case PurposeSignIn, PurposeVerifyAddress, PurposeEnroll, PurposeUnlock:
		return true
	}
	return false
}

// Errors callers branch on (with errors.Is). Messages are safe to show; the
// web layer still maps them to its own, generic wording.
var (
	// ErrCooldown: a code for this purpose was sent less than
	// Options.Cooldown ago. The error is a *CooldownError with the wait.
	ErrCooldown = errors.New("emailcode: a code was sent moments ago; wait before asking for another")
	// ErrHourlyCap: the user had Options.HourlyCap codes in the last hour.
	// The error is a *CapError saying when the next one is possible.
	ErrHourlyCap = errors.New("emailcode: too many codes asked for in the last hour")
	// ErrTooManyTries: the code had Options.MaxTries wrong tries and is dead.
	ErrTooManyTries = errors.New("emailcode: too many wrong tries; request a new code")
	// ErrNoCode: no code is pending for this user and purpose.
	ErrNoCode = errors.New("emailcode: no code pending; request one")
	// ErrDelivery: the mail could not be sent; nothing was recorded.
	// It is mail.ErrDelivery itself, so a Sender's error matches as is.
	ErrDelivery = mail.ErrDelivery
	// ErrInvalidAddress: the address is not a single bare email address.
	ErrInvalidAddress = errors.New("emailcode: not a valid email address")
)

// CooldownError refuses a Send made before the cooldown passed.
type CooldownError struct {
	// Remaining is the wait, rounded up to a whole second.
	Remaining time.Duration
}

func (e *CooldownError) Error() string {
	return fmt.Sprintf("emailcode: a code was sent moments ago; ask for another in %s", e.Remaining)
}

// Unwrap makes errors.Is(err, ErrCooldown) true.
func (e *CooldownError) Unwrap() error { return ErrCooldown }

// CapError refuses a Send over the hourly cap.
type CapError struct {
	// RetryAt is when the oldest send of the last hour stops counting.
	RetryAt time.Time
}

func (e *CapError) Error() string {
	return fmt.Sprintf("emailcode: too many codes asked for in the last hour; next one possible at %s", e.RetryAt.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrHourlyCap) true.
func (e *CapError) Unwrap() error { return ErrHourlyCap }

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

const (
	defaultLength    = 6
	defaultTTL       = 10 * time.Minute
	defaultMaxTries  = 5
	defaultCooldown  = 60 * time.Second
	defaultHourlyCap = 5
	defaultProduct   = "keygate"

	// capWindow is the span of the rolling cap.
	capWindow = time.Hour

	// expiredGrace keeps a code record in the store this long past the
	// code's expiry, so Verify can say "expired, request a new one" instead
	// of "no code". A used record is kept as long, to say "already used".
	expiredGrace = time.Hour

	// maxCASAttempts bounds the read–modify–compare-and-set loops. Every
	// lost round means another writer made progress on the same record, and
	// a code record takes at most MaxTries+1 writes before it is dead, so
	// the bound is never reached in practice; it only stops a livelock.
	maxCASAttempts = 64

	// rollbackTimeout bounds the undo of a send reservation; it runs even
	// when the caller's context is done, or the cooldown would stay consumed.
	rollbackTimeout = 5 * time.Second
)

// Factor sends and checks email codes. It is safe for concurrent use.
type Factor struct {
	kv     KV
	sender mail.Sender
	opt    Options
	tmpl   *templates
}

// New checks the options, fills in defaults and parses the mail templates.
func New(kv KV, s mail.Sender, opt Options) (*Factor, error) {
	if kv == nil {
		return nil, errors.New("emailcode: no store")
	}
	if s == nil {
		return nil, errors.New("emailcode: no sender")
	}
	if opt.Secrets == nil {
		return nil, errors.New("emailcode: no Secrets: codes are stored only as keyed hashes")
	}
	if opt.Length == 0 {
		opt.Length = defaultLength
	}
	if opt.TTL == 0 {
		opt.TTL = defaultTTL
	}
	if opt.MaxTries == 0 {
		opt.MaxTries = defaultMaxTries
	}
	if opt.Cooldown == 0 {
		opt.Cooldown = defaultCooldown
	}
	if opt.HourlyCap == 0 {
		opt.HourlyCap = defaultHourlyCap
	}
	if opt.Product == "" {
		opt.Product = defaultProduct
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	switch {
	case opt.Length < 6 || opt.Length > 10:
		return nil, fmt.Errorf("emailcode: code length %d; want 6..10 digits", opt.Length)
	case opt.TTL < time.Minute || opt.TTL > time.Hour:
		return nil, fmt.Errorf("emailcode: code lifetime %s; want 1m..1h", opt.TTL)
	case opt.MaxTries < 1 || opt.MaxTries > 20:
		return nil, fmt.Errorf("emailcode: %d tries per code; want 1..20", opt.MaxTries)
	case opt.Cooldown < 0 || opt.Cooldown >= opt.TTL:
		return nil, fmt.Errorf("emailcode: resend cooldown %s; want more than 0 and less than the code lifetime %s", opt.Cooldown, opt.TTL)
	case opt.HourlyCap < 1 || opt.HourlyCap > 100:
		return nil, fmt.Errorf("emailcode: hourly cap %d; want 1..100", opt.HourlyCap)
	case strings.ContainsFunc(opt.Product, isControl) || len(opt.Product) > 64:
		return nil, errors.New("emailcode: product name has control characters or is longer than 64 bytes")
	}
	t, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	return &Factor{kv: kv, sender: s, opt: opt, tmpl: t}, nil
}

// Kind names the factor in sessions, policies and the audit log.
func (f *Factor) Kind() string { return "email" }

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
// Refusals: *CooldownError (ErrCooldown), *CapError (ErrHourlyCap). A
// delivery failure returns an error wrapping ErrDelivery and changes
// nothing: no code stored, cooldown and cap not consumed, an earlier
// pending code still valid.
func (f *Factor) Send(ctx context.Context, user, address, lang string, p Purpose) (Sent, error) {
	if err := checkUserPurpose(user, p); err != nil {
		return Sent{}, err
	}
	addr, err := parseAddress(address)
	if err != nil {
		return Sent{}, err
	}
	code, err := newCode(f.opt.Length)
	if err != nil {
		return Sent{}, err
	}
	now := f.opt.Now()
	msg, err := f.tmpl.render(lang, mailData{
		Product: f.opt.Product,
		Code:    code,
		Minutes: int(f.opt.TTL / time.Minute),
		Purpose: p,
	})
	if err != nil {
		return Sent{}, err
	}
	msg.To = addr

	// Reserve the send before mailing: the reservation counts for the
	// cooldown and the cap at once, so concurrent Sends cannot all slip
	// through the check and flood the mailbox.
	resID, sends, err := f.reserve(ctx, user, p, now)
	if err != nil {
		return Sent{}, err
	}
	if err := f.sender.Send(ctx, msg); err != nil {
		// Undo the reservation: a mail that never left must not make the
		// user wait or count against the cap.
		if rerr := f.unreserve(ctx, user, resID); rerr != nil {
			err = errors.Join(err, rerr)
		}
		if !errors.Is(err, ErrDelivery) {
			err = fmt.Errorf("%w: %w", ErrDelivery, err)
		}
		return Sent{}, err
	}

	// Mail first, store second: on failure nothing needs undoing and the
	// previous code stays valid. The window in which the mail is out but
	// the code not yet stored is one local write, far shorter than anyone
	// takes to read a mail. Once the mail is out the write must happen even
	// if the caller gave up meanwhile, or the user would hold a mailed code
	// that does not exist.
	ctx = context.WithoutCancel(ctx)
	rec := codeRecord{
		Hash:      f.opt.Secrets.Hash(hashContext(user, p), code),
		Masked:    Mask(addr),
		CreatedAt: now,
		ExpiresAt: now.Add(f.opt.TTL),
	}
	val, err := rec.encode()
	if err != nil {
		return Sent{}, err
	}
	if _, err := f.kv.Set(ctx, codeKey(user, p), val, store.WriteOptions{TTL: f.opt.TTL + expiredGrace, Durable: true}); err != nil {
		return Sent{}, fmt.Errorf("emailcode: store code: %w", err)
	}
	return Sent{Masked: rec.Masked, ResendAt: f.resendAt(sends, p, now), ExpiresAt: rec.ExpiresAt}, nil
}

// Verify checks code for (user, purpose). ok=true comes exactly once per
// code. A wrong code is ok=false with a nil error, and the try is counted.
// Errors: ErrNoCode (none pending), factors.ErrExpired (past its lifetime),
// ErrTooManyTries (dead after MaxTries wrong tries, even for the right
// code), factors.ErrReplayed (this code was already used).
//
// Input that cannot be a code (wrong length, not digits, after dropping
// spaces and dashes) is ok=false without counting a try: it can never
// match, so it costs a guesser nothing either way, and a slip of the
// finger should not burn one of the user's tries.
func (f *Factor) Verify(ctx context.Context, user string, p Purpose, code string) (bool, error) {
	if err := checkUserPurpose(user, p); err != nil {
		return false, err
	}
	code = normalizeCode(code)
	wellFormed := len(code) == f.opt.Length && isDigits(code)
	var want []byte
	if wellFormed {
		want = f.opt.Secrets.Hash(hashContext(user, p), code)
	}
	key := codeKey(user, p)
	for range maxCASAttempts {
		item, rec, err := f.loadCode(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return false, ErrNoCode
		}
		if err != nil {
			return false, err
		}
		now := f.opt.Now()
		match := wellFormed && factors.Equal(rec.Hash, want)
		switch {
		case rec.Used:
			if match {
				return false, fmt.Errorf("emailcode: code already used: %w", factors.ErrReplayed)
			}
			// Another code against a used record: there is simply no code
			// waiting to be entered.
			return false, ErrNoCode
		case !now.Before(rec.ExpiresAt):
			return false, fmt.Errorf("emailcode: code expired, request a new one: %w", factors.ErrExpired)
		case rec.Tries >= f.opt.MaxTries:
			return false, ErrTooManyTries
		case !wellFormed:
			return false, nil
		}
		if match {
			rec.Used = true
		} else {
			rec.Tries++
		}
		err = f.rewriteCode(ctx, key, item.Version, rec, now)
		if errors.Is(err, store.ErrConflict) {
			// Someone else used the code, counted a try or sent a new code
			// since we read: decide again on fresh data.
			continue
		}
		if err != nil {
			return false, err
		}
		return match, nil
	}
	return false, fmt.Errorf("emailcode: verify: gave up after %d conflicting writes: %w", maxCASAttempts, store.ErrConflict)
}

// Pending is what the page shows while a code is waiting to be entered.
type Pending struct {
	Masked    string
	ResendAt  time.Time
	ExpiresAt time.Time
	TriesLeft int
}

// Pending reports the code waiting for (user, purpose): ok is false when
// there is none that can still be entered (none sent, used, expired or out
// of tries); the page then offers to send one.
func (f *Factor) Pending(ctx context.Context, user string, p Purpose) (Pending, bool, error) {
	if err := checkUserPurpose(user, p); err != nil {
		return Pending{}, false, err
	}
	_, rec, err := f.loadCode(ctx, codeKey(user, p))
	if errors.Is(err, store.ErrNotFound) {
		return Pending{}, false, nil
	}
	if err != nil {
		return Pending{}, false, err
	}
	now := f.opt.Now()
	if rec.Used || !now.Before(rec.ExpiresAt) || rec.Tries >= f.opt.MaxTries {
		return Pending{}, false, nil
	}
	_, sends, err := f.loadSends(ctx, user)
	if err != nil {
		return Pending{}, false, err
	}
	return Pending{
		Masked:    rec.Masked,
		ResendAt:  f.resendAt(sends.prune(now), p, now),
		ExpiresAt: rec.ExpiresAt,
		TriesLeft: f.opt.MaxTries - rec.Tries,
	}, true, nil
}

// reserve records a send for (user, p) at now unless the cooldown or the
// cap refuses it, and returns the reservation's id and the updated log.
func (f *Factor) reserve(ctx context.Context, user string, p Purpose, now time.Time) (string, sendLog, error) {
	id, err := randomID()
	if err != nil {
		return "", sendLog{}, err
	}
	key := sendsKey(user)
	for range maxCASAttempts {
		item, sends, err := f.loadSends(ctx, user)
		if err != nil {
			return "", sendLog{}, err
		}
		sends = sends.prune(now)
		if err := f.refusal(sends, p, now); err != nil {
			return "", sendLog{}, err
		}
		sends.Sends = append(sends.Sends, sendEntry{ID: id, At: now, Purpose: p})
		err = f.writeSends(ctx, key, item.Version, sends)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return "", sendLog{}, err
		}
		return id, sends, nil
	}
	return "", sendLog{}, fmt.Errorf("emailcode: send: gave up after %d conflicting writes: %w", maxCASAttempts, store.ErrConflict)
}

// unreserve removes the reservation id. It runs on its own short deadline,
// detached from ctx: a caller that gave up (and so cancelled ctx) must not
// leave the user waiting out a cooldown for a mail that never left.
func (f *Factor) unreserve(ctx context.Context, user, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	key := sendsKey(user)
	for range maxCASAttempts {
		item, sends, err := f.loadSends(ctx, user)
		if err != nil {
			return fmt.Errorf("emailcode: undo send reservation: %w", err)
		}
		kept := sends.Sends[:0]
		for _, s := range sends.Sends {
			if s.ID != id {
				kept = append(kept, s)
			}
		}
		if len(kept) == len(sends.Sends) {
			return nil
		}
		sends.Sends = kept
		err = f.writeSends(ctx, key, item.Version, sends)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("emailcode: undo send reservation: %w", err)
		}
		return nil
	}
	return fmt.Errorf("emailcode: undo send reservation: gave up after %d conflicting writes: %w", maxCASAttempts, store.ErrConflict)
}

// waits returns when the hourly cap and the cooldown for p stop refusing a
// send (each zero or not after now when it does not refuse).
func (f *Factor) waits(sends sendLog, p Purpose, now time.Time) (capUntil, coolUntil time.Time) {
	if len(sends.Sends) >= f.opt.HourlyCap {
		// The sends are in time order; the cap frees when enough of the
		// oldest have left the window. A clock that went backwards must not
		// lock anyone out for longer than the window itself.
		oldest := sends.Sends[len(sends.Sends)-f.opt.HourlyCap].At
		capUntil = minTime(oldest.Add(capWindow), now.Add(capWindow))
	}
	if last, ok := sends.last(p); ok {
		coolUntil = minTime(last.Add(f.opt.Cooldown), now.Add(f.opt.Cooldown))
	}
	return capUntil, coolUntil
}

// refusal says why a send for p at now is refused, or nil. When both the
// cap and the cooldown refuse, the one that ends later is reported: that is
// the wait the user really faces.
func (f *Factor) refusal(sends sendLog, p Purpose, now time.Time) error {
	capUntil, coolUntil := f.waits(sends, p, now)
	switch {
	case capUntil.After(now) && !coolUntil.After(capUntil):
		return &CapError{RetryAt: capUntil}
	case coolUntil.After(now):
		return &CooldownError{Remaining: ceilSecond(coolUntil.Sub(now))}
	}
	return nil
}

// resendAt is when a send for p will next be accepted, given the log.
func (f *Factor) resendAt(sends sendLog, p Purpose, now time.Time) time.Time {
	capUntil, coolUntil := f.waits(sends, p, now)
	t := now
	if capUntil.After(t) {
		t = capUntil
	}
	if coolUntil.After(t) {
		t = coolUntil
	}
	return t
}

func (f *Factor) loadCode(ctx context.Context, key string) (store.Item, codeRecord, error) {
	item, err := f.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return store.Item{}, codeRecord{}, err
		}
		return store.Item{}, codeRecord{}, fmt.Errorf("emailcode: read code: %w", err)
	}
	rec, err := decodeCode(item.Value)
	if err != nil {
		return store.Item{}, codeRecord{}, err
	}
	return item, rec, nil
}

// rewriteCode stores rec over version prev, keeping the record alive until
// expiredGrace past the code's expiry (every write sets the TTL anew).
func (f *Factor) rewriteCode(ctx context.Context, key string, prev uint64, rec codeRecord, now time.Time) error {
	val, err := rec.encode()
	if err != nil {
		return err
	}
	ttl := max(rec.ExpiresAt.Add(expiredGrace).Sub(now), time.Second)
	_, err = f.kv.CompareAndSet(ctx, key, val, prev, store.WriteOptions{TTL: ttl, Durable: true})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("emailcode: write code: %w", err)
	}
	return err
}

func (f *Factor) loadSends(ctx context.Context, user string) (store.Item, sendLog, error) {
	item, err := f.kv.Get(ctx, sendsKey(user))
	if errors.Is(err, store.ErrNotFound) {
		return store.Item{}, sendLog{}, nil // Version 0: "create if absent"
	}
	if err != nil {
		return store.Item{}, sendLog{}, fmt.Errorf("emailcode: read send log: %w", err)
	}
	sends, err := decodeSends(item.Value)
	if err != nil {
		return store.Item{}, sendLog{}, err
	}
	return item, sends, nil
}

func (f *Factor) writeSends(ctx context.Context, key string, prev uint64, sends sendLog) error {
	val, err := sends.encode()
	if err != nil {
		return err
	}
	// The log only matters for an hour after its newest entry; a few extra
	// minutes cover clocks that disagree a little.
	_, err = f.kv.CompareAndSet(ctx, key, val, prev, store.WriteOptions{TTL: capWindow + 5*time.Minute, Durable: true})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("emailcode: write send log: %w", err)
	}
	return err
}

// newCode returns n digits from crypto/rand, each uniform: bytes of 250 and
// above are rejected so that byte%10 has no bias.
func newCode(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+8)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("emailcode: random: %w", err)
		}
		for _, b := range buf {
			if b < 250 && len(out) < n {
				out = append(out, '0'+b%10)
			}
		}
	}
	return string(out), nil
}

func randomID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("emailcode: random: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// normalizeCode drops the spaces and dashes people type or paste along with
// a code ("123 456", "123-456").
func normalizeCode(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '-', '\u00a0':
			return -1
		}
		return r
	}, s)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
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

func checkUserPurpose(user string, p Purpose) error {
	if user == "" {
		return errors.New("emailcode: no user")
	}
	if !p.Valid() {
		return fmt.Errorf("emailcode: unknown purpose %q", p)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// ceilSecond rounds d up to a whole second: "wait 0 s" would be a lie.
func ceilSecond(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// Interface guards: the store contract satisfies what the factor asks of it.
var (
	_ KV    = store.KV(nil)
	_ error = (*CooldownError)(nil)
	_ error = (*CapError)(nil)
)
