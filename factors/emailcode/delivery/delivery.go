// Package delivery sends emailcode messages: over SMTP (SMTP) in
// production, or into a directory of .eml files (Outbox) for development
// and demos. Both compose the same MIME message: a text body with an HTML
// alternative, Date, Message-ID, and headers that keep auto-responders
// quiet.
package delivery

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/keygate/keygate/factors/emailcode"
)

// sender is a parsed From address: as configured (for the header, display
// name included) and its domain (for Message-IDs).
type sender struct {
	from   string
	domain string
}

func parseFrom(from string) (sender, error) {
	a, err := mail.ParseAddress(from)
	if err != nil {
		return sender{}, fmt.Errorf("delivery: from address %q: %w", from, err)
	}
	_, domain, ok := strings.Cut(a.Address, "@")
	if !ok || domain == "" {
		return sender{}, fmt.Errorf("delivery: from address %q has no domain", from)
	}
	return sender{from: a.String(), domain: domain}, nil
}

// compose builds the MIME message for m. The Message-ID uses the sender's
// domain rather than the local host name, which says nothing useful to a
// recipient and may be internal.
func (s sender) compose(m emailcode.Message, now time.Time) (*gomail.Msg, error) {
	if m.To == "" || m.Text == "" {
		return nil, errors.New("delivery: message without recipient or text")
	}
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := msg.From(s.from); err != nil {
		return nil, fmt.Errorf("delivery: from: %w", err)
	}
	if err := msg.To(m.To); err != nil {
		return nil, fmt.Errorf("delivery: recipient %s: invalid address", emailcode.Mask(m.To))
	}
	msg.Subject(m.Subject)
	msg.SetDateWithValue(now)
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("delivery: message id: %w", err)
	}
	msg.SetMessageIDWithValue(hex.EncodeToString(id[:]) + "@" + s.domain)
	// RFC 3834: a machine wrote this mail; out-of-office and other
	// auto-replies must not answer it (X-Auto-Response-Suppress is the
	// Exchange spelling of the same wish).
	msg.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	msg.SetGenHeader(gomail.HeaderXAutoResponseSuppress, "All")
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

// deliveryError is what SMTP and Outbox return on failure. Its message is
// safe to log and show to operators: it names the server and the failure
// and masks the recipient, and never carries the body. It unwraps to
// emailcode.ErrDelivery and to the cause (go-mail's *SendError, a net
// error, the context's error), for callers that want to look closer.
type deliveryError struct {
	summary string
	causes  []error
}

func (e *deliveryError) Error() string { return emailcode.ErrDelivery.Error() + ": " + e.summary }

func (e *deliveryError) Unwrap() []error {
	return append([]error{emailcode.ErrDelivery}, e.causes...)
}

// Interface guards.
var _ error = (*deliveryError)(nil)
