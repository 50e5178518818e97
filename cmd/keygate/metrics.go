package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/mail"
	"github.com/keygate/keygate/authn/store"
	"github.com/keygate/keygate/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// demoMetricsListen is where `keygate demo` serves /metrics.
const demoMetricsListen = "127.0.0.1:9092"

// observability is the app's metrics and access log.
//
// The metric families exist whether or not metrics.listen is set: counting
// costs an atomic add, and the parts that count (the handler, the mail
// sender, regulation) need not know whether anyone scrapes.
type observability struct {
	registry *prometheus.Registry
	metrics  *web.Metrics
	access   *web.AccessLog // nil = access lines off
	// optional: failing to listen on metrics.listen only warns (the demo,
	// whose fixed address may be taken by another demo); serve fails.
	optional bool
}

// initMetrics creates the registry with keygate's families, the gauges
// read at scrape time (sessions in memory, store size) and the Go runtime
// and process collectors. It runs once the store and sessions are open.
func (a *app) initMetrics() error {
	reg := prometheus.NewRegistry()
	m, err := web.NewMetrics(reg, factorKinds...)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_sessions_active",
			Help: "Sessions held in memory (live ones, and expired ones until the next sweep).",
		}, func() float64 { return float64(a.sessions.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "keygate_build_info",
			Help:        "Always 1; the version label says which keygate runs.",
			ConstLabels: prometheus.Labels{"version": version},
		}, func() float64 { return 1 }),
	}
	if sz, ok := a.kv.(store.Sizer); ok {
		cs = append(cs, &storeSize{read: sz.StorageSize})
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	// The version in force: the policy store tells policyGauge at every
	// change; the one loaded at start is set here, the gauge being new.
	if a.policies != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if v, err := a.policies.Current(ctx); err == nil {
			m.SetPolicyVersion(int64(v.Version))
		}
	}
	a.obs.registry, a.obs.metrics = reg, m
	return nil
}

// storeSize is keygate_store_size_bytes{part}: the backend's own parts
// (Badger: lsm, vlog; PostgreSQL: its tables), cached for a few seconds,
// since reading them is a directory walk or a query and several scrapers
// (or one scraping often) must not repeat it.
type storeSize struct {
	read func(context.Context) ([]store.SizePart, error)

	mu    sync.Mutex
	at    time.Time
	parts []store.SizePart
}

var storeSizeDesc = prometheus.NewDesc("keygate_store_size_bytes",
	"Bytes the store takes, by part (Badger: lsm tables, vlog value log; PostgreSQL: its tables).", []string{"part"}, nil)

func (s *storeSize) Describe(ch chan<- *prometheus.Desc) { ch <- storeSizeDesc }

func (s *storeSize) Collect(ch chan<- prometheus.Metric) {
	for _, p := range s.get() {
		ch <- prometheus.MustNewConstMetric(storeSizeDesc, prometheus.GaugeValue, float64(p.Bytes), p.Part)
	}
}

func (s *storeSize) get() []store.SizePart {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.at) > 10*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if parts, err := s.read(ctx); err == nil {
			s.parts = parts
		}
		s.at = time.Now()
	}
	return s.parts
}

// startAccessLog turns the access lines on when log.access says so; they go
// to w (where the other log lines go) in log.format.
func (a *app) startAccessLog(w io.Writer) {
	if a.cfg.Log.Access {
		a.obs.access = web.NewAccessLog(w, a.cfg.Log.Format)
	}
}

// startMetrics serves /metrics on metrics.listen (nothing when it is
// empty) until stop is called. The metrics have their own listener so they
// are never exposed with the gateway.
func (a *app) startMetrics(listen string) (addr string, stop func(), err error) {
	nop := func() {}
	if listen == "" || a.obs.registry == nil {
		return "", nop, nil
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		err = fmt.Errorf("metrics.listen %s: %w", listen, err)
		if a.obs.optional {
			a.log.Warn("metrics are not served", "err", err)
			return "", nop, nil
		}
		return "", nop, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.obs.registry, promhttp.HandlerOpts{
		Registry:            a.obs.registry, // counts its own scrape errors
		ErrorLog:            slogPrinter{a},
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics listener", "err", err)
		}
	}()
	a.log.Info("metrics are served", "url", "http://"+ln.Addr().String()+"/metrics")
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// slogPrinter gives promhttp's error log to the app's logger.
type slogPrinter struct{ a *app }

func (p slogPrinter) Println(v ...any) { p.a.log.Error("metrics", "err", fmt.Sprint(v...)) }

// runAccessLog flushes the access lines every second until ctx ends.
func (o *observability) runAccessLog(ctx context.Context) {
	if o.access != nil {
		o.access.Run(ctx, time.Second)
	}
}

// flush writes out buffered access lines (shutdown).
func (o *observability) flush() error {
	if o.access == nil {
		return nil
	}
	return o.access.Flush()
}

// countingSender counts every mail handed over (codes, notices) as sent or
// failed.
type countingSender struct {
	next mail.Sender
	m    *web.Metrics
}

func (s countingSender) Send(ctx context.Context, msg mail.Message) error {
	err := s.next.Send(ctx, msg)
	s.m.Email(err)
	return err
}

// lockoutMetrics counts the locks the regulator starts, by scope: the one
// event of authn.Events that metrics count.
type lockoutMetrics struct {
	authn.NoEvents
	m *web.Metrics
}

func (l lockoutMetrics) LockedOut(kind string) {
	scope := web.LockoutUser
	if kind == authn.LockoutIP {
		scope = web.LockoutIP
	}
	l.m.Lockout(scope)
}

// Interface guards.
var (
	_ mail.Sender  = countingSender{}
	_ authn.Events = lockoutMetrics{}
)
