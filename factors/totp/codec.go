package totp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The user record is decoded on every sign-in, so it is stored in a small
// binary form rather than JSON: decoding JSON took about 4.5 µs, half of
// Verify's budget, this takes a fraction of a microsecond. Layout (varints
// are encoding/binary's):
//
//	byte    recordVersion
//	uvarint number of credentials, then for each:
//	  string  id, name, algorithm   (uvarint length + bytes)
//	  uvarint digits, period
//	  bytes   sealed secret         (uvarint length + bytes)
//	  uvarint last accepted step
//	  varint  created, last used    (Unix ns; 0 = zero time)
//
// Pending enrolments are read once and stay JSON.

// errCorrupt: a stored record does not decode. It says nothing about the
// contents, which hold sealed secrets.
var errCorrupt = errors.New("totp: corrupt credentials record")

func encodeRecord(rec userRecord) []byte {
	b := make([]byte, 0, 16+len(rec.Creds)*128)
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, uint64(len(rec.Creds)))
	for i := range rec.Creds {
		c := &rec.Creds[i]
		b = appendBytes(b, []byte(c.ID))
		b = appendBytes(b, []byte(c.Name))
		b = appendBytes(b, []byte(c.Algorithm))
		b = binary.AppendUvarint(b, uint64(c.Digits))
		b = binary.AppendUvarint(b, uint64(c.Period))
		b = appendBytes(b, c.Sealed)
		b = binary.AppendUvarint(b, c.LastStep)
		b = binary.AppendVarint(b, unixNano(c.CreatedAt))
		b = binary.AppendVarint(b, unixNano(c.LastUsedAt))
	}
	return b
}

func decodeRecord(b []byte) (userRecord, error) {
	if len(b) == 0 {
		return userRecord{}, errCorrupt
	}
	if b[0] != recordVersion {
		return userRecord{}, fmt.Errorf("totp: credentials record of unknown schema version %d", b[0])
	}
	r := reader{b: b[1:]}
	n := r.uvarint()
	// Every credential takes more than one byte: a count beyond what is
	// left is corruption, not a reason to allocate.
	if n > uint64(len(r.b)) {
		return userRecord{}, errCorrupt
	}
	rec := userRecord{Creds: make([]credRecord, n)}
	for i := range rec.Creds {
		c := &rec.Creds[i]
		c.ID = string(r.bytes())
		c.Name = string(r.bytes())
		c.Algorithm = string(r.bytes())
		c.Digits = int(r.uvarint())
		c.Period = uint(r.uvarint())
		c.Sealed = r.bytes()
		c.LastStep = r.uvarint()
		c.CreatedAt = fromUnixNano(r.varint())
		c.LastUsedAt = fromUnixNano(r.varint())
	}
	if r.err != nil || len(r.b) != 0 {
		return userRecord{}, errCorrupt
	}
	return rec, nil
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// reader decodes the record; the first error sticks and later reads
// return zero values, so decodeRecord checks once at the end.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns the next length-prefixed field, as a slice of the input
// (Item values are the caller's own copy, so keeping it is safe).
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errCorrupt
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}
