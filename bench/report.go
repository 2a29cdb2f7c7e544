package main

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette/brewer"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// report collects the results of a run and writes them as Markdown.
type report struct {
	cfg     config
	started time.Time
	ended   time.Time
	redis   string // version
	pinned  string
	command string
	results map[string]map[string][]result // scenario -> library -> rounds
	failed  []result                       // runs that ended in an error
}

func newReport(cfg config, deps []*deployment) *report {
	return &report{cfg: cfg, started: time.Now(), redis: deps[0].version, pinned: deps[0].pinned,
		results: make(map[string]map[string][]result)}
}

// resultKey is where a result of scenario on topology is filed in
// report.results: under the scenario on a single server, under the
// topology, a colon and the scenario elsewhere ("cluster:1", "quorum:1").
func resultKey(scenario, topology string) string {
	if topology != topoSingle && topology != "" {
		return topology + ":" + scenario
	}
	return scenario
}

func (rep *report) add(r result) {
	rep.ended = time.Now()
	if r.Err != nil {
		rep.failed = append(rep.failed, r)
		return
	}
	key := resultKey(r.Scenario, r.Topology)
	m := rep.results[key]
	if m == nil {
		m = make(map[string][]result)
		rep.results[key] = m
	}
	m[r.Lib] = append(m[r.Lib], r)
	rep.ended = time.Now()
}

// --- figures over rounds ---

// rate is operations per second; in scenario 4, the holds imposed by the
// harness are left out.
func rate(r result) float64 { return float64(r.Ops) / max((r.Elapsed-r.Held).Seconds(), 1e-9) }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// rates answers the throughput of every round of lib in scenario.
func (rep *report) rates(scenario, lib string) []float64 {
	var xs []float64
	for _, r := range rep.results[scenario][lib] {
		xs = append(xs, rate(r))
	}
	return xs
}

// ratio answers the median over rounds of lib's throughput divided by
// other's in the same round, and the lowest and highest of those ratios.
func (rep *report) ratio(scenario, lib, other string) (med, lo, hi float64, ok bool) {
	return ratioOf(rep.results[scenario][lib], rep.results[scenario][other])
}

// ratioOf answers the median over rounds of a's throughput divided by b's
// in the same round, and the lowest and highest of those ratios.
func ratioOf(a, b []result) (med, lo, hi float64, ok bool) { return ratioBy(a, b, rate) }

// ratioBy answers the median over rounds of f of a divided by f of b in
// the same round, and the lowest and highest of those ratios.
func ratioBy(a, b []result, f func(r result) float64) (med, lo, hi float64, ok bool) {
	var xs []float64
	for _, ra := range a {
		for _, rb := range b {
			if ra.Round == rb.Round && f(rb) > 0 {
				xs = append(xs, f(ra)/f(rb))
			}
		}
	}
	if len(xs) == 0 {
		return 0, 0, 0, false
	}
	return median(xs), slices.Min(xs), slices.Max(xs), true
}

// ratioToBest answers the median over rounds of lib's throughput divided by
// the fastest of others in the same round, and which one was fastest most.
func (rep *report) ratioToBest(scenario, lib string, others []string) (float64, string, bool) {
	var xs []float64
	wins := make(map[string]int)
	for _, ra := range rep.results[scenario][lib] {
		best, bestLib := 0.0, ""
		for _, o := range others {
			for _, rb := range rep.results[scenario][o] {
				if rb.Round == ra.Round && rate(rb) > best {
					best, bestLib = rate(rb), o
				}
			}
		}
		if best > 0 {
			xs = append(xs, rate(ra)/best)
			wins[bestLib]++
		}
	}
	if len(xs) == 0 {
		return 0, "", false
	}
	top := ""
	for _, o := range others {
		if top == "" || wins[o] > wins[top] {
			top = o
		}
	}
	return median(xs), top, true
}

// waits answers every wait of lib in scenario (3, 4, 9), sorted.
func (rep *report) waits(scenario, lib string) []time.Duration {
	var all []time.Duration
	for _, r := range rep.results[scenario][lib] {
		all = append(all, r.Waits...)
	}
	return sortedCopy(all)
}

// order answers the order of service of lib in scenario, over rounds.
func (rep *report) order(scenario, lib string) fairness {
	var f fairness
	for _, r := range rep.results[scenario][lib] {
		f.add(r.Order)
	}
	return f
}

// orderCols answers the columns of the order of service and of the
// waits: wait p50, p99, the longest, the share served in arrival order,
// and the most later arrivals served before one waiter.
func (rep *report) orderCols(scenario, lib string) []string {
	w := rep.waits(scenario, lib)
	f := rep.order(scenario, lib)
	return []string{fmtDur(percentile(w, 50)), fmtDur(percentile(w, 99)), fmtDur(f.Longest),
		fmtShare(f.InOrder, f.Served), fmt.Sprint(f.Overtaken)}
}

// orderHeads are the heads of orderCols.
var orderHeads = []string{"wait p50", "wait p99", "longest wait", "served in arrival order", "most later arrivals served before one waiter"}

// fmtShare answers part/whole as a percentage.
func fmtShare(part, whole int64) string {
	if whole == 0 {
		return "-"
	}
	p := 100 * float64(part) / float64(whole)
	if part != whole && p > 99.9 {
		return ">99.9%" // never "100%" when one was out of order
	}
	return fmt.Sprintf("%.1f%%", p)
}

// lat answers every latency sample of lib in scenario, sorted.
func (rep *report) lat(scenario, lib string) []time.Duration {
	var all []time.Duration
	for _, r := range rep.results[scenario][lib] {
		all = append(all, r.Lat...)
	}
	return sortedCopy(all)
}

// per answers a usage figure per operation, summed over rounds.
func (rep *report) per(scenario, lib string, f func(u usage) float64) float64 {
	var sum, ops float64
	for _, r := range rep.results[scenario][lib] {
		sum += f(r.U)
		ops += float64(r.Ops)
	}
	if ops == 0 {
		return math.NaN()
	}
	return sum / ops
}

// callsText answers Redis calls per operation by command, over rounds.
func (rep *report) callsText(scenario, lib string) string {
	u := usage{calls: make(map[string]int64)}
	var ops float64
	for _, r := range rep.results[scenario][lib] {
		for k, v := range r.U.calls {
			u.calls[k] += v
		}
		ops += float64(r.Ops)
	}
	return u.callsPer(ops)
}

// rtt answers the loopback round trip: the median PING latency.
func (rep *report) rtt() time.Duration {
	return percentile(rep.lat("rtt", "PING"), 50)
}

func (rep *report) libsIn(scenario string) []string {
	var libs []string
	for _, l := range rep.cfg.libs {
		if len(rep.results[scenario][l]) > 0 {
			libs = append(libs, l)
		}
	}
	return libs
}

// --- formatting ---

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func fmtRate(x float64) string {
	switch {
	case math.IsNaN(x):
		return "-"
	case x >= 1000:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

func fmtX(x float64) string {
	if math.IsNaN(x) || x == 0 {
		return "-"
	}
	if x >= 10 {
		return fmt.Sprintf("%.0fx", x)
	}
	return fmt.Sprintf("%.2fx", x)
}

func fmtNum(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	if x >= 100 {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

// spread answers "median (min-max)" of rates over rounds.
func spread(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	if len(xs) == 1 {
		return fmtRate(xs[0])
	}
	return fmt.Sprintf("%s (%s-%s)", fmtRate(median(xs)), fmtRate(slices.Min(xs)), fmtRate(slices.Max(xs)))
}

type table struct {
	b *bytes.Buffer
}

func (t table) head(cols ...string) {
	fmt.Fprintf(t.b, "| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat(" --- |", len(cols)))
}

func (t table) row(cols ...string) {
	fmt.Fprintf(t.b, "| %s |\n", strings.Join(cols, " | "))
}

func cpuPer(u usage) float64      { return float64(u.cpu) / 1e3 }
func redisCPUPer(u usage) float64 { return float64(u.redisCPU) / 1e3 }
func rtPer(u usage) float64       { return float64(u.rt) }
func callsPer(u usage) float64    { return float64(u.totalCalls()) }

// --- the report ---

const (
	beginMarker = "<!-- bench results: begin (written by bench/, do not edit by hand) -->"
	endMarker   = "<!-- bench results: end -->"
)

// markdown answers the results section: machine, command, tables, targets.
func (rep *report) markdown() string {
	b := &bytes.Buffer{}
	t := table{b}
	fmt.Fprintf(b, "%s\n\n", beginMarker)
	rep.writeSetup(b)

	rtt := rep.rtt()
	fmt.Fprintf(b, "Loopback round trip (go-redis PING, median of %d per round): **%s** (p99 %s).\n\n",
		rep.cfg.pings, fmtDur(rtt), fmtDur(percentile(rep.lat("rtt", "PING"), 99)))

	titles := map[string]string{
		"1": "Scenario 1: uncontended, one goroutine, fresh resources, acquire + release",
		"2": "Scenario 2: parallel uncontended, 16 goroutines on distinct resources, one client",
	}
	for _, s := range []string{"1", "2"} {
		libs := rep.libsIn(s)
		if len(libs) == 0 {
			continue
		}
		fmt.Fprintf(b, "### %s\n\n", titles[s])
		cols := []string{"library", "cycles/s median (min-max)", "x raw go-redis", "p50", "p99", "failed acquisitions",
			"round trips/cycle", "Redis calls/cycle", "Redis calls by command", "client CPU µs/cycle", "Redis CPU µs/cycle"}
		if s == "1" {
			cols = append(cols, "allocs/cycle", "B/cycle")
		}
		t.head(cols...)
		for _, l := range libs {
			t.row(append([]string{name(l)}, rep.cyclesRow(s, s, l, libRawGo)...)...)
		}
		b.WriteString("\n")
	}

	for _, s := range []string{"3", "3x"} {
		libs := rep.libsIn(s)
		if len(libs) == 0 {
			continue
		}
		clients := "one client shared by the 8"
		if s == "3x" {
			clients = "a client per goroutine"
		}
		fmt.Fprintf(b, "### Scenario %s: contended free-for-all, 8 goroutines on one resource, hold 0, %s\n\n", s, clients)
		t.head(slices.Concat([]string{"library", "acquisitions/s median (min-max)"}, orderHeads,
			[]string{"back to the releaser", "acquisitions per goroutine (min-max)", "round trips/acq.", "Redis calls/acq.",
				"client CPU µs/acq.", "Redis CPU µs/acq."})...)
		for _, l := range libs {
			t.row(append([]string{name(l)}, rep.freeForAllRow(s, l)...)...)
		}
		b.WriteString("\n")
	}

	for _, s := range []string{"4", "4x"} {
		libs := rep.libsIn(s)
		if len(libs) == 0 {
			continue
		}
		clients := "one client shared by the 8"
		if s == "4x" {
			clients = "a client per goroutine (as 8 processes)"
		}
		fmt.Fprintf(b, "### Scenario %s: contended round-robin, 8 goroutines, %s\n\n", s, clients)
		t.head(append([]string{"library", "acquisitions/s median (min-max)", "x rueidislock", "handoff p50", "handoff p99",
			"handoff p50 in round trips", "round trips/acq.", "Redis calls/acq.", "Redis calls by command",
			"client CPU µs/acq.", "Redis CPU µs/acq."}, orderHeads...)...)
		for _, l := range libs {
			t.row(append([]string{name(l)}, rep.roundRobinRow(s, l, rtt, libRueidis)...)...)
		}
		b.WriteString("\n")
	}

	titles = map[string]string{
		"5":  "Scenario 5: expiry handoff, the holder vanished; delay from the key's expiry to a waiter holding it",
		"5k": fmt.Sprintf("Scenario 5k: scenario 5 in a database that holds %d other keys with a TTL", crowded),
		"6":  "Scenario 6: foreign release, the key removed by a plain DEL; delay from the DEL to a waiter holding it",
	}
	for _, s := range []string{"5", "5k", "6"} {
		libs := rep.libsIn(s)
		if len(libs) == 0 {
			continue
		}
		fmt.Fprintf(b, "### %s\n\n", titles[s])
		t.head("library", "trials", "p50", "p99", "max", fmt.Sprintf("not woken within %v", rep.cfg.giveUp),
			"round trips/trial", "Redis calls/trial", "keys with a TTL in the database")
		for _, l := range libs {
			lat := rep.lat(s, l)
			var timeouts int
			var expires []float64
			for _, r := range rep.results[s][l] {
				timeouts += r.Timeouts
				expires = append(expires, float64(r.Expires))
			}
			t.row(name(l), fmt.Sprint(len(lat)), fmtDur(percentile(lat, 50)), fmtDur(percentile(lat, 99)),
				fmtDur(percentile(lat, 100)), fmt.Sprint(timeouts), fmtNum(rep.per(s, l, rtPer)),
				fmtNum(rep.per(s, l, callsPer)), fmt.Sprintf("%.0f", median(expires)))
		}
		b.WriteString("\n")
	}

	if libs := rep.libsIn("7"); len(libs) > 0 {
		fmt.Fprintf(b, "### Scenario 7: renewal at scale, %d reservations, heartbeat %v, TTL %v, for %v\n\n",
			rep.cfg.n7, rep.cfg.hb7, rep.cfg.ttl7, rep.cfg.d7)
		t.head("library", "held", "attempts that failed (tried again)", "lost", "client round trips/s", "Redis calls/s", "Redis calls by command (per s)",
			"client CPU (% of a core)", "Redis CPU (% of a core)", "Go memory per reservation", "goroutines per reservation")
		for _, l := range libs {
			var held, lost int
			var retried int64
			var bytesPer, gor []float64
			var u usage
			u.calls = make(map[string]int64)
			var secs float64
			for _, r := range rep.results["7"][l] {
				held += r.Holding
				retried += r.Failures
				lost += r.Lost
				bytesPer = append(bytesPer, r.BytesPer)
				gor = append(gor, r.Goroutines)
				u.rt += r.U.rt
				u.cpu += r.U.cpu
				u.redisCPU += r.U.redisCPU
				for k, v := range r.U.calls {
					u.calls[k] += v
				}
				secs += r.Elapsed.Seconds()
			}
			t.row(name(l), fmt.Sprint(held), fmt.Sprint(retried), fmt.Sprint(lost), fmtNum(float64(u.rt)/secs),
				fmtNum(float64(u.totalCalls())/secs), u.callsPer(secs),
				fmt.Sprintf("%.2f%%", 100*u.cpu.Seconds()/secs), fmt.Sprintf("%.2f%%", 100*u.redisCPU.Seconds()/secs),
				fmt.Sprintf("%.0f B", median(bytesPer)), fmtNum(median(gor)))
		}
		b.WriteString("\n")
	}

	rep.writeLossNotice(b)
	rep.writeQueueCost(b)
	rep.writeProcesses(b)
	rep.writeSemaphores(b)
	rep.writeSets(b)

	var failed []string
	for _, r := range rep.failed {
		failed = append(failed, fmt.Sprintf("- round %d, scenario %s, %s: %v", r.Round, r.Scenario, r.Lib, r.Err))
	}
	if len(failed) > 0 {
		slices.Sort(failed)
		fmt.Fprintf(b, "### Runs that failed (left out of the tables)\n\n%s\n\n", strings.Join(failed, "\n"))
	}
	rep.writeTargets(b)
	fmt.Fprintf(b, "%s\n", endMarker)
	return b.String()
}

// cyclesRow answers the columns after the library's name of scenario s (1
// or 2) for lib's results filed under key; the second is the ratio to
// baseline's under the same key.
func (rep *report) cyclesRow(s, key, l, baseline string) []string {
	lat := rep.lat(key, l)
	x, lo, hi, ok := rep.ratio(key, l, baseline)
	xs := "-"
	if ok {
		xs = fmt.Sprintf("%s (%s-%s)", fmtX(x), fmtX(lo), fmtX(hi))
	}
	var failed int64
	for _, r := range rep.results[key][l] {
		failed += r.Failures
	}
	row := []string{spread(rep.rates(key, l)), xs,
		fmtDur(percentile(lat, 50)), fmtDur(percentile(lat, 99)), fmt.Sprint(failed),
		fmtNum(rep.per(key, l, rtPer)), fmtNum(rep.per(key, l, callsPer)), rep.callsText(key, l),
		fmtNum(rep.per(key, l, cpuPer)), fmtNum(rep.per(key, l, redisCPUPer))}
	if s == "1" {
		row = append(row, fmtNum(rep.per(key, l, func(u usage) float64 { return float64(u.mallocs) })),
			fmtNum(rep.per(key, l, func(u usage) float64 { return float64(u.bytes) })))
	}
	return row
}

// freeForAllRow answers the columns after the library's name of scenario
// 3 or 3x for lib's results filed under key.
func (rep *report) freeForAllRow(key, l string) []string {
	var back []float64
	var lo, hi int64 = math.MaxInt64, 0
	for _, r := range rep.results[key][l] {
		back = append(back, r.BackShare)
		lo, hi = min(lo, r.MinPer), max(hi, r.MaxPer)
	}
	return append(append([]string{spread(rep.rates(key, l))}, rep.orderCols(key, l)...),
		fmt.Sprintf("%.0f%%", 100*median(back)), fmt.Sprintf("%d-%d", lo, hi),
		fmtNum(rep.per(key, l, rtPer)), fmtNum(rep.per(key, l, callsPer)),
		fmtNum(rep.per(key, l, cpuPer)), fmtNum(rep.per(key, l, redisCPUPer)))
}

// roundRobinRow answers the columns after the library's name of scenario 4
// or 4x for lib's results filed under key; rtt is the loopback round trip;
// the second column is the ratio to baseline's under the same key.
func (rep *report) roundRobinRow(key, l string, rtt time.Duration, baseline string) []string {
	lat := rep.lat(key, l)
	x, _, _, _ := rep.ratio(key, l, baseline)
	return append([]string{spread(rep.rates(key, l)), fmtX(x), fmtDur(percentile(lat, 50)), fmtDur(percentile(lat, 99)),
		fmtNum(float64(percentile(lat, 50)) / float64(max(rtt, 1))),
		fmtNum(rep.per(key, l, rtPer)), fmtNum(rep.per(key, l, callsPer)), rep.callsText(key, l),
		fmtNum(rep.per(key, l, cpuPer)), fmtNum(rep.per(key, l, redisCPUPer))}, rep.orderCols(key, l)...)
}

// lossScenarios are the scenarios of the loss-notice table, in its order.
var lossScenarios = []string{"8", "8s", "8f"}

// writeLossNotice writes the table of scenario 8: one row per foreign
// write, for this library.
func (rep *report) writeLossNotice(b *bytes.Buffer) {
	var ss []string
	for _, s := range lossScenarios {
		if len(rep.results[s][libOurs]) > 0 {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return
	}
	t := table{b}
	fmt.Fprintf(b, "### Scenario 8: loss notice, %d reservations held (TTL %v, heartbeat %v); "+
		"delay from a foreign write's reply to the holder's Done closing\n\n",
		rep.cfg.n8, lossSettings.ttl, lossSettings.heartbeat)
	t.head("scenario", "foreign write", "losses", "p50", "p99", "max", fmt.Sprintf("not noticed within %v", rep.cfg.giveUp8),
		"cause not ErrLost", "client round trips/loss", "Redis calls/loss", "Redis calls by command (per loss)")
	for _, s := range ss {
		lat := rep.lat(s, libOurs)
		var missed, causes int
		for _, r := range rep.results[s][libOurs] {
			missed += r.Timeouts
			causes += r.Causes
		}
		t.row(s, lossWriteText(s, rep.cfg.n8), fmt.Sprint(len(lat)), fmtDur(percentile(lat, 50)), fmtDur(percentile(lat, 99)),
			fmtDur(percentile(lat, 100)), fmt.Sprint(missed), fmt.Sprint(causes),
			fmtNum(rep.per(s, libOurs, rtPer)), fmtNum(rep.per(s, libOurs, callsPer)), rep.callsText(s, libOurs))
	}
	b.WriteString("\n")
}

// lossWriteText describes the foreign write of a loss-notice scenario.
func lossWriteText(s string, n int) string {
	switch s {
	case "8":
		return "`DEL` of one held key"
	case "8s":
		return "`SET` of one held key to another value"
	}
	return fmt.Sprintf("`FLUSHALL` (ends all %d)", n)
}

func name(lib string) string {
	switch lib {
	case libOurs:
		return "**reservation**"
	case libOursNoQueue:
		return "**reservation** (no queue)"
	case libRueidis1:
		return "rueidislock KeyMajority 1"
	case libRueidis1NoLoop:
		return "rueidislock KeyMajority 1 NoLoopTracking"
	case libRawRueScripts:
		return "**reservation**'s scripts, raw on rueidis"
	}
	return lib
}

func (rep *report) writeSetup(b *bytes.Buffer) {
	fmt.Fprintf(b, "Measured %s, in %v.\n\n", rep.started.UTC().Format("2006-01-02 15:04 MST"),
		rep.ended.Sub(rep.started).Round(time.Second))
	fmt.Fprintf(b, "Command (from the repository root):\n\n```\n%s\n```\n\n", rep.command)
	fmt.Fprintf(b, "- Machine: %s, %d CPUs, kernel %s; this process on CPUs %s (GOMAXPROCS %d), redis-server on CPUs %s.\n",
		cpuModel(), cpuCount(), readTrim("/proc/sys/kernel/osrelease"), allowedCPUs(), runtime.GOMAXPROCS(0), orAll(rep.pinned))
	fmt.Fprintf(b, "- Redis %s (no persistence, default configuration otherwise), on loopback.\n", rep.redis)
	fmt.Fprintf(b, "- %s; %s.\n", runtime.Version(), versions())
	fmt.Fprintf(b, "- %d round(s); in each, every library runs every scenario in turn, the order rotated every round. "+
		"Scenarios 1-2: %v per library and round; 3-4: %v; 5-6: %d trials; 7: %d reservation(s) for %v, %d round(s); "+
		"8: %d reservations held, %d `DEL` and %d `SET` per round, %d `FLUSHALL`.\n\n",
		rep.cfg.rounds, rep.cfg.d12, rep.cfg.d34, rep.cfg.trials, rep.cfg.n7, rep.cfg.d7, rep.cfg.rounds7,
		rep.cfg.n8, rep.cfg.trials8, rep.cfg.trials8, rep.cfg.trials8f)
}

func orAll(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	for line := range strings.SplitSeq(readTrim("/proc/cpuinfo"), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimLeft(v, " \t:"))
		}
	}
	return runtime.GOARCH
}

// cpuCount is the machine's CPUs, not only those this process may use.
func cpuCount() int {
	n := strings.Count(readTrim("/proc/cpuinfo"), "\nprocessor")
	if strings.HasPrefix(readTrim("/proc/cpuinfo"), "processor") {
		n++
	}
	if n == 0 {
		return runtime.NumCPU()
	}
	return n
}

func allowedCPUs() string {
	for line := range strings.SplitSeq(readTrim("/proc/self/status"), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// versions answers the versions of the compared modules, from the build.
func versions() string {
	want := []string{"github.com/redis/go-redis/v9", "github.com/go-redsync/redsync/v4",
		"github.com/bsm/redislock", "github.com/redis/rueidis"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "module versions unknown"
	}
	var parts []string
	for _, w := range want {
		for _, d := range bi.Deps {
			if d.Path == w {
				parts = append(parts, w+" "+d.Version)
			}
		}
	}
	return strings.Join(parts, ", ")
}

// writeTargets checks the targets of the performance issue.
func (rep *report) writeTargets(b *bytes.Buffer) {
	t := table{b}
	fmt.Fprintf(b, "### Targets\n\n")
	t.head("target", "measured", "met")
	rtt := rep.rtt()
	if len(rep.results["1"][libOurs]) > 0 {
		rt := rep.per("1", libOurs, rtPer)
		t.row("acquire and release: one round trip each (scenario 1)", fmt.Sprintf("%.2f round trips per cycle", rt), yes(rt <= 2.05))
		if x, _, _, ok := rep.ratio("1", libOurs, libRawGo); ok {
			t.row("scenario 1: at least 0.9x the go-redis raw floor", fmtX(x), yes(x >= 0.9))
		}
		if x, top, ok := rep.ratioToBest("1", libOurs, rep.peersIn("1")); ok {
			t.row("scenario 1: at least the fastest peer", fmt.Sprintf("%s (fastest peer: %s)", fmtX(x), top), yes(x >= 1))
		}
	}
	if x, top, ok := rep.ratioToBest("2", libOurs, rep.peersIn("2")); ok {
		t.row("scenario 2: at least the fastest peer, rueidislock KeyMajority 1 included", fmt.Sprintf("%s (fastest peer: %s)", fmtX(x), top), yes(x >= 1))
	}
	for _, s := range []string{"3", "3x"} {
		if lat := rep.lat(s, libOurs); len(lat) > 0 {
			p := percentile(lat, 99)
			t.row(fmt.Sprintf("scenario %s: no starvation, p99 wait under 10 ms", s), fmtDur(p), yes(p < 10*time.Millisecond))
		}
	}
	for _, s := range []string{"4", "4x"} {
		lat := rep.lat(s, libOurs)
		if len(lat) == 0 {
			continue
		}
		p := percentile(lat, 50)
		t.row(fmt.Sprintf("scenario %s: handoff p50 at most 3 loopback round trips", s),
			fmt.Sprintf("%s = %.2f round trips of %s", fmtDur(p), float64(p)/float64(max(rtt, 1)), fmtDur(rtt)), yes(p <= 3*rtt))
		best := time.Duration(math.MaxInt64)
		for _, l := range []string{libRueidis, libRueidis1, libRueidis1NoLoop} {
			if rl := rep.lat(s, l); len(rl) > 0 {
				best = min(best, percentile(rl, 50))
			}
		}
		if best != math.MaxInt64 {
			t.row(fmt.Sprintf("scenario %s: handoff p50 no slower than rueidislock's (the faster variant)", s),
				fmt.Sprintf("%s vs %s", fmtDur(p), fmtDur(best)), yes(p <= best))
		}
		if x, _, _, ok := rep.ratio(s, libOurs, libRueidis); ok {
			t.row(fmt.Sprintf("scenario %s: acquisitions/s at least 1.5x rueidislock's", s), fmtX(x), yes(x >= 1.5))
		}
		for _, l := range []string{libRedsync, libRedlock} {
			if x, _, _, ok := rep.ratio(s, libOurs, l); ok {
				t.row(fmt.Sprintf("scenario %s: acquisitions/s at least 100x %s's", s, l), fmtX(x), yes(x >= 100))
			}
		}
	}
	for _, s := range []string{"5", "5k"} {
		if lat := rep.lat(s, libOurs); len(lat) > 0 {
			p := percentile(lat, 50)
			t.row(fmt.Sprintf("scenario %s: a waiter holds it within 5 ms of the expiry (p50)", s), fmtDur(p), yes(p <= 5*time.Millisecond))
		}
	}
	if lat := rep.lat("6", libOurs); len(lat) > 0 {
		p := percentile(lat, 50)
		t.row("scenario 6: woken within 5 ms of a plain DEL, with client tracking (p50)", fmtDur(p), yes(p <= 5*time.Millisecond))
	}
	for _, r := range rep.results["7"][libOurs] {
		secs := r.Elapsed.Seconds()
		rts := float64(r.U.rt) / secs
		cpu := r.U.cpu.Seconds() / secs
		t.row(fmt.Sprintf("scenario 7: at most 20 client round trips/s for the %d", r.Holding), fmtNum(rts), yes(rts <= 20))
		t.row("scenario 7: client CPU under 5% of one core", fmt.Sprintf("%.2f%%", 100*cpu), yes(cpu < 0.05))
		t.row("scenario 7: under 1 KiB per reservation", fmt.Sprintf("%.0f B", r.BytesPer), yes(r.BytesPer < 1024))
		t.row("scenario 7: no reservation lost", fmt.Sprint(r.Lost), yes(r.Lost == 0))
	}
	for _, s := range lossScenarios {
		lat := rep.lat(s, libOurs)
		if len(lat) == 0 {
			continue
		}
		p := percentile(lat, 99)
		t.row(fmt.Sprintf("scenario %s: a holder notices a foreign %s within 10 ms, with client tracking (p99)", s, lossWrite[s]),
			fmtDur(p), yes(p < 10*time.Millisecond))
	}
	rep.fairTargets(t)
	rep.semaphoreTargets(t)
	rep.setTargets(t)
	b.WriteString("\n")
}

func (rep *report) peersIn(scenario string) []string {
	var ps []string
	for _, p := range peers {
		if len(rep.results[scenario][p]) > 0 {
			ps = append(ps, p)
		}
	}
	return ps
}

// writeBetweenMarkers puts section, which starts with the marker begin and
// ends with end and a newline, into path in place of what is between them
// (markers included), keeping what is around them; a file without them
// gets section appended.
func writeBetweenMarkers(path, section, begin, end string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + section + s[min(j+len(end)+1, len(s)):]
	default:
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			s += "\n"
		}
		s += section
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// plotHandoffs draws the handoff latency CDF of scenarios 4 and 4x, one
// panel each, every library a line, on a logarithmic time axis.
func (rep *report) plotHandoffs(path string) error {
	// This library in black, the others in colours of a qualitative
	// palette, taken in turn by the libraries that have a line: plotutil's
	// seven colours wrap, and gave two libraries close shades of red.
	pal, err := brewer.GetPalette(brewer.TypeQualitative, "Dark2", 8)
	if err != nil {
		return err
	}
	colors := pal.Colors()
	var plots []*plot.Plot
	for _, s := range []string{"4", "4x"} {
		libs := rep.libsIn(s)
		if len(libs) == 0 {
			continue
		}
		p := plot.New()
		p.Title.Text = "Scenario " + s + ": handoff latency CDF, 8 goroutines, round-robin"
		if s == "4" {
			p.Title.Text += "\none client shared by the 8"
		} else {
			p.Title.Text += "\na client per goroutine"
		}
		p.X.Label.Text = "handoff latency (ms, log scale): release returned -> next acquire returned"
		p.Y.Label.Text = "fraction of handoffs"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = 0, 1
		p.Add(plotter.NewGrid())
		// Top left: the fast libraries rise to the right of it, the
		// pollers far to the right.
		p.Legend.Top = true
		p.Legend.Left = true
		p.Legend.XOffs = vg.Points(8)
		p.Legend.YOffs = -vg.Points(8)
		others := 0
		for i, l := range libs {
			lat := rep.lat(s, l)
			if len(lat) == 0 {
				continue
			}
			pts := make(plotter.XYs, 0, len(lat))
			step := max(len(lat)/2000, 1)
			for k := 0; k < len(lat); k += step {
				ms := max(float64(lat[k])/1e6, 0.001) // a log axis has no zero
				pts = append(pts, plotter.XY{X: ms, Y: float64(k+1) / float64(len(lat))})
			}
			last := lat[len(lat)-1]
			pts = append(pts, plotter.XY{X: max(float64(last)/1e6, 0.001), Y: 1})
			line, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			line.Width = vg.Points(1.5)
			if l == libOurs {
				line.Color = color.Black
				line.Width = vg.Points(2.5)
			} else {
				line.Color = colors[others%len(colors)]
				others++
			}
			line.Dashes = plotutil.Dashes(i)
			p.Add(line)
			p.Legend.Add(fmt.Sprintf("%s (p50 %s)", strings.ReplaceAll(name(l), "**", ""), fmtDur(percentile(lat, 50))), line)
		}
		plots = append(plots, p)
	}
	if len(plots) == 0 {
		return nil
	}
	w, h := vg.Points(720), vg.Points(380*float64(len(plots)))
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadY: vg.Points(20), PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(10)}
	grid := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		grid[i] = []*plot.Plot{p}
	}
	canvases := plot.Align(grid, tiles, dc)
	for i, p := range plots {
		p.Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sectionMarkdown answers a section of its own (a -semaphore or -set run)
// between begin and end: when and how it was measured, then rounds (what
// each round ran), the loopback round trip, write's tables, the failed
// runs and the targets.
func (rep *report) sectionMarkdown(begin, end, rounds string, write func(*bytes.Buffer), targets func(table)) string {
	b := &bytes.Buffer{}
	fmt.Fprintf(b, "%s\n\n", begin)
	fmt.Fprintf(b, "Measured %s, in %v.\n\n", rep.started.UTC().Format("2006-01-02 15:04 MST"),
		rep.ended.Sub(rep.started).Round(time.Second))
	fmt.Fprintf(b, "Command (from the repository root):\n\n```\n%s\n```\n\n", rep.command)
	fmt.Fprintf(b, "- Machine: %s, %d CPUs, kernel %s; this process on CPUs %s (GOMAXPROCS %d), redis-server on CPUs %s.\n",
		cpuModel(), cpuCount(), readTrim("/proc/sys/kernel/osrelease"), allowedCPUs(), runtime.GOMAXPROCS(0), orAll(rep.pinned))
	fmt.Fprintf(b, "- Redis %s (no persistence, default configuration otherwise), on loopback; %s; %s.\n",
		rep.redis, runtime.Version(), versions())
	b.WriteString(rounds)
	fmt.Fprintf(b, "Loopback round trip (go-redis PING, median of %d per round): **%s** (p99 %s).\n\n",
		rep.cfg.pings, fmtDur(rep.rtt()), fmtDur(percentile(rep.lat("rtt", "PING"), 99)))
	write(b)
	rep.writeFailed(b)
	t := table{b}
	fmt.Fprintf(b, "### Targets\n\n")
	t.head("target", "measured", "met")
	targets(t)
	b.WriteString("\n")
	fmt.Fprintf(b, "%s\n", end)
	return b.String()
}
