package sentcode

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/factors"
)

// Stored keys. The purpose comes before the user, and purposes never
// contain "/", so every (purpose, user) pair has its own key whatever the
// user name holds. The email factor's keys ("emailcode/code/…",
// "emailcode/sends/…") are the ones it used before the engine was shared,
// so codes and send logs survive the upgrade.
func (e *Engine) codeKey(user string, p factors.Purpose) string {
	return e.opt.Name + "/code/" + string(p) + "/" + user
}

// sendsKey holds one user's send log: the cap counts all purposes together.
func (e *Engine) sendsKey(user string) string { return e.opt.Name + "/sends/" + user }

// hashContext binds a code's hash to its factor, user and purpose, so a
// hash copied onto another user's or purpose's record never matches.
func (e *Engine) hashContext(user string, p factors.Purpose) string {
	return e.opt.HashLabel + "/" + string(p) + "/" + user
}

// recordFormat is bumped when the stored shape changes incompatibly
// (fields added with omitempty are compatible).
const recordFormat = 1

// codeRecord is the stored state of one code. Only the keyed hash of the
// code and the masked address are kept: the store never holds the code or
// the full address (Keep is whatever the factor sealed itself).
type codeRecord struct {
	Format    int       `json:"f"`
	Hash      []byte    `json:"h"`
	Masked    string    `json:"m"`
	Ref       string    `json:"r,omitempty"`
	Keep      []byte    `json:"k,omitempty"`
	CreatedAt time.Time `json:"c"`
	ExpiresAt time.Time `json:"e"`
	Tries     int       `json:"t,omitempty"` // wrong tries so far
	Used      bool      `json:"u,omitempty"`
}

func (r codeRecord) encode() ([]byte, error) {
	r.Format = recordFormat
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode code record: %w", err)
	}
	return b, nil
}

func decodeCode(b []byte) (codeRecord, error) {
	var r codeRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return codeRecord{}, fmt.Errorf("decode code record: %w", err)
	}
	if r.Format != recordFormat || len(r.Hash) == 0 {
		return codeRecord{}, errors.New("code record of an unknown format")
	}
	return r, nil
}

// sendLog lists one user's sends (and sends in flight) of the last hour,
// oldest first.
type sendLog struct {
	Format int         `json:"f"`
	Sends  []sendEntry `json:"s"`
}

type sendEntry struct {
	ID      string          `json:"i"` // to undo exactly this reservation
	At      time.Time       `json:"a"`
	Purpose factors.Purpose `json:"p"`
}

func (l sendLog) encode() ([]byte, error) {
	l.Format = recordFormat
	b, err := json.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("encode send log: %w", err)
	}
	return b, nil
}

func decodeSends(b []byte) (sendLog, error) {
	var l sendLog
	if err := json.Unmarshal(b, &l); err != nil {
		return sendLog{}, fmt.Errorf("decode send log: %w", err)
	}
	if l.Format != recordFormat {
		return sendLog{}, errors.New("send log of an unknown format")
	}
	return l, nil
}

// prune drops the sends that left the cap window by now. It returns a new
// slice: the caller's log is not modified.
func (l sendLog) prune(now time.Time) sendLog {
	cut := now.Add(-capWindow)
	kept := make([]sendEntry, 0, len(l.Sends)+1)
	for _, s := range l.Sends {
		if s.At.After(cut) {
			kept = append(kept, s)
		}
	}
	return sendLog{Format: l.Format, Sends: kept}
}

// last is the time of the newest send for p.
func (l sendLog) last(p factors.Purpose) (time.Time, bool) {
	var t time.Time
	found := false
	for _, s := range l.Sends {
		if s.Purpose == p && (!found || s.At.After(t)) {
			t, found = s.At, true
		}
	}
	return t, found
}
