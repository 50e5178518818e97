package authn

import "github.com/keygate/keygate/authn/activity"

// Client is where an attempt or a change comes from: the address
// regulation counts, what the activity log shows, and the language notices
// are written in. It is activity.Client, so that what authn is told about a
// request reaches the log as it is.
type Client = activity.Client

// clientOf describes the browser of a session (its sign-in address and
// user agent), for events that happen on it.
func clientOf(s *Session) Client { return Client{IP: s.IP, UserAgent: s.UserAgent} }

// Person is u as the activity log and notices know a person: a name and
// where notices go.
func (u User) Person() activity.Person {
	return activity.Person{Username: u.Username, Email: u.Email, EmailVerified: u.EmailVerified}
}
