package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis-reservation/reservation"
)

// The set scenarios measure this library's sets (reservation.With: several
// resources reserved all or none in one script, one Release for them all)
// beside its plain reservations, in the same rounds:
//
//   - m1/k: one goroutine, one Client, TryLock of a fresh set of k
//     resources then Release; "m1" runs once for each of cfg.sizes. A set
//     of 1 is With of the resource itself, so that it takes the sets' path.
//     Scenario 1 (one plain reservation) is its baseline per resource.
//   - m1p/k: its baseline per set, the same k fresh resources taken one
//     after the other by the same Client: TryLock of each, then Release of
//     each; "m1p" runs once for each of cfg.sizes above 1 (of 1, it is
//     scenario 1).
//   - m3: setClients Clients, each looping Lock of 2 of setResources
//     resources as a set, in a random order, hold cfg.setHold, Release.
//   - m3p: its baseline, the same Clients taking the same 2 resources
//     (the same random sequence: a Client's generator is seeded by its
//     number and the round) with two plain Locks, in one global order (the
//     classic way to avoid a deadlock), and two Releases.

// setClients is how many Clients contend in scenarios m3 and m3p.
const setClients = 8

// setResources is how many resources the Clients of m3 and m3p share, and
// setPick how many of them each holding takes.
const (
	setResources = 4
	setPick      = 2
)

// sizeScenario names the run of scenario m1 with sets of k, and
// plainsScenario the run of m1p with k plain reservations.
func sizeScenario(k int) string   { return "m1/" + strconv.Itoa(k) }
func plainsScenario(k int) string { return "m1p/" + strconv.Itoa(k) }

// sizeOf returns the size of a run of scenario m1 or m1p, whether
// scenario is one, and whether it is of plain reservations (m1p).
func sizeOf(scenario string) (k int, ok, plain bool) {
	v, ok := strings.CutPrefix(scenario, "m1/")
	if !ok {
		if v, ok = strings.CutPrefix(scenario, "m1p/"); !ok {
			return 0, false, false
		}
		plain = true
	}
	k, err := strconv.Atoi(v)
	return k, err == nil, plain
}

// isSet reports whether scenario is one of the set scenarios.
func isSet(scenario string) bool {
	_, ok, _ := sizeOf(scenario)
	return ok || scenario == "m3" || scenario == "m3p"
}

// withOthers answers the option that makes a call on names[0] reserve
// all of names as a set: With of the others, or of names[0] itself for a
// set of one (With of nothing is a plain call).
func withOthers(names []string) reservation.LockOption {
	if len(names) == 1 {
		return reservation.With(names[0])
	}
	return reservation.With(names[1:]...)
}

// setClient answers the Client of ls[i]: the set scenarios call this
// library alone, beyond the locker interface.
func setClient(l locker) (*reservation.Client, error) {
	o, ok := l.(*ours)
	if !ok {
		return nil, fmt.Errorf("the set scenarios measure %s alone: %w", libOurs, errNotSupported)
	}
	return o.c, nil
}

// checkFences returns an error unless r holds names, one fencing token
// each: the warm-up of scenario m1 checks every set it takes.
func checkFences(r *reservation.Reservation, names []string) error {
	fs := r.Fences()
	if len(fs) != len(names) {
		return fmt.Errorf("a set of %d has %d fencing tokens", len(names), len(fs))
	}
	for i, f := range fs {
		if f.Resource != names[i] || f.Token <= 0 {
			return fmt.Errorf("fence %d of the set is %+v, want a token of %s", i, f, names[i])
		}
	}
	return nil
}

// setCycles runs scenarios m1/k and m1p/k: one goroutine acquires and
// releases k fresh resources on one Client for d, as a set (m1) or one by
// one (m1p). A cycle is the acquisition and release of all k.
func (e *env) setCycles(ctx context.Context, lib, scenario string, round, k int, plain bool, d time.Duration) result {
	r := result{Scenario: scenario, Lib: lib, Round: round}
	ls, rt, err := e.open(lib, 1, cycleSettings)
	if err != nil {
		r.Err = err
		return r
	}
	defer closeAll(ls)
	c, err := setClient(ls[0])
	if err != nil {
		r.Err = err
		return r
	}
	prefix := e.keyPrefix(scenario, lib, round)
	var failures int64
	held := make([]*reservation.Reservation, 0, k)
	// cycle acquires and releases names, and answers how long the cycle
	// and its acquisition took (-1: the acquisition failed: counted, not
	// fatal, as in scenario 1). With check, it checks a set's fences.
	cycle := func(names []string, check bool) (time.Duration, time.Duration, error) {
		start := time.Now()
		held = held[:0]
		var err error
		if plain {
			for _, n := range names {
				var h *reservation.Reservation
				if h, err = c.TryLock(ctx, n); err != nil {
					break
				}
				held = append(held, h)
			}
		} else {
			var h *reservation.Reservation
			if h, err = c.TryLock(ctx, names[0], withOthers(names)); err == nil {
				held = append(held, h)
				if check {
					err = checkFences(h, names)
				}
			}
		}
		acquired := time.Since(start)
		for _, h := range held {
			if rerr := h.Release(ctx); rerr != nil {
				return 0, 0, rerr
			}
		}
		switch {
		case err == nil:
			return time.Since(start), acquired, nil
		case ctx.Err() != nil:
			return 0, 0, ctx.Err()
		case !errors.Is(err, reservation.ErrNotAcquired) || check:
			return 0, 0, err
		}
		if failures++; failures > 100 && failures > r.Ops/10 {
			return 0, 0, fmt.Errorf("%d acquisitions of free resources failed, the last: %v", failures, err)
		}
		return -1, -1, nil
	}
	names := make([]string, k)
	nameCycle := func(i int) []string {
		for j := range names {
			names[j] = prefix + "-" + strconv.Itoa(i) + "-" + strconv.Itoa(j)
		}
		return names
	}
	// Warm up: connections, scripts loaded, goroutines started; and a
	// check of the sets' fencing tokens, outside the measure.
	for i := range 50 {
		if _, _, err := cycle(nameCycle(-1-i), !plain); err != nil {
			r.Err = fmt.Errorf("warm-up: %w", err)
			return r
		}
	}
	lat := make([]time.Duration, 0, 1<<14)
	acq := make([]time.Duration, 0, 1<<14)
	r.U, r.Elapsed, r.Err = e.measure(ctx, rt, func() error {
		deadline := time.Now().Add(d)
		for i := 0; time.Now().Before(deadline); i++ {
			d, a, err := cycle(nameCycle(i), false)
			if err != nil {
				return err
			}
			if d >= 0 {
				lat = append(lat, d)
				acq = append(acq, a)
				r.Ops++
			}
		}
		return nil
	})
	r.Failures = failures
	r.Lat, r.Acq = lat, acq
	return r
}

// setHolding is one holding of a resource in scenarios m3 and m3p: from
// the Lock that took it returning to the Release that gave it back
// returning; arrived is when the holding's first Lock call began.
type setHolding struct {
	arrived, acquired, released time.Time
}

// setContended runs scenarios m3 and m3p: setClients Clients of lib, each
// on a goroutine, loop taking setPick of setResources resources for d, as
// a set in a random order (m3) or one by one in their global order (m3p),
// hold cfg.setHold, and release them. The harness counts the holders of
// each resource from the Lock that took it returning to the Release being
// called, a time within the server's holding: more than one at once is a
// double holding.
func (e *env) setContended(ctx context.Context, lib, scenario string, round int, d time.Duration) result {
	r := result{Scenario: scenario, Lib: lib, Round: round}
	plain := scenario == "m3p"
	ls, rt, err := e.open(lib, setClients, cycleSettings)
	if err != nil {
		r.Err = err
		return r
	}
	defer closeAll(ls)
	cs := make([]*reservation.Client, len(ls))
	prefix := e.keyPrefix(scenario, lib, round)
	for i, l := range ls {
		if cs[i], err = setClient(l); err == nil {
			err = warmUp(ctx, l, prefix+"-warm-"+strconv.Itoa(i))
		}
		if err != nil {
			r.Err = err
			return r
		}
	}
	res := make([]string, setResources)
	for i := range res {
		res[i] = prefix + "-" + strconv.Itoa(i)
	}

	var (
		mu       sync.Mutex
		holders  = make([]int, setResources)          // per resource, now
		holdings = make([][]setHolding, setResources) // per resource
		visits   = make([][]visit, len(cs))           // per Client: its Lock calls, of a set or of its first resource
	)
	hold := e.cfg.setHold
	var to time.Time
	r.U, r.Elapsed, r.Err = e.measure(ctx, rt, func() error {
		deadline := time.Now().Add(d)
		runCtx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		errs := make(chan error, len(cs))
		var wg sync.WaitGroup
		for w, c := range cs {
			// The same sequence of picks in m3 and m3p, a new one each round.
			rnd := mrand.New(mrand.NewPCG(uint64(round), uint64(w)))
			wg.Go(func() {
				for {
					pick := rnd.Perm(setResources)[:setPick] // a random order
					if plain {
						slices.Sort(pick) // the global order
					}
					names := make([]string, len(pick))
					for i, p := range pick {
						names[i] = res[p]
					}
					start := time.Now()
					var (
						hs  []*reservation.Reservation
						got []time.Time // when each of pick was taken
						err error
					)
					if plain {
						for range names {
							var h *reservation.Reservation
							if h, err = c.Lock(runCtx, names[len(hs)]); err != nil {
								break
							}
							hs = append(hs, h)
							got = append(got, time.Now())
						}
					} else {
						var h *reservation.Reservation
						if h, err = c.Lock(runCtx, names[0], withOthers(names)); err == nil {
							hs = append(hs, h)
							now := time.Now()
							got = []time.Time{now, now}
						}
					}
					if err != nil {
						for _, h := range hs {
							_ = h.Release(context.WithoutCancel(ctx))
						}
						if runCtx.Err() == nil {
							errs <- err
						}
						visits[w] = append(visits[w], visit{arrived: start})
						return
					}
					visits[w] = append(visits[w], visit{arrived: start, served: got[len(got)-1]})
					mu.Lock()
					for _, p := range pick {
						if holders[p]++; holders[p] > 1 {
							r.Excess++
						}
						r.MostHolders = max(r.MostHolders, holders[p])
					}
					mu.Unlock()
					time.Sleep(hold)
					mu.Lock()
					for _, p := range pick {
						holders[p]--
					}
					mu.Unlock()
					// Release with a fresh context: the run may just have
					// ended. The plain ones in the reverse order.
					for i := len(hs) - 1; i >= 0; i-- {
						if err := hs[i].Release(context.WithoutCancel(ctx)); err != nil {
							errs <- fmt.Errorf("release: %w", err)
							return
						}
						now := time.Now()
						mu.Lock()
						if plain {
							holdings[pick[i]] = append(holdings[pick[i]], setHolding{start, got[i], now})
						} else {
							for j, p := range pick {
								holdings[p] = append(holdings[p], setHolding{start, got[j], now})
							}
						}
						mu.Unlock()
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
	for w, v := range visits {
		var n int64 // acquisitions within the run (a Lock may return after its end)
		for _, x := range v {
			if !x.served.IsZero() && !x.served.After(to) {
				n++
				r.Waits = append(r.Waits, x.served.Sub(x.arrived))
			}
		}
		if w == 0 {
			r.MinPer, r.MaxPer = n, n
		}
		r.MinPer, r.MaxPer = min(r.MinPer, n), max(r.MaxPer, n)
		r.Ops += n
	}
	// Handoffs: per resource, from a holder's Release returning to the
	// next holder's Lock returning, when that one was waiting already (a
	// waiter woken by the server may return before the releaser has its
	// reply: that counts as 0).
	for _, hs := range holdings {
		slices.SortFunc(hs, func(a, b setHolding) int { return a.acquired.Compare(b.acquired) })
		for i := 1; i < len(hs); i++ {
			if prev, next := hs[i-1], hs[i]; next.arrived.Before(prev.released) && !next.acquired.After(to) {
				r.Lat = append(r.Lat, max(next.acquired.Sub(prev.released), 0))
			}
		}
	}
	slices.SortFunc(r.Lat, cmp.Compare)
	return r
}
