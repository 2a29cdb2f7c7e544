package main

import (
	"bytes"
	"fmt"
	"slices"
	"time"
)

// The markers of the semaphores' results: a run with -semaphore writes
// between them, and leaves the other sections alone.
const (
	beginSemaphoreMarker = "<!-- bench semaphore results: begin (written by bench/ -semaphore, do not edit by hand) -->"
	endSemaphoreMarker   = "<!-- bench semaphore results: end -->"
)

// semaphoreMarkdown answers the section of a -semaphore run: the
// uncontended cycles with a permit of each limit against plain ones, the
// contended semaphore against plain resources, and its target.
func (rep *report) semaphoreMarkdown() string {
	return rep.sectionMarkdown(beginSemaphoreMarker, endSemaphoreMarker, fmt.Sprintf(
		"- %d round(s); in each, this library (with its queue, the default; TTL %v) runs scenario 1, s1 with each limit (%s), s3 and s3p in turn. "+
			"Scenarios 1 and s1: %v each; s3 and s3p: %v.\n\n",
		rep.cfg.rounds, cycleSettings.ttl, joinInts(rep.cfg.limits), rep.cfg.d12, rep.cfg.d34),
		rep.writeSemaphores, rep.semaphoreTargets)
}

// limitKeys answers the runs of scenario s1 that have results, by limit.
func (rep *report) limitKeys() []string {
	var keys []string
	for _, n := range rep.cfg.limits {
		if k := limitScenario(n); len(rep.results[k][libOurs]) > 0 {
			keys = append(keys, k)
		}
	}
	return keys
}

// acq answers every acquisition latency of lib in scenario, sorted.
func (rep *report) acq(scenario, lib string) []time.Duration {
	var all []time.Duration
	for _, r := range rep.results[scenario][lib] {
		all = append(all, r.Acq...)
	}
	return sortedCopy(all)
}

// redisCPUPerOp is a round's Redis CPU per operation, in µs.
func redisCPUPerOp(r result) float64 { return float64(r.U.redisCPU) / 1e3 / float64(max(r.Ops, 1)) }

// fmtRange answers "median (min-max)" of ratios, or "-".
func fmtRange(med, lo, hi float64, ok bool) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%s (%s-%s)", fmtX(med), fmtX(lo), fmtX(hi))
}

// writeSemaphores writes the tables of the semaphore scenarios: the
// cycles of scenario s1 against scenario 1's, and s3 against s3p, each
// ratio the median of per-round ratios, with the lowest and highest.
func (rep *report) writeSemaphores(b *bytes.Buffer) {
	t := table{b}
	if keys := rep.limitKeys(); len(keys) > 0 && len(rep.results["1"][libOurs]) > 0 {
		fmt.Fprintf(b, "### Semaphores, uncontended: one goroutine, fresh resources, acquire + release of a permit of `Limit(n)` "+
			"against a plain reservation (scenario 1) in the same rounds\n\n")
		t.head("call", "cycles/s median (min-max)", "x plain (median of per-round ratios, min-max)", "acquire p50", "acquire p99",
			"cycle p50", "cycle p99", "Redis calls/cycle", "Redis calls by command", "round trips/cycle",
			"Redis CPU µs/cycle", "Redis CPU x plain (median of per-round ratios, min-max)", "client CPU µs/cycle", "allocs/cycle", "B/cycle")
		for _, k := range append([]string{"1"}, keys...) {
			call, x, cpuX := "plain (no option)", "-", "-"
			if n, ok := limitOf(k); ok {
				call = fmt.Sprintf("`Limit(%d)`", n)
				x = fmtRange(ratioOf(rep.results[k][libOurs], rep.results["1"][libOurs]))
				cpuX = fmtRange(rep.growth(k, "1", libOurs, redisCPUPerOp))
			}
			acq, lat := rep.acq(k, libOurs), rep.lat(k, libOurs)
			t.row(call, spread(rep.rates(k, libOurs)), x, fmtDur(percentile(acq, 50)), fmtDur(percentile(acq, 99)),
				fmtDur(percentile(lat, 50)), fmtDur(percentile(lat, 99)),
				fmtNum(rep.per(k, libOurs, callsPer)), rep.callsText(k, libOurs), fmtNum(rep.per(k, libOurs, rtPer)),
				fmtNum(rep.per(k, libOurs, redisCPUPer)), cpuX, fmtNum(rep.per(k, libOurs, cpuPer)),
				fmtNum(rep.per(k, libOurs, func(u usage) float64 { return float64(u.mallocs) })),
				fmtNum(rep.per(k, libOurs, func(u usage) float64 { return float64(u.bytes) })))
		}
		b.WriteString("\n")
	}
	var ss []string
	for _, s := range []string{"s3", "s3p"} {
		if len(rep.results[s][libOurs]) > 0 {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(b, "### Semaphores, contended: %d Clients, each looping `Lock`, hold %v, `Release`: one semaphore of `Limit(%d)` "+
		"against %d plain resources in the same rounds\n\n", semClients, rep.cfg.semHold, semLimit, semLimit)
	t.head(slices.Concat([]string{"resources", "acquisitions/s median (min-max)", "x plain (median of per-round ratios, min-max)",
		"Redis calls/acq. median (min-max)", "round trips/acq.", "Redis calls by command (per acq.)"}, orderHeads,
		[]string{"most holders at once (allowed)", "acquisitions over the limit", "acquisitions per Client (min-max)",
			"Redis CPU µs/acq.", "client CPU µs/acq."})...)
	for _, s := range ss {
		what, x, allowed := fmt.Sprintf("one semaphore of `Limit(%d)`", semLimit), "-", fmt.Sprint(semLimit)
		if s == "s3p" {
			what = fmt.Sprintf("%d plain resources (%s)", semLimit, spreadText())
			allowed = fmt.Sprintf("%d, 1 each", semLimit)
		} else {
			x = fmtRange(ratioOf(rep.results["s3"][libOurs], rep.results["s3p"][libOurs]))
		}
		most, excess, lo, hi := rep.holders(s)
		t.row(slices.Concat([]string{what, spread(rep.rates(s, libOurs)), x,
			spreadNum(rep.perRound(s, libOurs, callsPerOp)), fmtNum(rep.per(s, libOurs, rtPer)), rep.callsText(s, libOurs)},
			rep.orderCols(s, libOurs),
			[]string{fmt.Sprintf("%d (%s)", most, allowed), fmt.Sprint(excess), fmt.Sprintf("%d-%d", lo, hi),
				fmtNum(rep.per(s, libOurs, redisCPUPer)), fmtNum(rep.per(s, libOurs, cpuPer))})...)
	}
	b.WriteString("\n")
}

// spreadText says how scenario s3p spreads its Clients over its plain
// resources: "Clients 3, 3, 2".
func spreadText() string {
	per := make([]int, semLimit)
	for w := range semClients {
		per[w%semLimit]++
	}
	return "Clients " + joinInts(per)
}

// holders answers, over the rounds of scenario s (s3, s3p), the most
// holders seen at once, the acquisitions over the limit, and the fewest and
// most acquisitions of one Client.
func (rep *report) holders(s string) (most int, excess, lo, hi int64) {
	for i, r := range rep.results[s][libOurs] {
		most = max(most, r.MostHolders)
		excess += r.Excess
		if i == 0 {
			lo, hi = r.MinPer, r.MaxPer
		}
		lo, hi = min(lo, r.MinPer), max(hi, r.MaxPer)
	}
	return most, excess, lo, hi
}

// semaphoreTargets writes the rows of the semaphores' targets: never more
// holders at once than a resource allows.
func (rep *report) semaphoreTargets(t table) {
	if len(rep.results["s3"][libOurs]) > 0 {
		most, excess, _, _ := rep.holders("s3")
		t.row(fmt.Sprintf("scenario s3: never more than %d holders of the semaphore of `Limit(%d)` at once", semLimit, semLimit),
			fmt.Sprintf("most %d at once, %d acquisitions over the limit", most, excess), yes(excess == 0 && most <= semLimit))
	}
	if len(rep.results["s3p"][libOurs]) > 0 {
		most, excess, _, _ := rep.holders("s3p")
		t.row(fmt.Sprintf("scenario s3p: never more than 1 holder of each of the %d plain resources at once", semLimit),
			fmt.Sprintf("most %d at once in all, %d acquisitions over the limit", most, excess), yes(excess == 0 && most <= semLimit))
	}
}
