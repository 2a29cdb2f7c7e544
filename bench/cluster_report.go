package main

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
)

// The markers of the cluster's results: a run with -topology cluster
// writes between them, and leaves the single server's results alone.
const (
	beginClusterMarker = "<!-- bench cluster results: begin (written by bench/ -topology single,cluster, do not edit by hand) -->"
	endClusterMarker   = "<!-- bench cluster results: end -->"
)

// clusterMarkdown answers the results section of a run with a cluster:
// each table has, for every library, its row on the single server and its
// row on the cluster, measured in the same rounds.
func (rep *report) clusterMarkdown() string {
	b := &bytes.Buffer{}
	t := table{b}
	fmt.Fprintf(b, "%s\n\n", beginClusterMarker)
	rep.writeClusterSetup(b)
	rtt := rep.rtt()
	fmt.Fprintf(b, "Loopback round trip (go-redis PING to one node, median of %d per round): **%s** (p99 %s).\n\n",
		rep.cfg.pings, fmtDur(rtt), fmtDur(percentile(rep.lat("rtt", "PING"), 99)))

	// Extra columns of a cluster table: the ratio to the same library on
	// the single server, and how the work spread over the masters.
	vsSingle := func(s, l string) string {
		x, lo, hi, ok := ratioOf(rep.results[resultKey(s, topoCluster)][l], rep.results[s][l])
		if !ok {
			return "-"
		}
		return fmt.Sprintf("%s (%s-%s)", fmtX(x), fmtX(lo), fmtX(hi))
	}
	rows := func(s string, cells func(key, l string) []string, at int) {
		for _, l := range rep.cfg.libs {
			for _, topo := range rep.cfg.topologies {
				key := resultKey(s, topo)
				if len(rep.results[key][l]) == 0 {
					continue
				}
				row := cells(key, l)
				x, keys, calls := "-", "-", "-"
				if topo == topoCluster {
					x, keys, calls = vsSingle(s, l), rep.keysPerMaster(key, l), rep.callsPerMaster(key, l)
				}
				row = slices.Insert(row, at, x)
				t.row(append(append([]string{name(l), topo}, row...), keys, calls)...)
			}
		}
		b.WriteString("\n")
	}
	const (
		xSingle = "x same library on the single server"
		keys    = "keys per master"
		calls   = "Redis calls per master"
	)
	for _, s := range []string{"1", "2"} {
		if !rep.ranAnywhere(s) {
			continue
		}
		title := "uncontended, one goroutine, fresh resources, acquire + release"
		if s == "2" {
			title = "parallel uncontended, 16 goroutines on distinct resources, one client"
		}
		fmt.Fprintf(b, "### Scenario %s on the cluster: %s\n\n", s, title)
		cols := []string{"library", "deployment", "cycles/s median (min-max)", "x raw go-redis on the same deployment", xSingle,
			"p50", "p99", "failed acquisitions", "round trips/cycle", "Redis calls/cycle", "Redis calls by command",
			"client CPU µs/cycle", "Redis CPU µs/cycle (all masters)"}
		if s == "1" {
			cols = append(cols, "allocs/cycle", "B/cycle")
		}
		t.head(append(cols, keys, calls)...)
		rows(s, func(key, l string) []string { return rep.cyclesRow(s, key, l) }, 2)
	}
	for _, s := range []string{"3", "3x"} {
		if !rep.ranAnywhere(s) {
			continue
		}
		clients := "one client shared by the 8"
		if s == "3x" {
			clients = "a client per goroutine"
		}
		fmt.Fprintf(b, "### Scenario %s on the cluster: contended free-for-all, 8 goroutines on one resource, hold 0, %s\n\n", s, clients)
		t.head("library", "deployment", "acquisitions/s median (min-max)", xSingle, "wait p50", "wait p99", "longest wait",
			"back to the releaser", "acquisitions per goroutine (min-max)", "round trips/acq.", "Redis calls/acq.",
			"client CPU µs/acq.", "Redis CPU µs/acq. (all masters)", keys, calls)
		rows(s, rep.freeForAllRow, 1)
	}
	for _, s := range []string{"4", "4x"} {
		if !rep.ranAnywhere(s) {
			continue
		}
		clients := "one client shared by the 8"
		if s == "4x" {
			clients = "a client per goroutine (as 8 processes)"
		}
		fmt.Fprintf(b, "### Scenario %s on the cluster: contended round-robin, 8 goroutines, %s\n\n", s, clients)
		t.head("library", "deployment", "acquisitions/s median (min-max)", "x rueidislock on the same deployment", xSingle,
			"handoff p50", "handoff p99", "handoff p50 in round trips", "round trips/acq.", "Redis calls/acq.",
			"Redis calls by command", "client CPU µs/acq.", "Redis CPU µs/acq. (all masters)", keys, calls)
		rows(s, func(key, l string) []string { return rep.roundRobinRow(key, l, rtt) }, 2)
	}
	if rep.ranAnywhere("7") {
		fmt.Fprintf(b, "### Scenario 7 on the cluster: renewal at scale, %d reservations, heartbeat %v, TTL %v, for %v\n\n",
			rep.cfg.n7, rep.cfg.hb7, rep.cfg.ttl7, rep.cfg.d7)
		t.head("library", "deployment", "held", "lost", "client round trips/s", "Redis calls/s", "Redis calls by command (per s)",
			"client CPU (% of a core)", "Redis CPU (% of a core, all masters)", keys, calls)
		for _, l := range rep.cfg.libs {
			for _, topo := range rep.cfg.topologies {
				key := resultKey("7", topo)
				for _, r := range rep.results[key][l] {
					secs := r.Elapsed.Seconds()
					k, c := "-", "-"
					if topo == topoCluster {
						k, c = rep.keysPerMaster(key, l), rep.callsPerMaster(key, l)
					}
					t.row(name(l), topo, fmt.Sprint(r.Holding), fmt.Sprint(r.Lost), fmtNum(float64(r.U.rt)/secs),
						fmtNum(float64(r.U.totalCalls())/secs), r.U.callsPer(secs), fmt.Sprintf("%.2f%%", 100*r.U.cpu.Seconds()/secs),
						fmt.Sprintf("%.2f%%", 100*r.U.redisCPU.Seconds()/secs), k, c)
				}
			}
		}
		b.WriteString("\n")
	}

	var failed []string
	for _, r := range rep.failed {
		failed = append(failed, fmt.Sprintf("- round %d, scenario %s on %s, %s: %v", r.Round, r.Scenario, r.Topology, r.Lib, r.Err))
	}
	if len(failed) > 0 {
		slices.Sort(failed)
		fmt.Fprintf(b, "### Runs that failed (left out of the tables)\n\n%s\n\n", strings.Join(failed, "\n"))
	}
	fmt.Fprintf(b, "%s\n", endClusterMarker)
	return b.String()
}

// ranAnywhere reports whether scenario has results on any deployment.
func (rep *report) ranAnywhere(scenario string) bool {
	for _, topo := range rep.cfg.topologies {
		if len(rep.results[resultKey(scenario, topo)]) > 0 {
			return true
		}
	}
	return false
}

// perMaster answers lib's keys per master under key, summed over rounds.
func (rep *report) perMaster(key, l string) []int64 {
	var sum []int64
	for _, r := range rep.results[key][l] {
		if sum == nil {
			sum = make([]int64, len(r.PerMaster))
		}
		for i, n := range r.PerMaster {
			sum[i] += n
		}
	}
	return sum
}

// keysPerMaster answers "a / b / c": the keys lib locked on each master
// under key, over rounds.
func (rep *report) keysPerMaster(key, l string) string {
	var parts []string
	for _, n := range rep.perMaster(key, l) {
		parts = append(parts, fmt.Sprint(n))
	}
	return strings.Join(parts, " / ")
}

// callsPerMaster answers "a / b / c %": each master's share of the Redis
// calls of lib under key, over rounds.
func (rep *report) callsPerMaster(key, l string) string {
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

func (rep *report) writeClusterSetup(b *bytes.Buffer) {
	fmt.Fprintf(b, "Measured %s, in %v.\n\n", rep.started.UTC().Format("2006-01-02 15:04 MST"),
		rep.ended.Sub(rep.started).Round(time.Second))
	fmt.Fprintf(b, "Command (from the repository root):\n\n```\n%s\n```\n\n", rep.command)
	fmt.Fprintf(b, "- Machine: %s, %d CPUs, kernel %s; this process on CPUs %s (GOMAXPROCS %d); "+
		"every redis-server (the single server and the %d masters) on CPUs %s.\n",
		cpuModel(), cpuCount(), readTrim("/proc/sys/kernel/osrelease"), allowedCPUs(), runtime.GOMAXPROCS(0),
		rep.cfg.masters, orAll(rep.pinned))
	fmt.Fprintf(b, "- Redis %s (no persistence, default configuration otherwise), on loopback; "+
		"the cluster: %d masters, no replicas, made by `redis-cli --cluster create` (slots split evenly).\n", rep.redis, rep.cfg.masters)
	fmt.Fprintf(b, "- %s; %s.\n", runtime.Version(), versions())
	fmt.Fprintf(b, "- %d round(s); in each, every library runs every scenario on each deployment (%s) in turn, "+
		"the order of the libraries and of the deployments rotated every round. Scenarios 1-2: %v per library, deployment and round; 3-4: %v.\n\n",
		rep.cfg.rounds, strings.Join(rep.cfg.topologies, ", "), rep.cfg.d12, rep.cfg.d34)
}
