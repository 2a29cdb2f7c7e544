// Package prometheus counts the events of reservation Clients as Prometheus
// metrics. It reads them from the Client's event hook, Options.OnEvent:
//
//	m, err := prometheus.New(registry, nil)
//	...
//	c, err := reservation.New(addr, &reservation.Options{OnEvent: m.Observe})
//
// Hook(next) returns a hook that records the event and then calls a hook of
// your own. One Metrics may serve several Clients: give each the same hook.
// Events reach it from each Client's event goroutine, a moment after they
// happen; Close delivers the last ones before it returns.
//
// # Metrics
//
// Everything is registered on the prometheus.Registerer given to New. To
// add labels or a prefix, wrap it (prometheus.WrapRegistererWith,
// prometheus.WrapRegistererWithPrefix).
//
//	reservation_acquired_total           counter    acquisitions, by TryLock or Lock
//	reservation_refused_total            counter    TryLock calls refused; label reason
//	reservation_lock_wait_seconds        histogram  how long Lock waited for its acquisition
//	reservation_released_total           counter    releases by the holder or by Close
//	reservation_held_seconds             histogram  how long each released reservation was held
//	reservation_force_released_total     counter    reservations broken by ForceRelease
//	reservation_lost_total               counter    losses; label cause
//	reservation_renewals_total           counter    renewals: one per reservation extended
//	reservation_renew_round_trip_seconds histogram  round trips of the heartbeat's renewals
//	reservation_renew_batch_size         histogram  reservations extended by each round trip
//	reservation_redis_errors_total       counter    calls to Redis that failed
//	reservation_server_failures_total    counter    quorum mode: a server failed, the majority went on
//
// A round trip of the heartbeat renews every reservation due, in one
// pipeline: reservation_renewals_total counts the reservations, and the
// two renew histograms count the round trips (their _sum and _count give
// the mean latency and the mean batch). The sum of the batch sizes is the
// number of renewals.
//
// Lock's wait is counted for Lock only (TryLock does not wait). ForceRelease
// does not know how long the reservation was held: it is counted apart,
// and the holder's Client counts the loss (cause "foreign").
//
// # Labels
//
// reason, of reservation_refused_total:
//
//	held           someone holds the resource, or Lock callers queue for it
//	restart-guard  the restart guard holds acquisitions back
//	late           the reply came back after the local deadline, and the key was given back
//
// cause, of reservation_lost_total: a reservation.LossCause (foreign,
// deadline, redis-error, quorum; see there).
//
// resource: off by default. Resource names are often unbounded (one per
// job, per customer, per file), and each value of a label is a time series
// of its own: a label of raw names could swamp the Prometheus server.
// Options.Resource turns the label on, on every metric that concerns one
// resource (all but the renew histograms and the error counters), with the
// value that it maps each name to. Map them to a small set: a name's
// kind, or "other" for names you do not know. Use the identity only when
// the names are few and fixed.
//
// With the resource label off, every series (each value of reason and
// cause among them) is there at zero from the start, so that rate() sees
// the first event.
package prometheus

import (
	"errors"
	"slices"

	prom "github.com/prometheus/client_golang/prometheus"

	"github.com/redis-reservation/reservation"
)

// Options configure New. A nil *Options is the zero value: no resource
// label.
type Options struct {
	// Resource, when not nil, turns the resource label on, with the value
	// it returns for each resource name. Return few distinct values: see
	// the package documentation. Default nil: no resource label.
	Resource func(resource string) string
}

// The buckets of the histograms, in seconds and in reservations.
var (
	waitBuckets      = []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600}
	heldBuckets      = []float64{.1, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 24 * 3600}
	roundTripBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	batchBuckets     = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}
)

// The values of the reason label.
const (
	reasonHeld  = "held"
	reasonGuard = "restart-guard"
	reasonLate  = "late"
)

// causes are the values of the cause label.
var causes = []reservation.LossCause{reservation.LossForeign, reservation.LossDeadline,
	reservation.LossRedisError, reservation.LossQuorum}

// Metrics records the events of reservation Clients. Its methods are safe
// for concurrent use.
type Metrics struct {
	resource func(string) string

	acquired, refused, released, forced, lost, renewals *prom.CounterVec
	wait, held                                          *prom.HistogramVec
	roundTrip, batch                                    prom.Histogram
	redisErrors, serverFailures                         prom.Counter
}

// New returns Metrics registered on reg. It fails when reg is nil or
// refuses a metric: one of the same name is there already. One Metrics
// serves any number of Clients; a second one on the same registry needs
// the registry wrapped with a prefix.
func New(reg prom.Registerer, opt *Options) (*Metrics, error) {
	if reg == nil {
		return nil, errors.New("reservation/metrics/prometheus: New: nil Registerer")
	}
	if opt == nil {
		opt = &Options{}
	}
	m := &Metrics{resource: opt.Resource}
	var res []string
	if m.resource != nil {
		res = []string{"resource"}
	}
	counter := func(name, help string, labels ...string) *prom.CounterVec {
		return prom.NewCounterVec(prom.CounterOpts{Name: name, Help: help}, slices.Concat(res, labels))
	}
	histogram := func(name, help string, buckets []float64) *prom.HistogramVec {
		return prom.NewHistogramVec(prom.HistogramOpts{Name: name, Help: help, Buckets: buckets}, res)
	}
	m.acquired = counter("reservation_acquired_total", "Reservations acquired, by TryLock or Lock.")
	m.refused = counter("reservation_refused_total", "TryLock calls refused, by reason.", "reason")
	m.wait = histogram("reservation_lock_wait_seconds", "How long Lock waited for the reservation it acquired.", waitBuckets)
	m.released = counter("reservation_released_total", "Reservations released by their holder or by Close.")
	m.held = histogram("reservation_held_seconds", "How long each released reservation was held.", heldBuckets)
	m.forced = counter("reservation_force_released_total", "Reservations broken by ForceRelease.")
	m.lost = counter("reservation_lost_total", "Reservations lost, by cause.", "cause")
	m.renewals = counter("reservation_renewals_total", "Renewals: one per reservation extended.")
	m.roundTrip = prom.NewHistogram(prom.HistogramOpts{Name: "reservation_renew_round_trip_seconds",
		Help: "Round trips of the heartbeat's renewals, each renewing a batch of reservations.", Buckets: roundTripBuckets})
	m.batch = prom.NewHistogram(prom.HistogramOpts{Name: "reservation_renew_batch_size",
		Help: "Reservations extended by each round trip of the heartbeat's renewals.", Buckets: batchBuckets})
	m.redisErrors = prom.NewCounter(prom.CounterOpts{Name: "reservation_redis_errors_total", Help: "Calls to Redis that failed."})
	m.serverFailures = prom.NewCounter(prom.CounterOpts{Name: "reservation_server_failures_total",
		Help: "Quorum mode: failures of one server that the majority went on without."})
	for _, c := range []prom.Collector{m.acquired, m.refused, m.wait, m.released, m.held, m.forced, m.lost,
		m.renewals, m.roundTrip, m.batch, m.redisErrors, m.serverFailures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	if m.resource == nil {
		for _, v := range []*prom.CounterVec{m.acquired, m.released, m.forced, m.renewals} {
			v.WithLabelValues()
		}
		m.wait.WithLabelValues()
		m.held.WithLabelValues()
		for _, r := range []string{reasonHeld, reasonGuard, reasonLate} {
			m.refused.WithLabelValues(r)
		}
		for _, c := range causes {
			m.lost.WithLabelValues(string(c))
		}
	}
	return m, nil
}

// Observe records e. Put it, or Hook's result, in the Options.OnEvent of
// each Client.
func (m *Metrics) Observe(e reservation.Event) {
	switch e.Kind {
	case reservation.EventAcquired:
		m.acquired.WithLabelValues(m.labels(e)...).Inc()
		if e.Duration > 0 { // Lock's wait; zero for TryLock
			m.wait.WithLabelValues(m.labels(e)...).Observe(e.Duration.Seconds())
		}
	case reservation.EventRefused:
		m.refused.WithLabelValues(m.labels(e, reason(e.Err))...).Inc()
	case reservation.EventReleased:
		if e.Token == 0 { // ForceRelease, which knows neither token nor age
			m.forced.WithLabelValues(m.labels(e)...).Inc()
			return
		}
		m.released.WithLabelValues(m.labels(e)...).Inc()
		m.held.WithLabelValues(m.labels(e)...).Observe(e.Duration.Seconds())
	case reservation.EventLost:
		m.lost.WithLabelValues(m.labels(e, string(e.Cause))...).Inc()
	case reservation.EventExtended:
		m.renewals.WithLabelValues(m.labels(e)...).Inc()
		if e.Batch > 0 { // the round trip's first event: counted once
			m.roundTrip.Observe(e.Duration.Seconds())
			m.batch.Observe(float64(e.Batch))
		}
	case reservation.EventRedisError:
		m.redisErrors.Inc()
	case reservation.EventServerFailed:
		m.serverFailures.Inc()
	}
}

// Hook returns an OnEvent hook that records each event, then passes it to
// next when next is not nil.
func (m *Metrics) Hook(next func(reservation.Event)) func(reservation.Event) {
	if next == nil {
		return m.Observe
	}
	return func(e reservation.Event) {
		m.Observe(e)
		next(e)
	}
}

// labels returns the label values of a metric of e: the resource's, when
// the label is on, then extra.
func (m *Metrics) labels(e reservation.Event, extra ...string) []string {
	if m.resource == nil {
		return extra
	}
	return append([]string{m.resource(e.Resource)}, extra...)
}

// reason returns the reason label of a refusal whose error is err.
func reason(err error) string {
	var nerr *reservation.NotAcquiredError
	switch {
	case errors.As(err, &nerr) && nerr.Late:
		return reasonLate
	case errors.Is(err, reservation.ErrRestartGuard):
		return reasonGuard
	}
	return reasonHeld
}
