package prometheus_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"strings"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/redis-reservation/reservation"
	reservationprom "github.com/redis-reservation/reservation/metrics/prometheus"
)

// printCounters prints the counters of reg whose name is among names, one
// line a series.
func printCounters(reg *prom.Registry, names ...string) {
	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range families {
		for _, name := range names {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				series := name
				if len(labels) > 0 {
					series += "{" + strings.Join(labels, ",") + "}"
				}
				fmt.Println(series, m.GetCounter().GetValue())
			}
		}
	}
}

// The metrics of a Client, on a registry of your own.
func Example() {
	reg := prom.NewRegistry()
	metrics, err := reservationprom.New(reg, nil)
	if err != nil {
		log.Fatal(err)
	}
	c, err := reservation.New(redisURL, &reservation.Options{By: "worker-1", OnEvent: metrics.Observe})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	r, err := c.TryLock(ctx, "nightly-report")
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Release(ctx); err != nil {
		log.Fatal(err)
	}
	c.Close() // delivers the events still queued

	printCounters(reg, "reservation_acquired_total", "reservation_released_total")
	// Output:
	// reservation_acquired_total 1
	// reservation_released_total 1
}

// Serve the metrics to Prometheus.
func Example_serve() {
	reg := prom.NewRegistry()
	metrics, err := reservationprom.New(reg, nil)
	if err != nil {
		log.Fatal(err)
	}
	c, err := reservation.New(redisURL, &reservation.Options{OnEvent: metrics.Observe})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	log.Fatal(http.ListenAndServe("localhost:9090", nil))
}

// A resource label, with the names mapped to their kind: one series per
// kind, however many reports there are.
func ExampleOptions() {
	reg := prom.NewRegistry()
	metrics, err := reservationprom.New(reg, &reservationprom.Options{
		Resource: func(resource string) string {
			kind, _, _ := strings.Cut(resource, ":") // "report:2024-06-01" is a "report"
			return kind
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	c, err := reservation.New(redisURL, &reservation.Options{By: "worker-1", OnEvent: metrics.Observe})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for _, day := range []string{"2024-06-01", "2024-06-02", "2024-06-03"} {
		if _, err := c.TryLock(ctx, "report:"+day); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := c.TryLock(ctx, "export:all"); err != nil {
		log.Fatal(err)
	}
	c.Close() // releases them all

	printCounters(reg, "reservation_acquired_total")
	// Output:
	// reservation_acquired_total{resource="export"} 1
	// reservation_acquired_total{resource="report"} 3
}

// The metrics, and a hook of your own after them.
func ExampleMetrics_Hook() {
	reg := prom.NewRegistry()
	metrics, err := reservationprom.New(reg, nil)
	if err != nil {
		log.Fatal(err)
	}
	onEvent := metrics.Hook(func(e reservation.Event) {
		if e.Kind == reservation.EventAcquired || e.Kind == reservation.EventReleased {
			fmt.Println(e.Kind, e.Resource)
		}
	})
	c, err := reservation.New(redisURL, &reservation.Options{By: "worker-1", OnEvent: onEvent})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	r, err := c.Lock(ctx, "nightly-report")
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Release(ctx); err != nil {
		log.Fatal(err)
	}
	c.Close()

	printCounters(reg, "reservation_acquired_total")
	// Output:
	// reservation-acquired nightly-report
	// reservation-released nightly-report
	// reservation_acquired_total 1
}
