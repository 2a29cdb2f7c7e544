package main

import (
	"bytes"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"
)

// The markers of the fair-waiting results: a run with -fair writes between
// them, and leaves the other sections alone.
const (
	beginFairMarker = "<!-- bench fair results: begin (written by bench/ -fair, do not edit by hand) -->"
	endFairMarker   = "<!-- bench fair results: end -->"
)

// Targets of fair waiting.
const (
	// queueCost is the least throughput of the default (the queue) against
	// NoQueue in scenarios 1 and 2, as a ratio: within 5%, the queue is
	// the default.
	queueCost = 0.95
	// flatCalls is the most Redis calls per handoff with the most
	// processes against the fewest, as a ratio, for the queue's calls to
	// count as flat.
	flatCalls = 1.2
)

// fairMarkdown answers the section of a -fair run: the queue's cost in
// scenarios 1 and 2, the contended scenarios with the queue and without,
// the processes of scenario 9, and the targets of fair waiting.
func (rep *report) fairMarkdown() string {
	b := &bytes.Buffer{}
	fmt.Fprintf(b, "%s\n\n", beginFairMarker)
	rep.writeFairSetup(b)
	fmt.Fprintf(b, "Loopback round trip (go-redis PING, median of %d per round): **%s** (p99 %s).\n\n",
		rep.cfg.pings, fmtDur(rep.rtt()), fmtDur(percentile(rep.lat("rtt", "PING"), 99)))
	rep.writeQueueCost(b)
	rep.writeContendedModes(b)
	rep.writeProcesses(b)
	rep.writeFailed(b)
	t := table{b}
	fmt.Fprintf(b, "### Targets\n\n")
	t.head("target", "measured", "met")
	rep.fairTargets(t)
	b.WriteString("\n")
	fmt.Fprintf(b, "%s\n", endFairMarker)
	return b.String()
}

func (rep *report) writeFairSetup(b *bytes.Buffer) {
	fmt.Fprintf(b, "Measured %s, in %v.\n\n", rep.started.UTC().Format("2006-01-02 15:04 MST"),
		rep.ended.Sub(rep.started).Round(time.Second))
	fmt.Fprintf(b, "Command (from the repository root):\n\n```\n%s\n```\n\n", rep.command)
	fmt.Fprintf(b, "- Machine: %s, %d CPUs, kernel %s; this process and the processes of scenario 9 on CPUs %s (GOMAXPROCS %d), redis-server on CPUs %s.\n",
		cpuModel(), cpuCount(), readTrim("/proc/sys/kernel/osrelease"), allowedCPUs(), runtime.GOMAXPROCS(0), orAll(rep.pinned))
	fmt.Fprintf(b, "- Redis %s (no persistence, default configuration otherwise), on loopback; %s; %s.\n",
		rep.redis, runtime.Version(), versions())
	fmt.Fprintf(b, "- %d round(s); in each, this library runs every scenario with its queue (the default) and with `NoQueue` in turn, "+
		"the order rotated every round. Scenarios 1-2: %v each; 3-4: %v; 9: %s processes, each looping `Lock`, hold %v, `Release` "+
		"with a Client of its own, measured for %v after %v.\n\n",
		rep.cfg.rounds, rep.cfg.d12, rep.cfg.d34, joinInts(rep.cfg.procs), rep.cfg.hold9, rep.cfg.d9, rep.cfg.warm9)
}

// writeFailed lists the runs that failed.
func (rep *report) writeFailed(b *bytes.Buffer) {
	var failed []string
	for _, r := range rep.failed {
		failed = append(failed, fmt.Sprintf("- round %d, scenario %s, %s: %v", r.Round, r.Scenario, r.Lib, r.Err))
	}
	if len(failed) > 0 {
		slices.Sort(failed)
		fmt.Fprintf(b, "### Runs that failed (left out of the tables)\n\n%s\n\n", strings.Join(failed, "\n"))
	}
}

// both returns "a / b": a figure of the default, then of NoQueue.
func both(f func(lib string) string) string {
	return f(libOurs) + " / " + f(libOursNoQueue)
}

// queueRatio answers "0.98x (0.96x-1.00x)": the median over rounds of the
// default's throughput divided by NoQueue's, with the lowest and highest.
func (rep *report) queueRatio(key string) (string, float64, bool) {
	x, lo, hi, ok := rep.ratio(key, libOurs, libOursNoQueue)
	if !ok {
		return "-", 0, false
	}
	return fmt.Sprintf("%s (%s-%s)", fmtX(x), fmtX(lo), fmtX(hi)), x, true
}

// writeQueueCost writes the table of the queue's cost on the uncontended
// path: scenarios 1 and 2, the default against NoQueue in the same rounds.
func (rep *report) writeQueueCost(b *bytes.Buffer) {
	var ss []string
	for _, s := range []string{"1", "2"} {
		if _, _, ok := rep.queueRatio(s); ok {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return
	}
	t := table{b}
	fmt.Fprintf(b, "### The queue's cost, uncontended: this library with its queue (the default) against `NoQueue`, scenarios 1 and 2\n\n")
	t.head("scenario", "cycles/s median (min-max), default / NoQueue", "default / NoQueue (median of per-round ratios, min-max)",
		fmt.Sprintf("within %.0f%%", 100*(1-queueCost)), "p50, default / NoQueue", "p99, default / NoQueue",
		"Redis calls/cycle, default / NoQueue", "round trips/cycle, default / NoQueue", "Redis CPU µs/cycle, default / NoQueue",
		"client CPU µs/cycle, default / NoQueue")
	for _, s := range ss {
		text, x, _ := rep.queueRatio(s)
		within := "yes"
		if x < queueCost {
			within = "**no**"
		}
		t.row(s, both(func(l string) string { return spread(rep.rates(s, l)) }), text, within,
			both(func(l string) string { return fmtDur(percentile(rep.lat(s, l), 50)) }),
			both(func(l string) string { return fmtDur(percentile(rep.lat(s, l), 99)) }),
			both(func(l string) string { return fmtNum(rep.per(s, l, callsPer)) }),
			both(func(l string) string { return fmtNum(rep.per(s, l, rtPer)) }),
			both(func(l string) string { return fmtNum(rep.per(s, l, redisCPUPer)) }),
			both(func(l string) string { return fmtNum(rep.per(s, l, cpuPer)) }))
	}
	b.WriteString("\n")
}

// contendedTitles describe the contended scenarios.
var contendedTitles = map[string]string{
	"3":  "3: free-for-all, one client shared by the 8",
	"3x": "3x: free-for-all, a client per goroutine (as 8 processes)",
	"4":  "4: round-robin, one client shared by the 8",
	"4x": "4x: round-robin, a client per goroutine (as 8 processes)",
}

// writeContendedModes writes the contended scenarios (3, 3x, 4, 4x) with
// the queue and without, side by side.
func (rep *report) writeContendedModes(b *bytes.Buffer) {
	var ss []string
	for _, s := range []string{"3", "3x", "4", "4x"} {
		if len(rep.results[s][libOurs]) > 0 && len(rep.results[s][libOursNoQueue]) > 0 {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return
	}
	t := table{b}
	fmt.Fprintf(b, "### Contended, 8 goroutines on one resource: this library with its queue (the default) and with `NoQueue`\n\n")
	t.head(slices.Concat([]string{"scenario", "library", "acquisitions/s median (min-max)", "x NoQueue",
		"Redis calls/acq.", "round trips/acq."}, orderHeads,
		[]string{"back to the releaser", "acquisitions per goroutine (min-max)", "Redis CPU µs/acq."})...)
	for _, s := range ss {
		for _, l := range []string{libOurs, libOursNoQueue} {
			x := "-"
			if l == libOurs {
				x, _, _ = rep.queueRatio(s)
			}
			var back []float64
			var lo, hi int64 = math.MaxInt64, 0
			for _, r := range rep.results[s][l] {
				back = append(back, r.BackShare)
				lo, hi = min(lo, r.MinPer), max(hi, r.MaxPer)
			}
			t.row(slices.Concat([]string{contendedTitles[s], name(l), spread(rep.rates(s, l)), x,
				fmtNum(rep.per(s, l, callsPer)), fmtNum(rep.per(s, l, rtPer))}, rep.orderCols(s, l),
				[]string{fmt.Sprintf("%.0f%%", 100*median(back)), fmt.Sprintf("%d-%d", lo, hi), fmtNum(rep.per(s, l, redisCPUPer))})...)
		}
	}
	b.WriteString("\n")
}

// perRound answers f of every round of lib under key, in round order.
func (rep *report) perRound(key, lib string, f func(r result) float64) []float64 {
	var xs []float64
	for _, r := range rep.results[key][lib] {
		xs = append(xs, f(r))
	}
	return xs
}

// callsPerOp is a round's Redis calls per operation.
func callsPerOp(r result) float64 { return float64(r.U.totalCalls()) / float64(max(r.Ops, 1)) }

// sentPerOp is a round's commands sent per operation (scenario 9).
func sentPerOp(r result) float64 { return float64(r.Sent) / float64(max(r.Ops, 1)) }

// growth answers the median over rounds, and the lowest and highest, of
// f of lib under key divided by f of lib under base in the same round.
func (rep *report) growth(key, base, lib string, f func(r result) float64) (med, lo, hi float64, ok bool) {
	return ratioBy(rep.results[key][lib], rep.results[base][lib], f)
}

// procKeys answers the runs of scenario 9 that have results, by number of
// processes.
func (rep *report) procKeys() []string {
	var keys []string
	for _, n := range rep.cfg.procs {
		if k := procScenario(n); len(rep.results[k]) > 0 {
			keys = append(keys, k)
		}
	}
	return keys
}

// writeProcesses writes the table of scenario 9: a row per number of
// processes and library.
func (rep *report) writeProcesses(b *bytes.Buffer) {
	keys := rep.procKeys()
	if len(keys) == 0 {
		return
	}
	t := table{b}
	fewest, _ := procsOf(keys[0])
	fmt.Fprintf(b, "### Scenario 9: OS processes contend for one resource, each looping `Lock`, hold %v, `Release`, with a Client of its own\n\n", rep.cfg.hold9)
	t.head(slices.Concat([]string{"processes", "library", "handoffs/s median (min-max)",
		"Redis calls/handoff median (min-max)", fmt.Sprintf("x %d processes", fewest),
		"commands sent/handoff median (min-max)", "round trips/handoff", "Redis calls by command (per handoff)", "Redis CPU µs/handoff"},
		orderHeads, []string{"acquisitions per process (min-max)", "connections per process"})...)
	for _, k := range keys {
		n, _ := procsOf(k)
		for _, l := range rep.cfg.libs {
			if len(rep.results[k][l]) == 0 {
				continue
			}
			x := "-"
			if m, lo, hi, ok := rep.growth(k, keys[0], l, callsPerOp); ok && k != keys[0] {
				x = fmt.Sprintf("%s (%s-%s)", fmtX(m), fmtX(lo), fmtX(hi))
			}
			var lo, hi int64 = math.MaxInt64, 0
			var conns []float64
			for _, r := range rep.results[k][l] {
				lo, hi = min(lo, r.MinPer), max(hi, r.MaxPer)
				conns = append(conns, r.Conns)
			}
			t.row(slices.Concat([]string{fmt.Sprint(n), name(l), spread(rep.rates(k, l)),
				spreadNum(rep.perRound(k, l, callsPerOp)), x, spreadNum(rep.perRound(k, l, sentPerOp)),
				fmtNum(rep.per(k, l, rtPer)), rep.callsText(k, l), fmtNum(rep.per(k, l, redisCPUPer))},
				rep.orderCols(k, l),
				[]string{fmt.Sprintf("%d-%d", lo, hi), fmt.Sprintf("%s (%s-%s)", fmtNum(median(conns)), fmtNum(slices.Min(conns)), fmtNum(slices.Max(conns)))})...)
		}
	}
	b.WriteString("\n")
}

// spreadNum answers "median (min-max)" of figures over rounds.
func spreadNum(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	if len(xs) == 1 {
		return fmtNum(xs[0])
	}
	return fmt.Sprintf("%s (%s-%s)", fmtNum(median(xs)), fmtNum(slices.Min(xs)), fmtNum(slices.Max(xs)))
}

// fairTargets writes the rows of the targets of fair waiting.
func (rep *report) fairTargets(t table) {
	for _, s := range []string{"1", "2"} {
		if text, x, ok := rep.queueRatio(s); ok {
			t.row(fmt.Sprintf("scenario %s: the queue (the default) within %.0f%% of NoQueue (median of per-round ratios)", s, 100*(1-queueCost)),
				text, yes(x >= queueCost))
		}
	}
	keys := rep.procKeys()
	if len(keys) == 0 {
		return
	}
	for _, k := range keys {
		if f := rep.order(k, libOurs); f.Served > 0 {
			n, _ := procsOf(k)
			t.row(fmt.Sprintf("scenario 9, %d processes: with the queue, every handoff in arrival order", n),
				fmtShare(f.InOrder, f.Served), yes(f.InOrder == f.Served))
		}
	}
	if len(keys) > 1 {
		first, _ := procsOf(keys[0])
		last, _ := procsOf(keys[len(keys)-1])
		if m, lo, hi, ok := rep.growth(keys[len(keys)-1], keys[0], libOurs, callsPerOp); ok {
			t.row(fmt.Sprintf("scenario 9: with the queue, Redis calls per handoff flat from %d to %d processes (at most %.1fx)", first, last, flatCalls),
				fmt.Sprintf("%s (%s-%s)", fmtX(m), fmtX(lo), fmtX(hi)), yes(m <= flatCalls))
		}
	}
}

// yes answers a target's "met" column.
func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func joinInts(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, ", ")
}
