package factors

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Secrets gives factors what they need to keep secrets at rest on top of
// the store's own encryption: AEAD sealing (TOTP secrets) bound to the row
// by associated data, and keyed hashes (email and recovery codes), each
// with its own subkey derived from one master key. Binding ciphertexts to
// their row means a sealed secret copied onto another user's record does
// not open.
type Secrets struct {
	aead cipher.AEAD
	mac  []byte
}

// ErrSealed: a sealed value does not open (tampered, moved to another row,
// or sealed under another key).
var ErrSealed = errors.New("factors: sealed value does not open")

// NewSecrets derives the subkeys from master (at least 32 bytes; keygate
// uses the storage encryption key). purpose separates uses so that one
// key's compromise in one place reveals nothing about another.
func NewSecrets(master []byte, purpose string) (*Secrets, error) {
	if len(master) < 32 {
		return nil, fmt.Errorf("factors: master key of %d bytes; need at least 32", len(master))
	}
	encKey, err := hkdf.Key(sha256.New, master, nil, "keygate "+purpose+" seal", 32)
	if err != nil {
		return nil, fmt.Errorf("factors: derive seal key: %w", err)
	}
	macKey, err := hkdf.Key(sha256.New, master, nil, "keygate "+purpose+" mac", 32)
	if err != nil {
		return nil, fmt.Errorf("factors: derive mac key: %w", err)
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, fmt.Errorf("factors: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("factors: %w", err)
	}
	return &Secrets{aead: aead, mac: macKey}, nil
}

// Seal encrypts plain, bound to aad (e.g. "totp/<user>/<credential id>").
func (s *Secrets) Seal(plain, aad []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("factors: nonce: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plain, aad), nil
}

// Open decrypts what Seal produced for the same aad.
func (s *Secrets) Open(sealed, aad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrSealed
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, ErrSealed
	}
	return plain, nil
}

// Hash is a keyed hash (HMAC-SHA-256) of a one-time code with its context
// (e.g. user and purpose): the stored form of a code is never the code,
// and without the key a stolen database does not let anyone test guesses.
func (s *Secrets) Hash(context, code string) []byte {
	m := hmac.New(sha256.New, s.mac)
	m.Write([]byte(context))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum(nil)
}

// Equal compares two hashes in constant time.
func Equal(a, b []byte) bool { return hmac.Equal(a, b) }
