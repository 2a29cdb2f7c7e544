package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation/faults/history"
	"github.com/redis-reservation/reservation/faults/internal/worker"
)

// The set scenarios (23 to 26): 8 workers reserve sets of 2 or 3 of 4
// resources at once (reservation.With), each set's members picked at
// random and named in a random order, so that the sets overlap in every
// order, with Lock calls queued on the server as in the queue scenarios,
// while a set's holder or a waiter is killed, Redis restarts without its
// data, or a holder's link is cut. Besides the usual history checks, which
// check each member's holding as one of its resource (exclusion, growing
// tokens, the queue's order in each member's queue), the history checker
// checks what is proper to sets: a set's members are held from one
// acquisition, all of them; a loss of one ends them all; nobody holds a
// member while the set holds another. Each scenario checks that the
// acquisitions kept coming (no deadlock, no stall past what its faults
// explain).

// setResources are what the set workers contend for: 4, so that sets of 2
// or 3 overlap often, and two sets of 2 can be held at once.
var setResources = []string{"set-a", "set-b", "set-c", "set-d"}

// Holdings of the set scenarios: short, so that the sets change hands
// often and the queues move.
const (
	setHoldMin = 20 * time.Millisecond
	setHoldMax = 300 * time.Millisecond
)

// setSpec returns a worker spec for the set scenarios: sets of 2 (of 3
// for one worker in four, by i), mostly Lock calls, recorded with their
// waits.
func (s *scenario) setSpec(name, url string, i int) worker.Spec {
	spec := s.spec(name, url)
	spec.Resources = setResources
	spec.SetSize = 2
	if i%4 == 3 {
		spec.SetSize = 3
	}
	spec.Queue = true
	spec.LockRatio = 0.1 // TryLock, refused while anyone queues for a member
	spec.HoldMin, spec.HoldMax = setHoldMin, setHoldMax
	spec.WaitMin, spec.WaitMax = 300*time.Millisecond, 3*time.Second
	return spec
}

// setTitle starts the title of a set scenario.
const setTitle = "sets of 2 or 3 of 4 resources, in random order, 8 workers: "

// setKey is the reservation key of resource.
func setKey(resource string) string { return "reservation-" + resource }

// memberKey names a member's holding: a set's holder value and the member.
type memberKey struct{ holder, resource string }

// memberOf answers the holding of resource by holder (a set's member's).
func memberOf(res *history.Result, holder, resource string) *history.Holding {
	for _, hd := range res.Holds {
		if hd.Holder == holder && hd.Resource == resource {
			return hd
		}
	}
	return nil
}

// setReady answers when every member of the set that n is a member of was
// free for n to take: the latest, over its members, of the end of the
// member's previous holding (the release sent; the key's expiry, at the
// latest, for a killed holder's whose expiry is in expiries), and of the
// end of every Lock call that shared a member and gave up before n
// acquired (it may have been ahead of n in that member's queue). It
// answers false when a previous holding ended in a way that says nothing
// of when its key was freed (lost, a release that failed, killed with no
// expiry read). how says, for a failure message, how the last member was
// freed.
func setReady(res *history.Result, calls []history.Event, n *history.Holding, expiries map[memberKey]int64) (ready int64, how string, ok bool) {
	members := n.Set
	if members == nil {
		members = []string{n.Resource}
	}
	for _, m := range members {
		var prev *history.Holding
		for _, hd := range res.Holds {
			if hd.Resource == m && hd.Holder != n.Holder && hd.Acquired < n.Acquired && (prev == nil || hd.Acquired > prev.Acquired) {
				prev = hd
			}
		}
		switch {
		case prev == nil:
		case prev.EndKind == history.Released && prev.Release.Outcome == history.OutcomeOK:
			if prev.Release.Sent > ready {
				ready = prev.Release.Sent
				how = fmt.Sprintf("%s released by %s: sent %s, answered %s", m, prev.Holder, stamp(prev.Release.Sent), stamp(prev.Release.Reply))
			}
		case prev.EndKind == history.Crashed && expiries[memberKey{prev.Holder, m}] != 0:
			if e := expiries[memberKey{prev.Holder, m}]; e > ready {
				ready = e
				how = fmt.Sprintf("%s of the killed %s expired", m, prev.Holder)
			}
		default:
			return 0, "", false
		}
	}
	for _, c := range calls {
		if c.Outcome == history.OutcomeGaveUp && c.Until < n.Acquired && c.Until > ready &&
			slices.ContainsFunc(c.Set, func(r string) bool { return slices.Contains(members, r) }) {
			ready = c.Until
			how = fmt.Sprintf("%s's Lock call of %v gave up", c.Worker, c.Set)
		}
	}
	return ready, how, true
}

// lockCalls answers the LockCall events of the history.
func (s *scenario) lockCalls() []history.Event {
	var calls []history.Event
	for _, e := range s.h.Events() {
		if e.Kind == history.LockCall {
			calls = append(calls, e)
		}
	}
	return calls
}

// checkSetHandoffs checks how fast a set passed to a waiter once all its
// members were free: for each set acquired by a Lock call that had
// reported its wait before its last member was freed (see setReady), the
// time from then to the acquisition. Outside the fault windows, a release
// (or the expiry of a dead holder's key) wakes the head of the queues at
// once: within a retry interval. Within a window (a dead waiter ahead in a
// queue) it is at most the TTL and a heartbeat. Sets acquired after end
// (the workers stopping) are left out.
func (s *scenario) checkSetHandoffs(res *history.Result, windows []window, expiries map[memberKey]int64, end int64) {
	s.t.Helper()
	calls := s.lockCalls()
	for _, c := range calls {
		if c.Outcome != history.OutcomeAcquired || c.At == 0 || len(c.Set) == 0 {
			continue
		}
		n := memberOf(res, c.Holder, c.Set[0])
		if n == nil || n.Acquired > end {
			continue
		}
		ready, how, ok := setReady(res, calls, n, expiries)
		if !ok || c.At >= ready {
			continue // it did not wait for the last member to be freed
		}
		took := time.Duration(n.Acquired - ready)
		if within(windows, ready, n.Acquired) {
			s.check("set handed over past a dead waiter within its TTL and a heartbeat of its last member's release", took <= s.ttl+s.heartbeat+slack, took, false,
				"set %v of %s acquired %v after its last member was free (%s)", n.Set, n.Holder, took, stamp(ready))
		} else {
			s.check("set handed over within a retry interval of its last member's release", took <= retry, took, false,
				"set %v of %s acquired %v after its last member was free (%s: %s); Lock calls then:\n%s", n.Set, n.Holder, took, stamp(ready), how,
				s.dumpCalls(ready-int64(time.Second), n.Acquired, n.Set...))
		}
	}
}

// checkProgress checks that the sets kept being acquired while the
// traffic ran (from the first acquisition to until): no gap between two
// acquisitions longer than a TTL and a heartbeat (a dead holder's keys
// expiring, or a dead waiter's places), the longest holding, a retry
// interval and the scheduling slack. Overlapping sets asked in different
// orders that deadlocked would stall until their Lock calls gave up
// (0.3-3 s).
func (s *scenario) checkProgress(res *history.Result, holdMax time.Duration, until int64) {
	s.t.Helper()
	var at []int64
	for _, hd := range res.Holds {
		if hd.Set != nil && hd.Resource == hd.Set[0] && hd.Acquired <= until {
			at = append(at, hd.Acquired)
		}
	}
	slices.Sort(at)
	bound := s.ttl + s.heartbeat + holdMax + retry + slack
	var worst time.Duration
	var from int64
	for i := 1; i < len(at); i++ {
		if d := time.Duration(at[i] - at[i-1]); d > worst {
			worst, from = d, at[i-1]
		}
	}
	s.check(fmt.Sprintf("sets acquired all along, no gap over %v (no deadlock)", bound), len(at) > 1 && worst <= bound, worst, false,
		"%d set acquisitions; the longest gap, %v, began at %s", len(at), worst, stamp(from))
}

// Fault 23: a process holding a set is killed with kill -9, every other
// time before its first renewal and else at a random phase of its
// heartbeat. Every member's key expires within the TTL of the kill (read
// with PTTL once the process is gone), nobody takes a member before its
// key expired, and a waiter takes it within one retry interval of when
// its own whole set was free. A process picked while it held may have
// released and begun to wait again by the kill: its places stand in the
// queues until their leases end, and a handoff past them is held to the
// TTL and a heartbeat, as in fault 24.
func TestFaultSetKillHolder(t *testing.T) {
	s := newScenario(t, 23, setTitle+"holder process killed (kill -9)", 5*time.Second)
	procs := map[string]*proc{}
	var names []string
	spawn := func() {
		name := fmt.Sprintf("p%d", len(names))
		procs[name] = s.startProc(s.setSpec(name, s.srv.URL(), len(names)))
		names = append(names, name)
	}
	for range 4 {
		spawn()
	}
	for i := range 4 {
		s.goWorker(s.setSpec(fmt.Sprintf("w%d", i), s.srv.URL(), i), nil)
	}
	// A killed set's member: its holding, its key's expiry read after the
	// kill, and when the kill was.
	type kill struct {
		holder, resource string
		at               int64
		exp              keyExpiry
	}
	var kills []kill
	expiries := map[memberKey]int64{}
	var windows []window // a killed process's places left in the queues
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
		if until, ok := deadPlaces(ctx, t, rdb, ev.Worker, setResources); ok {
			// It had released, and its next Lock call had taken places:
			// they stand in the queues until their leases end.
			windows = append(windows, window{from: at, until: until + int64(s.heartbeat+slack)})
		}
		for _, m := range ev.Set {
			k, held := readKey(ctx, rdb, setKey(m))
			if !held || k.holder != ev.Holder {
				continue // released just before the kill
			}
			s.check("every member's key of the killed holder's set expires within the TTL of the kill", k.lo != 0 && k.lo-at <= int64(ttl),
				time.Duration(k.lo-at), false,
				"member %s of the set %v of %s, killed at %s, expires at %s (0: never)", m, ev.Set, ev.Holder, stamp(at), endStamp(k.lo))
			kills = append(kills, kill{ev.Holder, m, at, k})
			expiries[memberKey{ev.Holder, m}] = k.hi
		}
		spawn()
	}
	until := history.Now()
	// Time for the last dead set's keys to expire, and waiters to take them.
	time.Sleep(2 * ttl)
	end := history.Now()
	s.finish(func(res *history.Result) {
		s.checkOrder(res)
		s.checkProgress(res, setHoldMax, until)
		s.checkSetHandoffs(res, windows, expiries, end)
		t.Logf("%d of the killed processes had released and were waiting again", len(windows))
		calls := s.lockCalls()
		taken := 0
		for _, k := range kills {
			next := nextHolding(res, k.resource, k.at)
			if next == nil || k.exp.lo == 0 {
				t.Logf("member %s of %s, killed at %s, not taken again by the end", k.resource, k.holder, stamp(k.at))
				continue
			}
			taken++
			if !beganReleasing(res, k.holder) {
				s.check("nobody took a member of the killed set before its key expired", next.Acquired >= k.exp.lo,
					time.Duration(next.Acquired-k.exp.lo), true,
					"%s took %s at %s, before the key of %s (killed at %s) expired at %s",
					next.Holder, k.resource, stamp(next.Acquired), k.holder, stamp(k.at), stamp(k.exp.lo))
			}
			ready, _, ok := setReady(res, calls, next, expiries)
			if !ok {
				continue // another member of the taker's set was freed by a loss
			}
			from := max(ready, next.Call)
			took := time.Duration(next.Acquired - from)
			if within(windows, from, next.Acquired) {
				s.check("killed set's member taken again past a dead waiter within its TTL and a heartbeat of when the taker's whole set was free", took <= s.ttl+s.heartbeat+slack, took, false,
					"%s taken again by %s (set %v) %v after its last member was free at %s", k.resource, next.Holder, next.Set, took, stamp(from))
				continue
			}
			s.check("killed set's member taken again within one retry interval of when the taker's whole set was free", took <= retry+slack, took, false,
				"%s taken again by %s (set %v) %v after %s was killed, %v after its last member was free at %s (or it began to wait); Lock calls then:\n%s",
				k.resource, next.Holder, next.Set, time.Duration(next.Acquired-k.at), k.holder, took, stamp(from),
				s.dumpCalls(k.at-int64(time.Second), next.Acquired, next.Set...))
		}
		if taken == 0 {
			t.Error("no killed set's member was taken again")
		}
	})
}

// watchDepartures polls the queues of resources until value leaves each,
// or until limit, and answers when it was seen gone from each (0 when it
// was not).
func watchDepartures(ctx context.Context, rdb *redis.Client, resources []string, value string, limit time.Time) []int64 {
	gone := make([]int64, len(resources))
	for left := len(resources); left > 0 && time.Now().Before(limit); {
		pipe := rdb.Pipeline()
		scores := make([]*redis.FloatCmd, len(resources))
		for i, r := range resources {
			scores[i] = pipe.ZScore(ctx, queueKey(r), value)
		}
		_, _ = pipe.Exec(ctx)
		now := history.Now()
		for i := range resources {
			if gone[i] == 0 && scores[i].Err() == redis.Nil {
				gone[i] = now
				left--
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return gone
}

// Fault 24: a process waiting for a set in the queues of its members is
// killed with kill -9, as often at the head of one of its queues as behind
// in all of them. It leaves every member's queue within a heartbeat of
// its lease's end there, the sets keep passing (within the TTL and a
// heartbeat past the dead waiter), and the others keep their order.
func TestFaultSetKillWaiter(t *testing.T) {
	s := newScenario(t, 24, setTitle+"queued waiter process killed (kill -9), at the head of a queue or behind", 5*time.Second)
	procs := map[string]*proc{}
	n := 0
	spawn := func() {
		name := fmt.Sprintf("p%d", n)
		procs[name] = s.startProc(s.setSpec(name, s.srv.URL(), n))
		n++
	}
	for range 5 {
		spawn()
	}
	for i := range 3 {
		s.goWorker(s.setSpec(fmt.Sprintf("w%d", i), s.srv.URL(), i+1), nil)
	}
	rdb := s.srv.Client(t)
	ctx := context.Background()
	var (
		windows []window
		deps    []departure
		heads   int
		killed  int
	)
	for s.running() {
		time.Sleep(time.Duration(300+rand.IntN(400)) * time.Millisecond)
		head := heads <= killed-heads // the kind killed fewer times so far
		var name, value string
		for deadline := time.Now().Add(time.Second); name == "" && time.Now().Before(deadline); {
			qs, err := readQueues(ctx, rdb, setResources)
			if err != nil {
				t.Fatal(err)
			}
			// A head of some queue, or one queued behind in all of its.
			atHead := map[string]bool{}
			queued := map[string]bool{}
			for _, q := range qs {
				for i, v := range q.waiters {
					queued[v] = true
					if i == 0 {
						atHead[v] = true
					}
				}
			}
			for v := range queued {
				if procs[byOf(v)] != nil && atHead[v] == head {
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
		killed++
		if head {
			heads++
		}
		until := at + int64(s.ttl)
		var queued []string
		var ends []int64
		for _, r := range setResources {
			if end, ok := leaseEnd(ctx, rdb, r, value); ok {
				queued = append(queued, r)
				ends = append(ends, end)
			}
		}
		if len(queued) > 0 {
			// Still queued when it died: it must leave every queue.
			gone := watchDepartures(ctx, rdb, queued, value, time.Unix(0, slices.Max(ends)).Add(s.ttl))
			for i, r := range queued {
				deps = append(deps, departure{name, r, value, ends[i], gone[i]})
			}
			until = slices.Max(ends)
		}
		windows = append(windows, window{from: at, until: until + int64(s.heartbeat+slack)})
		spawn()
	}
	until := history.Now()
	time.Sleep(2 * ttl)
	end := history.Now()
	s.finish(func(res *history.Result) {
		s.checkOrder(res)
		s.checkDepartures(deps)
		s.checkProgress(res, setHoldMax, until)
		s.checkSetHandoffs(res, windows, nil, end)
		t.Logf("%d waiters killed at the head of a queue, %d behind; %d places left", heads, killed-heads, len(deps))
		if heads == 0 || heads == killed {
			t.Errorf("%d waiters killed at the head of a queue, %d behind: want both", heads, killed-heads)
		}
		if len(deps) == 0 {
			t.Error("no waiter killed while queued")
		}
	})
}

// Fault 25: Redis restarts without persistence while sets are held and
// waiters queue: every member's key, token and queue are lost. Every
// holder reports its loss (for every member) within one heartbeat, the
// restart guard keeps everyone from acquiring meanwhile, and tokens keep
// growing in each member's sequence.
func TestFaultSetRestart(t *testing.T) {
	s := newScenario(t, 25, setTitle+"Redis restarted without persistence", 5*time.Second)
	for i := range 8 {
		s.goWorker(s.setSpec(fmt.Sprintf("w%d", i), s.srv.URL(), i), nil)
	}
	rdb := s.srv.Client(t)
	ctx := context.Background()
	var losses []history.Event
	for s.running() {
		// Longer than the guard, so that the workers hold again.
		time.Sleep(ttl + time.Duration(300+rand.IntN(400))*time.Millisecond)
		held := 0
		for _, r := range setResources {
			held += int(rdb.Exists(ctx, setKey(r)).Val())
		}
		d := history.Event{Kind: history.DataLost, At: history.Now()}
		s.srv.Restart(t)
		d.Until = history.Now()
		s.h.Add(d)
		losses = append(losses, d)
		s.fault()
		t.Logf("restart with %d members held, took %v", held, time.Duration(d.Until-d.At))
	}
	until := history.Now()
	time.Sleep(ttl)
	s.finish(func(res *history.Result) {
		s.checkOrder(res)
		s.checkDataLoss(res, losses, "restart", setResources)
		s.checkProgress(res, setHoldMax, until)
	})
}

// Fault 26: the link from one set's holder to Redis is cut, in turn with
// connections reset and new ones refused, and with every byte dropped.
// The holder reports the set's loss (for every member) before the first of
// its members' keys expires on the server (read with PTTL after the cut),
// and nobody takes any member before its key expired.
func TestFaultSetCutLink(t *testing.T) {
	s := newScenario(t, 26, setTitle+"link of one holder cut (connections reset and refused, or every byte dropped)", 6*time.Second)
	const n = 8
	proxies := make([]*toxiproxy.Proxy, n)
	names := make([]string, n)
	// Long holdings, so that a cut holder learns of its loss before it
	// would release.
	const holdMin, holdMax = 2 * ttl, 3 * ttl
	for i := range n {
		names[i] = "w" + strconv.Itoa(i)
		proxies[i] = s.proxy(names[i])
		spec := s.setSpec(names[i], proxyURL(proxies[i]), i)
		spec.HoldMin, spec.HoldMax = holdMin, holdMax
		s.goWorker(spec, nil)
	}
	rdb := s.srv.Client(t)
	ctx := context.Background()
	type cut struct {
		holder string
		set    []string
		at     int64
		exps   map[string]keyExpiry
	}
	var cuts []cut
	var restored time.Time // the end of the last cut that refused dials
	for round := 0; s.running(); round++ {
		time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
		// A set fresh enough that its holder will not release it before
		// its local deadline.
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
		// Let what was in flight land, then read when the members' keys
		// will expire: nothing from the holder reaches the server now.
		time.Sleep(50 * time.Millisecond)
		exps := map[string]keyExpiry{}
		var last int64
		for _, m := range ev.Set {
			if k, held := readKey(ctx, rdb, setKey(m)); held && k.holder == ev.Holder && k.lo != 0 {
				exps[m] = k
				last = max(last, k.hi)
			}
		}
		if len(exps) == len(ev.Set) {
			s.fault()
			cuts = append(cuts, cut{ev.Holder, ev.Set, at, exps})
			time.Sleep(time.Until(time.Unix(0, last)) + 2*retry)
		}
		// Otherwise the set ended just before the cut.
		if reset {
			if err := p.Start(); err != nil {
				t.Fatalf("restart proxy: %v", err)
			}
			restored = time.Now()
		} else {
			s.removeToxic(p, "cut")
		}
		// A Lock call of the cut worker may have lost its places.
		s.h.Add(history.Event{Kind: history.CutOff, Worker: ev.Worker, At: at, Until: history.Now()})
	}
	until := history.Now()
	// After a refused dial, go-redis dials again once a second, from a
	// goroutine that outlives its client by up to a second: let it end
	// before the test does.
	time.Sleep(time.Until(restored.Add(time.Second + retry)))
	s.finish(func(res *history.Result) {
		s.checkOrder(res)
		s.checkProgress(res, holdMax, until)
		for _, c := range cuts {
			first := int64(0) // the earliest expiry of a member's key
			for _, k := range c.exps {
				if first == 0 || k.lo < first {
					first = k.lo
				}
			}
			for _, m := range c.set {
				hd := memberOf(res, c.holder, m)
				if hd == nil {
					t.Errorf("member %s of the cut set of %s not in the history", m, c.holder)
					continue
				}
				s.check("loss reported for every member before the first member's key expired on the server", hd.LostAt != 0 && hd.LostAt < first,
					time.Duration(first-hd.LostAt), true,
					"member %s of the set %v of %s (cut at %s) reported its loss at %s (ended %s at %s), the first member's key expired at %s", m, c.set, c.holder,
					stamp(c.at), endStamp(hd.LostAt), hd.EndKind, endStamp(hd.End), stamp(first))
				if next := nextHolding(res, m, c.at); next != nil {
					s.check("nobody else held a member before its key expired", next.Acquired >= c.exps[m].lo,
						time.Duration(next.Acquired-c.exps[m].lo), true,
						"%s took %s at %s, before the cut holder's key expired at %s",
						next.Holder, m, stamp(next.Acquired), stamp(c.exps[m].lo))
				}
			}
		}
		if len(cuts) == 0 {
			t.Error("no cut injected")
		}
	})
}

// within reports whether a fault window overlaps the time from from to to.
func within(windows []window, from, to int64) bool {
	for _, w := range windows {
		if w.from < to && w.until > from {
			return true
		}
	}
	return false
}

// deadPlaces answers when the last lease ends of the places that worker's
// values hold in the queues of resources, and false when it has none:
// a process killed while it held a set may have released it and begun to
// wait again in the meantime.
func deadPlaces(ctx context.Context, t *testing.T, rdb *redis.Client, worker string, resources []string) (int64, bool) {
	t.Helper()
	qs, err := readQueues(ctx, rdb, resources)
	if err != nil {
		t.Fatal(err)
	}
	var until int64
	for _, q := range qs {
		for _, v := range q.waiters {
			if byOf(v) != worker {
				continue
			}
			if end, ok := leaseEnd(ctx, rdb, q.resource, v); ok {
				until = max(until, end)
			}
		}
	}
	return until, until != 0
}
