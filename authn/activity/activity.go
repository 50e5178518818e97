// Package activity keeps what happened to accounts: each person's activity
// log (sign-ins, failures, security changes) with the "This wasn't me"
// links it mails, the notices that tell people about it, and the audit log
// of what admins did.
//
// It is a room of its own, apart from authn, because it is a consumer of
// authn's events and not a part of its decisions: nothing here says who may
// sign in. authn imports it (to raise events and show the log); it imports
// neither authn nor any factor, so it has its own small Person and Client
// types, and sends mail through authn/mail.
package activity

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/keygate/keygate/authn/store"
)

// Event kinds of the activity log.
const (
	EventSignIn             = "sign_in"
	EventSignInFailed       = "sign_in_failed"
	EventSecondFactor       = "second_factor"
	EventSecondFactorFailed = "second_factor_failed"
	EventLocked             = "locked"
	EventUnlocked           = "unlocked"
	EventFactorAdded        = "factor_added"
	EventFactorRemoved      = "factor_removed"
	EventRecoveryCreated    = "recovery_codes_created"
	EventPasswordChanged    = "password_changed"
	EventDeviceTrusted      = "device_trusted"
	EventDevicesForgotten   = "devices_forgotten"
	EventEmailVerified      = "email_verified"
	EventSessionRevoked     = "session_revoked"
	EventSignedOutAll       = "signed_out_everywhere"
	EventReported           = "reported"
	EventFactorsReset       = "factors_reset"
	EventFactorRenamed      = "factor_renamed"
	// EventChangeRefused: a change of second factors refused for want of
	// a strong enough fresh proof (Detail: the change). Logged, not
	// mailed: it changed nothing, and whoever tried may read the mailbox.
	EventChangeRefused = "factor_change_refused"
	// Self-service account recovery after losing every second factor
	// (authn/recovery.go): requested (a notice with a cancel link goes
	// out on its own), cancelled (Detail: by whom or what), approved by an
	// admin (Detail: the admin), completed (the old factors removed).
	EventRecoveryRequested = "recovery_requested"
	EventRecoveryCancelled = "recovery_cancelled"
	EventRecoveryApproved  = "recovery_approved"
	EventRecoveryCompleted = "recovery_completed"
)

// Event is one entry of a person's activity log.
type Event struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Factor  string    `json:"factor,omitempty"` // password, passkey, totp, …
	Detail  string    `json:"detail,omitempty"` // a credential's name, a lock's end
	IP      string    `json:"ip,omitempty"`
	Browser string    `json:"browser,omitempty"` // DescribeUserAgent
	// Lang is the language the person used, so that a later notice (sent
	// from a request that does not say) is written in it.
	Lang string `json:"lang,omitempty"`

	// What the notice about this event needs from its client and the log
	// does not keep: the browser in parts (so that a Russian mail says
	// "на Linux") and the zone the browser claimed (checked, see TimeZone).
	agent Agent
	tz    string
}

// Options configure the log; zero values take the defaults.
type Options struct {
	// Retention: how long events are kept (default 90 days).
	Retention time.Duration
	// Notices mails people about new sign-ins and security changes (nil:
	// nothing is mailed).
	Notices *Notices
	// PortalURL is the origin links in notices point to
	// ("https://app.example.com").
	PortalURL string
	Now       func() time.Time
	Logger    *slog.Logger
}

// DefaultRetention keeps activity for 90 days.
const DefaultRetention = 90 * 24 * time.Hour

const (
	activityPrefix = "activity/"
	notMePrefix    = "notme/"
	// notMeTTL: how long the "This wasn't me" link of a notice works.
	notMeTTL = 7 * 24 * time.Hour
	// knownScan bounds how far back a sign-in is compared with earlier
	// ones to tell a new device or address.
	knownScan = 200
	// maxEventField clips client-supplied text.
	maxEventField = 128
)

// ErrNotMeInvalid: a "This wasn't me" link that is unknown, used or
// expired.
var ErrNotMeInvalid = errors.New("activity: this link is invalid, already used or expired")

// Log is the append-only per-user event log (each event its own key,
// written once with compare-and-set against absence, expiring after the
// retention), and the notices that go with it.
type Log struct {
	kv KV
	o  Options
}

// NewLog builds the log.
func NewLog(kv KV, o Options) *Log {
	o.Retention = cmp.Or(max(o.Retention, 0), DefaultRetention)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.PortalURL = strings.TrimSuffix(o.PortalURL, "/")
	return &Log{kv: kv, o: o}
}

// eventKey sorts newest first: the time is stored inverted, so a prefix
// scan reads the latest events first and can stop early. The random tail
// keeps two events of one nanosecond apart.
func eventKey(username string, at time.Time) string {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return fmt.Sprintf("%s%s/%016x%s", activityPrefix, username, uint64(math.MaxInt64-at.UnixNano()), hex.EncodeToString(rnd[:]))
}

// Record appends e to username's log. A nil Log records nothing. At zero
// is now, for callers outside the log; the log's own events are stamped
// when they are made (Log.event), before they go to the log and to a
// notice, since Record stamps only its own copy.
func (a *Log) Record(ctx context.Context, username string, e Event) error {
	if a == nil {
		return nil
	}
	if e.At.IsZero() {
		e.At = a.o.Now().Round(0).UTC()
	}
	e.IP, e.Browser, e.Detail = Clip(e.IP, maxIPLen), Clip(e.Browser, maxEventField), Clip(e.Detail, maxEventField)
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("record activity: %w", err)
	}
	// Not durable: an fsync per event would make every wrong password a
	// disk flush; a crash loses at most the last moments of the log.
	if _, err := a.kv.CompareAndSet(ctx, eventKey(username, e.At), raw, 0, store.WriteOptions{TTL: a.o.Retention}); err != nil {
		return fmt.Errorf("record activity of %q: %w", username, err)
	}
	return nil
}

// List returns up to limit of username's events, newest first, within the
// retention.
func (a *Log) List(ctx context.Context, username string, limit int) ([]Event, error) {
	if a == nil {
		return nil, nil
	}
	oldest := a.o.Now().Add(-a.o.Retention)
	var out []Event
	errEnough := errors.New("enough")
	err := a.kv.Scan(ctx, activityPrefix+username+"/", func(it store.Item) error {
		var e Event
		if json.Unmarshal(it.Value, &e) != nil {
			return nil // an unreadable entry expires with the rest
		}
		if e.At.Before(oldest) {
			return errEnough // newest first: everything after is older
		}
		out = append(out, e)
		if limit > 0 && len(out) >= limit {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, fmt.Errorf("list activity of %q: %w", username, err)
	}
	return out, nil
}

// event is an Event from c, happening now. It is the one place the log's
// events get their time: every copy made afterwards (the log's record, the
// notice) carries it. Stamping inside Record instead once left every
// notice saying "0001-01-01 00:00 UTC": Record takes the event by value.
func (a *Log) event(kind, factor, detail string, c Client) Event {
	e := Event{At: a.o.Now().Round(0).UTC(), Kind: kind, Factor: factor, Detail: detail, IP: c.IP, Lang: c.Lang, tz: TimeZone(c.TimeZone)}
	if c.UserAgent != "" {
		e.agent = ParseUserAgent(c.UserAgent)
		e.Browser = e.agent.Describe("en")
	}
	return e
}

// record is Record for best-effort callers: the action the event describes
// already happened, and must not fail because the log could not be written.
func (a *Log) record(ctx context.Context, username string, e Event) {
	if err := a.Record(ctx, username, e); err != nil {
		a.o.Logger.Error("activity not recorded", "user", username, "kind", e.Kind, "err", err)
	}
}

// SignedIn records a sign-in and mails the person when it came from a
// browser or an address their recent sign-ins did not.
func (a *Log) SignedIn(ctx context.Context, u Person, factor string, c Client) {
	if a == nil {
		return
	}
	e := a.event(EventSignIn, factor, "", c)
	known, err := a.known(ctx, u.Username, e)
	if err != nil {
		a.o.Logger.Error("activity: compare with earlier sign-ins", "user", u.Username, "err", err)
		known = true // no mail on a guess
	}
	a.record(ctx, u.Username, e)
	if !known {
		a.notify(ctx, u, Notice{Kind: NoticeNewSignIn, Event: e}, false)
	}
}

// known says whether an earlier sign-in came from the same browser and
// the same address.
func (a *Log) known(ctx context.Context, username string, e Event) (bool, error) {
	events, err := a.List(ctx, username, knownScan)
	if err != nil {
		return false, err
	}
	sameIP, sameBrowser := false, false
	for _, p := range events {
		if p.Kind != EventSignIn {
			continue
		}
		sameIP = sameIP || p.IP == e.IP
		sameBrowser = sameBrowser || p.Browser == e.Browser
	}
	return sameIP && sameBrowser, nil
}

// Passed records a check passed on the way in that needs no mail (a second
// factor after a password the log already has).
func (a *Log) Passed(ctx context.Context, username, kind, factor string, c Client) {
	if a == nil {
		return
	}
	a.record(ctx, username, a.event(kind, factor, "", c))
}

// Failed records a failed attempt of a known account.
func (a *Log) Failed(ctx context.Context, username, kind, factor string, c Client) {
	if a == nil {
		return
	}
	a.record(ctx, username, a.event(kind, factor, "", c))
}

// decoyTTL: decoy events are kept only briefly; nobody reads them.
const decoyTTL = time.Hour

// Decoy does the work of Failed for a login that matches no account: an
// event of the same size written the same way, expiring soon, so that the
// time a failed sign-in takes does not tell accounts apart. name must be
// one no account can have (authn passes '#' and a hash of the login).
func (a *Log) Decoy(ctx context.Context, name string, c Client) {
	if a == nil {
		return
	}
	e := a.event(EventSignInFailed, "password", "", c)
	e.IP, e.Browser = Clip(e.IP, maxIPLen), Clip(e.Browser, maxEventField)
	raw, _ := json.Marshal(e)
	if _, err := a.kv.CompareAndSet(ctx, eventKey(name, e.At), raw, 0, store.WriteOptions{TTL: decoyTTL}); err != nil {
		a.o.Logger.Error("activity: decoy write", "err", err)
	}
}

// LockedOut does nothing: the log records a lock on the account it
// concerns, with its end and the client (Note, EventLocked); the bare kind
// is for metrics. It makes the log a complete authn.Events on its own.
func (a *Log) LockedOut(string) {}

// Note records an event that needs no mail (a session ended, devices
// forgotten, a lock).
func (a *Log) Note(ctx context.Context, username, kind, detail string, c Client) {
	if a == nil {
		return
	}
	a.record(ctx, username, a.event(kind, "", detail, c))
}

// Changed records a security change and mails the person about it, with a
// "This wasn't me" link.
func (a *Log) Changed(ctx context.Context, u Person, kind, factor, detail string, c Client) {
	if a == nil {
		return
	}
	e := a.event(kind, factor, detail, c)
	a.record(ctx, u.Username, e)
	a.notify(ctx, u, Notice{Kind: NoticeSecurityChange, Event: e}, false)
}

// issueNotMe stores a one-time "This wasn't me" token for username. The
// token is hex so that it can never look like a one-time code in a mail.
func (a *Log) issueNotMe(ctx context.Context, username string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b)
	if _, err := a.kv.Set(ctx, notMeKey(token), []byte(username), store.WriteOptions{TTL: notMeTTL, Durable: true}); err != nil {
		return "", err
	}
	return token, nil
}

// CheckNotMe says whether a "This wasn't me" token is live (the
// confirmation page), without using it.
func (a *Log) CheckNotMe(ctx context.Context, token string) error {
	if a == nil || len(token) != 64 {
		return ErrNotMeInvalid
	}
	if _, err := a.kv.Get(ctx, notMeKey(token)); errors.Is(err, store.ErrNotFound) {
		return ErrNotMeInvalid
	} else if err != nil {
		return fmt.Errorf("check link: %w", err)
	}
	return nil
}

// RedeemNotMe uses a token once and returns its account (the caller then
// signs it out everywhere and locks it).
func (a *Log) RedeemNotMe(ctx context.Context, token string) (string, error) {
	if a == nil || len(token) != 64 {
		return "", ErrNotMeInvalid
	}
	v, err := a.kv.Consume(ctx, notMeKey(token))
	if errors.Is(err, store.ErrNotFound) {
		return "", ErrNotMeInvalid
	}
	if err != nil {
		return "", fmt.Errorf("redeem link: %w", err)
	}
	return string(v), nil
}

func notMeKey(token string) string {
	h := sha256.Sum256([]byte(token))
	return notMePrefix + hex.EncodeToString(h[:])
}
