package authn

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/policy"
)

// Self-service account recovery, for a person who lost every second
// factor (the phone and the key). It is the one deliberate exception to
// "a password plus a mailbox never replaces a second factor", and what
// makes it safe is time and noise rather than a stronger proof:
//
//  1. With a password session and a code to the confirmed address, the
//     person asks for a recovery. Nothing changes yet: a clock starts
//     (RecoveryOptions.Wait, 72 hours by default).
//  2. During the wait the address is told at once, with a one-time link
//     that cancels the request (its token only hashed at rest); any sign-in
//     with one of the account's existing factors cancels it too (the
//     person was not locked out after all, or the request is not theirs);
//     a "This wasn't me" report cancels it; admins see every pending
//     request and may cancel it, or approve it sooner.
//  3. Once the wait is over (or an admin approved), the person signs in
//     with the password, proves the mailbox again and gets an enrolment
//     grant (ProofEnrollment, Ref RecoveryGrant) that lets the session add
//     one new factor, nothing else. Adding it completes the recovery: every
//     earlier credential is removed, remembered devices are forgotten, the
//     other sessions end, and the person is told.
//
// Everything is logged in the person's activity; admins' decisions in the
// audit log (authn/admin).

// RecoveryGrant is the Ref of the enrolment grant a completed waiting
// period gives (ProofEnrollment).
const RecoveryGrant = "account_recovery"

// DefaultRecoveryWait is how long a recovery request waits by default.
const DefaultRecoveryWait = 72 * time.Hour

// DefaultRecoveryWindow is how long a request, once its wait is over,
// stays usable before it lapses and must be asked for again.
const DefaultRecoveryWindow = 7 * 24 * time.Hour

// Errors of the recovery flow where callers branch; each has a row in
// Problems.
var (
	// ErrRecoveryPending: a recovery is already pending for the account;
	// a second request changes nothing (the clock does not restart).
	ErrRecoveryPending = errors.New("authn: an account recovery is already pending")
	// ErrNoRecovery: no recovery is pending (never asked for, cancelled,
	// completed or lapsed).
	ErrNoRecovery = errors.New("authn: no account recovery is pending")
	// ErrRecoveryWaiting: the waiting period is not over (see
	// RecoveryWaitError for until when).
	ErrRecoveryWaiting = errors.New("authn: the waiting period of the account recovery is not over")
	// ErrRecoveryLinkInvalid: a cancel link that is unknown, used or
	// expired: one answer for all, so a link's state is not revealed.
	ErrRecoveryLinkInvalid = errors.New("authn: the cancel link is invalid, used or expired")
	// ErrRecoveryNotNeeded: the account has no second factor to lose; a
	// first factor is enrolled from the security page instead.
	ErrRecoveryNotNeeded = errors.New("authn: the account has no second factor to recover")
)

// RecoveryWaitError refuses to finish a recovery before ReadyAt.
type RecoveryWaitError struct{ ReadyAt time.Time }

func (e *RecoveryWaitError) Error() string {
	return fmt.Sprintf("%v: it can be completed from %s", ErrRecoveryWaiting, e.ReadyAt.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrRecoveryWaiting) hold.
func (e *RecoveryWaitError) Unwrap() error { return ErrRecoveryWaiting }

// Recovery is a pending account recovery as people and admins see it.
type Recovery struct {
	Username    string    `json:"username"`
	RequestedAt time.Time `json:"requested_at"`
	// ReadyAt is when it may be completed: the end of the wait, or the
	// moment an admin approved it.
	ReadyAt time.Time `json:"ready_at"`
	// ExpiresAt is when it lapses unless completed.
	ExpiresAt  time.Time `json:"expires_at"`
	ApprovedBy string    `json:"approved_by,omitempty"`
	// Where it was asked from.
	IP      string `json:"ip,omitempty"`
	Browser string `json:"browser,omitempty"`
}

// Ready says whether the recovery may be completed at now.
func (r Recovery) Ready(now time.Time) bool { return !now.Before(r.ReadyAt) }

// recoveryRecord is what the store keeps: the request and the hash of its
// cancel link's token (never the token).
type recoveryRecord struct {
	Recovery
	CancelHash string `json:"cancel_hash"`
}

// RecoveryOptions tune account recovery; zero values take the defaults.
type RecoveryOptions struct {
	// Wait is the waiting period (DefaultRecoveryWait).
	Wait time.Duration
	// Window: how long a ready request stays usable (DefaultRecoveryWindow).
	Window time.Duration
	// PortalURL is the origin the cancel link starts with. The notice
	// that carries it goes through MFAOptions.Activity (Log.Notify), like
	// every notice: a set-up without mail sends none.
	PortalURL string
	Now       func() time.Time
	Logger    *slog.Logger
}

// RecoveryRequests keeps pending account recoveries in the store: one per
// account, and an index from the hash of each cancel token to its account.
type RecoveryRequests struct {
	kv KV
	o  RecoveryOptions
}

// NewRecoveryRequests builds the recovery store.
func NewRecoveryRequests(kv KV, o RecoveryOptions) *RecoveryRequests {
	if o.Wait <= 0 {
		o.Wait = DefaultRecoveryWait
	}
	if o.Window <= 0 {
		o.Window = DefaultRecoveryWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &RecoveryRequests{kv: kv, o: o}
}

// Wait is the waiting period in force.
func (r *RecoveryRequests) Wait() time.Duration { return r.o.Wait }

// Key prefixes; neither prefixes another key family ("recovery/" belongs
// to the recovery-codes factor).
const (
	recoveryReqPrefix    = "account_recovery/req/"
	recoveryCancelPrefix = "account_recovery/cancel/"
)

func recoveryKey(username string) string { return recoveryReqPrefix + username }

func cancelHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// ttl bounds how long the store keeps rec: past its expiry it is dead
// anyway (checked on the injected clock), the TTL only cleans up.
func (r *RecoveryRequests) ttl(rec Recovery) time.Duration {
	return max(rec.ExpiresAt.Sub(r.o.Now()), 0) + time.Hour
}

// get reads username's live request; a lapsed one reads as ErrNoRecovery.
func (r *RecoveryRequests) get(ctx context.Context, username string) (recoveryRecord, uint64, error) {
	it, err := r.kv.Get(ctx, recoveryKey(username))
	if errors.Is(err, store.ErrNotFound) {
		return recoveryRecord{}, 0, ErrNoRecovery
	}
	if err != nil {
		return recoveryRecord{}, 0, fmt.Errorf("account recovery: %w", err)
	}
	var rec recoveryRecord
	if err := json.Unmarshal(it.Value, &rec); err != nil {
		return recoveryRecord{}, 0, fmt.Errorf("account recovery: %w", err)
	}
	if !r.o.Now().Before(rec.ExpiresAt) {
		return recoveryRecord{}, 0, ErrNoRecovery
	}
	return rec, it.Version, nil
}

// Get returns username's pending recovery, or ErrNoRecovery.
func (r *RecoveryRequests) Get(ctx context.Context, username string) (Recovery, error) {
	rec, _, err := r.get(ctx, username)
	return rec.Recovery, err
}

// List returns every pending recovery, the oldest first.
func (r *RecoveryRequests) List(ctx context.Context) ([]Recovery, error) {
	out := []Recovery{}
	now := r.o.Now()
	err := r.kv.Scan(ctx, recoveryReqPrefix, func(it store.Item) error {
		var rec recoveryRecord
		if err := json.Unmarshal(it.Value, &rec); err != nil {
			return fmt.Errorf("account recovery %s: %w", it.Key, err)
		}
		if now.Before(rec.ExpiresAt) {
			out = append(out, rec.Recovery)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("account recovery: %w", err)
	}
	slices.SortFunc(out, func(a, b Recovery) int { return a.RequestedAt.Compare(b.RequestedAt) })
	return out, nil
}

// create stores a new request for u and returns its cancel token. A live
// request makes it ErrRecoveryPending (compare-and-set on an absent key,
// so two concurrent requests start one clock).
func (r *RecoveryRequests) create(ctx context.Context, u User, c Client) (Recovery, string, error) {
	if _, _, err := r.get(ctx, u.Username); err == nil {
		return Recovery{}, "", ErrRecoveryPending
	} else if !errors.Is(err, ErrNoRecovery) {
		return Recovery{}, "", err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return Recovery{}, "", fmt.Errorf("account recovery: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	now := r.o.Now().UTC()
	rec := recoveryRecord{Recovery: Recovery{Username: u.Username, RequestedAt: now, ReadyAt: now.Add(r.o.Wait),
		ExpiresAt: now.Add(r.o.Wait + r.o.Window), IP: activity.Clip(c.IP, 64)}, CancelHash: cancelHash(token)}
	if c.UserAgent != "" {
		rec.Browser = activity.Clip(activity.DescribeUserAgent(c.UserAgent), 128)
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return Recovery{}, "", err
	}
	// The cancel index first: a request is never stored without its way
	// to be cancelled. A lapsed record in the way is replaced.
	opt := store.WriteOptions{TTL: r.ttl(rec.Recovery), Durable: true}
	if _, err := r.kv.Set(ctx, recoveryCancelPrefix+rec.CancelHash, []byte(u.Username), opt); err != nil {
		return Recovery{}, "", fmt.Errorf("account recovery: %w", err)
	}
	var prev uint64
	if it, err := r.kv.Get(ctx, recoveryKey(u.Username)); err == nil {
		prev = it.Version // lapsed (get said so above)
	}
	if _, err := r.kv.CompareAndSet(ctx, recoveryKey(u.Username), val, prev, opt); err != nil {
		_ = r.kv.Delete(ctx, recoveryCancelPrefix+rec.CancelHash)
		if errors.Is(err, store.ErrConflict) {
			return Recovery{}, "", ErrRecoveryPending
		}
		return Recovery{}, "", fmt.Errorf("account recovery: %w", err)
	}
	return rec.Recovery, token, nil
}

// remove ends username's request (cancelled or completed) and its link.
func (r *RecoveryRequests) remove(ctx context.Context, username string) (Recovery, error) {
	for range maxCASRetries {
		rec, ver, err := r.get(ctx, username)
		if err != nil {
			return Recovery{}, err
		}
		err = r.kv.CompareAndDelete(ctx, recoveryKey(username), ver)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return Recovery{}, fmt.Errorf("account recovery: %w", err)
		}
		if err := r.kv.Delete(ctx, recoveryCancelPrefix+rec.CancelHash); err != nil && !errors.Is(err, store.ErrNotFound) {
			r.o.Logger.Warn("account recovery: cancel link not removed", "user", username, "err", err)
		}
		return rec.Recovery, nil
	}
	return Recovery{}, fmt.Errorf("account recovery: %w", store.ErrConflict)
}

// approve ends username's wait now.
func (r *RecoveryRequests) approve(ctx context.Context, username, by string) (Recovery, error) {
	for range maxCASRetries {
		rec, ver, err := r.get(ctx, username)
		if err != nil {
			return Recovery{}, err
		}
		now := r.o.Now().UTC()
		if now.Before(rec.ReadyAt) {
			rec.ReadyAt = now
		}
		rec.ApprovedBy = by
		rec.ExpiresAt = rec.ReadyAt.Add(r.o.Window)
		val, err := json.Marshal(rec)
		if err != nil {
			return Recovery{}, err
		}
		_, err = r.kv.CompareAndSet(ctx, recoveryKey(username), val, ver, store.WriteOptions{TTL: r.ttl(rec.Recovery), Durable: true})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return Recovery{}, fmt.Errorf("account recovery: %w", err)
		}
		return rec.Recovery, nil
	}
	return Recovery{}, fmt.Errorf("account recovery: %w", store.ErrConflict)
}

// linkOwner reads whose request a cancel token names, without using it.
func (r *RecoveryRequests) linkOwner(ctx context.Context, token string) (recoveryRecord, error) {
	if len(token) != 43 {
		return recoveryRecord{}, ErrRecoveryLinkInvalid
	}
	h := cancelHash(token)
	it, err := r.kv.Get(ctx, recoveryCancelPrefix+h)
	if errors.Is(err, store.ErrNotFound) {
		return recoveryRecord{}, ErrRecoveryLinkInvalid
	}
	if err != nil {
		return recoveryRecord{}, fmt.Errorf("account recovery: %w", err)
	}
	rec, _, err := r.get(ctx, string(it.Value))
	if errors.Is(err, ErrNoRecovery) || (err == nil && subtle.ConstantTimeCompare([]byte(rec.CancelHash), []byte(h)) != 1) {
		return recoveryRecord{}, ErrRecoveryLinkInvalid
	}
	return rec, err
}

// Flows on MFA: they need the session, the user, the factors, the
// regulator and the activity log that MFA already holds.

func (m *MFA) recoveries() (*RecoveryRequests, error) {
	if m.o.Recoveries == nil {
		return nil, ErrFactorUnavailable
	}
	return m.o.Recoveries, nil
}

// RecoveryEnabled says whether self-service recovery is offered: it needs
// the store and a factor that mails codes to the confirmed address.
func (m *MFA) RecoveryEnabled() bool {
	_, codes := m.addressCodes()
	return m.o.Recoveries != nil && codes
}

// RecoveryStatus is what the recovery page shows the session's user.
type RecoveryStatus struct {
	// Pending is the request in progress (nil when none).
	Pending *Recovery
	// Ready: the pending request may be completed now.
	Ready bool
	// Granted: this session has proved the mailbox after the wait and may
	// add the new factor (on the security page).
	Granted bool
	// To is where a code goes (masked), "" when no confirmed address.
	To string
	// Code is the code waiting to be typed, if one was sent.
	Code *factors.Sent
	// Wait is the waiting period in force.
	Wait time.Duration
	// HasFactors: the account has a second factor to recover.
	HasFactors bool
}

// RecoveryState reports the recovery of the session's user.
func (m *MFA) RecoveryState(ctx context.Context, id string) (RecoveryStatus, error) {
	rs, err := m.recoveries()
	if err != nil {
		return RecoveryStatus{}, err
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return RecoveryStatus{}, err
	}
	st := RecoveryStatus{Wait: rs.o.Wait}
	if u.EmailVerified && u.Email != "" {
		st.To = mail.Mask(u.Email)
	}
	creds, err := m.held(ctx, u.Username)
	if err != nil {
		return RecoveryStatus{}, err
	}
	st.HasFactors = len(creds) > 0
	rec, err := rs.Get(ctx, u.Username)
	switch {
	case err == nil:
		st.Pending = &rec
		st.Ready = rec.Ready(m.o.Now())
		st.Granted = st.Ready && m.fresh(sess).recovery
	case !errors.Is(err, ErrNoRecovery):
		return RecoveryStatus{}, err
	}
	if ac, ok := m.addressCodes(); ok {
		if p, ok, err := ac.PendingFor(ctx, subject(u, "", clientOf(sess)), factors.PurposeAccountRecovery); err != nil {
			return RecoveryStatus{}, err
		} else if ok {
			st.Code = &p
		}
	}
	return st, nil
}

// recoveryCheck is what sending and checking a recovery code both need:
// a confirmed address, a factor to lose, and no request still waiting.
func (m *MFA) recoveryCheck(ctx context.Context, rs *RecoveryRequests, u User) error {
	if !u.EmailVerified || u.Email == "" {
		return ErrEmailNotVerified
	}
	rec, err := rs.Get(ctx, u.Username)
	switch {
	case err == nil:
		if !rec.Ready(m.o.Now()) {
			return &RecoveryWaitError{ReadyAt: rec.ReadyAt}
		}
		return nil
	case !errors.Is(err, ErrNoRecovery):
		return err
	}
	creds, err := m.held(ctx, u.Username)
	if err != nil {
		return err
	}
	if len(creds) == 0 {
		return ErrRecoveryNotNeeded
	}
	return nil
}

// SendRecoveryCode mails a recovery code (in lang) to the session user's
// confirmed address: to ask for a recovery, or to complete a ready one.
// While a request waits, no code is sent (it could do nothing).
func (m *MFA) SendRecoveryCode(ctx context.Context, id, lang string) (factors.Sent, error) {
	rs, err := m.recoveries()
	if err != nil {
		return factors.Sent{}, err
	}
	ac, ok := m.addressCodes()
	if !ok {
		return factors.Sent{}, ErrFactorUnavailable
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return factors.Sent{}, err
	}
	if err := m.recoveryCheck(ctx, rs, u); err != nil {
		return factors.Sent{}, err
	}
	return ac.SendFor(ctx, subject(u, lang, clientOf(sess)), factors.PurposeAccountRecovery, u.Email)
}

// proveRecoveryCode checks a recovery code under the second-factor gate's
// regulation (a wrong code counts against the account and the address).
func (m *MFA) proveRecoveryCode(ctx context.Context, sess *Session, u User, code string) error {
	ac, ok := m.addressCodes()
	if !ok {
		return ErrFactorUnavailable
	}
	try, err := m.admit(ctx, sess, u)
	if err != nil {
		return err
	}
	err = ac.ProveFor(ctx, subject(u, "", clientOf(sess)), factors.PurposeAccountRecovery, code)
	// The code proves a mailbox, not a sign-in: no factor is logged.
	return m.settle(ctx, try, sess, u, "", codeRefusal(err, ErrNoCodeSent))
}

// RecoveryStep is what a right recovery code did.
type RecoveryStep struct {
	// Started: a new request now waits (Recovery says until when).
	Started bool
	// Granted: the wait was over; Session may now add a new factor.
	Granted  bool
	Recovery Recovery
	Session  *Session
}

// ProveRecovery checks a recovery code for the session's user. Without a
// request it starts one: the clock runs and the person's address is told,
// with the cancel link. With a request whose wait is over it grants this
// session the enrolment of one new factor (the session ID rotates). A
// request still waiting is refused before the code is checked.
func (m *MFA) ProveRecovery(ctx context.Context, id, code string, c Client) (RecoveryStep, error) {
	rs, err := m.recoveries()
	if err != nil {
		return RecoveryStep{}, err
	}
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return RecoveryStep{}, err
	}
	if err := m.recoveryCheck(ctx, rs, u); err != nil {
		return RecoveryStep{}, err
	}
	if err := m.proveRecoveryCode(ctx, sess, u, code); err != nil {
		return RecoveryStep{}, err
	}
	if c.IP == "" {
		c.IP, c.UserAgent = sess.IP, sess.UserAgent
	}
	rec, err := rs.Get(ctx, u.Username)
	switch {
	case err == nil:
		if !rec.Ready(m.o.Now()) { // cannot happen after recoveryCheck, unless approved and re-requested in between
			return RecoveryStep{}, &RecoveryWaitError{ReadyAt: rec.ReadyAt}
		}
		next, err := m.prove(ctx, id, policy.Proof{Kind: ProofEnrollment, Ref: RecoveryGrant})
		if err != nil {
			return RecoveryStep{}, err
		}
		m.o.Activity.Note(ctx, u.Username, activity.EventRecoveryRequested, "code_confirmed", c)
		return RecoveryStep{Granted: true, Recovery: rec, Session: next}, nil
	case !errors.Is(err, ErrNoRecovery):
		return RecoveryStep{}, err
	}
	rec, token, err := rs.create(ctx, u, c)
	if err != nil {
		return RecoveryStep{}, err
	}
	m.o.Activity.Note(ctx, u.Username, activity.EventRecoveryRequested, rec.ReadyAt.Format(time.RFC3339), c)
	// The notice is the shared table's (activity.NoticeRecoveryRequested):
	// the person's language and zone, where it came from, and the cancel
	// link instead of "This wasn't me". Only a confirmed address hears of
	// it, and recoveryCheck demanded one.
	m.o.Activity.Notify(ctx, u.Person(), c, activity.Notice{Kind: activity.NoticeRecoveryRequested,
		Link: rs.cancelURL(token), Times: map[string]time.Time{"ready": rec.ReadyAt}})
	// Every other channel the person has hears of it too (a text to the
	// phone): whoever holds any of them can stop it by signing in.
	for _, f := range m.o.Factors {
		if n, ok := f.(factors.Notifier); ok {
			if err := n.Notify(ctx, subject(u, u.Lang, c), factors.NoticeRecoveryRequested); err != nil {
				rs.o.Logger.Warn("account recovery: notice not sent", "user", u.Username, "channel", f.Kind(), "err", err)
			}
		}
	}
	return RecoveryStep{Started: true, Recovery: rec}, nil
}

// CheckRecoveryLink says whether a cancel link is live, without using it
// (the page that asks to confirm: mail scanners open links).
func (m *MFA) CheckRecoveryLink(ctx context.Context, token string) (Recovery, error) {
	rs, err := m.recoveries()
	if err != nil {
		return Recovery{}, err
	}
	rec, err := rs.linkOwner(ctx, token)
	return rec.Recovery, err
}

// CancelRecoveryLink acts on a cancel link: the request it names ends and
// the link is used up. It returns the account's name.
func (m *MFA) CancelRecoveryLink(ctx context.Context, token string, c Client) (string, error) {
	rs, err := m.recoveries()
	if err != nil {
		return "", err
	}
	rec, err := rs.linkOwner(ctx, token)
	if err != nil {
		return "", err
	}
	// Consume the link first: of two clicks, one cancels.
	if _, err := rs.kv.Consume(ctx, recoveryCancelPrefix+rec.CancelHash); errors.Is(err, store.ErrNotFound) {
		return "", ErrRecoveryLinkInvalid
	} else if err != nil {
		return "", fmt.Errorf("account recovery: %w", err)
	}
	if _, err := rs.remove(ctx, rec.Username); err != nil && !errors.Is(err, ErrNoRecovery) {
		return "", err
	}
	m.recoveryEnded(ctx, rec.Username, "link", c)
	return rec.Username, nil
}

// recoveryEnded logs and announces a cancelled recovery.
func (m *MFA) recoveryEnded(ctx context.Context, username, by string, c Client) {
	u, err := m.users.Get(ctx, username)
	if err != nil {
		m.o.Activity.Note(ctx, username, activity.EventRecoveryCancelled, by, c)
		return
	}
	m.o.Activity.Changed(ctx, u.Person(), activity.EventRecoveryCancelled, "", by, c)
}

// cancelRecoveryBySignIn ends a pending recovery when its account proves
// one of its existing factors: the person was not locked out after all,
// or the request was not theirs. A code to the address proves only what
// the recovery itself proved, so it cancels nothing. Failures are logged:
// the sign-in itself succeeded.
func (m *MFA) cancelRecoveryBySignIn(ctx context.Context, username, kind string, c Client) {
	if m.o.Recoveries == nil {
		return
	}
	if f := m.o.Factors.Get(kind); f != nil {
		if _, mailbox := f.(factors.AddressCodes); mailbox {
			return
		}
	}
	_, err := m.o.Recoveries.remove(ctx, username)
	switch {
	case err == nil:
		m.recoveryEnded(ctx, username, "sign_in:"+kind, c)
	case !errors.Is(err, ErrNoRecovery):
		m.o.Recoveries.o.Logger.Error("account recovery not cancelled after a sign-in with a factor", "user", username, "err", err)
	}
}

// CancelRecoveryByAdmin ends username's pending recovery (an admin, named
// by, decided against it).
func (m *MFA) CancelRecoveryByAdmin(ctx context.Context, username, by string) (Recovery, error) {
	rs, err := m.recoveries()
	if err != nil {
		return Recovery{}, err
	}
	if _, err := m.users.Get(ctx, username); err != nil {
		return Recovery{}, err
	}
	rec, err := rs.remove(ctx, username)
	if err != nil {
		return Recovery{}, err
	}
	m.recoveryEnded(ctx, username, "admin:"+by, Client{})
	return rec, nil
}

// ApproveRecovery ends the wait of username's pending recovery now (an
// admin, named by, vouches for the person). The person is told.
func (m *MFA) ApproveRecovery(ctx context.Context, username, by string) (Recovery, error) {
	rs, err := m.recoveries()
	if err != nil {
		return Recovery{}, err
	}
	u, err := m.users.Get(ctx, username)
	if err != nil {
		return Recovery{}, err
	}
	rec, err := rs.approve(ctx, u.Username, by)
	if err != nil {
		return Recovery{}, err
	}
	m.o.Activity.Changed(ctx, u.Person(), activity.EventRecoveryApproved, "", by, Client{})
	return rec, nil
}

// PendingRecoveries lists every pending recovery (the admin page).
func (m *MFA) PendingRecoveries(ctx context.Context) ([]Recovery, error) {
	rs, err := m.recoveries()
	if err != nil {
		return nil, err
	}
	return rs.List(ctx)
}

// recoveryLive says whether the session's recovery grant still stands:
// the request it came from is pending and ready (not cancelled since).
func (m *MFA) recoveryLive(ctx context.Context, username string, f *freshProof) {
	if !f.recovery {
		return
	}
	if m.o.Recoveries == nil {
		f.recovery = false
		return
	}
	rec, err := m.o.Recoveries.Get(ctx, username)
	f.recovery = err == nil && rec.Ready(m.o.Now())
}

// completeRecovery follows the first factor added under a recovery grant:
// every other credential goes (the old factors are what was lost, or what
// someone else holds), the other sessions end, the request is closed and
// the person hears of it. Remembered devices were forgotten by the change
// itself (afterChange).
func (m *MFA) completeRecovery(ctx context.Context, sess *Session, u User, kept factors.Credential) error {
	if _, err := m.o.Recoveries.remove(ctx, u.Username); err != nil {
		return err
	}
	for _, r := range m.managers() {
		cs, err := r.List(ctx, u.Username)
		if err != nil {
			return fmt.Errorf("account recovery: list %s: %w", r.Kind(), err)
		}
		for _, c := range cs {
			if c.ID == kept.ID && c.Kind == kept.Kind {
				continue
			}
			if err := r.Remove(ctx, u.Username, c.ID); err != nil && !errors.Is(err, factors.ErrNotFound) {
				return fmt.Errorf("account recovery: remove %s: %w", r.Kind(), err)
			}
			if _, err := m.sessions.RevokeRef(ctx, u.Username, c.ID); err != nil {
				return err
			}
		}
	}
	for _, o := range m.sessions.ListUser(u.Username) {
		if o.Handle != sess.Handle {
			if err := m.sessions.RevokeHandle(ctx, u.Username, o.Handle); err != nil && !errors.Is(err, ErrSessionNotFound) {
				return err
			}
		}
	}
	m.o.Activity.Changed(ctx, u.Person(), activity.EventRecoveryCompleted, kept.Kind, kept.Name, clientOf(sess))
	return nil
}

// cancelURL is the absolute link that cancels the request of token.
func (r *RecoveryRequests) cancelURL(token string) string {
	return strings.TrimSuffix(r.o.PortalURL, "/") + "/.keygate/recover/cancel/" + token
}
