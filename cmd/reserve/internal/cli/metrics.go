package cli

import (
	"context"
	"net"
	"net/http"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/metrics/prometheus"
)

// envMetricsAddr is the environment variable of --metrics-addr.
const envMetricsAddr = "RESERVE_METRICS_ADDR"

// metricsServer serves the library's metrics of one reserve run, and the
// process's, on /metrics, in the Prometheus text format.
type metricsServer struct {
	metrics *prometheus.Metrics
	srv     *http.Server
	done    chan struct{}
}

// serveMetrics listens on addr and serves /metrics there until close. The
// resource label is on: a run holds the few resources its command line
// names.
func serveMetrics(addr string) (*metricsServer, error) {
	reg := prom.NewRegistry()
	m, err := prometheus.New(reg, &prometheus.Options{Resource: func(r string) string { return r }})
	if err != nil {
		return nil, err
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s := &metricsServer{metrics: m, done: make(chan struct{}),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		defer close(s.done)
		// ErrServerClosed at close; any other error is the listener's,
		// after which nothing is served: the run goes on without.
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// observe records e.
func (s *metricsServer) observe(e reservation.Event) { s.metrics.Observe(e) }

// close stops serving, letting a scrape under way finish for up to a
// second, and waits for the server's goroutine.
func (s *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if s.srv.Shutdown(ctx) != nil {
		s.srv.Close()
	}
	<-s.done
}
