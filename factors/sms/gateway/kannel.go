package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/keygate/keygate/factors/sms"
)

// KannelOptions configure delivery through Kannel's smsbox.
type KannelOptions struct {
	// URL is smsbox's sendsms interface,
	// e.g. "http://127.0.0.1:13013/cgi-bin/sendsms".
	URL string
	// Username and Password of a sendsms-user group.
	Username string
	Password string
	// From is the sender shown on the phone (a number, or up to 11
	// letters where the operator allows it); empty leaves it to Kannel's
	// sendsms-user default.
	From string
	// Method is POST (the default: the text and the password travel in
	// the body and headers, not in a URL that logs keep) or GET (every
	// field in the query, for setups that expect it).
	Method string
	// Timeout bounds one delivery (DefaultTimeout when zero).
	Timeout time.Duration
	// Client is the HTTP client (a plain one when nil).
	Client *http.Client
}

// Kannel sends texts through smsbox's sendsms interface. Text that fits
// the GSM 7-bit alphabet goes as is; anything else (Cyrillic) as UCS-2
// (coding=2), both given to Kannel as UTF-8 (charset=UTF-8).
type Kannel struct {
	u        *url.URL
	username string
	password string
	from     string
	method   string
	timeout  time.Duration
	client   *http.Client
}

// NewKannel checks the options.
func NewKannel(o KannelOptions) (*Kannel, error) {
	u, err := parseEndpoint(o.URL)
	if err != nil {
		return nil, fmt.Errorf("sms: kannel url: %w", err)
	}
	if u.User != nil || u.RawQuery != "" {
		return nil, fmt.Errorf("sms: kannel url %s: give the username and password as options, not in the URL", endpoint(u))
	}
	if o.Username == "" {
		return nil, errors.New("sms: kannel: a sendsms username is required")
	}
	pw := o.Password
	if pw == "" {
		return nil, errors.New("sms: kannel: a sendsms password is required")
	}
	if strings.ContainsFunc(o.Username+pw+o.From, unicode.IsControl) {
		return nil, errors.New("sms: kannel: username, password and from may not hold control characters")
	}
	method := strings.ToUpper(o.Method)
	switch method {
	case "":
		method = http.MethodPost
	case http.MethodPost, http.MethodGet:
	default:
		return nil, fmt.Errorf("sms: kannel method %q: want GET or POST", o.Method)
	}
	k := &Kannel{u: u, username: o.Username, password: pw, from: o.From, method: method, timeout: o.Timeout, client: o.Client}
	if k.timeout <= 0 {
		k.timeout = DefaultTimeout
	}
	if k.client == nil {
		k.client = newClient()
	}
	return k, nil
}

// Send hands m to smsbox; a 2xx answer ("0: Accepted for delivery",
// "3: Queued for later delivery") is sent.
func (k *Kannel) Send(ctx context.Context, m sms.Message) error {
	coding := ""
	if !sms.GSM7(m.Text) {
		coding = "2"
	}
	var req *http.Request
	var err error
	if k.method == http.MethodGet {
		q := url.Values{"username": {k.username}, "password": {k.password}, "to": {m.To}, "text": {m.Text}, "charset": {"UTF-8"}}
		if k.from != "" {
			q.Set("from", k.from)
		}
		if coding != "" {
			q.Set("coding", coding)
		}
		u := *k.u
		u.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	} else {
		// smsbox's POST form: the text is the body, everything else
		// X-Kannel-* headers.
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, k.u.String(), bytes.NewReader([]byte(m.Text)))
		if err == nil {
			req.Header.Set("Content-Type", "text/plain; charset=UTF-8")
			req.Header.Set("X-Kannel-Username", k.username)
			req.Header.Set("X-Kannel-Password", k.password)
			req.Header.Set("X-Kannel-To", m.To)
			if k.from != "" {
				req.Header.Set("X-Kannel-From", k.from)
			}
			if coding != "" {
				req.Header.Set("X-Kannel-Coding", coding)
			}
		}
	}
	if err != nil {
		return &sendError{msg: "kannel: cannot build the request"}
	}
	status, body, err := do(ctx, k.client, k.timeout, req)
	if err != nil {
		return transportError(ctx, "kannel", k.u, err)
	}
	if status < 200 || status > 299 {
		return &StatusError{Gateway: "kannel at " + endpoint(k.u), Status: status, Detail: kannelReason(body)}
	}
	return nil
}

// kannelReason is the first line of smsbox's answer ("Authorization failed
// for sendsms"), kept short and printable. smsbox's answers are fixed
// phrases that never repeat the request.
func kannelReason(body []byte) string {
	line, _, _ := strings.Cut(string(body), "\n")
	line = strings.TrimSpace(line)
	if len(line) > 100 {
		line = line[:100]
	}
	if strings.ContainsFunc(line, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return ""
	}
	return line
}

// Interface guards.
var _ sms.Sender = (*Kannel)(nil)
