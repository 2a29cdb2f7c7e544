package reservation_test

import (
	"context"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// The benchmarks of scenarios 1 to 4 of docs/PERFORMANCE.md, and of the
// semaphores' s1 and s3, each on a redis-server of its own. Compare runs
// with benchstat:
//
//	go test -run=NONE -bench=. -benchmem -count=10 . > new.txt
//	benchstat old.txt new.txt
//
// The comparison with other libraries is the bench/ module's.

// newBenchClient starts a server and returns a primed Client on it.
func newBenchClient(b *testing.B, srv *redistest.Server) *reservation.Client {
	b.Helper()
	if srv == nil {
		srv = redistest.Start(b)
	}
	c, err := reservation.New(srv.URL(), &reservation.Options{By: "bench", TTL: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if _, err := c.PrimeRestartGuard(context.Background()); err != nil {
		b.Fatal(err)
	}
	return c
}

// cycle locks and releases resource, which must be free, and reports
// whether it could. It may run on goroutines of RunParallel, where Fatal
// must not be called.
func cycle(b *testing.B, c *reservation.Client, resource string) bool {
	return cycleWith(context.Background(), b, c, resource)
}

// cycleWith is cycle with ctx.
func cycleWith(ctx context.Context, b *testing.B, c *reservation.Client, resource string) bool {
	r, err := c.TryLock(ctx, resource)
	if err != nil {
		b.Errorf("TryLock(%q): %v", resource, err)
		return false
	}
	if err := r.Release(ctx); err != nil {
		b.Errorf("Release(%q): %v", resource, err)
		return false
	}
	return true
}

// Scenario 1: one goroutine, fresh resources, Lock then Release.
func BenchmarkUncontended(b *testing.B) {
	c := newBenchClient(b, nil)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if !cycle(b, c, "s1-"+strconv.Itoa(i)) {
			return
		}
		i++
	}
}

// Scenario 1 with a context that can end, as most callers' (a request's, a
// timeout's): the Client runs each call detached from it, so that the call
// returns when the context ends while the script still gets its reply.
func BenchmarkUncontendedCancellable(b *testing.B) {
	c := newBenchClient(b, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if !cycleWith(ctx, b, c, "s1c-"+strconv.Itoa(i)) {
			return
		}
		i++
	}
}

// Scenario 2: 16 goroutines on distinct resources, one Client.
func BenchmarkParallelUncontended(b *testing.B) {
	c := newBenchClient(b, nil)
	b.ReportAllocs()
	b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)) // 16 goroutines
	var worker atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		prefix := "s2-" + strconv.FormatInt(worker.Add(1), 10) + "-"
		for i := 0; pb.Next(); i++ {
			if !cycle(b, c, prefix+strconv.Itoa(i)) {
				return
			}
		}
	})
}

// Scenario s1 of docs/PERFORMANCE.md: one goroutine, fresh resources,
// TryLock of a permit of Limit(n) then Release, for n = 1, 3, 10 and 100:
// BenchmarkUncontended, in the same run, is the plain reservation's cycle.
// The acquire script reads each of the n permits.
func BenchmarkSemaphoreCycle(b *testing.B) {
	for _, n := range []int{1, 3, 10, 100} {
		b.Run("limit="+strconv.Itoa(n), func(b *testing.B) {
			c := newBenchClient(b, nil)
			ctx := context.Background()
			limit := reservation.Limit(n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				resource := "s1-" + strconv.Itoa(i)
				r, err := c.TryLock(ctx, resource, limit)
				if err != nil {
					b.Fatalf("TryLock(%q, Limit(%d)): %v", resource, n, err)
				}
				if err := r.Release(ctx); err != nil {
					b.Fatalf("Release(%q): %v", resource, err)
				}
				i++
			}
		})
	}
}

// Scenario 3 with a semaphore: 8 goroutines on one semaphore of Limit(3),
// one Client, each releasing at once and waiting again; ns/op is per
// acquisition. Reports the p99 and the longest wait. BenchmarkContended,
// in the same run, is the plain reservation's.
func BenchmarkSemaphoreContended(b *testing.B) {
	c := newBenchClient(b, nil)
	b.ReportAllocs()
	const workers = 8
	limit := reservation.Limit(3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu    sync.Mutex
		n     int
		waits []time.Duration
	)
	b.ResetTimer()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				start := time.Now()
				r, err := c.Lock(ctx, "s3-semaphore", limit)
				if err != nil {
					return // the benchmark is over
				}
				mu.Lock()
				waits = append(waits, time.Since(start))
				n++
				done := n >= b.N
				mu.Unlock()
				if err := r.Release(context.Background()); err != nil {
					b.Errorf("Release: %v", err)
					cancel()
					return
				}
				if done {
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(waits)
	b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds()), "p99-wait-µs")
	b.ReportMetric(float64(waits[len(waits)-1].Microseconds()), "max-wait-µs")
}

// Scenario 3: 8 goroutines on one resource, each releasing at once and
// waiting again; ns/op is per acquisition. Reports the p99 and the longest
// wait, and the share of acquisitions that went back to the releaser.
func BenchmarkContended(b *testing.B) {
	c := newBenchClient(b, nil)
	b.ReportAllocs()
	const workers = 8
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu    sync.Mutex
		n     int
		last  = -1
		back  int
		waits []time.Duration
	)
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				start := time.Now()
				r, err := c.Lock(ctx, "s3")
				if err != nil {
					return // the benchmark is over
				}
				mu.Lock()
				waits = append(waits, time.Since(start))
				if last == w {
					back++
				}
				last = w
				n++
				done := n >= b.N
				mu.Unlock()
				if err := r.Release(context.Background()); err != nil {
					b.Errorf("Release: %v", err)
					cancel()
					return
				}
				if done {
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(waits)
	b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds()), "p99-wait-µs")
	b.ReportMetric(float64(waits[len(waits)-1].Microseconds()), "max-wait-µs")
	b.ReportMetric(100*float64(back)/float64(len(waits)), "%-back-to-releaser")
}

// Scenario 4: 8 goroutines in a ring take turns on one resource. While one
// holds it, the next waits; the holder releases once the next has been
// waiting for park, so every handoff wakes a waiting goroutine. ns/op is
// the release plus the handoff (the hold is left out); handoff-p50-µs is
// from Release returning to the next Lock returning.
func BenchmarkRoundRobin(b *testing.B) {
	for _, mode := range []string{"shared-client", "client-per-goroutine"} {
		b.Run(mode, func(b *testing.B) {
			srv := redistest.Start(b)
			const workers = 8
			clients := make([]*reservation.Client, workers)
			for i := range clients {
				if mode == "shared-client" && i > 0 {
					clients[i] = clients[0]
					continue
				}
				clients[i] = newBenchClient(b, srv)
			}
			roundRobin(b, clients)
		})
	}
}

func roundRobin(b *testing.B, clients []*reservation.Client) {
	const park = time.Millisecond
	workers := len(clients)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	turn := make([]chan struct{}, workers)    // your turn to wait
	entered := make([]chan struct{}, workers) // I am about to wait
	for i := range turn {
		turn[i] = make(chan struct{}, 1)
		entered[i] = make(chan struct{}, 1)
	}
	type holding struct{ acquired, releasing, released time.Time }
	var (
		mu   sync.Mutex
		hold []holding
	)
	b.ResetTimer()
	turn[0] <- struct{}{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := (w + 1) % workers
			for first := w == 0; ; first = false {
				select {
				case <-turn[w]:
				case <-ctx.Done():
					return
				}
				if !first {
					entered[w] <- struct{}{}
				}
				r, err := clients[w].Lock(ctx, "s4")
				if err != nil {
					return
				}
				mu.Lock()
				k := len(hold)
				hold = append(hold, holding{acquired: time.Now()})
				mu.Unlock()
				last := k+1 >= b.N
				if !last {
					turn[next] <- struct{}{}
					<-entered[next]
					time.Sleep(park)
				}
				releasing := time.Now()
				if err := r.Release(context.Background()); err != nil {
					b.Errorf("Release: %v", err)
					cancel()
					return
				}
				mu.Lock()
				hold[k].releasing, hold[k].released = releasing, time.Now()
				mu.Unlock()
				if last {
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if len(hold) < 2 {
		return
	}
	// A waiter woken by the server may return before the releaser has its
	// reply: that handoff counts as 0.
	var busy time.Duration
	handoffs := make([]time.Duration, 0, len(hold)-1)
	for k := 1; k < len(hold); k++ {
		h := max(hold[k].acquired.Sub(hold[k-1].released), 0)
		handoffs = append(handoffs, h)
		busy += hold[k-1].released.Sub(hold[k-1].releasing) + h
	}
	slices.Sort(handoffs)
	b.ReportMetric(float64(busy.Nanoseconds())/float64(len(handoffs)), "ns/op")
	b.ReportMetric(float64(handoffs[len(handoffs)/2].Nanoseconds()), "handoff-p50-ns")
	b.ReportMetric(float64(handoffs[len(handoffs)*99/100].Nanoseconds()), "handoff-p99-ns")
}
