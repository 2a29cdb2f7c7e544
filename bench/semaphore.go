package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The semaphore scenarios measure this library's permits
// (reservation.Limit) beside its plain reservations, in the same rounds:
//
//   - s1/n: scenario 1 with a permit of Limit(n): one goroutine acquires
//     and releases a permit of a fresh semaphore, then of the next; "s1"
//     runs once for each of cfg.limits. Scenario 1 is its baseline.
//   - s3: semClients Clients contend for one semaphore of
//     Limit(semLimit), each looping Lock, hold cfg.semHold, Release.
//   - s3p: its baseline, the same Clients on semLimit plain resources,
//     Client w on resource w mod semLimit.

// semLimit is the semaphore's limit in scenario s3, and how many plain
// resources share the Clients in s3p.
const semLimit = 3

// semClients is how many Clients contend in scenarios s3 and s3p.
const semClients = 8

// semSlack is how much earlier a Lock call of scenarios s3 and s3p must
// begin to count as arrived before another: the Clients' goroutines share
// one CPU, and a call's first command reaches the server up to a few
// hundred µs after the harness read the clock for it (the holders of a
// semaphore release, and call again, at nearly the same time). It is half
// a hold (1 ms): a Client's own calls are at least a hold apart.
const semSlack = 500 * time.Microsecond

// limitScenario names the run of scenario s1 with a permit of Limit(n).
func limitScenario(n int) string { return "s1/" + strconv.Itoa(n) }

// limitOf returns the limit of a run of scenario s1, and whether scenario
// is one.
func limitOf(scenario string) (int, bool) {
	v, ok := strings.CutPrefix(scenario, "s1/")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

// isSemaphore reports whether scenario is one of the semaphore scenarios.
func isSemaphore(scenario string) bool {
	_, ok := limitOf(scenario)
	return ok || scenario == "s3" || scenario == "s3p"
}

// semContended runs scenarios s3 and s3p: semClients Clients of lib, each
// on a goroutine, loop Lock, hold cfg.semHold, Release for d, on one
// semaphore of Limit(semLimit) (s3) or on semLimit plain resources, Client
// w on resource w mod semLimit (s3p). The harness counts the holders of
// each resource from Lock returning to Release being called, a time within
// the server's holding: a count above what the resource allows is an
// over-admission.
func (e *env) semContended(ctx context.Context, lib, scenario string, round int, d time.Duration) result {
	r := result{Scenario: scenario, Lib: lib, Round: round}
	st := cycleSettings
	resources, allows := semLimit, 1
	if scenario == "s3" {
		st.limit = semLimit
		resources, allows = 1, semLimit
	}
	ls, rt, err := e.open(lib, semClients, st)
	if err != nil {
		r.Err = err
		return r
	}
	defer closeAll(ls)
	prefix := e.keyPrefix(scenario, lib, round)
	for i, l := range ls {
		if err := warmUp(ctx, l, prefix+"-warm-"+strconv.Itoa(i)); err != nil {
			r.Err = err
			return r
		}
	}

	var (
		mu      sync.Mutex
		holders = make([]int, resources) // per resource, now
		all     int                      // in all, now
		visits  = make([][]visit, len(ls))
	)
	hold := e.cfg.semHold
	var to time.Time
	r.U, r.Elapsed, r.Err = e.measure(ctx, rt, func() error {
		deadline := time.Now().Add(d)
		runCtx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		errs := make(chan error, len(ls))
		var wg sync.WaitGroup
		for w, l := range ls {
			k := w % resources
			res := prefix + "-" + strconv.Itoa(k)
			wg.Go(func() {
				for {
					start := time.Now()
					h, err := l.wait(runCtx, res)
					if err != nil {
						if runCtx.Err() == nil {
							errs <- err
						}
						visits[w] = append(visits[w], visit{arrived: start})
						return
					}
					v := visit{arrived: start, served: time.Now()}
					if o, ok := h.(oursHeld); ok {
						v.seq = o.r.Token()
					}
					visits[w] = append(visits[w], v)
					mu.Lock()
					holders[k]++
					all++
					if holders[k] > allows {
						r.Excess++
					}
					r.MostHolders = max(r.MostHolders, all)
					mu.Unlock()
					time.Sleep(hold)
					mu.Lock()
					holders[k]--
					all--
					mu.Unlock()
					// Release with a fresh context: the run may just have ended.
					if err := h.release(context.WithoutCancel(ctx)); err != nil {
						errs <- fmt.Errorf("release: %w", err)
						return
					}
					if runCtx.Err() != nil {
						return
					}
				}
			})
		}
		wg.Wait()
		to = deadline
		if now := time.Now(); now.Before(to) {
			to = now // a goroutine failed: the run ended early
		}
		close(errs)
		return <-errs
	})
	// The order of service is each resource's: its waiters', in the order
	// of their fencing tokens, against their arrival. Arrivals less than
	// semSlack apart count as simultaneous.
	byResource := make([][]visit, resources)
	clients := make([]int, resources)
	for w, v := range visits {
		var n int64 // acquisitions within the run (a Lock may return after its end)
		for _, x := range v {
			if !x.served.IsZero() && !x.served.After(to) {
				n++
			}
		}
		if w == 0 {
			r.MinPer, r.MaxPer = n, n
		}
		r.MinPer, r.MaxPer = min(r.MinPer, n), max(r.MaxPer, n)
		r.Ops += n
		byResource[w%resources] = append(byResource[w%resources], v...)
		clients[w%resources]++
	}
	for k, vs := range byResource {
		f, waits := orderOf(vs, time.Time{}, to, burst(vs, clients[k]), semSlack)
		r.Order.add(f)
		r.Waits = append(r.Waits, waits...)
	}
	return r
}
