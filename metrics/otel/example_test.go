package otel_test

import (
	"context"
	"fmt"
	"log"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/redis-reservation/reservation"
	reservationotel "github.com/redis-reservation/reservation/metrics/otel"
)

// The instruments of a Client, read here by a ManualReader; in a service,
// by the reader of an exporter (OTLP, Prometheus).
func Example() {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())

	metrics, err := reservationotel.New(provider, nil)
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

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && (m.Name == "reservation.acquired" || m.Name == "reservation.released") {
				fmt.Println(m.Name, sum.DataPoints[0].Value)
			}
		}
	}
	// Output:
	// reservation.acquired 1
	// reservation.released 1
}
