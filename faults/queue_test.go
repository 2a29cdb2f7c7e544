package faults

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redistest"

	"github.com/redis-reservation/reservation/faults/history"
	"github.com/redis-reservation/reservation/faults/internal/worker"
)

// The queue scenarios (16 to 18): Lock callers wait in the server's queue
// (the default) on two resources, and one of them, the holder, the head of
// the queue or the server fails. Besides the usual history checks, the
// history checker checks the queue's order (a waiter is not overtaken by a
// Lock call begun after its place was taken, unless it lost its place),
// and each scenario checks that the queue moves on:
//
//   - a handoff (a release while Lock calls wait, to the next acquisition)
//     takes at most a retry interval while no waiter is dead or cut off
//     (the release tells the head its turn), and at most the TTL and a
//     heartbeat past a dead or cut-off one (its place's lease runs out, and
//     the next renewal of another waiter removes it);
//   - a dead or cut-off waiter leaves the queue within a heartbeat of its
//     lease's end.

// queueResources are what the workers of the queue scenarios wait for: two,
// so that each queue holds several waiters.
var queueResources = []string{"queue-a", "queue-b"}

// queueSpec returns a worker spec for the queue scenarios: mostly Lock
// calls, recorded with their waits; short holdings, so that the queues
// move; and waits long enough for a queue of a few, but some give up.
func (s *scenario) queueSpec(name, url string) worker.Spec {
	spec := s.spec(name, url)
	spec.Resources = queueResources
	spec.Queue = true
	spec.LockRatio = 0.1 // TryLock, refused while anyone queues
	spec.HoldMin, spec.HoldMax = 20*time.Millisecond, 120*time.Millisecond
	spec.WaitMin, spec.WaitMax = 300*time.Millisecond, 3*time.Second
	return spec
}

// queueKey is the server's queue of resource: holder values by arrival.
func queueKey(resource string) string { return "{reservation-" + resource + "}:queue" }

// leasesKey holds the leases of the places of resource's queue: holder
// values by expiry, in the server's milliseconds.
func leasesKey(resource string) string { return "{reservation-" + resource + "}:leases" }

// queueState is what a read of a resource found: its waiters, head first,
// and the key's holder value ("" when free).
type queueState struct {
	resource string
	waiters  []string
	holder   string
}

// readQueues reads the queue and the key of each of resources in one round
// trip.
func readQueues(ctx context.Context, rdb *redis.Client, resources []string) ([]queueState, error) {
	pipe := rdb.Pipeline()
	ranges := make([]*redis.StringSliceCmd, len(resources))
	gets := make([]*redis.StringCmd, len(resources))
	for i, r := range resources {
		ranges[i] = pipe.ZRange(ctx, queueKey(r), 0, -1)
		gets[i] = pipe.Get(ctx, "reservation-"+r)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, err
	}
	out := make([]queueState, len(resources))
	for i, r := range resources {
		out[i] = queueState{resource: r, waiters: ranges[i].Val(), holder: gets[i].Val()}
	}
	return out, nil
}

// byOf returns the worker name in a holder value "<By>-<id>" (the workers'
// names have no "-").
func byOf(value string) string {
	by, _, _ := strings.Cut(value, "-")
	return by
}

// leaseEnd returns when the lease of value's place in resource's queue ends
// (the server's clock is this machine's), and false when it has none.
func leaseEnd(ctx context.Context, rdb *redis.Client, resource, value string) (int64, bool) {
	ms, err := rdb.ZScore(ctx, leasesKey(resource), value).Result()
	if err != nil {
		return 0, false
	}
	return int64(ms) * int64(time.Millisecond), true
}

// lapse is a place that left resource's queue after its lease's end: its
// waiter did not renew it in time.
type lapse struct {
	resource, value    string
	leaseEnd, seenGone int64
}

// placeWatch polls the leases of the places in some queues (see
// watchPlaces).
type placeWatch struct {
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	lapses []lapse // written by the watch, read once it ended
}

// watchPlaces polls the leases of the places in resources' queues every
// 10 ms until stop, and records each place that left its queue after its
// lease's end (seen gone at a poll later than the end: a place that leaves
// when its waiter acquires or gives up leaves before).
func (s *scenario) watchPlaces(rdb *redis.Client, resources []string) *placeWatch {
	pw := &placeWatch{done: make(chan struct{})}
	pw.wg.Add(1)
	go func() {
		defer pw.wg.Done()
		ctx := context.Background()
		ends := map[[2]string]int64{} // resource and value: lease end (ns)
		for pw.sleep(10 * time.Millisecond) {
			cmds := make([]*redis.ZSliceCmd, len(resources))
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i, r := range resources {
					cmds[i] = p.ZRangeWithScores(ctx, leasesKey(r), 0, -1)
				}
				return nil
			})
			now := history.Now()
			if err != nil {
				continue
			}
			seen := map[[2]string]bool{}
			for i, c := range cmds {
				for _, z := range c.Val() {
					k := [2]string{resources[i], z.Member.(string)}
					seen[k] = true
					ends[k] = int64(z.Score) * int64(time.Millisecond)
				}
			}
			for k, end := range ends {
				if !seen[k] {
					if now > end {
						pw.lapses = append(pw.lapses, lapse{k[0], k[1], end, now})
					}
					delete(ends, k)
				}
			}
		}
	}()
	s.t.Cleanup(func() { pw.stop() }) // a test that failed before its stop
	return pw
}

// sleep sleeps d and reports whether the watch goes on.
func (pw *placeWatch) sleep(d time.Duration) bool {
	select {
	case <-pw.done:
		return false
	case <-time.After(d):
		return true
	}
}

// stop ends the watch (again is a no-op) and returns the lapses it saw.
func (pw *placeWatch) stop() []lapse {
	pw.once.Do(func() { close(pw.done) })
	pw.wg.Wait()
	return pw.lapses
}

// checkPlacesKept checks that every place that lapsed was a waiter's whose
// link was cut for longer than its lease (deps), or whose process stalled
// past the place's lease (see watchStalls): a waiter whose link is fine,
// or cut briefly, renews its place in time.
func (s *scenario) checkPlacesKept(lapses []lapse, deps []departure) {
	cut := map[string]bool{}
	for _, d := range deps {
		cut[d.resource+" "+d.value] = true
	}
	stalls := s.stopStalls()
	for _, l := range lapses {
		ok := cut[l.resource+" "+l.value] || slices.ContainsFunc(stalls, func(st window) bool {
			return time.Duration(st.until-st.from) > s.limits().PlaceKept && st.until >= l.leaseEnd-int64(s.ttl) && st.from <= l.leaseEnd
		})
		s.check("a place lapsed only when its waiter was cut off or stalled past its lease", ok, noMeasure, false,
			"%s (%s) in the queue of %q: lease ended %s, seen gone %s", l.value, byOf(l.value), l.resource, stamp(l.leaseEnd), stamp(l.seenGone))
	}
}

// departure is a dead or cut-off waiter: its holder value in resource's
// queue, when its lease ended, and when it was seen gone from the queue (0:
// it was not, by the end of the watch).
type departure struct {
	worker, resource, value string
	leaseEnd, gone          int64
}

// watchDeparture polls resource's queue until value leaves it, or until
// limit, and returns when it was seen gone (0 when it was not).
func watchDeparture(ctx context.Context, rdb *redis.Client, resource, value string, limit time.Time) int64 {
	for time.Now().Before(limit) {
		_, err := rdb.ZScore(ctx, queueKey(resource), value).Result()
		if err == redis.Nil {
			// Gone by the reply; still there at the poll before, at most
			// 5 ms and a round trip earlier.
			return history.Now()
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}

// checkDepartures checks that each dead or cut-off waiter left the queue
// within a heartbeat of its lease's end.
func (s *scenario) checkDepartures(deps []departure) {
	for _, d := range deps {
		late := time.Duration(d.gone - d.leaseEnd)
		s.check("dead or cut-off waiter left the queue within a heartbeat of its lease's end", d.gone != 0 && late <= s.heartbeat+slack, late, false,
			"%s (%s) in the queue of %q: lease ended %s, gone from the queue %s", d.value, d.worker, d.resource, stamp(d.leaseEnd), endStamp(d.gone))
	}
}

// window is a stretch of time during which a waiter may be dead, cut off
// or without its place (the fault, then its lease's TTL and a heartbeat),
// or, with guard, the server lost the queue and its restart guard holds
// every acquisition back.
type window struct {
	from, until int64
	guard       bool
}

// checkHandoffs checks how fast the queue moved on: for each release that
// freed a resource (the release sent at free) while a Lock call that had
// reported its wait before went on waiting until the next acquisition (of a
// semaphore: the first one answered after the release), the time to that
// acquisition. Outside the fault windows the release tells
// the head its turn (or its watch of the key wakes it), which acquires at
// once: within a retry interval, with room for the scheduling of a busy
// machine (without the turn notices, the next waiter finds out at its
// lease's renewal, a heartbeat later). Within a window it is at most the
// TTL and a heartbeat (not within a guard's, which the restart scenario
// checks). Handoffs after end (the workers stopping) are left out.
func (s *scenario) checkHandoffs(res *history.Result, windows []window, end int64) {
	s.t.Helper()
	events := s.h.Events()
	var calls []history.Event
	var cuts []history.Event
	for _, e := range events {
		switch e.Kind {
		case history.LockCall:
			calls = append(calls, e)
		case history.CutOff:
			cuts = append(cuts, e)
		}
	}
	byRes := map[string][]*history.Holding{}
	for _, hd := range res.Holds {
		byRes[hd.Resource] = append(byRes[hd.Resource], hd)
	}
	for resource, holds := range byRes {
		slices.SortFunc(holds, func(a, b *history.Holding) int { return cmp.Compare(a.Token, b.Token) })
		byHolder := map[string]*history.Holding{}
		for _, hd := range holds {
			byHolder[hd.Holder] = hd
		}
		semaphore := slices.ContainsFunc(holds, func(hd *history.Holding) bool { return hd.Limit > 0 })
		for i, hd := range holds {
			if hd.Release == nil || hd.Release.Outcome != history.OutcomeOK {
				continue
			}
			free := hd.Release.Sent
			// The next acquisition: of a reservation, the next token; of
			// a semaphore, whose other permits change hands meanwhile,
			// the first token whose acquisition answered after the
			// release was sent.
			var next *history.Holding
			for _, b := range holds[i+1:] {
				if !semaphore || b.Acquired > free {
					next = b
					break
				}
			}
			if next == nil || next.Acquired > end {
				continue
			}
			// A waiter that reported its wait before the release and
			// waited, with its link, until next acquired.
			waiting := false
			for _, c := range calls {
				if c.Resource != resource || c.At == 0 || c.At >= free {
					continue
				}
				through := false
				switch c.Outcome {
				case history.OutcomeAcquired:
					through = byHolder[c.Holder] != nil && byHolder[c.Holder].Token >= next.Token
				case history.OutcomeGaveUp:
					through = c.Until > next.Acquired
				}
				for _, cut := range cuts {
					if cut.Worker == c.Worker && cut.At < next.Acquired && cut.Until > c.Call {
						through = false // it may have lost its place
					}
				}
				waiting = waiting || through
			}
			if !waiting {
				continue
			}
			faulty, guarded := false, false
			last := int64(0) // the end of the last of those windows
			for _, w := range windows {
				if w.from < next.Acquired && w.until > free {
					faulty = true
					guarded = guarded || w.guard
					last = max(last, w.until)
				}
			}
			took := time.Duration(next.Acquired - free)
			switch {
			case guarded:
			case faulty:
				// Each dead waiter holds the queue up until its lease's
				// end (or its key's expiry, when a release handed it the
				// key just before its death) and a heartbeat; one killed
				// after the release, until its own.
				s.check("handed over past a dead or cut-off waiter within its TTL and a heartbeat", took <= s.ttl+s.heartbeat+slack || next.Acquired <= last, took, false,
					"%q released by %s at %s, next acquired by %s %v later (%v after the last dead waiter's lease or key and a heartbeat), with a waiter queued",
					resource, hd.Holder, stamp(free), next.Holder, took, time.Duration(next.Acquired-last))
			default:
				s.check("handed over within a retry interval while no waiter was dead or cut off", took <= retry, took, false,
					"%q released by %s at %s, next acquired by %s %v later, with a waiter queued", resource, hd.Holder, stamp(free), next.Holder, took)
			}
		}
	}
}

// dumpCalls returns, one a line for a failure message, what happened to
// resources between from and to: the Lock calls on any of them (a set's
// with its members), their acquisitions and releases, and the kills and
// cuts.
func (s *scenario) dumpCalls(from, to int64, resources ...string) string {
	var b strings.Builder
	ours := func(r string) bool { return slices.Contains(resources, r) }
	for _, e := range s.h.Events() {
		switch {
		case e.Kind == history.Crashed && e.At >= from && e.At <= to:
			fmt.Fprintf(&b, "  %s killed at %s\n", e.Worker, stamp(e.At))
		case e.Kind == history.CutOff && e.Until >= from && e.At <= to:
			fmt.Fprintf(&b, "  %s cut off %s-%s\n", e.Worker, stamp(e.At), stamp(e.Until))
		case e.Kind == history.LockCall && (ours(e.Resource) || slices.ContainsFunc(e.Set, ours)) && e.Call <= to && max(e.At, e.Until, e.Call) >= from:
			set := ""
			if e.Set != nil {
				set = fmt.Sprintf(" (set %v)", e.Set)
			}
			fmt.Fprintf(&b, "  %s began%s %s, waited %s, %s %s %s\n", e.Worker, set, stamp(e.Call), endStamp(e.At), e.Outcome, e.Holder, endStamp(e.Until))
		case e.Kind == history.Acquired && ours(e.Resource) && e.At >= from && e.At <= to:
			fmt.Fprintf(&b, "  %s acquired %s at %s\n", e.Holder, e.Resource, stamp(e.At))
		case e.Kind == history.Released && ours(e.Resource) && e.Reply >= from && e.Sent <= to:
			fmt.Fprintf(&b, "  %s released %s: sent %s, answered %s\n", e.Holder, e.Resource, stamp(e.Sent), stamp(e.Reply))
		}
	}
	return b.String()
}

// checkOrder records the history checker's order check among the
// scenario's checks.
func (s *scenario) checkOrder(res *history.Result) {
	s.t.Helper()
	failed := 0
	for _, v := range res.Violations {
		if v.Check == "fifo" {
			failed++
		}
	}
	if failed > 0 {
		// The violations first (errors of finish too): a long log is cut
		// in its middle where CI shows it.
		seen := map[string]bool{}
		for _, v := range res.Violations {
			if v.Check == "fifo" {
				s.t.Logf("order violated: %v", v)
				seen[v.Resource] = true
			}
		}
		for _, r := range slices.Sorted(maps.Keys(seen)) {
			s.t.Logf("Lock calls on %q:\n%s", r, s.dumpCalls(0, math.MaxInt64, r))
		}
	}
	if res.Waited == 0 {
		s.t.Error("no Lock call waited in the queue")
	}
	// Each violation is an error of finish already.
	s.mu.Lock()
	c := &check{name: fmt.Sprintf("waiter not overtaken by a later Lock call (pairs; %d waits, %d excused)", res.Waited, res.FIFOExcused),
		checked: res.FIFOPairs, failed: failed}
	s.checks = append(s.checks, c)
	s.mu.Unlock()
}

// Fault 16: with Lock callers queued on the server, a worker process is
// killed with kill -9: a waiter behind the head, the head of the queue
// while another holds the resource, or the holder. A dead waiter leaves the
// queue within a heartbeat of its lease's end, and the queue moves on
// within its TTL and a heartbeat; the head takes a dead holder's resource
// over within a retry interval of the key's expiry, and not before it; the
// others keep their order.
func TestFaultQueueKill(t *testing.T) {
	for _, victim := range []string{"waiter", "head", "holder"} {
		t.Run(victim, func(t *testing.T) {
			title := map[string]string{
				"waiter": "queued waiter process killed (kill -9), behind the head",
				"head":   "head of the queue killed (kill -9) while another holds the resource",
				"holder": "holder process killed (kill -9) while waiters queue",
			}[victim]
			s := newScenario(t, 16, "queue: "+title, 4*time.Second)
			procs := map[string]*proc{}
			n := 0
			spawn := func() {
				name := fmt.Sprintf("p%d", n)
				n++
				procs[name] = s.startProc(s.queueSpec(name, s.srv.URL()))
			}
			for range 5 {
				spawn()
			}
			for i := range 3 {
				s.goWorker(s.queueSpec(fmt.Sprintf("w%d", i), s.srv.URL()), nil)
			}
			rdb := s.srv.Client(t)
			ctx := context.Background()
			var (
				windows []window
				deps    []departure
				kills   []holderKill
			)
			for s.running() {
				// Far enough apart that some handoffs see no dead waiter.
				time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
				// Find a victim: a process waiting behind the head, at the
				// head while another holds, or holding while others wait.
				var name, resource, value string
				for deadline := time.Now().Add(time.Second); name == "" && time.Now().Before(deadline); {
					qs, err := readQueues(ctx, rdb, queueResources)
					if err != nil {
						t.Fatal(err)
					}
					for _, q := range qs {
						var candidates []string
						switch victim {
						case "waiter":
							if len(q.waiters) > 1 {
								candidates = q.waiters[1:]
							}
						case "head":
							if len(q.waiters) > 0 && q.holder != "" && q.holder != q.waiters[0] {
								candidates = q.waiters[:1]
							}
						case "holder":
							// One whose holding is in the history already.
							if len(q.waiters) > 0 && q.holder != "" && slices.ContainsFunc(openHoldings(s.h, byOf(q.holder)),
								func(e history.Event) bool { return e.Holder == q.holder }) {
								candidates = []string{q.holder}
							}
						}
						for _, v := range candidates {
							if procs[byOf(v)] != nil {
								name, resource, value = byOf(v), q.resource, v
							}
						}
					}
					if name == "" {
						time.Sleep(5 * time.Millisecond)
					}
				}
				if name == "" {
					continue
				}
				procs[name].kill()
				at := history.Now()
				delete(procs, name)
				s.fault()
				// Its window: until its key expired (a holder), or its
				// lease ended (a waiter), and a heartbeat more.
				until := at + int64(s.ttl)
				keys, _, err := readExpiries(ctx, rdb, queueResources, false)
				if err != nil {
					t.Fatal(err)
				}
				k, held := keys[resource]
				held = held && k.holder == value
				if victim == "holder" {
					if held {
						kills = append(kills, holderKill{value, resource, at, k.lo, k.hi})
						until = k.hi
					}
				} else if held {
					// A waiter that held the key as it was killed: a
					// release handed it over, or it acquired, just
					// before, and it never said so. Its key runs out
					// as a dead holder's does: a TTL after the kill at
					// most, had it renewed the key just before.
					until = min(k.hi, at+int64(s.ttl))
				} else if end, ok := leaseEnd(ctx, rdb, resource, value); ok {
					// Still queued when it died (it did not acquire just
					// before): it must leave the queue.
					gone := watchDeparture(ctx, rdb, resource, value, time.Unix(0, end).Add(s.ttl))
					deps = append(deps, departure{name, resource, value, end, gone})
					until = end
				}
				windows = append(windows, window{from: at, until: until + int64(s.heartbeat+slack)})
				spawn()
			}
			// Time for the last dead waiter's lease or holder's key to run
			// out, and the queue to move on; then, as in fault 3, until
			// each dead holder's resource is taken again, should its
			// waiters have given up meanwhile (up to 10 s).
			time.Sleep(2 * ttl)
			waitTakenOver(s.h, kills, 10*time.Second)
			end := history.Now()
			s.finish(func(res *history.Result) {
				s.checkOrder(res)
				s.checkDepartures(deps)
				s.checkHandoffs(res, windows, end)
				s.checkTakeovers(res, kills)
				if victim == "holder" && len(kills) == 0 {
					t.Error("no holder killed")
				}
				if victim != "holder" && len(deps) == 0 {
					t.Error("no waiter killed while queued")
				}
			})
		})
	}
}

// nextByToken returns the holding of hd's resource with the next token.
func nextByToken(res *history.Result, hd *history.Holding) *history.Holding {
	var next *history.Holding
	for _, b := range res.Holds {
		if b.Resource == hd.Resource && b.Token > hd.Token && (next == nil || b.Token < next.Token) {
			next = b
		}
	}
	return next
}

// Fault 17: the link of a queued waiter to Redis is cut, for 100-200 ms
// (every byte dropped, the connections left open: shorter than its place
// is kept for sure, so it keeps its place, and the order check holds it to
// it) or for twice the TTL (connections reset, new ones refused: its
// place's lease runs out, it leaves the queue within a heartbeat of the
// lease's end, and the queue moves on).
func TestFaultQueueCutWaiter(t *testing.T) {
	s := newScenario(t, 17, fmt.Sprintf("queue: link of a queued waiter cut for 100-200ms (every byte dropped, connections left open) or %v (connections reset, new ones refused)", 2*ttl), 5*time.Second)
	const n = 8
	proxies := map[string]*toxiproxy.Proxy{}
	for i := range n {
		name := fmt.Sprintf("w%d", i)
		proxies[name] = s.proxy(name)
		s.goWorker(s.queueSpec(name, proxyURL(proxies[name])), nil)
	}
	rdb := s.srv.Client(t)
	ctx := context.Background()
	places := s.watchPlaces(rdb, queueResources)
	var (
		windows []window
		deps    []departure
		long    bool
		cuts    [2]int
	)
	for s.running() {
		// Far enough apart that some handoffs see no waiter cut off.
		time.Sleep(time.Duration(300+rand.IntN(300)) * time.Millisecond)
		var name, resource, value string
		for deadline := time.Now().Add(time.Second); name == "" && time.Now().Before(deadline); {
			qs, err := readQueues(ctx, rdb, queueResources)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range qs {
				for _, v := range q.waiters {
					if proxies[byOf(v)] != nil {
						name, resource, value = byOf(v), q.resource, v
					}
				}
			}
			if name == "" {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if name == "" {
			continue
		}
		long = !long
		d := time.Duration(100+rand.IntN(100)) * time.Millisecond
		if long {
			d = 2 * ttl
		}
		// A long cut resets the connections and refuses new ones; a
		// short one drops every byte and keeps them open. (A refused
		// dial makes go-redis dial again only once a second after as
		// many failed dials as its pool has connections: a short cut
		// that refuses dials isolates the waiter for up to a second
		// more, past its lease.)
		p := proxies[name]
		if long {
			p.Stop()
		} else {
			s.addToxic(p, "cut", "timeout", map[string]int64{"timeout": 0})
		}
		from := history.Now()
		s.fault()
		if long {
			// Let what was in flight land, then read its lease: nothing
			// of the waiter reaches the server now.
			time.Sleep(50 * time.Millisecond)
			if end, ok := leaseEnd(ctx, rdb, resource, value); ok {
				gone := watchDeparture(ctx, rdb, resource, value, time.Unix(0, from).Add(d))
				deps = append(deps, departure{name, resource, value, end, gone})
			}
		}
		time.Sleep(time.Until(time.Unix(0, from).Add(d)))
		if long {
			if err := p.Start(); err != nil {
				t.Fatalf("restart proxy: %v", err)
			}
		} else {
			s.removeToxic(p, "cut")
		}
		until := history.Now()
		t.Logf("link of %s (%s in the queue of %q) cut %s-%s", name, value, resource, stamp(from), stamp(until))
		s.h.Add(history.Event{Kind: history.CutOff, Worker: name, At: from, Until: until})
		// A waiter cut off stalls the queue until it is back, or its
		// lease ended (which was before), and a heartbeat. Once a
		// refused link is back, its Client can reach Redis only when
		// go-redis dials again, up to a second later: at the head, it
		// finds a release only then.
		windows = append(windows, window{from: from, until: until + int64(time.Second+retry+slack)})
		cuts[boolIndex(long)]++
	}
	end := history.Now()
	lapses := places.stop()
	s.finish(func(res *history.Result) {
		s.checkOrder(res)
		s.checkDepartures(deps)
		s.checkPlacesKept(lapses, deps)
		s.checkHandoffs(res, windows, end)
		t.Logf("%d short cuts, %d long ones", cuts[0], cuts[1])
		if cuts[0] == 0 || len(deps) == 0 {
			t.Errorf("%d short cuts, %d long ones of a queued waiter: want both", cuts[0], len(deps))
		}
	})
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Fault 18: Redis restarts without persistence while Lock callers queue:
// the queue is lost with the rest, and its restart guard refuses every
// acquisition for a TTL. The waiters, which go on retrying, take the
// resource again within a retry interval of the guard's end; the order
// check excuses the waiters of the lost queue.
func TestFaultQueueRestart(t *testing.T) {
	s := newScenario(t, 18, "queue: Redis restarted without persistence while waiters queue", 4*time.Second)
	for i := range 8 {
		s.goWorker(s.queueSpec(fmt.Sprintf("w%d", i), s.srv.URL()), nil)
	}
	rdb := s.srv.Client(t)
	ctx := context.Background()
	// restart is a restart with waiters queued: the resources that had
	// some, and when the restart guard was set (in the server's ms).
	type restart struct {
		lost     history.Event
		queued   []string
		guardSet int64
	}
	var (
		restarts []restart
		windows  []window
	)
	for s.running() {
		// Longer than the guard, so that the workers queue again.
		time.Sleep(ttl + time.Duration(200+rand.IntN(300))*time.Millisecond)
		var queued []string
		for deadline := time.Now().Add(time.Second); len(queued) == 0 && time.Now().Before(deadline); {
			qs, err := readQueues(ctx, rdb, queueResources)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range qs {
				if len(q.waiters) >= 2 {
					queued = append(queued, q.resource)
				}
			}
			if len(queued) == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if len(queued) == 0 {
			continue
		}
		d := history.Event{Kind: history.DataLost, At: history.Now()}
		s.srv.Restart(t)
		d.Until = history.Now()
		s.h.Add(d)
		s.fault()
		// The first script after the restart sets the guard's marker.
		var set int64
		for deadline := time.Now().Add(ttl); set == 0 && time.Now().Before(deadline); {
			if v, err := rdb.Get(ctx, "{reservation}:restart-guard").Result(); err == nil {
				ms, _ := strconv.ParseInt(v, 10, 64)
				set = ms * int64(time.Millisecond)
			} else {
				time.Sleep(2 * time.Millisecond)
			}
		}
		t.Logf("restart %s-%s with waiters queued for %v; guard set at %s", stamp(d.At), stamp(d.Until), queued, stamp(set))
		restarts = append(restarts, restart{d, queued, set})
		guardEnd := cmp.Or(set, d.Until) + int64(ttl)
		windows = append(windows, window{from: d.At, until: guardEnd + int64(retry+slack), guard: true})
	}
	// Time for the last guard to pass, and the waiters to acquire.
	time.Sleep(2 * ttl)
	end := history.Now()
	s.finish(func(res *history.Result) {
		s.checkOrder(res)
		s.checkHandoffs(res, windows, end)
		// A token is the server's time in microseconds when it was
		// issued (the fencing key was lost with the rest): it tells on
		// which side of the restart an acquisition was processed.
		processed := func(hd *history.Holding) int64 { return hd.Token * 1000 }
		for _, r := range restarts {
			if r.guardSet == 0 {
				t.Errorf("restart at %s: no restart guard set within a TTL", stamp(r.lost.At))
				continue
			}
			guardEnd := r.guardSet + int64(ttl)
			for _, resource := range r.queued {
				var first *history.Holding
				for _, hd := range res.Holds {
					if hd.Resource == resource && processed(hd) >= r.lost.Until && (first == nil || hd.Token < first.Token) {
						first = hd
					}
				}
				if first == nil {
					t.Errorf("%q, with waiters queued at the restart at %s, never acquired again", resource, stamp(r.lost.At))
					continue
				}
				took := time.Duration(first.Acquired - guardEnd)
				s.check("acquired again within a retry interval of the restart guard's end", took <= retry+slack && processed(first) >= guardEnd-int64(time.Millisecond), took, false,
					"%q, with waiters queued at the restart at %s, acquired again by %s at %s (processed %s), the guard ended at %s",
					resource, stamp(r.lost.At), first.Holder, stamp(first.Acquired), stamp(processed(first)), stamp(guardEnd))
			}
		}
		if len(restarts) == 0 {
			t.Error("no restart with waiters queued")
		}
	})
}

// A Lock call that heads the queue just after its Client's link came back
// from a long cut keeps renewing its place: the notifier may take a second
// or more to watch keys again (its watch loop backs off while the link is
// down), and a head that waited for that watch before its next attempt
// let its place's lease run out, so that a later Lock call overtook it. A
// set's Lock (here of 2 members, the second free) the same.
func TestQueueHeadKeepsItsPlaceAfterReconnect(t *testing.T) {
	srv := redistest.Start(t)
	tox := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	rdb := srv.Client(t)
	ctx := context.Background()
	const resource = "after-cut"
	newClient := func(t *testing.T, url, by string) *reservation.Client {
		c, err := reservation.New(url, &reservation.Options{By: by, TTL: ttl, HeartbeatInterval: ttl / 3,
			RetryInterval: retry, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	holder := newClient(t, srv.URL(), "holder")
	for i, tc := range []struct {
		name  string
		after time.Duration // from the link's return to the Lock call
		opts  []reservation.LockOption
	}{
		{"lock/at-once", 0, nil},
		{"lock/100ms-later", 100 * time.Millisecond, nil},
		{"set/at-once", 0, []reservation.LockOption{reservation.With("after-cut-free")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := toxiproxy.NewProxy(tox, fmt.Sprintf("v%d", i), "127.0.0.1:0", srv.Addr)
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Stop)
			by := fmt.Sprintf("victim%d", i)
			v := newClient(t, proxyURL(p), by)
			h, err := holder.Lock(ctx, resource)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Release(ctx)
			// A first wait starts v's notifier; then the link is cut for
			// long enough that its loops back off to their longest sleep.
			wctx, cancel := context.WithTimeout(ctx, 2*retry)
			_, _ = v.Lock(wctx, resource, tc.opts...)
			cancel()
			p.Stop()
			time.Sleep(3 * time.Second)
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(tc.after)
			got := make(chan error, 1)
			lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			go func() {
				r, err := v.Lock(lctx, resource, tc.opts...)
				if err == nil {
					err = r.Release(ctx)
				}
				got <- err
			}()
			// v heads the queue: watch its place's lease for 1.5 s.
			var (
				value   string
				lastEnd float64
				worst   time.Duration
			)
			for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				zs, err := rdb.ZRangeWithScores(ctx, leasesKey(resource), 0, -1).Result()
				if err != nil {
					t.Fatal(err)
				}
				var end float64
				for _, z := range zs {
					if m := z.Member.(string); strings.HasPrefix(m, by+"-") && (value == "" || m == value) {
						value, end = m, z.Score
					}
				}
				now := float64(time.Now().UnixMilli())
				switch {
				case value == "":
					continue // not queued yet
				case end == 0:
					t.Fatalf("%s left the queue at %s, its lease having ended at %s: a later Lock call goes first",
						value, stamp(int64(now)*1e6), stamp(int64(lastEnd)*1e6))
				case end != lastEnd:
					if lastEnd != 0 {
						// Renewed with lastEnd - now left.
						worst = max(worst, ttl-time.Duration(lastEnd-now)*time.Millisecond)
					}
					lastEnd = end
				}
			}
			if value == "" {
				t.Fatalf("%s never queued", by)
			}
			t.Logf("longest between two renewals of the head's place: %v", worst)
			if worst > ttl-slack {
				t.Errorf("the head's place went %v without renewal, within %v of its lease's end (%v)", worst, slack, ttl)
			}
			if err := h.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				t.Fatal(err)
			}
		})
	}
}
