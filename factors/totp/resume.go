package totp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
)

// ShowEnroll shows the pending enrolment enrollID of user again — the
// same secret, key URI and QR code — from the sealed copy kept to confirm
// it. A person who mistyped the confirming code keeps the app they already
// scanned; nothing comes from the browser. An unknown, finished or expired
// enrolment is factors.ErrExpired.
func (f *Factor) ShowEnroll(ctx context.Context, user, accountName, enrollID string) (Enrollment, error) {
	if err := checkUser(user); err != nil {
		return Enrollment{}, err
	}
	if enrollID == "" {
		return Enrollment{}, fmt.Errorf("totp: enrolment: %w", factors.ErrExpired)
	}
	it, err := f.kv.Get(ctx, pendingKey(user, enrollID))
	if errors.Is(err, store.ErrNotFound) {
		return Enrollment{}, fmt.Errorf("totp: enrolment: %w", factors.ErrExpired)
	}
	if err != nil {
		return Enrollment{}, fmt.Errorf("totp: load enrolment: %w", err)
	}
	var pend pendingRecord
	if err := json.Unmarshal(it.Value, &pend); err != nil {
		return Enrollment{}, fmt.Errorf("totp: decode enrolment: %w", err)
	}
	if !f.now().Before(pend.ExpiresAt) {
		return Enrollment{}, fmt.Errorf("totp: enrolment: %w", factors.ErrExpired)
	}
	p, err := pend.params()
	if err != nil {
		return Enrollment{}, err
	}
	secret, err := f.secrets.Open(pend.Sealed, aad(user, enrollID))
	if err != nil {
		return Enrollment{}, fmt.Errorf("totp: open enrolment secret: %w", err)
	}
	defer clear(secret)
	if accountName == "" {
		accountName = user
	}
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: f.issuer, AccountName: accountName, Period: p.period, Secret: secret,
		Digits: otp.Digits(p.digits), Algorithm: p.alg,
	})
	if err != nil {
		return Enrollment{}, fmt.Errorf("totp: make key: %w", err)
	}
	qr, err := qrPNG(key.URL(), 256)
	if err != nil {
		return Enrollment{}, fmt.Errorf("totp: QR code: %w", err)
	}
	return Enrollment{ID: enrollID, Secret: key.Secret(), URL: key.URL(), QRPNG: qr, ExpiresAt: pend.ExpiresAt}, nil
}

// ResumeEnroll is ShowEnroll for the factor contract (factors.EnrollResumer).
func (f *Factor) ResumeEnroll(ctx context.Context, s factors.Subject, id string) (factors.Enrollment, error) {
	e, err := f.ShowEnroll(ctx, s.Username, accountOf(s), id)
	if err != nil {
		return factors.Enrollment{}, err
	}
	return factors.Enrollment{ID: e.ID, Secret: e.Secret, URI: e.URL, QRPNG: e.QRPNG, ExpiresAt: e.ExpiresAt}, nil
}
