package main

import (
	"cmp"
	"slices"
	"time"
)

// visit is one wait for the contended resource: when the wait call began
// (its arrival) and when it returned holding the resource (zero when it
// did not within the run).
type visit struct {
	arrived time.Time
	served  time.Time
	// seq, when not zero, is the visit's place in the server's order of
	// service (its fencing token): visits that both have one are served
	// in its order, which their served times follow only up to the
	// scheduling of the waiters' goroutines (several permits of a
	// semaphore change hands at once).
	seq int64
}

// fairness compares the order in which waiters were served with the order
// in which they arrived.
type fairness struct {
	Served  int64 // visits served within the window
	InOrder int64 // of those, served while nobody who had arrived earlier still waited
	// Overtaken is the most later arrivals served before one waiter
	// (served within the window or still waiting at its end).
	Overtaken int64
	// Longest is the longest wait, counting the waits still under way at
	// the end of the window up to that end.
	Longest time.Duration
}

// add adds the counts of g to f.
func (f *fairness) add(g fairness) {
	f.Served += g.Served
	f.InOrder += g.InOrder
	f.Overtaken = max(f.Overtaken, g.Overtaken)
	f.Longest = max(f.Longest, g.Longest)
}

// orderOf returns how the visits that ended within [from, to] were served
// against their arrival, and their waits. One visit arrived before another
// when it arrived more than slack earlier: the time from the wait call to
// its first command reaching the server, within which two arrivals may
// reach it in either order. The arrivals before burst count as
// simultaneous: the waiters that a run starts all at once reach the server
// in any order. A visit not served by to counts as still waiting at to.
func orderOf(vs []visit, from, to, burst time.Time, slack time.Duration) (fairness, []time.Duration) {
	var f fairness
	var waits []time.Duration
	served := func(v visit) bool { return !v.served.IsZero() && !v.served.After(to) }
	// arrived returns when visit i arrived, for its order.
	arrived := func(i int) time.Time {
		if a := vs[i].arrived; a.After(burst) {
			return a
		}
		return burst
	}
	// The visits' indexes by arrival, and by service (the unserved last);
	// rank[i] is visit i's place in the order of arrival.
	byArrival := make([]int, len(vs))
	for i := range byArrival {
		byArrival[i] = i
	}
	byService := slices.Clone(byArrival)
	slices.SortFunc(byArrival, func(a, b int) int { return arrived(a).Compare(arrived(b)) })
	slices.SortFunc(byService, func(a, b int) int {
		switch sa, sb := served(vs[a]), served(vs[b]); {
		case sa && sb && vs[a].seq != 0 && vs[b].seq != 0:
			return cmp.Compare(vs[a].seq, vs[b].seq)
		case sa && sb:
			return vs[a].served.Compare(vs[b].served)
		case sa:
			return -1
		case sb:
			return 1
		}
		return 0
	})
	rank := make([]int, len(vs))
	for r, i := range byArrival {
		rank[i] = r
	}
	// upTo returns how many visits arrived at or before t.
	upTo := func(t time.Time) int {
		n, _ := slices.BinarySearchFunc(byArrival, t, func(i int, t time.Time) int {
			if arrived(i).After(t) {
				return 1
			}
			return -1
		})
		return n
	}
	// Sweep the services in order. waiting[r] is whether the r-th arrival
	// has not been served yet; first is the earliest such. done marks the
	// services so far by arrival rank, to count the later arrivals served
	// before a waiter.
	waiting := make([]bool, len(vs))
	for r := range waiting {
		waiting[r] = true
	}
	first := 0
	done := newFenwick(len(vs))
	for _, i := range byService {
		v := vs[i]
		later := done.total() - done.sum(upTo(arrived(i).Add(slack)))
		if !served(v) {
			if v.arrived.Before(to) {
				f.Overtaken = max(f.Overtaken, int64(later))
				f.Longest = max(f.Longest, to.Sub(v.arrived))
			}
			continue
		}
		waiting[rank[i]] = false
		done.add(rank[i])
		for first < len(waiting) && !waiting[first] {
			first++
		}
		if v.served.Before(from) {
			continue
		}
		f.Served++
		f.Overtaken = max(f.Overtaken, int64(later))
		w := v.served.Sub(v.arrived)
		waits = append(waits, w)
		f.Longest = max(f.Longest, w)
		// In order when everyone who arrived earlier (by more than slack)
		// was served before.
		if first == len(waiting) || !arrived(byArrival[first]).Before(arrived(i).Add(-slack)) {
			f.InOrder++
		}
	}
	return f, waits
}

// burst returns when the last of n waiters that start at once made its
// first call (zero when there are fewer visits): until then, they reach
// the server in any order.
func burst(vs []visit, n int) time.Time {
	if n < 1 || len(vs) < n {
		return time.Time{}
	}
	starts := make([]time.Time, len(vs))
	for i, v := range vs {
		starts[i] = v.arrived
	}
	slices.SortFunc(starts, time.Time.Compare)
	return starts[n-1]
}

// fenwick counts marks by position, with prefix sums in O(log n).
type fenwick struct {
	tree []int
	n    int
}

func newFenwick(n int) *fenwick { return &fenwick{tree: make([]int, n+1)} }

// add marks position i.
func (f *fenwick) add(i int) {
	f.n++
	for i++; i < len(f.tree); i += i & -i {
		f.tree[i]++
	}
}

// sum returns the marks at positions below i.
func (f *fenwick) sum(i int) int {
	s := 0
	for ; i > 0; i -= i & -i {
		s += f.tree[i]
	}
	return s
}

// total returns every mark.
func (f *fenwick) total() int { return f.n }
