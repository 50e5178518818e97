package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/template"
	"time"
	"unicode"

	"github.com/keygate/keygate/factors/sms"
)

// Header is one request header of the HTTP gateway.
type Header struct {
	Name, Value string
}

// HTTPOptions configure a hosted SMS API reached with one request.
type HTTPOptions struct {
	// Method is POST (the default) or PUT.
	Method string
	// URL of the API's send endpoint.
	URL string
	// Headers sent with every request (Authorization, API keys).
	Headers []Header
	// Body is a text/template of the request body. It sees .To (E.164,
	// "+447700900123") and .Text, and has the functions json (a JSON
	// string literal, quotes included: {"to": {{json .To}}}) and
	// urlquery (for form bodies: to={{urlquery .To}}).
	Body string
	// ContentType of the body ("application/json" when empty and the body
	// starts with '{', else "application/x-www-form-urlencoded").
	ContentType string
	// Timeout bounds one delivery (DefaultTimeout when zero).
	Timeout time.Duration
	// Client is the HTTP client (a plain one when nil).
	Client *http.Client
}

// HTTP sends texts with one request to a hosted SMS API; any 2xx answer
// means sent. The answer's body is never shown: APIs echo the number and
// the text.
type HTTP struct {
	method      string
	u           *url.URL
	headers     http.Header
	body        *template.Template
	contentType string
	timeout     time.Duration
	client      *http.Client
}

// templateFuncs are the body template's functions.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
}

// CheckBody reports whether tmpl is a body template NewHTTP accepts: it
// parses, and renders with the fields and functions it may use.
func CheckBody(tmpl string) error {
	t, err := parseBody(tmpl)
	if err != nil {
		return err
	}
	_, err = (&HTTP{body: t}).render(sampleMessage)
	return err
}

func parseBody(tmpl string) (*template.Template, error) {
	t, err := template.New("body").Funcs(templateFuncs).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return nil, fmt.Errorf("sms: http body template: %w", err)
	}
	return t, nil
}

// sampleMessage renders templates once at start, so one that fails on
// real data fails then, not at the first sign-in.
var sampleMessage = sms.Message{To: "+447700900123", Text: "Your keygate code is 123456."}

// NewHTTP checks the options and parses the body template.
func NewHTTP(o HTTPOptions) (*HTTP, error) {
	u, err := parseEndpoint(o.URL)
	if err != nil {
		return nil, fmt.Errorf("sms: http url: %w", err)
	}
	method := strings.ToUpper(o.Method)
	if method == "" {
		method = http.MethodPost
	}
	if method != http.MethodPost && method != http.MethodPut {
		// The number and the text go in the body, never in a URL that
		// proxies and access logs keep.
		return nil, fmt.Errorf("sms: http method %q: want POST or PUT", o.Method)
	}
	if o.Body == "" {
		return nil, errors.New("sms: http: a body template is required (with {{.To}} and {{.Text}})")
	}
	body, err := parseBody(o.Body)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	for i, hd := range o.Headers {
		name := http.CanonicalHeaderKey(strings.TrimSpace(hd.Name))
		if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == ':' || r > '~' }) {
			return nil, fmt.Errorf("sms: http header %d: %q is not a header name", i, hd.Name)
		}
		v := hd.Value
		if strings.ContainsFunc(v, unicode.IsControl) {
			// The value is not repeated: it may be a token.
			return nil, fmt.Errorf("sms: http header %s: the value holds control characters", name)
		}
		h.Add(name, v)
	}
	ct := o.ContentType
	if ct == "" {
		ct = "application/x-www-form-urlencoded"
		if strings.HasPrefix(strings.TrimSpace(o.Body), "{") {
			ct = "application/json"
		}
	}
	g := &HTTP{method: method, u: u, headers: h, body: body, contentType: ct, timeout: o.Timeout, client: o.Client}
	if g.timeout <= 0 {
		g.timeout = DefaultTimeout
	}
	if g.client == nil {
		g.client = newClient()
	}
	if _, err := g.render(sampleMessage); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *HTTP) render(m sms.Message) ([]byte, error) {
	var b bytes.Buffer
	if err := g.body.Execute(&b, struct{ To, Text string }{m.To, m.Text}); err != nil {
		// Template errors may quote the data: say only that it failed.
		return nil, errors.New("sms: http body template does not render (it may use only .To, .Text, json and urlquery)")
	}
	return b.Bytes(), nil
}

// Send renders the body for m and sends the request; any 2xx is sent.
func (g *HTTP) Send(ctx context.Context, m sms.Message) error {
	body, err := g.render(m)
	if err != nil {
		return &sendError{msg: "http: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, g.method, g.u.String(), bytes.NewReader(body))
	if err != nil {
		return &sendError{msg: "http: cannot build the request"}
	}
	for k, v := range g.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", g.contentType)
	status, _, err := do(ctx, g.client, g.timeout, req)
	if err != nil {
		return transportError(ctx, "sms provider", g.u, err)
	}
	if status < 200 || status > 299 {
		return &StatusError{Gateway: "sms provider at " + endpoint(g.u), Status: status}
	}
	return nil
}

// Interface guards.
var _ sms.Sender = (*HTTP)(nil)
