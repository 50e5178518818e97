package authn

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/problem"
)

// A person's own password: changing it while signed in, and "Forgot your
// password?". Both run on the parts the second-factor flows already use
// (the regulator, the fresh proofs of a session, the factors, the
// activity log and its notices), so what holds for a sign-in holds here:
// wrong passwords and codes are counted, a mailbox alone never takes over
// an account that has a second factor, and the person hears of every
// change with a "This wasn't me" link.

// Activity kinds of the password flows (the activity log's own kinds are
// strings; these are kept next to the flow that writes them).
const (
	// EventPasswordReset: the password was set through "Forgot your
	// password?" (a notice goes out).
	EventPasswordReset = "password_reset"
	// EventPasswordResetRequested: someone asked for a reset code for the
	// account (whether it went out is in the detail: sent, cooldown,
	// not_sent).
	EventPasswordResetRequested = "password_reset_requested"
)

// ChangePassword is the action WeakProofError names when a password
// change lacks a fresh second factor.
const ChangePassword = "change the password"

// Errors of the password flows where callers branch; each has a row in
// Problems and a message in both catalogues.
var (
	// ErrWrongPassword: the current password given to change it is not
	// right (counted like a wrong password at sign-in).
	ErrWrongPassword = errors.New("authn: the current password is not correct")
	// ErrResetExpired: the reset is unknown, finished or past its window;
	// the person starts again.
	ErrResetExpired = errors.New("authn: this password reset has expired or was already used; start again")
	// ErrResetDead: too many wrong codes for this reset.
	ErrResetDead = errors.New("authn: too many wrong codes for this password reset; start again")
	// ErrResetCodeFirst: a later step was asked for before the code was
	// confirmed.
	ErrResetCodeFirst = errors.New("authn: confirm the code from the email first")
	// ErrResetFactorFirst: the account has a second factor and the reset
	// has not been confirmed with it yet.
	ErrResetFactorFirst = errors.New("authn: this account has a second factor: confirm it before setting a new password")
	// ErrResetNoFactor: the account has second factors, but none that can
	// confirm a reset here (only the mailbox the code went to): an admin,
	// or an account recovery, is the way back.
	ErrResetNoFactor = errors.New("authn: none of this account's second factors can confirm a password reset")
)

// NewPasswordError refuses a new password the password policy does not
// accept, with every reason (a *PasswordPolicyError) and the minimum
// length the reasons refer to.
type NewPasswordError struct {
	*PasswordPolicyError
	MinLength int
}

// Unwrap gives the policy's error.
func (e *NewPasswordError) Unwrap() error { return e.PasswordPolicyError }

// Problem answers with the first reason in words (its key names it:
// err.new_password.too_common, …) and all of them as stable codes.
func (e *NewPasswordError) Problem(time.Time) problem.Problem {
	code := PolicyCodeInvalid
	if len(e.Codes) > 0 {
		code = e.Codes[0]
	}
	p := problem.Problem{Class: problem.Invalid, Code: "weak_password", Key: "err.new_password." + code}
	if code == PolicyCodeTooShort || code == PolicyCodeTooLong {
		n := e.MinLength
		if code == PolicyCodeTooLong {
			n = MaxPasswordLength
		}
		p.Args = []any{n}
	}
	reasons, codes := e.Reasons, e.Codes
	if reasons == nil {
		reasons = []string{}
	}
	if codes == nil {
		codes = []string{}
	}
	p.Extra = map[string]any{"reasons": reasons, "reason_codes": codes, "min_length": e.MinLength}
	return p
}

// Defaults of the reset.
const (
	// DefaultResetWindow is how long a reset may take from the code sent
	// to the new password (shorter when the code itself lives shorter).
	DefaultResetWindow = 15 * time.Minute
	// resetMaxTries: wrong codes a reset survives (a code's own limit is
	// the same by default).
	resetMaxTries = 5
	resetPrefix   = "pwreset/"
	resetV        = 1
	// sendTimeout bounds a reset code's delivery, which runs after the
	// answer (see BeginReset).
	sendTimeout = 30 * time.Second
)

// ResetStep is where a reset stands.
type ResetStep string

// The steps of a reset, in order.
const (
	ResetStepCode     ResetStep = "code"     // type the code from the mail
	ResetStepFactor   ResetStep = "factor"   // confirm with a second factor
	ResetStepPassword ResetStep = "password" // choose the new password
)

// Reset is a reset as the page shows it. Token names it in the next call
// (it changes at every step, like a session ID at every privilege change).
type Reset struct {
	Token     string
	Step      ResetStep
	ExpiresAt time.Time
	// Factors: at the factor step, the second factors the person can
	// confirm with (never the channel the code went through).
	Factors []Method
}

// resetRecord is a reset in the store, under the hash of its token. A
// reset for a name without an account (or without a confirmed address) is
// stored the same way with no User: it answers every code as wrong.
type resetRecord struct {
	V       int       `json:"v"`
	User    string    `json:"user,omitempty"`
	Subject string    `json:"subject"` // regulation: the account, or the login typed
	Step    ResetStep `json:"step"`
	Channel string    `json:"channel,omitempty"` // the factor kind the code went through
	Tries   int       `json:"tries,omitempty"`
	Factor  string    `json:"factor,omitempty"` // the second factor that confirmed it
	Expires time.Time `json:"expires"`
}

// PasswordOptions tune the password flows.
type PasswordOptions struct {
	// ResetWindow: how long a reset may take (default 15 minutes; never
	// longer than the reset code lives).
	ResetWindow time.Duration
	// Logger hears what the person must not (a code that could not be
	// sent); nil = none.
	Logger *slog.Logger
}

// Passwords runs the password flows over the second-factor flows' parts.
type Passwords struct {
	m   *MFA
	o   PasswordOptions
	kv  KV
	log *slog.Logger
	// sends are the reset mails still going out (Wait, for tests and a
	// clean shutdown).
	sends sync.WaitGroup
}

// NewPasswords builds the flows on m's users, sessions, factors,
// regulator and activity log.
func NewPasswords(m *MFA, o PasswordOptions) *Passwords {
	if o.ResetWindow <= 0 {
		o.ResetWindow = DefaultResetWindow
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Passwords{m: m, o: o, kv: m.users.kv, log: log}
}

// Wait returns once every reset code being sent has gone out (or failed).
func (p *Passwords) Wait() { p.sends.Wait() }

func (p *Passwords) now() time.Time { return p.m.o.Now().Round(0).UTC() }

// ---------------------------------------------------------------------
// Change (signed in)

// ChangePassword sets a new password for the session's user. It needs the
// current password (regulated like a sign-in: wrong ones count towards the
// account's lock) and, when the account has a second factor, a fresh one
// on this session (the step-up every security change needs; without it a
// *WeakProofError names the factors that would do). The new password must
// pass the policy (*NewPasswordError). Every other session of the person
// ends; this one continues under a new ID (returned). The person is told,
// with a "This wasn't me" link.
func (p *Passwords) ChangePassword(ctx context.Context, id, current, next string, c Client) (*Session, error) {
	m := p.m
	sess, u, err := m.sessionUser(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := p.freshFactor(ctx, sess, u); err != nil {
		return nil, err
	}
	if err := p.checkNew(u, next); err != nil {
		return nil, err
	}
	phc, err := p.checkCurrent(ctx, u, current, c)
	if err != nil {
		return nil, err
	}
	hash, err := m.users.hasher.Hash(NormalizePassword(next))
	if err != nil {
		return nil, fmt.Errorf("change password: %w", err)
	}
	nu, err := m.users.update(ctx, u.Username, func(x *User) error {
		if x.PasswordHash != phc {
			return ErrWrongPassword // changed meanwhile: the current password given is not current any more
		}
		x.PasswordHash = hash
		return nil
	}, true)
	if err != nil {
		return nil, err
	}
	// This session continues under a new ID; every other one ends.
	ns, err := m.sessions.Rotate(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("change password: %w", err)
	}
	if _, err := m.sessions.revokeWhere(ctx, u.Username, func(o *Session) bool { return o.Handle != ns.Handle }); err != nil {
		return nil, fmt.Errorf("change password: %w", err)
	}
	m.users.ev.Changed(ctx, nu.Person(), activity.EventPasswordChanged, "", "", c)
	return ns, nil
}

// freshFactor refuses a change on a session without a fresh second factor
// when the account has one (held credentials: an address alone is no
// second factor here, as everywhere on the security page).
func (p *Passwords) freshFactor(ctx context.Context, sess *Session, u User) error {
	m := p.m
	creds, err := m.held(ctx, u.Username)
	if err != nil {
		return err
	}
	if len(creds) == 0 {
		return nil
	}
	f := m.fresh(sess)
	if f.best >= factors.StrengthCode {
		return nil
	}
	werr := &WeakProofError{Action: ChangePassword, Need: factors.StrengthCode, Have: f.best}
	methods, err := m.Methods(ctx, u.Username)
	if err != nil {
		return err
	}
	for _, md := range methods {
		werr.Kinds = append(werr.Kinds, md.Kind)
	}
	m.o.Activity.Note(ctx, u.Username, activity.EventChangeRefused, "password", clientOf(sess))
	return werr
}

// checkNew applies the password policy to a new password.
func (p *Passwords) checkNew(u User, next string) error {
	err := p.m.users.policy.Check(u.Username, u.Email, next)
	var pe *PasswordPolicyError
	if errors.As(err, &pe) {
		return &NewPasswordError{PasswordPolicyError: pe, MinLength: p.MinLength()}
	}
	return err
}

// MinLength is the policy's minimum length of a password, in characters.
func (p *Passwords) MinLength() int {
	if n := p.m.users.policy.MinLength; n > 0 {
		return n
	}
	return DefaultMinPasswordLength
}

// checkCurrent verifies u's current password under the regulator's
// password gate, as SignIn does (a lock's spent budget checks nothing and
// waits the usual hash time; a lock is revealed only to the right
// password), and returns the hash it matched.
func (p *Passwords) checkCurrent(ctx context.Context, u User, current string, c Client) (string, error) {
	us := p.m.users
	if len(current) > 4*MaxPasswordLength {
		return "", ErrWrongPassword
	}
	try, err := us.reg.Begin(ctx, GatePassword, u.Username, c.IP)
	if err != nil {
		return "", fmt.Errorf("change password: %w", err)
	}
	if !try.Check {
		us.hasher.Imitate(ctx, ipKey(c.IP))
		return "", ErrWrongPassword
	}
	phc := u.PasswordHash
	if phc == "" {
		phc = us.hasher.dummy // no password yet: the same work, and no match
	}
	ok, err := us.hasher.VerifyFor(ctx, ipKey(c.IP), NormalizePassword(current), phc)
	if err != nil {
		_ = try.Release(ctx)
		return "", fmt.Errorf("change password: %w", err)
	}
	if !ok || phc == us.hasher.dummy {
		locked := try.Fail(ctx)
		us.ev.Failed(ctx, u.Username, activity.EventSignInFailed, policy.FactorPassword, c)
		if !locked.IsZero() {
			us.ev.Note(ctx, u.Username, activity.EventLocked, locked.Format(time.RFC3339), c)
		}
		return "", ErrWrongPassword
	}
	if try.Locked != nil {
		return "", us.locked(ctx, u, try.Locked)
	}
	if err := try.Pass(ctx); err != nil {
		return "", fmt.Errorf("change password: %w", err)
	}
	return phc, nil
}

// ---------------------------------------------------------------------
// Reset ("Forgot your password?")

// BeginReset starts a reset for a username or an email address and
// returns its token. The answer is the same whether the login names an
// account, whether it has a confirmed address, and whether a code could
// be sent now (cooldown, hourly cap, mail down): the same store reads and
// the same one write, and the code goes out after the answer, so neither
// the answer nor its timing tells accounts apart. Only a confirmed
// address gets a code; the person's activity log says whether it went.
func (p *Passwords) BeginReset(ctx context.Context, login, lang string, c Client) (Reset, error) {
	m := p.m
	login = strings.TrimSpace(login)
	u, found, err := m.users.lookupLogin(ctx, login)
	if err != nil {
		return Reset{}, fmt.Errorf("password reset: %w", err)
	}
	now := p.now()
	rec := resetRecord{V: resetV, Step: ResetStepCode, Subject: "#" + strings.ToLower(login), Expires: now.Add(p.window())}
	ac, channel, codes := p.channel()
	if found {
		rec.Subject = u.Username
		if codes && !u.Disabled && u.EmailVerified && u.Email != "" {
			rec.User, rec.Channel = u.Username, channel
		}
	}
	token, err := p.put(ctx, rec, now)
	if err != nil {
		return Reset{}, err
	}
	if rec.User != "" {
		p.sends.Add(1)
		go p.sendCode(context.WithoutCancel(ctx), ac, u, lang, c)
	}
	return Reset{Token: token, Step: ResetStepCode, ExpiresAt: rec.Expires}, nil
}

// channel is the factor that sends reset codes to the confirmed address.
func (p *Passwords) channel() (factors.AddressCodes, string, bool) {
	for _, f := range p.m.o.Factors {
		if ac, ok := f.(factors.AddressCodes); ok {
			return ac, f.Kind(), true
		}
	}
	return nil, "", false
}

// window is how long a reset may take: the configured window, but no
// longer than the code lives, so that a reset for a name without an
// account ends exactly when a real one's code would expire.
func (p *Passwords) window() time.Duration {
	w := p.o.ResetWindow
	for _, f := range p.m.o.Factors {
		if _, ok := f.(factors.AddressCodes); !ok {
			continue
		}
		if cl, ok := f.(factors.CodeLifetime); ok && cl.CodeTTL() > 0 {
			w = min(w, cl.CodeTTL())
		}
		break
	}
	return w
}

// sendCode mails the reset code. It runs after BeginReset answered; what
// happened is written to the person's activity log (and a failure to the
// operator's log), never to whoever asked.
func (p *Passwords) sendCode(ctx context.Context, ac factors.AddressCodes, u User, lang string, c Client) {
	defer p.sends.Done()
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	_, err := ac.SendFor(ctx, subject(u, lang, c), factors.PurposeResetPassword, "")
	detail := "sent"
	switch {
	case err == nil:
	case errors.Is(err, factors.ErrCooldown), errors.Is(err, factors.ErrHourlyCap):
		detail = "cooldown"
	default:
		detail = "not_sent"
		p.log.Warn("password reset code not sent", "user", u.Username, "err", err)
	}
	p.m.o.Activity.Note(ctx, u.Username, EventPasswordResetRequested, detail, c)
}

// ResetState is the reset of token as it stands (for the page of its
// step).
func (p *Passwords) ResetState(ctx context.Context, token string) (Reset, error) {
	rec, _, err := p.load(ctx, token)
	if err != nil {
		return Reset{}, err
	}
	r := Reset{Token: token, Step: rec.Step, ExpiresAt: rec.Expires}
	if rec.Step == ResetStepFactor {
		u, err := p.resetUser(ctx, rec)
		if err != nil {
			return Reset{}, err
		}
		if r.Factors, err = p.resetFactors(ctx, u, rec.Channel); err != nil {
			return Reset{}, err
		}
	}
	return r, nil
}

// VerifyResetCode checks the code from the mail. Every wrong code counts,
// for the reset (resetMaxTries, then ErrResetDead) and at the regulator's
// second-factor gate under a subject of its own (so strangers typing codes
// cannot lock the account's sign-in); a reset without an account answers
// each code as wrong, after the same work. Right, the reset moves on to
// the second factor (when the account has one) or to the new password,
// under a new token.
func (p *Passwords) VerifyResetCode(ctx context.Context, token, code string, c Client) (Reset, error) {
	rec, ver, err := p.load(ctx, token)
	if err != nil {
		return Reset{}, err
	}
	if rec.Step != ResetStepCode {
		// The code was confirmed already: the page of the next step.
		return Reset{}, ErrCodeUsed
	}
	if rec.Tries >= resetMaxTries {
		return Reset{}, ErrResetDead
	}
	// A lock is told before any code is checked (a code works once, and
	// checking it now would only burn it); resets without an account are
	// counted and locked alike, so the lock tells nothing either.
	gate := "reset/" + rec.Subject
	if le, err := p.m.o.Regulator.Status(ctx, GateSecondFactor, gate, c.IP); err != nil {
		return Reset{}, err
	} else if le != nil {
		return Reset{}, le
	}
	try, err := p.m.o.Regulator.Begin(ctx, GateSecondFactor, gate, c.IP)
	if err != nil {
		return Reset{}, err
	}
	var u User
	var cerr error
	switch {
	case !try.Check:
		cerr = ErrWrongCode // a lock's spent budget: nothing is checked
	case rec.User == "":
		// The same read a code check makes, for a name no account has.
		if ac, _, ok := p.channel(); ok {
			h := sha256.Sum256([]byte(rec.Subject))
			_ = ac.ProveFor(ctx, factors.Subject{Username: "#" + hex.EncodeToString(h[:16])}, factors.PurposeResetPassword, code)
		}
		cerr = ErrWrongCode
	default:
		if u, cerr = p.resetUser(ctx, rec); cerr == nil {
			ac, _, _ := p.channel()
			cerr = codeRefusal(ac.ProveFor(ctx, subject(u, "", c), factors.PurposeResetPassword, code), ErrCodeUsed)
		}
	}
	switch {
	case cerr == nil:
	case errors.Is(cerr, ErrCodeExpired):
		_ = try.Release(ctx)
		p.drop(ctx, token)
		return Reset{}, ErrResetExpired
	case errors.Is(cerr, ErrCodeDead):
		_ = try.Release(ctx)
		p.drop(ctx, token)
		return Reset{}, ErrResetDead
	case errors.Is(cerr, ErrWrongCode), errors.Is(cerr, ErrNoCodeSent), errors.Is(cerr, ErrCodeUsed):
		// A code never sent (the mail failed, a cooldown held it back)
		// answers like a wrong one: a reset without an account can say
		// nothing else.
		if locked := try.Fail(ctx); !locked.IsZero() && rec.User != "" {
			p.m.o.Activity.Note(ctx, rec.User, activity.EventLocked, locked.Format(time.RFC3339), c)
		}
		if rec.User != "" {
			p.m.o.Activity.Failed(ctx, rec.User, activity.EventSecondFactorFailed, rec.Channel, c)
		} else {
			p.m.o.Activity.Decoy(ctx, subjectKey("#reset/"+rec.Subject), c)
		}
		rec.Tries++
		nver, err := p.rewrite(ctx, token, rec, ver)
		if err != nil {
			return Reset{}, err
		}
		if rec.User == "" {
			// A code check of a real account writes its code record
			// durably; this reset writes its own once more instead.
			if _, err := p.rewrite(ctx, token, rec, nver); err != nil {
				return Reset{}, err
			}
		}
		if errors.Is(cerr, ErrCodeUsed) {
			return Reset{}, ErrCodeUsed
		}
		return Reset{}, ErrWrongCode
	default:
		_ = try.Release(ctx)
		return Reset{}, cerr
	}
	if try.Locked != nil {
		// Too many wrong codes from here or for this account lately; the
		// right code is told so rather than let through.
		return Reset{}, try.Locked
	}
	if err := try.Pass(ctx); err != nil {
		return Reset{}, err
	}
	rec.Tries = 0
	rec.Step = ResetStepPassword
	var methods []Method
	creds, err := p.m.held(ctx, u.Username)
	if err != nil {
		return Reset{}, err
	}
	if len(creds) > 0 {
		// A mailbox alone never resets the password of an account that
		// has a second factor.
		if methods, err = p.resetFactors(ctx, u, rec.Channel); err != nil {
			return Reset{}, err
		}
		if len(methods) == 0 {
			p.drop(ctx, token)
			return Reset{}, ErrResetNoFactor
		}
		rec.Step = ResetStepFactor
	}
	next, err := p.advance(ctx, token, rec)
	if err != nil {
		return Reset{}, err
	}
	return Reset{Token: next, Step: rec.Step, ExpiresAt: rec.Expires, Factors: methods}, nil
}

// resetFactors are the second factors u can confirm a reset with: those
// u can use now, except the channel the code went through (that mailbox
// was just proved; it proves nothing more a second time).
func (p *Passwords) resetFactors(ctx context.Context, u User, channel string) ([]Method, error) {
	all, err := p.m.Methods(ctx, u.Username)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(md Method) bool {
		f := p.m.o.Factors.Get(md.Kind)
		_, mailed := f.(factors.AddressCodes)
		return md.Kind == channel || mailed
	}), nil
}

// resetFactor checks that kind may confirm the reset of rec now.
func (p *Passwords) resetFactor(ctx context.Context, token, kind string) (resetRecord, uint64, User, factors.Factor, error) {
	rec, ver, err := p.load(ctx, token)
	if err != nil {
		return rec, 0, User{}, nil, err
	}
	switch rec.Step {
	case ResetStepCode:
		return rec, 0, User{}, nil, ErrResetCodeFirst
	case ResetStepPassword:
		return rec, 0, User{}, nil, ErrFactorUnavailable // confirmed already
	}
	u, err := p.resetUser(ctx, rec)
	if err != nil {
		return rec, 0, User{}, nil, err
	}
	methods, err := p.resetFactors(ctx, u, rec.Channel)
	if err != nil {
		return rec, 0, User{}, nil, err
	}
	if !slices.ContainsFunc(methods, func(md Method) bool { return md.Kind == kind }) {
		return rec, 0, User{}, nil, ErrFactorUnavailable
	}
	f, err := p.m.factor(kind)
	return rec, ver, u, f, err
}

// BeginResetFactor starts the second factor's proof for a reset at the
// factor step: a ceremony's options, or a code sent (SMS).
func (p *Passwords) BeginResetFactor(ctx context.Context, token, kind, lang string, c Client) (factors.Challenge, error) {
	_, _, u, f, err := p.resetFactor(ctx, token, kind)
	if err != nil {
		return factors.Challenge{}, err
	}
	ch, err := f.Begin(ctx, subject(u, lang, c))
	return ch, p.m.refusal(f, err)
}

// ProveResetFactor checks the second factor's response for a reset at the
// factor step, regulated like a sign-in's second factor (the account's own
// gate: whoever got here holds the mailbox), and moves the reset on to the
// new password under a new token.
func (p *Passwords) ProveResetFactor(ctx context.Context, token, kind, lang string, r factors.Response, c Client) (Reset, error) {
	rec, _, u, f, err := p.resetFactor(ctx, token, kind)
	if err != nil {
		return Reset{}, err
	}
	m := p.m
	at := &Session{Username: u.Username, IP: c.IP, UserAgent: c.UserAgent}
	try, err := m.admit(ctx, at, u)
	if err != nil {
		return Reset{}, err
	}
	proof, err := f.Prove(ctx, subject(u, lang, c), r)
	if err := m.settle(ctx, try, at, u, kind, m.refusal(f, err)); err != nil {
		return Reset{}, err
	}
	if proof.Notify {
		m.o.Activity.RecoveryUsed(ctx, u.Person(), c, proof.Remaining)
	}
	rec.Step, rec.Factor = ResetStepPassword, kind
	next, err := p.advance(ctx, token, rec)
	if err != nil {
		return Reset{}, err
	}
	return Reset{Token: next, Step: rec.Step, ExpiresAt: rec.Expires}, nil
}

// FinishReset sets the new password of a reset at its last step. The
// reset is used once (of two concurrent finishes exactly one wins); every
// session of the person ends, their remembered devices are forgotten,
// locks from guessed passwords end (the password they guessed is gone),
// and the person is told. A password the policy refuses changes nothing
// and leaves the reset at this step.
func (p *Passwords) FinishReset(ctx context.Context, token, next string, c Client) (User, error) {
	m := p.m
	rec, _, err := p.load(ctx, token)
	if err != nil {
		return User{}, err
	}
	switch rec.Step {
	case ResetStepCode:
		return User{}, ErrResetCodeFirst
	case ResetStepFactor:
		return User{}, ErrResetFactorFirst
	}
	u, err := p.resetUser(ctx, rec)
	if err != nil {
		return User{}, err
	}
	if rec.Factor == "" {
		// No second factor confirmed it: only right if the account still
		// has none (one added meanwhile must be asked for).
		if creds, err := m.held(ctx, u.Username); err != nil {
			return User{}, err
		} else if len(creds) > 0 {
			return User{}, ErrResetFactorFirst
		}
	}
	if err := p.checkNew(u, next); err != nil {
		return User{}, err
	}
	hash, err := m.users.hasher.Hash(NormalizePassword(next))
	if err != nil {
		return User{}, fmt.Errorf("password reset: %w", err)
	}
	if _, err := p.kv.Consume(ctx, resetKey(token)); errors.Is(err, store.ErrNotFound) {
		return User{}, ErrResetExpired
	} else if err != nil {
		return User{}, fmt.Errorf("password reset: %w", err)
	}
	// From here the reset is used: the rest happens even if the caller
	// gave up, or the person would be left half reset.
	ctx = context.WithoutCancel(ctx)
	nu, err := m.users.update(ctx, u.Username, func(x *User) error { x.PasswordHash = hash; return nil }, true)
	if err != nil {
		return User{}, err
	}
	if _, err := m.sessions.RevokeUser(ctx, u.Username); err != nil {
		return User{}, fmt.Errorf("password reset: %w", err)
	}
	if m.o.Devices != nil {
		if _, err := m.o.Devices.RevokeAll(ctx, u.Username); err != nil {
			return User{}, fmt.Errorf("password reset: %w", err)
		}
	}
	if _, err := m.o.Regulator.Unlock(ctx, u.Username); err != nil {
		return User{}, fmt.Errorf("password reset: %w", err)
	}
	m.users.ev.Changed(ctx, nu.Person(), EventPasswordReset, rec.Factor, "", c)
	return nu, nil
}

// resetUser is the account of a reset, fresh: gone, disabled, or with its
// address changed or unconfirmed since, the reset is over.
func (p *Passwords) resetUser(ctx context.Context, rec resetRecord) (User, error) {
	if rec.User == "" {
		return User{}, ErrResetExpired
	}
	u, err := p.m.users.Get(ctx, rec.User)
	if errors.Is(err, ErrUserNotFound) {
		return User{}, ErrResetExpired
	}
	if err != nil {
		return User{}, err
	}
	if u.Disabled || !u.EmailVerified || u.Email == "" {
		return User{}, ErrResetExpired
	}
	return u, nil
}

// ---------------------------------------------------------------------
// Reset records

func resetKey(token string) string {
	h := sha256.Sum256([]byte(token))
	return resetPrefix + hex.EncodeToString(h[:])
}

// newResetToken is 256 bits from crypto/rand, hex (never mistaken for a
// code in a mail or a log).
func newResetToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("password reset: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// put stores rec under a new token (only its hash is a key), until the
// reset's window ends.
func (p *Passwords) put(ctx context.Context, rec resetRecord, now time.Time) (string, error) {
	token, err := newResetToken()
	if err != nil {
		return "", err
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return "", fmt.Errorf("password reset: %w", err)
	}
	ttl := max(rec.Expires.Sub(now), time.Second)
	if _, err := p.kv.CompareAndSet(ctx, resetKey(token), raw, 0, store.WriteOptions{TTL: ttl, Durable: true}); err != nil {
		return "", fmt.Errorf("password reset: %w", err)
	}
	return token, nil
}

// load reads the reset of token; unknown, malformed or past its window
// reads as ErrResetExpired.
func (p *Passwords) load(ctx context.Context, token string) (resetRecord, uint64, error) {
	if len(token) != 64 {
		return resetRecord{}, 0, ErrResetExpired
	}
	it, err := p.kv.Get(ctx, resetKey(token))
	if errors.Is(err, store.ErrNotFound) {
		return resetRecord{}, 0, ErrResetExpired
	}
	if err != nil {
		return resetRecord{}, 0, fmt.Errorf("password reset: %w", err)
	}
	var rec resetRecord
	if err := json.Unmarshal(it.Value, &rec); err != nil || rec.V != resetV {
		return resetRecord{}, 0, ErrResetExpired
	}
	if !p.now().Before(rec.Expires) {
		return resetRecord{}, 0, ErrResetExpired
	}
	return rec, it.Version, nil
}

// rewrite stores rec over version ver of token's record (a counted try).
// Losing to a concurrent writer is answered as that writer left it: a
// reset that moved on or was used reads as expired here.
func (p *Passwords) rewrite(ctx context.Context, token string, rec resetRecord, ver uint64) (uint64, error) {
	for range maxCASRetries {
		raw, err := json.Marshal(rec)
		if err != nil {
			return 0, fmt.Errorf("password reset: %w", err)
		}
		ttl := max(rec.Expires.Sub(p.now()), time.Second)
		nver, err := p.kv.CompareAndSet(ctx, resetKey(token), raw, ver, store.WriteOptions{TTL: ttl, Durable: true})
		if err == nil {
			return nver, nil
		}
		if !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
			return 0, fmt.Errorf("password reset: %w", err)
		}
		// Another try was counted at the same moment: count this one
		// again on what that one wrote.
		cur, cver, lerr := p.load(ctx, token)
		if lerr != nil {
			return 0, lerr
		}
		if cur.Step != rec.Step {
			return 0, ErrResetExpired
		}
		cur.Tries++
		rec, ver = cur, cver
	}
	return 0, fmt.Errorf("password reset: %w", store.ErrConflict)
}

// advance moves a reset to its next step under a new token: the old one
// is consumed first, so of two concurrent advances exactly one wins.
func (p *Passwords) advance(ctx context.Context, token string, rec resetRecord) (string, error) {
	if _, err := p.kv.Consume(ctx, resetKey(token)); errors.Is(err, store.ErrNotFound) {
		return "", ErrResetExpired
	} else if err != nil {
		return "", fmt.Errorf("password reset: %w", err)
	}
	return p.put(context.WithoutCancel(ctx), rec, p.now())
}

// drop ends a reset (best effort: its TTL ends it anyway).
func (p *Passwords) drop(ctx context.Context, token string) {
	_ = p.kv.Delete(ctx, resetKey(token))
}

// Interface guards.
var _ problem.Describer = (*NewPasswordError)(nil)
