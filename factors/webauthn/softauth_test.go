package webauthn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
)

// softKey is a software authenticator for the tests that do not need a
// browser (registry, ceremony binding, concurrency, benchmarks): an ES256
// key answering with "none" attestation, as a browser would hand its
// responses to the server. The browser tests cover real authenticators.
type softKey struct {
	t       testing.TB
	key     *ecdsa.PrivateKey
	id      []byte
	handle  []byte // user handle from registration
	counter uint32
	uv      bool
	origin  string
	rpID    string
}

func newSoftKey(t testing.TB, origin string) *softKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &softKey{t: t, key: k, id: randomBytes(32), origin: origin, rpID: "localhost", uv: true}
}

var b64u = base64.RawURLEncoding

// clientData is the clientDataJSON for a challenge.
func (k *softKey) clientData(typ, challenge string) []byte {
	b, err := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": k.origin, "crossOrigin": false})
	if err != nil {
		k.t.Fatal(err)
	}
	return b
}

func (k *softKey) flags(attested bool) byte {
	f := byte(protocolFlagUP)
	if k.uv {
		f |= protocolFlagUV
	}
	if attested {
		f |= protocolFlagAT
	}
	return f
}

const (
	protocolFlagUP = 0x01
	protocolFlagUV = 0x04
	protocolFlagAT = 0x40
)

func (k *softKey) authData(attested bool) []byte {
	rp := sha256.Sum256([]byte(k.rpID))
	ad := append(rp[:], k.flags(attested))
	ad = binary.BigEndian.AppendUint32(ad, k.counter)
	if attested {
		ad = append(ad, make([]byte, 16)...) // zero AAGUID, as "none" attestation has
		ad = binary.BigEndian.AppendUint16(ad, uint16(len(k.id)))
		ad = append(ad, k.id...)
		cose, err := webauthncbor.Marshal(map[int]any{
			1: 2, 3: -7, -1: 1, // kty EC2, alg ES256, crv P-256
			-2: k.key.X.FillBytes(make([]byte, 32)),
			-3: k.key.Y.FillBytes(make([]byte, 32)),
		})
		if err != nil {
			k.t.Fatal(err)
		}
		ad = append(ad, cose...)
	}
	return ad
}

// create answers creation options like credential.toJSON() would.
func (k *softKey) create(options json.RawMessage) []byte {
	k.t.Helper()
	var o struct {
		Challenge string `json:"challenge"`
		User      struct {
			ID string `json:"id"`
		} `json:"user"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		k.t.Fatal(err)
	}
	h, err := b64u.DecodeString(o.User.ID)
	if err != nil {
		k.t.Fatal(err)
	}
	k.handle = h
	ad := k.authData(true)
	obj, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": ad})
	if err != nil {
		k.t.Fatal(err)
	}
	return k.marshal(map[string]any{
		"id": b64u.EncodeToString(k.id), "rawId": b64u.EncodeToString(k.id), "type": "public-key",
		"authenticatorAttachment": "cross-platform", "clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64u.EncodeToString(k.clientData("webauthn.create", o.Challenge)),
			"attestationObject": b64u.EncodeToString(obj),
			"transports":        []string{"usb"},
		},
	})
}

// get answers request options, advancing the counter first.
func (k *softKey) get(options json.RawMessage) []byte {
	k.t.Helper()
	var o struct {
		Challenge string `json:"challenge"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		k.t.Fatal(err)
	}
	k.counter++
	return k.sign(o.Challenge)
}

// sign makes an assertion for a challenge with the current counter.
func (k *softKey) sign(challenge string) []byte {
	k.t.Helper()
	ad := k.authData(false)
	cd := k.clientData("webauthn.get", challenge)
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte(nil), ad...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.key, digest[:])
	if err != nil {
		k.t.Fatal(err)
	}
	return k.marshal(map[string]any{
		"id": b64u.EncodeToString(k.id), "rawId": b64u.EncodeToString(k.id), "type": "public-key",
		"authenticatorAttachment": "cross-platform", "clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64u.EncodeToString(cd),
			"authenticatorData": b64u.EncodeToString(ad),
			"signature":         b64u.EncodeToString(sig),
			"userHandle":        b64u.EncodeToString(k.handle),
		},
	})
}

func (k *softKey) marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		k.t.Fatal(err)
	}
	return b
}
