package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/keygate/keygate/factors/sentcode"
	"github.com/keygate/keygate/factors/sms"
	"github.com/keygate/keygate/factors/sms/gateway"
	"github.com/keygate/keygate/policy"
)

// SMS providers.
const (
	ProviderOff    = ""
	ProviderKannel = "kannel"
	ProviderHTTP   = "http"
)

var smsProviders = []string{ProviderKannel, ProviderHTTP}

// SMS is the SMS second factor: codes texted through Kannel or a hosted
// SMS API. An empty Provider turns it off.
type SMS struct {
	Provider string    `yaml:"provider"`
	Kannel   SMSKannel `yaml:"kannel"`
	HTTP     SMSHTTP   `yaml:"http"`
	// Timeout bounds one delivery.
	Timeout policy.Duration `yaml:"timeout"`
	// Code tunes the codes, as email.code does for mail.
	Code EmailCode `yaml:"code"`
}

// SMSKannel is Kannel's smsbox sendsms interface.
type SMSKannel struct {
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

// SMSHTTP is a hosted SMS API reached with one request.
type SMSHTTP struct {
	Method  string      `yaml:"method"`
	URL     string      `yaml:"url"`
	Headers []SMSHeader `yaml:"headers"`
	// Body is a text/template with .To, .Text, json and urlquery.
	Body        string `yaml:"body"`
	ContentType string `yaml:"content_type"`
}

// SMSHeader is one request header; its value is written here or read
// from a file (a token).
type SMSHeader struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFile string `yaml:"value_file"`
}

// defaultSMS is the sms section when the file leaves it out: off, with the
// email code's tuning ready for when a provider is set.
func defaultSMS() SMS {
	return SMS{
		Timeout: policy.Duration(gateway.DefaultTimeout),
		Kannel:  SMSKannel{Method: "POST"},
		HTTP:    SMSHTTP{Method: "POST"},
		Code: EmailCode{Length: 6, TTL: policy.Duration(10 * time.Minute), MaxTries: 5,
			Cooldown: policy.Duration(time.Minute), HourlyCap: 5},
	}
}

// SMSOptions is the factor's tuning from sms.code.
func (c *Config) SMSOptions() sms.Options {
	k := c.SMS.Code
	return sms.Options{Limits: sentcode.Limits{Length: k.Length, TTL: k.TTL.D(), MaxTries: k.MaxTries,
		Cooldown: k.Cooldown.D(), HourlyCap: k.HourlyCap}}
}

// SMSSender builds the configured gateway, reading its secret files now
// (a rotated file is picked up at the next start or reload); nil when SMS
// is off.
func (c *Config) SMSSender() (sms.Sender, error) {
	s := c.SMS
	switch s.Provider {
	case ProviderKannel:
		pw, err := readSecretFile(s.Kannel.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("sms.kannel.password_file: %w", err)
		}
		return gateway.NewKannel(gateway.KannelOptions{
			URL: s.Kannel.URL, Username: s.Kannel.Username, Password: pw,
			From: s.Kannel.From, Method: s.Kannel.Method, Timeout: s.Timeout.D(),
		})
	case ProviderHTTP:
		hs := make([]gateway.Header, len(s.HTTP.Headers))
		for i, h := range s.HTTP.Headers {
			hs[i] = gateway.Header{Name: h.Name, Value: h.Value}
			if h.ValueFile != "" {
				v, err := readSecretFile(h.ValueFile)
				if err != nil {
					return nil, fmt.Errorf("sms.http.headers[%d].value_file: %w", i, err)
				}
				hs[i].Value = v
			}
		}
		return gateway.NewHTTP(gateway.HTTPOptions{
			Method: s.HTTP.Method, URL: s.HTTP.URL, Headers: hs, Body: s.HTTP.Body,
			ContentType: s.HTTP.ContentType, Timeout: s.Timeout.D(),
		})
	case ProviderOff:
		return nil, nil
	}
	return nil, fmt.Errorf("sms.provider %q is not one of %s", s.Provider, strings.Join(smsProviders, ", "))
}

// validateSMS checks the sms section. The code's tuning is checked even
// with SMS off, so turning it on later brings no surprise.
func (c *Config) validateSMS(ps *Problems) {
	s := c.SMS
	checkCode(ps, "sms.code", s.Code)
	if d := s.Timeout.D(); d < time.Second || d > time.Minute {
		ps.add("sms.timeout", "%s must be between 1s and 1m", s.Timeout)
	}
	switch s.Provider {
	case ProviderOff:
	case ProviderKannel:
		k := s.Kannel
		checkGatewayURL(ps, "sms.kannel.url", k.URL, "Kannel's sendsms, such as http://127.0.0.1:13013/cgi-bin/sendsms")
		if u, err := url.Parse(k.URL); err == nil && u.RawQuery != "" {
			ps.add("sms.kannel.url", "has a query; give username and password as their own keys")
		}
		if k.Username == "" {
			ps.add("sms.kannel.username", "required: a sendsms-user of smsbox")
		}
		if k.PasswordFile == "" {
			ps.add("sms.kannel.password_file", "required: the file holding the sendsms-user's password")
		}
		checkSecret(ps, "", "sms.kannel.password", k.PasswordFile)
		if msg := checkSMSFrom(k.From); msg != "" {
			ps.add("sms.kannel.from", "%s", msg)
		}
		if !slices.Contains([]string{"GET", "POST"}, k.Method) {
			ps.add("sms.kannel.method", "%q is not GET or POST", k.Method)
		}
	case ProviderHTTP:
		h := s.HTTP
		checkGatewayURL(ps, "sms.http.url", h.URL, "the provider's send endpoint")
		if !slices.Contains([]string{"POST", "PUT"}, h.Method) {
			ps.add("sms.http.method", "%q is not POST or PUT (the number and text go in the body)", h.Method)
		}
		if h.Body == "" {
			ps.add("sms.http.body", "required: a template with {{.To}} and {{.Text}}, such as {\"to\": {{json .To}}, \"text\": {{json .Text}}}")
		} else if err := gateway.CheckBody(h.Body); err != nil {
			ps.add("sms.http.body", "%v", err)
		}
		if strings.ContainsFunc(h.ContentType, unicode.IsControl) {
			ps.add("sms.http.content_type", "has control characters")
		}
		for i, hd := range h.Headers {
			p := fmt.Sprintf("sms.http.headers[%d]", i)
			if hd.Name == "" || strings.ContainsFunc(hd.Name, func(r rune) bool { return r <= ' ' || r == ':' || r > '~' }) {
				ps.add(p+".name", "%q is not a header name", hd.Name)
			}
			switch {
			case hd.Value != "" && hd.ValueFile != "":
				ps.add(p+".value_file", "set together with value; keep one of them")
			case hd.ValueFile != "":
				if v, err := readSecretFile(hd.ValueFile); err != nil {
					ps.add(p+".value_file", "cannot be used: %v", err)
				} else if strings.ContainsFunc(v, unicode.IsControl) {
					ps.add(p+".value_file", "the value has control characters")
				}
			case strings.ContainsFunc(hd.Value, unicode.IsControl):
				ps.add(p+".value", "has control characters")
			}
		}
	default:
		ps.add("sms.provider", "%q is not one of %s (or empty: off)", s.Provider, strings.Join(smsProviders, ", "))
	}
}

// checkCode checks the tuning of sent codes (email.code, sms.code).
func checkCode(ps *Problems, path string, e EmailCode) {
	if e.Length < 6 || e.Length > 10 {
		ps.add(path+".length", "%d must be between 6 and 10 digits", e.Length)
	}
	if e.TTL.D() < time.Minute || e.TTL.D() > time.Hour {
		ps.add(path+".ttl", "%s must be between 1m and 1h", e.TTL)
	}
	if e.MaxTries < 1 || e.MaxTries > 10 {
		ps.add(path+".max_tries", "%d must be between 1 and 10", e.MaxTries)
	}
	if e.Cooldown.D() < 0 || e.Cooldown.D() > 10*time.Minute || e.Cooldown.D() >= e.TTL.D() {
		ps.add(path+".cooldown", "%s must be between 0s and 10m and shorter than %s.ttl", e.Cooldown, path)
	}
	if e.HourlyCap < 1 {
		ps.add(path+".hourly_cap", "%d must be at least 1", e.HourlyCap)
	}
}

// checkGatewayURL checks an SMS gateway's URL. Plain http is for loopback
// only: a password, a token and every code would cross the network in
// clear. Messages never repeat the query (where tokens go).
func checkGatewayURL(ps *Problems, path, raw, what string) {
	if raw == "" {
		ps.add(path, "required: %s", what)
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		ps.add(path, "is not a URL")
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		ps.add(path, "want an http:// or https:// URL with a host (%s)", what)
	case u.User != nil:
		ps.add(path, "user:password in the URL is not supported")
	case u.Scheme == "http" && !isLocalHost(u.Hostname()):
		ps.add(path, "plain http to %s would send the code and credentials in clear; use https, or run the gateway on this host", u.Hostname())
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
