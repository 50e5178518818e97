package authn

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/authn/store"
)

// Brute-force regulation: every verifier (password, TOTP, email code,
// recovery code, security key) reserves a try before it checks anything,
// counted per account and per client address. Too many tries in a window
// lock the account (or the address) for a while, doubling on every repeat.
//
// Why tries are counted before the check and not failures after it: a
// burst of concurrent guesses would otherwise all pass the "is it locked?"
// test before the first failure is written, and the limit would only hold
// for attackers polite enough to wait for each answer.
//
// Why a lock still lets a few tries through: a person who types the right
// password into a locked account must be told it is locked, and until
// when (otherwise they keep retrying a password they believe is wrong).
// So a locked account still checks up to MaxFailures tries per lock and
// says "locked" to a right one; beyond that budget nothing is checked and
// every answer is "wrong password". Without the budget the "locked" answer
// would be an oracle that confirms a guessed password at full speed.

// Gate groups the verifiers that share one count per account. A password
// success must not clear second-factor failures: someone who has the
// password could otherwise reset the count between guesses of the code.
type Gate string

// The gates.
const (
	GatePassword     Gate = "password"
	GateSecondFactor Gate = "second_factor"
)

// ErrLocked: the account or the client's address is locked. The error is a
// *LockedError saying until when.
var ErrLocked = errors.New("authn: locked after too many failed attempts")

// ErrTicketInvalid: an unlock ticket that is unknown, used or expired.
var ErrTicketInvalid = errors.New("authn: the unlock request expired; sign in again")

// LockedError refuses an attempt while a lock holds. It is only returned
// once the credentials were right; until then a locked account answers
// exactly like a wrong password.
type LockedError struct {
	// Until is when the lock ends; zero when it holds until someone
	// unlocks it (Reported).
	Until time.Time
	// Network: the client's address is locked, not the account.
	Network bool
	// Reported: the person said "this wasn't me"; only an email code or
	// an admin unlocks it.
	Reported bool
	// Ticket lets the person ask for an unlock code by email (see
	// MFA.SendUnlockCode); empty when that is not possible.
	Ticket string
}

func (e *LockedError) Error() string {
	switch {
	case e.Reported:
		return "authn: account locked after a reported sign-in; unlock by email or ask an admin"
	case e.Network:
		return fmt.Sprintf("authn: too many failed attempts from this address; locked until %s", e.Until.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("authn: account locked after too many failed attempts until %s", e.Until.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Unwrap() error { return ErrLocked }

// RegulationOptions tune the Regulator; zero values take the defaults.
type RegulationOptions struct {
	// MaxFailures per account in Window before it locks (default 5).
	MaxFailures int
	// IPMaxFailures per client address in Window before it locks (default
	// 20: an office behind one address has many people who mistype).
	IPMaxFailures int
	// Window is how long failures count (default 10 minutes).
	Window time.Duration
	// Lockout is the first lock's length (default 5 minutes); each
	// further lock within a day doubles it, up to MaxLockout (default 1h).
	Lockout    time.Duration
	MaxLockout time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
	// Events hears of every lock that starts (LockedOut), for metrics
	// (nil: nobody).
	Events Events
}

// Defaults of RegulationOptions.
const (
	DefaultMaxFailures   = 5
	DefaultIPMaxFailures = 20
	DefaultWindow        = 10 * time.Minute
	DefaultLockout       = 5 * time.Minute
	DefaultMaxLockout    = time.Hour
)

const (
	regulatePrefix = "regulate/"
	// strikeMemory: lockouts are remembered (for the doubling) until a day
	// passes without a failure.
	strikeMemory = 24 * time.Hour
	// ticketTTL bounds how long a revealed lock may be turned into an
	// unlock code request.
	ticketTTL = 30 * time.Minute
	regulateV = 1
	stripes   = 64
)

// Lockout kinds passed to Events.LockedOut.
const (
	LockoutPassword     = "password"
	LockoutSecondFactor = "second_factor"
	LockoutIP           = "ip"
)

// Regulator counts tries in the store (so a restart keeps every count and
// lock) with compare-and-swap (so several processes on one backend agree).
type Regulator struct {
	kv KV
	o  RegulationOptions
	mu [stripes]sync.Mutex // serialises updates of one key in this process
}

// NewRegulator builds the regulator.
func NewRegulator(kv KV, o RegulationOptions) *Regulator {
	o.MaxFailures = cmp.Or(max(o.MaxFailures, 0), DefaultMaxFailures)
	o.IPMaxFailures = cmp.Or(max(o.IPMaxFailures, 0), DefaultIPMaxFailures)
	o.Window = cmp.Or(max(o.Window, 0), DefaultWindow)
	o.Lockout = cmp.Or(max(o.Lockout, 0), DefaultLockout)
	o.MaxLockout = max(cmp.Or(max(o.MaxLockout, 0), DefaultMaxLockout), o.Lockout)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Events == nil {
		o.Events = NoEvents{}
	}
	return &Regulator{kv: kv, o: o}
}

// failRecord is the stored count of one account at one gate, or of one
// address.
type failRecord struct {
	V       int       `json:"v"`
	Tries   int       `json:"tries"`           // tries counted in the window (or in the lock)
	Since   time.Time `json:"since"`           // start of the window
	Strikes int       `json:"strikes"`         // locks so far, for the doubling
	Until   time.Time `json:"until,omitzero"`  // locked until
	Last    time.Time `json:"last"`            // last counted try
	Reason  string    `json:"reason,omitzero"` // hold records: why
}

// Try is one reserved attempt at a gate. The verifier runs only when Check
// is true; then exactly one of Fail or Pass reports the outcome (unless
// Locked refused right credentials).
type Try struct {
	// Check is false when a lock's budget of tries is spent: do not run
	// the verifier, answer as for wrong credentials.
	Check bool
	// Locked is the lock in force, if any. Reveal it only to right
	// credentials.
	Locked *LockedError

	r           *Regulator
	gate        Gate
	userKey     string
	ipKey       string
	userStarted time.Time // the user lock this try started, if any
	ipStarted   time.Time
}

// Begin reserves a try at gate for subject (a username, or any stable
// name for a login that matches no account; "" = counted per address
// only, for sign-ins that name no account such as passkeys) from ip ("" =
// unknown). It fails only when the store does.
func (r *Regulator) Begin(ctx context.Context, gate Gate, subject, ip string) (*Try, error) {
	t := &Try{Check: true, r: r, gate: gate}
	if r == nil {
		return t, nil
	}
	now := r.now()
	if k := ipKey(ip); k != "" {
		t.ipKey = regulatePrefix + "ip/" + k
		// During an address lock only a small budget (the per-account
		// one) is still checked, enough to tell a person who types right
		// credentials that the address is locked; beyond it nothing is
		// checked and no password hash is spent (see Users.SignIn).
		ok, lock, started, err := r.reserve(ctx, t.ipKey, r.o.IPMaxFailures, min(r.o.MaxFailures, r.o.IPMaxFailures), now)
		if err != nil {
			return nil, err
		}
		if !ok {
			t.Check, t.Locked = false, &LockedError{Until: lock, Network: true}
			return t, nil
		}
		t.ipStarted = started
		if !lock.IsZero() {
			t.Locked = &LockedError{Until: lock, Network: true}
		}
	}
	if subject == "" {
		return t, nil
	}
	t.userKey = userFailKey(gate, subject)
	ok, lock, started, err := r.reserve(ctx, t.userKey, r.o.MaxFailures, r.o.MaxFailures, now)
	if err != nil {
		return nil, err
	}
	t.userStarted = started
	if !ok {
		t.Check, t.Locked = false, &LockedError{Until: lock}
		return t, nil
	}
	if !lock.IsZero() {
		t.Locked = &LockedError{Until: lock}
	}
	// A hold is read for every subject, known or not, so that a login
	// name matching no account costs the same store work.
	held, err := r.held(ctx, subject)
	if err != nil {
		return nil, err
	}
	if held {
		t.Locked = &LockedError{Reported: true}
	}
	return t, nil
}

// Status says whether a lock holds for subject at gate or for ip, without
// counting a try (for pages that must not spend the budget).
func (r *Regulator) Status(ctx context.Context, gate Gate, subject, ip string) (*LockedError, error) {
	if r == nil {
		return nil, nil
	}
	now := r.now()
	if held, err := r.held(ctx, subject); err != nil || held {
		if err != nil {
			return nil, err
		}
		return &LockedError{Reported: true}, nil
	}
	rec, _, err := r.load(ctx, userFailKey(gate, subject))
	if err != nil {
		return nil, err
	}
	if now.Before(rec.Until) {
		return &LockedError{Until: rec.Until}, nil
	}
	if k := ipKey(ip); k != "" {
		rec, _, err := r.load(ctx, regulatePrefix+"ip/"+k)
		if err != nil {
			return nil, err
		}
		if now.Before(rec.Until) {
			return &LockedError{Until: rec.Until, Network: true}, nil
		}
	}
	return nil, nil
}

// Fail reports wrong credentials. It returns when the account's lock that
// this try started ends (zero if it started none), so the caller can log
// it; the lockout hook is called here, for the account and the address.
func (t *Try) Fail(ctx context.Context) time.Time {
	if t == nil || t.r == nil {
		return time.Time{}
	}
	if !t.ipStarted.IsZero() {
		t.r.lockedOut(LockoutIP, t.ipKey, t.ipStarted)
	}
	if !t.userStarted.IsZero() && t.userKey != "" {
		kind := LockoutPassword
		if t.gate == GateSecondFactor {
			kind = LockoutSecondFactor
		}
		t.r.lockedOut(kind, t.userKey, t.userStarted)
	}
	return t.userStarted
}

// Pass reports right credentials that were accepted: the account's count
// at this gate starts again, and the address gets this try back (people
// signing in successfully from one office must not lock it).
func (t *Try) Pass(ctx context.Context) error {
	if t == nil || t.r == nil {
		return nil
	}
	if t.userKey != "" {
		if err := t.r.clear(ctx, t.userKey); err != nil {
			return err
		}
	}
	if t.ipKey != "" {
		return t.r.giveBack(ctx, t.ipKey, t.r.o.IPMaxFailures, t.ipStarted)
	}
	return nil
}

// Release gives the try back without a verdict: nothing was checked (the
// code had expired, the store failed), so it must not count.
func (t *Try) Release(ctx context.Context) error {
	if t == nil || t.r == nil {
		return nil
	}
	if t.userKey != "" {
		if err := t.r.giveBack(ctx, t.userKey, t.r.o.MaxFailures, t.userStarted); err != nil {
			return err
		}
	}
	if t.ipKey != "" {
		return t.r.giveBack(ctx, t.ipKey, t.r.o.IPMaxFailures, t.ipStarted)
	}
	return nil
}

// reserve counts one try on key against limit (tries in a window) and
// budget (tries still checked during a lock). ok is false when a lock's
// budget is spent (nothing is counted then); lock is the lock in force
// for this try (zero if none); started is set when this try started a lock.
func (r *Regulator) reserve(ctx context.Context, key string, limit, budget int, now time.Time) (ok bool, lock, started time.Time, err error) {
	err = r.update(ctx, key, func(rec *failRecord) (bool, error) {
		ok, lock, started = true, time.Time{}, time.Time{}
		if !rec.Until.IsZero() && !now.Before(rec.Until) {
			// The lock is over: a fresh window, strikes kept.
			rec.Until, rec.Tries, rec.Since = time.Time{}, 0, now
		}
		if now.Sub(rec.Last) >= strikeMemory {
			rec.Strikes = 0
		}
		locked := now.Before(rec.Until)
		if !locked && now.Sub(rec.Since) >= r.o.Window {
			rec.Tries, rec.Since = 0, now
		}
		if locked && rec.Tries >= budget {
			ok, lock = false, rec.Until
			return false, nil // the budget is spent: nothing to write
		}
		rec.Tries++
		rec.Last = now
		if locked {
			lock = rec.Until
			if rec.Tries >= budget {
				// Still guessing during the lock: the next lock is longer
				// and starts now. Tries stay spent until it ends.
				rec.Strikes++
				rec.Until = now.Add(r.lockFor(rec.Strikes))
			}
			return true, nil
		}
		if rec.Tries >= limit {
			// This try starts a lock. It is itself still checked as if
			// unlocked: the limit is that many failures, and a right
			// answer now clears the lock again (Pass).
			rec.Strikes++
			rec.Until = now.Add(r.lockFor(rec.Strikes))
			rec.Tries = 0
			started = rec.Until
		}
		return true, nil
	})
	return ok, lock, started, err
}

// clear removes the count of key (a success at that gate).
func (r *Regulator) clear(ctx context.Context, key string) error {
	return r.update(ctx, key, func(rec *failRecord) (bool, error) {
		*rec = failRecord{}
		return true, nil
	})
}

// giveBack returns one try to key, and undoes the lock that very try
// started.
func (r *Regulator) giveBack(ctx context.Context, key string, limit int, started time.Time) error {
	return r.update(ctx, key, func(rec *failRecord) (bool, error) {
		if !started.IsZero() && rec.Until.Equal(started) {
			rec.Until, rec.Tries = time.Time{}, limit-1
			rec.Strikes = max(rec.Strikes-1, 0)
			return true, nil
		}
		if rec.Tries == 0 {
			return false, nil
		}
		rec.Tries--
		return true, nil
	})
}

// update applies fn to the record of key under the key's stripe lock and
// writes it back with a compare-and-swap (another process may share the
// store). fn returns false to write nothing; a record left with no tries,
// strikes or lock is deleted.
func (r *Regulator) update(ctx context.Context, key string, fn func(*failRecord) (bool, error)) error {
	m := &r.mu[stripe(key)]
	m.Lock()
	defer m.Unlock()
	for range maxCASRetries {
		rec, ver, err := r.load(ctx, key)
		if err != nil {
			return err
		}
		before := rec
		write, err := fn(&rec)
		if err != nil || !write {
			return err
		}
		now := r.now()
		if rec.Tries == 0 && rec.Strikes == 0 && rec.Until.IsZero() {
			if ver == 0 {
				return nil
			}
			err = r.kv.CompareAndDelete(ctx, key, ver)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
		} else {
			rec.V = regulateV
			raw, _ := json.Marshal(rec)
			// A new lock is written durably: a crash right after a
			// lockout must not hand the attacker a fresh budget. Plain
			// counts are not: losing a few in a crash is harmless, and an
			// fsync per wrong password would be a cheap way to load the disk.
			durable := !rec.Until.Equal(before.Until) && !rec.Until.IsZero()
			_, err = r.kv.CompareAndSet(ctx, key, raw, ver, store.WriteOptions{TTL: r.ttl(rec, now), Durable: durable})
		}
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("regulate: %w", err)
		}
		return nil
	}
	return fmt.Errorf("regulate: %w", store.ErrConflict)
}

func (r *Regulator) load(ctx context.Context, key string) (failRecord, uint64, error) {
	it, err := r.kv.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return failRecord{}, 0, nil
	}
	if err != nil {
		return failRecord{}, 0, fmt.Errorf("regulate: %w", err)
	}
	var rec failRecord
	if err := json.Unmarshal(it.Value, &rec); err != nil || rec.V != regulateV {
		// A damaged count must not block anyone forever nor crash:
		// start it again (and say so).
		r.o.Logger.Warn("regulate: discarding an unreadable record", "key", key)
		return failRecord{}, it.Version, nil
	}
	return rec, it.Version, nil
}

// ttl keeps a record as long as it matters: the window, the lock, and the
// strike memory that makes the next lock longer. The times inside the
// record decide; the TTL only collects garbage.
func (r *Regulator) ttl(rec failRecord, now time.Time) time.Duration {
	d := rec.Since.Add(r.o.Window).Sub(now)
	if !rec.Until.IsZero() {
		d = max(d, rec.Until.Sub(now))
	}
	if rec.Strikes > 0 {
		d = max(d, rec.Last.Add(strikeMemory).Sub(now))
	}
	return max(d, time.Second)
}

// lockFor is the length of the n-th lock: Lockout doubled n-1 times, at
// most MaxLockout.
func (r *Regulator) lockFor(n int) time.Duration {
	d := r.o.Lockout
	for i := 1; i < n && d < r.o.MaxLockout; i++ {
		d *= 2
	}
	return min(d, r.o.MaxLockout)
}

func (r *Regulator) lockedOut(kind, key string, until time.Time) {
	r.o.Logger.Warn("lockout after too many failed attempts", "kind", kind, "key", key, "until", until.UTC().Format(time.RFC3339))
	r.o.Events.LockedOut(kind)
}

// Hold locks username until Unlock ("this wasn't me"): no lockout
// period ends it. The record is durable and has no TTL.
func (r *Regulator) Hold(ctx context.Context, username, reason string) error {
	if r == nil {
		return nil
	}
	raw, _ := json.Marshal(failRecord{V: regulateV, Since: r.now(), Reason: reason})
	if _, err := r.kv.Set(ctx, holdKey(username), raw, store.WriteOptions{Durable: true}); err != nil {
		return fmt.Errorf("hold account %q: %w", username, err)
	}
	return nil
}

func (r *Regulator) held(ctx context.Context, subject string) (bool, error) {
	_, err := r.kv.Get(ctx, holdKey(subject))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("regulate: %w", err)
	}
	return true, nil
}

// Unlock ends every lock of username (an admin, or the person with a code
// by email) and clears its counts. It reports whether a lock was in force.
// Address locks stay: someone with an account of their own must not be
// able to clear the address they are guessing from.
func (r *Regulator) Unlock(ctx context.Context, username string) (bool, error) {
	if r == nil {
		return false, nil
	}
	was, err := r.Status(ctx, GatePassword, username, "")
	if err != nil {
		return false, err
	}
	locked := was != nil
	if !locked {
		if was, err = r.Status(ctx, GateSecondFactor, username, ""); err != nil {
			return false, err
		}
		locked = was != nil
	}
	for _, g := range []Gate{GatePassword, GateSecondFactor} {
		if err := r.clear(ctx, userFailKey(g, username)); err != nil {
			return false, fmt.Errorf("unlock %q: %w", username, err)
		}
	}
	if err := r.kv.Delete(ctx, holdKey(username)); err != nil {
		return false, fmt.Errorf("unlock %q: %w", username, err)
	}
	return locked, nil
}

// IssueTicket returns a one-time ticket that lets the holder of right
// credentials for a locked account ask for an unlock code by email.
func (r *Regulator) IssueTicket(ctx context.Context, username string) (string, error) {
	if r == nil {
		return "", nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("unlock ticket: %w", err)
	}
	token := hex.EncodeToString(b)
	if _, err := r.kv.Set(ctx, ticketKey(token), []byte(username), store.WriteOptions{TTL: ticketTTL}); err != nil {
		return "", fmt.Errorf("unlock ticket: %w", err)
	}
	return token, nil
}

// TicketOwner returns the account of a live ticket.
func (r *Regulator) TicketOwner(ctx context.Context, token string) (string, error) {
	if r == nil || len(token) != 64 {
		return "", ErrTicketInvalid
	}
	it, err := r.kv.Get(ctx, ticketKey(token))
	if errors.Is(err, store.ErrNotFound) {
		return "", ErrTicketInvalid
	}
	if err != nil {
		return "", fmt.Errorf("unlock ticket: %w", err)
	}
	return string(it.Value), nil
}

// consumeTicket ends a ticket once it has been used.
func (r *Regulator) consumeTicket(ctx context.Context, token string) {
	if r != nil && len(token) == 64 {
		_, _ = r.kv.Consume(ctx, ticketKey(token))
	}
}

func (r *Regulator) now() time.Time { return r.o.Now().Round(0).UTC() }

// userFailKey names the count of subject at gate. Usernames are
// [a-z0-9._-]; anything else (a login that matches no account) is hashed
// under a '#' that no username can start with, so the key stays short and
// cannot collide with a real account.
func userFailKey(gate Gate, subject string) string {
	return regulatePrefix + "user/" + string(gate) + "/" + subjectKey(subject)
}

func holdKey(subject string) string { return regulatePrefix + "hold/" + subjectKey(subject) }

func subjectKey(subject string) string {
	if name, err := NormalizeUsername(subject); err == nil && name == subject {
		return name
	}
	h := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(subject))))
	return "#" + hex.EncodeToString(h[:16])
}

func ticketKey(token string) string {
	h := sha256.Sum256([]byte(token))
	return regulatePrefix + "ticket/" + hex.EncodeToString(h[:])
}

// ipKey is what an address is counted under: IPv4 addresses alone, IPv6
// addresses by their /64, which one subscriber usually holds whole (so
// hopping through it gains nothing). "" for no or an unparsable address.
func ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

func stripe(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % stripes)
}
