package web

import (
	"bufio"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
)

// HeaderRequestID carries a request's ID to the upstream (and is accepted
// from trusted proxies, so one ID follows a request through every hop).
const HeaderRequestID = "X-Request-Id"

// maxRequestID bounds an ID taken from a trusted proxy.
const maxRequestID = 128

// AccessLog writes one line per request: who asked what of which host,
// what keygate decided and answered, how long it took, under the request's
// ID. Never the query string (it can carry codes and tokens) and never a
// cookie or header value.
//
// Why not slog: the line is written on the proxy path for every request,
// and formatting it by hand into the buffer costs a fraction of what a
// slog.Handler with ten attributes does. The shape is slog's (text:
// key=value with slog's quoting; json: one object), so the access lines
// read like the other log lines in either log.format.
//
// Why buffered: a write(2) per request would cost more CPU than the rest
// of keygate's own work on the request. Lines are collected in a 64 KiB
// buffer and written when it is full or when Run's timer (1 s) fires, as
// nginx does with access_log buffer=… flush=…; a crash can lose the last
// second of access lines, never a security event (those go through slog,
// unbuffered). Call Flush at shutdown.
type AccessLog struct {
	json bool
	out  io.Writer

	mu sync.Mutex
	w  *bufio.Writer

	stamp atomic.Pointer[stamp]
}

// NewAccessLog writes access lines to w in format "text" or "json".
func NewAccessLog(w io.Writer, format string) *AccessLog {
	return &AccessLog{json: format == "json", out: w, w: bufio.NewWriterSize(w, 64<<10)}
}

// Flush writes out the buffered lines. After a failed write the buffer is
// dropped, so that a broken output does not stop every later line.
func (a *AccessLog) Flush() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.w.Flush()
	if err != nil {
		a.w.Reset(a.out)
	}
	return err
}

// Run flushes the buffer every interval (default 1 s) until ctx is done,
// then a last time.
func (a *AccessLog) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = a.Flush()
			return
		case <-t.C:
			_ = a.Flush()
		}
	}
}

// accessEntry is one line's content.
type accessEntry struct {
	start    time.Time
	id       string
	method   string
	host     string
	path     string // the request path (proxy) or the route pattern (portal)
	ip       string
	user     string // "" when no session
	decision string // "" for keygate's own endpoints
	via      string // "authz": a forward-auth answer about the request named
	status   int
	bytes    int
}

// write formats the line on the stack, outside the lock, and then copies
// it into the buffer under the lock: two cores writing lines contend only
// for a memcpy. The line never reaches an interface call (it is copied in
// chunks into the buffer's own free space), so it does not escape to the
// heap.
func (a *AccessLog) write(e *accessEntry, now time.Time) {
	var arr [512]byte
	b := arr[:0]
	if a.json {
		b = a.appendJSON(b, now, e)
	} else {
		b = a.appendText(b, now, e)
	}
	a.mu.Lock()
	for len(b) > 0 {
		if a.w.Available() < min(len(b), 1024) {
			if err := a.w.Flush(); err != nil {
				a.w.Reset(a.out)
			}
		}
		dst := a.w.AvailableBuffer()
		n := min(cap(dst), len(b))
		_, _ = a.w.Write(append(dst, b[:n]...))
		b = b[n:]
	}
	a.mu.Unlock()
}

// stamp is the formatted time of one second, reused by every line in it:
// formatting a time with a layout costs more than the rest of the line.
type stamp struct {
	sec  int64
	date []byte // 2006-01-02T15:04:05
	zone []byte // Z07:00
}

// appendTime writes now as slog does: 2006-01-02T15:04:05.000Z07:00.
func (a *AccessLog) appendTime(b []byte, now time.Time) []byte {
	st := a.stamp.Load()
	if st == nil || st.sec != now.Unix() {
		st = &stamp{sec: now.Unix(), date: now.AppendFormat(nil, "2006-01-02T15:04:05"), zone: now.AppendFormat(nil, "Z07:00")}
		a.stamp.Store(st)
	}
	ms := now.Nanosecond() / 1e6
	b = append(b, st.date...)
	b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	return append(b, st.zone...)
}

func (a *AccessLog) appendText(b []byte, now time.Time, e *accessEntry) []byte {
	b = append(b, "time="...)
	b = a.appendTime(b, now)
	b = append(b, " level=INFO msg=access id="...)
	b = appendTextValue(b, e.id)
	b = append(b, " method="...)
	b = appendTextValue(b, e.method)
	b = append(b, " host="...)
	b = appendTextValue(b, e.host)
	b = append(b, " path="...)
	b = appendTextValue(b, e.path)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, int64(e.bytes), 10)
	b = append(b, " dur_us="...)
	b = strconv.AppendInt(b, now.Sub(e.start).Microseconds(), 10)
	b = append(b, " ip="...)
	b = appendTextValue(b, e.ip)
	if e.user != "" {
		b = append(b, " user="...)
		b = appendTextValue(b, e.user)
	}
	if e.decision != "" {
		b = append(b, " decision="...)
		b = append(b, e.decision...)
	}
	if e.via != "" {
		b = append(b, " via="...)
		b = append(b, e.via...)
	}
	return append(b, '\n')
}

func (a *AccessLog) appendJSON(b []byte, now time.Time, e *accessEntry) []byte {
	b = append(b, `{"time":"`...)
	b = a.appendTime(b, now)
	b = append(b, `","level":"INFO","msg":"access","id":`...)
	b = appendJSONString(b, e.id)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, e.host)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, int64(e.bytes), 10)
	b = append(b, `,"dur_us":`...)
	b = strconv.AppendInt(b, now.Sub(e.start).Microseconds(), 10)
	b = append(b, `,"ip":`...)
	b = appendJSONString(b, e.ip)
	if e.user != "" {
		b = append(b, `,"user":`...)
		b = appendJSONString(b, e.user)
	}
	if e.decision != "" {
		b = append(b, `,"decision":`...)
		b = appendJSONString(b, e.decision)
	}
	if e.via != "" {
		b = append(b, `,"via":`...)
		b = appendJSONString(b, e.via)
	}
	return append(b, "}\n"...)
}

// appendTextValue quotes a value the way slog's text handler does when it
// has to (empty, spaces, '=', quotes, anything not printable ASCII), so a
// crafted path cannot forge a field or a line.
func appendTextValue(b []byte, v string) []byte {
	if v == "" {
		return append(b, `""`...)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c == '=' || c == '"' || c >= 0x7f {
			return strconv.AppendQuote(b, v)
		}
	}
	return append(b, v...)
}

// appendJSONString writes v as a JSON string: control characters and
// invalid UTF-8 escaped, as encoding/json would.
func appendJSONString(b []byte, v string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(v); {
		c := v[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, v[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, v[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			// Valid JSON, but not valid JavaScript: escaped like encoding/json.
			b = append(b, v[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, v[start:]...)
	return append(b, '"')
}

// requestID returns the ID of this request: the one a trusted proxy sent,
// when it is well formed, else a new one. A client that is not a trusted
// proxy cannot choose its ID (it could otherwise make its requests look
// like someone else's in the logs).
func (s *Server) requestID(h http.Header, trusted bool) string {
	if trusted {
		if v := h[HeaderRequestID]; len(v) == 1 && validRequestID(v[0]) {
			return v[0]
		}
	}
	return s.ids.next()
}

// requestIDs makes request IDs: a 32-bit random prefix drawn at start and a
// 32-bit counter, in hex. They are unique within the process and, by the
// prefix, very likely across restarts and replicas. IDs correlate log
// lines and guard nothing; a counter costs an atomic add where a random
// draw per request showed in profiles.
type requestIDs struct {
	prefix uint32
	seq    atomic.Uint32
}

func newRequestIDs() *requestIDs { return &requestIDs{prefix: uint32(rand.Uint64())} }

func (r *requestIDs) next() string {
	n := r.seq.Add(1)
	var out [16]byte
	const digits = "0123456789abcdef"
	for i := range 8 {
		out[i] = digits[r.prefix>>(28-4*i)&0xf]
		out[8+i] = digits[n>>(28-4*i)&0xf]
	}
	return string(out[:])
}

// validRequestID accepts the IDs proxies generate (hex, UUIDs, base64,
// nginx's $request_id, Traefik's, Envoy's): printable, no spaces or quotes,
// bounded.
func validRequestID(v string) bool {
	if v == "" || len(v) > maxRequestID {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '+', c == '/', c == '=', c == '@':
		default:
			return false
		}
	}
	return true
}

// SetAccessLog turns the access lines on (a non-nil log) or off (nil),
// also while serving (a configuration reload).
func (s *Server) SetAccessLog(a *AccessLog) { s.access.Store(a) }

// accessPortal writes the access line of keygate's own endpoints. The path
// logged is the route pattern ("/.keygate/enroll/:token"), never the
// request's own: an enrolment link carries its token in the path.
func (s *Server) accessPortal(c *gin.Context) {
	al := s.access.Load()
	if al == nil {
		c.Next()
		return
	}
	r := c.Request
	start := time.Now()
	peer, peerStr := peerOf(r)
	trusted := s.trusted.contains(peer)
	id := s.requestID(r.Header, trusted)
	r.Header[HeaderRequestID] = []string{id}
	c.Next()
	ip := peerStr
	if trusted {
		ip = clientAddr(c).String()
	}
	e := accessEntry{
		start: start, id: id, method: r.Method, host: r.Host, path: c.FullPath(), ip: ip,
		status: c.Writer.Status(), bytes: max(c.Writer.Size(), 0),
	}
	if v, ok := c.Get(authzAccessKey); ok {
		v.(*authzAccess).fill(&e)
	}
	al.write(&e, time.Now())
}

// authzAccessKey holds, in the gin context of a forward-auth call, what its
// access line reports instead of the call itself.
const authzAccessKey = "keygate.authz"

// authzAccess is the access line of a forward-auth answer: the request the
// proxy asked about (method, host, path — never its query) and the
// decision, so that forward-auth deployments log every decision as proxy
// mode does. A nil *authzAccess (the access log is off) records nothing.
type authzAccess struct {
	method, host, path string
	decision           decision
	hasDecision        bool
	user               string
}

// authzAccessOf starts the record of a forward-auth call, or returns nil
// when no access line will be written.
func (s *Server) authzAccessOf(c *gin.Context) *authzAccess {
	if s.access.Load() == nil {
		return nil
	}
	a := &authzAccess{}
	c.Set(authzAccessKey, a)
	return a
}

// judged records the request the proxy asked about. A path under the
// reserved prefix is logged as the prefix only: portal paths can carry
// tokens (enrolment links), and forward-auth never judges them anyway.
func (a *authzAccess) judged(t *authzTarget) {
	if a == nil {
		return
	}
	a.method, a.host, a.path = t.method, t.host, t.path
	if hasASCIIFoldPrefix(strings.TrimLeft(t.path, "/"), ".keygate") {
		a.path = portalPrefix
	}
}

// decided records the policy's decision and who it was for.
func (a *authzAccess) decided(d decision, sess *authn.Session) {
	if a == nil {
		return
	}
	a.decision, a.hasDecision = d, true
	if sess != nil {
		a.user = sess.Username
	}
}

func (a *authzAccess) fill(e *accessEntry) {
	e.via = "authz"
	if a.host != "" {
		e.method, e.host, e.path = a.method, a.host, a.path
	}
	e.decision = decisionNames[decRefused] // refused before the policy: untrusted, bad headers, unknown host
	if a.hasDecision {
		e.decision = decisionNames[a.decision]
	}
	e.user = a.user
}
