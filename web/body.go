package web

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"
)

// Request bodies from slow clients.
//
// A client that sends its body a byte at a time holds whatever the request
// holds until it is done: a goroutine and a buffer here, and, once the
// request is forwarded, a connection to the upstream (most app servers
// give each connection a thread or a worker). A few hundred such clients
// would otherwise exhaust the app's workers while keygate itself idles.
//
// Two rules, the ones nginx applies with client_body_timeout and
// proxy_request_buffering:
//   - Every body has a read deadline: the whole body must have arrived
//     within BodyLimits.Timeout of the request's start (portal requests,
//     which are small, within PortalBodyTimeout). A slow upload is cut with
//     408 and its connection closed. Apps that take real uploads get a
//     longer timeout per upstream.
//   - A body of up to BodyLimits.Buffer bytes is read whole before the
//     upstream is dialled; only larger ones are streamed, after their first
//     Buffer bytes have arrived. So a slow client holds no upstream
//     connection unless it first sends a buffer's worth quickly, and then
//     only until its deadline.
//
// The deadline is lifted as soon as the body has been read in full: net/http
// keeps reading the connection in the background after the body ends (to
// notice a client that goes away), and a deadline firing there would cancel
// a long response that is still streaming.

// BodyLimits bound how a request body may arrive. Zero fields take the
// server-wide values (Options.Body), and those the defaults.
type BodyLimits struct {
	// Timeout is how long the whole body may take to arrive, counted from
	// the moment keygate starts reading it.
	Timeout time.Duration
	// Buffer is the largest body read whole before the upstream is
	// dialled; larger ones are streamed after their first Buffer bytes.
	Buffer int64
}

// Defaults of BodyLimits and the portal's body timeout.
const (
	DefaultBodyTimeout       = 60 * time.Second
	DefaultBodyBuffer        = 64 << 10
	DefaultPortalBodyTimeout = 10 * time.Second
)

// or fills the zero fields of l from d.
func (l BodyLimits) or(d BodyLimits) BodyLimits {
	if l.Timeout <= 0 {
		l.Timeout = d.Timeout
	}
	if l.Buffer <= 0 {
		l.Buffer = d.Buffer
	}
	return l
}

// hasBody says whether r may carry a body at all.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && (r.ContentLength != 0 || len(r.TransferEncoding) > 0)
}

// readUpstreamBody applies the body rules to a request about to be
// forwarded to up. It returns false when it answered the request itself
// (the body was too slow or broken).
func (s *Server) readUpstreamBody(c *gin.Context, up *upstream) bool {
	if !hasBody(c.Request) {
		return true
	}
	return s.readBody(c, up.body, true)
}

// readPortalBody reads a body for keygate's own endpoints whole, under
// the portal's deadline; it returns false when it answered the request.
// The body is already bounded by maxPortalBody (portalGuard).
func (s *Server) readPortalBody(c *gin.Context) bool {
	if !hasBody(c.Request) {
		return true
	}
	return s.readBody(c, BodyLimits{Timeout: s.portalBodyTimeout, Buffer: maxPortalBody + 1}, false)
}

// readBody reads up to l.Buffer bytes of the body under a deadline of
// l.Timeout. A body that fits replaces r.Body from memory; a larger one is
// streamed on (when stream is set) under the same deadline.
func (s *Server) readBody(c *gin.Context, l BodyLimits, stream bool) bool {
	r := c.Request
	rc := http.NewResponseController(c.Writer)
	// Real time, not s.now: deadlines are for the kernel's clock.
	if err := rc.SetReadDeadline(time.Now().Add(l.Timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.bodyFailed(c, err)
		return false
	}
	var buf bytes.Buffer
	// Grows as bytes arrive (not by the announced length), so a slow
	// client that announces a large body holds only what it has sent.
	n, err := buf.ReadFrom(io.LimitReader(r.Body, l.Buffer))
	if err != nil {
		s.bodyFailed(c, err)
		return false
	}
	if n < l.Buffer {
		// The whole body is here.
		_ = rc.SetReadDeadline(time.Time{})
		r.Body = io.NopCloser(bytes.NewReader(buf.Bytes()))
		r.ContentLength = n
		r.TransferEncoding = nil
		return true
	}
	if !stream {
		s.bodyFailed(c, &http.MaxBytesError{Limit: l.Buffer - 1})
		return false
	}
	r.Body = &deadlineBody{head: bytes.NewReader(buf.Bytes()), rest: r.Body, rc: rc}
	return true
}

// bodyFailed answers a body that could not be read: 408 for a deadline
// (and the connection is closed: the rest of the body may still be on
// its way), 413 beyond the portal's bound, 400 otherwise.
func (s *Server) bodyFailed(c *gin.Context, err error) {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.Header("Connection", "close")
		s.fail(c, errBodyTimeout.because(err))
	case errors.As(err, &tooLarge):
		c.Header("Connection", "close")
		s.fail(c, errTooLarge.because(err))
	default:
		c.Header("Connection", "close")
		s.fail(c, errBadRequest.because(err))
	}
}

// deadlineBody is a large body being streamed upstream: the bytes already
// read, then the rest from the client, whose read deadline is lifted at
// the end of the body (see the package comment above).
type deadlineBody struct {
	head *bytes.Reader
	rest io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.head.Len() > 0 {
		return b.head.Read(p)
	}
	n, err := b.rest.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (b *deadlineBody) Close() error { return b.rest.Close() }
