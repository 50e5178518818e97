package gateway

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/factors/sentcode"
	"github.com/keygate/keygate/factors/sms"
	"github.com/keygate/keygate/policy"
)

// SMS providers.
const (
	ProviderOff    = ""
	ProviderKannel = "kannel"
	ProviderHTTP   = "http"
)

var providers = []string{ProviderKannel, ProviderHTTP}

// Config is the SMS factor's section of keygate's configuration file
// (sms:):
// codes texted through Kannel or a hosted SMS API. An empty Provider
// turns it off. It checks itself (factors.ConfigSection), so the config
// loader holds no SMS code.
type Config struct {
	Provider string     `yaml:"provider"`
	Kannel   KannelConf `yaml:"kannel"`
	HTTP     HTTPConf   `yaml:"http"`
	// Timeout bounds one delivery.
	Timeout policy.Duration `yaml:"timeout"`
	// Code tunes the codes, as email.code does for mail.
	Code sentcode.Tuning `yaml:"code"`
}

var _ factors.ConfigSection = (*Config)(nil)

// KannelConf is Kannel's smsbox sendsms interface.
type KannelConf struct {
	// URL of sendsms, e.g. http://127.0.0.1:13013/cgi-bin/sendsms.
	URL      string `yaml:"url"`
	Username string `yaml:"username"`
	// PasswordFile holds the sendsms password (read at start; never in
	// this file).
	PasswordFile string `yaml:"password_file"`
	// From is the sender the phone shows (empty: Kannel's default).
	From string `yaml:"from"`
	// Method is POST (text and password in the body and headers) or GET.
	Method string `yaml:"method"`
}

// HTTPConf is a hosted SMS API reached with one request.
type HTTPConf struct {
	Method  string       `yaml:"method"`
	URL     string       `yaml:"url"`
	Headers []HeaderConf `yaml:"headers"`
	// Body is a text/template with .To, .Text, json and urlquery.
	Body        string `yaml:"body"`
	ContentType string `yaml:"content_type"`
}

// HeaderConf is one request header; its value is written here or read
// from a file (a token).
type HeaderConf struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFile string `yaml:"value_file"`
}

// DefaultConfig is the sms section when the file leaves it out: off, with
// the email code's tuning ready for when a provider is set.
func DefaultConfig() Config {
	return Config{
		Timeout: policy.Duration(DefaultTimeout),
		Kannel:  KannelConf{Method: "POST"},
		HTTP:    HTTPConf{Method: "POST"},
		Code:    sentcode.DefaultTuning(),
	}
}

// Enabled: SMS is on once a provider is set.
func (c *Config) Enabled() (string, bool) { return sms.Kind, c.Provider != ProviderOff }

// Options is the factor's tuning from sms.code.
func (c *Config) Options() sms.Options { return sms.Options{Limits: c.Code.Limits()} }

// Sender builds the configured gateway, reading its secret files now with
// readSecret (the config loader's; a rotated file is picked up at the next
// start or reload); nil when SMS is off.
func (c *Config) Sender(readSecret func(file string) (string, error)) (sms.Sender, error) {
	s := *c
	switch s.Provider {
	case ProviderKannel:
		pw, err := readSecret(s.Kannel.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("sms.kannel.password_file: %w", err)
		}
		return NewKannel(KannelOptions{
			URL: s.Kannel.URL, Username: s.Kannel.Username, Password: pw,
			From: s.Kannel.From, Method: s.Kannel.Method, Timeout: s.Timeout.D(),
		})
	case ProviderHTTP:
		hs := make([]Header, len(s.HTTP.Headers))
		for i, h := range s.HTTP.Headers {
			hs[i] = Header{Name: h.Name, Value: h.Value}
			if h.ValueFile != "" {
				v, err := readSecret(h.ValueFile)
				if err != nil {
					return nil, fmt.Errorf("sms.http.headers[%d].value_file: %w", i, err)
				}
				hs[i].Value = v
			}
		}
		return NewHTTP(HTTPOptions{
			Method: s.HTTP.Method, URL: s.HTTP.URL, Headers: hs, Body: s.HTTP.Body,
			ContentType: s.HTTP.ContentType, Timeout: s.Timeout.D(),
		})
	case ProviderOff:
		return nil, nil
	}
	return nil, fmt.Errorf("sms.provider %q is not one of %s", s.Provider, strings.Join(providers, ", "))
}

// CheckConfig checks the section under path ("sms"). The code's tuning is
// checked even with SMS off, so turning it on later brings no surprise.
func (c *Config) CheckConfig(path string, ck factors.ConfigChecker) {
	s := *c
	add := ck.Problem
	s.Code.Check(path+".code", add)
	if d := s.Timeout.D(); d < time.Second || d > time.Minute {
		add(path+".timeout", "%s must be between 1s and 1m", s.Timeout)
	}
	switch s.Provider {
	case ProviderOff:
	case ProviderKannel:
		k := s.Kannel
		checkGatewayURL(ck, path+".kannel.url", k.URL, "Kannel's sendsms, such as http://127.0.0.1:13013/cgi-bin/sendsms")
		if u, err := url.Parse(k.URL); err == nil && u.RawQuery != "" {
			add(path+".kannel.url", "has a query; give username and password as their own keys")
		}
		if k.Username == "" {
			add(path+".kannel.username", "required: a sendsms-user of smsbox")
		}
		if k.PasswordFile == "" {
			add(path+".kannel.password_file", "required: the file holding the sendsms-user's password")
		}
		if k.PasswordFile != "" {
			if _, err := ck.ReadSecret(k.PasswordFile); err != nil {
				add(path+".kannel.password_file", "cannot be used: %v", err)
			}
		}
		if msg := checkSMSFrom(k.From); msg != "" {
			add(path+".kannel.from", "%s", msg)
		}
		if !slices.Contains([]string{"GET", "POST"}, k.Method) {
			add(path+".kannel.method", "%q is not GET or POST", k.Method)
		}
	case ProviderHTTP:
		h := s.HTTP
		checkGatewayURL(ck, path+".http.url", h.URL, "the provider's send endpoint")
		if !slices.Contains([]string{"POST", "PUT"}, h.Method) {
			add(path+".http.method", "%q is not POST or PUT (the number and text go in the body)", h.Method)
		}
		if h.Body == "" {
			add(path+".http.body", "required: a template with {{.To}} and {{.Text}}, such as {\"to\": {{json .To}}, \"text\": {{json .Text}}}")
		} else if err := CheckBody(h.Body); err != nil {
			add(path+".http.body", "%v", err)
		}
		if strings.ContainsFunc(h.ContentType, unicode.IsControl) {
			add(path+".http.content_type", "has control characters")
		}
		for i, hd := range h.Headers {
			p := fmt.Sprintf("%s.http.headers[%d]", path, i)
			if hd.Name == "" || strings.ContainsFunc(hd.Name, func(r rune) bool { return r <= ' ' || r == ':' || r > '~' }) {
				add(p+".name", "%q is not a header name", hd.Name)
			}
			switch {
			case hd.Value != "" && hd.ValueFile != "":
				add(p+".value_file", "set together with value; keep one of them")
			case hd.ValueFile != "":
				if v, err := ck.ReadSecret(hd.ValueFile); err != nil {
					add(p+".value_file", "cannot be used: %v", err)
				} else if strings.ContainsFunc(v, unicode.IsControl) {
					add(p+".value_file", "the value has control characters")
				}
			case strings.ContainsFunc(hd.Value, unicode.IsControl):
				add(p+".value", "has control characters")
			}
		}
	default:
		add(path+".provider", "%q is not one of %s (or empty: off)", s.Provider, strings.Join(providers, ", "))
	}
}

// checkGatewayURL checks an SMS gateway's URL. Plain http is for loopback
// only: a password, a token and every code would cross the network in
// clear. Messages never repeat the query (where tokens go).
func checkGatewayURL(ck factors.ConfigChecker, path, raw, what string) {
	if raw == "" {
		ck.Problem(path, "required: %s", what)
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		ck.Problem(path, "is not a URL")
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		ck.Problem(path, "want an http:// or https:// URL with a host (%s)", what)
	case u.User != nil:
		ck.Problem(path, "user:password in the URL is not supported")
	case u.Scheme == "http" && !ck.Loopback(u.Hostname()):
		ck.Problem(path, "plain http to %s would send the code and credentials in clear; use https, or run the gateway on this host", u.Hostname())
	}
}

// checkSMSFrom accepts what operators show as a sender: a number of up to
// 15 digits (with an optional +), or up to 11 letters, digits and spaces.
func checkSMSFrom(from string) string {
	if from == "" {
		return ""
	}
	digits := strings.TrimPrefix(from, "+")
	if digits != "" && strings.Trim(digits, "0123456789") == "" {
		if len(digits) > 15 {
			return fmt.Sprintf("%q: a sender number has at most 15 digits", from)
		}
		return ""
	}
	if len(from) > 11 || strings.ContainsFunc(from, func(r rune) bool {
		return r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == ' ')
	}) {
		return fmt.Sprintf("%q: a sender name has at most 11 letters, digits and spaces", from)
	}
	return ""
}
