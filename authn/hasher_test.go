package authn

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

func TestPHCRoundTrip(t *testing.T) {
	h := testHasher()
	phc, err := h.Hash("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=8192,t=1,p=1$") {
		t.Fatalf("unexpected PHC string %q", phc)
	}
	p, salt, key, err := parsePHC(phc)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if p != h.Params() {
		t.Fatalf("params %+v, want %+v", p, h.Params())
	}
	if got := encodePHC(p, salt, key); got != phc {
		t.Fatalf("re-encoded %q, want %q", got, phc)
	}
	// Interoperability: the key is plain argon2id of the password.
	if want := argon2.IDKey([]byte("correct horse battery staple"), salt, 1, 8*1024, 1, 32); string(want) != string(key) {
		t.Fatal("stored key is not argon2id(password, salt)")
	}
	if ok, err := h.Verify("correct horse battery staple", phc); !ok || err != nil {
		t.Fatalf("Verify(right) = %v, %v", ok, err)
	}
	if ok, err := h.Verify("correct horse battery stable", phc); ok || err != nil {
		t.Fatalf("Verify(wrong) = %v, %v", ok, err)
	}
	// Two hashes of one password differ (fresh salt).
	if phc2, _ := h.Hash("correct horse battery staple"); phc2 == phc {
		t.Fatal("two hashes are identical: salt not random")
	}
}

func TestPHCTamperedRefused(t *testing.T) {
	h := testHasher()
	const pw = "tamper-evident-password"
	phc, _ := h.Hash(pw)
	parts := strings.Split(phc, "$")
	flip := func(s string) string {
		b, _ := base64.RawStdEncoding.DecodeString(s)
		b[0] ^= 1
		return base64.RawStdEncoding.EncodeToString(b)
	}
	tampered := map[string]string{
		"hash":       strings.Join(append(parts[:5:5], flip(parts[5])), "$"),
		"salt":       strings.Join(append(parts[:4:4], flip(parts[4]), parts[5]), "$"),
		"iterations": strings.Replace(phc, "t=1", "t=2", 1),
		"memory":     strings.Replace(phc, "m=8192", "m=8200", 1),
		"truncated":  phc[:len(phc)-4],
	}
	for name, bad := range tampered {
		if ok, _ := h.Verify(pw, bad); ok {
			t.Errorf("%s tampered: Verify accepted it", name)
		}
	}
	malformed := []string{
		"",
		"plain",
		"$argon2i$v=19$m=8192,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=16$m=8192,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=8192,t=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=8192,t=1,p=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=8192,t=1,p=1,x=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=8192,t=0,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=8192,t=+1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=4294967295,t=1,p=1$" + parts[4] + "$" + parts[5], // 4 TiB: refused, not attempted
		"$argon2id$v=19$m=8192,t=1000,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=8192,t=1,p=1$" + parts[4] + "=$" + parts[5],      // padding
		"$argon2id$v=19$m=8192,t=1,p=1$" + parts[4] + "$" + parts[5] + "$", // extra field
		"$argon2id$v=19$m=8192,t=1,p=1$$" + parts[5],
		"$argon2id$v=19$m=8192,t=1,p=1$" + parts[4] + "$AAAA",
	}
	for _, bad := range malformed {
		ok, err := h.Verify(pw, bad)
		if ok || !errors.Is(err, errPHC) {
			t.Errorf("Verify(%q) = %v, %v; want false, errPHC", bad, ok, err)
		}
	}
}

func TestHasherDefaults(t *testing.T) {
	h := NewHasher(Argon2Params{}, 0)
	if h.Params() != DefaultArgon2Params() {
		t.Fatalf("zero params became %+v", h.Params())
	}
	phc, err := h.Hash("the default parameters")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=65536,t=1,p=2$") {
		t.Fatalf("PHC %q does not carry the default parameters", phc)
	}
	if ok, err := h.Verify("the default parameters", phc); !ok || err != nil {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
	// A hash made with other parameters still verifies (they are read from
	// the string) and is reported for upgrade.
	old, _ := testHasher().Hash("older parameters")
	if ok, err := h.Verify("older parameters", old); !ok || err != nil {
		t.Fatalf("Verify(old params) = %v, %v", ok, err)
	}
	if !h.NeedsRehash(old) || h.NeedsRehash(phc) {
		t.Fatal("NeedsRehash: want true for old params, false for current")
	}
}

func TestHasherClampsParams(t *testing.T) {
	h := NewHasher(Argon2Params{MemoryKiB: 1, Iterations: 1000, Parallelism: 4, SaltLen: 1, KeyLen: 1}, 1)
	p := h.Params()
	if p.MemoryKiB != 32 || p.Iterations != maxIter || p.SaltLen != minSaltLen || p.KeyLen != minKeyLen {
		t.Fatalf("clamped params %+v", p)
	}
	// What it writes, it can read.
	phc, _ := NewHasher(Argon2Params{MemoryKiB: 1, Iterations: 1, Parallelism: 4, SaltLen: 1, KeyLen: 1}, 1).Hash("x")
	if _, _, _, err := parsePHC(phc); err != nil {
		t.Fatalf("own hash unreadable: %v", err)
	}
}

func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=65536,t=2,p=2$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$p=1,t=1,m=8$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, key, err := parsePHC(s)
		if err != nil {
			return
		}
		// Anything accepted is within bounds and has one canonical form
		// up to the order of parameters.
		if p.MemoryKiB > maxMemoryKiB || p.Iterations > maxIter || len(salt) < minSaltLen || len(key) < minKeyLen {
			t.Fatalf("accepted out-of-bounds %q", s)
		}
		p2, salt2, key2, err := parsePHC(encodePHC(p, salt, key))
		if err != nil || p2 != p || string(salt2) != string(salt) || string(key2) != string(key) {
			t.Fatalf("re-encoding of %q does not round-trip: %v", s, err)
		}
	})
}

// BenchmarkHash measures the production parameters: the figure to keep in
// the 20–70 ms band.
func BenchmarkHash(b *testing.B) {
	h := NewHasher(DefaultArgon2Params(), 0)
	for b.Loop() {
		if _, err := h.Hash("benchmark password"); err != nil {
			b.Fatal(err)
		}
	}
}
