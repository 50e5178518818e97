package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// value reads a counter.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func newTestMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, "webauthn", "totp", "email", "recovery")
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func TestMetricsCountRequestsAndSignIns(t *testing.T) {
	m, reg := newTestMetrics(t)
	h := newHarness(t, harnessOptions{metrics: m})
	c := h.client()
	requests := func(host, decision string) float64 {
		return value(t, m.requests.WithLabelValues(host, decision))
	}

	h.do(c, http.MethodGet, "http://app.example.com/dashboard", "")      // one_factor, no session
	h.do(c, http.MethodGet, "http://nowhere.example.net/", "")           // not configured
	h.do(c, http.MethodGet, "http://app.example.com/static/app.css", "") // bypass
	if got := requests("app.example.com", "challenge"); got != 1 {
		t.Errorf("challenge = %v, want 1", got)
	}
	if got := requests("app.example.com", "allow"); got != 1 {
		t.Errorf("allow before sign-in = %v, want 1 (the bypass)", got)
	}
	if got := requests("other", "refused"); got != 1 {
		t.Errorf("other/refused = %v, want 1", got)
	}

	if resp, _ := h.login(c, testUser, "not-the-password-42", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	if resp, _ := h.login(c, testUser, testPassword, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	signIns := func(outcome string) float64 {
		return value(t, m.signIns["password"][resultIndex(t, outcome)])
	}
	if signIns("failure") != 1 || signIns("success") != 1 {
		t.Errorf("sign-ins: failure %v success %v, want 1 and 1", signIns("failure"), signIns("success"))
	}

	if resp, _ := h.do(c, http.MethodGet, "http://app.example.com/dashboard", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}
	h.do(c, http.MethodGet, "http://app.example.com/closed/x", "")
	if got := requests("app.example.com", "allow"); got != 2 {
		t.Errorf("allow = %v, want 2", got)
	}
	if got := requests("app.example.com", "deny"); got != 1 {
		t.Errorf("deny = %v, want 1", got)
	}

	// A second-factor attempt (alice has no authenticator app): counted
	// under totp, whatever its outcome.
	h.do(c, http.MethodPost, "http://app.example.com/.keygate/api/factors/totp/verify", `{"code":"000000"}`,
		withHeader("Content-Type", "application/json"))
	var totp float64
	for _, cnt := range m.second["totp"] {
		totp += value(t, cnt)
	}
	if totp != 1 {
		t.Errorf("second-factor attempts for totp = %v, want 1", totp)
	}

	// The exposition has every family; the upstream histogram saw the two
	// forwarded requests.
	m.Lockout(LockoutUser)
	m.Email(nil)
	m.SetPolicyVersion(3)
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`keygate_requests_total{decision="allow",host="app.example.com"} 2`,
		`keygate_upstream_duration_seconds_count{host="app.example.com"} 2`,
		`keygate_upstream_errors_total{host="app.example.com"} 0`,
		`keygate_sign_ins_total{factor="password",outcome="success"} 1`,
		`keygate_second_factor_total{factor="totp",`,
		`keygate_lockouts_total{scope="user"} 1`,
		`keygate_emails_total{outcome="sent"} 1`,
		`keygate_policy_version 3`,
		`keygate_requests_total{decision="allow",host="wiki.example.com"} 0`, // configured, resolved at start
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(string(body), "nowhere.example.net") {
		t.Error("an unconfigured host became a label value")
	}
}

func resultIndex(t *testing.T, name string) int {
	t.Helper()
	for i, n := range resultNames {
		if n == name {
			return i
		}
	}
	t.Fatalf("no outcome %q", name)
	return 0
}

func TestMetricsNilIsQuiet(t *testing.T) {
	var m *Metrics
	m.SignIn("password", nil)
	m.SecondFactor("totp", io.EOF)
	m.Lockout(LockoutIP)
	m.Email(io.EOF)
	m.SetPolicyVersion(1)
	m.forHost("x").count(decAllow)
	m.lookupHost("x").upstreamError()
}

func TestUpstreamErrorsCounted(t *testing.T) {
	m, _ := newTestMetrics(t)
	ln := deadAddr(t)
	h := newHarness(t, harnessOptions{metrics: m, upstreamURL: "http://" + ln, policyYAML: "default: bypass\n"})
	if resp, _ := h.do(h.client(), http.MethodGet, "http://app.example.com/x", ""); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if got := value(t, m.upErrors.WithLabelValues("app.example.com")); got != 1 {
		t.Errorf("upstream errors = %v, want 1", got)
	}
}
