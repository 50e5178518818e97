package web

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer the server's goroutines may write to while
// the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// accessLines flushes the log and returns its lines.
func accessLines(t *testing.T, al *AccessLog, out *syncBuffer) []string {
	t.Helper()
	if err := al.Flush(); err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
}

func TestAccessLineAndRequestID(t *testing.T) {
	out := &syncBuffer{}
	al := NewAccessLog(out, "text")
	h := newHarness(t, harnessOptions{accessLog: al})
	c := h.client()
	h.login(c, testUser, testPassword, "")
	// A client that is not a trusted proxy cannot choose its request ID,
	// and the query string (codes, tokens) never reaches the log.
	resp, _ := h.do(c, http.MethodGet, "http://app.example.com/dashboard?code=314159&token=s3cret", "",
		withHeader(HeaderRequestID, "chosen-by-client"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	id := h.up.last(t).Header.Get(HeaderRequestID)
	if len(id) != 16 || id == "chosen-by-client" {
		t.Fatalf("upstream X-Request-Id = %q, want a fresh 16-hex-digit ID", id)
	}
	h.do(c, http.MethodGet, "http://app.example.com/.keygate/enroll/tok-should-not-appear", "")

	lines := accessLines(t, al, out)
	var proxied, portal string
	for _, l := range lines {
		switch {
		case strings.Contains(l, " id="+id+" "):
			proxied = l
		case strings.Contains(l, "path=/.keygate/enroll/:token"):
			portal = l
		}
	}
	for _, want := range []string{"msg=access", "method=GET", "host=app.example.com", "path=/dashboard ", "status=200", "bytes=19",
		"ip=127.0.0.1", "user=alice", "decision=allow"} {
		if !strings.Contains(proxied, want) {
			t.Errorf("proxied line lacks %q: %s", want, proxied)
		}
	}
	if portal == "" {
		t.Errorf("no access line with the route pattern of the enrolment page in:\n%s", strings.Join(lines, "\n"))
	}
	all := strings.Join(lines, "\n")
	for _, secret := range []string{"314159", "s3cret", "tok-should-not-appear", "chosen-by-client", CookieName} {
		if strings.Contains(all, secret) {
			t.Errorf("access log contains %q:\n%s", secret, all)
		}
	}
	if n := strings.Count(all, "msg=access"); n != len(lines) {
		t.Errorf("%d access lines of %d", n, len(lines))
	}
}

func TestRequestIDFromTrustedProxyIsKept(t *testing.T) {
	h := newHarness(t, harnessOptions{trustedProxies: []string{"127.0.0.1"}, policyYAML: "default: bypass\n"})
	c := h.client()
	h.do(c, http.MethodGet, "http://app.example.com/a", "", withHeader(HeaderRequestID, "4bf92f3577b34da6a3ce929d0e0e4736"))
	if got := h.up.last(t).Header.Get(HeaderRequestID); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trusted proxy's ID not kept: %q", got)
	}
	h.do(c, http.MethodGet, "http://app.example.com/a", "", withHeader(HeaderRequestID, "two words"))
	if got := h.up.last(t).Header.Get(HeaderRequestID); got == "two words" || len(got) != 16 {
		t.Errorf("malformed ID passed on: %q", got)
	}
}

func TestAccessLogOffAndSwitchable(t *testing.T) {
	out := &syncBuffer{}
	h := newHarness(t, harnessOptions{policyYAML: "default: bypass\n"})
	c := h.client()
	h.do(c, http.MethodGet, "http://app.example.com/a", "")
	if id := h.up.last(t).Header.Get(HeaderRequestID); id == "" {
		t.Error("no request ID upstream with the access log off")
	}
	al := NewAccessLog(out, "json")
	h.web.SetAccessLog(al)
	h.do(c, http.MethodGet, "http://app.example.com/b", "")
	h.web.SetAccessLog(nil)
	h.do(c, http.MethodGet, "http://app.example.com/c", "")
	lines := accessLines(t, al, out)
	if len(lines) != 1 {
		t.Fatalf("want exactly the line of /b, got %q", lines)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[0])
	}
	if e["path"] != "/b" || e["status"] != float64(200) || e["msg"] != "access" || e["decision"] != "allow" || e["id"] == "" {
		t.Errorf("json line: %v", e)
	}
}

func TestAccessLineEscaping(t *testing.T) {
	e := &accessEntry{start: time.Now(), id: "abc", method: "GET", host: "h", path: "/a b\"c=d\nlevel=ERROR \xff", ip: "1.2.3.4",
		user: "bob", decision: "allow", status: 200, bytes: 3}
	for _, format := range []string{"text", "json"} {
		out := &syncBuffer{}
		al := NewAccessLog(out, format)
		al.write(e, time.Now())
		_ = al.Flush()
		line := out.String()
		if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
			t.Errorf("%s: not one line: %q", format, line)
		}
		if format == "json" {
			var got map[string]any
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("json: %v: %q", err, line)
			}
			if got["path"] != "/a b\"c=d\nlevel=ERROR \ufffd" {
				t.Errorf("json path = %q", got["path"])
			}
			continue
		}
		if strings.Contains(line, " level=ERROR") {
			t.Errorf("text: a path forged a field: %q", line)
		}
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\", "\x00\x1f\t\r\n", "ünïcode ✓", "bad\xffutf8\xc3", "\u2028\u2029", "<&>"} {
		var back string
		if err := json.Unmarshal(appendJSONString(nil, s), &back); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q: got %q, want %q", s, back, wantBack)
		}
	}
}

func TestValidRequestID(t *testing.T) {
	for id, ok := range map[string]bool{
		"4bf92f3577b34da6a3ce929d0e0e4736": true, "0af7651916cd43dd8448eb211c80319c-1": true, "Root=1-67891233-abcdef": true,
		"": false, "a b": false, "a\"b": false, "a\nb": false, strings.Repeat("a", 129): false,
	} {
		if validRequestID(id) != ok {
			t.Errorf("validRequestID(%q) = %v", id, !ok)
		}
	}
}
