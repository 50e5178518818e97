package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/policy"
)

// User is a person who may sign in.
type User struct {
	Username      string   `json:"username"`
	Email         string   `json:"email,omitempty"`
	DisplayName   string   `json:"display_name,omitempty"`
	Groups        []string `json:"groups"`
	Disabled      bool     `json:"disabled"`
	EmailVerified bool     `json:"email_verified"`
	// PasswordHash is the argon2id PHC string ("" = no password: sign-in
	// with a password always fails). Tagged json:"-" so that rendering a
	// User can never leak it.
	PasswordHash string    `json:"-"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// Lang and TimeZone are how notices are written to the person: the
	// language chosen on the portal and the IANA zone the browser reported,
	// both remembered at sign-in ("" = not known: English, UTC).
	Lang     string `json:"lang,omitempty"`
	TimeZone string `json:"time_zone,omitempty"`
	// AlwaysAsk: the person asked for a second factor even where a rule
	// is content with the password (always_ask.go). Sessions carry a copy,
	// so that the gate reads it from memory.
	AlwaysAsk bool `json:"always_ask,omitempty"`
}

// NewUser is what Users.Add needs to create a user.
type NewUser struct {
	Username      string
	Email         string
	DisplayName   string
	Groups        []string
	Password      string
	EmailVerified bool
}

// userRecord is the stored form of a User. It is private so that the
// domain type can evolve without breaking what is on disk; V is the schema
// version of the record.
type userRecord struct {
	V             int       `json:"v"`
	Username      string    `json:"username"`
	Email         string    `json:"email,omitempty"`
	DisplayName   string    `json:"display_name,omitempty"`
	Groups        []string  `json:"groups,omitempty"`
	Disabled      bool      `json:"disabled,omitempty"`
	EmailVerified bool      `json:"email_verified,omitempty"`
	PasswordHash  string    `json:"password_hash,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	Lang          string    `json:"lang,omitempty"`
	TimeZone      string    `json:"time_zone,omitempty"`
	AlwaysAsk     bool      `json:"always_ask,omitempty"`
}

const userRecordVersion = 1

// Limits on user fields. Groups and the display name end up in the
// Remote-Groups and Remote-Name headers sent upstream, so they must stay
// short and free of separators and control characters.
const (
	maxUsernameLen    = 64
	maxEmailLen       = 254
	maxDisplayNameLen = 128
	maxGroupLen       = 64
	maxGroups         = 64
)

// durable is how every user and session write is made: a user that "was
// created" must still exist after a crash.
func durable() store.WriteOptions { return store.WriteOptions{Durable: true} }

// Users manages user accounts in the store. It keeps no state of its own,
// so several Users (or processes sharing a backend) stay consistent through
// the store's compare-and-swap alone.
type Users struct {
	kv     KV
	hasher *Hasher
	policy PasswordPolicy
	now    func() time.Time
	reg    *Regulator
	ev     Events
}

// UserOptions are what Users needs.
type UserOptions struct {
	// Hasher hashes and checks passwords (required).
	Hasher *Hasher
	// Policy is what a new password must be.
	Policy PasswordPolicy
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Regulator limits sign-in tries per account and address (nil:
	// unlimited; only for tools that run offline on the data directory,
	// and tests).
	Regulator *Regulator
	// Events hears sign-ins, failures, locks and password changes: the
	// activity log with its notices, metrics (nil: nobody).
	Events Events
}

// NewUsers returns a Users over kv.
func NewUsers(kv KV, o UserOptions) *Users {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Events == nil {
		o.Events = NoEvents{}
	}
	return &Users{kv: kv, hasher: o.Hasher, policy: o.Policy, now: o.Now, reg: o.Regulator, ev: o.Events}
}

// Add creates a user. The username is lower-cased; it and the email (if
// any) must be unused, otherwise the error matches ErrUserExists (and
// ErrEmailTaken for the email). Of any number of concurrent Adds of one
// name exactly one succeeds.
func (us *Users) Add(ctx context.Context, nu NewUser) (User, error) {
	name, err := NormalizeUsername(nu.Username)
	if err != nil {
		return User{}, err
	}
	u := User{Username: name, Email: nu.Email, DisplayName: nu.DisplayName, Groups: nu.Groups, EmailVerified: nu.EmailVerified}
	if err := normalizeProfile(&u); err != nil {
		return User{}, err
	}
	if err := us.policy.Check(name, u.Email, nu.Password); err != nil {
		return User{}, err
	}
	// A cheap early answer before spending a hash on a name that is taken.
	// Only the compare-and-set below guarantees uniqueness.
	if _, err := us.kv.Get(ctx, userPrefix+name); err == nil {
		return User{}, fmt.Errorf("add user %q: %w", name, ErrUserExists)
	} else if !errors.Is(err, store.ErrNotFound) {
		return User{}, fmt.Errorf("add user %q: %w", name, err)
	}
	if u.PasswordHash, err = us.hasher.Hash(NormalizePassword(nu.Password)); err != nil {
		return User{}, fmt.Errorf("add user %q: %w", name, err)
	}
	u.CreatedAt = us.clock()
	u.UpdatedAt = u.CreatedAt

	// The record is written before its email index entry, so that an index
	// entry whose owner does not exist can only be left over from a delete
	// and may be taken over (see claimEmail).
	ver, err := us.kv.CompareAndSet(ctx, userPrefix+name, encodeUser(u), 0, durable())
	if errors.Is(err, store.ErrConflict) {
		return User{}, fmt.Errorf("add user %q: %w", name, ErrUserExists)
	}
	if err != nil {
		return User{}, fmt.Errorf("add user %q: %w", name, err)
	}
	if u.Email != "" {
		if _, err := us.claimEmail(ctx, u.Email, name); err != nil {
			// Undo, even if ctx is done: a user must not exist without its
			// index entry (the email would not be unique any more).
			if derr := us.kv.CompareAndDelete(context.WithoutCancel(ctx), userPrefix+name, ver); derr != nil && !errors.Is(derr, store.ErrNotFound) {
				err = errors.Join(err, fmt.Errorf("undo: %w", derr))
			}
			return User{}, fmt.Errorf("add user %q: %w", name, err)
		}
	}
	return u, nil
}

// Get returns the user (the name is matched case-insensitively).
func (us *Users) Get(ctx context.Context, username string) (User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return User{}, fmt.Errorf("%w: %q", ErrUserNotFound, username)
	}
	u, _, err := us.load(ctx, name)
	return u, err
}

// List returns every user in username order.
func (us *Users) List(ctx context.Context) ([]User, error) {
	var users []User
	err := us.kv.Scan(ctx, userPrefix, func(it store.Item) error {
		u, err := decodeUser(it.Value)
		if err != nil {
			return fmt.Errorf("%s: %w", it.Key, err)
		}
		users = append(users, u)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// SetPassword checks password against the policy and stores its hash.
// Revoking the user's sessions, if wanted, is the caller's job.
func (us *Users) SetPassword(ctx context.Context, username, password string) error {
	u, err := us.Get(ctx, username)
	if err != nil {
		return err
	}
	if err := us.policy.Check(u.Username, u.Email, password); err != nil {
		return err
	}
	hash, err := us.hasher.Hash(NormalizePassword(password))
	if err != nil {
		return fmt.Errorf("set password of %q: %w", u.Username, err)
	}
	if _, err = us.update(ctx, u.Username, func(x *User) error { x.PasswordHash = hash; return nil }, true); err != nil {
		return err
	}
	us.ev.Changed(ctx, u.Person(), activity.EventPasswordChanged, "", "", Client{})
	return nil
}

// SetDisabled disables or re-enables a user. A disabled user cannot sign
// in; revoking the sessions they already have is the caller's job
// (Sessions.RevokeUser).
func (us *Users) SetDisabled(ctx context.Context, username string, disabled bool) error {
	_, err := us.Update(ctx, username, func(u *User) error { u.Disabled = disabled; return nil })
	return err
}

// Update applies fn to the current user and stores the result with a
// compare-and-swap, re-reading and calling fn again when another writer got
// in first; fn must therefore be free of side effects. An error from fn is
// returned as is. fn may change Email, DisplayName, Groups, Disabled and
// EmailVerified; a changed Email always clears EmailVerified (a new address
// is unverified until proven), and Username, PasswordHash and CreatedAt are
// read-only here (use SetPassword for the password).
func (us *Users) Update(ctx context.Context, username string, fn func(*User) error) (User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return User{}, fmt.Errorf("%w: %q", ErrUserNotFound, username)
	}
	return us.update(ctx, name, fn, false)
}

// update is Update; internal callers may also change the password hash.
func (us *Users) update(ctx context.Context, name string, fn func(*User) error, internal bool) (User, error) {
	for range maxCASRetries {
		old, ver, err := us.load(ctx, name)
		if err != nil {
			return User{}, err
		}
		u := old
		u.Groups = slices.Clone(old.Groups)
		if err := fn(&u); err != nil {
			return User{}, err
		}
		if u.Username != old.Username || !u.CreatedAt.Equal(old.CreatedAt) || (!internal && u.PasswordHash != old.PasswordHash) {
			return User{}, fmt.Errorf("update user %q: %w: username, creation time and password hash are read-only", name, ErrInvalidUser)
		}
		if err := normalizeProfile(&u); err != nil {
			return User{}, fmt.Errorf("update user %q: %w", name, err)
		}
		emailChanged := !strings.EqualFold(u.Email, old.Email)
		var claimed uint64
		if emailChanged {
			u.EmailVerified = false
			// The new address is claimed before the record changes: while
			// we hold the claim, its owner (us) exists, so nobody can take
			// it over (see claimEmail).
			if u.Email != "" {
				if claimed, err = us.claimEmail(ctx, u.Email, name); err != nil {
					return User{}, fmt.Errorf("update user %q: %w", name, err)
				}
			}
		}
		u.UpdatedAt = us.clock()
		if _, err = us.kv.CompareAndSet(ctx, userPrefix+name, encodeUser(u), ver, durable()); err != nil {
			if claimed != 0 {
				// Release the new address again; losing this delete only
				// keeps an address reserved for this user.
				_ = us.kv.CompareAndDelete(context.WithoutCancel(ctx), emailKey(u.Email), claimed)
			}
			if errors.Is(err, store.ErrConflict) {
				continue
			}
			return User{}, fmt.Errorf("update user %q: %w", name, err)
		}
		if emailChanged && old.Email != "" {
			if err := us.releaseEmail(ctx, old.Email, name); err != nil {
				return u, fmt.Errorf("update user %q: release old email: %w", name, err)
			}
		}
		return u, nil
	}
	return User{}, fmt.Errorf("update user %q: %w", name, store.ErrConflict)
}

// Delete removes the user. Their factors and sessions are the caller's
// business.
func (us *Users) Delete(ctx context.Context, username string) error {
	name, err := NormalizeUsername(username)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrUserNotFound, username)
	}
	for range maxCASRetries {
		u, ver, err := us.load(ctx, name)
		if err != nil {
			return err
		}
		// Record first, index second: an index entry without its owner is
		// recognised as stale and can be taken over, while the reverse
		// order could leave a user whose address someone else may claim.
		err = us.kv.CompareAndDelete(ctx, userPrefix+name, ver)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %q", ErrUserNotFound, name)
		}
		if err != nil {
			return fmt.Errorf("delete user %q: %w", name, err)
		}
		if u.Email != "" {
			if err := us.releaseEmail(ctx, u.Email, name); err != nil {
				return fmt.Errorf("delete user %q: release email: %w", name, err)
			}
		}
		return nil
	}
	return fmt.Errorf("delete user %q: %w", name, store.ErrConflict)
}

// Authenticate is SignIn without a client address: regulated per account
// only.
func (us *Users) Authenticate(ctx context.Context, login, password string) (User, error) {
	return us.SignIn(ctx, login, password, Client{})
}

// SignIn checks a password for a username or an email address (both
// case-insensitive), under regulation per account and per c.IP.
//
// Unknown users, disabled users, wrong passwords and locked accounts all
// return ErrInvalidCredentials after the same time: the same argon2 hash
// (unknown users are verified against the hasher's dummy hash) and the
// same regulator reads and writes (a login that matches no account is
// counted under its own name), so neither the answer nor its timing tells
// whether an account exists. Only right credentials for a locked account
// (or from a locked address) get a *LockedError, saying until when. Other
// errors are technical failures. A hash made with older parameters is
// upgraded on success. Attempts that a lock refuses unchecked (its budget
// spent) run no hash: they wait the hasher's usual hash time instead
// (Hasher.Imitate), whatever the name.
func (us *Users) SignIn(ctx context.Context, login, password string, c Client) (User, error) {
	// No stored password can be this long (the policy caps it), so refuse
	// before spending time on normalising megabytes. The answer does not
	// depend on the account, so it reveals nothing.
	if len(password) > 4*MaxPasswordLength {
		return User{}, ErrInvalidCredentials
	}
	pw := NormalizePassword(password)
	u, found, err := us.lookupLogin(ctx, login)
	if err != nil {
		return User{}, fmt.Errorf("authenticate: %w", err)
	}
	subject := strings.TrimSpace(login)
	if found {
		subject = u.Username
	}
	try, err := us.reg.Begin(ctx, GatePassword, subject, c.IP)
	if err != nil {
		return User{}, fmt.Errorf("authenticate: %w", err)
	}
	if !try.Check {
		// A lock whose budget is spent: nothing is checked, so no hash is
		// spent either (a flood from a locked address or at a locked
		// account costs no memory and no CPU), but the answer still takes
		// as long as a checked one, for known and unknown names alike.
		us.hasher.Imitate(ctx, ipKey(c.IP))
		return User{}, ErrInvalidCredentials
	}
	phc := us.hasher.dummy
	if found && u.PasswordHash != "" {
		phc = u.PasswordHash
	}
	// The hash waits for a slot of this address's share, so one address
	// cannot take every slot from everybody else.
	ok, err := us.hasher.VerifyFor(ctx, ipKey(c.IP), pw, phc)
	if err != nil {
		_ = try.Release(ctx)
		if ctx.Err() != nil {
			return User{}, fmt.Errorf("authenticate: %w", err)
		}
		return User{}, fmt.Errorf("authenticate %q: stored password hash: %w", u.Username, err)
	}
	if !found || !ok || u.Disabled || phc == us.hasher.dummy {
		locked := try.Fail(ctx)
		if found {
			us.ev.Failed(ctx, u.Username, activity.EventSignInFailed, policy.FactorPassword, c)
			if !locked.IsZero() {
				us.ev.Note(ctx, u.Username, activity.EventLocked, locked.Format(time.RFC3339), c)
			}
		} else {
			// The same log writes for a login without an account, or the
			// time they take would tell accounts apart (as the dummy hash
			// does for the hash).
			us.ev.Decoy(ctx, subjectKey("#"+subject), c)
			if !locked.IsZero() {
				us.ev.Decoy(ctx, subjectKey("#"+subject), c)
			}
		}
		return User{}, ErrInvalidCredentials
	}
	if try.Locked != nil {
		return User{}, us.locked(ctx, u, try.Locked)
	}
	if err := try.Pass(ctx); err != nil {
		return User{}, fmt.Errorf("authenticate: %w", err)
	}
	if us.hasher.NeedsRehash(phc) {
		if hash, err := us.hasher.Hash(pw); err == nil {
			// Best effort: the sign-in already succeeded, and a lost
			// upgrade is simply tried again at the next one.
			if nu, err := us.update(ctx, u.Username, func(x *User) error {
				if x.PasswordHash != phc {
					return errHashChanged // changed meanwhile: keep the new one
				}
				x.PasswordHash = hash
				return nil
			}, true); err == nil {
				u = nu
			}
		}
	}
	// The notice about this sign-in goes out in the language and zone
	// remembered before it: a sign-in with a stolen password must not
	// choose how its own warning is written.
	us.ev.SignedIn(ctx, u.Person(), policy.FactorPassword, c)
	return us.remember(ctx, u, c), nil
}

// remember keeps the language and time zone of the sign-in on the user
// record, for the notices that come later without a request (or from
// someone else's): a language chosen on the portal, or the browser's when
// none is kept yet; the zone the browser reported (people travel). Best
// effort, and only when they changed: the sign-in already succeeded, and
// most sign-ins change nothing.
func (us *Users) remember(ctx context.Context, u User, c Client) User {
	lang, tz := c.Lang, activity.TimeZone(c.TimeZone)
	if !validLangTag(lang) || (!c.LangChosen && u.Lang != "") {
		// A browser's preference does not replace a language the person
		// has: it may be a shared computer's, or a stranger's.
		lang = ""
	}
	if (lang == "" || lang == u.Lang) && (tz == "" || tz == u.TimeZone) {
		return u
	}
	nu, err := us.update(ctx, u.Username, func(x *User) error {
		if lang != "" {
			x.Lang = lang
		}
		if tz != "" {
			x.TimeZone = tz
		}
		return nil
	}, false)
	if err != nil {
		return u
	}
	return nu
}

// locked completes a lock revealed to right credentials: an account lock
// gets an unlock ticket when a code can reach a confirmed address.
func (us *Users) locked(ctx context.Context, u User, le *LockedError) error {
	out := *le
	if !out.Network && u.EmailVerified && u.Email != "" {
		t, err := us.reg.IssueTicket(ctx, u.Username)
		if err != nil {
			return fmt.Errorf("authenticate: %w", err)
		}
		out.Ticket = t
	}
	return &out
}

var errHashChanged = errors.New("password hash changed during sign-in")

// lookupLogin finds the user for a username or an email address. found is
// false (with a nil error) when there is no such user.
func (us *Users) lookupLogin(ctx context.Context, login string) (User, bool, error) {
	login = strings.TrimSpace(login)
	name := login
	byEmail := strings.Contains(login, "@")
	if byEmail {
		it, err := us.kv.Get(ctx, emailKey(login))
		if errors.Is(err, store.ErrNotFound) {
			return User{}, false, nil
		}
		if err != nil {
			return User{}, false, err
		}
		name = string(it.Value)
	}
	name, err := NormalizeUsername(name)
	if err != nil {
		return User{}, false, nil
	}
	u, _, err := us.load(ctx, name)
	if errors.Is(err, ErrUserNotFound) {
		return User{}, false, nil
	}
	if err != nil {
		return User{}, false, err
	}
	// A stale index entry (see claimEmail) must not let an old address
	// sign in to the account that used to have it.
	if byEmail && !strings.EqualFold(u.Email, login) {
		return User{}, false, nil
	}
	return u, true, nil
}

// claimEmail makes the index entry of email point to owner and returns its
// version. An entry held by an existing other user means ErrEmailTaken; an
// entry whose owner no longer exists is left over from a delete that did not
// finish and is taken over.
func (us *Users) claimEmail(ctx context.Context, email, owner string) (uint64, error) {
	key := emailKey(email)
	for range maxCASRetries {
		ver, err := us.kv.CompareAndSet(ctx, key, []byte(owner), 0, durable())
		if err == nil {
			return ver, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return 0, err
		}
		it, err := us.kv.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			continue // released meanwhile: try again
		}
		if err != nil {
			return 0, err
		}
		if cur := string(it.Value); cur == owner {
			return it.Version, nil
		} else if _, err := us.kv.Get(ctx, userPrefix+cur); err == nil {
			return 0, ErrEmailTaken
		} else if !errors.Is(err, store.ErrNotFound) {
			return 0, err
		}
		ver, err = us.kv.CompareAndSet(ctx, key, []byte(owner), it.Version, durable())
		if err == nil {
			return ver, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return 0, err
		}
	}
	return 0, fmt.Errorf("claim email: %w", store.ErrConflict)
}

// releaseEmail removes the index entry of email if owner still holds it.
func (us *Users) releaseEmail(ctx context.Context, email, owner string) error {
	key := emailKey(email)
	it, err := us.kv.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if string(it.Value) != owner {
		return nil
	}
	err = us.kv.CompareAndDelete(ctx, key, it.Version)
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return nil // someone else has it now
	}
	return err
}

func (us *Users) load(ctx context.Context, name string) (User, uint64, error) {
	it, err := us.kv.Get(ctx, userPrefix+name)
	if errors.Is(err, store.ErrNotFound) {
		return User{}, 0, fmt.Errorf("%w: %q", ErrUserNotFound, name)
	}
	if err != nil {
		return User{}, 0, fmt.Errorf("load user %q: %w", name, err)
	}
	u, err := decodeUser(it.Value)
	if err != nil {
		return User{}, 0, fmt.Errorf("load user %q: %w", name, err)
	}
	return u, it.Version, nil
}

// clock returns the current time without a monotonic reading, in UTC, so
// that what is stored and what is returned compare equal.
func (us *Users) clock() time.Time { return us.now().Round(0).UTC() }

func emailKey(email string) string { return emailPrefix + strings.ToLower(email) }

func encodeUser(u User) []byte {
	b, err := json.Marshal(userRecord{
		V: userRecordVersion, Username: u.Username, Email: u.Email, DisplayName: u.DisplayName,
		Groups: u.Groups, Disabled: u.Disabled, EmailVerified: u.EmailVerified,
		PasswordHash: u.PasswordHash, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt,
		Lang: u.Lang, TimeZone: u.TimeZone, AlwaysAsk: u.AlwaysAsk,
	})
	if err != nil {
		// Only strings, bools and times: marshalling cannot fail.
		panic("authn: encode user: " + err.Error())
	}
	return b
}

func decodeUser(b []byte) (User, error) {
	var r userRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return User{}, fmt.Errorf("decode user record: %w", err)
	}
	if r.V != userRecordVersion {
		return User{}, fmt.Errorf("decode user record: unknown schema version %d", r.V)
	}
	return User{
		Username: r.Username, Email: r.Email, DisplayName: r.DisplayName, Groups: append([]string{}, r.Groups...),
		Disabled: r.Disabled, EmailVerified: r.EmailVerified, PasswordHash: r.PasswordHash,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Lang: r.Lang, TimeZone: r.TimeZone,
		AlwaysAsk: r.AlwaysAsk,
	}, nil
}

// NormalizeUsername lower-cases a username and checks it: 1–64 characters
// of [a-z0-9._-], starting with a letter or digit (so that "." and ".."
// are never names). An '@' can never appear, which keeps usernames and
// email addresses apart at sign-in.
func NormalizeUsername(s string) (string, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	if name == "" || len(name) > maxUsernameLen {
		return "", fmt.Errorf("%w: username must be 1 to %d characters", ErrInvalidUser, maxUsernameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case isLower(c) || isDigit(c):
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return "", fmt.Errorf("%w: username may contain only a-z, 0-9, '.', '_' and '-', starting with a letter or digit", ErrInvalidUser)
		}
	}
	return name, nil
}

// normalizeProfile trims and checks the free-form fields of u in place.
func normalizeProfile(u *User) error {
	u.Email = strings.TrimSpace(u.Email)
	if u.Email != "" {
		a, err := mail.ParseAddress(u.Email)
		if err != nil || a.Name != "" || a.Address != u.Email || len(u.Email) > maxEmailLen {
			return fmt.Errorf("%w: email must be a plain address like name@example.com", ErrInvalidUser)
		}
	} else {
		u.EmailVerified = false
	}
	u.DisplayName = strings.TrimSpace(u.DisplayName)
	if !utf8.ValidString(u.DisplayName) || utf8.RuneCountInString(u.DisplayName) > maxDisplayNameLen ||
		strings.ContainsFunc(u.DisplayName, unicode.IsControl) {
		return fmt.Errorf("%w: display name must be at most %d characters of printable text", ErrInvalidUser, maxDisplayNameLen)
	}
	groups := make([]string, 0, len(u.Groups))
	for _, g := range u.Groups {
		g = strings.TrimSpace(g)
		if !validGroup(g) {
			return fmt.Errorf("%w: group %q: 1 to %d characters of A-Z, a-z, 0-9, '.', '_', ':', '@' and '-'", ErrInvalidUser, g, maxGroupLen)
		}
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	if len(groups) > maxGroups {
		return fmt.Errorf("%w: at most %d groups", ErrInvalidUser, maxGroups)
	}
	u.Groups = groups
	// Both come from a browser: what is not a language tag or a zone this
	// machine knows is forgotten rather than refused (notices then use
	// English and UTC).
	if !validLangTag(u.Lang) {
		u.Lang = ""
	}
	u.TimeZone = activity.TimeZone(u.TimeZone)
	return nil
}

// validLangTag accepts a short language tag ("en", "ru", "pt-BR").
func validLangTag(tag string) bool {
	if len(tag) < 2 || len(tag) > 16 {
		return false
	}
	for _, r := range tag {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-') {
			return false
		}
	}
	return true
}

// validGroup keeps group names safe in a comma-separated header and in
// policy files: no commas, spaces, quotes or control characters.
func validGroup(g string) bool {
	if g == "" || len(g) > maxGroupLen {
		return false
	}
	for i := 0; i < len(g); i++ {
		c := g[i]
		if !(isLower(c) || isDigit(c) || (c >= 'A' && c <= 'Z') || strings.IndexByte("._:@-", c) >= 0) {
			return false
		}
	}
	return true
}
