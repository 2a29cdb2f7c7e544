package cli

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrape reads http://addr/metrics and parses it with the Prometheus text
// parser; nil when nothing answers yet.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the text of /metrics does not parse: %v", err)
	}
	return fs
}

// sample returns the value of the series of name with resource="job"
// (a counter's value, a histogram's count), or -1 when there is none.
func sample(fs map[string]*dto.MetricFamily, name string) float64 {
	for _, m := range fs[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "resource" && l.GetValue() == "job" {
				if h := m.GetHistogram(); h != nil {
					return float64(h.GetSampleCount())
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// TestRunMetrics runs a job with --metrics-addr behind another holder, and
// scrapes its endpoint while the job runs: the wait, the acquisition and
// the renewals are there, with the resource label, along with the
// process's own metrics.
func TestRunMetrics(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	other := hold(t, libClient(t, srv, "other", 5*time.Second), "job")
	addr := freeAddr(t)
	p := startReserve(t, srv, nil, "run", "--ttl", "600ms", "--metrics-addr", addr, "job", "--", "sleep", "3")
	var fs map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for fs = scrape(t, addr); fs == nil; fs = scrape(t, addr) {
		if time.Now().After(deadline) {
			t.Fatalf("nothing answers on %s: %v", addr, p.wait(t, time.Second))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if sample(fs, "reservation_acquired_total") > 0 || fs["go_goroutines"] == nil {
		t.Errorf("while waiting: reservation_acquired_total{resource=\"job\"} = %v, go_goroutines present %v; want none and true",
			sample(fs, "reservation_acquired_total"), fs["go_goroutines"] != nil)
	}
	time.Sleep(300 * time.Millisecond)
	if err := other.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	for {
		fs = scrape(t, addr)
		if fs != nil && sample(fs, "reservation_acquired_total") == 1 && sample(fs, "reservation_renewals_total") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no acquisition and renewals of job in the metrics:\nacquired %v, renewals %v",
				sample(fs, "reservation_acquired_total"), sample(fs, "reservation_renewals_total"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var waited float64
	for _, m := range fs["reservation_lock_wait_seconds"].GetMetric() {
		waited += m.GetHistogram().GetSampleSum()
	}
	if n := sample(fs, "reservation_lock_wait_seconds"); n != 1 || waited < 0.3 {
		t.Errorf("reservation_lock_wait_seconds: %v samples summing to %vs; want 1, of at least 0.3s", n, waited)
	}
	if res := p.wait(t, 10*time.Second); res.code != 0 {
		t.Errorf("reserve run: %v", res)
	}
	if fs := scrape(t, addr); fs != nil {
		t.Errorf("the metrics are still served after reserve exited")
	}
}

// TestRunMetricsAddrInUse: an address that cannot be listened on (an
// overlapping run of the same cron line has it) is said once, and the job
// runs without metrics.
func TestRunMetricsAddrInUse(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	res := runReserve(t, srv, []string{envMetricsAddr + "=" + ln.Addr().String()}, "run", "job", "--", "echo", "ran")
	want := "reserve: cannot serve metrics on " + ln.Addr().String() + " ($" + envMetricsAddr + "): listen tcp " +
		ln.Addr().String() + ": bind: address already in use; running without them\n"
	if res.code != 0 || res.stdout != "ran\n" || res.stderr != want {
		t.Errorf("got %v\nwant exit 0, the command's output, and %q", res, want)
	}
}
