package faults

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"

	"github.com/redis-reservation/reservation/faults/history"
	"github.com/redis-reservation/reservation/faults/internal/worker"
)

// Fault 27: four lanes of each Client contend for the same resources, so
// that a release hands the key over to its own Client's next waiter (the
// release script gives it the key and its token; no attempt of its own).
// Meanwhile, in turn, a worker process is killed (kill -9), holding or
// waiting or handing over, or the link of a worker in the test process is
// cut (connections reset, new ones refused) for 100-300 ms or twice the
// TTL, with its releases and handovers in flight. No holding may overlap another, tokens
// grow, and every loss is reported, as everywhere.
func TestFaultHandoverLanes(t *testing.T) {
	s := newScenario(t, 27, "queue: four lanes per Client (2 processes, 2 workers in the test process, 2 resources), so that releases hand the key over inside the process; in turn, a process killed (kill -9) or a worker's link cut for 100-300ms or 1.2s (connections reset, new ones refused)", 5*time.Second)
	lanes := func(spec worker.Spec) worker.Spec {
		// Few Clients with several lanes each, on two resources: the
		// next place in a queue is often the releasing Client's own.
		spec.Resources, spec.Lanes = resources[:2], 4
		// Short holdings: many releases, most with a waiter of the same
		// Client at the head.
		spec.HoldMin, spec.HoldMax = 10*time.Millisecond, 100*time.Millisecond
		spec.LockRatio = 0.1
		return spec
	}
	procs := map[string]*proc{}
	var alive []string
	n := 0
	spawn := func() {
		name := fmt.Sprintf("p%d", n)
		n++
		procs[name] = s.startProc(lanes(s.spec(name, s.srv.URL())))
		alive = append(alive, name)
	}
	for range 2 {
		spawn()
	}
	const inTest = 2
	proxies := make([]*toxiproxy.Proxy, inTest)
	for i := range inTest {
		name := fmt.Sprintf("w%d", i)
		proxies[i] = s.proxy(name)
		s.goWorker(lanes(s.spec(name, proxyURL(proxies[i]))), nil)
	}
	var kills, cuts int
	for round := 0; s.running(); round++ {
		time.Sleep(time.Duration(300+rand.IntN(500)) * time.Millisecond)
		if round%2 == 0 {
			i := rand.IntN(len(alive))
			name := alive[i]
			alive = append(alive[:i], alive[i+1:]...)
			procs[name].kill()
			delete(procs, name)
			s.fault()
			kills++
			spawn()
			continue
		}
		p := proxies[rand.IntN(inTest)]
		p.Stop()
		s.fault()
		cuts++
		cut := time.Duration(100+rand.IntN(200)) * time.Millisecond
		if cuts%2 == 0 {
			cut = 2 * ttl // its holders lose their reservations
		}
		time.Sleep(cut)
		if err := p.Start(); err != nil {
			t.Fatalf("restart proxy: %v", err)
		}
	}
	// Time for the keys of the dead and the cut to run out, and for the
	// holders of those that were cut to hear of their loss.
	time.Sleep(2 * ttl)
	s.finish(func(res *history.Result) {
		if kills == 0 || cuts == 0 {
			t.Errorf("%d processes killed and %d links cut; want some of each", kills, cuts)
		}
	})
}
