package web

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestUpstreamDownGives502WithoutInternals(t *testing.T) {
	// A port that was just free: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	h := newHarness(t, harnessOptions{upstreamURL: dead, policyYAML: "default: bypass\n"})

	resp, body := h.do(h.client(), http.MethodGet, "http://app.example.com/x", "")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if !strings.Contains(body, "is not answering") || strings.Contains(body, ln.Addr().String()) || strings.Contains(body, "connection refused") {
		t.Fatalf("502 page leaks or lacks the message: %q", body)
	}
	resp, body = h.do(h.client(), http.MethodGet, "http://app.example.com/x", "", setHeader("Accept", "application/json"))
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil || resp.StatusCode != 502 || out["error"] != "upstream_unavailable" {
		t.Fatalf("JSON 502: %d %q", resp.StatusCode, body)
	}
	if strings.Contains(body, ln.Addr().String()) {
		t.Fatalf("JSON 502 leaks the upstream address: %q", body)
	}
}

func TestWebSocketEchoThroughTheProxy(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Remote-User") != testUser {
			http.Error(w, "no identity", http.StatusForbidden)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	}))
	defer echo.Close()
	h := newHarness(t, harnessOptions{upstreamURL: echo.URL, policyYAML: "default: one_factor\n"})
	c := h.client()
	h.login(c, testUser, testPassword, "")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws://app.example.com/socket", &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial through keygate: %v (status %d)", err, status)
	}
	defer conn.CloseNow()
	for _, msg := range []string{"hello", "второе"} {
		if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := conn.Read(ctx)
		if err != nil || string(got) != "echo:"+msg {
			t.Fatalf("echo %q: %q %v", msg, got, err)
		}
	}
	_ = conn.Close(websocket.StatusNormalClosure, "")

	// Without a session the upgrade never reaches the app.
	_, resp, err = websocket.Dial(ctx, "ws://app.example.com/socket", &websocket.DialOptions{HTTPClient: h.client()})
	if err == nil || resp == nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("anonymous upgrade: err=%v resp=%v", err, resp)
	}
}

func TestStreamingResponsesAreFlushed(t *testing.T) {
	release := make(chan struct{})
	stream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("data: first\n\n"))
		w.(http.Flusher).Flush()
		<-release
		_, _ = w.Write([]byte("data: second\n\n"))
	}))
	defer stream.Close()
	defer close(release)
	h := newHarness(t, harnessOptions{upstreamURL: stream.URL, policyYAML: "default: bypass\n"})
	req, _ := http.NewRequest(http.MethodGet, "http://app.example.com/events", nil)
	resp, err := h.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	done := make(chan string, 1)
	go func() {
		n, _ := resp.Body.Read(buf)
		done <- string(buf[:n])
	}()
	select {
	case got := <-done:
		if !strings.Contains(got, "first") {
			t.Fatalf("first event %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first event did not arrive before the stream ended: the proxy buffers streams")
	}
}

func TestHopHeaderScrubbing(t *testing.T) {
	h := http.Header{}
	for _, k := range []string{"Remote-User", "Remote_user", "REMOTE-EMAIL", "X-Forwarded-Host", "X_Forwarded_Proto", "Forwarded", "X-Real-Ip", "X-Remote-Thing", "Accept"} {
		h[k] = []string{"v"}
	}
	h = scrubbedCopy(h, 0)
	for k := range h {
		if k != "X-Remote-Thing" && k != "Accept" {
			t.Errorf("%s survived the scrub", k)
		}
	}
	if len(h) != 2 {
		t.Errorf("scrub removed harmless headers: %v", h)
	}
	ck := http.Header{"Cookie": {"a=1; " + CookieName + "=secret; b=2", CookieName + "=x"}}
	stripOwnCookie(ck)
	if got := ck.Get("Cookie"); got != "a=1; b=2" {
		t.Errorf("stripOwnCookie: %q", got)
	}
}
