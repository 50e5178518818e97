package gateway_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/cmd/keygate/config"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sms"
	"github.com/keygate/keygate/factors/sms/gateway"
	"github.com/keygate/keygate/policy"
)

func TestSMSOffByDefault(t *testing.T) {
	c := config.Default()
	if c.SMS.Provider != "" || c.SMS.Code.Length != 6 || c.SMS.Code.TTL.D() != 10*time.Minute || c.SMS.Timeout.D() != 10*time.Second {
		t.Errorf("defaults %+v", c.SMS)
	}
	if s, err := c.SMS.Sender(config.ReadSecretFile); s != nil || err != nil {
		t.Errorf("sender with SMS off: %v %v", s, err)
	}
	if o := c.SMS.Options(); o.Length != 6 || o.TTL != 10*time.Minute || o.MaxTries != 5 || o.Cooldown != time.Minute || o.HourlyCap != 5 {
		t.Errorf("options %+v", o)
	}
}

func TestSMSKannelFromYAMLAndEnv(t *testing.T) {
	pw := writeFile(t, "kannel", "s3cret\n")
	yml := `
sms:
  provider: kannel
  kannel:
    url: http://127.0.0.1:13013/cgi-bin/sendsms
    username: keygate
    password_file: ` + pw + `
    from: Example
  code: {length: 8, ttl: 5m, cooldown: 30s, hourly_cap: 3}
`
	c, err := config.Parse([]byte(yml), func(k string) string {
		return map[string]string{"KEYGATE_SMS_KANNEL_METHOD": "GET", "KEYGATE_SMS_TIMEOUT": "3s"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.SMS.Kannel.Method != "GET" || c.SMS.Timeout.D() != 3*time.Second {
		t.Errorf("env overrides: %+v", c.SMS)
	}
	if o := c.SMS.Options(); o.Length != 8 || o.TTL != 5*time.Minute || o.Cooldown != 30*time.Second || o.HourlyCap != 3 || o.MaxTries != 5 {
		t.Errorf("options %+v", o)
	}
	s, err := c.SMS.Sender(config.ReadSecretFile)
	if _, ok := s.(*gateway.Kannel); !ok || err != nil {
		t.Errorf("sender %T %v", s, err)
	}
}

// The HTTP provider built from the configuration sends through a real
// loopback server: headers (one from a file), the body template.
func TestSMSHTTPFromConfigSends(t *testing.T) {
	var gotAuth, gotBody, gotType string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotAuth, gotBody, gotType = r.Header.Get("Authorization"), string(b), r.Header.Get("Content-Type")
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	token := writeFile(t, "token", "Bearer t0k3n\n")
	yml := `
sms:
  provider: http
  http:
    url: ` + srv.URL + `/send
    headers:
      - {name: Authorization, value_file: ` + token + `}
      - {name: X-Tenant, value: acme}
    body: '{"to": {{json .To}}, "text": {{json .Text}}}'
`
	c, err := config.Parse([]byte(yml), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.SMS.Sender(config.ReadSecretFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), sms.Message{To: "+447700900123", Text: `Say "hi"`}); err != nil {
		t.Fatal(err)
	}
	if gotAuth != "Bearer t0k3n" || gotBody != `{"to": "+447700900123", "text": "Say \"hi\""}` || gotType != "application/json" {
		t.Errorf("auth %q body %q type %q", gotAuth, gotBody, gotType)
	}
	srv.Close()
	if err := s.Send(context.Background(), sms.Message{To: "+447700900123", Text: "x"}); !errors.Is(err, factors.ErrSendFailed) {
		t.Errorf("server gone: %v", err)
	}
}

// Each check has a failing case; only the paths are compared.
func TestSMSValidateChecks(t *testing.T) {
	pw := writeFile(t, "pw", "p\n")
	empty := writeFile(t, "empty", "")
	ctl := writeFile(t, "ctl", "a\x01b\n")
	kannel := func(c *config.Config) {
		c.SMS.Provider = gateway.ProviderKannel
		c.SMS.Kannel.URL = "http://127.0.0.1:13013/cgi-bin/sendsms"
		c.SMS.Kannel.Username = "keygate"
		c.SMS.Kannel.PasswordFile = pw
	}
	httpAPI := func(c *config.Config) {
		c.SMS.Provider = gateway.ProviderHTTP
		c.SMS.HTTP.URL = "https://sms.example.com/v1/messages"
		c.SMS.HTTP.Body = `{"to": {{json .To}}, "text": {{json .Text}}}`
	}
	for _, tc := range []struct {
		name   string
		mutate func(c *config.Config)
		want   []string
	}{
		{"kannel ok", kannel, nil},
		{"http ok", httpAPI, nil},
		{"http form ok", func(c *config.Config) {
			httpAPI(c)
			c.SMS.HTTP.Method = "PUT"
			c.SMS.HTTP.Body = "to={{urlquery .To}}&text={{urlquery .Text}}"
		}, nil},
		{"unknown provider", func(c *config.Config) { c.SMS.Provider = "twilio" }, []string{"sms.provider"}},
		{"code", func(c *config.Config) {
			c.SMS.Code.Length, c.SMS.Code.MaxTries, c.SMS.Code.HourlyCap = 5, 0, 0
		}, []string{"sms.code.length", "sms.code.max_tries", "sms.code.hourly_cap"}},
		{"code times", func(c *config.Config) {
			c.SMS.Code.TTL = policy.Duration(2 * time.Hour)
			c.SMS.Code.Cooldown = policy.Duration(11 * time.Minute)
		}, []string{"sms.code.ttl", "sms.code.cooldown"}},
		{"timeout", func(c *config.Config) { c.SMS.Timeout = policy.Duration(2 * time.Minute) }, []string{"sms.timeout"}},
		{"kannel empty", func(c *config.Config) { c.SMS.Provider = gateway.ProviderKannel },
			[]string{"sms.kannel.url", "sms.kannel.username", "sms.kannel.password_file"}},
		{"kannel url", func(c *config.Config) { kannel(c); c.SMS.Kannel.URL = "ftp://127.0.0.1/x" }, []string{"sms.kannel.url"}},
		{"kannel url query", func(c *config.Config) { kannel(c); c.SMS.Kannel.URL += "?password=p" }, []string{"sms.kannel.url"}},
		{"kannel url userinfo", func(c *config.Config) { kannel(c); c.SMS.Kannel.URL = "http://u:p@127.0.0.1/x" }, []string{"sms.kannel.url"}},
		{"kannel plain http far", func(c *config.Config) { kannel(c); c.SMS.Kannel.URL = "http://sms.example.com/cgi-bin/sendsms" }, []string{"sms.kannel.url"}},
		{"kannel password file", func(c *config.Config) { kannel(c); c.SMS.Kannel.PasswordFile = empty }, []string{"sms.kannel.password_file"}},
		{"kannel from", func(c *config.Config) { kannel(c); c.SMS.Kannel.From = "Example Corporation" }, []string{"sms.kannel.from"}},
		{"kannel from number", func(c *config.Config) { kannel(c); c.SMS.Kannel.From = "+1234567890123456" }, []string{"sms.kannel.from"}},
		{"kannel from newline", func(c *config.Config) { kannel(c); c.SMS.Kannel.From = "a\nb" }, []string{"sms.kannel.from"}},
		{"kannel method", func(c *config.Config) { kannel(c); c.SMS.Kannel.Method = "PUT" }, []string{"sms.kannel.method"}},
		{"http empty", func(c *config.Config) { c.SMS.Provider = gateway.ProviderHTTP }, []string{"sms.http.url", "sms.http.body"}},
		{"http plain far", func(c *config.Config) { httpAPI(c); c.SMS.HTTP.URL = "http://sms.example.com/send" }, []string{"sms.http.url"}},
		{"http method", func(c *config.Config) { httpAPI(c); c.SMS.HTTP.Method = "GET" }, []string{"sms.http.method"}},
		{"http body syntax", func(c *config.Config) { httpAPI(c); c.SMS.HTTP.Body = "{{.To" }, []string{"sms.http.body"}},
		{"http body field", func(c *config.Config) { httpAPI(c); c.SMS.HTTP.Body = "{{.Number}}" }, []string{"sms.http.body"}},
		{"http content type", func(c *config.Config) { httpAPI(c); c.SMS.HTTP.ContentType = "a\nb" }, []string{"sms.http.content_type"}},
		{"http headers", func(c *config.Config) {
			httpAPI(c)
			c.SMS.HTTP.Headers = []gateway.HeaderConf{
				{Name: "", Value: "x"},
				{Name: "X-A", Value: "1", ValueFile: pw},
				{Name: "X-B", ValueFile: empty},
				{Name: "X-C", ValueFile: ctl},
				{Name: "X-D", Value: "1\r\n2"},
				{Name: "X-Ok", ValueFile: pw},
			}
		}, []string{"sms.http.headers[0].name", "sms.http.headers[1].value_file", "sms.http.headers[2].value_file",
			"sms.http.headers[3].value_file", "sms.http.headers[4].value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validBase()
			tc.mutate(&c)
			var got []string
			if err := c.Validate(); err != nil {
				ps, ok := errors.AsType[config.Problems](err)
				if !ok {
					t.Fatalf("not Problems: %v", err)
				}
				for _, p := range ps {
					got = append(got, p.Path)
					if strings.Contains(p.Message, "password=p") || strings.Contains(p.Message, "u:p@") {
						t.Errorf("%s: the message repeats a secret: %s", p.Path, p.Message)
					}
				}
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("problems at %v, want %v", got, want)
			}
		})
	}
}

// A YAML file with several SMS mistakes reports each with its path and
// line, together.
func TestSMSProblemsFromYAML(t *testing.T) {
	yml := `sms:
  provider: kannel
  kannel:
    url: http://sms.example.com/cgi-bin/sendsms
    method: PATCH
  code:
    length: 4
`
	_, err := config.Parse([]byte(yml), nil)
	ps, ok := errors.AsType[config.Problems](err)
	if !ok {
		t.Fatalf("want Problems, got %v", err)
	}
	lines := map[string]int{}
	for _, p := range ps {
		lines[p.Path] = p.Line
	}
	for path, line := range map[string]int{
		"sms.kannel.url": 4, "sms.kannel.method": 5, "sms.code.length": 7,
		"sms.kannel.username": 3, "sms.kannel.password_file": 3,
	} {
		if got, ok := lines[path]; !ok || got != line {
			t.Errorf("%s: line %d (present %v), want %d\n%v", path, got, ok, line, err)
		}
	}
	// A key that does not exist is named too.
	_, err = config.Parse([]byte("sms:\n  provder: kannel\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "sms.provder") {
		t.Errorf("unknown key: %v", err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// validBase is a configuration that validates, for each case to spoil
// only its sms section.
func validBase() config.Config {
	c := config.Default()
	c.Upstreams = []config.Upstream{{Host: "localhost", URL: "http://127.0.0.1:8080"}}
	return c
}
