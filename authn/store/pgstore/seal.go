package pgstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// blindPrefixes are the key namespaces whose keys carry something a dump
// must not show. Every other key is a record name (user/alice,
// session/<sha-256 of the ID>, enroll_link/<hash>, …) and is stored in
// clear, so Scan can use the primary key's order.
//
//   - user_email/: the email index, keyed by the address itself.
//   - parked/: a parked request's ID is a bearer capability in a URL.
//   - webauthn/ceremony/: a ceremony ID is handed to the browser and
//     redeemed by it.
//   - regulate/: brute-force counters, keyed by client address (personal
//     data) or, for a login that names no account, by an unkeyed hash of
//     what was typed (often an email address, open to a dictionary).
//
// A key under one of them is stored as the prefix plus a keyed HMAC of the
// whole key (the prefix stays readable, so a DBA can still see what kind of
// rows there are), and the key itself is sealed inside the value. The list
// is part of the on-disk format: changing it needs a migration that
// re-keys the rows.
var blindPrefixes = []string{"parked/", "regulate/", "user_email/", "webauthn/ceremony/"}

// blindPrefixOf returns the blinded namespace key falls in, or "".
func blindPrefixOf(key string) string {
	for _, b := range blindPrefixes {
		if strings.HasPrefix(key, b) {
			return b
		}
	}
	return ""
}

// sealer seals values with a key derived from the storage key for this
// purpose only, and blinds keys with another.
type sealer struct {
	aead  cipher.AEAD
	blind []byte
}

const (
	payloadFormat = 1
	flagBlind     = 1 << 0
)

func newSealer(storageKey []byte) (*sealer, error) {
	if len(storageKey) < 16 {
		return nil, fmt.Errorf("pgstore: storage key is %d bytes; want at least 16 (32 recommended)", len(storageKey))
	}
	// HKDF with distinct labels: the same storage key also encrypts Badger
	// directories and backups; a key derived per purpose keeps them apart.
	ek, err := hkdf.Key(sha256.New, storageKey, nil, "keygate pgstore value seal v1", 32)
	if err != nil {
		return nil, fmt.Errorf("pgstore: derive key: %w", err)
	}
	bk, err := hkdf.Key(sha256.New, storageKey, nil, "keygate pgstore key blinding v1", 32)
	if err != nil {
		return nil, fmt.Errorf("pgstore: derive key: %w", err)
	}
	block, err := aes.NewCipher(ek)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	return &sealer{aead: aead, blind: bk}, nil
}

// rowKey maps a store key to its row key.
func (s *sealer) rowKey(key string) (rk []byte, blind bool) {
	b := blindPrefixOf(key)
	if b == "" {
		return []byte(key), false
	}
	m := hmac.New(sha256.New, s.blind)
	m.Write([]byte(key))
	return append([]byte(b), hex.EncodeToString(m.Sum(nil))...), true
}

// seal encrypts value for row rk. The row key is the additional data: a
// value copied to another row does not open there. For a blinded row the
// store key travels inside, since the row key no longer tells it.
//
//	nonce(12) || GCM( format(1) flags(1) [uvarint len(key) key] value )
func (s *sealer) seal(rk []byte, blind bool, key string, value []byte) []byte {
	n := s.aead.NonceSize()
	plain := make([]byte, 0, 2+binary.MaxVarintLen64+len(key)+len(value))
	plain = append(plain, payloadFormat, 0)
	if blind {
		plain[1] |= flagBlind
		plain = binary.AppendUvarint(plain, uint64(len(key)))
		plain = append(plain, key...)
	}
	plain = append(plain, value...)
	out := make([]byte, n, n+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		panic("pgstore: crypto/rand failed: " + err.Error()) // never returns an error since Go 1.24
	}
	return s.aead.Seal(out, out, plain, rk)
}

// errSealed: a row does not open with this key (wrong storage key, or a
// row tampered with or moved).
var errSealed = errors.New("pgstore: value does not open with the storage key (wrong key, or the row was altered)")

// open decrypts a row's value and returns the store key and value. For a
// clear row the key is the row key.
func (s *sealer) open(rk, sealed []byte) (key string, value []byte, err error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return "", nil, errSealed
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], rk)
	if err != nil || len(plain) < 2 || plain[0] != payloadFormat {
		return "", nil, errSealed
	}
	flags, rest := plain[1], plain[2:]
	key = string(rk)
	if flags&flagBlind != 0 {
		l, m := binary.Uvarint(rest)
		if m <= 0 || l > uint64(len(rest)-m) {
			return "", nil, errSealed
		}
		key = string(rest[m : m+int(l)])
		rest = rest[m+int(l):]
	}
	// Never nil: an empty value reads back as empty, like the other backends.
	return key, append([]byte{}, rest...), nil
}
