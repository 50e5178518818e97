// Package gateway delivers the SMS factor's texts: through Kannel, the
// open-source SMS gateway (its smsbox's sendsms HTTP interface), or through
// any hosted SMS API reachable with one HTTP request (HTTP: method, URL,
// headers, a body template).
//
// Errors say which gateway failed and how (refused connection, timeout,
// status code) and wrap factors.ErrSendFailed; they never carry the phone
// number, the text (it holds the code) or a password, which a plain
// *url.Error would (it prints the URL with its query).
//
// Secrets (Kannel's password, an API token) come in as values: whoever
// builds a gateway reads them from where they are kept (keygate's
// configuration reads them from files at start).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/keygate/keygate/factors"
)

// DefaultTimeout bounds one delivery: a gateway that hangs must not hold
// the person's request (and the send reservation) for long.
const DefaultTimeout = 10 * time.Second

// endpoint is a URL as errors may show it: scheme, host and path, without
// userinfo or query (where tokens and passwords go).
func endpoint(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// parseEndpoint checks a gateway URL: http or https, with a host.
func parseEndpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error repeats the URL, query and all.
		return nil, errors.New("not a URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: want an http:// or https:// URL with a host", endpoint(u))
	}
	return u, nil
}

// transportError describes a failed round trip without the URL: the
// *url.Error's own message would print the query (the password, the
// number, the text).
func transportError(ctx context.Context, name string, u *url.URL, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var what string
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		what = ctx.Err().Error()
		err = ctx.Err()
	case errors.As(err, &ne) && ne.Timeout():
		what = "timed out"
	default:
		what = err.Error()
	}
	return &sendError{msg: fmt.Sprintf("%s at %s: %s", name, endpoint(u), what), cause: err}
}

// sendError is a failed delivery: a message safe to log, wrapping
// factors.ErrSendFailed and the cause.
type sendError struct {
	msg   string
	cause error
}

func (e *sendError) Error() string { return "sms: could not send: " + e.msg }

func (e *sendError) Unwrap() []error {
	if e.cause == nil {
		return []error{factors.ErrSendFailed}
	}
	return []error{factors.ErrSendFailed, e.cause}
}

// StatusError is a gateway's answer other than 2xx.
type StatusError struct {
	Gateway string
	Status  int
	// Detail is the gateway's own short reason where it is known to hold
	// nothing from the request (Kannel's), else empty.
	Detail string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("sms: could not send: %s answered %d %s", e.Gateway, e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap makes errors.Is(err, factors.ErrSendFailed) hold.
func (e *StatusError) Unwrap() error { return factors.ErrSendFailed }

// newClient is the gateways' default HTTP client. It keeps no idle
// connections: a text goes out now and then, and a connection kept from
// before the gateway restarted would fail the next send with EOF (a POST
// is not retried on a dead connection), so every send dials afresh and a
// gateway that is down reads as "connection refused".
func newClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableKeepAlives = true
	return &http.Client{Transport: t}
}

// do runs req with the timeout and reads (at most 4 KiB of) the answer.
func do(ctx context.Context, c *http.Client, timeout time.Duration, req *http.Request) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := c.Do(req.WithContext(ctx))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, body, nil
}

// Interface guards.
var (
	_ error = (*sendError)(nil)
	_ error = (*StatusError)(nil)
)
