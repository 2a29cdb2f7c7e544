package prometheus_test

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redistest"
	reservationprom "github.com/redis-reservation/reservation/metrics/prometheus"
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

// families is what a registry holds, by metric name.
type families map[string]*dto.MetricFamily

// gather returns what reg holds.
func gather(t *testing.T, reg prom.Gatherer) families {
	t.Helper()
	got, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fs := make(families)
	for _, f := range got {
		fs[f.GetName()] = f
	}
	return fs
}

// scrape serves reg over HTTP with promhttp, as Prometheus would scrape it,
// and parses the text with Prometheus's parser.
func scrape(t *testing.T, reg prom.Gatherer) families {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return fs
}

// metric returns the series of name whose labels are labels ("k=v"...),
// or nil.
func (fs families) metric(name string, labels ...string) *dto.Metric {
	f := fs[name]
	if f == nil {
		return nil
	}
	for _, m := range f.GetMetric() {
		var have []string
		for _, l := range m.GetLabel() {
			have = append(have, l.GetName()+"="+l.GetValue())
		}
		if strings.Join(have, ",") == strings.Join(labels, ",") {
			return m
		}
	}
	return nil
}

// count returns the value of counter name with labels, or -1 when absent.
func (fs families) count(name string, labels ...string) float64 {
	if m := fs.metric(name, labels...); m != nil {
		return m.GetCounter().GetValue()
	}
	return -1
}

// histogram returns the count and sum of histogram name with labels
// (count -1 when absent).
func (fs families) histogram(name string, labels ...string) (uint64, float64) {
	if m := fs.metric(name, labels...); m != nil {
		return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
	}
	return 1<<64 - 1, 0
}

// sum returns the sum of the values of counter name over its series.
func (fs families) sum(name string) float64 {
	total := 0.0
	for _, m := range fs[name].GetMetric() {
		total += m.GetCounter().GetValue()
	}
	return total
}

// eventually waits up to 3 s for cond on what reg holds.
func eventually(t *testing.T, reg prom.Gatherer, what string, cond func(families) bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond(gather(t, reg)) {
		if time.Now().After(deadline) {
			t.Fatalf("not so after 3s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The life of reservations, as the metrics count it: acquisitions, a
// refusal, a wait, releases, renewals and a loss, with the resource label
// mapped to a kind of name. Read from the registry, and from an HTTP
// scrape parsed as Prometheus does.
func TestMetrics(t *testing.T) {
	reg := prom.NewRegistry()
	m, err := reservationprom.New(reg, &reservationprom.Options{Resource: func(r string) string {
		if strings.HasPrefix(r, "job-") {
			return "job"
		}
		return "other"
	}})
	if err != nil {
		t.Fatal(err)
	}
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
	eventually(t, reg, "the loss counted", func(fs families) bool {
		return fs.count("reservation_lost_total", "cause=foreign", "resource=job") == 1
	})
	// Close releases other-1 and other-2, and delivers every event.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	for source, fs := range map[string]families{"registry": gather(t, reg), "scrape": scrape(t, reg)} {
		t.Run(source, func(t *testing.T) {
			counters := []struct {
				name   string
				labels []string
				want   float64
			}{
				{"reservation_acquired_total", []string{"resource=job"}, 2},
				{"reservation_acquired_total", []string{"resource=other"}, 2},
				{"reservation_refused_total", []string{"reason=held", "resource=job"}, 1},
				{"reservation_released_total", []string{"resource=job"}, 1},
				{"reservation_released_total", []string{"resource=other"}, 2},
				{"reservation_lost_total", []string{"cause=foreign", "resource=job"}, 1},
			}
			for _, c := range counters {
				if got := fs.count(c.name, c.labels...); got != c.want {
					t.Errorf("%s%v = %v; want %v", c.name, c.labels, got, c.want)
				}
			}
			for _, name := range []string{"reservation_force_released_total", "reservation_redis_errors_total",
				"reservation_server_failures_total"} {
				if got := fs.sum(name); got != 0 {
					t.Errorf("%s = %v; want 0", name, got)
				}
			}
			if n, sum := fs.histogram("reservation_lock_wait_seconds", "resource=job"); n != 1 || sum < wait.Seconds() || sum > 5 {
				t.Errorf("reservation_lock_wait_seconds: count %d, sum %v; want 1 wait of %v or more", n, sum, wait)
			}
			if n, sum := fs.histogram("reservation_held_seconds", "resource=job"); n != 1 || sum < wait.Seconds() || sum > 5 {
				t.Errorf("reservation_held_seconds{job}: count %d, sum %v; want 1 holding of %v or more", n, sum, wait)
			}
			if n, _ := fs.histogram("reservation_held_seconds", "resource=other"); n != 2 {
				t.Errorf("reservation_held_seconds{other}: count %d; want 2", n)
			}
			renewals := fs.sum("reservation_renewals_total")
			trips, _ := fs.histogram("reservation_renew_round_trip_seconds")
			batches, batched := fs.histogram("reservation_renew_batch_size")
			if renewals < 3 || trips < 1 || batches != trips || batched != renewals || trips >= uint64(renewals) {
				t.Errorf("%v renewals, %d round trips, %d batches of %v reservations in all; want the batches to add up to the renewals, in fewer round trips",
					renewals, trips, batches, batched)
			}
		})
	}
	if mine.Load() == 0 {
		t.Errorf("the chained hook got no event")
	}
}

// Without Options.Resource, no metric has a resource label, and every
// reason and cause is there at zero from the start. A loss by the
// deadline (the server paused) and the Redis errors before it are counted.
func TestMetricsWithoutResourceLabel(t *testing.T) {
	reg := prom.NewRegistry()
	m, err := reservationprom.New(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	fs := gather(t, reg)
	for _, cause := range []string{"foreign", "deadline", "redis-error", "quorum"} {
		if got := fs.count("reservation_lost_total", "cause="+cause); got != 0 {
			t.Errorf("reservation_lost_total{cause=%q} = %v before any event; want 0", cause, got)
		}
	}
	for _, reason := range []string{"held", "restart-guard", "late"} {
		if got := fs.count("reservation_refused_total", "reason="+reason); got != 0 {
			t.Errorf("reservation_refused_total{reason=%q} = %v before any event; want 0", reason, got)
		}
	}

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
	eventually(t, reg, "the loss counted", func(fs families) bool {
		return fs.count("reservation_lost_total", "cause=deadline") == 1
	})
	fs = scrape(t, reg)
	if got := fs.count("reservation_acquired_total"); got != 1 {
		t.Errorf("reservation_acquired_total = %v; want 1, with no label", got)
	}
	if got := fs.count("reservation_redis_errors_total"); got < 1 {
		t.Errorf("reservation_redis_errors_total = %v; want the failed renewals", got)
	}
	for name, f := range fs {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "resource" {
					t.Errorf("%s has a resource label", name)
				}
			}
		}
	}
}

// TryLock held back by the restart guard, and ForceRelease.
func TestMetricsGuardAndForceRelease(t *testing.T) {
	reg := prom.NewRegistry()
	m, err := reservationprom.New(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
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
	eventually(t, reg, "the guard, the force release and the loss counted", func(fs families) bool {
		return fs.count("reservation_refused_total", "reason=restart-guard") == 1 &&
			fs.count("reservation_force_released_total") == 1 &&
			fs.count("reservation_lost_total", "cause=foreign") == 1
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	fs := gather(t, reg)
	if got := fs.count("reservation_released_total"); got != 0 {
		t.Errorf("reservation_released_total = %v; want 0: a force release is not a release by the holder", got)
	}
	if n, _ := fs.histogram("reservation_held_seconds"); n != 0 {
		t.Errorf("reservation_held_seconds: count %d; want 0", n)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := reservationprom.New(nil, nil); err == nil {
		t.Error("New(nil) did not fail")
	}
	reg := prom.NewRegistry()
	if _, err := reservationprom.New(reg, nil); err != nil {
		t.Fatal(err)
	}
	var are prom.AlreadyRegisteredError
	if _, err := reservationprom.New(reg, nil); !errors.As(err, &are) {
		t.Errorf("a second New on one registry = %v; want AlreadyRegisteredError", err)
	}
	if _, err := reservationprom.New(prom.WrapRegistererWithPrefix("two_", reg), nil); err != nil {
		t.Errorf("a second New on the registry wrapped with a prefix = %v", err)
	}
}
