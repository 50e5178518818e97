package webauthn

import (
	"errors"
	"fmt"
	"testing"
)

// The WebAuthn responses a browser posts are attacker-controlled bytes.
// Whatever they are, FinishLogin and FinishRegistration must return a
// clean, typed error (never panic) and must never accept a response the
// enrolled key did not make. Each input is tried on a real ceremony of a
// real factor on Badger, raw or spliced into a genuine answer from a
// software key, so the fuzzer also explores responses that parse and get
// deep into verification.

// cleanRefusal reports whether err is one of the refusals the factor
// documents.
func cleanRefusal(err error) bool {
	var ve *VerifyError
	return errors.As(err, &ve) || errors.Is(err, ErrCeremony) || errors.Is(err, ErrCloneWarning)
}

func splice(valid, data []byte, at uint16) []byte {
	i := int(at) % (len(valid) + 1)
	out := append([]byte{}, valid[:i]...)
	out = append(out, data...)
	return append(out, valid[i:]...)
}

func FuzzFinishLogin(f *testing.F) {
	e := softEnv(f, nil)
	k := newSoftKey(f, e.origin)
	softEnrol(f, e.f, "alice", k, "key")
	f.Add([]byte(nil), uint16(0), false)
	f.Add([]byte(`{"id":"","rawId":"","type":"public-key","response":{}}`), uint16(0), false)
	f.Add([]byte(`"}`), uint16(40), true)
	f.Add([]byte(`,"x":1`), uint16(1), true)
	f.Add([]byte("\x00\xff"), uint16(300), true)
	f.Fuzz(func(t *testing.T, data []byte, at uint16, spliced bool) {
		opts, cer, err := e.f.BeginLogin(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		resp := data
		if spliced {
			k.t = t // the key reports to this run, not to the F
			resp = splice(k.get(opts), data, at)
		}
		_, err = e.f.FinishLogin(ctx, "alice", cer, resp)
		switch {
		case err == nil && !spliced:
			t.Fatalf("accepted bytes the key never signed: %q", data)
		case err != nil && !cleanRefusal(err):
			t.Fatalf("refused with an undocumented error %T: %v", err, err)
		}
	})
}

func FuzzFinishRegistration(f *testing.F) {
	e := softEnv(f, nil)
	f.Add([]byte(nil), uint16(0), false)
	f.Add([]byte(`{"id":"AA","rawId":"AA","type":"public-key","response":{"clientDataJSON":"","attestationObject":""}}`), uint16(0), false)
	f.Add([]byte(`"}`), uint16(60), true)
	f.Add([]byte("\xa1\x00"), uint16(500), true)
	n := 0
	f.Fuzz(func(t *testing.T, data []byte, at uint16, spliced bool) {
		n++
		u := User{Username: fmt.Sprintf("user%d", n)}
		opts, cer, err := e.f.BeginRegistration(ctx, u, SecurityKey)
		if err != nil {
			t.Fatal(err)
		}
		resp := data
		if spliced {
			resp = splice(newSoftKey(t, e.origin).create(opts), data, at)
		}
		_, err = e.f.FinishRegistration(ctx, u, cer, resp, "")
		switch {
		case err == nil && !spliced:
			t.Fatalf("registered bytes no authenticator made: %q", data)
		case err != nil && !cleanRefusal(err):
			t.Fatalf("refused with an undocumented error %T: %v", err, err)
		}
	})
}
