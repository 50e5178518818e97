package authn

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the argon2id cost parameters. They are written into every
// PHC string, so changing them affects new hashes only; Verify always uses
// the parameters of the hash it checks.
type Argon2Params struct {
	MemoryKiB   uint32
	Iterations  uint32
	Parallelism uint8
	SaltLen     uint32
	KeyLen      uint32
}

// DefaultArgon2Params returns the production parameters: 64 MiB, 1 pass,
// 2 lanes, 16-byte salt, 32-byte key. BenchmarkHash on the 2-core reference
// machine (with other builds running) gives 50–65 ms a hash, inside the
// 20–70 ms band that makes guessing expensive without making sign-in feel
// slow; m=64 MiB,t=2 took 85–140 ms there. Memory is the cost that hurts
// GPU and ASIC guessers most, so the budget goes to memory rather than
// passes (the RFC 9106 / OWASP trade-off). 64 MiB per hash is also why the
// Hasher caps concurrent hashes.
func DefaultArgon2Params() Argon2Params {
	return Argon2Params{MemoryKiB: 64 * 1024, Iterations: 1, Parallelism: 2, SaltLen: 16, KeyLen: 32}
}

// Bounds on parameters. The lower ones keep a misconfiguration from producing
// trivially weak hashes; the upper ones apply to PHC strings read back from
// storage, so that a tampered or corrupt record cannot make one Verify
// allocate gigabytes or spin for minutes.
const (
	minSaltLen   = 8
	minKeyLen    = 16
	maxSaltLen   = 128
	maxKeyLen    = 128
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxIter      = 64
)

// Hasher hashes and verifies passwords with argon2id in the PHC string format
//
//	$argon2id$v=19$m=65536,t=1,p=2$<salt>$<hash>   (unpadded standard base64)
//
// Every argon2 run holds a slot of a semaphore: each run allocates MemoryKiB,
// so without a cap a burst of sign-ins (or an attacker) could make the
// process allocate memory without bound. Excess callers wait.
type Hasher struct {
	params Argon2Params
	sem    chan struct{}
	// dummy is a well-formed PHC string with the hasher's parameters whose
	// key matches no password. Authenticate verifies against it when there
	// is no real hash, so unknown users cost the same work as known ones.
	dummy string
	// runs counts argon2 computations done by Verify; tests use it to prove
	// that unknown users are verified too.
	runs atomic.Uint64
}

// NewHasher returns a Hasher. Zero fields of p take the defaults; values
// outside the bounds that Verify accepts are clamped (salt 8–128 bytes, key
// 16–128 bytes, memory 8·p KiB–1 GiB, at most 64 passes). maxConcurrent <= 0
// means GOMAXPROCS.
func NewHasher(p Argon2Params, maxConcurrent int) *Hasher {
	d := DefaultArgon2Params()
	if p.MemoryKiB == 0 {
		p.MemoryKiB = d.MemoryKiB
	}
	if p.Iterations == 0 {
		p.Iterations = d.Iterations
	}
	if p.Parallelism == 0 {
		p.Parallelism = d.Parallelism
	}
	if p.SaltLen == 0 {
		p.SaltLen = d.SaltLen
	}
	if p.KeyLen == 0 {
		p.KeyLen = d.KeyLen
	}
	// Clamp to what parsePHC accepts, so every hash we write can be read back.
	p.MemoryKiB = min(max(p.MemoryKiB, 8*uint32(p.Parallelism)), maxMemoryKiB)
	p.Iterations = min(p.Iterations, maxIter)
	p.SaltLen = min(max(p.SaltLen, minSaltLen), maxSaltLen)
	p.KeyLen = min(max(p.KeyLen, minKeyLen), maxKeyLen)
	if maxConcurrent <= 0 {
		maxConcurrent = runtime.GOMAXPROCS(0)
	}
	h := &Hasher{params: p, sem: make(chan struct{}, maxConcurrent)}
	// The dummy needs no argon2 run: random salt and random key bytes give a
	// string that Verify treats exactly like a real one with these params.
	h.dummy = encodePHC(p, randomBytes(p.SaltLen), randomBytes(p.KeyLen))
	return h
}

// Params returns the parameters used for new hashes.
func (h *Hasher) Params() Argon2Params { return h.params }

// Hash returns the PHC string of password with a fresh random salt.
func (h *Hasher) Hash(password string) (string, error) {
	salt := randomBytes(h.params.SaltLen)
	key := h.derive(password, salt, h.params)
	return encodePHC(h.params, salt, key), nil
}

// Verify reports whether password matches the PHC string. ok=false with a
// nil error is a wrong password; an error means the PHC string is malformed
// or out of bounds (and ok is false).
func (h *Hasher) Verify(password, phc string) (bool, error) {
	p, salt, want, err := parsePHC(phc)
	if err != nil {
		return false, err
	}
	got := h.derive(password, salt, p)
	h.runs.Add(1)
	// Constant time, so the comparison leaks nothing about how many leading
	// bytes of the stored key a guess got right.
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// NeedsRehash reports whether phc was made with other parameters than the
// hasher's current ones (or cannot be parsed), so that a successful sign-in
// can upgrade it.
func (h *Hasher) NeedsRehash(phc string) bool {
	p, _, _, err := parsePHC(phc)
	return err != nil || p != h.params
}

func (h *Hasher) derive(password string, salt []byte, p Argon2Params) []byte {
	h.sem <- struct{}{}
	defer func() { <-h.sem }()
	return argon2.IDKey([]byte(password), salt, p.Iterations, p.MemoryKiB, p.Parallelism, p.KeyLen)
}

func randomBytes(n uint32) []byte {
	b := make([]byte, n)
	// crypto/rand.Read never fails (it crashes the program if the OS
	// cannot supply randomness), so there is no error to return.
	_, _ = rand.Read(b)
	return b
}

// b64 is the PHC alphabet: standard base64 without padding. Strict decoding
// refuses non-canonical trailing bits, so one hash has one spelling.
func b64() *base64.Encoding { return base64.RawStdEncoding.Strict() }

func encodePHC(p Argon2Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Iterations, p.Parallelism,
		b64().EncodeToString(salt), b64().EncodeToString(key))
}

// errPHC is wrapped by every parse failure.
var errPHC = errors.New("malformed argon2id PHC string")

// parsePHC reads a PHC string as written by encodePHC. It is strict: only
// argon2id version 19, exactly the m, t and p parameters, canonical unpadded
// base64, and every value within bounds. SaltLen and KeyLen of the returned
// params are the lengths of salt and key.
func parsePHC(s string) (p Argon2Params, salt, key []byte, err error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return p, nil, nil, fmt.Errorf("%w: want 5 '$'-separated fields", errPHC)
	}
	if parts[1] != "argon2id" {
		return p, nil, nil, fmt.Errorf("%w: algorithm %q is not argon2id", errPHC, parts[1])
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("%w: unsupported version %q", errPHC, parts[2])
	}
	var seen [3]bool
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, nil, nil, fmt.Errorf("%w: parameter %q", errPHC, kv)
		}
		n, perr := strconv.ParseUint(v, 10, 32)
		if perr != nil || n == 0 || v[0] == '+' {
			return p, nil, nil, fmt.Errorf("%w: parameter %q", errPHC, kv)
		}
		var i int
		switch k {
		case "m":
			i, p.MemoryKiB = 0, uint32(n)
		case "t":
			i, p.Iterations = 1, uint32(n)
		case "p":
			if n > 255 {
				return p, nil, nil, fmt.Errorf("%w: parameter %q", errPHC, kv)
			}
			i, p.Parallelism = 2, uint8(n)
		default:
			return p, nil, nil, fmt.Errorf("%w: unknown parameter %q", errPHC, k)
		}
		if seen[i] {
			return p, nil, nil, fmt.Errorf("%w: repeated parameter %q", errPHC, k)
		}
		seen[i] = true
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return p, nil, nil, fmt.Errorf("%w: m, t and p are required", errPHC)
	}
	if p.MemoryKiB > maxMemoryKiB || p.Iterations > maxIter || p.MemoryKiB < 8*uint32(p.Parallelism) {
		return p, nil, nil, fmt.Errorf("%w: parameters out of bounds", errPHC)
	}
	if salt, err = b64().DecodeString(parts[4]); err != nil || len(salt) < minSaltLen || len(salt) > maxSaltLen {
		return p, nil, nil, fmt.Errorf("%w: salt", errPHC)
	}
	if key, err = b64().DecodeString(parts[5]); err != nil || len(key) < minKeyLen || len(key) > maxKeyLen {
		return p, nil, nil, fmt.Errorf("%w: hash", errPHC)
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	return p, salt, key, nil
}
