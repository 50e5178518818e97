package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Copying a whole store from one backend to another (keygate migrate,
// restoring a backup onto a backend that has no restore of its own) goes
// through the KV contract only: Scan the source, Set into the target. A
// backend's rows are not portable (pgstore seals values bound to their row
// and blinds some keys; Badger keeps its version inside the value), and the
// versions are each store's own: the target hands out new ones, which is
// harmless because nothing keeps a store version beyond a process's memory.

var (
	// ErrNotEmpty: Copy was asked to write into a store that already holds
	// records and CopyOptions.Replace was not set. Nothing was written.
	ErrNotEmpty = errors.New("store: the target already holds records")
	// ErrMismatch: after the copy the target does not hold what the source
	// holds (a write lost, or the source changed during the copy).
	ErrMismatch = errors.New("store: the target does not hold what the source holds")
)

// expiryTolerance is how far apart the source's and the target's expiry of
// one record may be and still count as the same: Badger keeps expiry in
// whole seconds (rounded up), and a database server judges expiry by its
// own clock, which may be a little apart from this machine's.
const expiryTolerance = 5 * time.Second

// CopyOptions tune Copy.
type CopyOptions struct {
	// Replace lets Copy write into a target that holds records: records of
	// the same key are overwritten and records the source does not have
	// are deleted, so the target ends up holding what the source holds.
	// Without it a non-empty target is refused with ErrNotEmpty.
	Replace bool
	// NoCheck skips the check after the copy, for a copy of a store in
	// use (a backup while replicas serve): the source moves on during the
	// copy, and a check would report those changes. Each record is then
	// as it was when it was read, not all at one instant.
	NoCheck bool
}

// PrefixCount is what Copy saw under one top-level key prefix (see
// TopPrefix).
type PrefixCount struct {
	Prefix string
	// Source: live records the copy read from the source.
	Source int
	// Expired: records read but not written because their TTL passed
	// between the read and the write (Scan skips those already expired).
	Expired int
	// Copied: records written into the target.
	Copied int
	// Removed: records only the target had, deleted (CopyOptions.Replace).
	Removed int
	// Target: live records in the target when it was checked.
	Target int
	// ExpiredSince: records the check did not find in one of the stores
	// because their TTL passed between the reads (not a mismatch).
	ExpiredSince int
	// Missing, Extra, Differ are the mismatches: records the source holds
	// and the target lacks, records only the target holds, and records
	// whose value or expiry differ.
	Missing, Extra, Differ int
}

// OK says whether the prefix checked out.
func (p PrefixCount) OK() bool { return p.Missing == 0 && p.Extra == 0 && p.Differ == 0 }

// CopyReport is what Copy did, per top-level prefix in byte order.
type CopyReport struct {
	Prefixes []PrefixCount
}

// Total sums the counts of every prefix.
func (r *CopyReport) Total() PrefixCount {
	var t PrefixCount
	for _, p := range r.Prefixes {
		t.Source += p.Source
		t.Expired += p.Expired
		t.Copied += p.Copied
		t.Removed += p.Removed
		t.Target += p.Target
		t.ExpiredSince += p.ExpiredSince
		t.Missing += p.Missing
		t.Extra += p.Extra
		t.Differ += p.Differ
	}
	return t
}

// TopPrefix is the part of key a report groups it by: up to and including
// the first '/' (user/, session/, policy/ …). A key without '/' in its
// first 64 bytes is grouped as "(other)".
func TopPrefix(key string) string {
	if i := strings.IndexByte(key, '/'); i >= 0 && i < 64 {
		return key[:i+1]
	}
	return "(other)"
}

// record is what the check remembers of one record: a digest of its value
// (not the value: a store may hold many sessions) and its expiry.
type record struct {
	sum [sha256.Size]byte
	exp time.Time
}

// Copy copies every live record of src into dst, keeping each record's
// remaining TTL and skipping those whose TTL has passed, then checks that
// dst holds what src holds (a second read of both) and reports the counts
// per top-level prefix. It refuses a dst that holds records unless
// opt.Replace is set (ErrNotEmpty, nothing written). A failed check
// returns the report and an error wrapping ErrMismatch.
//
// Nobody should write to src meanwhile: a record written during the copy
// may be missed, and the check then reports it. The records are written
// without a sync each (a few hundred thousand fsyncs would take minutes);
// the last write is durable, which on both backends makes every earlier
// one durable too (Badger syncs its whole log, PostgreSQL flushes the WAL
// up to that commit).
func Copy(ctx context.Context, dst, src KV, opt CopyOptions) (*CopyReport, error) {
	// The real clock, not an injected one: remaining TTLs and the
	// stores' own expiry must be judged by the same time.
	now := time.Now
	counts := map[string]*PrefixCount{}
	count := func(key string) *PrefixCount {
		p := TopPrefix(key)
		c := counts[p]
		if c == nil {
			c = &PrefixCount{Prefix: p}
			counts[p] = c
		}
		return c
	}
	report := func() *CopyReport {
		r := &CopyReport{}
		for _, c := range counts {
			r.Prefixes = append(r.Prefixes, *c)
		}
		slices.SortFunc(r.Prefixes, func(a, b PrefixCount) int { return strings.Compare(a.Prefix, b.Prefix) })
		return r
	}

	if !opt.Replace {
		n, err := countLive(ctx, dst)
		if err != nil {
			return nil, fmt.Errorf("store: copy: read the target: %w", err)
		}
		switch {
		case n >= countCap:
			return nil, fmt.Errorf("%w: %d or more records", ErrNotEmpty, n)
		case n > 0:
			return nil, fmt.Errorf("%w: %d records", ErrNotEmpty, n)
		}
	}

	copied := map[string]struct{}{}
	var last *Item
	err := src.Scan(ctx, "", func(it Item) error {
		c := count(it.Key)
		c.Source++
		wo := WriteOptions{}
		if !it.ExpiresAt.IsZero() {
			wo.TTL = it.ExpiresAt.Sub(now())
			if wo.TTL <= 0 {
				c.Expired++
				return nil
			}
		}
		if _, err := dst.Set(ctx, it.Key, it.Value, wo); err != nil {
			return fmt.Errorf("store: copy: write a %s record: %w", c.Prefix, err)
		}
		c.Copied++
		copied[it.Key] = struct{}{}
		last = &it
		return nil
	})
	if err != nil {
		return report(), fmt.Errorf("store: copy: %w", err)
	}

	if opt.Replace {
		var stale []string
		err := dst.Scan(ctx, "", func(it Item) error {
			if _, ok := copied[it.Key]; !ok {
				stale = append(stale, it.Key)
			}
			return nil
		})
		if err != nil {
			return report(), fmt.Errorf("store: copy: read the target: %w", err)
		}
		// Removals are durable by the contract.
		for _, k := range stale {
			if err := dst.Delete(ctx, k); err != nil {
				return report(), fmt.Errorf("store: copy: delete a %s record only the target had: %w", TopPrefix(k), err)
			}
			count(k).Removed++
		}
	}

	if last != nil {
		// The durable write that makes the whole copy durable (see above):
		// the last record again, with its remaining TTL.
		wo := WriteOptions{Durable: true}
		if !last.ExpiresAt.IsZero() {
			wo.TTL = max(last.ExpiresAt.Sub(now()), time.Second)
		}
		if _, err := dst.Set(ctx, last.Key, last.Value, wo); err != nil {
			return report(), fmt.Errorf("store: copy: sync the target: %w", err)
		}
	}

	if opt.NoCheck {
		return report(), nil
	}
	if err := check(ctx, dst, src, now, count); err != nil {
		return report(), err
	}
	r := report()
	if t := r.Total(); !t.OK() {
		return r, fmt.Errorf("%w: %d missing, %d extra, %d different", ErrMismatch, t.Missing, t.Extra, t.Differ)
	}
	return r, nil
}

// check reads src and then dst again and compares them record by record,
// filling in Target, ExpiredSince and the mismatches.
func check(ctx context.Context, dst, src KV, now func() time.Time, count func(string) *PrefixCount) error {
	want := map[string]record{}
	err := src.Scan(ctx, "", func(it Item) error {
		want[it.Key] = record{sum: sha256.Sum256(it.Value), exp: it.ExpiresAt}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: copy: check: read the source again: %w", err)
	}
	// gone says a record's TTL has passed by the end of the reads (with
	// the tolerance: the two stores may round or judge expiry apart).
	var end time.Time
	gone := func(exp time.Time) bool { return !exp.IsZero() && !exp.After(end.Add(expiryTolerance)) }
	type seen struct {
		key string
		rec record
	}
	var extra []seen
	err = dst.Scan(ctx, "", func(it Item) error {
		c := count(it.Key)
		c.Target++
		got := record{sum: sha256.Sum256(it.Value), exp: it.ExpiresAt}
		w, ok := want[it.Key]
		if !ok {
			extra = append(extra, seen{it.Key, got})
			return nil
		}
		delete(want, it.Key)
		if !bytes.Equal(w.sum[:], got.sum[:]) || !sameExpiry(w.exp, got.exp) {
			c.Differ++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: copy: check: read the target: %w", err)
	}
	end = now()
	for k, w := range want {
		if gone(w.exp) {
			count(k).ExpiredSince++
		} else {
			count(k).Missing++
		}
	}
	for _, s := range extra {
		if gone(s.rec.exp) {
			count(s.key).ExpiredSince++
		} else {
			count(s.key).Extra++
		}
	}
	return nil
}

// sameExpiry: both without a TTL, or both with one and within the
// tolerance of each other.
func sameExpiry(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() == b.IsZero()
	}
	d := a.Sub(b)
	return d <= expiryTolerance && d >= -expiryTolerance
}

// errStop ends a Scan early.
var errStop = errors.New("stop")

// countCap bounds countLive: enough to tell a person how much is there
// without reading a large store to its end.
const countCap = 1000

// countLive counts kv's live records, up to countCap.
func countLive(ctx context.Context, kv KV) (int, error) {
	n := 0
	err := kv.Scan(ctx, "", func(Item) error {
		n++
		if n >= countCap {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return n, err
}
