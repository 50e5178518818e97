package mail

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	netmail "net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Outbox is the development and demo Sender: instead of sending, it writes
// each mail as an .eml file into a directory, where the demo page (or a
// mail client) can show it. The files hold live codes, so they are created
// 0600 in a 0700 directory.
type Outbox struct {
	sender
	dir string
}

// OutboxMail is one mail in the outbox, as List returns it.
type OutboxMail struct {
	File    string // the file's name within the outbox directory
	To      string
	Subject string
	Time    time.Time
	Text    string // the plain-text body
}

// outboxExt marks finished mails; half-written ones are dot files with
// another suffix and never listed.
const outboxExt = ".eml"

// maxOutboxFile bounds what List reads of one file: ours are a few KiB.
const maxOutboxFile = 1 << 20

// NewOutbox writes mails from `from` into dir, created 0700 if missing.
func NewOutbox(dir string, from string) (*Outbox, error) {
	snd, err := parseFrom(from)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, fmt.Errorf("mail: no outbox directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mail: outbox: %w", err)
	}
	return &Outbox{sender: snd, dir: dir}, nil
}

// Send writes m as one .eml file. The file appears whole or not at all
// (written under a temporary name, then renamed), so List never sees half
// a mail.
func (o *Outbox) Send(ctx context.Context, m Message) error {
	fail := func(err error) error {
		return &deliveryError{summary: "outbox: " + err.Error(), causes: []error{err}}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	now := time.Now()
	msg, err := o.compose(m, now)
	if err != nil {
		return fail(err)
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fail(err)
	}
	// The name sorts by time (fixed-width UTC stamp), so List can order by
	// name alone; the random tail keeps two mails in one nanosecond apart.
	name := now.UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(rnd[:]) + outboxExt
	tmp, err := os.CreateTemp(o.dir, ".writing-*") // CreateTemp makes it 0600
	if err != nil {
		return fail(err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // a no-op once renamed
	if _, err := msg.WriteTo(tmp); err != nil {
		_ = tmp.Close()
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(o.dir, name)); err != nil {
		return fail(err)
	}
	return nil
}

// List returns the mails in the outbox, newest first. Files that are not
// mails we can read (someone else's, damaged) are skipped.
func (o *Outbox) List() ([]OutboxMail, error) {
	entries, err := os.ReadDir(o.dir)
	if err != nil {
		return nil, fmt.Errorf("mail: outbox: %w", err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasSuffix(n, outboxExt) && !strings.HasPrefix(n, ".") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	slices.Reverse(names)
	out := make([]OutboxMail, 0, len(names))
	for _, n := range names {
		m, err := readEML(filepath.Join(o.dir, n))
		if err != nil {
			continue
		}
		m.File = n
		out = append(out, m)
	}
	return out, nil
}

// readEML reads the headers List shows and the first text/plain part.
func readEML(path string) (OutboxMail, error) {
	f, err := os.Open(path)
	if err != nil {
		return OutboxMail{}, err
	}
	defer func() { _ = f.Close() }()
	msg, err := netmail.ReadMessage(bufio.NewReader(io.LimitReader(f, maxOutboxFile)))
	if err != nil {
		return OutboxMail{}, err
	}
	var dec mime.WordDecoder
	subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return OutboxMail{}, err
	}
	var to []string
	if list, err := msg.Header.AddressList("To"); err == nil {
		for _, a := range list {
			to = append(to, a.Address)
		}
	}
	date, _ := msg.Header.Date()
	text, err := plainText(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, 0)
	if err != nil {
		return OutboxMail{}, err
	}
	return OutboxMail{To: strings.Join(to, ", "), Subject: subject, Time: date, Text: text}, nil
}

// plainText finds the first text/plain part of a body, descending into
// multiparts (a few levels; ours nest one).
func plainText(contentType, encoding string, body io.Reader, depth int) (string, error) {
	if contentType == "" {
		contentType = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", err
	}
	switch {
	case strings.HasPrefix(mt, "multipart/") && depth < 4:
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextPart() // decodes quoted-printable itself
			if err == io.EOF {
				return "", nil
			}
			if err != nil {
				return "", err
			}
			text, err := plainText(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, depth+1)
			if err != nil || text != "" {
				return text, err
			}
		}
	case mt == "text/plain":
		switch strings.ToLower(strings.TrimSpace(encoding)) {
		case "quoted-printable":
			body = quotedprintable.NewReader(body)
		case "base64":
			body = base64.NewDecoder(base64.StdEncoding, body)
		}
		b, err := io.ReadAll(body)
		return strings.ReplaceAll(string(b), "\r\n", "\n"), err
	}
	return "", nil
}

// Interface guards.
var _ Sender = (*Outbox)(nil)
