package authn

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
// process allocate memory without bound. Peak hashing memory is therefore
// MaxConcurrent × MemoryKiB, whatever the number of sign-ins waiting.
//
// Slots are shared fairly between clients: one key (a client address) holds
// at most perKey of them at once (a quarter, at least one), and its extra
// hashes wait in a queue of their own, outside the shared one. So a flood
// from one address cannot take every slot, and the others' sign-ins still
// find one free.
//
// Why no buffer is reused: golang.org/x/crypto/argon2 allocates its
// MemoryKiB work area inside IDKey and offers no way to pass one in, so
// each run makes 64 MiB of garbage. The semaphore bounds how much of it is
// live; GOMEMLIMIT (set by cmd/keygate from the same numbers) makes the
// collector return it before the heap grows past the bound.
type Hasher struct {
	params Argon2Params
	sem    chan struct{}
	perKey int
	mu     sync.Mutex
	keys   map[string]*keySlots // guarded by mu; only keys with a hash under way or waiting
	// dummy is a well-formed PHC string with the hasher's parameters whose
	// key matches no password. Authenticate verifies against it when there
	// is no real hash, so unknown users cost the same work as known ones.
	dummy string
	// runs counts argon2 computations done by Verify; tests use it to prove
	// that unknown users are verified too.
	runs atomic.Uint64
	// imitated counts answers that waited the usual time without hashing.
	imitated atomic.Uint64
	// typical is a moving average of how long one argon2 run with the
	// current parameters takes (ns; 0 = not measured yet): the delay
	// Imitate waits.
	typical atomic.Int64
}

// keySlots is the per-key share of the slots.
type keySlots struct {
	ch    chan struct{}
	users int // guarded by Hasher.mu: holders and waiters
}

// NewHasher returns a Hasher. Zero fields of p take the defaults; values
// outside the bounds that Verify accepts are clamped (salt 8–128 bytes, key
// 16–128 bytes, memory 8·p KiB–1 GiB, at most 64 passes). maxConcurrent <= 0
// means GOMAXPROCS. One client key may hold a quarter of the slots (at
// least one) at a time.
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
	h := &Hasher{params: p, sem: make(chan struct{}, maxConcurrent), perKey: max(1, maxConcurrent/4), keys: map[string]*keySlots{}}
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
// or out of bounds (and ok is false). It takes a slot of the shared pool
// only, with no per-client share: use VerifyFor for requests from clients.
func (h *Hasher) Verify(password, phc string) (bool, error) {
	return h.VerifyFor(context.Background(), "", password, phc)
}

// VerifyFor is Verify for a request from client key (its address, as
// ipKey gives it; "" = no per-client share): the hash waits for one of the
// key's share of slots first. It fails with ctx's error when ctx ends
// while waiting.
func (h *Hasher) VerifyFor(ctx context.Context, key, password, phc string) (bool, error) {
	p, salt, want, err := parsePHC(phc)
	if err != nil {
		return false, err
	}
	got, err := h.deriveFor(ctx, key, password, salt, p)
	if err != nil {
		return false, err
	}
	h.runs.Add(1)
	// Constant time, so the comparison leaks nothing about how many leading
	// bytes of the stored key a guess got right.
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// Imitate waits as long as one argon2 run usually takes, without running
// one: the answer to an attempt that regulation refuses before any check
// (a lock whose budget is spent) then takes as long as a checked one, and
// costs neither memory nor CPU. Until a run has been timed it hashes the
// dummy for real (under key's share), so the first answers are honest too.
func (h *Hasher) Imitate(ctx context.Context, key string) {
	d := time.Duration(h.typical.Load())
	if d == 0 {
		_, _ = h.VerifyFor(ctx, key, "", h.dummy)
		return
	}
	h.imitated.Add(1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// TypicalHash is the moving average of one argon2 run (0 until measured).
func (h *Hasher) TypicalHash() time.Duration { return time.Duration(h.typical.Load()) }

// NeedsRehash reports whether phc was made with other parameters than the
// hasher's current ones (or cannot be parsed), so that a successful sign-in
// can upgrade it.
func (h *Hasher) NeedsRehash(phc string) bool {
	p, _, _, err := parsePHC(phc)
	return err != nil || p != h.params
}

func (h *Hasher) derive(password string, salt []byte, p Argon2Params) []byte {
	// Background never ends, so there is no error.
	k, _ := h.deriveFor(context.Background(), "", password, salt, p)
	return k
}

func (h *Hasher) deriveFor(ctx context.Context, key, password string, salt []byte, p Argon2Params) ([]byte, error) {
	release, err := h.acquire(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("password hash: %w", err)
	}
	defer release()
	start := time.Now()
	k := argon2.IDKey([]byte(password), salt, p.Iterations, p.MemoryKiB, p.Parallelism, p.KeyLen)
	if p == h.params {
		h.observe(time.Since(start))
	}
	return k, nil
}

// observe folds one run's duration into the moving average (weight 1/8:
// it follows a slower or faster machine within a few dozen sign-ins and
// is not thrown by one run that a busy CPU stretched).
func (h *Hasher) observe(d time.Duration) {
	for {
		old := h.typical.Load()
		n := int64(d)
		if old != 0 {
			n = old + (int64(d)-old)/8
		}
		if h.typical.CompareAndSwap(old, n) {
			return
		}
	}
}

// acquire takes one of key's share of slots (when key is set), then a
// slot of the shared pool. Waiting for the key's share happens outside the
// shared queue, so a key's excess never stands in front of other clients.
func (h *Hasher) acquire(ctx context.Context, key string) (release func(), err error) {
	var ks *keySlots
	if key != "" && h.perKey < cap(h.sem) {
		h.mu.Lock()
		ks = h.keys[key]
		if ks == nil {
			ks = &keySlots{ch: make(chan struct{}, h.perKey)}
			h.keys[key] = ks
		}
		ks.users++
		h.mu.Unlock()
		select {
		case ks.ch <- struct{}{}:
		case <-ctx.Done():
			h.leave(key, ks)
			return nil, ctx.Err()
		}
	}
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		if ks != nil {
			<-ks.ch
			h.leave(key, ks)
		}
		return nil, ctx.Err()
	}
	return func() {
		<-h.sem
		if ks != nil {
			<-ks.ch
			h.leave(key, ks)
		}
	}, nil
}

// leave drops a holder or waiter of key, and the key once nobody uses it,
// so the map holds only keys with hashes under way.
func (h *Hasher) leave(key string, ks *keySlots) {
	h.mu.Lock()
	ks.users--
	if ks.users == 0 {
		delete(h.keys, key)
	}
	h.mu.Unlock()
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
