// Package sms is the one-time-code-by-SMS second factor: a code sent to a
// phone number the person confirmed with a first code.
//
// Everything about the code itself — uniform digits, keyed hashes at
// rest, single use, tries per code, expiry, resend cooldown, hourly cap,
// nothing recorded when the gateway fails — is the engine's, package
// factors/sentcode, shared with the email factor. What is here:
//   - the number: E.164 only (ParsePhone), confirmed by a code before it is
//     stored (Enroll, ConfirmEnroll), one per account (replacing it would
//     let a weak proof swap the factor: remove it, then enrol another);
//   - the number at rest: sealed with factors.Secrets, bound to its user
//     and credential, so neither a copy of the database nor a record moved
//     to another account reveals or reuses it; pages see it masked;
//   - the texts (en, ru), each short enough for one SMS.
//
// Delivery is a Sender; package factors/sms/gateway has Kannel's sendsms
// interface and a generic HTTP one. The factor imports no net/http.
package sms

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sentcode"
)

// Kind is the factor's name in policies, sessions and routes.
const Kind = factors.KindSMS

// Message is one SMS: the full number (E.164) and the text.
type Message struct {
	To   string
	Text string
}

// Sender delivers a Message. An error means it was not accepted for
// delivery; it must name neither the number in full nor the text (the
// factor's callers log errors).
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// KV is the part of store.KV the factor uses: the engine's reads and
// writes, and removing a credential only if it is still the one read.
type KV interface {
	sentcode.KV
	CompareAndDelete(ctx context.Context, key string, prev uint64) error
}

// ErrHasNumber refuses an enrolment while the account has a number: remove
// it first (which asks for a proof as strong as the number) to change it.
var ErrHasNumber = fmt.Errorf("sms: the account already has a phone number; remove it to use another: %w", factors.ErrNotSupported)

// Options tune the factor.
type Options struct {
	// Limits: zero values take the engine's defaults (6 digits, 10
	// minutes, 5 tries, 60 s cooldown, 5 codes an hour).
	sentcode.Limits
	// Product names the service in the text: "keygate" by default. With
	// the longest code, every text must fit one SMS.
	Product string
	// Now is the clock (time.Now by default); tests inject their own.
	Now func() time.Time
}

const (
	defaultProduct = "keygate"
	// defaultName names a number enrolled without a name.
	defaultName = "Phone"
)

// Factor sends and checks SMS codes and keeps each user's number. It is
// safe for concurrent use.
type Factor struct {
	kv      KV
	secrets *factors.Secrets
	sender  Sender
	eng     *sentcode.Engine
	product string
	now     func() time.Time
}

// New checks the options and builds the factor. secrets seals numbers and
// hashes codes (keygate derives it from the storage key, purpose "sms").
func New(kv KV, secrets *factors.Secrets, sender Sender, opt Options) (*Factor, error) {
	if kv == nil || secrets == nil || sender == nil {
		return nil, errors.New("sms: a store, secrets and a sender are required")
	}
	if opt.Product == "" {
		opt.Product = defaultProduct
	}
	if strings.ContainsFunc(opt.Product, factors.UnsafeRune) {
		return nil, errors.New("sms: product name has control characters")
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	f := &Factor{kv: kv, secrets: secrets, sender: sender, product: opt.Product, now: opt.Now}
	eng, err := sentcode.New(kv, sentcode.DeliveryFunc(f.deliver), sentcode.Options{
		Name: "sms", Mask: Mask, Secrets: secrets, Limits: opt.Limits, Now: opt.Now,
	})
	if err != nil {
		return nil, err
	}
	f.eng = eng
	// Every text, in every language, with the longest code the options
	// allow, must fit one SMS.
	o := eng.Options()
	code := strings.Repeat("8", o.Length)
	for _, lang := range languages {
		for _, p := range []factors.Purpose{factors.PurposeSignIn, factors.PurposeVerifyAddress} {
			t := text(lang, opt.Product, code, int(o.TTL/time.Minute), p)
			if ok, limit := fitsOneSMS(t); !ok {
				return nil, fmt.Errorf("sms: with product name %q the %s text is %d characters, over the %d of one SMS: choose a shorter name", opt.Product, lang, len([]rune(t)), limit)
			}
		}
		t, _ := noticeText(lang, opt.Product, factors.NoticeRecoveryRequested)
		if ok, limit := fitsOneSMS(t); !ok {
			return nil, fmt.Errorf("sms: with product name %q the %s notice is %d characters, over the %d of one SMS: choose a shorter name", opt.Product, lang, len([]rune(t)), limit)
		}
	}
	return f, nil
}

// deliver writes the text for m and hands it to the sender.
func (f *Factor) deliver(ctx context.Context, m sentcode.Message) error {
	return f.sender.Send(ctx, Message{
		To:   m.To,
		Text: text(m.Lang, f.product, m.Code, int(m.TTL/time.Minute), m.Purpose),
	})
}

// Kind is "sms".
func (f *Factor) Kind() string { return Kind }

// Strength: whoever holds the phone, or takes over its number (a SIM swap,
// a hijacked SS7 route), has it — the lowest, with email.
func (f *Factor) Strength(bool) factors.Strength { return factors.StrengthCode }

// Shape: a code to type.
func (f *Factor) Shape() factors.Shape { return factors.ShapeCode }

// Usable when the person has a confirmed number; the chooser shows it
// masked.
func (f *Factor) Usable(ctx context.Context, s factors.Subject) (factors.Offer, bool, error) {
	rec, _, err := f.load(ctx, s.Username)
	if errors.Is(err, factors.ErrNotEnrolled) {
		return factors.Offer{}, false, nil
	}
	if err != nil {
		return factors.Offer{}, false, err
	}
	return factors.Offer{Detail: rec.Masked}, true, nil
}

// Begin texts a sign-in code to the confirmed number. Refusals:
// *factors.CooldownError, *factors.CapError, factors.ErrSendFailed
// (nothing marked sent), factors.ErrNotEnrolled.
func (f *Factor) Begin(ctx context.Context, s factors.Subject) (factors.Challenge, error) {
	rec, _, err := f.load(ctx, s.Username)
	if err != nil {
		return factors.Challenge{}, err
	}
	phone, err := f.openPhone(rec.Phone, credAAD(s.Username, rec.ID))
	if err != nil {
		return factors.Challenge{}, err
	}
	sent, err := f.eng.Send(ctx, sentcode.Send{
		User: s.Username, Purpose: factors.PurposeSignIn, To: phone, Lang: s.Lang,
		// Bound to this number: a code sent before it was removed never
		// proves a number enrolled after.
		Ref: rec.ID,
	})
	if err != nil {
		return factors.Challenge{}, err
	}
	return factors.Challenge{Sent: &sent}, nil
}

// Prove uses the sign-in code. Refusals: factors.ErrWrongResponse,
// ErrExpired, ErrReplayed, ErrTooManyTries, ErrNoChallenge; a person
// without a number is answered like a wrong code.
func (f *Factor) Prove(ctx context.Context, s factors.Subject, r factors.Response) (factors.Proof, error) {
	rec, _, err := f.load(ctx, s.Username)
	if errors.Is(err, factors.ErrNotEnrolled) {
		return factors.Proof{}, fmt.Errorf("%w: %w", factors.ErrWrongResponse, err)
	}
	if err != nil {
		return factors.Proof{}, err
	}
	if _, err := f.eng.Check(ctx, s.Username, factors.PurposeSignIn, rec.ID, r.Code); err != nil {
		return factors.Proof{}, err
	}
	f.touch(ctx, s.Username, rec.ID)
	return factors.Proof{Kind: Kind, Ref: rec.ID, Remaining: -1}, nil
}

// Pending reports the sign-in code waiting to be typed for the current
// number.
func (f *Factor) Pending(ctx context.Context, s factors.Subject) (factors.Sent, bool, error) {
	rec, _, err := f.load(ctx, s.Username)
	if errors.Is(err, factors.ErrNotEnrolled) {
		return factors.Sent{}, false, nil
	}
	if err != nil {
		return factors.Sent{}, false, err
	}
	sent, ref, ok, err := f.eng.PendingRef(ctx, s.Username, factors.PurposeSignIn)
	if err != nil || !ok || ref != rec.ID {
		return factors.Sent{}, false, err
	}
	return sent, true, nil
}

// touch records when the number last proved a sign-in. It is best effort:
// the proof stands even if the note is lost to a concurrent change.
func (f *Factor) touch(ctx context.Context, user, id string) {
	rec, item, err := f.load(ctx, user)
	if err != nil || rec.ID != id {
		return
	}
	rec.LastUsedAt = f.now()
	_ = f.write(ctx, user, item.Version, rec)
}

func (f *Factor) openPhone(sealed []byte, aad string) (string, error) {
	b, err := f.secrets.Open(sealed, []byte(aad))
	if err != nil {
		return "", fmt.Errorf("sms: stored number: %w", err)
	}
	return string(b), nil
}

// Interface guards.
var (
	_ factors.Factor   = (*Factor)(nil)
	_ factors.Enroller = (*Factor)(nil)
	_ factors.Manager  = (*Factor)(nil)
	_ factors.Resender = (*Factor)(nil)
	_ KV               = store.KV(nil)
)
