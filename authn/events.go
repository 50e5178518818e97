package authn

import (
	"context"

	"github.com/keygate/keygate/authn/activity"
)

// Client is where an attempt or a change comes from: the address
// regulation counts, what the activity log shows, and the language notices
// are written in. It is activity.Client, so that what authn is told about a
// request reaches the log as it is.
type Client = activity.Client

// clientOf describes the browser of a session (its sign-in address and
// user agent), for events that happen on it.
func clientOf(s *Session) Client { return Client{IP: s.IP, UserAgent: s.UserAgent} }

// Person is u as the activity log and notices know a person: a name,
// where notices go, and the language and time zone they are written in.
func (u User) Person() activity.Person {
	return activity.Person{Username: u.Username, Email: u.Email, EmailVerified: u.EmailVerified, Lang: u.Lang, TimeZone: u.TimeZone}
}

// Events hears what happens to accounts, from the one place where each
// thing happens: Users (sign-ins, failures, password changes) and the
// Regulator (locks). The activity log implements it (and mails notices
// from it), metrics implement the part they count, and cmd/keygate joins
// them with Tee and hands the result to the constructors. It replaces the
// setters and closures that were set after construction: every part is
// whole once built.
//
// Methods are called on the request's path, after the fact they report:
// they must not fail the request (errors are the listener's to log) and
// must be quick.
type Events interface {
	// SignedIn: p signed in with factor (policy.Factor*) from c.
	SignedIn(ctx context.Context, p activity.Person, factor string, c Client)
	// Failed: an attempt of the known account username failed
	// (activity.EventSignInFailed, activity.EventSecondFactorFailed).
	Failed(ctx context.Context, username, kind, factor string, c Client)
	// Decoy: an attempt for a login without an account failed. It must
	// cost what Failed costs, so that timing does not tell accounts apart;
	// name is one no account can have.
	Decoy(ctx context.Context, name string, c Client)
	// Note: something that needs no mail happened to username (a lock, a
	// session ended).
	Note(ctx context.Context, username, kind, detail string, c Client)
	// Changed: a security setting of p changed; p hears of it.
	Changed(ctx context.Context, p activity.Person, kind, factor, detail string, c Client)
	// LockedOut: a lock of kind LockoutPassword, LockoutSecondFactor or
	// LockoutIP began.
	LockedOut(kind string)
}

// NoEvents hears nothing. Embed it to implement only the events a
// listener cares about.
type NoEvents struct{}

// SignedIn implements Events.
func (NoEvents) SignedIn(context.Context, activity.Person, string, Client) {}

// Failed implements Events.
func (NoEvents) Failed(context.Context, string, string, string, Client) {}

// Decoy implements Events.
func (NoEvents) Decoy(context.Context, string, Client) {}

// Note implements Events.
func (NoEvents) Note(context.Context, string, string, string, Client) {}

// Changed implements Events.
func (NoEvents) Changed(context.Context, activity.Person, string, string, string, Client) {}

// LockedOut implements Events.
func (NoEvents) LockedOut(string) {}

// Tee tells each of events in turn (nil ones are left out).
func Tee(events ...Events) Events {
	var t tee
	for _, e := range events {
		if e != nil {
			t = append(t, e)
		}
	}
	return t
}

type tee []Events

func (t tee) SignedIn(ctx context.Context, p activity.Person, factor string, c Client) {
	for _, e := range t {
		e.SignedIn(ctx, p, factor, c)
	}
}

func (t tee) Failed(ctx context.Context, username, kind, factor string, c Client) {
	for _, e := range t {
		e.Failed(ctx, username, kind, factor, c)
	}
}

func (t tee) Decoy(ctx context.Context, name string, c Client) {
	for _, e := range t {
		e.Decoy(ctx, name, c)
	}
}

func (t tee) Note(ctx context.Context, username, kind, detail string, c Client) {
	for _, e := range t {
		e.Note(ctx, username, kind, detail, c)
	}
}

func (t tee) Changed(ctx context.Context, p activity.Person, kind, factor, detail string, c Client) {
	for _, e := range t {
		e.Changed(ctx, p, kind, factor, detail, c)
	}
}

func (t tee) LockedOut(kind string) {
	for _, e := range t {
		e.LockedOut(kind)
	}
}

// Interface guards: the activity log is a listener as it is.
var (
	_ Events = (*activity.Log)(nil)
	_ Events = NoEvents{}
	_ Events = tee(nil)
)
