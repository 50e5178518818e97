package emailcode_test

import (
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/emailcode"
)

// The email factor on the shared contract: the same codes, cooldowns and
// caps as the older methods, with the shared refusals.
func TestContractSignIn(t *testing.T) {
	e := newOutboxEnv(t, emailcode.Options{})
	f := e.f
	alice := factors.Subject{Username: "alice", Email: "alice@example.com", Lang: "en"}
	if f.Kind() != factors.KindEmail || f.Strength(true) != factors.StrengthCode || f.Shape() != factors.ShapeCode {
		t.Fatalf("kind %q strength %v shape %q", f.Kind(), f.Strength(true), f.Shape())
	}

	// No confirmed address: not usable, nothing sent, nothing proved.
	noMail := factors.Subject{Username: "bob"}
	if _, ok, err := f.Usable(ctx, noMail); ok || err != nil {
		t.Errorf("usable without an address: %v %v", ok, err)
	}
	if _, err := f.Begin(ctx, noMail); !errors.Is(err, factors.ErrNotEnrolled) {
		t.Errorf("begin without an address: %v", err)
	}
	if _, err := f.Prove(ctx, noMail, factors.Response{Code: "123456"}); !errors.Is(err, factors.ErrWrongResponse) {
		t.Errorf("prove without an address: %v", err)
	}
	if list, _ := e.outbox.List(); len(list) != 0 {
		t.Fatalf("%d mails sent for a person without an address", len(list))
	}

	offer, ok, err := f.Usable(ctx, alice)
	if !ok || err != nil || offer.Detail != "a***e@e*****e.com" {
		t.Fatalf("usable: %+v %v %v", offer, ok, err)
	}
	if _, err := f.Prove(ctx, alice, factors.Response{Code: "123456"}); !errors.Is(err, factors.ErrNoChallenge) {
		t.Errorf("prove before begin: %v, want ErrNoChallenge", err)
	}
	ch, err := f.Begin(ctx, alice)
	if err != nil || ch.Sent == nil || ch.Sent.To != offer.Detail ||
		!ch.Sent.ExpiresAt.Equal(e.clock.Now().Add(10*time.Minute)) || !ch.Sent.ResendAt.Equal(e.clock.Now().Add(time.Minute)) {
		t.Fatalf("begin: %+v %v", ch, err)
	}
	code := e.latestCode(t, alice.Email)
	p, ok, err := f.Pending(ctx, alice)
	if !ok || err != nil || p.TriesLeft != 5 || p.To != offer.Detail {
		t.Errorf("pending: %+v %v %v", p, ok, err)
	}

	// A second Begin within the cooldown: the shared refusal, both types.
	_, err = f.Begin(ctx, alice)
	var ce *factors.CooldownError
	if !errors.As(err, &ce) || !ce.Until.Equal(e.clock.Now().Add(time.Minute)) || !errors.Is(err, emailcode.ErrCooldown) {
		t.Errorf("begin again: %v, want a cooldown", err)
	}
	// The older Send says the same with its own type.
	_, err = e.f.Send(ctx, "alice", alice.Email, "en", emailcode.PurposeSignIn)
	var old *emailcode.CooldownError
	if !errors.As(err, &old) || old.Remaining != time.Minute || !errors.As(err, &ce) || !errors.Is(err, factors.ErrCooldown) {
		t.Errorf("Send again: %v", err)
	}

	if _, err := f.Prove(ctx, alice, factors.Response{Code: wrong(code)}); !errors.Is(err, factors.ErrWrongResponse) {
		t.Errorf("wrong code: %v", err)
	}
	proof, err := f.Prove(ctx, alice, factors.Response{Code: code})
	if err != nil || proof.Kind != "email" || proof.Ref != "email" || proof.Remaining != -1 || proof.Notify {
		t.Fatalf("prove: %+v %v", proof, err)
	}
	if _, err := f.Prove(ctx, alice, factors.Response{Code: code}); !errors.Is(err, factors.ErrReplayed) {
		t.Errorf("reuse: %v, want ErrReplayed", err)
	}
	// The older Verify sees the same record.
	if ok, err := e.f.Verify(ctx, "alice", emailcode.PurposeSignIn, code); ok || !errors.Is(err, factors.ErrReplayed) {
		t.Errorf("Verify after Prove: %v %v", ok, err)
	}
}

func TestContractAddressCodes(t *testing.T) {
	e := newOutboxEnv(t, emailcode.Options{})
	f := e.f
	alice := factors.Subject{Username: "alice", Email: "alice@example.com", Lang: "ru"}

	// A sign-in code never goes to an address the caller names.
	if _, err := f.SendFor(ctx, alice, factors.PurposeSignIn, "mallory@example.com"); !errors.Is(err, factors.ErrNotSupported) {
		t.Errorf("sign-in code to a given address: %v", err)
	}
	if _, err := f.SendFor(ctx, alice, factors.PurposeVerifyAddress, "Mallory <m@example.com>"); !errors.Is(err, factors.ErrBadAddress) {
		t.Errorf("bad address: %v, want ErrBadAddress", err)
	}
	if list, _ := e.outbox.List(); len(list) != 0 {
		t.Fatalf("%d mails after refusals", len(list))
	}

	// Confirming a new address: the code goes there, not to the old one.
	sent, err := f.SendFor(ctx, alice, factors.PurposeVerifyAddress, "alice.new@example.com")
	if err != nil || sent.To != emailcode.Mask("alice.new@example.com") {
		t.Fatalf("send for verify: %+v %v", sent, err)
	}
	code := e.latestCode(t, "alice.new@example.com")
	if _, ok, err := f.PendingFor(ctx, alice, factors.PurposeVerifyAddress); !ok || err != nil {
		t.Errorf("pending for verify: %v %v", ok, err)
	}
	// It proves only its purpose.
	if _, err := f.Prove(ctx, alice, factors.Response{Code: code}); !errors.Is(err, factors.ErrNoChallenge) {
		t.Errorf("a verify code as a sign-in: %v", err)
	}
	if err := f.ProveFor(ctx, alice, factors.PurposeUnlock, code); !errors.Is(err, factors.ErrNoChallenge) {
		t.Errorf("a verify code as unlock: %v", err)
	}
	if err := f.ProveFor(ctx, alice, factors.PurposeVerifyAddress, code); err != nil {
		t.Errorf("verify code: %v", err)
	}
	if err := f.ProveFor(ctx, alice, factors.PurposeVerifyAddress, code); !errors.Is(err, factors.ErrReplayed) {
		t.Errorf("verify code again: %v", err)
	}

	// An empty address means the confirmed one.
	if _, err := f.SendFor(ctx, alice, factors.PurposeUnlock, ""); err != nil {
		t.Fatal(err)
	}
	code = e.latestCode(t, alice.Email)
	if err := f.ProveFor(ctx, alice, factors.PurposeUnlock, code); err != nil {
		t.Errorf("unlock code: %v", err)
	}
	if err := f.ProveFor(ctx, alice, factors.PurposeSignIn, code); !errors.Is(err, factors.ErrNotSupported) {
		t.Errorf("ProveFor sign-in: %v", err)
	}
}
