package faults

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/faults/history"
	"github.com/redis-reservation/reservation/faults/internal/worker"
)

// Fault 9: deadlines shorter than a round trip, over links whose latency
// jitters (5 ms ± 5 ms each way, through toxiproxy), so that two
// connections of one client can reorder what it sends. Clients try to
// lock with TryLock under deadlines of 0 to 10 ms, again and again; an
// attempt abandoned by its deadline keeps running detached, and the key it
// may have acquired must be given back after the server has answered it,
// never before it on another connection (where the give-back would find
// nothing, and the acquire land after it, leaving a key held by nobody).
// The TTL is long (30 s), so that such a key outlives the run: 1 s after
// the end, when the give-backs have settled, no reservation key may exist
// whose value is not held by a live holding.
func TestFaultShortDeadlines(t *testing.T) {
	s := newScenario(t, 9, "TryLock with deadlines of 0-10ms over links of 5ms ± 5ms each way (connections reorder); TTL 30s", 6*time.Second)
	const (
		clients = 4
		lanes   = 4
		keyTTL  = 30 * time.Second
	)
	resources := make([]string, 40)
	for i := range resources {
		resources[i] = fmt.Sprintf("short-%d", i)
	}
	var (
		attempts, acquired, refused, late, abandoned, failed atomic.Int64
		liveMu                                               sync.Mutex
		live                                                 = map[string]bool{} // holder values held now
	)
	var wg sync.WaitGroup
	for i := range clients {
		name := fmt.Sprintf("short%d", i)
		p := s.proxy(name)
		s.addToxic(p, "jitter", "latency", map[string]int64{"latency": 5, "jitter": 5})
		c, err := reservation.New(proxyURL(p), &reservation.Options{By: name, TTL: keyTTL,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		spec := worker.Spec{Name: name}
		for lane := range lanes {
			rng := rand.New(rand.NewPCG(s.seed, uint64(i*lanes+lane)))
			wg.Go(func() {
				for s.running() {
					resource := resources[rng.IntN(len(resources))]
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.Int64N(int64(10*time.Millisecond))))
					call := history.Now()
					r, err := c.TryLock(ctx, resource)
					cancel()
					attempts.Add(1)
					var nerr *reservation.NotAcquiredError
					switch {
					case err == nil:
						acquired.Add(1)
						liveMu.Lock()
						live[r.Holder()] = true
						liveMu.Unlock()
						s.h.Add(history.Event{Kind: history.Acquired, Worker: name, Resource: resource,
							Holder: r.Holder(), Token: r.Token(), Call: call, At: history.Now()})
						worker.Hold(context.Background(), r, spec, time.Duration(rng.Int64N(int64(5*time.Millisecond))), s.h.Add)
						liveMu.Lock()
						delete(live, r.Holder())
						liveMu.Unlock()
					case errors.As(err, &nerr) && nerr.Late:
						late.Add(1)
					case errors.Is(err, context.DeadlineExceeded):
						abandoned.Add(1)
					case errors.Is(err, reservation.ErrNotAcquired):
						refused.Add(1)
					default:
						failed.Add(1)
						t.Logf("%s: TryLock %q: %v", name, resource, err)
					}
				}
			})
		}
	}
	wg.Wait()
	// The give-backs of the abandoned attempts follow their replies:
	// let them land.
	time.Sleep(time.Second)
	rdb := s.srv.Client(t)
	ctx := context.Background()
	var orphans []string
	keys, err := rdb.Keys(ctx, "reservation-short-*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keys {
		value, err := rdb.Get(ctx, key).Result()
		if err != nil {
			continue // expired or given back meanwhile
		}
		liveMu.Lock()
		held := live[value]
		liveMu.Unlock()
		if !held {
			pttl := rdb.PTTL(ctx, key).Val()
			orphans = append(orphans, fmt.Sprintf("%s = %s (%v left)", key, value, pttl))
		}
	}
	n, a := attempts.Load(), abandoned.Load()
	t.Logf("%d attempts: %d acquired, %d refused (held), %d answered after their local deadline, %d abandoned by their deadline, %d failed otherwise",
		n, acquired.Load(), refused.Load(), late.Load(), a, failed.Load())
	for range a {
		s.fault()
	}
	s.title += fmt.Sprintf(": %d attempts, %d acquired, %d abandoned by their deadline", n, acquired.Load(), a)
	s.checkCounted("abandoned attempts that left no key held by nobody (1s after the end)", int(a), min(len(orphans), int(a)),
		"%d reservation keys held by nobody:\n%s", len(orphans), strings.Join(orphans, "\n"))
	if a == 0 || acquired.Load() == 0 {
		t.Errorf("%d attempts abandoned, %d acquired: the scenario tested nothing", a, acquired.Load())
	}
	s.finish(nil)
}
