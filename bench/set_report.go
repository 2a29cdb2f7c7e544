package main

import (
	"bytes"
	"fmt"
)

// The markers of the sets' results: a run with -set writes between them,
// and leaves the other sections alone.
const (
	beginSetMarker = "<!-- bench set results: begin (written by bench/ -set, do not edit by hand) -->"
	endSetMarker   = "<!-- bench set results: end -->"
)

// setMarkdown answers the section of a -set run: the uncontended cycles of
// a set of each size against as many plain reservations one after the
// other and against one, the contended sets against plain Locks in a
// global order, and its targets.
func (rep *report) setMarkdown() string {
	return rep.sectionMarkdown(beginSetMarker, endSetMarker, fmt.Sprintf(
		"- %d round(s); in each, this library (with its queue, the default; TTL %v) runs scenario 1, m1 and m1p with each size (%s), m3 and m3p, "+
			"in an order rotated every round. Scenarios 1, m1 and m1p: %v each; m3 and m3p: %v.\n\n",
		rep.cfg.rounds, cycleSettings.ttl, joinInts(rep.cfg.sizes), rep.cfg.d12, rep.cfg.d34),
		rep.writeSets, rep.setTargets)
}

// sizeKeys answers the sizes of scenario m1 that have results.
func (rep *report) sizeKeys() []int {
	var ks []int
	for _, k := range rep.cfg.sizes {
		if len(rep.results[sizeScenario(k)][libOurs]) > 0 {
			ks = append(ks, k)
		}
	}
	return ks
}

// plainsKey answers where the results of k plain reservations one after
// the other are filed: m1p/k, or scenario 1 for one.
func plainsKey(k int) string {
	if k == 1 {
		return "1"
	}
	return plainsScenario(k)
}

// writeSets writes the tables of the set scenarios: the cycles of m1
// against m1p's and scenario 1's, and m3 against m3p, each ratio the
// median of per-round ratios, with the lowest and highest.
func (rep *report) writeSets(b *bytes.Buffer) {
	t := table{b}
	if ks := rep.sizeKeys(); len(ks) > 0 && len(rep.results["1"][libOurs]) > 0 {
		fmt.Fprintf(b, "### Sets, uncontended: one goroutine, fresh resources, `TryLock` + `Release` of a set of k (`With`) "+
			"against k plain reservations one after the other and against one (scenario 1) in the same rounds\n\n")
		t.head("call", "cycles/s median (min-max)", "x k plain one after the other (median of per-round ratios, min-max)",
			"x one plain (median of per-round ratios, min-max)", "acquire p50", "acquire p99", "cycle p50", "cycle p99",
			"Redis calls/cycle", "Redis calls by command", "round trips/cycle", "Redis CPU µs/cycle",
			"Redis CPU x k plain (median of per-round ratios, min-max)", "client CPU µs/cycle", "allocs/cycle", "B/cycle")
		row := func(call, key, x, one, cpuX string) {
			acq, lat := rep.acq(key, libOurs), rep.lat(key, libOurs)
			t.row(call, spread(rep.rates(key, libOurs)), x, one, fmtDur(percentile(acq, 50)), fmtDur(percentile(acq, 99)),
				fmtDur(percentile(lat, 50)), fmtDur(percentile(lat, 99)),
				fmtNum(rep.per(key, libOurs, callsPer)), rep.callsText(key, libOurs), fmtNum(rep.per(key, libOurs, rtPer)),
				fmtNum(rep.per(key, libOurs, redisCPUPer)), cpuX, fmtNum(rep.per(key, libOurs, cpuPer)),
				fmtNum(rep.per(key, libOurs, func(u usage) float64 { return float64(u.mallocs) })),
				fmtNum(rep.per(key, libOurs, func(u usage) float64 { return float64(u.bytes) })))
		}
		one := rep.results["1"][libOurs]
		row("1 plain (no option)", "1", "-", "-", "-")
		for _, k := range ks {
			key, base := sizeScenario(k), plainsKey(k)
			if k > 1 && len(rep.results[base][libOurs]) > 0 {
				row(fmt.Sprintf("%d plain, one after the other", k), base, "-",
					fmtRange(ratioOf(rep.results[base][libOurs], one)), "-")
			}
			row(fmt.Sprintf("set of %d (`With`)", k), key,
				fmtRange(ratioOf(rep.results[key][libOurs], rep.results[base][libOurs])),
				fmtRange(ratioOf(rep.results[key][libOurs], one)),
				fmtRange(rep.growth(key, base, libOurs, redisCPUPerOp)))
		}
		b.WriteString("\n")
	}
	if len(rep.results["m3"][libOurs]) == 0 && len(rep.results["m3p"][libOurs]) == 0 {
		return
	}
	fmt.Fprintf(b, "### Sets, contended: %d Clients, each looping `Lock` of %d of %d resources, hold %v, `Release`: "+
		"as a set in a random order against plain `Lock`s in one global order, in the same rounds\n\n",
		setClients, setPick, setResources, rep.cfg.setHold)
	t.head("how", "acquisitions/s median (min-max)", "x plain in order (median of per-round ratios, min-max)",
		"wait p50", "wait p99", "handoff p50", "handoff p99",
		"Redis calls/acq. median (min-max)", "round trips/acq.", "Redis calls by command (per acq.)",
		"most holders of a resource at once", "double holdings", "acquisitions per Client (min-max)",
		"Redis CPU µs/acq.", "client CPU µs/acq.")
	for _, s := range []string{"m3", "m3p"} {
		if len(rep.results[s][libOurs]) == 0 {
			continue
		}
		how, x := fmt.Sprintf("a set (`Lock(a, With(b))`), %d resources in a random order", setPick), "-"
		if s == "m3p" {
			how = fmt.Sprintf("%d plain `Lock`s in the resources' global order", setPick)
		} else {
			x = fmtRange(ratioOf(rep.results["m3"][libOurs], rep.results["m3p"][libOurs]))
		}
		w, h := rep.waits(s, libOurs), rep.lat(s, libOurs)
		most, excess, lo, hi := rep.holders(s)
		t.row(how, spread(rep.rates(s, libOurs)), x,
			fmtDur(percentile(w, 50)), fmtDur(percentile(w, 99)), fmtDur(percentile(h, 50)), fmtDur(percentile(h, 99)),
			spreadNum(rep.perRound(s, libOurs, callsPerOp)), fmtNum(rep.per(s, libOurs, rtPer)), rep.callsText(s, libOurs),
			fmt.Sprint(most), fmt.Sprint(excess), fmt.Sprintf("%d-%d", lo, hi),
			fmtNum(rep.per(s, libOurs, redisCPUPer)), fmtNum(rep.per(s, libOurs, cpuPer)))
	}
	b.WriteString("\n")
}

// setTargets writes the rows of the sets' targets: never two holders of a
// resource at once.
func (rep *report) setTargets(t table) {
	for _, s := range []string{"m3", "m3p"} {
		if len(rep.results[s][libOurs]) == 0 {
			continue
		}
		how := "sets"
		if s == "m3p" {
			how = "plain Locks in order"
		}
		most, excess, _, _ := rep.holders(s)
		t.row(fmt.Sprintf("scenario %s (%s): never two holders of one of the %d resources at once", s, how, setResources),
			fmt.Sprintf("most %d at once, %d double holdings", most, excess), yes(excess == 0 && most <= 1))
	}
}
