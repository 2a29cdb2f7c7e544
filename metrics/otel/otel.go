// Package otel records the events of reservation Clients as OpenTelemetry
// metrics. It reads them from the Client's event hook, Options.OnEvent:
//
//	m, err := otel.New(meterProvider, nil)
//	...
//	c, err := reservation.New(addr, &reservation.Options{OnEvent: m.Observe})
//
// Hook(next) returns a hook that records the event and then calls a hook of
// your own. One Metrics may serve several Clients: give each the same hook.
// Events reach it from each Client's event goroutine, a moment after they
// happen; Close delivers the last ones before it returns.
//
// # Instruments
//
// They are made by the Meter of the MeterProvider given to New, named
// after this package's import path (Scope).
//
//	reservation.acquired                    counter    {reservation}  acquisitions, by TryLock or Lock
//	reservation.refused                     counter    {call}         TryLock calls refused; attribute reservation.reason
//	reservation.lock.wait.duration          histogram  s              how long Lock waited for its acquisition
//	reservation.released                    counter    {reservation}  releases by the holder or by Close
//	reservation.held.duration               histogram  s              how long each released reservation was held
//	reservation.force_released              counter    {reservation}  reservations broken by ForceRelease
//	reservation.lost                        counter    {reservation}  losses; attribute reservation.cause
//	reservation.renewals                    counter    {renewal}      renewals: one per reservation extended
//	reservation.renew.round_trip.duration   histogram  s              round trips of the heartbeat's renewals
//	reservation.renew.batch.size            histogram  {reservation}  reservations extended by each round trip
//	reservation.redis.errors                counter    {error}        calls to Redis that failed
//	reservation.server.failures             counter    {failure}      quorum mode: a server failed, the majority went on
//
// A round trip of the heartbeat renews every reservation due, in one
// pipeline: reservation.renewals counts the reservations, and the two renew
// histograms count the round trips. The sum of the batch sizes is the
// number of renewals.
//
// Lock's wait is recorded for Lock only (TryLock does not wait).
// ForceRelease does not know how long the reservation was held: it is
// counted apart, and the holder's Client counts the loss (cause
// "foreign").
//
// # Attributes
//
// reservation.reason, of reservation.refused:
//
//	held           someone holds the resource, or Lock callers queue for it
//	restart-guard  the restart guard holds acquisitions back
//	late           the reply came back after the local deadline, and the key was given back
//
// reservation.cause, of reservation.lost: a reservation.LossCause (foreign,
// deadline, redis-error, quorum; see there).
//
// reservation.resource: off by default. Resource names are often unbounded
// (one per job, per customer, per file), and each value of an attribute is
// a time series of its own. Options.Resource turns the attribute on, on
// every instrument that concerns one resource (all but the renew
// histograms and the error counters), with the value that it maps each
// name to. Map them to a small set: a name's kind, or "other" for names
// you do not know. Use the identity only when the names are few and fixed.
package otel

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/redis-reservation/reservation"
)

// Scope is the name of the Meter that makes the instruments: this
// package's import path.
const Scope = "github.com/redis-reservation/reservation/metrics/otel"

// Options configure New. A nil *Options is the zero value: no resource
// attribute.
type Options struct {
	// Resource, when not nil, turns the reservation.resource attribute
	// on, with the value it returns for each resource name. Return few
	// distinct values: see the package documentation. Default nil: no
	// resource attribute.
	Resource func(resource string) string
}

// The buckets of the histograms, in seconds and in reservations.
var (
	waitBuckets      = []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600}
	heldBuckets      = []float64{.1, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 24 * 3600}
	roundTripBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	batchBuckets     = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}
)

// Metrics records the events of reservation Clients. Its methods are safe
// for concurrent use.
type Metrics struct {
	resource func(string) string

	acquired, refused, released, forced, lost, renewals, redisErrors, serverFailures metric.Int64Counter
	wait, held, roundTrip                                                            metric.Float64Histogram
	batch                                                                            metric.Int64Histogram
}

// New returns Metrics whose instruments are made by provider's Meter named
// Scope. It fails when provider is nil or refuses an instrument.
func New(provider metric.MeterProvider, opt *Options) (*Metrics, error) {
	if provider == nil {
		return nil, errors.New("reservation/metrics/otel: New: nil MeterProvider")
	}
	if opt == nil {
		opt = &Options{}
	}
	meter := provider.Meter(Scope)
	m := &Metrics{resource: opt.Resource}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	seconds := func(name, desc string, buckets []float64) metric.Float64Histogram {
		h, err := meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(buckets...))
		errs = append(errs, err)
		return h
	}
	m.acquired = counter("reservation.acquired", "{reservation}", "Reservations acquired, by TryLock or Lock.")
	m.refused = counter("reservation.refused", "{call}", "TryLock calls refused, by reason.")
	m.wait = seconds("reservation.lock.wait.duration", "How long Lock waited for the reservation it acquired.", waitBuckets)
	m.released = counter("reservation.released", "{reservation}", "Reservations released by their holder or by Close.")
	m.held = seconds("reservation.held.duration", "How long each released reservation was held.", heldBuckets)
	m.forced = counter("reservation.force_released", "{reservation}", "Reservations broken by ForceRelease.")
	m.lost = counter("reservation.lost", "{reservation}", "Reservations lost, by cause.")
	m.renewals = counter("reservation.renewals", "{renewal}", "Renewals: one per reservation extended.")
	m.roundTrip = seconds("reservation.renew.round_trip.duration",
		"Round trips of the heartbeat's renewals, each renewing a batch of reservations.", roundTripBuckets)
	var err error
	m.batch, err = meter.Int64Histogram("reservation.renew.batch.size", metric.WithUnit("{reservation}"),
		metric.WithDescription("Reservations extended by each round trip of the heartbeat's renewals."),
		metric.WithExplicitBucketBoundaries(batchBuckets...))
	errs = append(errs, err)
	m.redisErrors = counter("reservation.redis.errors", "{error}", "Calls to Redis that failed.")
	m.serverFailures = counter("reservation.server.failures", "{failure}",
		"Quorum mode: failures of one server that the majority went on without.")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// Observe records e. Put it, or Hook's result, in the Options.OnEvent of
// each Client.
func (m *Metrics) Observe(e reservation.Event) {
	ctx := context.Background()
	switch e.Kind {
	case reservation.EventAcquired:
		m.acquired.Add(ctx, 1, m.attrs(e))
		if e.Duration > 0 { // Lock's wait; zero for TryLock
			m.wait.Record(ctx, e.Duration.Seconds(), m.attrs(e))
		}
	case reservation.EventRefused:
		m.refused.Add(ctx, 1, m.attrs(e, attribute.String("reservation.reason", reason(e.Err))))
	case reservation.EventReleased:
		if e.Token == 0 { // ForceRelease, which knows neither token nor age
			m.forced.Add(ctx, 1, m.attrs(e))
			return
		}
		m.released.Add(ctx, 1, m.attrs(e))
		m.held.Record(ctx, e.Duration.Seconds(), m.attrs(e))
	case reservation.EventLost:
		m.lost.Add(ctx, 1, m.attrs(e, attribute.String("reservation.cause", string(e.Cause))))
	case reservation.EventExtended:
		m.renewals.Add(ctx, 1, m.attrs(e))
		if e.Batch > 0 { // the round trip's first event: counted once
			m.roundTrip.Record(ctx, e.Duration.Seconds())
			m.batch.Record(ctx, int64(e.Batch))
		}
	case reservation.EventRedisError:
		m.redisErrors.Add(ctx, 1)
	case reservation.EventServerFailed:
		m.serverFailures.Add(ctx, 1)
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

// attrs returns the attributes of a measurement of e: the resource's, when
// the attribute is on, then extra.
func (m *Metrics) attrs(e reservation.Event, extra ...attribute.KeyValue) metric.MeasurementOption {
	if m.resource != nil {
		extra = append(extra, attribute.String("reservation.resource", m.resource(e.Resource)))
	}
	return metric.WithAttributes(extra...)
}

// The values of the reason attribute.
const (
	reasonHeld  = "held"
	reasonGuard = "restart-guard"
	reasonLate  = "late"
)

// reason returns the reason attribute of a refusal whose error is err.
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
