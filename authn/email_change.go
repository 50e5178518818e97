package authn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	netmail "net/mail"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/policy"
)

// Changing a person's own email address while signed in. The address is
// where email codes (a second factor) and every security notice go, so
// moving it is a security change like the password:
//
//   - The new address is proved by a code sent TO IT (its own purpose,
//     factors.PurposeChangeAddress: that code confirms nothing else).
//   - A fresh second factor is needed when the account has one, and for
//     an account that also holds other factors the mailbox being replaced
//     never counts as that factor: it proves only the old mailbox, and a
//     password plus a mailbox must never take over an account's second
//     factors. An account whose only second factor is its confirmed
//     mailbox confirms with a code to that (old) mailbox: then the new
//     mailbox alone never suffices either.
//   - Asking for an address another account uses gets the same answer as
//     any other address, after the same reads and the one same write; the
//     code goes out after the answer (so a send's time tells nothing) and
//     only to a free address. Whoever asked learns that it is taken only
//     after proving the mailbox, i.e. never (no code reaches them).
//   - On success the address is changed and confirmed at once, codes
//     pending for the old address die, the old address is told with a
//     "This wasn't me" link and the new one gets a confirmation.

// Activity kinds of the address change.
const (
	// EventEmailChanged: the address was changed (a notice goes to the
	// old address; the detail is the new one, masked).
	EventEmailChanged = "email_changed"
	// EventEmailChangeRequested: a move of the address was asked for (the
	// detail is the new address, masked; whether a code went out is not
	// said: see BeginEmailChange).
	EventEmailChangeRequested = "email_change_requested"
)

// ChangeEmail is the action WeakProofError names when an address change
// lacks a fresh second factor.
const ChangeEmail = "change the email address"

// Errors of the address change where callers branch; each has a row in
// Problems and a message in both catalogues. A malformed address is
// factors.ErrBadAddress, a code's refusals are the codes' usual ones.
var (
	// ErrSameAddress: the new address is the account's address already.
	ErrSameAddress = errors.New("authn: this is already the account's email address")
	// ErrNoEmailChange: no change is waiting for a code (none asked for,
	// past its window, asked for from another session, or done).
	ErrNoEmailChange = errors.New("authn: no email address change is waiting for a code; start again")
	// ErrSignInAgain: an account with no second factor changes its
	// address only on a fresh password, or a stolen session cookie could
	// move the address and then reset the password through it.
	ErrSignInAgain = errors.New("authn: this change needs a sign-in with the password within the last minutes")
)

const (
	emailChangePrefix = "emailchange/"
	emailChangeV      = 1
	// emailChangeCooldown is the wait between two requests, whatever the
	// address: a request for a taken address sends nothing, so the code
	// engine's own cooldown would tell it apart.
	emailChangeCooldown = 60 * time.Second
	// defaultEmailChangeWindow: how long a change waits for its code when
	// the factor does not say how long its codes live.
	defaultEmailChangeWindow = 10 * time.Minute
)

// EmailChange is a change waiting for its code, as the page shows it.
type EmailChange struct {
	To        string    // the new address, masked
	ExpiresAt time.Time // when the change (and its code) ends
	ResendAt  time.Time // when another may be asked for
}

// emailChangeRecord is a change in the store, one per account, under
// "emailchange/<user>" (values are sealed with the storage key, so the
// full new address is not in clear on disk).
type emailChangeRecord struct {
	V       int    `json:"v"`
	Address string `json:"address"`
	// Handle is the session that asked (and passed the fresh-factor
	// check): only it may confirm, under the same ID (a session that moved
	// on to a new ID starts again).
	Handle string `json:"handle"`
	// Nonce names this request: the send that runs after the answer
	// writes CodeExpires only onto the request it was made for.
	Nonce string `json:"nonce"`
	// Free: the address was nobody else's when asked (only then is a code
	// sent).
	Free   bool      `json:"free,omitempty"`
	Asked  time.Time `json:"asked"`
	Expire time.Time `json:"expires"`
	// CodeExpires is the expiry of the code sent for this request (zero
	// until it went out): the code pending at confirmation must be this
	// one, not one sent for an earlier request to another address.
	CodeExpires time.Time `json:"code_expires,omitzero"`
}

// EmailChangeOptions tune the address change.
type EmailChangeOptions struct {
	// Logger hears what the person must not (a code that could not be
	// sent); nil = none.
	Logger *slog.Logger
}

// EmailChanges runs the address change over the second-factor flows'
// parts (sessions, factors, regulator, activity log).
type EmailChanges struct {
	m     *MFA
	kv    KV
	log   *slog.Logger
	sends sync.WaitGroup
}

// NewEmailChanges builds the flow on m.
func NewEmailChanges(m *MFA, o EmailChangeOptions) *EmailChanges {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &EmailChanges{m: m, kv: m.users.kv, log: log}
}

// Wait returns once every code being sent has gone out (or failed).
func (e *EmailChanges) Wait() { e.sends.Wait() }

func (e *EmailChanges) now() time.Time { return e.m.o.Now().Round(0).UTC() }

// mailbox is the email factor: it sends codes to a given address.
func (e *EmailChanges) mailbox() (factors.Factor, factors.AddressCodes, bool) {
	f := e.m.o.Factors.Get(factors.KindEmail)
	ac, ok := f.(factors.AddressCodes)
	return f, ac, ok
}

// window is how long a change waits for its code: as long as the code
// lives.
func (e *EmailChanges) window() time.Duration {
	f, _, _ := e.mailbox()
	if cl, ok := f.(factors.CodeLifetime); ok && cl.CodeTTL() > 0 {
		return cl.CodeTTL()
	}
	return defaultEmailChangeWindow
}

// CleanAddress checks a new address: one bare address, as a user record
// holds it (no display name, no list, no control characters). Anything
// else is factors.ErrBadAddress.
func CleanAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("authn: not a plain email address: %w", factors.ErrBadAddress)
	if s == "" || len(s) > maxEmailLen || strings.ContainsFunc(s, unicode.IsControl) {
		return "", bad
	}
	a, err := netmail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", bad
	}
	return s, nil
}

// ProofForEmailChange says whether the session may change the address now:
// nil, or a *WeakProofError naming the factors that would do. Callers show
// the way to a fresh factor before asking for the new address.
func (e *EmailChanges) ProofForEmailChange(ctx context.Context, id string) error {
	sess, u, err := e.m.sessionUser(ctx, id)
	if err != nil {
		return err
	}
	return e.freshFactor(ctx, sess, u, false)
}

// freshFactor refuses a change on a session without the fresh second
// factor it needs (see the file's comment): with held credentials, any of
// them but the mailbox; with only a confirmed mailbox, a code to it.
func (e *EmailChanges) freshFactor(ctx context.Context, sess *Session, u User, note bool) error {
	m := e.m
	creds, err := m.held(ctx, u.Username)
	if err != nil {
		return err
	}
	mailbox, _, hasMailbox := e.mailbox()
	mailboxOnly := len(creds) == 0 && hasMailbox && u.EmailVerified && u.Email != ""
	now := m.o.Now()
	if len(creds) == 0 && !mailboxOnly {
		// No second factor: the password is all there is, so it must be
		// fresh, not whatever a session cookie carried since the morning.
		for _, p := range sess.Proofs {
			if p.Kind == policy.FactorPassword && now.Sub(p.At) <= m.o.ElevationWindow {
				return nil
			}
		}
		if note {
			m.o.Activity.Note(ctx, u.Username, activity.EventChangeRefused, "email", clientOf(sess))
		}
		return ErrSignInAgain
	}
	best := factors.StrengthNone
	for _, p := range sess.Proofs {
		if !IsSecondFactor(p.Kind) || now.Sub(p.At) > m.o.ElevationWindow {
			continue
		}
		f := m.o.Factors.Get(p.Kind)
		if f == nil {
			continue
		}
		if _, mailed := f.(factors.AddressCodes); mailed && !mailboxOnly {
			continue // the mailbox being replaced proves only itself
		}
		best = max(best, f.Strength(p.Attested))
	}
	if best >= factors.StrengthCode {
		return nil
	}
	werr := &WeakProofError{Action: ChangeEmail, Need: factors.StrengthCode, Have: best}
	if mailboxOnly {
		werr.Kinds = []string{mailbox.Kind()}
	} else {
		methods, err := m.Methods(ctx, u.Username)
		if err != nil {
			return err
		}
		for _, md := range methods {
			if _, mailed := m.o.Factors.Get(md.Kind).(factors.AddressCodes); !mailed {
				werr.Kinds = append(werr.Kinds, md.Kind)
			}
		}
	}
	if note {
		m.o.Activity.Note(ctx, u.Username, activity.EventChangeRefused, "email", clientOf(sess))
	}
	return werr
}

// BeginEmailChange asks to move the session user's address to next: it
// checks the address (factors.ErrBadAddress, ErrSameAddress), the fresh
// second factor (*WeakProofError) and the wait between requests
// (*factors.CooldownError), records the request and answers; the code
// goes to next afterwards, unless another account uses next (then nothing
// is sent, and nothing in the answer or its timing says so).
func (e *EmailChanges) BeginEmailChange(ctx context.Context, id, next, lang string, c Client) (EmailChange, error) {
	m := e.m
	_, ac, ok := e.mailbox()
	if !ok {
		return EmailChange{}, ErrFactorUnavailable
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return EmailChange{}, err
	}
	addr, err := CleanAddress(next)
	if err != nil {
		return EmailChange{}, err
	}
	if strings.EqualFold(addr, u.Email) {
		return EmailChange{}, ErrSameAddress
	}
	if err := e.freshFactor(ctx, sess, u, true); err != nil {
		return EmailChange{}, err
	}
	now := e.now()
	old, ver, err := e.load(ctx, u.Username)
	if err != nil && !errors.Is(err, ErrNoEmailChange) {
		return EmailChange{}, err
	}
	if until := old.Asked.Add(emailChangeCooldown); err == nil && now.Before(until) {
		return EmailChange{}, &factors.CooldownError{Until: until}
	}
	// The same read for every address: who (if anyone) has it.
	owner, found, err := m.users.lookupLogin(ctx, addr)
	if err != nil {
		return EmailChange{}, fmt.Errorf("change email: %w", err)
	}
	nonce, err := newNonce()
	if err != nil {
		return EmailChange{}, err
	}
	rec := emailChangeRecord{V: emailChangeV, Address: addr, Handle: sess.Handle, Nonce: nonce,
		Free: !found || owner.Username == u.Username, Asked: now, Expire: now.Add(e.window())}
	if err := e.store(ctx, u.Username, rec, ver, now); errors.Is(err, store.ErrConflict) {
		// Another request at the same moment won.
		return EmailChange{}, &factors.CooldownError{Until: now.Add(emailChangeCooldown)}
	} else if err != nil {
		return EmailChange{}, err
	}
	// The person's log says the same for every address (it is theirs to
	// read): what was asked for, not what became of it.
	m.o.Activity.Note(ctx, u.Username, EventEmailChangeRequested, mail.Mask(addr), c)
	if rec.Free {
		e.sends.Add(1)
		go e.sendCode(context.WithoutCancel(ctx), ac, u, rec, lang, c)
	}
	return EmailChange{To: mail.Mask(addr), ExpiresAt: rec.Expire, ResendAt: now.Add(emailChangeCooldown)}, nil
}

// sendCode mails the code to the new address after BeginEmailChange
// answered, and binds the request to that code. What went wrong goes to
// the operator's log only (the person's would tell taken addresses apart).
func (e *EmailChanges) sendCode(ctx context.Context, ac factors.AddressCodes, u User, rec emailChangeRecord, lang string, c Client) {
	defer e.sends.Done()
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	sent, err := ac.SendFor(ctx, subject(u, lang, c), factors.PurposeChangeAddress, rec.Address)
	if err == nil {
		err = e.bind(ctx, u.Username, rec.Nonce, sent.ExpiresAt)
	}
	if err != nil {
		e.log.Warn("email change code not sent", "user", u.Username, "err", err)
	}
}

// bind records on the request nonce the expiry of the code sent for it.
func (e *EmailChanges) bind(ctx context.Context, user, nonce string, codeExpires time.Time) error {
	for range maxCASRetries {
		rec, ver, err := e.load(ctx, user)
		if err != nil {
			return err
		}
		if rec.Nonce != nonce {
			return ErrNoEmailChange // a newer request replaced it
		}
		rec.CodeExpires = codeExpires
		err = e.store(ctx, user, rec, ver, e.now())
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("change email: %w", store.ErrConflict)
}

// PendingEmailChange is the change the session asked for that waits for
// its code (ErrNoEmailChange when none does).
func (e *EmailChanges) PendingEmailChange(ctx context.Context, id string) (EmailChange, error) {
	sess, _, err := e.m.sessionUser(ctx, id)
	if err != nil {
		return EmailChange{}, err
	}
	rec, _, err := e.load(ctx, sess.Username)
	if err != nil {
		return EmailChange{}, err
	}
	if rec.Handle != sess.Handle {
		return EmailChange{}, ErrNoEmailChange
	}
	return EmailChange{To: mail.Mask(rec.Address), ExpiresAt: rec.Expire, ResendAt: rec.Asked.Add(emailChangeCooldown)}, nil
}

// ConfirmEmailChange checks the code sent to the new address and makes it
// the account's confirmed address. Wrong codes count at the second-factor
// gate like any code; a code for an earlier request, or for a request that
// got none, is answered like a wrong one. Only the session that asked may
// confirm (ErrNoEmailChange elsewhere): it passed the fresh-factor check
// then, and the change is bound to it, not to the account. On success this session continues under a new ID
// (returned), codes pending for the old address die, the old address is
// told (with "This wasn't me") and the new one gets a confirmation.
func (e *EmailChanges) ConfirmEmailChange(ctx context.Context, id, code, lang string, c Client) (*Session, User, error) {
	m := e.m
	_, ac, ok := e.mailbox()
	if !ok {
		return nil, User{}, ErrFactorUnavailable
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return nil, User{}, err
	}
	rec, ver, err := e.load(ctx, u.Username)
	if err != nil {
		return nil, User{}, err
	}
	if rec.Handle != sess.Handle {
		return nil, User{}, ErrNoEmailChange
	}
	try, err := m.admit(ctx, sess, u)
	if err != nil {
		return nil, User{}, err
	}
	s := subject(u, lang, c)
	// The code pending must be the one sent for this request: a request
	// for an address that got no code (taken, or the send failed) must not
	// be confirmed with a code sent for an earlier one. Such a code is
	// answered like a wrong one, and counted like one.
	var cerr error
	if sent, ok, perr := ac.PendingFor(ctx, s, factors.PurposeChangeAddress); perr != nil {
		_ = try.Release(ctx)
		return nil, User{}, perr
	} else if !rec.Free || rec.CodeExpires.IsZero() || !ok || !sent.ExpiresAt.Equal(rec.CodeExpires) {
		cerr = ErrWrongCode
	} else {
		cerr = codeRefusal(ac.ProveFor(ctx, s, factors.PurposeChangeAddress, code), ErrCodeUsed)
	}
	if err := m.settle(ctx, try, sess, u, "", cerr); err != nil {
		return nil, User{}, err
	}
	// The request is used once: of two concurrent confirmations one wins.
	if err := e.kv.CompareAndDelete(ctx, emailChangeKey(u.Username), ver); errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		return nil, User{}, ErrNoEmailChange
	} else if err != nil {
		return nil, User{}, fmt.Errorf("change email: %w", err)
	}
	// From here the mailbox is proved: finish even if the caller gave up.
	ctx = context.WithoutCancel(ctx)
	oldPerson := u.Person()
	if _, err := m.users.Update(ctx, u.Username, func(x *User) error {
		if x.Email != u.Email {
			return ErrNoEmailChange // changed meanwhile (an admin): start again
		}
		x.Email = rec.Address
		return nil
	}); err != nil {
		return nil, User{}, err
	}
	// Users.Update leaves a new address unconfirmed; this one was just
	// proved by its code.
	nu, err := m.users.Update(ctx, u.Username, func(x *User) error {
		if !strings.EqualFold(x.Email, rec.Address) {
			return ErrNoEmailChange
		}
		x.EmailVerified = true
		return nil
	})
	if err != nil {
		return nil, User{}, err
	}
	if cc, ok := m.o.Factors.Get(factors.KindEmail).(factors.CodeCanceller); ok {
		if err := cc.CancelCodes(ctx, subject(u, "", c)); err != nil {
			return nil, User{}, fmt.Errorf("change email: %w", err)
		}
	}
	ns, err := m.sessions.Rotate(ctx, id)
	if err != nil {
		return nil, User{}, fmt.Errorf("change email: %w", err)
	}
	// The old address hears of it (recorded in the activity log, with the
	// link); the new one gets a confirmation with its own link.
	m.o.Activity.Changed(ctx, oldPerson, EventEmailChanged, "", mail.Mask(nu.Email), c)
	m.o.Activity.Notify(ctx, nu.Person(), c, activity.Notice{Kind: activity.NoticeEmailChanged,
		Vars: map[string]string{"address": nu.Email}})
	return ns, nu, nil
}

// CancelEmailChange drops the session user's pending change, if any.
func (e *EmailChanges) CancelEmailChange(ctx context.Context, id string) error {
	sess, _, err := e.m.sessionUser(ctx, id)
	if err != nil {
		return err
	}
	if err := e.kv.Delete(ctx, emailChangeKey(sess.Username)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("change email: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------------
// Records

func emailChangeKey(user string) string { return emailChangePrefix + user }

func newNonce() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("change email: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// load reads user's pending change; none, malformed or past its window
// reads as ErrNoEmailChange (with the version of what is stored, so that
// a new request can replace it).
func (e *EmailChanges) load(ctx context.Context, user string) (emailChangeRecord, uint64, error) {
	it, err := e.kv.Get(ctx, emailChangeKey(user))
	if errors.Is(err, store.ErrNotFound) {
		return emailChangeRecord{}, 0, ErrNoEmailChange
	}
	if err != nil {
		return emailChangeRecord{}, 0, fmt.Errorf("change email: %w", err)
	}
	var rec emailChangeRecord
	if err := json.Unmarshal(it.Value, &rec); err != nil || rec.V != emailChangeV {
		return emailChangeRecord{}, it.Version, ErrNoEmailChange
	}
	if !e.now().Before(rec.Expire) {
		return emailChangeRecord{}, it.Version, ErrNoEmailChange
	}
	return rec, it.Version, nil
}

// store writes rec over version ver (0: none), until its window ends.
func (e *EmailChanges) store(ctx context.Context, user string, rec emailChangeRecord, ver uint64, now time.Time) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("change email: %w", err)
	}
	ttl := max(rec.Expire.Sub(now), time.Second)
	if _, err := e.kv.CompareAndSet(ctx, emailChangeKey(user), raw, ver, store.WriteOptions{TTL: ttl, Durable: true}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return err
		}
		return fmt.Errorf("change email: %w", err)
	}
	return nil
}
