package web

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/problem"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are keygate's own Prometheus families. cmd/keygate registers them
// next to the gauges that need the concrete parts (sessions, store size)
// and the Go runtime collectors, and serves them on metrics.listen.
//
// Label values come from fixed sets (configured hosts, known factors and
// outcomes), never from what a client sends, so no request can grow the
// number of series. Every child counter is resolved once (WithLabelValues
// at set-up) and kept: the proxy path does an atomic add, not a label
// lookup.
//
// A nil *Metrics is valid and records nothing, so the handler, its tests
// and the parts wired without metrics need no checks.
type Metrics struct {
	requests   *prometheus.CounterVec
	upstream   *prometheus.HistogramVec
	upErrors   *prometheus.CounterVec
	signIns    results
	second     results
	lockouts   map[string]prometheus.Counter
	emailsSent prometheus.Counter
	emailsFail prometheus.Counter
	policyVer  prometheus.Gauge

	mu    sync.Mutex                              // serialises writers of hosts
	hosts atomic.Pointer[map[string]*hostMetrics] // copy on write: readers take no lock
	other *hostMetrics
}

// Label values of keygate_requests_total{decision}.
type decision uint8

const (
	decAllow     decision = iota // forwarded (proxy) or vouched for (forward-auth)
	decChallenge                 // sent to sign in or to a second factor
	decDeny                      // refused by the policy
	decRefused                   // refused before the policy: unknown host, bad path, reserved prefix
	numDecisions
)

var decisionNames = [numDecisions]string{"allow", "challenge", "deny", "refused"}

func decisionOf(o policy.Outcome) decision {
	switch o {
	case policy.Allow:
		return decAllow
	case policy.Challenge:
		return decChallenge
	}
	return decDeny
}

// hostMetrics are the pre-resolved children for one host label.
type hostMetrics struct {
	decisions [numDecisions]prometheus.Counter
	latency   prometheus.Observer
	errors    prometheus.Counter
}

func (h *hostMetrics) count(d decision) {
	if h != nil {
		h.decisions[d].Inc()
	}
}

func (h *hostMetrics) upstreamError() {
	if h != nil {
		h.errors.Inc()
	}
}

// Outcomes of a sign-in or second-factor attempt.
const (
	resSuccess   = iota // proved
	resFailure          // wrong password, code or assertion; expired or used code
	resThrottled        // refused by a limit (cooldown, cap, lockout) before checking
	resError            // a technical failure
	numResults
)

var resultNames = [numResults]string{"success", "failure", "throttled", "error"}

// results are counters by factor and outcome, resolved for a fixed set of
// factors; anything else counts as "other".
type results map[string]*[numResults]prometheus.Counter

func newResults(vec *prometheus.CounterVec, factors ...string) results {
	r := results{}
	for _, f := range slices.Concat(factors, []string{"other"}) {
		var cs [numResults]prometheus.Counter
		for i, o := range resultNames {
			cs[i] = vec.WithLabelValues(f, o)
		}
		r[f] = &cs
	}
	return r
}

func (r results) add(factor string, err error) {
	cs := r[factor]
	if cs == nil {
		cs = r["other"]
	}
	cs[resultOf(err)].Inc()
}

// resultOf sorts an attempt's error the way the renderer would answer it.
func resultOf(err error) int {
	if err == nil {
		return resSuccess
	}
	if errors.Is(err, authn.ErrInvalidCredentials) {
		return resFailure
	}
	if le := (*authn.LockedError)(nil); errors.As(err, &le) {
		return resThrottled
	}
	// The owners' tables say what kind of refusal it is; a factor's own
	// errors wrap the shared refusals, so the shared tables suffice.
	p, ok := problem.Find(err, time.Time{}, problemTables()...)
	switch {
	case !ok || p.Class == problem.Internal || p.Class == problem.Unavailable:
		return resError
	case p.Class == problem.TooMany:
		return resThrottled
	}
	return resFailure
}

// Lockout scopes (keygate_lockouts_total{scope}).
const (
	LockoutUser = "user" // an account's verifier was locked
	LockoutIP   = "ip"   // a client address was locked
)

// NewMetrics creates keygate's families and registers them on reg, with a
// second-factor series for each registered factor kind (others count as
// "other", so a request naming a made-up kind cannot add series).
func NewMetrics(reg prometheus.Registerer, factorKinds ...string) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_requests_total",
			Help: "Requests for protected hosts (proxied and forward-auth) by host and decision (allow, challenge, deny, refused). Hosts that are not configured count as \"other\".",
		}, []string{"host", "decision"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "keygate_upstream_duration_seconds",
			Help: "Time from a request's arrival at the gate until its upstream's response was passed on completely (the gate's own share is microseconds), by host.",
			// Loopback apps answer in well under a millisecond; slow apps
			// and long polls in seconds.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"host"}),
		upErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_upstream_errors_total",
			Help: "Requests that found their upstream unreachable or failing (answered 502), by host.",
		}, []string{"host"}),
		policyVer: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keygate_policy_version",
			Help: "Version of the policy in force.",
		}),
	}
	signIns := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_sign_ins_total",
		Help: "First-factor sign-in attempts by factor (password, passkey) and outcome (success, failure, throttled, error).",
	}, []string{"factor", "outcome"})
	second := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_second_factor_total",
		Help: "Second-factor attempts by factor (webauthn, totp, email, recovery) and outcome (success, failure, throttled, error).",
	}, []string{"factor", "outcome"})
	lockouts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_lockouts_total",
		Help: "Lockouts imposed by brute-force regulation, by scope (user, ip).",
	}, []string{"scope"})
	emails := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_emails_total",
		Help: "Emails handed to the mail server (or outbox), by outcome (sent, failed).",
	}, []string{"outcome"})
	for _, c := range []prometheus.Collector{m.requests, m.upstream, m.upErrors, m.policyVer, signIns, second, lockouts, emails} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.signIns = newResults(signIns, policy.FactorPassword, "passkey")
	m.second = newResults(second, factorKinds...)
	m.lockouts = map[string]prometheus.Counter{}
	for _, s := range []string{LockoutUser, LockoutIP, "other"} {
		m.lockouts[s] = lockouts.WithLabelValues(s)
	}
	m.emailsSent, m.emailsFail = emails.WithLabelValues("sent"), emails.WithLabelValues("failed")
	m.hosts.Store(&map[string]*hostMetrics{})
	m.other = m.newHost("other")
	return m, nil
}

func (m *Metrics) newHost(host string) *hostMetrics {
	h := &hostMetrics{latency: m.upstream.WithLabelValues(host), errors: m.upErrors.WithLabelValues(host)}
	for i, d := range decisionNames {
		h.decisions[i] = m.requests.WithLabelValues(host, d)
	}
	return h
}

// forHost returns the children of a configured host, creating them on the
// first call. Only set-up code calls it, with hosts from the configuration,
// which is what keeps the host label bounded.
func (m *Metrics) forHost(host string) *hostMetrics {
	if m == nil {
		return nil
	}
	if h := (*m.hosts.Load())[host]; h != nil {
		return h
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := *m.hosts.Load()
	if h := cur[host]; h != nil {
		return h
	}
	h := m.newHost(host)
	next := maps.Clone(cur)
	next[host] = h
	m.hosts.Store(&next)
	return h
}

// addPolicyHosts resolves the hosts the policy names exactly: in
// forward-auth mode they have no upstream here but are configured all the
// same. Hosts a later policy adds count as "other" until a restart.
func (m *Metrics) addPolicyHosts(c *policy.Compiled) {
	if m == nil || c == nil {
		return
	}
	for _, r := range c.Source().Rules {
		for _, h := range r.Hosts {
			if !strings.Contains(h, "*") {
				m.forHost(strings.ToLower(strings.TrimSuffix(h, ".")))
			}
		}
	}
}

// lookupHost is the request-time lookup: a configured host's children, or
// "other" for any name nobody configured.
func (m *Metrics) lookupHost(host string) *hostMetrics {
	if m == nil {
		return nil
	}
	if h := (*m.hosts.Load())[host]; h != nil {
		return h
	}
	return m.other
}

// SignIn counts a first-factor attempt: factor is "password" or "passkey";
// err is what the attempt returned (nil = signed in).
func (m *Metrics) SignIn(factor string, err error) {
	if m != nil {
		m.signIns.add(factor, err)
	}
}

// SecondFactor counts a second-factor attempt of kind (webauthn, totp,
// email, recovery); err is what the verifier returned (nil = proved).
func (m *Metrics) SecondFactor(kind string, err error) {
	if m != nil {
		m.second.add(kind, err)
	}
}

// Lockout counts a lockout imposed by brute-force regulation; scope is
// LockoutUser or LockoutIP (anything else counts as "other"). authn's
// regulation gets it as a callback from cmd/keygate.
func (m *Metrics) Lockout(scope string) {
	if m == nil {
		return
	}
	c := m.lockouts[scope]
	if c == nil {
		c = m.lockouts["other"]
	}
	c.Inc()
}

// Email counts a mail handed over (err == nil) or failed.
func (m *Metrics) Email(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.emailsFail.Inc()
		return
	}
	m.emailsSent.Inc()
}

// SetPolicyVersion publishes the version of the policy in force; call it
// whenever a policy is put in force (start-up, admin edit, reload).
func (m *Metrics) SetPolicyVersion(v int64) {
	if m != nil {
		m.policyVer.Set(float64(v))
	}
}
