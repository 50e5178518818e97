// Package mail is keygate's mail transport: the Message and Sender types,
// SMTP delivery for production and an Outbox directory of .eml files for
// development and demos, and address masking for logs and pages.
//
// It is a leaf (it imports no other keygate package) because two unrelated
// parts send mail: the email-code factor (factors/emailcode) mails codes,
// and account notices (authn/activity) mail "a new device signed in" and
// the like. Before it had a package of its own the transport lived inside
// the factor, so notices had to import a concrete factor just to send a
// mail. Neither user knows how the other words its mail; both know only
// Sender.
package mail

import (
	"context"
	"errors"
)

// Message is one mail: a plain-text body and its HTML alternative.
type Message struct {
	To, Subject, Text, HTML string
	// Lang is the language it is written in (a BCP 47 tag, "" = not
	// said), sent as Content-Language so that mail clients and screen
	// readers read it right.
	Lang string
}

// Sender delivers a Message. SMTP and Outbox implement it; cmd/keygate
// wraps them (metrics, configuration reload). A failure should wrap
// ErrDelivery so that callers can tell "could not send" from their own
// refusals.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// ErrDelivery: the mail could not be sent. Every error SMTP and Outbox
// return from Send wraps it, next to the cause.
var ErrDelivery = errors.New("mail: the email could not be sent")
