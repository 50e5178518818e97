package factors

import (
	"bytes"
	"errors"
	"testing"
)

func TestSecretsSealBindsToRowAndKey(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	s, err := NewSecrets(key, "totp")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := s.Seal([]byte("JBSWY3DPEHPK3PXP"), []byte("totp/alice/1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("JBSWY3DPEHPK3PXP")) {
		t.Fatal("sealed value contains the secret")
	}
	plain, err := s.Open(sealed, []byte("totp/alice/1"))
	if err != nil || string(plain) != "JBSWY3DPEHPK3PXP" {
		t.Fatalf("open: %q %v", plain, err)
	}
	other, _ := NewSecrets(bytes.Repeat([]byte{8}, 32), "totp")
	otherPurpose, _ := NewSecrets(key, "recovery")
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	for name, try := range map[string]func() ([]byte, error){
		"other row":     func() ([]byte, error) { return s.Open(sealed, []byte("totp/bob/1")) },
		"other key":     func() ([]byte, error) { return other.Open(sealed, []byte("totp/alice/1")) },
		"other purpose": func() ([]byte, error) { return otherPurpose.Open(sealed, []byte("totp/alice/1")) },
		"tampered":      func() ([]byte, error) { return s.Open(tampered, []byte("totp/alice/1")) },
		"truncated":     func() ([]byte, error) { return s.Open(sealed[:5], []byte("totp/alice/1")) },
	} {
		if _, err := try(); !errors.Is(err, ErrSealed) {
			t.Errorf("%s: err %v, want ErrSealed", name, err)
		}
	}
	if _, err := NewSecrets(key[:16], "x"); err == nil {
		t.Error("a 16-byte master key was accepted")
	}
}

func TestSecretsHashIsKeyedAndContextBound(t *testing.T) {
	s, _ := NewSecrets(bytes.Repeat([]byte{1}, 32), "email")
	o, _ := NewSecrets(bytes.Repeat([]byte{2}, 32), "email")
	h := s.Hash("alice", "123456")
	if !Equal(h, s.Hash("alice", "123456")) {
		t.Fatal("hash not deterministic")
	}
	if Equal(h, s.Hash("bob", "123456")) || Equal(h, o.Hash("alice", "123456")) || Equal(h, s.Hash("alice", "123457")) {
		t.Fatal("hash ignores context, key or code")
	}
	if bytes.Contains(h, []byte("123456")) {
		t.Fatal("hash contains the code")
	}
}
