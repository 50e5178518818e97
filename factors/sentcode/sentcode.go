// Package sentcode is the engine behind every second factor that sends a
// short numeric code to an address the person holds (a mailbox, a phone):
// making the code, storing it, checking it, and the limits on sending.
// Factors (factors/emailcode, factors/sms) add only what differs: how an
// address looks and is masked, and how a code is delivered.
//
// Safeguards, and why each is here:
//   - Codes come from crypto/rand with every digit uniform, and are stored
//     only as keyed hashes (factors.Secrets, context "<label>/<purpose>/<user>"):
//     a copy of the database neither shows a code nor lets anyone test
//     guesses offline.
//   - A code is single use: Check marks it used with a compare-and-set on
//     the record's version, so of any number of concurrent correct
//     submissions exactly one succeeds; the others get factors.ErrReplayed.
//     The used record is kept (not deleted) until it expires so that a
//     replay is told apart from "no code".
//   - At most MaxTries wrong tries per code, each counted with a
//     compare-and-set (no lost updates under concurrency); then the code is
//     dead, even for the right value.
//   - A resend cooldown per (user, purpose) and an hourly cap per user, so a
//     stolen password cannot be used to flood the owner's mailbox or phone
//     (or, for SMS, to run up the bill).
//   - A failed delivery leaves no trace: no code is stored, the cooldown
//     and cap are not consumed and an earlier pending code keeps working, so
//     nobody is stuck because the mail server or SMS gateway hiccupped.
//   - A code is bound to its purpose (part of the key and of the hash
//     context) and, when the factor asks, to a reference (an enrolment, a
//     credential): a code sent to confirm one phone number never confirms
//     another.
//
// Refusals are the shared ones of package factors, so authn and web treat
// every sent-code factor alike.
package sentcode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// Message is one code to deliver. The Delivery renders it into a mail or
// a text in Lang; To is the full address (the store only ever sees its
// mask).
type Message struct {
	To      string
	Code    string
	Purpose factors.Purpose
	// Lang is the person's language tag ("en", "ru-RU"); the Delivery
	// picks what it has.
	Lang string
	// TTL is how long the code works (for "it expires in 10 minutes").
	TTL time.Duration
}

// Delivery sends a Message. An error means it did not go out; the engine
// then records nothing and wraps the error with factors.ErrSendFailed.
type Delivery interface {
	Deliver(ctx context.Context, m Message) error
}

// DeliveryFunc adapts a function to Delivery.
type DeliveryFunc func(ctx context.Context, m Message) error

// Deliver calls f.
func (f DeliveryFunc) Deliver(ctx context.Context, m Message) error { return f(ctx, m) }

// KV is the part of store.KV the engine uses: reads, unconditional writes
// (a new code replaces the old one) and compare-and-set (counting tries,
// consuming a code, reserving a send) — nothing else.
type KV interface {
	Get(ctx context.Context, key string) (store.Item, error)
	Set(ctx context.Context, key string, value []byte, opt store.WriteOptions) (uint64, error)
	CompareAndSet(ctx context.Context, key string, value []byte, prev uint64, opt store.WriteOptions) (uint64, error)
}

// Options tune the engine. Zero values of the limits take the defaults.
type Options struct {
	// Name prefixes the engine's keys and its error messages ("emailcode",
	// "sms"). Required: two factors on one store must not share records.
	Name string
	// HashLabel starts the hash context of a code ("email", "sms");
	// Name when empty.
	HashLabel string
	// Mask hides an address for display and storage. Required.
	Mask func(address string) string
	// Secrets hashes codes before they are stored. Required.
	Secrets *factors.Secrets
	Limits
	// Now is the clock (time.Now by default); tests inject their own.
	Now func() time.Time
}

// Limits are a factor's code tuning. Zero values take the defaults.
type Limits struct {
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
}

// Defaults of Options.
const (
	DefaultLength    = 6
	DefaultTTL       = 10 * time.Minute
	DefaultMaxTries  = 5
	DefaultCooldown  = 60 * time.Second
	DefaultHourlyCap = 5
)

const (
	// capWindow is the span of the rolling cap.
	capWindow = time.Hour

	// expiredGrace keeps a code record in the store this long past the
	// code's expiry, so Check can say "expired, request a new one" instead
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

// Engine sends and checks codes. It is safe for concurrent use.
type Engine struct {
	kv      KV
	deliver Delivery
	opt     Options
}

// New checks the options and fills in defaults.
func New(kv KV, d Delivery, opt Options) (*Engine, error) {
	if kv == nil {
		return nil, errors.New("sentcode: no store")
	}
	if d == nil {
		return nil, errors.New("sentcode: no delivery")
	}
	if opt.Name == "" || strings.ContainsAny(opt.Name, "/\x00") {
		return nil, errors.New("sentcode: a name without '/' is required: it separates the factor's records")
	}
	if opt.Secrets == nil {
		return nil, fmt.Errorf("%s: no Secrets: codes are stored only as keyed hashes", opt.Name)
	}
	if opt.Mask == nil {
		return nil, fmt.Errorf("%s: no Mask: addresses are stored only masked", opt.Name)
	}
	if opt.HashLabel == "" {
		opt.HashLabel = opt.Name
	}
	if opt.Length == 0 {
		opt.Length = DefaultLength
	}
	if opt.TTL == 0 {
		opt.TTL = DefaultTTL
	}
	if opt.MaxTries == 0 {
		opt.MaxTries = DefaultMaxTries
	}
	if opt.Cooldown == 0 {
		opt.Cooldown = DefaultCooldown
	}
	if opt.HourlyCap == 0 {
		opt.HourlyCap = DefaultHourlyCap
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if err := opt.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", opt.Name, err)
	}
	return &Engine{kv: kv, deliver: d, opt: opt}, nil
}

// check reports the first limit out of its range (defaults filled in).
func (o Options) check() error {
	switch {
	case o.Length < 6 || o.Length > 10:
		return fmt.Errorf("code length %d; want 6..10 digits", o.Length)
	case o.TTL < time.Minute || o.TTL > time.Hour:
		return fmt.Errorf("code lifetime %s; want 1m..1h", o.TTL)
	case o.MaxTries < 1 || o.MaxTries > 20:
		return fmt.Errorf("%d tries per code; want 1..20", o.MaxTries)
	case o.Cooldown < 0 || o.Cooldown >= o.TTL:
		return fmt.Errorf("resend cooldown %s; want more than 0 and less than the code lifetime %s", o.Cooldown, o.TTL)
	case o.HourlyCap < 1 || o.HourlyCap > 100:
		return fmt.Errorf("hourly cap %d; want 1..100", o.HourlyCap)
	}
	return nil
}

// Options returns the options in force (defaults filled in).
func (e *Engine) Options() Options { return e.opt }

// Now is the engine's clock.
func (e *Engine) Now() time.Time { return e.opt.Now() }

// Send is what to send.
type Send struct {
	User    string
	Purpose factors.Purpose
	// To is the full address, already checked by the factor.
	To   string
	Lang string
	// Ref binds the code to what the factor names (an enrolment, a
	// credential): Check refuses it for any other Ref.
	Ref string
	// Keep is opaque data stored with the code and handed back by the
	// Check that consumes it (sealed by the factor if it is secret).
	Keep []byte
}

// Send makes a new code, delivers it and, only once it went out, stores it
// in place of any pending one for (user, purpose).
//
// Refusals: *factors.CooldownError, *factors.CapError. A delivery failure
// returns an error wrapping factors.ErrSendFailed (and the cause) and
// changes nothing: no code stored, cooldown and cap not consumed, an
// earlier pending code still valid.
func (e *Engine) Send(ctx context.Context, s Send) (factors.Sent, error) {
	if err := e.checkUserPurpose(s.User, s.Purpose); err != nil {
		return factors.Sent{}, err
	}
	if s.To == "" {
		return factors.Sent{}, fmt.Errorf("%s: no address: %w", e.opt.Name, factors.ErrBadAddress)
	}
	code, err := newCode(e.opt.Length)
	if err != nil {
		return factors.Sent{}, fmt.Errorf("%s: %w", e.opt.Name, err)
	}
	now := e.opt.Now()

	// Reserve the send before delivering: the reservation counts for the
	// cooldown and the cap at once, so concurrent Sends cannot all slip
	// through the check and flood the person.
	resID, sends, err := e.reserve(ctx, s.User, s.Purpose, now)
	if err != nil {
		return factors.Sent{}, err
	}
	msg := Message{To: s.To, Code: code, Purpose: s.Purpose, Lang: s.Lang, TTL: e.opt.TTL}
	if err := e.deliver.Deliver(ctx, msg); err != nil {
		// Undo the reservation: a code that never left must not make the
		// user wait or count against the cap.
		if rerr := e.unreserve(ctx, s.User, resID); rerr != nil {
			err = errors.Join(err, rerr)
		}
		if !errors.Is(err, factors.ErrSendFailed) {
			err = fmt.Errorf("%w: %w", factors.ErrSendFailed, err)
		}
		return factors.Sent{}, err
	}

	// Deliver first, store second: on failure nothing needs undoing and the
	// previous code stays valid. The window in which the code is out but
	// not yet stored is one local write, far shorter than anyone takes to
	// read it. Once it is out the write must happen even if the caller gave
	// up meanwhile, or the person would hold a code that does not exist.
	ctx = context.WithoutCancel(ctx)
	rec := codeRecord{
		Hash:      e.opt.Secrets.Hash(e.hashContext(s.User, s.Purpose), code),
		Masked:    e.opt.Mask(s.To),
		Ref:       s.Ref,
		Keep:      s.Keep,
		CreatedAt: now,
		ExpiresAt: now.Add(e.opt.TTL),
	}
	val, err := rec.encode()
	if err != nil {
		return factors.Sent{}, fmt.Errorf("%s: %w", e.opt.Name, err)
	}
	if _, err := e.kv.Set(ctx, e.codeKey(s.User, s.Purpose), val, store.WriteOptions{TTL: e.opt.TTL + expiredGrace, Durable: true}); err != nil {
		return factors.Sent{}, fmt.Errorf("%s: store code: %w", e.opt.Name, err)
	}
	return factors.Sent{
		To:        rec.Masked,
		ResendAt:  e.resendAt(sends, s.Purpose, now),
		ExpiresAt: rec.ExpiresAt,
		TriesLeft: e.opt.MaxTries,
	}, nil
}

// Check uses the code pending for (user, purpose) and ref, and returns
// what Send was asked to keep with it. Success comes exactly once per
// code.
//
// Refusals: factors.ErrWrongResponse (the try is counted),
// factors.ErrNoChallenge (none pending, or it was sent for another ref),
// factors.ErrExpired, factors.ErrTooManyTries (dead after MaxTries wrong
// tries, even for the right code), factors.ErrReplayed (already used).
//
// Input that cannot be a code (wrong length, not digits, after dropping
// spaces and dashes) is ErrWrongResponse without counting a try: it can
// never match, so it costs a guesser nothing either way, and a slip of
// the finger should not burn one of the person's tries.
func (e *Engine) Check(ctx context.Context, user string, p factors.Purpose, ref, code string) ([]byte, error) {
	if err := e.checkUserPurpose(user, p); err != nil {
		return nil, err
	}
	code = NormalizeCode(code)
	wellFormed := len(code) == e.opt.Length && isDigits(code)
	var want []byte
	if wellFormed {
		want = e.opt.Secrets.Hash(e.hashContext(user, p), code)
	}
	key := e.codeKey(user, p)
	for range maxCASAttempts {
		item, rec, err := e.loadCode(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%s: no code pending: %w", e.opt.Name, factors.ErrNoChallenge)
		}
		if err != nil {
			return nil, err
		}
		if rec.Ref != ref {
			// A code for something else (another enrolment, a removed
			// credential): nothing waits for this answer.
			return nil, fmt.Errorf("%s: no code pending for this: %w", e.opt.Name, factors.ErrNoChallenge)
		}
		now := e.opt.Now()
		match := wellFormed && factors.Equal(rec.Hash, want)
		switch {
		case rec.Used:
			if match {
				return nil, fmt.Errorf("%s: code already used: %w", e.opt.Name, factors.ErrReplayed)
			}
			// Another code against a used record: there is simply no code
			// waiting to be entered.
			return nil, fmt.Errorf("%s: no code pending: %w", e.opt.Name, factors.ErrNoChallenge)
		case !now.Before(rec.ExpiresAt):
			return nil, fmt.Errorf("%s: code expired, request a new one: %w", e.opt.Name, factors.ErrExpired)
		case rec.Tries >= e.opt.MaxTries:
			return nil, fmt.Errorf("%s: %w", e.opt.Name, factors.ErrTooManyTries)
		case !wellFormed:
			return nil, fmt.Errorf("%s: not a code: %w", e.opt.Name, factors.ErrWrongResponse)
		}
		keep := rec.Keep
		if match {
			rec.Used = true
			rec.Keep = nil // its work is done: nothing sealed lingers
		} else {
			rec.Tries++
		}
		err = e.rewriteCode(ctx, key, item.Version, rec, now)
		if errors.Is(err, store.ErrConflict) {
			// Someone else used the code, counted a try or sent a new code
			// since we read: decide again on fresh data.
			continue
		}
		if err != nil {
			return nil, err
		}
		if !match {
			return nil, fmt.Errorf("%s: %w", e.opt.Name, factors.ErrWrongResponse)
		}
		return keep, nil
	}
	return nil, fmt.Errorf("%s: check: gave up after %d conflicting writes: %w", e.opt.Name, maxCASAttempts, store.ErrConflict)
}

// Cancel kills the code pending for (user, purpose), if any: it reads as
// used from then on and what it kept is dropped. An admin reset calls it
// so that no code sent before can still finish what it was sent for.
func (e *Engine) Cancel(ctx context.Context, user string, p factors.Purpose) error {
	if err := e.checkUserPurpose(user, p); err != nil {
		return err
	}
	key := e.codeKey(user, p)
	for range maxCASAttempts {
		item, rec, err := e.loadCode(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if rec.Used {
			return nil
		}
		rec.Used, rec.Keep = true, nil
		err = e.rewriteCode(ctx, key, item.Version, rec, e.opt.Now())
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return err
	}
	return fmt.Errorf("%s: cancel: gave up after %d conflicting writes: %w", e.opt.Name, maxCASAttempts, store.ErrConflict)
}

// Pending reports the code waiting for (user, purpose): ok is false when
// there is none that can still be entered (none sent, used, expired or out
// of tries); the page then offers to send one. Sent.To is the masked
// address.
func (e *Engine) Pending(ctx context.Context, user string, p factors.Purpose) (factors.Sent, bool, error) {
	sent, _, ok, err := e.PendingRef(ctx, user, p)
	return sent, ok, err
}

// PendingRef is Pending that also says which Ref the code was sent for.
func (e *Engine) PendingRef(ctx context.Context, user string, p factors.Purpose) (factors.Sent, string, bool, error) {
	if err := e.checkUserPurpose(user, p); err != nil {
		return factors.Sent{}, "", false, err
	}
	_, rec, err := e.loadCode(ctx, e.codeKey(user, p))
	if errors.Is(err, store.ErrNotFound) {
		return factors.Sent{}, "", false, nil
	}
	if err != nil {
		return factors.Sent{}, "", false, err
	}
	now := e.opt.Now()
	if rec.Used || !now.Before(rec.ExpiresAt) || rec.Tries >= e.opt.MaxTries {
		return factors.Sent{}, "", false, nil
	}
	_, sends, err := e.loadSends(ctx, user)
	if err != nil {
		return factors.Sent{}, "", false, err
	}
	return factors.Sent{
		To:        rec.Masked,
		ResendAt:  e.resendAt(sends.prune(now), p, now),
		ExpiresAt: rec.ExpiresAt,
		TriesLeft: e.opt.MaxTries - rec.Tries,
	}, rec.Ref, true, nil
}

// reserve records a send for (user, p) at now unless the cooldown or the
// cap refuses it, and returns the reservation's id and the updated log.
func (e *Engine) reserve(ctx context.Context, user string, p factors.Purpose, now time.Time) (string, sendLog, error) {
	id, err := randomID()
	if err != nil {
		return "", sendLog{}, fmt.Errorf("%s: %w", e.opt.Name, err)
	}
	key := e.sendsKey(user)
	for range maxCASAttempts {
		item, sends, err := e.loadSends(ctx, user)
		if err != nil {
			return "", sendLog{}, err
		}
		sends = sends.prune(now)
		if err := e.refusal(sends, p, now); err != nil {
			return "", sendLog{}, err
		}
		sends.Sends = append(sends.Sends, sendEntry{ID: id, At: now, Purpose: p})
		err = e.writeSends(ctx, key, item.Version, sends)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return "", sendLog{}, err
		}
		return id, sends, nil
	}
	return "", sendLog{}, fmt.Errorf("%s: send: gave up after %d conflicting writes: %w", e.opt.Name, maxCASAttempts, store.ErrConflict)
}

// unreserve removes the reservation id. It runs on its own short deadline,
// detached from ctx: a caller that gave up (and so cancelled ctx) must not
// leave the user waiting out a cooldown for a code that never left.
func (e *Engine) unreserve(ctx context.Context, user, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	key := e.sendsKey(user)
	for range maxCASAttempts {
		item, sends, err := e.loadSends(ctx, user)
		if err != nil {
			return fmt.Errorf("%s: undo send reservation: %w", e.opt.Name, err)
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
		err = e.writeSends(ctx, key, item.Version, sends)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: undo send reservation: %w", e.opt.Name, err)
		}
		return nil
	}
	return fmt.Errorf("%s: undo send reservation: gave up after %d conflicting writes: %w", e.opt.Name, maxCASAttempts, store.ErrConflict)
}

// waits returns when the hourly cap and the cooldown for p stop refusing a
// send (each zero or not after now when it does not refuse).
func (e *Engine) waits(sends sendLog, p factors.Purpose, now time.Time) (capUntil, coolUntil time.Time) {
	if len(sends.Sends) >= e.opt.HourlyCap {
		// The sends are in time order; the cap frees when enough of the
		// oldest have left the window. A clock that went backwards must not
		// lock anyone out for longer than the window itself.
		oldest := sends.Sends[len(sends.Sends)-e.opt.HourlyCap].At
		capUntil = minTime(oldest.Add(capWindow), now.Add(capWindow))
	}
	if last, ok := sends.last(p); ok {
		coolUntil = minTime(last.Add(e.opt.Cooldown), now.Add(e.opt.Cooldown))
	}
	return capUntil, coolUntil
}

// refusal says why a send for p at now is refused, or nil. When both the
// cap and the cooldown refuse, the one that ends later is reported: that is
// the wait the user really faces.
func (e *Engine) refusal(sends sendLog, p factors.Purpose, now time.Time) error {
	capUntil, coolUntil := e.waits(sends, p, now)
	switch {
	case capUntil.After(now) && !coolUntil.After(capUntil):
		return &factors.CapError{Until: capUntil}
	case coolUntil.After(now):
		return &factors.CooldownError{Until: coolUntil}
	}
	return nil
}

// resendAt is when a send for p will next be accepted, given the log.
func (e *Engine) resendAt(sends sendLog, p factors.Purpose, now time.Time) time.Time {
	capUntil, coolUntil := e.waits(sends, p, now)
	t := now
	if capUntil.After(t) {
		t = capUntil
	}
	if coolUntil.After(t) {
		t = coolUntil
	}
	return t
}

func (e *Engine) loadCode(ctx context.Context, key string) (store.Item, codeRecord, error) {
	item, err := e.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return store.Item{}, codeRecord{}, err
		}
		return store.Item{}, codeRecord{}, fmt.Errorf("%s: read code: %w", e.opt.Name, err)
	}
	rec, err := decodeCode(item.Value)
	if err != nil {
		return store.Item{}, codeRecord{}, fmt.Errorf("%s: %w", e.opt.Name, err)
	}
	return item, rec, nil
}

// rewriteCode stores rec over version prev, keeping the record alive until
// expiredGrace past the code's expiry (every write sets the TTL anew).
func (e *Engine) rewriteCode(ctx context.Context, key string, prev uint64, rec codeRecord, now time.Time) error {
	val, err := rec.encode()
	if err != nil {
		return fmt.Errorf("%s: %w", e.opt.Name, err)
	}
	ttl := max(rec.ExpiresAt.Add(expiredGrace).Sub(now), time.Second)
	_, err = e.kv.CompareAndSet(ctx, key, val, prev, store.WriteOptions{TTL: ttl, Durable: true})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%s: write code: %w", e.opt.Name, err)
	}
	return err
}

func (e *Engine) loadSends(ctx context.Context, user string) (store.Item, sendLog, error) {
	item, err := e.kv.Get(ctx, e.sendsKey(user))
	if errors.Is(err, store.ErrNotFound) {
		return store.Item{}, sendLog{}, nil // Version 0: "create if absent"
	}
	if err != nil {
		return store.Item{}, sendLog{}, fmt.Errorf("%s: read send log: %w", e.opt.Name, err)
	}
	sends, err := decodeSends(item.Value)
	if err != nil {
		return store.Item{}, sendLog{}, fmt.Errorf("%s: %w", e.opt.Name, err)
	}
	return item, sends, nil
}

func (e *Engine) writeSends(ctx context.Context, key string, prev uint64, sends sendLog) error {
	val, err := sends.encode()
	if err != nil {
		return fmt.Errorf("%s: %w", e.opt.Name, err)
	}
	// The log only matters for an hour after its newest entry; a few extra
	// minutes cover clocks that disagree a little.
	_, err = e.kv.CompareAndSet(ctx, key, val, prev, store.WriteOptions{TTL: capWindow + 5*time.Minute, Durable: true})
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%s: write send log: %w", e.opt.Name, err)
	}
	return err
}

func (e *Engine) checkUserPurpose(user string, p factors.Purpose) error {
	if user == "" {
		return fmt.Errorf("%s: no user", e.opt.Name)
	}
	if !ValidPurpose(p) {
		return fmt.Errorf("%s: unknown purpose %q", e.opt.Name, p)
	}
	return nil
}

// ValidPurpose reports whether p is one of the purposes of package factors.
func ValidPurpose(p factors.Purpose) bool {
	switch p {
	case factors.PurposeSignIn, factors.PurposeVerifyAddress, factors.PurposeEnroll, factors.PurposeUnlock, factors.PurposeAccountRecovery,
		factors.PurposeResetPassword, factors.PurposeChangeAddress:
		return true
	}
	return false
}

// newCode returns n digits from crypto/rand, each uniform: bytes of 250 and
// above are rejected so that byte%10 has no bias.
func newCode(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+8)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("random: %w", err)
		}
		for _, b := range buf {
			if b < 250 && len(out) < n {
				out = append(out, '0'+b%10)
			}
		}
	}
	return string(out), nil
}

// NewID returns a random identifier (96 bits, hex): reservations,
// enrolments, credentials.
func NewID() (string, error) { return randomID() }

func randomID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// NormalizeCode drops the spaces and dashes people type or paste along
// with a code ("123 456", "123-456").
func NormalizeCode(s string) string {
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

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Interface guards: the store contract satisfies what the engine asks of
// it.
var (
	_ KV       = store.KV(nil)
	_ Delivery = DeliveryFunc(nil)
)
