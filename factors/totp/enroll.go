package totp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// Enrollment is what the user needs to add the account to an app. It holds
// the secret in clear: show it once, never log or store it.
type Enrollment struct {
	// ID names the pending enrolment in FinishEnroll; it becomes the
	// credential's ID.
	ID string
	// Secret is the base32 secret, for typing it in by hand.
	Secret string
	// URL is the otpauth:// key URI the QR code carries.
	URL string
	// QRPNG is the QR code of URL, a 256×256 PNG made here, so the secret
	// never goes to a third-party QR service.
	QRPNG []byte
	// ExpiresAt is when the enrolment can no longer be finished.
	ExpiresAt time.Time
}

// defaultName is the name of a credential enrolled without one; a second
// one becomes "Authenticator app 2", and so on.
const defaultName = "Authenticator app"

// BeginEnroll makes a new secret for user and keeps it, sealed, as a pending
// enrolment for EnrollTTL. Nothing is active until FinishEnroll confirms a
// code, so a user who gives up half-way (or an attacker who only got this
// far) leaves no working credential behind. accountName is the label under
// the issuer in the app ("alice@example.com"); empty means user.
func (f *Factor) BeginEnroll(ctx context.Context, user, accountName string) (Enrollment, error) {
	if err := checkUser(user); err != nil {
		return Enrollment{}, err
	}
	if accountName == "" {
		accountName = user
	}
	if strings.Contains(accountName, ":") || strings.ContainsFunc(accountName, factors.UnsafeRune) ||
		!utf8.ValidString(accountName) || utf8.RuneCountInString(accountName) > maxAccountLen {
		return Enrollment{}, fmt.Errorf("totp: account name may not contain ':' or control characters, and has at most %d characters", maxAccountLen)
	}

	secret := randomBytes(int(f.secretSize))
	defer clear(secret)
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer:      f.issuer,
		AccountName: accountName,
		Period:      f.period,
		Secret:      secret,
		Digits:      otp.Digits(f.digits),
		Algorithm:   f.algorithm,
	})
	if err != nil {
		return Enrollment{}, fmt.Errorf("totp: make key: %w", err)
	}
	qr, err := qrPNG(key.URL(), 256)
	if err != nil {
		return Enrollment{}, fmt.Errorf("totp: QR code: %w", err)
	}

	id := newID()
	sealed, err := f.secrets.Seal(secret, aad(user, id))
	if err != nil {
		return Enrollment{}, fmt.Errorf("totp: seal secret: %w", err)
	}
	expires := f.now().Add(f.enrollTTL)
	b, err := json.Marshal(pendingRecord{
		V:         recordVersion,
		Algorithm: f.algorithm.String(),
		Digits:    f.digits,
		Period:    f.period,
		Sealed:    sealed,
		ExpiresAt: expires,
	})
	if err != nil {
		return Enrollment{}, fmt.Errorf("totp: encode enrolment: %w", err)
	}
	// Not durable: after a crash the user simply starts again. The TTL
	// cleans up enrolments nobody finishes; ExpiresAt is checked as well,
	// because the store may keep a key up to a second longer.
	if _, err := f.kv.CompareAndSet(ctx, pendingKey(user, id), b, 0, store.WriteOptions{TTL: f.enrollTTL}); err != nil {
		return Enrollment{}, fmt.Errorf("totp: save enrolment: %w", err)
	}
	return Enrollment{ID: id, Secret: key.Secret(), URL: key.URL(), QRPNG: qr, ExpiresAt: expires}, nil
}

// FinishEnroll activates the pending enrolment enrollID if code is right
// for its secret. A wrong code returns ErrInvalidCode and leaves the
// enrolment pending; an unknown, finished or expired one returns
// factors.ErrExpired. name must be unique among the user's apps
// (factors.ErrNameTaken, factors.ErrInvalidName; the enrolment stays
// pending); empty picks "Authenticator app" (or "… 2", "… 3" if taken).
//
// The enrolment is consumed atomically, so of concurrent calls only one
// creates a credential, and the confirming code's time step is recorded as
// used: the code typed to enrol cannot then be replayed to sign in.
func (f *Factor) FinishEnroll(ctx context.Context, user, enrollID, code, name string) (factors.Credential, error) {
	if err := checkUser(user); err != nil {
		return factors.Credential{}, err
	}
	if name != "" {
		var err error
		if name, err = cleanName(name); err != nil {
			return factors.Credential{}, err
		}
	}
	if enrollID == "" {
		return factors.Credential{}, fmt.Errorf("totp: enrolment: %w", factors.ErrExpired)
	}
	key := pendingKey(user, enrollID)
	it, err := f.kv.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return factors.Credential{}, fmt.Errorf("totp: enrolment: %w", factors.ErrExpired)
	}
	if err != nil {
		return factors.Credential{}, fmt.Errorf("totp: load enrolment: %w", err)
	}
	var pend pendingRecord
	if err := json.Unmarshal(it.Value, &pend); err != nil {
		return factors.Credential{}, fmt.Errorf("totp: decode enrolment: %w", err)
	}
	if pend.V != recordVersion {
		return factors.Credential{}, fmt.Errorf("totp: enrolment of unknown schema version %d", pend.V)
	}
	now := f.now()
	if !now.Before(pend.ExpiresAt) {
		return factors.Credential{}, fmt.Errorf("totp: enrolment: %w", factors.ErrExpired)
	}
	p, err := pend.params()
	if err != nil {
		return factors.Credential{}, err
	}
	secret, err := f.secrets.Open(pend.Sealed, aad(user, enrollID))
	if err != nil {
		return factors.Credential{}, fmt.Errorf("totp: open enrolment secret: %w", err)
	}
	m := check(secret, p, code, now, f.skew, 0)
	clear(secret)
	if !m.fresh {
		return factors.Credential{}, ErrInvalidCode
	}

	// Check the name before consuming, so that a taken name costs the user
	// a retry, not the whole enrolment.
	rec, _, err := f.load(ctx, user)
	if err != nil {
		return factors.Credential{}, err
	}
	if name != "" && rec.nameTaken(name, "") {
		return factors.Credential{}, fmt.Errorf("totp: %q: %w", name, factors.ErrNameTaken)
	}
	if _, err := f.kv.Consume(ctx, key); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// Someone finished it between our read and now.
			return factors.Credential{}, fmt.Errorf("totp: enrolment: %w", factors.ErrExpired)
		}
		return factors.Credential{}, fmt.Errorf("totp: consume enrolment: %w", err)
	}

	// From here the enrolment is gone: finish the write even if the caller
	// gives up, or the user would be left with an app that works nowhere.
	ctx = context.WithoutCancel(ctx)
	cred := credRecord{
		ID:        enrollID,
		Algorithm: pend.Algorithm,
		Digits:    pend.Digits,
		Period:    pend.Period,
		Sealed:    pend.Sealed,
		LastStep:  m.step,
		CreatedAt: now,
	}
	err = f.update(ctx, user, func(rec *userRecord) error {
		// A concurrent enrolment may have taken the name since the check
		// above; the user then enrols again under another name.
		cred.Name = name
		if name == "" {
			cred.Name = rec.freeDefaultName()
		} else if rec.nameTaken(name, "") {
			return fmt.Errorf("totp: %q: %w", name, factors.ErrNameTaken)
		}
		rec.Creds = append(rec.Creds, cred)
		return nil
	})
	if err != nil {
		return factors.Credential{}, err
	}
	return cred.public(), nil
}

// freeDefaultName is the first of "Authenticator app", "Authenticator app
// 2", … not yet used by the user.
func (r *userRecord) freeDefaultName() string {
	name := defaultName
	for n := 2; r.nameTaken(name, ""); n++ {
		name = fmt.Sprintf("%s %d", defaultName, n)
	}
	return name
}
