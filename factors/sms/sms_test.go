package sms_test

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sentcode"
	"github.com/keygate/keygate/factors/sms"
)

var alice = factors.Subject{Username: "alice", Lang: "en"}

func TestContractBasics(t *testing.T) {
	e := newPhoneEnv(t, sms.Options{})
	f := e.f
	if f.Kind() != "sms" || f.Strength(true) != factors.StrengthCode || f.Strength(false) != factors.StrengthCode || f.Shape() != factors.ShapeCode {
		t.Fatalf("kind %q strength %v shape %q", f.Kind(), f.Strength(true), f.Shape())
	}
	// Without a number: not usable, nothing to begin, a code is refused
	// like a wrong one, nothing pending, an empty list.
	if _, ok, err := f.Usable(ctx, alice); ok || err != nil {
		t.Errorf("usable without a number: %v %v", ok, err)
	}
	if _, err := f.Begin(ctx, alice); !errors.Is(err, factors.ErrNotEnrolled) {
		t.Errorf("begin without a number: %v", err)
	}
	if _, err := f.Prove(ctx, alice, factors.Response{Code: "123456"}); !errors.Is(err, factors.ErrWrongResponse) {
		t.Errorf("prove without a number: %v", err)
	}
	if _, ok, err := f.Pending(ctx, alice); ok || err != nil {
		t.Errorf("pending without a number: %v %v", ok, err)
	}
	if list, err := f.List(ctx, "alice"); len(list) != 0 || err != nil || list == nil {
		t.Errorf("list without a number: %#v %v", list, err)
	}
	if e.phone.count() != 0 {
		t.Fatal("texts were sent")
	}

	cred := e.enroll(t, alice, number)
	if cred.Name != "Phone" || cred.Detail != "+44 •••• ••01 23" || !cred.CreatedAt.Equal(e.clock.Now()) {
		t.Errorf("credential %+v", cred)
	}
	offer, ok, err := f.Usable(ctx, alice)
	if !ok || err != nil || offer.Detail != "+44 •••• ••01 23" {
		t.Errorf("usable: %+v %v %v", offer, ok, err)
	}
	e.clock.Advance(time.Minute)
	ch, err := f.Begin(ctx, alice)
	if err != nil || ch.Sent == nil || !ch.Sent.ExpiresAt.Equal(e.clock.Now().Add(10*time.Minute)) ||
		!ch.Sent.ResendAt.Equal(e.clock.Now().Add(time.Minute)) || ch.Sent.TriesLeft != 5 {
		t.Fatalf("begin: %+v %v", ch, err)
	}
	c := code(t, e.phone.last(t).Text)
	p, ok, err := f.Pending(ctx, alice)
	if !ok || err != nil || p != *ch.Sent {
		t.Errorf("pending %+v %v %v, want %+v", p, ok, err, *ch.Sent)
	}
	// People paste codes with spaces; that is not a wrong try.
	if _, err := f.Prove(ctx, alice, factors.Response{Code: c[:3] + " " + c[3:]}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := f.Pending(ctx, alice); ok {
		t.Error("still pending after use")
	}
	// A code proves only its user.
	if _, err := f.Prove(ctx, factors.Subject{Username: "bob"}, factors.Response{Code: c}); !errors.Is(err, factors.ErrWrongResponse) {
		t.Errorf("another user: %v", err)
	}
}

func TestCodeExpires(t *testing.T) {
	e := newPhoneEnv(t, sms.Options{})
	e.enroll(t, alice, number)
	e.clock.Advance(time.Minute)
	if _, err := e.f.Begin(ctx, alice); err != nil {
		t.Fatal(err)
	}
	c := code(t, e.phone.last(t).Text)
	e.clock.Advance(10*time.Minute - time.Second)
	if _, ok, _ := e.f.Pending(ctx, alice); !ok {
		t.Error("not pending a second before expiry")
	}
	e.clock.Advance(time.Second)
	if _, err := e.f.Prove(ctx, alice, factors.Response{Code: c}); !errors.Is(err, factors.ErrExpired) {
		t.Errorf("expired code: %v, want ErrExpired", err)
	}
	if _, ok, _ := e.f.Pending(ctx, alice); ok {
		t.Error("an expired code is still pending")
	}
	// A new one works.
	if _, err := e.f.Begin(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if _, err := e.f.Prove(ctx, alice, factors.Response{Code: code(t, e.phone.last(t).Text)}); err != nil {
		t.Errorf("new code: %v", err)
	}
}

func TestWrongTriesKillTheCode(t *testing.T) {
	e := newPhoneEnv(t, sms.Options{Limits: sentcode.Limits{MaxTries: 3}})
	e.enroll(t, alice, number)
	e.clock.Advance(time.Minute)
	if _, err := e.f.Begin(ctx, alice); err != nil {
		t.Fatal(err)
	}
	c := code(t, e.phone.last(t).Text)
	for _, junk := range []string{"", "12345", "abcdef"} {
		if _, err := e.f.Prove(ctx, alice, factors.Response{Code: junk}); !errors.Is(err, factors.ErrWrongResponse) {
			t.Errorf("%q: %v", junk, err)
		}
	}
	for i := range 3 {
		if _, err := e.f.Prove(ctx, alice, factors.Response{Code: wrong(c)}); !errors.Is(err, factors.ErrWrongResponse) {
			t.Fatalf("wrong try %d: %v", i+1, err)
		}
	}
	if _, err := e.f.Prove(ctx, alice, factors.Response{Code: c}); !errors.Is(err, factors.ErrTooManyTries) {
		t.Errorf("right code after 3 wrong: %v, want ErrTooManyTries", err)
	}
}

func TestCooldown(t *testing.T) {
	e := newPhoneEnv(t, sms.Options{Limits: sentcode.Limits{Cooldown: 30 * time.Second}})
	e.enroll(t, alice, number)
	// The confirmation's cooldown is its own purpose's: a sign-in code
	// may follow at once.
	if _, err := e.f.Begin(ctx, alice); err != nil {
		t.Fatalf("sign-in right after enrolment: %v", err)
	}
	old := code(t, e.phone.last(t).Text)
	sent := e.phone.count()
	e.clock.Advance(29 * time.Second)
	_, err := e.f.Begin(ctx, alice)
	var ce *factors.CooldownError
	if !errors.As(err, &ce) || !ce.Until.Equal(e.clock.Now().Add(time.Second)) {
		t.Fatalf("resend within the cooldown: %v", err)
	}
	if e.phone.count() != sent {
		t.Error("a refused resend sent a text")
	}
	e.clock.Advance(time.Second)
	if _, err := e.f.Begin(ctx, alice); err != nil {
		t.Fatalf("resend after the cooldown: %v", err)
	}
	fresh := code(t, e.phone.last(t).Text)
	if fresh == old {
		t.Skip("the new code equals the old one (one chance in a million)")
	}
	if _, err := e.f.Prove(ctx, alice, factors.Response{Code: old}); !errors.Is(err, factors.ErrWrongResponse) {
		t.Errorf("replaced code: %v", err)
	}
	if _, err := e.f.Prove(ctx, alice, factors.Response{Code: fresh}); err != nil {
		t.Errorf("new code: %v", err)
	}
}

func TestHourlyCap(t *testing.T) {
	e := newPhoneEnv(t, sms.Options{Limits: sentcode.Limits{HourlyCap: 3}})
	t0 := e.clock.Now()
	e.enroll(t, alice, number) // the confirmation counts too
	for i := range 2 {
		e.clock.Advance(time.Minute)
		if _, err := e.f.Begin(ctx, alice); err != nil {
			t.Fatalf("send %d: %v", i+2, err)
		}
	}
	e.clock.Advance(time.Minute)
	sent := e.phone.count()
	_, err := e.f.Begin(ctx, alice)
	var ke *factors.CapError
	if !errors.As(err, &ke) || !ke.Until.Equal(t0.Add(time.Hour)) {
		t.Fatalf("fourth send: %v, want the cap until %v", err, t0.Add(time.Hour))
	}
	// Other users are not affected; nothing was texted for the refusal.
	bob := factors.Subject{Username: "bob"}
	if _, err := e.f.Enroll(ctx, bob, factors.EnrollRequest{Address: "+4915123456789"}); err != nil {
		t.Errorf("another user: %v", err)
	}
	if e.phone.count() != sent+1 {
		t.Errorf("%d texts, want %d", e.phone.count(), sent+1)
	}
	e.clock.Advance(t0.Add(time.Hour).Sub(e.clock.Now()))
	if _, err := e.f.Begin(ctx, alice); err != nil {
		t.Errorf("after the hour: %v", err)
	}
}

// A number must be E.164; anything else is refused with ErrBadAddress, a
// message that says what is wrong without repeating it, and nothing is
// stored or sent.
func TestWrongPhoneFormatsRefused(t *testing.T) {
	e := newPhoneEnv(t, sms.Options{})
	for _, tc := range []struct{ in, why string }{
		{"", "must start with +"},
		{"447700900123", "must start with +"},
		{"07700 900123", "must start with +"},
		{"00447700900123", "must start with +"},
		{"+", "8 to 15 digits"},
		{"+1234567", "8 to 15 digits"},
		{"+1234567890123456", "8 to 15 digits"},
		{"+0447700900123", "never starts with 0"},
		{"+44-7700-900123", "only digits"},
		{"+44 (0) 7700 900123", "only digits"},
		{"+44.7700.900123", "only digits"},
		{"+447700900123x", "only digits"},
		{"+44  7700900123", "only digits"},
		{"+ 447700900123", "only digits"},
		{"+44770090012３", "only digits"}, // a full-width digit
		{"+٤٤٧٧٠٠٩٠٠١٢٣", "only digits"}, // Arabic-Indic digits
		{"+447700900123\x00", "only digits"},
		{"+447700900123,+447700900124", "only digits"},
		{"tel:+447700900123", "must start with +"},
	} {
		_, err := e.f.Enroll(ctx, alice, factors.EnrollRequest{Address: tc.in})
		if !errors.Is(err, factors.ErrBadAddress) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%q: %v, want ErrBadAddress saying %q", tc.in, err, tc.why)
		}
		if err != nil && len(tc.in) > 8 && strings.Contains(err.Error(), strings.TrimSpace(tc.in)) {
			t.Errorf("%q: the error repeats the input: %v", tc.in, err)
		}
	}
	if e.phone.count() != 0 {
		t.Errorf("%d texts sent to bad numbers", e.phone.count())
	}
	n := 0
	_ = e.kv.Scan(ctx, "", func(it store.Item) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d records stored after refusals", n)
	}
	// The accepted forms are canonical.
	for in, want := range map[string]string{
		"+447700900123": "+447700900123", " +44 7700 900123 ": "+447700900123",
		"+12025550123": "+12025550123", "+49 1512 3456789": "+4915123456789",
		"+12345678": "+12345678", "+123456789012345": "+123456789012345", "+447700900123\n": "+447700900123",
	} {
		if got, err := sms.ParsePhone(in); got != want || err != nil {
			t.Errorf("ParsePhone(%q) = %q %v, want %q", in, got, err, want)
		}
	}
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{
		"+447700901234":    "+44 •••• ••12 34",
		"+447700900123":    "+44 •••• ••01 23",
		"+12025550123":     "+12 •••• •01 23",
		"+12345678":        "+12 ••56 78",
		"+123456789012345": "+12 •••• •••• •23 45",
		"+4915123456789":   "+49 •••• •••6 789",
		"+79161234567":     "+79 •••• •45 67",
		"":                 "•••",
		"447700901234":     "•••",
	} {
		if got := sms.Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

// The number is sealed at rest, bound to its row: the raw values never
// hold it, and a record copied onto another account does not open.
func TestNumberStoredSealed(t *testing.T) {
	e := newPhoneEnv(t, sms.Options{Limits: sentcode.Limits{Length: 10}}) // long codes: no chance match in timestamps
	e.enroll(t, alice, number)
	e.clock.Advance(time.Minute)
	if _, err := e.f.Begin(ctx, alice); err != nil {
		t.Fatal(err)
	}
	c := code(t, e.phone.last(t).Text)
	var credValue []byte
	records := 0
	err := e.kv.Scan(ctx, "", func(it store.Item) error {
		records++
		for _, secret := range []string{number, number[1:], "7700900123", c} {
			if bytes.Contains(it.Value, []byte(secret)) || strings.Contains(it.Key, secret) {
				t.Errorf("record %q holds %q: %s", it.Key, secret, it.Value)
			}
		}
		if it.Key == "sms/cred/alice" {
			credValue = it.Value
		}
		return nil
	})
	if err != nil || records < 3 || credValue == nil {
		t.Fatalf("scan: %d records, cred %v, %v", records, credValue != nil, err)
	}
	if !bytes.Contains(credValue, []byte("+44 •••• ••01 23")) {
		t.Errorf("the masked number is not kept for lists: %s", credValue)
	}
	// Moved to another account, the sealed number does not open.
	if _, err := e.kv.Set(ctx, "sms/cred/mallory", credValue, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	mallory := factors.Subject{Username: "mallory"}
	if _, err := e.f.Begin(ctx, mallory); !errors.Is(err, factors.ErrSealed) {
		t.Errorf("a copied record: %v, want ErrSealed", err)
	}
	// Under another key, neither.
	other, err := factors.NewSecrets(bytes.Repeat([]byte{8}, 32), "sms")
	if err != nil {
		t.Fatal(err)
	}
	f2, err := sms.New(e.kv, other, e.phone.gateway(t), sms.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	if _, err := f2.Begin(ctx, alice); !errors.Is(err, factors.ErrSealed) {
		t.Errorf("another key: %v, want ErrSealed", err)
	}
}

// One number per account, confirmed by the code that went to it.
func TestEnrolmentRules(t *testing.T) {
	e := newPhoneEnv(t, sms.Options{})
	// Two enrolments: a code that reached the first number never confirms
	// the second (nor the other way round).
	a, err := e.f.Enroll(ctx, alice, factors.EnrollRequest{Address: number})
	if err != nil {
		t.Fatal(err)
	}
	codeA := code(t, e.phone.last(t).Text)
	e.clock.Advance(time.Minute)
	b, err := e.f.Enroll(ctx, alice, factors.EnrollRequest{Address: "+4915123456789"})
	if err != nil {
		t.Fatal(err)
	}
	codeB := code(t, e.phone.last(t).Text)
	if _, err := e.f.ConfirmEnroll(ctx, alice, a.ID, factors.Response{Code: codeB}, ""); !errors.Is(err, factors.ErrNoChallenge) {
		t.Errorf("B's code for enrolment A: %v, want ErrNoChallenge", err)
	}
	if _, err := e.f.ConfirmEnroll(ctx, alice, b.ID, factors.Response{Code: codeA}, ""); codeA != codeB && !errors.Is(err, factors.ErrWrongResponse) {
		t.Errorf("A's code for enrolment B: %v, want ErrWrongResponse", err)
	}
	for _, name := range []string{" ", strings.Repeat("x", 65), "a\u202eb"} {
		if _, err := e.f.ConfirmEnroll(ctx, alice, b.ID, factors.Response{Code: codeB}, name); !errors.Is(err, factors.ErrInvalidName) {
			t.Errorf("name %q: %v", name, err)
		}
	}
	if _, err := e.f.ConfirmEnroll(ctx, alice, "", factors.Response{Code: codeB}, ""); !errors.Is(err, factors.ErrNoChallenge) {
		t.Errorf("no enrolment id: %v", err)
	}
	cred, err := e.f.ConfirmEnroll(ctx, alice, b.ID, factors.Response{Code: codeB}, "Mobile")
	if err != nil || cred.Detail != "+49 •••• •••6 789" {
		t.Fatalf("confirm B: %+v %v", cred, err)
	}
	if _, err := e.f.ConfirmEnroll(ctx, alice, b.ID, factors.Response{Code: codeB}, ""); !errors.Is(err, sms.ErrHasNumber) {
		t.Errorf("confirm again: %v", err)
	}
	// While a number exists, another is refused before anything is sent.
	sent := e.phone.count()
	e.clock.Advance(time.Minute)
	if _, err := e.f.Enroll(ctx, alice, factors.EnrollRequest{Address: number}); !errors.Is(err, sms.ErrHasNumber) || !errors.Is(err, factors.ErrNotSupported) {
		t.Errorf("second number: %v, want ErrHasNumber", err)
	}
	if e.phone.count() != sent {
		t.Error("a text went to the refused number")
	}

	// Rename and remove.
	if err := e.f.Rename(ctx, "alice", cred.ID, "Old phone"); err != nil {
		t.Fatal(err)
	}
	if err := e.f.Rename(ctx, "alice", "nope", "x"); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("rename unknown: %v", err)
	}
	if err := e.f.Rename(ctx, "alice", cred.ID, ""); !errors.Is(err, factors.ErrInvalidName) {
		t.Errorf("rename empty: %v", err)
	}
	if list, _ := e.f.List(ctx, "alice"); len(list) != 1 || list[0].Name != "Old phone" || list[0].ID != cred.ID || list[0].Kind != "sms" {
		t.Errorf("list %+v", list)
	}
	// A sign-in code sent before the removal dies with the number, also
	// for a number enrolled after.
	if _, err := e.f.Begin(ctx, alice); err != nil {
		t.Fatal(err)
	}
	pending := code(t, e.phone.last(t).Text)
	if err := e.f.Remove(ctx, "alice", "nope"); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("remove unknown: %v", err)
	}
	if err := e.f.Remove(ctx, "alice", cred.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.f.Remove(ctx, "alice", cred.ID); !errors.Is(err, factors.ErrNotFound) {
		t.Errorf("remove twice: %v", err)
	}
	e.clock.Advance(time.Minute)
	e.enroll(t, alice, "+4915123456789")
	if _, err := e.f.Prove(ctx, alice, factors.Response{Code: pending}); !errors.Is(err, factors.ErrNoChallenge) {
		t.Errorf("a code from before the removal: %v, want ErrNoChallenge", err)
	}
	if _, ok, _ := e.f.Pending(ctx, alice); ok {
		t.Error("a code from before the removal is pending")
	}
}

// An admin reset removes the number and kills a pending enrolment, so a
// confirmation code texted before cannot add a number after.
func TestRemoveAllCancelsPendingEnrolment(t *testing.T) {
	e := newPhoneEnv(t, sms.Options{})
	e.enroll(t, alice, number)
	bob := factors.Subject{Username: "bob"}
	en, err := e.f.Enroll(ctx, bob, factors.EnrollRequest{Address: "+4915123456789"})
	if err != nil {
		t.Fatal(err)
	}
	c := code(t, e.phone.last(t).Text)
	if n, err := e.f.RemoveAll(ctx, "bob"); n != 0 || err != nil {
		t.Errorf("remove all (bob): %d %v", n, err)
	}
	if _, err := e.f.ConfirmEnroll(ctx, bob, en.ID, factors.Response{Code: c}, ""); err == nil {
		t.Error("a pending enrolment was confirmed after an admin reset")
	}
	if list, _ := e.f.List(ctx, "bob"); len(list) != 0 {
		t.Errorf("bob has %+v", list)
	}
	if n, err := e.f.RemoveAll(ctx, "alice"); n != 1 || err != nil {
		t.Errorf("remove all (alice): %d %v", n, err)
	}
	if _, ok, _ := e.f.Usable(ctx, alice); ok {
		t.Error("alice's number is still usable")
	}
}

// A provider that fails leaves nothing behind: no code, no cooldown.
func TestProviderFailureChangesNothing(t *testing.T) {
	e := newPhoneEnv(t, sms.Options{})
	e.phone.fail(http.StatusServiceUnavailable)
	for range 6 {
		_, err := e.f.Enroll(ctx, alice, factors.EnrollRequest{Address: number})
		if !errors.Is(err, factors.ErrSendFailed) || !strings.Contains(err.Error(), "503") {
			t.Fatalf("provider down: %v", err)
		}
	}
	e.phone.fail(0)
	e.enroll(t, alice, number) // at once: no cooldown, no cap consumed
}

// Every text fits one SMS; a product name that would not is refused.
func TestTextsFitOneSMS(t *testing.T) {
	e := baseEnv(t)
	p := newPhone(t)
	for _, opt := range []sms.Options{
		{Limits: sentcode.Limits{Length: 10, TTL: time.Hour}},
		{Limits: sentcode.Limits{Length: 10, TTL: 22 * time.Minute}}, // "22 минуты": the longest Russian form
		{Product: "Example Co", Limits: sentcode.Limits{Length: 6}},
	} {
		if _, err := sms.New(e.kv, e.secrets, p.gateway(t), opt); err != nil {
			t.Errorf("%+v: %v", opt, err)
		}
	}
	if _, err := sms.New(e.kv, e.secrets, p.gateway(t), sms.Options{Product: "Example Corporation Ltd"}); err == nil || !strings.Contains(err.Error(), "one SMS") {
		t.Errorf("a long product name: %v", err)
	}
	if _, err := sms.New(e.kv, e.secrets, p.gateway(t), sms.Options{Product: "key\ngate"}); err == nil {
		t.Error("a product name with a newline was accepted")
	}
	for name, opt := range map[string]sms.Options{
		"short code": {Limits: sentcode.Limits{Length: 4}}, "short ttl": {Limits: sentcode.Limits{TTL: time.Second}},
		"cooldown beyond ttl": {Limits: sentcode.Limits{TTL: time.Minute, Cooldown: 2 * time.Minute}},
		"tries":               {Limits: sentcode.Limits{MaxTries: 100}}, "cap": {Limits: sentcode.Limits{HourlyCap: -1}},
	} {
		if _, err := sms.New(e.kv, e.secrets, p.gateway(t), opt); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := sms.New(nil, e.secrets, p.gateway(t), sms.Options{}); err == nil {
		t.Error("no store accepted")
	}
	// One minute, in both languages.
	e.f = e.factor(t, p.gateway(t), sms.Options{Limits: sentcode.Limits{TTL: time.Minute, Cooldown: time.Second}})
	e.phone = p
	for lang, want := range map[string]string{"en": "It expires in 1 minute.", "ru": "Действует 1 минуту.", "de": "It expires in 1 minute."} {
		s := factors.Subject{Username: "u-" + lang, Lang: lang}
		if _, err := e.f.Enroll(ctx, s, factors.EnrollRequest{Address: number}); err != nil {
			t.Fatal(err)
		}
		if got := p.last(t).Text; !strings.Contains(got, want) {
			t.Errorf("%s: %q lacks %q", lang, got, want)
		}
	}
}
