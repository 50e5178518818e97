package web

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
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

func TestHeaderScrubbing(t *testing.T) {
	cases := []struct {
		name string
		drop bool
	}{
		// Identity and forwarding, in the spellings servers fold together.
		{"Remote-User", true}, {"Remote_user", true}, {"REMOTE-EMAIL", true}, {"Remote-Anything", true},
		{"X-Forwarded-Host", true}, {"X_Forwarded_Proto", true}, {"X-Forwarded-For", true}, {"Forwarded", true},
		// Re-routing: the path or host an app would act on instead.
		{"X-Original-Url", true}, {"X-Original-URL", true}, {"x_original_url", true}, {"X-Original-Uri", true},
		{"X-Original-Host", true}, {"X-Rewrite-Url", true}, {"X_REWRITE_URL", true}, {"X-Host", true},
		{"X-Http-Host-Override", true},
		// Re-method.
		{"X-Http-Method-Override", true}, {"X_HTTP_METHOD_OVERRIDE", true}, {"X-Http-Method", true}, {"X-Method-Override", true},
		// Re-address.
		{"X-Real-Ip", true}, {"X_Real_IP", true}, {"True-Client-Ip", true}, {"true_client_ip", true}, {"X-Client-Ip", true},
		{"Client-Ip", true}, {"Cf-Connecting-Ip", true}, {"CF_CONNECTING_IP", true}, {"Fastly-Client-Ip", true},
		{"X-Cluster-Client-Ip", true}, {"X-Originating-Ip", true}, {"X-Remote-Ip", true}, {"X-Remote-Addr", true},
		{vouchedKey, true},
		// Harmless look-alikes pass.
		{"X-Remote-Thing", false}, {"Accept", false}, {"X-Http-Methods", false}, {"X-Hosts", false},
		{"X-Real-Ip-Extra", false}, {"Forwarded-Extra", false}, {"Cf-Ray", false}, {"True-Client", false},
		{"Cookie", false}, {"X-Requested-With", false}, {"Content-Type", false}, {"Xy", false}, {"", false},
	}
	src := http.Header{}
	for _, tc := range cases {
		src[tc.name] = []string{"v"}
	}
	got := scrubbedCopy(src, 0)
	for _, tc := range cases {
		if _, kept := got[tc.name]; kept == tc.drop {
			t.Errorf("%q: kept=%v, want dropped=%v", tc.name, kept, tc.drop)
		}
	}
}

func TestKeygateCookieNames(t *testing.T) {
	for name, want := range map[string]bool{
		"keygate_session": true, "__Host-keygate_session": true, "__Secure-keygate_session": true,
		"__host-KEYGATE_SESSION": true, "keygate_device": true, "keygate_factor": true, "keygate_resume": true,
		"keygate_anything_later": true, " keygate_session ": true,
		"keygate": false, "keygate-session": false, "mykeygate_session": false, "__Host-theme": false,
		"session": false, "__Host-": false, "": false,
	} {
		if got := isKeygateCookie(name); got != want {
			t.Errorf("isKeygateCookie(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestCookieStripping(t *testing.T) {
	cases := []struct {
		name  string
		lines []string // nil = no Cookie header
		want  string   // "" = no Cookie header at all
	}{
		{"no header", nil, ""},
		{"only the app's", []string{"a=1; b=2"}, "a=1; b=2"},
		{"only the session", []string{CookieName + "=s"}, ""},
		{"only keygate's, several", []string{CookieName + "=s; keygate_device=d; __Host-keygate_session=h; keygate_factor=totp"}, ""},
		{"mixed", []string{"a=1; " + CookieName + "=s; b=2; keygate_device=d; c=3"}, "a=1; b=2; c=3"},
		{"prefixed forms", []string{"__Host-keygate_session=h; a=1; __Secure-keygate_session=x"}, "a=1"},
		{"case", []string{"KEYGATE_SESSION=s; a=1; Keygate_Device=d"}, "a=1"},
		{"several lines (HTTP/2)", []string{"a=1", CookieName + "=s", "keygate_resume=r", "b=2"}, "a=1; b=2"},
		{"several lines, only keygate's", []string{CookieName + "=s", "keygate_device=d"}, ""},
		{"several lines, none of keygate's", []string{"a=1", "b=2"}, "a=1; b=2"},
		{"empty pairs and spaces", []string{" ; " + CookieName + "=s ;  ; a=1 ; "}, "a=1"},
		{"empty value line", []string{""}, ""},
		{"look-alike value kept", []string{"a=keygate_session; " + CookieName + "=s"}, "a=keygate_session"},
		{"look-alike name kept", []string{"mykeygate_session=1; keygate=2"}, "mykeygate_session=1; keygate=2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.lines != nil {
				h["Cookie"] = append([]string(nil), tc.lines...)
			}
			stripKeygateCookies(h)
			got, present := h["Cookie"]
			if tc.want == "" {
				if present {
					t.Fatalf("Cookie %q left, want no Cookie header", got)
				}
			} else if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("Cookie %q, want %q", got, tc.want)
			}
			// The forward-auth answer is built by the same function.
			v, ok := cleanCookies(tc.lines)
			if ok != (tc.want != "") || v != tc.want {
				t.Fatalf("cleanCookies = %q, %v; want %q", v, ok, tc.want)
			}
		})
	}
}

func TestH2CUpgradeDetection(t *testing.T) {
	for _, tc := range []struct {
		h    http.Header
		want bool
	}{
		{http.Header{"Upgrade": {"h2c"}}, true},
		{http.Header{"Upgrade": {"H2C"}}, true},
		{http.Header{"Upgrade": {"websocket, h2c"}}, true},
		{http.Header{"Upgrade": {"foo", " h2c "}}, true},
		{http.Header{"Http2-Settings": {"AAMAAABkAAQAAP__"}}, true},
		{http.Header{"Upgrade": {"websocket"}}, false},
		{http.Header{"Upgrade": {"h2"}}, false},
		{http.Header{"Upgrade": {"h2cx"}}, false},
		{http.Header{}, false},
	} {
		if got := isH2CUpgrade(tc.h); got != tc.want {
			t.Errorf("isH2CUpgrade(%v) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

// The hygiene end to end: what the app receives through keygate's proxy.
func TestProxyHygieneReachesTheApp(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client()
	h.login(c, testUser, testPassword, "")
	sid := ""
	for _, ck := range c.Jar.Cookies(mustURL(t, "http://app.example.com/")) {
		if ck.Name == CookieName {
			sid = ck.Value
		}
	}
	if sid == "" {
		t.Fatal("no session cookie after sign-in")
	}
	spoof := []string{"X-Original-URL", "X-Rewrite-URL", "X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override",
		"True-Client-IP", "X-Client-IP", "CF-Connecting-IP", "X-Real-IP", "Forwarded", "X_Original_URL", "X-Real_IP"}
	for _, tc := range []struct {
		name, cookie, want string // want "" = no Cookie header
	}{
		{"keygate's and the app's", "theme=dark; " + CookieName + "=" + sid + "; keygate_device=d; __Host-keygate_session=x; lang=ru", "theme=dark; lang=ru"},
		{"only keygate's", CookieName + "=" + sid + "; keygate_factor=totp", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []reqOpt{setHeader("Cookie", tc.cookie)}
			for _, k := range spoof {
				opts = append(opts, setHeader(k, "/admin/evil"))
			}
			resp, body := h.do(h.client(), http.MethodGet, "http://app.example.com/reports", "", opts...)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			got := h.up.last(t)
			if v, ok := got.Header["Cookie"]; tc.want == "" && ok || tc.want != "" && (len(v) != 1 || v[0] != tc.want) {
				t.Errorf("app's Cookie %q (present %v), want %q", v, ok, tc.want)
			}
			for k, v := range got.Header {
				if isSpoofable(k) && !slices.Contains(vouchedHeaders[:], k) {
					t.Errorf("the app received %s: %q", k, v)
				}
				if len(v) != 1 || strings.Contains(v[0], "/admin/evil") {
					t.Errorf("the app received %s: %q", k, v)
				}
			}
			if v := got.Header.Values("X-Real-Ip"); len(v) != 1 || v[0] != "127.0.0.1" {
				t.Errorf("X-Real-Ip %q, want keygate's own 127.0.0.1", v)
			}
			if got.Method != http.MethodGet || got.Header.Get(HeaderUser) != testUser {
				t.Errorf("app saw %s as %q", got.Method, got.Header.Get(HeaderUser))
			}
		})
	}
}

func TestH2CUpgradeRefused(t *testing.T) {
	h := newHarness(t, harnessOptions{policyYAML: "default: bypass\n"})
	for _, opts := range [][]reqOpt{
		{setHeader("Connection", "Upgrade, HTTP2-Settings"), setHeader("Upgrade", "h2c"), setHeader("HTTP2-Settings", "AAMAAABkAAQAAP__")},
		{setHeader("Connection", "Upgrade"), setHeader("Upgrade", "h2c")},
		{setHeader("HTTP2-Settings", "AAMAAABkAAQAAP__")},
	} {
		n := h.up.count()
		resp, body := h.do(h.client(), http.MethodGet, "http://app.example.com/x", "", append(opts, setHeader("Accept", "application/json"))...)
		if resp.StatusCode != http.StatusBadRequest || decodeBody(t, body)["error"] != "h2c_upgrade" {
			t.Fatalf("h2c upgrade: %d %s", resp.StatusCode, body)
		}
		if h.up.count() != n {
			t.Fatal("an h2c upgrade reached the app")
		}
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A link from a portal page to the app does not hand the page's address to
// the app: some portal addresses hold a token (enrolment links, "This
// wasn't me"), and the portal's Referrer-Policy is same-origin.
func TestPortalRefererNeverReachesTheApp(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	c := h.client()
	h.login(c, testUser, testPassword, "")
	for _, tc := range []struct {
		referer string
		kept    bool
	}{
		{"http://app.example.com/.keygate/enroll/3q2-token-zz", false},
		{"http://app.example.com/.keygate/not-me/tok", false},
		{"http://app.example.com/.KEYGATE/not-me/tok", false},
		{"http://app.example.com/.keygate", false},
		{"http://app.example.com/reports?from=/.keygate/x", true},
		{"http://app.example.com/docs/.keygate-howto", true},
		{"http://other.example.net/", true},
	} {
		resp, body := h.do(c, http.MethodGet, "http://app.example.com/reports", "", setHeader("Referer", tc.referer))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.referer, resp.StatusCode, body)
		}
		got := h.up.last(t).Header.Get("Referer")
		if tc.kept && got != tc.referer || !tc.kept && got != "" {
			t.Errorf("Referer %q reached the app as %q (want kept: %v)", tc.referer, got, tc.kept)
		}
	}
}
