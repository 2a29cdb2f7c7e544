package otel_test

import (
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redistest"
	reservationotel "github.com/redis-reservation/reservation/metrics/otel"
)

// newClient returns a Client on url with a TTL of ttl and hook, closed at
// the end of the test.
func newClient(t *testing.T, url, by string, ttl time.Duration, hook func(reservation.Event)) *reservation.Client {
	t.Helper()
	c, err := reservation.New(url, &reservation.Options{By: by, TTL: ttl, OnEvent: hook,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newMetrics returns Metrics on a MeterProvider read by the returned
// ManualReader.
func newMetrics(t *testing.T, opt *reservationotel.Options) (*reservationotel.Metrics, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { provider.Shutdown(t.Context()) })
	m, err := reservationotel.New(provider, opt)
	if err != nil {
		t.Fatal(err)
	}
	return m, reader
}

// read is what a reader collects, by instrument name.
type read map[string]metricdata.Metrics

// collect returns what reader collects now.
func collect(t *testing.T, reader *sdkmetric.ManualReader) read {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	r := make(read)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != reservationotel.Scope {
			t.Errorf("scope %q; want %q", sm.Scope.Name, reservationotel.Scope)
		}
		for _, m := range sm.Metrics {
			r[m.Name] = m
		}
	}
	return r
}

// count returns the value of counter name with exactly attrs, -1 when
// absent.
func (r read) count(name string, attrs ...attribute.KeyValue) int64 {
	sum, ok := r[name].Data.(metricdata.Sum[int64])
	if !ok {
		return -1
	}
	want := attribute.NewSet(attrs...)
	for _, dp := range sum.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Value
		}
	}
	return -1
}

// total returns the sum of counter name over its attributes.
func (r read) total(name string) int64 {
	sum, _ := r[name].Data.(metricdata.Sum[int64])
	var n int64
	for _, dp := range sum.DataPoints {
		n += dp.Value
	}
	return n
}

// histogram returns the count and sum of histogram name with exactly
// attrs (count 0 when absent).
func (r read) histogram(name string, attrs ...attribute.KeyValue) (uint64, float64) {
	want := attribute.NewSet(attrs...)
	switch h := r[name].Data.(type) {
	case metricdata.Histogram[float64]:
		for _, dp := range h.DataPoints {
			if dp.Attributes.Equals(&want) {
				return dp.Count, dp.Sum
			}
		}
	case metricdata.Histogram[int64]:
		for _, dp := range h.DataPoints {
			if dp.Attributes.Equals(&want) {
				return dp.Count, float64(dp.Sum)
			}
		}
	}
	return 0, 0
}

// eventually waits up to 3 s for cond on what reader collects.
func eventually(t *testing.T, reader *sdkmetric.ManualReader, what string, cond func(read) bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond(collect(t, reader)) {
		if time.Now().After(deadline) {
			t.Fatalf("not so after 3s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	job   = attribute.String("reservation.resource", "job")
	other = attribute.String("reservation.resource", "other")
)

// The life of reservations, as the instruments record it: acquisitions, a
// refusal, a wait, releases, renewals and a loss, with the resource
// attribute mapped to a kind of name.
func TestMetrics(t *testing.T) {
	m, reader := newMetrics(t, &reservationotel.Options{Resource: func(r string) string {
		if strings.HasPrefix(r, "job-") {
			return "job"
		}
		return "other"
	}})
	var mine atomic.Int64 // the user's own hook, chained
	a := newClient(t, redisURL, "a", time.Second, m.Hook(func(reservation.Event) { mine.Add(1) }))
	b := newClient(t, redisURL, "b", time.Second, m.Observe)
	ctx := t.Context()

	ra, err := a.TryLock(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryLock(ctx, "job-1"); !errors.Is(err, reservation.ErrNotAcquired) {
		t.Fatalf("TryLock of a held resource = %v", err)
	}
	const wait = 150 * time.Millisecond
	got := make(chan *reservation.Reservation, 1)
	go func() {
		r, err := b.Lock(ctx, "job-1")
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	time.Sleep(wait)
	if err := ra.Release(ctx); err != nil {
		t.Fatal(err)
	}
	rb := <-got
	if rb == nil {
		t.FailNow()
	}
	// Two more, at once: renewed in one round trip.
	if _, err := a.TryLock(ctx, "other-1", reservation.With("other-2")); err != nil {
		t.Fatal(err)
	}
	// A few heartbeats (every TTL/3), then a loss: the key deleted by
	// another client.
	time.Sleep(800 * time.Millisecond)
	ropt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(ropt)
	defer rdb.Close()
	if err := rdb.Del(ctx, rb.Key()).Err(); err != nil {
		t.Fatal(err)
	}
	foreign := attribute.String("reservation.cause", "foreign")
	eventually(t, reader, "the loss recorded", func(r read) bool { return r.count("reservation.lost", foreign, job) == 1 })
	// Close releases other-1 and other-2, and delivers every event.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	r := collect(t, reader)
	counters := []struct {
		name  string
		attrs []attribute.KeyValue
		want  int64
	}{
		{"reservation.acquired", []attribute.KeyValue{job}, 2},
		{"reservation.acquired", []attribute.KeyValue{other}, 2},
		{"reservation.refused", []attribute.KeyValue{job, attribute.String("reservation.reason", "held")}, 1},
		{"reservation.released", []attribute.KeyValue{job}, 1},
		{"reservation.released", []attribute.KeyValue{other}, 2},
		{"reservation.lost", []attribute.KeyValue{job, foreign}, 1},
	}
	for _, c := range counters {
		if got := r.count(c.name, c.attrs...); got != c.want {
			t.Errorf("%s%v = %d; want %d", c.name, c.attrs, got, c.want)
		}
	}
	for _, name := range []string{"reservation.force_released", "reservation.redis.errors", "reservation.server.failures"} {
		if got := r.total(name); got != 0 {
			t.Errorf("%s = %d; want 0", name, got)
		}
	}
	if n, sum := r.histogram("reservation.lock.wait.duration", job); n != 1 || sum < wait.Seconds() || sum > 5 {
		t.Errorf("reservation.lock.wait.duration: count %d, sum %v; want 1 wait of %v or more", n, sum, wait)
	}
	if n, sum := r.histogram("reservation.held.duration", job); n != 1 || sum < wait.Seconds() || sum > 5 {
		t.Errorf("reservation.held.duration{job}: count %d, sum %v; want 1 holding of %v or more", n, sum, wait)
	}
	if n, _ := r.histogram("reservation.held.duration", other); n != 2 {
		t.Errorf("reservation.held.duration{other}: count %d; want 2", n)
	}
	renewals := r.total("reservation.renewals")
	trips, _ := r.histogram("reservation.renew.round_trip.duration")
	batches, batched := r.histogram("reservation.renew.batch.size")
	if renewals < 3 || trips < 1 || batches != trips || int64(batched) != renewals || trips >= uint64(renewals) {
		t.Errorf("%d renewals, %d round trips, %d batches of %v reservations in all; want the batches to add up to the renewals, in fewer round trips",
			renewals, trips, batches, batched)
	}
	for name, want := range map[string]string{"reservation.lock.wait.duration": "s", "reservation.acquired": "{reservation}",
		"reservation.renew.batch.size": "{reservation}"} {
		if got := r[name].Unit; got != want {
			t.Errorf("unit of %s = %q; want %q", name, got, want)
		}
	}
	if mine.Load() == 0 {
		t.Errorf("the chained hook got no event")
	}
}

// Without Options.Resource, no measurement has a resource attribute. A
// loss by the deadline (the server paused) and the Redis errors before it
// are recorded.
func TestMetricsWithoutResourceAttribute(t *testing.T) {
	m, reader := newMetrics(t, nil)
	srv := redistest.Start(t)
	if err := prime(srv.URL()); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, srv.URL(), "d", 500*time.Millisecond, m.Observe)
	r, err := c.TryLock(t.Context(), "job-2")
	if err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	defer srv.Resume()
	select {
	case <-r.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("not lost 3s after its server paused")
	}
	deadline := attribute.String("reservation.cause", "deadline")
	eventually(t, reader, "the loss recorded", func(r read) bool { return r.count("reservation.lost", deadline) == 1 })
	got := collect(t, reader)
	if n := got.count("reservation.acquired"); n != 1 {
		t.Errorf("reservation.acquired = %d; want 1, with no attribute", n)
	}
	if n := got.total("reservation.redis.errors"); n < 1 {
		t.Errorf("reservation.redis.errors = %d; want the failed renewals", n)
	}
	for name, m := range got {
		if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
			for _, dp := range sum.DataPoints {
				if _, ok := dp.Attributes.Value("reservation.resource"); ok {
					t.Errorf("%s has a resource attribute", name)
				}
			}
		}
	}
}

// TryLock held back by the restart guard, and ForceRelease.
func TestMetricsGuardAndForceRelease(t *testing.T) {
	m, reader := newMetrics(t, nil)
	srv := redistest.Start(t) // new: its restart guard holds acquisitions back
	c := newClient(t, srv.URL(), "g", time.Second, m.Observe)
	ctx := t.Context()
	if _, err := c.TryLock(ctx, "job"); !errors.Is(err, reservation.ErrRestartGuard) {
		t.Fatalf("TryLock on a new server = %v; want ErrRestartGuard", err)
	}
	if _, err := c.PrimeRestartGuard(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryLock(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ForceRelease(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	eventually(t, reader, "the guard, the force release and the loss recorded", func(r read) bool {
		return r.count("reservation.refused", attribute.String("reservation.reason", "restart-guard")) == 1 &&
			r.count("reservation.force_released") == 1 &&
			r.count("reservation.lost", attribute.String("reservation.cause", "foreign")) == 1
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	r := collect(t, reader)
	if n := r.total("reservation.released"); n != 0 {
		t.Errorf("reservation.released = %d; want 0: a force release is not a release by the holder", n)
	}
	if n, _ := r.histogram("reservation.held.duration"); n != 0 {
		t.Errorf("reservation.held.duration: count %d; want 0", n)
	}
}

func TestNewNil(t *testing.T) {
	if _, err := reservationotel.New(nil, nil); err == nil {
		t.Error("New(nil) did not fail")
	}
}
