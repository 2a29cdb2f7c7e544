package faults

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/faults/history"
	"github.com/redis-reservation/reservation/faults/internal/report"
	"github.com/redis-reservation/reservation/faults/internal/worker"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// soak, when set, makes every scenario run that long instead of its short
// form of a few seconds: go test -run Fault -soak=60s.
var soak = flag.Duration("soak", 0, "run each fault scenario this long (default: the short form, a few seconds)")

// Timings of every scenario: short TTLs, so that takeovers happen often.
const (
	ttl       = 600 * time.Millisecond
	heartbeat = 200 * time.Millisecond
	retry     = 100 * time.Millisecond
	// slack is what a check allows for the scheduling of 20-odd busy
	// goroutines and a few processes on two cores.
	slack = 60 * time.Millisecond
)

// resources are what the workers contend for: few, so that they collide.
var resources = []string{"job-a", "job-b", "{tagged}job-c"}

// scenario is one fault test under way: a Redis server (or a Sentinel or
// Cluster deployment), workers in this process and in worker processes,
// the history they record, and the scenario's own checks.
type scenario struct {
	t     *testing.T
	order int
	title string
	srv   *redistest.Server // nil on a Sentinel or Cluster deployment, or a quorum
	// url is the deployment's URL for New.
	url string
	// quorum, when not nil, are the addresses of the independent servers
	// of a quorum (NewQuorum), and url is "".
	quorum   []string
	h        *history.History
	duration time.Duration
	start    time.Time
	// ttl and heartbeat are the workers' timings: the constants, unless
	// the scenario sets others before it starts workers.
	ttl, heartbeat time.Duration
	// localDeadline is the history's Limits.LocalDeadline: where failovers
	// are recorded, the workers' TTL less their drift margin.
	localDeadline time.Duration

	ctx    context.Context // ends when the workers must stop
	cancel context.CancelFunc

	mu      sync.Mutex
	workers []stopper
	checks  []*check
	byName  map[string]*check
	faults  int
	tox     *toxiproxy.ApiServer
	logs    io.Writer
	seed    uint64
	names   map[string]bool
	proxies []*toxiproxy.Proxy
	// inproc names the workers in this process; stalls are when this
	// process was not scheduled (see watchStalls).
	inproc     []string
	stalls     []window
	stallsDone chan struct{}
	stallsOnce sync.Once
	stallsWG   sync.WaitGroup
}

type stopper interface{ stop() }

// check accumulates one scenario-specific check.
type check struct {
	name      string
	checked   int
	failed    int
	worst     time.Duration
	haveWorst bool
	// lowerIsWorse: the measure is a headroom (worst is the smallest),
	// else a delay (worst is the largest).
	lowerIsWorse bool
}

// newScenario starts a Redis server and primes its restart guard (it is
// new). short is the length of the short form.
func newScenario(t *testing.T, order int, title string, short time.Duration) *scenario {
	t.Helper()
	return newScenarioTimed(t, order, title, short, ttl, heartbeat)
}

// newScenarioTimed is newScenario for workers with a TTL and heartbeat of
// their own (0: the library's default, a third of the TTL).
func newScenarioTimed(t *testing.T, order int, title string, short, ttl, heartbeat time.Duration) *scenario {
	t.Helper()
	srv := redistest.Start(t)
	s := newScenarioAt(t, order, title, short, srv.URL(), ttl, heartbeat)
	s.srv = srv
	return s
}

// newScenarioAt is newScenarioTimed on a deployment that the test started
// (Sentinel, Cluster), reached through url, which must be new: its restart
// guard is primed.
func newScenarioAt(t *testing.T, order int, title string, short time.Duration, url string, ttl, heartbeat time.Duration) *scenario {
	t.Helper()
	return newScenarioOn(t, order, title, short, url, nil, ttl, heartbeat)
}

// newScenarioOn is newScenarioAt on url, or, when quorum is not nil, on the
// independent servers of a quorum at those addresses (url ""), whose
// restart guards are primed.
func newScenarioOn(t *testing.T, order int, title string, short time.Duration, url string, quorum []string, ttl, heartbeat time.Duration) *scenario {
	t.Helper()
	s := &scenario{
		t: t, order: order, title: title, h: history.New(), url: url, quorum: quorum,
		duration: short, byName: map[string]*check{}, names: map[string]bool{},
		seed: uint64(time.Now().UnixNano()), ttl: ttl, heartbeat: heartbeat,
	}
	if *soak > 0 {
		s.duration = *soak
	}
	logs, err := os.Create(filepath.Join(t.ArtifactDir(), "workers.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logs.Close() })
	s.logs = &lockedWriter{w: logs}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	t.Cleanup(s.cancel)

	c := s.client("primer")
	if _, err := c.PrimeRestartGuard(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.watchStalls()
	s.start = time.Now()
	t.Logf("seed %d, %v of traffic, TTL %v, heartbeat %v", s.seed, s.duration, s.ttl, cmp.Or(s.heartbeat, s.ttl/3))
	return s
}

// client returns a Client of the server (or of the quorum's servers) for
// the test itself, closed at the end of the test.
func (s *scenario) client(by string) *reservation.Client {
	s.t.Helper()
	opt := &reservation.Options{By: by, TTL: s.ttl, HeartbeatInterval: s.heartbeat,
		Logger: slog.New(slog.DiscardHandler)}
	var c *reservation.Client
	var err error
	if s.quorum != nil {
		c, err = reservation.NewQuorum(s.quorum, opt)
	} else {
		c, err = reservation.New(s.url, opt)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// spec returns a worker spec with the scenario's timings, on url.
func (s *scenario) spec(name, url string) worker.Spec {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names[name] {
		s.t.Fatalf("worker name %s used twice", name)
	}
	s.names[name] = true
	s.seed++
	return worker.Spec{
		Name: name, URL: url, Resources: resources, Lanes: 1,
		TTL: s.ttl, Heartbeat: s.heartbeat, Retry: retry,
		HoldMin: 20 * time.Millisecond, HoldMax: 2 * s.ttl,
		LockRatio: 0.25, Seed: s.seed,
		Life:     s.duration + 2*time.Minute,
		External: len(s.names)%2 == 0,
	}
}

// logger returns a logger of warnings and errors into the test's
// workers.log artifact.
func (s *scenario) logger(worker string) *slog.Logger {
	return slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelWarn})).With("worker", worker)
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// inproc is a worker in this process.
type inproc struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
}

func (w *inproc) stop() {
	w.cancel()
	<-w.done
}

// goWorker starts a worker in this process. log may be nil.
func (s *scenario) goWorker(spec worker.Spec, log *slog.Logger) *inproc {
	return s.goWorkerHook(spec, log, nil)
}

// goWorkerHook starts a worker in this process whose Client calls onEvent
// (Options.OnEvent, when not nil). log may be nil.
func (s *scenario) goWorkerHook(spec worker.Spec, log *slog.Logger, onEvent func(reservation.Event)) *inproc {
	if log == nil {
		log = s.logger(spec.Name)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	w := &inproc{name: spec.Name, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		if err := worker.Run(ctx, spec, log, onEvent, s.h.Add); err != nil {
			s.t.Errorf("worker %s: %v", spec.Name, err)
		}
	}()
	s.mu.Lock()
	s.workers = append(s.workers, w)
	s.inproc = append(s.inproc, spec.Name)
	s.mu.Unlock()
	return w
}

// stallMin is the shortest stall of this process that watchStalls records.
const stallMin = 100 * time.Millisecond

// watchStalls records, until finish, when this process was not scheduled
// for stallMin or more: a goroutine that sleeps 5 ms at a time woke that
// late. On 2 cores, this process runs the workers in it, the toxiproxy
// proxies and the test's polls; a stall of it (the machine's other load,
// the race detector's and the collector's work) stops them all, as a
// SIGSTOP stops a worker process, and finish records it so: a Suspended
// event of each worker in this process, which the history checker
// excuses as it excuses a stopped process (a waiter stalled past its
// place's lease may lose its place).
func (s *scenario) watchStalls() {
	s.stallsDone = make(chan struct{})
	s.stallsWG.Add(1)
	go func() {
		defer s.stallsWG.Done()
		prev := history.Now()
		for {
			select {
			case <-s.stallsDone:
				return
			case <-time.After(5 * time.Millisecond):
			}
			now := history.Now()
			if time.Duration(now-prev) >= stallMin {
				s.mu.Lock()
				s.stalls = append(s.stalls, window{from: prev, until: now})
				s.mu.Unlock()
			}
			prev = now
		}
	}()
	s.t.Cleanup(func() { s.stopStalls() })
}

// stopStalls ends watchStalls (again is a no-op) and returns the stalls.
func (s *scenario) stopStalls() []window {
	s.stallsOnce.Do(func() { close(s.stallsDone) })
	s.stallsWG.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.stalls)
}

// proc is a worker process: this test binary run again with $FAULTS_WORKER.
type proc struct {
	name  string
	s     *scenario
	cmd   *exec.Cmd
	stdin io.WriteCloser
	read  chan struct{} // closed when its output is read to the end
	mu    sync.Mutex
	dead  bool
}

// startProc starts a worker process: this test binary run again. Its
// events go to the history as they come.
func (s *scenario) startProc(spec worker.Spec) *proc {
	s.t.Helper()
	return s.startProcBin(spec, "", "")
}

// startProcBin starts a worker process from the binary bin (plainWorker),
// or this test binary run again when bin is "", on the CPUs of the list
// cpus (taskset) when not "".
func (s *scenario) startProcBin(spec worker.Spec, bin, cpus string) *proc {
	s.t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		s.t.Fatal(err)
	}
	args := []string{os.Args[0], "-test.run=^$"}
	if bin != "" {
		args = []string{bin}
	}
	if cpus != "" {
		args = append([]string{"taskset", "-c", cpus}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), worker.Env+"="+string(b))
	if spec.MaxProcs > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("GOMAXPROCS=%d", spec.MaxProcs))
	}
	cmd.Stderr = s.logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	p := &proc{name: spec.Name, s: s, cmd: cmd, stdin: stdin, read: make(chan struct{})}
	go func() {
		defer close(p.read)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20) // a Lateness event is long
		for sc.Scan() {
			if err := s.h.AddJSON(sc.Bytes()); err != nil {
				s.t.Errorf("worker %s: %v", spec.Name, err)
			}
		}
	}()
	s.mu.Lock()
	s.workers = append(s.workers, p)
	s.mu.Unlock()
	return p
}

// stop asks the process to finish (its standard input closes), and kills
// it if it does not within a few seconds.
func (p *proc) stop() {
	p.mu.Lock()
	dead := p.dead
	p.dead = true
	p.mu.Unlock()
	if dead {
		<-p.read
		return
	}
	p.stdin.Close()
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	exited := make(chan error, 1)
	go func() { <-p.read; exited <- p.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			p.s.t.Errorf("worker %s: %v", p.name, err)
		}
	case <-time.After(15 * time.Second):
		p.s.t.Errorf("worker %s did not stop: killed", p.name)
		_ = p.cmd.Process.Kill()
		<-exited
	}
}

// tell writes line to the process's standard input (see worker.Main).
func (p *proc) tell(line string) {
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.s.t.Errorf("worker %s: tell %q: %v", p.name, line, err)
	}
}

// kill kills the process with SIGKILL, waits until it is gone, and records
// the crash of its holdings at that instant.
func (p *proc) kill() {
	p.mu.Lock()
	p.dead = true
	p.mu.Unlock()
	_ = p.cmd.Process.Kill()
	<-p.read
	_ = p.cmd.Wait()
	p.s.h.Add(history.Event{Kind: history.Crashed, Worker: p.name, At: history.Now()})
}

// suspend stops the process (SIGSTOP) for d and records it: from is taken
// once it is stopped, until before it is continued. stopped, when not nil,
// runs once the process is stopped (the sleep includes it).
func (p *proc) suspend(d time.Duration, stopped func()) (from, until int64) {
	_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	from = history.Now()
	if stopped != nil {
		stopped()
	}
	time.Sleep(time.Until(time.Unix(0, from).Add(d)))
	until = history.Now()
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	p.s.h.Add(history.Event{Kind: history.Suspended, Worker: p.name, At: from, Until: until})
	return from, until
}

// proxy returns a toxiproxy proxy in this process, in front of the server.
func (s *scenario) proxy(name string) *toxiproxy.Proxy {
	s.t.Helper()
	return s.proxyTo(name, s.srv.Addr)
}

// proxyTo returns a toxiproxy proxy in this process, in front of the server
// at addr.
func (s *scenario) proxyTo(name, addr string) *toxiproxy.Proxy {
	s.t.Helper()
	s.mu.Lock()
	if s.tox == nil {
		s.tox = toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	}
	tox := s.tox
	s.mu.Unlock()
	p := toxiproxy.NewProxy(tox, name, "127.0.0.1:0", addr)
	if err := p.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.proxies = append(s.proxies, p)
	s.mu.Unlock()
	return p
}

// proxyURL is the URL of the server through p.
func proxyURL(p *toxiproxy.Proxy) string { return "redis://" + p.Listen + "/0" }

// addToxic adds a toxic to p, both ways: typ with attributes attrs.
func (s *scenario) addToxic(p *toxiproxy.Proxy, name, typ string, attrs map[string]int64) {
	s.t.Helper()
	for _, stream := range []string{"upstream", "downstream"} {
		b, _ := json.Marshal(map[string]any{"name": name + "-" + stream, "type": typ, "stream": stream, "attributes": attrs})
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(string(b))); err != nil {
			s.t.Fatalf("add toxic %s: %v", name, err)
		}
	}
}

// removeToxic removes a toxic that addToxic added.
func (s *scenario) removeToxic(p *toxiproxy.Proxy, name string) {
	s.t.Helper()
	for _, stream := range []string{"upstream", "downstream"} {
		if err := p.Toxics.RemoveToxic(context.Background(), name+"-"+stream); err != nil {
			s.t.Fatalf("remove toxic %s: %v", name, err)
		}
	}
}

// fault counts one injected fault.
func (s *scenario) fault() {
	s.mu.Lock()
	s.faults++
	s.mu.Unlock()
}

// running reports whether the scenario's traffic should go on.
func (s *scenario) running() bool {
	return time.Since(s.start) < s.duration && !s.t.Failed()
}

// noMeasure is the measure of a check that has none.
const noMeasure = time.Duration(math.MinInt64)

// check records one instance of a scenario-specific check: ok says
// whether it passed; v, unless noMeasure, is its measure (a headroom when
// lowerIsWorse, negative when there was none; else a delay) for the
// table's worst value.
func (s *scenario) check(name string, ok bool, v time.Duration, lowerIsWorse bool, format string, args ...any) {
	s.t.Helper()
	s.mu.Lock()
	c := s.byName[name]
	if c == nil {
		c = &check{name: name, lowerIsWorse: lowerIsWorse}
		s.byName[name] = c
		s.checks = append(s.checks, c)
	}
	c.checked++
	if !ok {
		c.failed++
	}
	if v != noMeasure && (!c.haveWorst || (lowerIsWorse && v < c.worst) || (!lowerIsWorse && v > c.worst)) {
		c.worst, c.haveWorst = v, true
	}
	s.mu.Unlock()
	if !ok {
		s.t.Errorf(name+": "+format, args...)
	}
}

// checkCounted records a scenario-specific check made checked times, of
// which failed failed, with no measure.
func (s *scenario) checkCounted(name string, checked, failed int, format string, args ...any) {
	s.t.Helper()
	s.mu.Lock()
	c := s.byName[name]
	if c == nil {
		c = &check{name: name}
		s.byName[name] = c
		s.checks = append(s.checks, c)
	}
	c.checked += checked
	c.failed += failed
	s.mu.Unlock()
	if failed > 0 {
		s.t.Errorf(name+": "+format, args...)
	}
}

// waitHolding waits until a holding of one of the workers named is open,
// and answers it.
func (s *scenario) waitHolding(workers ...string) (history.Event, bool) {
	deadline := time.Now().Add(10 * s.ttl)
	for time.Now().Before(deadline) {
		for _, w := range workers {
			if open := openHoldings(s.h, w); len(open) > 0 {
				return open[0], true
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return history.Event{}, false
}

// waitFresh waits until one of the workers named acquires, and answers
// which worker and its holding, while it is younger than age.
func (s *scenario) waitFresh(workers []string, age time.Duration) (int, history.Event, bool) {
	deadline := time.Now().Add(10 * s.ttl)
	for time.Now().Before(deadline) {
		for i, w := range workers {
			for _, e := range openHoldings(s.h, w) {
				if time.Since(time.Unix(0, e.At)) < age {
					return i, e, true
				}
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, history.Event{}, false
}

// openHoldings answers the Acquired events of worker with no end yet.
func openHoldings(h *history.History, worker string) []history.Event {
	ended := map[string]bool{}
	var acquired []history.Event
	for _, e := range h.Events() {
		switch {
		case e.Kind == history.Acquired && e.Worker == worker:
			acquired = append(acquired, e)
		case e.Kind == history.Released || e.Kind == history.Lost:
			ended[e.Holder] = true
		}
	}
	return slices.DeleteFunc(acquired, func(e history.Event) bool { return ended[e.Holder] })
}

// holderKill is a holding whose process was killed at at, and when its
// key expires (read with PTTL once the process was gone): no sooner than
// expiresLo, at the latest expiresHi.
type holderKill struct {
	holder, resource         string
	at, expiresLo, expiresHi int64
}

// waitTakenOver waits, for up to d, until h records an acquisition of the
// resource of each of kills after its kill. The workers pick resources at
// random, and waiters give up: a fixed wait after the traffic may end
// before any of them asks for a killed holder's resource again.
func waitTakenOver(h *history.History, kills []holderKill, d time.Duration) {
	deadline := time.Now().Add(d)
	pending := slices.Clone(kills)
	for len(pending) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		events := h.Events()
		pending = slices.DeleteFunc(pending, func(k holderKill) bool {
			return slices.ContainsFunc(events, func(e history.Event) bool {
				return e.Kind == history.Acquired && e.Resource == k.resource && e.At > k.at
			})
		})
	}
}

// checkTakeovers checks the next holding (by token) of each killed holding
// still held at its kill: nobody took the resource before its key expired,
// and it was taken within one retry interval of the expiry (at the latest
// expiresHi) or of when its next holder began to wait, if later. A waiter
// learned the remaining TTL when it was refused, and tries again when it
// runs out; client tracking wakes it when Redis deletes the expired key.
func (s *scenario) checkTakeovers(res *history.Result, kills []holderKill) {
	s.t.Helper()
	for _, k := range kills {
		hd := holdingOf(res, k.holder)
		if hd == nil || hd.EndKind != history.Crashed {
			continue // it had released just before the kill
		}
		next := nextByToken(res, hd)
		if next == nil {
			s.t.Errorf("nobody took %q over after %s was killed at %s, by the end (10 s at most after the traffic)", k.resource, k.holder, stamp(k.at))
			continue
		}
		if hd.Releasing == 0 { // see beganReleasing
			s.check("nobody took it before its key expired", next.Acquired >= k.expiresLo, time.Duration(next.Acquired-k.expiresLo), true,
				"%s took %q at %s, before the key of %s (killed at %s) expired at %s",
				next.Holder, k.resource, stamp(next.Acquired), k.holder, stamp(k.at), stamp(k.expiresLo))
		}
		from := max(k.expiresHi, next.Call)
		took := time.Duration(next.Acquired - from)
		s.check("taken over within one retry interval of the key's expiry", took <= retry+slack, took, false,
			"%q taken over by %s %v after its holder was killed, %v after its key expired at %s (or it began to wait), want within %v; Lock calls then:\n%s",
			k.resource, next.Holder, time.Duration(next.Acquired-k.at), took, stamp(k.expiresHi), retry,
			s.dumpCalls(k.at-int64(time.Second), next.Acquired, k.resource))
	}
}

// beganReleasing reports whether the holding of holder had begun to
// release when its process was killed: a release it sent may reach the
// server after the key was read, which then goes sooner than its PTTL said.
func beganReleasing(res *history.Result, holder string) bool {
	hd := holdingOf(res, holder)
	return hd != nil && hd.Releasing != 0
}

// holding answers the holding of holder as Check rebuilt it.
func holdingOf(res *history.Result, holder string) *history.Holding {
	for _, hd := range res.Holds {
		if hd.Holder == holder {
			return hd
		}
	}
	return nil
}

// finish stops the workers, checks the history, prints the summary line
// for the reliability table, and fails the test on any violation. extra,
// if not nil, runs scenario checks on the checked history first.
func (s *scenario) finish(extra func(res *history.Result)) {
	t := s.t
	t.Helper()
	elapsed := time.Since(s.start)
	s.mu.Lock()
	workers := slices.Clone(s.workers)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(w.stop)
	}
	wg.Wait()
	s.mu.Lock()
	for _, p := range s.proxies {
		p.Stop()
	}
	s.mu.Unlock()
	stalls := s.stopStalls()
	s.mu.Lock()
	inproc := slices.Clone(s.inproc)
	s.mu.Unlock()
	for _, st := range stalls {
		t.Logf("this process (%d workers, the proxies) stalled %v at %s", len(inproc), time.Duration(st.until-st.from).Round(time.Millisecond), stamp(st.from))
		for _, name := range inproc {
			s.h.Add(history.Event{Kind: history.Suspended, Worker: name, At: st.from, Until: st.until})
		}
	}

	res := s.h.Check(s.limits())
	if extra != nil {
		extra(res)
	}
	lin := res.Linearizable(2*time.Minute, t.ArtifactDir(), "porcupine")
	t.Logf("history: %v; porcupine: %s", res, lin)
	bad := map[string]bool{}
	for _, v := range res.Violations {
		t.Errorf("%v", v)
		bad[v.Resource] = true
	}
	for r := range bad {
		if r != "" {
			t.Logf("holdings of %q:\n%s", r, res.Dump(r))
		}
	}
	if !history.Passed(lin) {
		t.Errorf("porcupine: history of holdings not shown linearizable against the lock model: %s", lin)
	}
	if res.Holdings == 0 {
		t.Errorf("no holding recorded")
	}

	sum := report.Summary{
		Order: s.order, Test: t.Name(), Scenario: s.title, Duration: elapsed.Round(100 * time.Millisecond).String(),
		Workers: res.Workers, Faults: s.faults,
		Holdings: res.Holdings, Resources: res.Resources, Released: res.Released, Lost: res.Lost,
		Crashed: res.Crashed, Excused: res.Excused, Violations: len(res.Violations), Porcupine: lin,
	}
	s.mu.Lock()
	for _, c := range s.checks {
		rc := report.Check{Name: c.name, Checked: c.checked, Failed: c.failed}
		if c.haveWorst {
			rc.Worst = "worst " + c.worst.Round(100*time.Microsecond).String()
		}
		sum.Checks = append(sum.Checks, rc)
	}
	s.mu.Unlock()
	sum.Pass = !t.Failed()
	fmt.Println(sum.Line())
}

// limits are the bounds of what the scenario's faults excuse.
func (s *scenario) limits() history.Limits {
	hb := cmp.Or(s.heartbeat, s.ttl/3)
	return history.Limits{Heartbeat: hb, Grace: slack, LocalDeadline: s.localDeadline,
		PlaceKept: s.ttl - hb - retry - slack}
}

// keyExpiry is what a read of a reservation key found: its holder value,
// and when it expires on the server.
type keyExpiry struct {
	holder string
	// lo is the earliest instant the key can expire: the read's send
	// instant plus its PTTL (whole milliseconds, read by the server at an
	// instant after the send; Redis expires a key once its clock has
	// passed the expiry). hi is the latest: the reply plus the PTTL and a
	// millisecond.
	lo, hi int64
}

// readExpiries reads the keys of resources (those held, with a TTL) in one
// round trip. With stats, the round trip first reads how many PEXPIRE the
// server ran (renewals), answered as pexpires; else pexpires is -1.
func readExpiries(ctx context.Context, rdb *redis.Client, resources []string, stats bool) (keys map[string]keyExpiry, pexpires int64, err error) {
	pipe := rdb.Pipeline()
	var info *redis.StringCmd
	if stats {
		info = pipe.Info(ctx, "commandstats")
	}
	gets := make([]*redis.StringCmd, len(resources))
	pttls := make([]*redis.DurationCmd, len(resources))
	for i, r := range resources {
		gets[i] = pipe.Get(ctx, "reservation-"+r)
		pttls[i] = pipe.PTTL(ctx, "reservation-"+r)
	}
	sent := history.Now()
	_, _ = pipe.Exec(ctx)
	reply := history.Now()
	keys = map[string]keyExpiry{}
	for i, r := range resources {
		if gets[i].Err() != nil || pttls[i].Err() != nil || pttls[i].Val() <= 0 {
			continue // not held, or no expiry
		}
		p := int64(pttls[i].Val())
		keys[r] = keyExpiry{holder: gets[i].Val(), lo: sent + p, hi: reply + p + int64(time.Millisecond)}
	}
	pexpires = -1
	if stats {
		if pexpires, err = pexpireCalls(info); err != nil {
			return nil, 0, err
		}
	}
	return keys, pexpires, nil
}

// pexpireCalls answers the PEXPIRE calls counted by INFO commandstats.
func pexpireCalls(info *redis.StringCmd) (int64, error) {
	if err := info.Err(); err != nil {
		return 0, err
	}
	_, rest, ok := strings.Cut(info.Val(), "cmdstat_pexpire:calls=")
	if !ok {
		return 0, nil // none yet
	}
	n, _, _ := strings.Cut(rest, ",")
	return strconv.ParseInt(n, 10, 64)
}

// plainBuild is the worker command built without the race detector.
var plainBuild struct {
	once      sync.Once
	dir, path string
	err       error
}

// plainWorker answers the path of the worker command (internal/workercmd),
// built once per test binary without the race detector, as production
// binaries are, for the worker processes whose timing must be theirs.
func plainWorker(t *testing.T) string {
	t.Helper()
	plainBuild.once.Do(func() {
		start := time.Now()
		if plainBuild.dir, plainBuild.err = os.MkdirTemp("", "fault-worker-"); plainBuild.err != nil {
			return
		}
		path := filepath.Join(plainBuild.dir, "fault-worker")
		cmd := exec.Command("go", "build", "-race=false", "-o", path, "./internal/workercmd")
		if out, err := cmd.CombinedOutput(); err != nil {
			plainBuild.err = fmt.Errorf("build the worker command: %v\n%s", err, out)
			return
		}
		plainBuild.path = path
		t.Logf("worker command built without the race detector in %v", time.Since(start).Round(100*time.Millisecond))
	})
	if plainBuild.err != nil {
		t.Fatal(plainBuild.err)
	}
	return plainBuild.path
}

// pinCPUs gives a worker process a CPU of its own, as in a 1-CPU
// container: on a machine of two CPUs or more, this test process and the
// Redis server run on CPU 0 until the test ends, and pinCPUs answers "1",
// the CPU list for the worker (startProcBin). On a single CPU it answers
// "" and pins nothing.
func (s *scenario) pinCPUs() string {
	t := s.t
	t.Helper()
	if runtime.NumCPU() < 2 {
		t.Logf("one CPU: the worker process shares it with the test and Redis")
		return ""
	}
	self := strconv.Itoa(os.Getpid())
	out, err := exec.Command("taskset", "-c", "-p", self).Output()
	if err != nil {
		t.Fatalf("taskset (util-linux) is needed to give the worker process a CPU of its own: %v", err)
	}
	_, orig, ok := strings.Cut(strings.TrimSpace(string(out)), ": ")
	if !ok {
		t.Fatalf("taskset -c -p %s: unexpected output %q", self, out)
	}
	pin := func(cpus string, pids ...string) {
		for _, pid := range pids {
			if out, err := exec.Command("taskset", "-a", "-c", "-p", cpus, pid).CombinedOutput(); err != nil {
				t.Errorf("taskset -a -c -p %s %s: %v: %s", cpus, pid, err, out)
			}
		}
	}
	pin("0", self, strconv.Itoa(s.srv.Pid()))
	t.Cleanup(func() { pin(orig, self) })
	return "1"
}
