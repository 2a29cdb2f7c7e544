// Command bench measures github.com/redis-reservation/reservation against
// redsync v4, bsm/redislock and rueidislock, and against raw floors (SET NX
// PX plus a compare-and-delete script, on go-redis and on rueidis), on one
// redis-server that it starts itself, in one run, interleaved and repeated;
// with -topology single,cluster, also on a Redis Cluster of 3 masters in
// the same run; with -topology single,quorum, also in quorum mode over 3
// independent servers, beside redsync with a pool per server. It writes
// the tables of docs/PERFORMANCE.md and the plot of the handoff latency
// CDF. With -fair, it measures fair waiting: this library with its queue
// of waiters (the default) against Options.NoQueue, in the same run, and
// OS processes contending for one resource (scenario 9), for which it runs
// itself again as a worker. With -semaphore, it measures this library's
// semaphores (reservation.Limit) beside its plain reservations, in the same
// run. With -set, it measures this library's sets (reservation.With)
// beside its plain reservations, in the same run. See docs/PERFORMANCE.md
// for the commands and the scenarios.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis-reservation/reservation"
)

// config is what a run measures and for how long.
type config struct {
	rounds    int           // each scenario is run this many times per library, interleaved
	scenarios []string      // "1" to "9"; "3x" and "4x" are 3 and 4 with a client per goroutine, "5k" is 5 among many keys with a TTL, "8s" and "8f" are 8 with a SET and a FLUSHALL; "9" runs once for each of procs; "s1" (once for each of limits), "s3" and "s3p" are the semaphore scenarios (semaphore.go); "m1" (once for each of sizes), "m1p" (once for each of sizes above 1), "m3" and "m3p" are the set scenarios (set.go)
	libs      []string      // libraries, in table order
	d12       time.Duration // scenarios 1 and 2, per library and round
	d34       time.Duration // scenarios 3 and 4
	trials    int           // scenarios 5 and 6, per library and round
	ttl5      time.Duration // scenario 5: how long the foreign holder's keys live (plus 0-100 ms)
	giveUp    time.Duration // scenarios 5 and 6: a waiter not woken by then after the expiry or the DEL gives up
	n7        int           // scenario 7: reservations held
	d7        time.Duration
	ttl7, hb7 time.Duration
	rounds7   int
	n8        int           // scenario 8: reservations held
	trials8   int           // scenarios 8 and 8s: foreign writes per round, one held key each
	trials8f  int           // scenario 8f: FLUSHALLs per round, each ends all n8
	giveUp8   time.Duration // scenario 8: a loss not noticed by then counts as not noticed
	procs     []int         // scenario 9: processes contending, a run each
	d9        time.Duration // scenario 9: the measured window of a run
	warm9     time.Duration // scenario 9: how long the processes contend before it
	hold9     time.Duration // scenario 9: how long each holding lasts
	limits    []int         // scenario s1: limits, a run each
	semHold   time.Duration // scenarios s3 and s3p: how long each holding lasts
	sizes     []int         // scenarios m1 and m1p: sizes of the sets, a run each
	setHold   time.Duration // scenarios m3 and m3p: how long each holding lasts
	redisCPU  string        // CPU list to pin redis-server to ("" for none)
	pings     int           // PINGs per round for the loopback round trip
	// topologies are the deployments every scenario runs on, in turn for
	// each library: topoSingle, topoCluster, topoQuorum.
	topologies []string
	masters    int // masters of the cluster
	servers    int // servers of the quorum
	// fair marks the fair-waiting run: its report goes between the fair
	// results markers.
	fair bool
	// semaphore marks the semaphores' run: its report goes between the
	// semaphore results markers.
	semaphore bool
	// set marks the sets' run: its report goes between the set results
	// markers.
	set bool
	// callgrind marks the run of instruction counts: the server runs under
	// valgrind's callgrind, and the report goes between the callgrind
	// results markers.
	callgrind bool
	cycles    int // scenario c1: cycles counted per library and round
}

// crowded is how many other keys with a TTL the database holds in
// scenario 5k.
const crowded = 20_000

// fullConfig is the documented run: about 12 minutes.
func fullConfig() config {
	return config{
		rounds:    5,
		scenarios: []string{"1", "2", "3", "4", "4x", "5", "5k", "6", "7", "8", "8s", "8f"},
		libs:      allLibs,
		d12:       time.Second,
		d34:       2 * time.Second,
		trials:    6,
		ttl5:      300 * time.Millisecond,
		giveUp:    time.Second,
		n7:        10_000,
		d7:        30 * time.Second,
		ttl7:      5 * time.Second,
		hb7:       time.Second,
		rounds7:   1,
		n8:        200,
		trials8:   200,
		trials8f:  3,
		giveUp8:   2 * time.Second,
		procs:     []int{5, 10, 20, 40},
		d9:        3 * time.Second,
		warm9:     time.Second,
		hold9:     20 * time.Millisecond,
		limits:    []int{1, semLimit, 10, 100, 1000},
		semHold:   time.Millisecond,
		sizes:     []int{1, 2, 4, 8, 16, reservation.MaxSet},
		setHold:   time.Millisecond,
		redisCPU:  "0",
		pings:     5000,

		topologies: []string{topoSingle},
		masters:    3,
		servers:    3,
	}
}

// clusterConfig is the documented run of the cluster: scenarios 1, 3 and
// 4 on a single server and on a cluster, side by side in the same run:
// about 5 minutes.
func clusterConfig() config {
	c := fullConfig()
	c.scenarios = []string{"1", "3", "4"}
	c.topologies = []string{topoSingle, topoCluster}
	// NoQueue is measured on a single server (see libRunsOn).
	c.libs = slices.DeleteFunc(slices.Clone(c.libs), func(l string) bool { return l == libOursNoQueue })
	return c
}

// quorumConfig is the documented run of quorum mode: scenarios 1, 3, 4
// and 7 on a single server and on a quorum of 3 servers, side by side in
// the same run, for this library and redsync, the peer that locks a
// majority of independent servers: about 4 minutes.
func quorumConfig() config {
	c := fullConfig()
	c.scenarios = []string{"1", "3", "4", "7"}
	c.libs = slices.Clone(quorumLibs)
	c.topologies = []string{topoSingle, topoQuorum}
	return c
}

// fairConfig is the documented run of fair waiting: this library with its
// queue (the default) and with NoQueue, side by side in the same run, in
// the scenarios of one client (1 to 4) and of a client per goroutine (3x,
// 4x), and OS processes contending for one resource (9): about 5 minutes.
func fairConfig() config {
	c := fullConfig()
	c.scenarios = []string{"1", "2", "3", "3x", "4", "4x", "9"}
	c.libs = []string{libOurs, libOursNoQueue}
	c.fair = true
	return c
}

// semaphoreConfig is the documented run of semaphores: this library's
// permits of a semaphore beside its plain reservations, in the same
// rounds: one goroutine's cycles with a permit of Limit(n) for each of
// limits against plain ones (s1, scenario 1), and 8 Clients on one
// semaphore of Limit(3) against 8 Clients on 3 plain resources (s3, s3p),
// in 10 rounds, as its ratios are of scenarios a second or two long:
// about two minutes.
func semaphoreConfig() config {
	c := fullConfig()
	c.rounds = 10
	c.scenarios = []string{"1", "s1", "s3", "s3p"}
	c.libs = []string{libOurs}
	c.semaphore = true
	return c
}

// setConfig is the documented run of sets: this library's sets beside its
// plain reservations, in the same rounds: one goroutine's cycles of a set
// of k against k plain reservations one after the other and against one
// plain reservation (m1, m1p, scenario 1), for each of sizes, and 8
// Clients taking 2 of 4 resources as sets against the same with plain
// Locks in a global order (m3, m3p), in 10 rounds, as its ratios are of
// scenarios a second or two long: about three minutes.
func setConfig() config {
	c := fullConfig()
	c.rounds = 10
	c.scenarios = []string{"1", "m1", "m1p", "m3", "m3p"}
	c.libs = []string{libOurs}
	c.set = true
	return c
}

// callgrindConfig is the documented run of instruction counts: scenario 1
// of every library, counted in Redis's instructions by valgrind's
// callgrind, in 3 rounds (the counts barely move from one to the next):
// about a minute.
func callgrindConfig() config {
	c := fullConfig()
	c.rounds = 3
	c.scenarios = []string{scenarioInstr}
	c.callgrind = true
	c.cycles = 2000
	c.pings = 200
	return c
}

// smokeConfig runs every scenario and library very briefly: for CI, so
// that the harness never rots. Its figures mean nothing.
func smokeConfig() config { return smokeOf(fullConfig()) }

// smokeOf returns c with every scenario very brief.
func smokeOf(c config) config {
	c.rounds = 1
	c.d12 = 150 * time.Millisecond
	c.d34 = 300 * time.Millisecond
	c.trials = 2
	c.ttl5 = 100 * time.Millisecond
	c.giveUp = 300 * time.Millisecond
	c.n7 = 200
	c.d7 = 800 * time.Millisecond
	c.ttl7, c.hb7 = 2*time.Second, 500*time.Millisecond
	c.n8, c.trials8, c.trials8f = 20, 20, 1
	c.procs, c.d9, c.warm9 = []int{4}, time.Second, 300*time.Millisecond
	c.redisCPU = ""
	c.pings = 200
	c.cycles = 20
	return c
}

func main() {
	if spec := os.Getenv(workerEnv); spec != "" {
		os.Exit(workerMain(spec)) // a process of scenario 9
	}
	smoke := flag.Bool("smoke", false, "run every scenario very briefly (CI); figures mean nothing")
	topology := flag.String("topology", topoSingle, "comma-separated deployments to run every scenario on: single (one redis-server), "+
		"cluster (a Redis Cluster of 3 masters; default scenarios then "+strings.Join(clusterConfig().scenarios, ",")+
		", and the report goes between the cluster results markers), "+
		"quorum (3 independent redis-servers, for "+strings.Join(quorumLibs, " and ")+"; default scenarios then "+
		strings.Join(quorumConfig().scenarios, ",")+", default libraries "+strings.Join(quorumConfig().libs, ",")+
		", and the report goes between the quorum results markers)")
	out := flag.String("out", "", "write the results into this Markdown file, between the results markers "+
		"(the cluster results markers with -topology cluster, the quorum results markers with -topology quorum) (default: stdout)")
	fair := flag.Bool("fair", false, "measure fair waiting: "+strings.Join(fairConfig().libs, " against ")+" in scenarios "+
		strings.Join(fairConfig().scenarios, ",")+" (9: OS processes contending), and write between the fair results markers")
	semaphore := flag.Bool("semaphore", false, "measure semaphores: this library's permits of Limit(n) beside its plain reservations in scenarios "+
		strings.Join(semaphoreConfig().scenarios, ",")+" (s1: one goroutine's cycles, a run per limit; s3: 8 Clients on one semaphore of Limit(3); s3p: 8 Clients on 3 plain resources), "+
		"and write between the semaphore results markers")
	set := flag.Bool("set", false, "measure sets: this library's sets of k resources (reservation.With) beside its plain reservations in scenarios "+
		strings.Join(setConfig().scenarios, ",")+" (m1: one goroutine's cycles of a set, a run per size; m1p: k plain reservations one after the other; "+
		"m3: 8 Clients taking 2 of 4 resources as sets; m3p: the same with plain Locks in a global order), and write between the set results markers")
	sizes := flag.String("sizes", "", "scenarios m1 and m1p: comma-separated sizes of the sets, a run each (default "+joinInts(fullConfig().sizes)+")")
	limits := flag.String("limits", "", "scenario s1: comma-separated limits, a run each (default "+joinInts(fullConfig().limits)+")")
	procs := flag.String("procs", "", "scenario 9: comma-separated numbers of processes, a run each (default 5,10,20,40)")
	plotPath := flag.String("plot", "", "write the handoff latency CDF of scenario 4 to this PNG file")
	rounds := flag.Int("rounds", 0, "rounds (default 5, 10 with -semaphore or -set; 1 with -smoke)")
	scen := flag.String("scenarios", "", "comma-separated scenarios to run (default all: "+strings.Join(fullConfig().scenarios, ",")+")")
	libs := flag.String("libs", "", "comma-separated libraries (default all: "+strings.Join(allLibs, ",")+")")
	redisCPU := flag.String("redis-cpu", "", "CPU list to pin redis-server to with taskset (default 0; none with -smoke)")
	n7 := flag.Int("n7", 0, "scenario 7: reservations held (default 10000)")
	d7 := flag.Duration("d7", 0, "scenario 7: how long they are held (default 30s)")
	cgrind := flag.Bool("callgrind", false, "count Redis's instructions: scenario 1 ("+scenarioInstr+") of every library on a redis-server run by valgrind's callgrind, "+
		"and write between the callgrind results markers")
	command := flag.String("command", "", "the command line to quote in the report (default: this one)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}

	topologies := strings.Split(*topology, ",")
	for _, t := range topologies {
		if !slices.Contains(allTopologies, t) {
			fmt.Fprintf(os.Stderr, "bench: unknown topology %q (known: %s)\n", t, strings.Join(allTopologies, ", "))
			os.Exit(2)
		}
	}
	if (*fair || *semaphore || *set || *cgrind) && (len(topologies) != 1 || topologies[0] != topoSingle) {
		fmt.Fprintln(os.Stderr, "bench: -fair, -semaphore, -set and -callgrind run on a single server only")
		os.Exit(2)
	}
	if n := countTrue(*fair, *semaphore, *set, *cgrind); n > 1 {
		fmt.Fprintln(os.Stderr, "bench: -fair, -semaphore, -set and -callgrind are runs of their own: give one")
		os.Exit(2)
	}
	cfg := fullConfig()
	switch {
	case *fair:
		cfg = fairConfig()
	case *semaphore:
		cfg = semaphoreConfig()
	case *set:
		cfg = setConfig()
	case *cgrind:
		cfg = callgrindConfig()
	case slices.Contains(topologies, topoQuorum):
		cfg = quorumConfig()
	case slices.Contains(topologies, topoCluster):
		cfg = clusterConfig()
	}
	if *smoke {
		cfg = smokeOf(cfg)
	}
	cfg.topologies = topologies
	if *rounds > 0 {
		cfg.rounds = *rounds
	}
	if *scen != "" {
		cfg.scenarios = strings.Split(*scen, ",")
		if cfg.callgrind != slices.Equal(cfg.scenarios, []string{scenarioInstr}) {
			fmt.Fprintf(os.Stderr, "bench: scenario %s runs with -callgrind, and -callgrind runs it alone\n", scenarioInstr)
			os.Exit(2)
		}
	}
	if *libs != "" {
		cfg.libs = strings.Split(*libs, ",")
		for _, l := range cfg.libs {
			if !slices.Contains(allLibs, l) {
				fmt.Fprintf(os.Stderr, "bench: unknown library %q (known: %s)\n", l, strings.Join(allLibs, ", "))
				os.Exit(2)
			}
		}
	}
	if *redisCPU != "" {
		cfg.redisCPU = *redisCPU
	}
	if *procs != "" {
		cfg.procs = nil
		for p := range strings.SplitSeq(*procs, ",") {
			n, err := strconv.Atoi(p)
			if err != nil || n < 2 {
				fmt.Fprintf(os.Stderr, "bench: -procs: %q is not a number of processes (2 or more)\n", p)
				os.Exit(2)
			}
			cfg.procs = append(cfg.procs, n)
		}
	}
	if *limits != "" {
		cfg.limits = nil
		for l := range strings.SplitSeq(*limits, ",") {
			n, err := strconv.Atoi(l)
			if err != nil || n < 1 || n > reservation.MaxLimit {
				fmt.Fprintf(os.Stderr, "bench: -limits: %q is not a limit (1 to %d)\n", l, reservation.MaxLimit)
				os.Exit(2)
			}
			cfg.limits = append(cfg.limits, n)
		}
	}
	if *sizes != "" {
		cfg.sizes = nil
		for l := range strings.SplitSeq(*sizes, ",") {
			n, err := strconv.Atoi(l)
			if err != nil || n < 1 || n > reservation.MaxSet {
				fmt.Fprintf(os.Stderr, "bench: -sizes: %q is not a size of a set (1 to %d)\n", l, reservation.MaxSet)
				os.Exit(2)
			}
			cfg.sizes = append(cfg.sizes, n)
		}
	}
	if *n7 > 0 {
		cfg.n7 = *n7
	}
	if *d7 > 0 {
		cfg.d7 = *d7
	}
	cmdline := *command
	if cmdline == "" {
		cmdline = strings.Join(os.Args, " ")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	rep.command = cmdline
	if *plotPath != "" {
		if err := rep.plotHandoffs(*plotPath); err != nil {
			fmt.Fprintln(os.Stderr, "bench: plot:", err)
			os.Exit(1)
		}
	}
	for _, sec := range rep.sections() {
		if *out == "" {
			fmt.Print(sec.text)
			continue
		}
		if err := writeBetweenMarkers(*out, sec.text, sec.begin, sec.end); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}

// run starts the deployments of cfg.topologies, runs every scenario of
// cfg and answers the report. Progress goes to progress.
func run(ctx context.Context, cfg config, progress io.Writer) (*report, error) {
	tag := fmt.Sprintf("b%d", time.Now().UnixNano()%1e6)
	var deps []*deployment
	defer func() {
		for _, d := range deps {
			d.stop()
		}
	}()
	scenarios := expand(cfg)
	for _, s := range scenarios {
		for _, t := range cfg.topologies {
			if !runsOn(s, t) {
				return nil, fmt.Errorf("scenario %s runs on a single server only (on a cluster or a quorum: %s)", s, strings.Join(clusterScenarios, ", "))
			}
		}
	}
	for _, t := range cfg.topologies {
		d, err := startDeployment(cfg, t, tag)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", t, err)
		}
		deps = append(deps, d)
	}
	rep := newReport(cfg, deps)
	add := func(r result) error {
		rep.add(r)
		status := ""
		if r.Err != nil {
			status = " ERROR: " + r.Err.Error()
		}
		where := ""
		if len(deps) > 1 {
			where = fmt.Sprintf(" %-7s", r.Topology)
		}
		fmt.Fprintf(progress, "round %d scenario %-2s%s %-16s ops %-7d %8.1f/s%s\n",
			r.Round, r.Scenario, where, r.Lib, r.Ops, rate(r), status)
		// A library that fails a run is reported, and the run goes on.
		return ctx.Err()
	}
	for round := range cfg.rounds {
		if err := add(deps[0].pingRTT(ctx, round, cfg.pings)); err != nil {
			return nil, err
		}
		order := scenarios
		if cfg.semaphore || cfg.set {
			// The semaphores' and the sets' runs compare scenarios with
			// each other (s1 with 1, s3 with s3p; m1 with m1p and 1, m3
			// with m3p) as the others compare libraries: their order
			// rotates every round too.
			order = rotate(scenarios, round)
		}
		for _, s := range order {
			if s == "7" && round >= cfg.rounds7 {
				continue
			}
			// Rotate the order of the libraries every round, so that no
			// library always runs first or after the same neighbour; and
			// so the order of the deployments for each library.
			for _, lib := range rotate(cfg.libs, round) {
				if !runs(lib, s) {
					continue
				}
				for _, d := range rotate(deps, round) {
					if !libRunsOn(lib, d.tg.topology) {
						continue
					}
					r, err := d.scenario(ctx, lib, s, round)
					if err != nil {
						return nil, err
					}
					if err := add(r); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	return rep, nil
}

// scenario runs one scenario of one library on e, after emptying it. An
// error is one of the harness (emptying the deployment, say); a library's
// own failure is in the result.
func (e *env) scenario(ctx context.Context, lib, s string, round int) (result, error) {
	if err := e.reset(ctx); err != nil {
		return result{}, err
	}
	if s == "5k" {
		if err := e.crowd(ctx, crowded); err != nil {
			return result{}, err
		}
	}
	cfg := e.cfg
	var r result
	switch s {
	case "1":
		r = e.cycles(ctx, lib, s, round, 1, cycleSettings, cfg.d12)
	case scenarioInstr:
		r = e.instructions(ctx, lib, round, cfg.cycles)
	case "2":
		r = e.cycles(ctx, lib, s, round, 16, cycleSettings, cfg.d12)
	case "3":
		r = e.contended(ctx, lib, s, round, 8, 1, false, cfg.d34)
	case "3x":
		r = e.contended(ctx, lib, s, round, 8, 8, false, cfg.d34)
	case "4":
		r = e.contended(ctx, lib, s, round, 8, 1, true, cfg.d34)
	case "4x":
		r = e.contended(ctx, lib, s, round, 8, 8, true, cfg.d34)
	case "5", "5k":
		r = e.foreignHolder(ctx, lib, s, round, cfg.trials, cfg.ttl5)
	case "6":
		r = e.foreignHolder(ctx, lib, s, round, cfg.trials, 0)
	case "7":
		r = e.atScale(ctx, lib, round, cfg.n7, cfg.ttl7, cfg.hb7, cfg.d7)
	case "8", "8s", "8f":
		r = e.lossNotice(ctx, lib, s, round)
	case "s3", "s3p":
		r = e.semContended(ctx, lib, s, round, cfg.d34)
	case "m3", "m3p":
		r = e.setContended(ctx, lib, s, round, cfg.d34)
	default:
		if n, ok := procsOf(s); ok {
			r = e.processes(ctx, lib, s, round, n)
			break
		}
		if n, ok := limitOf(s); ok {
			st := cycleSettings
			st.limit = n
			r = e.cycles(ctx, lib, s, round, 1, st, cfg.d12)
			break
		}
		if k, ok, plain := sizeOf(s); ok {
			r = e.setCycles(ctx, lib, s, round, k, plain, cfg.d12)
			break
		}
		return r, fmt.Errorf("unknown scenario %q", s)
	}
	r.Topology = e.tg.topology
	return r, nil
}

// runs reports whether lib takes part in scenario: the raw floors cannot
// wait or renew, scenario 8 measures this library's loss notice, the
// semaphore scenarios its semaphores and the set scenarios its sets (with
// its queue, the default), NoQueue
// is measured where it makes a difference, and scenario 9's processes run
// this library, with its queue or without.
func runs(lib, scenario string) bool {
	_, procs := procsOf(scenario)
	switch {
	case isSemaphore(scenario), isSet(scenario):
		return lib == libOurs
	case isLossNotice(scenario):
		return lib == libOurs
	case procs:
		return lib == libOurs || lib == libOursNoQueue
	case lib == libOursNoQueue:
		return slices.Contains(queueScenarios, scenario)
	case isRaw(lib):
		return scenario == "1" || scenario == "2" || scenario == scenarioInstr
	}
	return true
}

// queueScenarios are the scenarios of one process in which this library
// is measured with NoQueue as well: the uncontended ones, for the queue's
// cost, and the contended ones, for its order (scenario 9, of processes,
// measures both too).
var queueScenarios = []string{"1", "2", "3", "3x", "4", "4x", scenarioInstr}

// expand returns the scenarios of cfg with "9" replaced by a scenario per
// number of processes ("9/5", "9/10", ...), "s1" by a scenario per limit
// ("s1/1", "s1/3", ...), "m1" by a scenario per size ("m1/1", "m1/2",
// ...), and "m1p" by one per size above 1 ("m1p/2", ...).
func expand(cfg config) []string {
	var out []string
	for _, s := range cfg.scenarios {
		switch s {
		case "9":
			for _, n := range cfg.procs {
				out = append(out, procScenario(n))
			}
		case "s1":
			for _, n := range cfg.limits {
				out = append(out, limitScenario(n))
			}
		case "m1":
			for _, k := range cfg.sizes {
				out = append(out, sizeScenario(k))
			}
		case "m1p":
			for _, k := range cfg.sizes {
				if k > 1 {
					out = append(out, plainsScenario(k))
				}
			}
		default:
			out = append(out, s)
		}
	}
	return out
}

// procScenario names the run of scenario 9 with n processes.
func procScenario(n int) string { return "9/" + strconv.Itoa(n) }

// procsOf returns the processes of a run of scenario 9, and whether
// scenario is one.
func procsOf(scenario string) (int, bool) {
	v, ok := strings.CutPrefix(scenario, "9/")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

// countTrue answers how many of bs are true.
func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func rotate[T any](s []T, n int) []T {
	if len(s) == 0 {
		return s
	}
	n %= len(s)
	return append(slices.Clone(s[n:]), s[:n]...)
}
