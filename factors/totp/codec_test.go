package totp

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestRecordCodec(t *testing.T) {
	created := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	rec := userRecord{Creds: []credRecord{
		{ID: "a", Name: "Phone", Algorithm: "SHA1", Digits: 6, Period: 30, Sealed: []byte{1, 2, 3}, LastStep: 63_000_000, CreatedAt: created},
		{ID: "b", Name: "Ключ ☎", Algorithm: "SHA512", Digits: 8, Period: 60, Sealed: make([]byte, 300), LastStep: 1, CreatedAt: created, LastUsedAt: created.Add(time.Hour)},
	}}
	b := encodeRecord(rec)
	got, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, rec)
	}
	if got, err := decodeRecord(encodeRecord(userRecord{})); err != nil || len(got.Creds) != 0 {
		t.Errorf("empty record: %+v %v", got, err)
	}
	// Every truncation, trailing garbage and an unknown version are
	// refused, never half-read.
	for i := range len(b) {
		if _, err := decodeRecord(b[:i]); err == nil {
			t.Errorf("truncated to %d bytes: decoded", i)
		}
	}
	if _, err := decodeRecord(append(b[:len(b):len(b)], 0)); !errors.Is(err, errCorrupt) {
		t.Errorf("trailing byte: err %v", err)
	}
	bad := append([]byte(nil), b...)
	bad[0] = 2
	if _, err := decodeRecord(bad); err == nil {
		t.Error("unknown version decoded")
	}
	if _, err := decodeRecord([]byte{recordVersion, 0xff, 0xff, 0xff, 0xff, 0x0f}); !errors.Is(err, errCorrupt) {
		t.Errorf("huge count: err %v", err)
	}
}
