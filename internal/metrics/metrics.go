package metrics

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
)

// Transports label the verify metrics.
const (
	NATS = "nats"
	HTTP = "http"
)

// Metrics holds enrollgate's metrics in a registry of its own (no global
// state): one per process.
type Metrics struct {
	reg             *prometheus.Registry
	verdicts        *prometheus.CounterVec
	verifySeconds   *prometheus.HistogramVec
	throttled       *prometheus.CounterVec
	appendSeconds   prometheus.Histogram
	appendConflicts prometheus.Counter
	lockouts        prometheus.Counter
	alerts          *prometheus.CounterVec
}

// Probes are read at every scrape: the consumers' lag and the read model.
type Probes struct {
	// Pending returns how many events a durable consumer has not yet
	// handled.
	Pending func(ctx context.Context, durable string) (uint64, error)
	// Consumers maps a consumer label (saga, alert publisher, projections)
	// to its durable's name.
	Consumers map[string]string
	// ReadModelSeq is the last stream sequence the read model applied.
	ReadModelSeq func() uint64
}

// latencyBuckets span a verify or an append: 0.5 ms to 5 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2.5, 11)

// New returns the metrics of one process, reporting version as its build.
func New(version string, probes Probes) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enrollgate_verify_verdicts_total",
			Help: "Verify verdicts, by reason (ok for a successful enrollment) and transport.",
		}, []string{"reason", "transport"}),
		verifySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "enrollgate_verify_duration_seconds", Help: "Time to decide a verify, its event stored, by transport.",
			Buckets: latencyBuckets,
		}, []string{"transport"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enrollgate_throttled_attempts_total",
			Help: "Attempts refused because their source is throttled, by transport.",
		}, []string{"transport"}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "enrollgate_event_append_duration_seconds", Help: "Time to append one event to the event log.",
			Buckets: latencyBuckets,
		}),
		appendConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "enrollgate_event_append_conflicts_total",
			Help: "Appends refused because another writer appended to the site first (then decided again).",
		}),
		lockouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "enrollgate_lockouts_total",
			Help: "Passcodes disabled after too many failed attempts, as handled by this process's alert publisher.",
		}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enrollgate_alerts_published_total", Help: "Security alerts handed to ENROLLGATE_ALERTS, by kind.",
		}, []string{"kind"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "enrollgate_build_info", Help: "The build: always 1, with its version and Go version as labels.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	m.reg.MustRegister(m.verdicts, m.verifySeconds, m.throttled, m.appendSeconds, m.appendConflicts, m.lockouts,
		m.alerts, build, probeCollector{probes},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Verifier is what verify is asked through.
type Verifier interface {
	VerifyPasscode(ctx context.Context, cmd handlers.VerifyPasscode) (handlers.VerifyResult, error)
}

// Verify counts the verdicts and latencies of v, asked through transport.
func (m *Metrics) Verify(v Verifier, transport string) Verifier {
	return verifier{v: v, m: m, transport: transport}
}

type verifier struct {
	v         Verifier
	m         *Metrics
	transport string
}

func (c verifier) VerifyPasscode(ctx context.Context, cmd handlers.VerifyPasscode) (handlers.VerifyResult, error) {
	start := time.Now()
	res, err := c.v.VerifyPasscode(ctx, cmd)
	if err != nil {
		return res, err
	}
	c.m.verifySeconds.WithLabelValues(c.transport).Observe(time.Since(start).Seconds())
	reason := string(res.Reason)
	if res.OK {
		reason = "ok"
	}
	c.m.verdicts.WithLabelValues(reason, c.transport).Inc()
	if res.Reason == domain.ReasonThrottled {
		c.m.throttled.WithLabelValues(c.transport).Inc()
	}
	return res, nil
}

// Store times the appends of s and counts their conflicts.
func (m *Metrics) Store(s handlers.EventStore) handlers.EventStore { return store{EventStore: s, m: m} }

type store struct {
	handlers.EventStore
	m *Metrics
}

func (s store) Append(ctx context.Context, e events.Event, expectedSeq uint64) (uint64, error) {
	start := time.Now()
	seq, err := s.EventStore.Append(ctx, e, expectedSeq)
	switch {
	case err == nil:
		s.m.appendSeconds.Observe(time.Since(start).Seconds())
	case errors.Is(err, handlers.ErrConflict):
		s.m.appendConflicts.Inc()
	}
	return seq, err
}

// Handler is a consumer's handler of one stored event.
type Handler func(ctx context.Context, rec events.Record) error

// AlertPublisher counts the alerts that h, the alert publisher's handler,
// has handled, by the kind kindOf gives an event, and the lockouts among them.
func (m *Metrics) AlertPublisher(h Handler, kindOf func(events.Event) (string, bool), lockoutKind string) Handler {
	return func(ctx context.Context, rec events.Record) error {
		if err := h(ctx, rec); err != nil {
			return err
		}
		if kind, ok := kindOf(rec.Event); ok {
			m.alerts.WithLabelValues(kind).Inc()
			if kind == lockoutKind {
				m.lockouts.Inc()
			}
		}
		return nil
	}
}

// AlertPublished counts an alert of kind published outside the lockout path
// (event_log_tampered).
func (m *Metrics) AlertPublished(kind string) { m.alerts.WithLabelValues(kind).Inc() }

// probeCollector reads the probes at scrape time, so that a scrape shows the
// lag and sequence of that moment.
type probeCollector struct{ p Probes }

var (
	pendingDesc = prometheus.NewDesc("enrollgate_consumer_pending_events",
		"Events of ENROLLGATE_EVENTS a consumer has not yet handled.", []string{"consumer"}, nil)
	readModelDesc = prometheus.NewDesc("enrollgate_read_model_sequence",
		"The last stream sequence this process's read model applied.", nil, nil)
)

func (c probeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- readModelDesc
}

func (c probeCollector) Collect(ch chan<- prometheus.Metric) {
	if c.p.Pending != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for label, durable := range c.p.Consumers {
			n, err := c.p.Pending(ctx, durable)
			if err != nil {
				ch <- prometheus.NewInvalidMetric(pendingDesc, err)
				continue
			}
			ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(n), label)
		}
	}
	if c.p.ReadModelSeq != nil {
		ch <- prometheus.MustNewConstMetric(readModelDesc, prometheus.GaugeValue, float64(c.p.ReadModelSeq()))
	}
}
