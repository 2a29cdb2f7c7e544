package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation/faults/history"
	"github.com/redis-reservation/reservation/faults/internal/worker"
)

// The semaphore scenarios (19 to 22): 8 workers reserve one of the 3
// permits of one resource (reservation.Limit), with Lock calls queued on
// the server as in the queue scenarios, while a holder or a waiter is
// killed, Redis restarts without its data, or a holder's link is cut.
// Besides the usual history checks, the history checker fails on more than
// 3 holders at once (stale ones that a fault excuses left out) and on a
// holder of another limit meanwhile, checks the one sequence of tokens of
// the permits, and checks the queue's order; each scenario checks that the
// semaphore was full at times (3 holders at once), so that the limit was
// put to the test.

// semResource is the semaphore of the scenarios, and semLimit its permits.
const (
	semResource = "sem"
	semLimit    = 3
)

// semSpec returns a worker spec for the semaphore scenarios: one of
// semLimit permits of semResource, mostly Lock calls, recorded with their
// waits, and holdings of up to a TTL, so that the permits change hands
// several times a second while others wait.
func (s *scenario) semSpec(name, url string) worker.Spec {
	spec := s.spec(name, url)
	spec.Resources = []string{semResource}
	spec.Limit = semLimit
	spec.Queue = true
	spec.LockRatio = 0.1 // TryLock, refused while anyone queues
	spec.HoldMin, spec.HoldMax = 20*time.Millisecond, s.ttl
	spec.WaitMin, spec.WaitMax = 300*time.Millisecond, 3*time.Second
	return spec
}

// semTitle starts the title of a semaphore scenario.
var semTitle = fmt.Sprintf("semaphore of %d permits, 8 workers: ", semLimit)

// readKey reads the value of key and when it expires (see keyExpiry) in one
// round trip; held is false when the key is gone. A key without an expiry
// has lo and hi 0.
func readKey(ctx context.Context, rdb *redis.Client, key string) (k keyExpiry, held bool) {
	pipe := rdb.Pipeline()
	get := pipe.Get(ctx, key)
	pttl := pipe.PTTL(ctx, key)
	sent := history.Now()
	_, _ = pipe.Exec(ctx)
	reply := history.Now()
	if get.Err() != nil {
		return keyExpiry{}, false
	}
	k.holder = get.Val()
	if p := int64(pttl.Val()); pttl.Err() == nil && p > 0 {
		k.lo, k.hi = sent+p, reply+p+int64(time.Millisecond)
	}
	return k, true
}

// checkFull records that the semaphore was full at times: as many holders
// at once as it has permits. More fail the history check.
func (s *scenario) checkFull(res *history.Result) {
	s.t.Helper()
	peak := res.Peaks[semResource]
	s.check(fmt.Sprintf("semaphore full at times (%d holders at once), never past it", semLimit), peak == semLimit, noMeasure, false,
		"%q had at most %d holders at once, want %d", semResource, peak, semLimit)
}

// permitHolding returns the first holding of the permit key acquired after
// at.
func permitHolding(res *history.Result, key string, at int64) *history.Holding {
	var next *history.Holding
	for _, hd := range res.Holds {
		if hd.Key == key && hd.Acquired > at && (next == nil || hd.Acquired < next.Acquired) {
			next = hd
		}
	}
	return next
}

// Fault 19: a process holding a permit is killed with kill -9, every other
// time before its first renewal (the permit's expiry is then the
// acquisition's own) and else at a random phase of its heartbeat. The
// permit's key expires within the TTL of the kill (read with PTTL once the
// process is gone), and the waiters take it again within one retry
// interval of its expiry.
func TestFaultSemaphoreKillHolder(t *testing.T) {
	s := newScenario(t, 19, semTitle+"holder process killed (kill -9)", 4*time.Second)
	procs := map[string]*proc{}
	var names []string
	spawn := func() {
		name := fmt.Sprintf("p%d", len(names))
		names = append(names, name)
		procs[name] = s.startProc(s.semSpec(name, s.srv.URL()))
	}
	for range 4 {
		spawn()
	}
	for i := range 4 {
		s.goWorker(s.semSpec(fmt.Sprintf("w%d", i), s.srv.URL()), nil)
	}
	// A killed holding, its permit's key and when it expires.
	type kill struct {
		holder, key string
		at          int64
		exp         keyExpiry
	}
	var kills []kill
	var windows []window // a killed process's place left in the queue
	rdb := s.srv.Client(t)
	ctx := context.Background()
	for n := 0; s.running(); n++ {
		time.Sleep(time.Duration(100+rand.IntN(300)) * time.Millisecond)
		var alive []string
		for _, name := range names {
			if procs[name] != nil {
				alive = append(alive, name)
			}
		}
		var ev history.Event
		var ok bool
		if n%2 == 0 {
			// Its first renewal is due a heartbeat after the acquisition.
			_, ev, ok = s.waitFresh(alive, heartbeat/4)
		} else if ev, ok = s.waitHolding(alive...); ok {
			time.Sleep(time.Duration(rand.IntN(int(heartbeat))))
		}
		if !ok {
			continue
		}
		procs[ev.Worker].kill()
		at := history.Now()
		delete(procs, ev.Worker)
		s.fault()
		if until, ok := deadPlaces(ctx, t, rdb, ev.Worker, []string{semResource}); ok {
			// It had released, and its next Lock call had taken a place:
			// it stands in the queue until its lease ends.
			windows = append(windows, window{from: at, until: until + int64(s.heartbeat+slack)})
		}
		if k, held := readKey(ctx, rdb, ev.Key); held && k.holder == ev.Holder {
			// The key expires no sooner than lo, and at the latest a TTL
			// after the kill (its last renewal came before).
			s.check("killed holder's permit expires within the TTL of the kill", k.lo != 0 && k.lo-at <= int64(ttl),
				time.Duration(k.lo-at), false,
				"permit %s of %s, killed at %s, expires at %s (0: never)", ev.Key, ev.Holder, stamp(at), endStamp(k.lo))
			kills = append(kills, kill{ev.Holder, ev.Key, at, k})
		}
		// Otherwise it released just before the kill.
		spawn()
	}
	// Time for the last dead permit to expire, and a waiter to take it.
	time.Sleep(2 * ttl)
	s.finish(func(res *history.Result) {
		s.checkFull(res)
		taken := 0
		for _, k := range kills {
			next := permitHolding(res, k.key, k.at)
			if next == nil || k.exp.lo == 0 {
				t.Logf("permit %s of %s, killed at %s, not taken again by the end", k.key, k.holder, stamp(k.at))
				continue
			}
			taken++
			if !beganReleasing(res, k.holder) {
				s.check("nobody took the permit before its key expired", next.Acquired >= k.exp.lo,
					time.Duration(next.Acquired-k.exp.lo), true,
					"%s took permit %s at %s, before the key of %s (killed at %s) expired at %s",
					next.Holder, k.key, stamp(next.Acquired), k.holder, stamp(k.at), stamp(k.exp.lo))
			}
			// As in fault 3: from the key's expiry (at the latest hi), or
			// from when its next holder began to wait, if later.
			from := max(k.exp.hi, next.Call)
			took := time.Duration(next.Acquired - from)
			if within(windows, from, next.Acquired) {
				s.check("killed holder's permit taken again past a dead waiter within its TTL and a heartbeat of its expiry", took <= s.ttl+s.heartbeat+slack, took, false,
					"permit %s taken again by %s %v after its key expired at %s (or it began to wait)", k.key, next.Holder, took, stamp(k.exp.hi))
				continue
			}
			s.check("killed holder's permit taken again within one retry interval of its expiry", took <= retry+slack, took, false,
				"permit %s taken again by %s %v after its holder %s was killed, %v after its key expired at %s (or it began to wait), want within %v; Lock calls then:\n%s",
				k.key, next.Holder, time.Duration(next.Acquired-k.at), k.holder, took, stamp(k.exp.hi), retry,
				s.dumpCalls(k.at-int64(time.Second), next.Acquired, semResource))
		}
		if taken == 0 {
			t.Error("no killed holder's permit was taken again")
		}
		t.Logf("%d of the killed processes had released and were waiting again", len(windows))
	})
}

// Fault 20: a process waiting in the semaphore's queue is killed with
// kill -9, as often at the head of the queue (the others then wait for its
// lease to end, permits free or not) as behind it. The dead
// waiter leaves the queue within a heartbeat of its lease's end, the queue
// moves on (handoffs as in the queue scenarios), and the others keep their
// order.
func TestFaultSemaphoreKillWaiter(t *testing.T) {
	s := newScenario(t, 20, semTitle+"queued waiter process killed (kill -9), at the head of the queue or behind it", 4*time.Second)
	procs := map[string]*proc{}
	n := 0
	spawn := func() {
		name := fmt.Sprintf("p%d", n)
		n++
		procs[name] = s.startProc(s.semSpec(name, s.srv.URL()))
	}
	for range 5 {
		spawn()
	}
	for i := range 3 {
		s.goWorker(s.semSpec(fmt.Sprintf("w%d", i), s.srv.URL()), nil)
	}
	rdb := s.srv.Client(t)
	ctx := context.Background()
	var (
		windows []window
		deps    []departure
		heads   int
	)
	for s.running() {
		// Far enough apart that some handoffs see no dead waiter.
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		head := heads <= len(deps)-heads // the kind killed fewer times so far
		var name, value string
		for deadline := time.Now().Add(time.Second); name == "" && time.Now().Before(deadline); {
			qs, err := readQueues(ctx, rdb, []string{semResource})
			if err != nil {
				t.Fatal(err)
			}
			candidates := qs[0].waiters
			if head {
				candidates = candidates[:min(len(candidates), 1)]
			} else if len(candidates) > 0 {
				candidates = candidates[1:]
			}
			for _, v := range candidates {
				if procs[byOf(v)] != nil {
					name, value = byOf(v), v
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
		until := at + int64(s.ttl)
		if end, ok := leaseEnd(ctx, rdb, semResource, value); ok {
			// Still queued when it died (it did not acquire just
			// before): it must leave the queue.
			gone := watchDeparture(ctx, rdb, semResource, value, time.Unix(0, end).Add(s.ttl))
			deps = append(deps, departure{name, semResource, value, end, gone})
			until = end
			if head {
				heads++
			}
		}
		windows = append(windows, window{from: at, until: until + int64(s.heartbeat+slack)})
		spawn()
	}
	time.Sleep(2 * ttl)
	end := history.Now()
	s.finish(func(res *history.Result) {
		s.checkFull(res)
		s.checkOrder(res)
		s.checkDepartures(deps)
		s.checkHandoffs(res, windows, end)
		t.Logf("%d waiters killed at the head of the queue, %d behind it", heads, len(deps)-heads)
		if heads == 0 || heads == len(deps) {
			t.Errorf("%d waiters killed at the head of the queue, %d behind it: want both", heads, len(deps)-heads)
		}
	})
}

// Fault 21: Redis restarts without persistence while the permits are held
// and waiters queue: the permits, the semaphore's marker and the queue are
// lost. Every holder reports its loss within one heartbeat, the restart
// guard keeps everyone from acquiring meanwhile (so that the old holders
// and the new ones are never more than the limit together), and tokens
// keep growing.
func TestFaultSemaphoreRestart(t *testing.T) {
	s := newScenario(t, 21, semTitle+"Redis restarted without persistence", 4*time.Second)
	for i := range 8 {
		s.goWorker(s.semSpec(fmt.Sprintf("w%d", i), s.srv.URL()), nil)
	}
	rdb := s.srv.Client(t)
	ctx := context.Background()
	var losses []history.Event
	for s.running() {
		// Longer than the guard, so that the workers hold again.
		time.Sleep(ttl + time.Duration(300+rand.IntN(400))*time.Millisecond)
		held := 0
		for i := range semLimit {
			if rdb.Exists(ctx, permitKey(semResource, i+1)).Val() == 1 {
				held++
			}
		}
		d := history.Event{Kind: history.DataLost, At: history.Now()}
		s.srv.Restart(t)
		d.Until = history.Now()
		s.h.Add(d)
		losses = append(losses, d)
		s.fault()
		t.Logf("restart with %d permits held, took %v", held, time.Duration(d.Until-d.At))
	}
	time.Sleep(ttl)
	s.finish(func(res *history.Result) {
		s.checkFull(res)
		s.checkDataLoss(res, losses, "restart", []string{semResource})
	})
}

// permitKey returns the key of permit i (from 1) of resource, a name
// without braces.
func permitKey(resource string, i int) string {
	return "{reservation-" + resource + "}:permit-" + strconv.Itoa(i)
}

// Fault 22: the link from one holder of a permit to Redis is cut, in turn
// with connections reset and new ones refused, and with every byte
// dropped. The holder reports its loss before its permit's key expires on
// the server (read with PTTL after the cut), and nobody takes that permit
// before then; the others may take the free ones.
func TestFaultSemaphoreCutLink(t *testing.T) {
	s := newScenario(t, 22, semTitle+"link of one holder cut (connections reset and refused, or every byte dropped)", 4*time.Second)
	const n = 8
	proxies := make([]*toxiproxy.Proxy, n)
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("w%d", i)
		proxies[i] = s.proxy(names[i])
		// Long holdings, so that a cut holder learns of its loss before
		// it would release.
		spec := s.semSpec(names[i], proxyURL(proxies[i]))
		spec.HoldMin, spec.HoldMax = 2*ttl, 3*ttl
		s.goWorker(spec, nil)
	}
	rdb := s.srv.Client(t)
	ctx := context.Background()
	type cut struct {
		holder, key string
		at          int64
		exp         keyExpiry
	}
	var cuts []cut
	var restored time.Time // the end of the last cut that refused dials
	for round := 0; s.running(); round++ {
		time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
		// A holding fresh enough that its holder will not release it
		// before its local deadline.
		i, ev, ok := s.waitFresh(names, ttl-2*retry)
		if !ok {
			continue
		}
		p := proxies[i]
		reset := round%2 == 0
		if reset {
			p.Stop()
		} else {
			s.addToxic(p, "cut", "timeout", map[string]int64{"timeout": 0})
		}
		at := history.Now()
		// Let what was in flight land, then read when the permit's key
		// will expire: nothing from the holder reaches the server now.
		time.Sleep(50 * time.Millisecond)
		k, held := readKey(ctx, rdb, ev.Key)
		if held && k.holder == ev.Holder && k.lo != 0 {
			s.fault()
			cuts = append(cuts, cut{ev.Holder, ev.Key, at, k})
			time.Sleep(time.Until(time.Unix(0, k.hi)) + 2*retry)
		}
		// Otherwise the holding ended just before the cut.
		if reset {
			if err := p.Start(); err != nil {
				t.Fatalf("restart proxy: %v", err)
			}
			restored = time.Now()
		} else {
			s.removeToxic(p, "cut")
		}
		// A Lock call of the cut worker may have lost its place.
		s.h.Add(history.Event{Kind: history.CutOff, Worker: ev.Worker, At: at, Until: history.Now()})
	}
	// After a refused dial, go-redis dials again once a second, from a
	// goroutine that outlives its client by up to a second: let it end
	// before the test does.
	time.Sleep(time.Until(restored.Add(time.Second + retry)))
	s.finish(func(res *history.Result) {
		s.checkFull(res)
		for _, c := range cuts {
			hd := holdingOf(res, c.holder)
			if hd == nil {
				t.Errorf("cut holding %s not in the history", c.holder)
				continue
			}
			s.check("loss reported before the permit's key expired on the server", hd.LostAt != 0 && hd.LostAt < c.exp.lo,
				time.Duration(c.exp.lo-hd.LostAt), true,
				"holding %s of permit %s (cut at %s) reported its loss at %s (ended %s at %s), its key expired at %s-%s", c.holder, c.key,
				stamp(c.at), endStamp(hd.LostAt), hd.EndKind, endStamp(hd.End), stamp(c.exp.lo), stamp(c.exp.hi))
			if next := permitHolding(res, c.key, c.at); next != nil {
				s.check("nobody else held the permit before its key expired", next.Acquired >= c.exp.lo,
					time.Duration(next.Acquired-c.exp.lo), true,
					"%s took permit %s at %s, before the cut holder's key expired at %s",
					next.Holder, c.key, stamp(next.Acquired), stamp(c.exp.lo))
			}
		}
		if len(cuts) == 0 {
			t.Error("no cut injected")
		}
	})
}
