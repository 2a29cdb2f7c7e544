package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// beside is how a section of the report shows the rows of one deployment
// beside the single server's, measured in the same rounds: the cluster's
// or the quorum's.
type beside struct {
	topology   string
	begin, end string // the section's markers
	where      string // in the headings: "on the cluster"
	all        string // the deployment's servers, in column names: "all masters"
	// baseline1 and baseline4 are the library of the "x L on the same
	// deployment" column of scenarios 1 and 2, and of 4 and 4x.
	baseline1, baseline4 string
	// extraCols names the columns after the shared ones, per unit
	// ("cycle", "acq.", "s"); extras answers them for lib's results filed
	// under key, measured on topology: per operation, or per second in
	// scenario 7.
	extraCols func(unit string) []string
	extras    func(key, l, topology string, perSecond bool) []string
	setup     func(b *bytes.Buffer)
}

// section is a part of the report and the markers it goes between.
type section struct{ text, begin, end string }

// sections answers the report of the run: the single server's, or, when
// the run measured a cluster or a quorum, a section for each, or the fair
// waiting's of a -fair run, the semaphores' of a -semaphore run, or the
// sets' of a -set run.
func (rep *report) sections() []section {
	if rep.cfg.fair {
		return []section{{rep.fairMarkdown(), beginFairMarker, endFairMarker}}
	}
	if rep.cfg.semaphore {
		return []section{{rep.semaphoreMarkdown(), beginSemaphoreMarker, endSemaphoreMarker}}
	}
	if rep.cfg.set {
		return []section{{rep.setMarkdown(), beginSetMarker, endSetMarker}}
	}
	if rep.cfg.callgrind {
		return []section{{rep.callgrindMarkdown(), beginCallgrindMarker, endCallgrindMarker}}
	}
	var secs []section
	for _, v := range []beside{rep.clusterView(), rep.quorumView()} {
		if slices.Contains(rep.cfg.topologies, v.topology) {
			secs = append(secs, section{rep.besideMarkdown(v), v.begin, v.end})
		}
	}
	if len(secs) == 0 {
		return []section{{rep.markdown(), beginMarker, endMarker}}
	}
	return secs
}

// besideMarkdown answers the results section of v: each table has, for
// every library, its row on the single server and its row on v's
// deployment, measured in the same rounds.
func (rep *report) besideMarkdown(v beside) string {
	b := &bytes.Buffer{}
	t := table{b}
	fmt.Fprintf(b, "%s\n\n", v.begin)
	v.setup(b)
	rtt := rep.rtt()
	fmt.Fprintf(b, "Loopback round trip (go-redis PING to one node, median of %d per round): **%s** (p99 %s).\n\n",
		rep.cfg.pings, fmtDur(rtt), fmtDur(percentile(rep.lat("rtt", "PING"), 99)))

	topologies := []string{topoSingle, v.topology}
	// Extra columns of a table: the ratio to the same library on the
	// single server, and v's own.
	vsSingle := func(s, l string) string {
		x, lo, hi, ok := ratioOf(rep.results[resultKey(s, v.topology)][l], rep.results[s][l])
		if !ok {
			return "-"
		}
		return fmt.Sprintf("%s (%s-%s)", fmtX(x), fmtX(lo), fmtX(hi))
	}
	rows := func(s string, cells func(key, l string) []string, at int) {
		for _, l := range rep.cfg.libs {
			for _, topo := range rep.cfg.topologies {
				key := resultKey(s, topo)
				if !slices.Contains(topologies, topo) || len(rep.results[key][l]) == 0 {
					continue
				}
				row := cells(key, l)
				x := "-"
				if topo == v.topology {
					x = vsSingle(s, l)
				}
				row = slices.Insert(row, at, x)
				t.row(append(append([]string{name(l), topo}, row...), v.extras(key, l, topo, false)...)...)
			}
		}
		b.WriteString("\n")
	}
	xSingle := "x same library on the single server"
	for _, s := range []string{"1", "2"} {
		if !rep.ranOn(s, topologies) {
			continue
		}
		title := "uncontended, one goroutine, fresh resources, acquire + release"
		if s == "2" {
			title = "parallel uncontended, 16 goroutines on distinct resources, one client"
		}
		fmt.Fprintf(b, "### Scenario %s %s: %s\n\n", s, v.where, title)
		cols := []string{"library", "deployment", "cycles/s median (min-max)", "x " + name(v.baseline1) + " on the same deployment", xSingle,
			"p50", "p99", "failed acquisitions", "round trips/cycle", "Redis calls/cycle", "Redis calls by command",
			"client CPU µs/cycle", "Redis CPU µs/cycle (" + v.all + ")"}
		if s == "1" {
			cols = append(cols, "allocs/cycle", "B/cycle")
		}
		t.head(append(cols, v.extraCols("cycle")...)...)
		rows(s, func(key, l string) []string { return rep.cyclesRow(s, key, l, v.baseline1) }, 2)
	}
	for _, s := range []string{"3", "3x"} {
		if !rep.ranOn(s, topologies) {
			continue
		}
		clients := "one client shared by the 8"
		if s == "3x" {
			clients = "a client per goroutine"
		}
		fmt.Fprintf(b, "### Scenario %s %s: contended free-for-all, 8 goroutines on one resource, hold 0, %s\n\n", s, v.where, clients)
		cols := slices.Concat([]string{"library", "deployment", "acquisitions/s median (min-max)", xSingle}, orderHeads)
		cols = append(cols, "back to the releaser", "acquisitions per goroutine (min-max)", "round trips/acq.", "Redis calls/acq.",
			"client CPU µs/acq.", "Redis CPU µs/acq. ("+v.all+")")
		t.head(append(cols, v.extraCols("acq.")...)...)
		rows(s, rep.freeForAllRow, 1)
	}
	for _, s := range []string{"4", "4x"} {
		if !rep.ranOn(s, topologies) {
			continue
		}
		clients := "one client shared by the 8"
		if s == "4x" {
			clients = "a client per goroutine (as 8 processes)"
		}
		fmt.Fprintf(b, "### Scenario %s %s: contended round-robin, 8 goroutines, %s\n\n", s, v.where, clients)
		t.head(append([]string{"library", "deployment", "acquisitions/s median (min-max)", "x " + name(v.baseline4) + " on the same deployment", xSingle,
			"handoff p50", "handoff p99", "handoff p50 in round trips", "round trips/acq.", "Redis calls/acq.",
			"Redis calls by command", "client CPU µs/acq.", "Redis CPU µs/acq. (" + v.all + ")"}, slices.Concat(orderHeads, v.extraCols("acq."))...)...)
		rows(s, func(key, l string) []string { return rep.roundRobinRow(key, l, rtt, v.baseline4) }, 2)
	}
	if rep.ranOn("7", topologies) {
		fmt.Fprintf(b, "### Scenario 7 %s: renewal at scale, %d reservations, heartbeat %v, TTL %v, for %v\n\n",
			v.where, rep.cfg.n7, rep.cfg.hb7, rep.cfg.ttl7, rep.cfg.d7)
		t.head(append([]string{"library", "deployment", "held", "lost", "client round trips/s", "Redis calls/s", "Redis calls by command (per s)",
			"client CPU (% of a core)", "Redis CPU (% of a core, " + v.all + ")"}, v.extraCols("s")...)...)
		for _, l := range rep.cfg.libs {
			for _, topo := range rep.cfg.topologies {
				key := resultKey("7", topo)
				if !slices.Contains(topologies, topo) {
					continue
				}
				for _, r := range rep.results[key][l] {
					secs := r.Elapsed.Seconds()
					t.row(append([]string{name(l), topo, fmt.Sprint(r.Holding), fmt.Sprint(r.Lost), fmtNum(float64(r.U.rt) / secs),
						fmtNum(float64(r.U.totalCalls()) / secs), r.U.callsPer(secs), fmt.Sprintf("%.2f%%", 100*r.U.cpu.Seconds()/secs),
						fmt.Sprintf("%.2f%%", 100*r.U.redisCPU.Seconds()/secs)}, v.extras(key, l, topo, true)...)...)
				}
			}
		}
		b.WriteString("\n")
	}

	var failed []string
	for _, r := range rep.failed {
		if r.Topology == "" || slices.Contains(topologies, r.Topology) { // "": the PING's
			failed = append(failed, fmt.Sprintf("- round %d, scenario %s on %s, %s: %v", r.Round, r.Scenario, r.Topology, r.Lib, r.Err))
		}
	}
	if len(failed) > 0 {
		slices.Sort(failed)
		fmt.Fprintf(b, "### Runs that failed (left out of the tables)\n\n%s\n\n", strings.Join(failed, "\n"))
	}
	fmt.Fprintf(b, "%s\n", v.end)
	return b.String()
}

// ranOn reports whether scenario has results on any of topologies.
func (rep *report) ranOn(scenario string, topologies []string) bool {
	for _, topo := range topologies {
		if len(rep.results[resultKey(scenario, topo)]) > 0 {
			return true
		}
	}
	return false
}

// callsPerNode answers "a / b / c %": each master's (server's) share of
// the Redis calls of lib under key, over rounds.
func (rep *report) callsPerNode(key, l string) string {
	var per []int64
	var total int64
	for _, r := range rep.results[key][l] {
		for i, calls := range r.U.nodes {
			if i == len(per) {
				per = append(per, 0)
			}
			for _, n := range calls {
				per[i] += n
				total += n
			}
		}
	}
	if total == 0 {
		return "-"
	}
	parts := make([]string, len(per))
	for i, n := range per {
		parts[i] = fmt.Sprintf("%.0f", 100*float64(n)/float64(total))
	}
	return strings.Join(parts, " / ") + " %"
}
