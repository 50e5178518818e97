package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sms"
	"github.com/keygate/keygate/factors/sms/gateway"
)

var ctx = context.Background()

// api is a real loopback HTTP server standing in for a hosted SMS API: it
// records each request and answers with status.
type api struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []seen
	status int
	body   string // answer body
	delay  time.Duration
}

type seen struct {
	method, path, query string
	header              http.Header
	body                string
}

func newAPI(t *testing.T) *api {
	a := &api{status: http.StatusOK}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.reqs = append(a.reqs, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), string(b)})
		status, body, delay := a.status, a.body, a.delay
		a.mu.Unlock()
		time.Sleep(delay)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *api) last(t *testing.T) seen {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.reqs) == 0 {
		t.Fatal("no request reached the API")
	}
	return a.reqs[len(a.reqs)-1]
}

// (Header values read from files: see cmd/keygate/config's SMS tests.)
func TestHTTPJSONBodyAndHeaders(t *testing.T) {
	a := newAPI(t)
	token := "tok-3f9a1c"
	g, err := gateway.NewHTTP(gateway.HTTPOptions{
		URL: a.srv.URL + "/v1/messages",
		Headers: []gateway.Header{
			{Name: "authorization", Value: "Bearer " + token},
			{Name: "X-Account", Value: "acme"},
		},
		Body: `{"to": {{json .To}}, "body": {{json .Text}}, "from": "keygate"}`,
	})
	if err != nil {
		t.Fatal(err)
	}
	text := "Ваш код keygate: 123456. \"Quotes\" and \\ and\nnewline </script>"
	if err := g.Send(ctx, sms.Message{To: "+447700900123", Text: text}); err != nil {
		t.Fatal(err)
	}
	r := a.last(t)
	if r.method != "POST" || r.path != "/v1/messages" || r.header.Get("Authorization") != "Bearer "+token ||
		r.header.Get("X-Account") != "acme" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("request %+v", r)
	}
	var got struct{ To, Body, From string }
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.body)
	}
	if got.To != "+447700900123" || got.Body != text || got.From != "keygate" {
		t.Errorf("body %+v", got)
	}
}

func TestHTTPFormBody(t *testing.T) {
	a := newAPI(t)
	g, err := gateway.NewHTTP(gateway.HTTPOptions{
		Method: "put", URL: a.srv.URL + "/send?account=1",
		Body: `To={{urlquery .To}}&Body={{urlquery .Text}}`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Send(ctx, sms.Message{To: "+447700900123", Text: "a&b=c код"}); err != nil {
		t.Fatal(err)
	}
	r := a.last(t)
	v, err := url.ParseQuery(r.body)
	if r.method != "PUT" || r.query != "account=1" || r.header.Get("Content-Type") != "application/x-www-form-urlencoded" ||
		err != nil || v.Get("To") != "+447700900123" || v.Get("Body") != "a&b=c код" {
		t.Errorf("request %+v (%v)", r, err)
	}
}

// Anything but 2xx is a failure that wraps ErrSendFailed; the error shows
// neither the API's answer (APIs echo the number and text) nor the query
// (tokens).
func TestHTTPNon2xxAndDown(t *testing.T) {
	a := newAPI(t)
	g, err := gateway.NewHTTP(gateway.HTTPOptions{URL: a.srv.URL + "/send?key=SECRETKEY", Body: `{"to":{{json .To}},"text":{{json .Text}}}`, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := sms.Message{To: "+447700900123", Text: "Your keygate code is 123456."}
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusInternalServerError, http.StatusMovedPermanently} {
		a.mu.Lock()
		a.status, a.body = status, "number +447700900123 text Your keygate code is 123456."
		a.mu.Unlock()
		err := g.Send(ctx, m)
		var se *gateway.StatusError
		if !errors.As(err, &se) || se.Status != status || !errors.Is(err, factors.ErrSendFailed) {
			t.Errorf("status %d: %v", status, err)
			continue
		}
		for _, secret := range []string{"7700900123", "123456", "SECRETKEY"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("status %d: the error shows %q: %v", status, secret, err)
			}
		}
	}
	for _, status := range []int{http.StatusOK, http.StatusCreated, http.StatusAccepted, http.StatusNoContent} {
		a.mu.Lock()
		a.status, a.body = status, ""
		a.mu.Unlock()
		if err := g.Send(ctx, m); err != nil {
			t.Errorf("status %d: %v", status, err)
		}
	}
	// Too slow: a timeout, said so.
	a.mu.Lock()
	a.status, a.delay = http.StatusOK, time.Second
	a.mu.Unlock()
	if err := g.Send(ctx, m); !errors.Is(err, factors.ErrSendFailed) || !strings.Contains(err.Error(), "timed out") || strings.Contains(err.Error(), "SECRETKEY") {
		t.Errorf("slow API: %v", err)
	}
	// Gone.
	a.srv.Close()
	if err := g.Send(ctx, m); !errors.Is(err, factors.ErrSendFailed) || strings.Contains(err.Error(), "SECRETKEY") || strings.Contains(err.Error(), "7700900123") {
		t.Errorf("API down: %v", err)
	}
}

func TestHTTPOptionsRefused(t *testing.T) {
	body := `{"to":{{json .To}}}`
	for name, o := range map[string]gateway.HTTPOptions{
		"no url":           {Body: body},
		"ftp url":          {URL: "ftp://example.com/x", Body: body},
		"no host":          {URL: "http:///x", Body: body},
		"GET":              {Method: "GET", URL: "http://127.0.0.1/x", Body: body},
		"no body":          {URL: "http://127.0.0.1/x"},
		"bad template":     {URL: "http://127.0.0.1/x", Body: `{{.To`},
		"unknown field":    {URL: "http://127.0.0.1/x", Body: `{{.Phone}}`},
		"header name":      {URL: "http://127.0.0.1/x", Body: body, Headers: []gateway.Header{{Name: "X Bad", Value: "1"}}},
		"header value":     {URL: "http://127.0.0.1/x", Body: body, Headers: []gateway.Header{{Name: "X-A", Value: "1\r\nX-B: 2"}}},
		"control in value": {URL: "http://127.0.0.1/x", Body: body, Headers: []gateway.Header{{Name: "X-A", Value: "a\rb"}}},
		"unparsable url":   {URL: "http://127.0.0.1:99999x/x?key=SECRET", Body: body},
	} {
		_, err := gateway.NewHTTP(o)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "a\rb") || strings.Contains(err.Error(), "key=") {
			t.Errorf("%s: the error repeats a secret: %v", name, err)
		}
	}
}

func TestKannelOptionsRefused(t *testing.T) {
	for name, o := range map[string]gateway.KannelOptions{
		"no url":           {Username: "u", Password: "p"},
		"password in url":  {URL: "http://u:p@127.0.0.1:13013/cgi-bin/sendsms", Username: "u", Password: "p"},
		"query in url":     {URL: "http://127.0.0.1:13013/cgi-bin/sendsms?password=p", Username: "u", Password: "p"},
		"no username":      {URL: "http://127.0.0.1:13013/cgi-bin/sendsms", Password: "p"},
		"no password":      {URL: "http://127.0.0.1:13013/cgi-bin/sendsms", Username: "u"},
		"method":           {URL: "http://127.0.0.1:13013/cgi-bin/sendsms", Username: "u", Password: "p", Method: "PUT"},
		"newline in from":  {URL: "http://127.0.0.1:13013/cgi-bin/sendsms", Username: "u", Password: "p", From: "a\nb"},
		"newline password": {URL: "http://127.0.0.1:13013/cgi-bin/sendsms", Username: "u", Password: "p\r\nX: y"},
	} {
		_, err := gateway.NewKannel(o)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "p@") || strings.Contains(err.Error(), "password=p") {
			t.Errorf("%s: the error repeats the password: %v", name, err)
		}
	}
	if _, err := gateway.NewKannel(gateway.KannelOptions{URL: "https://sms.example.com/cgi-bin/sendsms", Username: "u", Password: "pw"}); err != nil {
		t.Errorf("https: %v", err)
	}
}
