package mail

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	netmail "net/mail"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// sender is a parsed From address: as configured (for the header, display
// name included) and its domain (for Message-IDs).
type sender struct {
	from   string
	domain string
}

func parseFrom(from string) (sender, error) {
	a, err := netmail.ParseAddress(from)
	if err != nil {
		return sender{}, fmt.Errorf("mail: from address %q: %w", from, err)
	}
	_, domain, ok := strings.Cut(a.Address, "@")
	if !ok || domain == "" {
		return sender{}, fmt.Errorf("mail: from address %q has no domain", from)
	}
	return sender{from: a.String(), domain: domain}, nil
}

// compose builds the MIME message for m that SMTP and Outbox both deliver:
// a text body with an HTML alternative, Date, Message-ID, and headers that
// keep auto-responders quiet. The Message-ID uses the sender's domain
// rather than the local host name, which says nothing useful to a
// recipient and may be internal.
func (s sender) compose(m Message, now time.Time) (*gomail.Msg, error) {
	if m.To == "" || m.Text == "" {
		return nil, errors.New("mail: message without recipient or text")
	}
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := msg.From(s.from); err != nil {
		return nil, fmt.Errorf("mail: from: %w", err)
	}
	if err := msg.To(m.To); err != nil {
		return nil, fmt.Errorf("mail: recipient %s: invalid address", Mask(m.To))
	}
	msg.Subject(m.Subject)
	msg.SetDateWithValue(now)
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("mail: message id: %w", err)
	}
	msg.SetMessageIDWithValue(hex.EncodeToString(id[:]) + "@" + s.domain)
	// RFC 3834: a machine wrote this mail; out-of-office and other
	// auto-replies must not answer it (X-Auto-Response-Suppress is the
	// Exchange spelling of the same wish).
	msg.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	msg.SetGenHeader(gomail.HeaderXAutoResponseSuppress, "All")
	if validLang(m.Lang) {
		// RFC 3282; a tag from the caller's own tables, checked anyway
		// because it becomes a header.
		msg.SetGenHeader(gomail.HeaderContentLang, m.Lang)
	}
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

// deliveryError is what SMTP and Outbox return on failure. Its message is
// safe to log and show to operators: it names the server and the failure
// and masks the recipient, and never carries the body. It unwraps to
// ErrDelivery and to the cause (go-mail's *SendError, a net
// error, the context's error), for callers that want to look closer.
type deliveryError struct {
	summary string
	causes  []error
}

func (e *deliveryError) Error() string { return ErrDelivery.Error() + ": " + e.summary }

func (e *deliveryError) Unwrap() []error {
	return append([]error{ErrDelivery}, e.causes...)
}

// validLang accepts a simple language tag ("en", "ru", "pt-BR"): letters,
// digits and hyphens, at most 35 bytes (RFC 5646's practical limit).
func validLang(tag string) bool {
	if tag == "" || len(tag) > 35 {
		return false
	}
	for _, r := range tag {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// Interface guards.
var _ error = (*deliveryError)(nil)
