package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redisserver"
)

// The demo's script. It takes about 12 s, plus starting Redis.
const (
	demoTTL       = 2 * time.Second
	demoHeartbeat = 500 * time.Millisecond
	demoWorkers   = 3
	demoContend   = 6 * time.Second // act 1: workers contend this long
	demoHoldMin   = 600 * time.Millisecond
	demoHoldMax   = 1100 * time.Millisecond
	demoPauseMin  = 150 * time.Millisecond // between two jobs of a worker
	demoPauseMax  = 400 * time.Millisecond
	demoBeforeKil = 1200 * time.Millisecond // act 2: renewals before the kill
	// demoRetry is the waiters' fallback re-check (RetryInterval): longer
	// than the TTL, so that a waiter that no push wakes sleeps until the
	// key it found would run out, at least demoTTL-demoHeartbeat after it
	// looked, while that holding ends at most demoHoldMax after: it gets the
	// job at least 0.4 s after that release, and cannot pass for woken by
	// it, as after a re-check of the default 1 s interval it could, by luck.
	demoRetry = 5 * demoTTL
	// demoWakeBound is how soon a release must wake the next waiter, at
	// the median: push wake-ups take about a millisecond.
	demoWakeBound = 200 * time.Millisecond
	demoQuorum    = 3 // servers of demo --quorum
	defaultProbe  = "127.0.0.1:6379"
)

// The resources of act 1, and demoCrashJob that of act 2. They start with
// "demo:" so as not to touch real reservations.
const (
	demoJob1     = "demo:report"
	demoJob2     = "demo:backup"
	demoCrashJob = "demo:invoices"
)

type demoFlags struct {
	conn  connFlags
	probe string
}

func newDemoCmd(a *app) *cobra.Command {
	f := &demoFlags{}
	cmd := &cobra.Command{
		Use:   "demo [flags]",
		Short: "Watch workers contend for jobs, one die and be taken over (about 15 s)",
		Long: `Show, live, what reservations do, in about 15 seconds:
  1. three workers (each with its own connection, as on three hosts) contend
     for two jobs: one holder per job at a time, and a release wakes the
     next waiter at once (the wake-up latency is measured and checked);
  2. a fourth worker, in a process of its own, holds a job and is killed
     with kill -9: its heartbeat stops, nobody releases the job, and a
     waiter takes it over once the TTL (2 s) has run out;
  3. the fencing tokens grow with every holding; the demo checks that no
     two holdings of a job overlapped, that releases woke the waiters
     within 200 ms (at the median), and that the takeover came within the
     TTL, and exits 1 if not.

It uses the Redis of --redis or $REDIS_URL when given, else the one at
127.0.0.1:6379 when it answers, else it starts a throwaway redis-server (no
persistence, stopped and deleted at the end). With --cluster and no --redis,
it starts a throwaway Redis Cluster of three masters instead, and shows the
jobs' keys spread over them. With --quorum and no --redis, it starts three
throwaway servers and holds each job on a majority of them; one is killed
a third into act 1 and started again, empty, a third later (its restart
guard keeps it from voting), and the demo checks that the workers carried
on meanwhile. Its resources are named "demo:*", so it leaves
other reservations alone; run it on a Redis that holds nothing you care
about all the same.`,
		Example: `  reserve demo
  reserve demo --cluster
  reserve demo --quorum
  reserve demo --redis redis://localhost:6380`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.Context(), a)
		},
	}
	f.conn.add(cmd)
	cmd.Flags().StringVar(&f.probe, "probe", defaultProbe, "address tried when no --redis is given")
	_ = cmd.Flags().MarkHidden("probe")
	return cmd
}

// demo is one run of the show.
type demo struct {
	a      *app
	conn   *connFlags
	addr   string
	addrs  []string            // with --quorum, the servers (addr is then "")
	victim *redisserver.Server // with --quorum on servers of its own: the one it kills in act 1
	killed time.Time           // when it killed it
	back   time.Time           // when it started it again
	own    bool                // the demo started the server, Cluster or quorum
	guard  time.Duration       // RestartGuard of the demo's clients
	prefix string
	start  time.Time

	mu       sync.Mutex
	holdings []holding
	holders  map[string]string  // job -> worker holding it
	released map[string]release // job -> its last release
	wakes    []time.Duration    // release of the holding a waiter found, to its acquisition
}

type holding struct {
	job, who string
	token    int64
	from, to time.Time
}

type release struct {
	who    string
	holder string // the holder value of the holding released
	at     time.Time
}

func (f *demoFlags) run(ctx context.Context, a *app) error {
	ctx, stop := a.interruptible(ctx)
	defer stop()
	out := a.stdout
	d := &demo{
		a:        a,
		conn:     &f.conn,
		prefix:   f.conn.prefix,
		holders:  make(map[string]string),
		released: make(map[string]release),
	}
	addr, given := f.conn.addr(a)
	clusterSet, clusterOn, err := f.conn.clusterSetting(a)
	if err != nil {
		return err
	}
	quorumOn, _, err := f.conn.quorumSetting(a)
	if err != nil {
		return err
	}
	switch {
	case quorumOn && given:
		if d.addrs, _, err = f.conn.servers(a); err != nil {
			return err
		}
	case quorumOn:
		if clusterSet && clusterOn {
			return usageErrorf("--quorum and --cluster exclude each other: a quorum is over independent Redis servers, not the nodes of a Redis Cluster")
		}
		fmt.Fprintf(out, "reserve demo: starting %d throwaway redis-servers for a quorum...\n", demoQuorum)
		var servers []*localRedis
		for range demoQuorum {
			srv, err := startRedis(ctx)
			if err != nil {
				if ierr := interrupted(ctx); ierr != nil {
					return ierr
				}
				return unavailable(fmt.Errorf("cannot start redis-server: %w", err))
			}
			defer srv.stop()
			servers = append(servers, srv)
			d.addrs = append(d.addrs, "redis://"+srv.addr)
		}
		d.victim = servers[len(servers)-1].srv
		fmt.Fprintf(out, "reserve demo: started them on %s\n(no persistence; stopped and deleted at the end)\n", quorumHosts(d.addrs))
	case given:
		d.addr = addr
	case clusterSet && clusterOn:
		fmt.Fprintf(out, "reserve demo: starting a throwaway Redis Cluster of %d masters...\n", demoMasters)
		cl, err := startCluster(ctx)
		if err != nil {
			if ierr := interrupted(ctx); ierr != nil {
				return ierr
			}
			return unavailable(fmt.Errorf("cannot start a Redis Cluster: %w", err))
		}
		defer cl.stop()
		d.addr = cl.c.URL()
		fmt.Fprintf(out, "reserve demo: started it on %s\n(no persistence; stopped and deleted at the end)\n", strings.Join(cl.c.Addrs(), ", "))
	case probe(ctx, f.probe, a.getenv(envRedisPassword)):
		d.addr = "redis://" + f.probe
	default:
		srv, err := startRedis(ctx)
		if err != nil {
			if ierr := interrupted(ctx); ierr != nil {
				return ierr
			}
			return unavailable(fmt.Errorf("no Redis answers at %s and %w", f.probe, err))
		}
		defer srv.stop()
		d.addr = "redis://" + srv.addr
		fmt.Fprintf(out, "reserve demo: no Redis answers at %s, so it started a throwaway redis-server on %s\n"+
			"(no persistence; stopped and deleted at the end)\n", f.probe, srv.addr)
	}
	// The restart guard's marker is server-wide and its period is set by
	// whoever finds it missing: the demo, with its 2 s TTL, must not set
	// it on a server that others use. On its own server or Cluster it
	// primes the guard, as one should on a brand-new server, and keeps it
	// on.
	d.own = !given && d.addr != "redis://"+f.probe || d.victim != nil
	d.guard = -1
	if d.own {
		d.guard = 0
	}
	return d.show(ctx)
}

// probe reports whether a Redis answers PING at addr, quickly.
func probe(ctx context.Context, addr, password string) bool {
	rdb := redis.NewClient(&redis.Options{Addr: addr, Password: password, DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err() == nil
}

// client makes the Client of worker by.
func (d *demo) client(ctx context.Context, by string) (*reservation.Client, error) {
	opt := reservation.Options{
		By:                by,
		TTL:               demoTTL,
		HeartbeatInterval: demoHeartbeat,
		RetryInterval:     demoRetry,
		RestartGuard:      d.guard,
	}
	if d.addrs != nil {
		return d.conn.connectQuorum(ctx, d.a, d.addrs, opt)
	}
	return d.conn.connectTo(ctx, d.a, d.addr, opt)
}

// say prints one line of the show: seconds since the start, who, what.
func (d *demo) say(who, format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sayLocked(who, format, args...)
}

func (d *demo) sayLocked(who, format string, args ...any) {
	fmt.Fprintf(d.a.stdout, "%6.2fs  %-8s  %s\n", time.Since(d.start).Seconds(), who, fmt.Sprintf(format, args...))
}

// show runs the three acts.
func (d *demo) show(ctx context.Context) error {
	out := d.a.stdout
	clients := make([]*reservation.Client, demoWorkers)
	for i := range clients {
		c, err := d.client(ctx, fmt.Sprintf("worker-%d", i+1))
		if err != nil {
			return err
		}
		defer c.Close()
		clients[i] = c
	}
	if !d.own {
		fmt.Fprintf(out, "reserve demo on %s\n", d.conn.where)
	}
	if d.conn.kind == cluster {
		d.showPlacement(ctx, []string{demoJob1, demoJob2, demoCrashJob})
	}
	if d.guard == 0 {
		pctx, cancel := bounded(ctx)
		_, err := clients[0].PrimeRestartGuard(pctx)
		cancel()
		if err != nil {
			return d.conn.failure(ctx, err)
		}
	}
	fmt.Fprintf(out, "Every reservation lives %v unless its holder's heartbeat renews it (every %v).\n", demoTTL, demoHeartbeat)
	d.start = time.Now()

	fmt.Fprintf(out, "\n1. %d workers, each with its own connection, contend for %d jobs. One holder per job at a time;\n"+
		"   a release wakes the next waiter at once (Redis pushes the change: no polling).\n", demoWorkers, 2)
	if d.victim != nil {
		fmt.Fprintf(out, "   Each holding is on a majority of the %d servers; one of them is killed for a while,\n"+
			"   and the workers carry on with the other %d.\n", len(d.addrs), len(d.addrs)-1)
	}
	if err := d.contend(ctx, clients); err != nil {
		return err
	}

	fmt.Fprintf(out, "\n2. worker-4 runs in a process of its own, holds %s, and is killed with kill -9.\n"+
		"   Nobody releases the job: its key expires one TTL after worker-4's last renewal,\n"+
		"   and a waiter takes over.\n", demoCrashJob)
	takeover, err := d.crash(ctx, clients[0])
	if err != nil {
		return err
	}
	return d.summary(takeover)
}

// contend is act 1: the workers take jobs in turn until demoContend has
// passed, and finish the job they hold.
func (d *demo) contend(ctx context.Context, clients []*reservation.Client) error {
	actCtx, cancel := context.WithTimeout(ctx, demoContend)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.worker(ctx, actCtx, c, i)
		}()
	}
	var outage error
	if d.victim != nil {
		outage = d.outage(actCtx)
	}
	wg.Wait()
	if ierr := interrupted(ctx); ierr != nil {
		return ierr
	}
	return errors.Join(append(errs, outage)...)
}

// outage kills the victim, one server of the demo's quorum, a third into
// act 1, and starts it again, empty, a third later: the workers carry on
// with the majority meanwhile, and it does not vote until its restart
// guard has passed, since holders from before may still count on it.
func (d *demo) outage(actCtx context.Context) error {
	select {
	case <-time.After(demoContend / 3):
	case <-actCtx.Done():
		return nil
	}
	d.mu.Lock()
	d.victim.Kill()
	d.killed = time.Now()
	d.sayLocked("demo", "kill -9 the redis-server on %s, one of the %d: the workers carry on with the majority", d.victim.Addr, len(d.addrs))
	d.mu.Unlock()
	select {
	case <-time.After(demoContend / 3):
	case <-actCtx.Done():
	}
	if err := d.victim.Restart(context.Background()); err != nil {
		return unavailable(fmt.Errorf("cannot start the redis-server on %s again: %w", d.victim.Addr, err))
	}
	d.mu.Lock()
	d.back = time.Now()
	d.sayLocked("demo", "start it again, without its data: its restart guard keeps it from voting for %v", demoTTL)
	d.mu.Unlock()
	return nil
}

// worker is one worker of act 1: it takes jobs until actCtx ends.
func (d *demo) worker(ctx, actCtx context.Context, c *reservation.Client, i int) error {
	who := fmt.Sprintf("worker-%d", i+1)
	for k := 0; actCtx.Err() == nil; k++ {
		job := [...]string{demoJob1, demoJob2}[(i+k)%2]
		r, err := c.TryLock(actCtx, job)
		var nerr *reservation.NotAcquiredError
		ok := err == nil
		found := "" // the holding that the worker waits for the end of
		switch {
		case errors.As(err, &nerr):
			d.mu.Lock()
			holder := d.holders[job]
			d.mu.Unlock()
			if holder == "" {
				// Its holder has not said so yet: the attempt saw it.
				holder = strings.TrimRight(nerr.Holder, "0123456789abcdef")
				holder = strings.TrimSuffix(holder, "-")
			}
			if holder == "" && nerr.Queued > 0 {
				d.say(who, "waits for %-13s (free, but %d queued first)", job, nerr.Queued)
			} else {
				d.say(who, "waits for %-13s (held by %s)", job, holder)
			}
			found = nerr.Holder
			// A waiter at the end of the act still waits for its job.
			if r, err = c.Lock(ctx, job); err != nil {
				return d.demoError(ctx, err)
			}
		case err != nil:
			return d.demoError(actCtx, err)
		}
		var note string
		from := time.Now()
		d.mu.Lock()
		// A wake-up is measured from the end of the holding the worker
		// found: when another holding came in between (the job taken by
		// a worker that did not wait), the release that let it in is not
		// the one it waited for.
		if rel := d.released[job]; !ok && found != "" && rel.holder == found {
			wake := from.Sub(rel.at)
			d.wakes = append(d.wakes, wake)
			note = fmt.Sprintf("   %s after %s's release", fmtLatency(wake), rel.who)
		}
		d.holders[job] = who
		d.sayLocked(who, "holds    %-13s token %d%s", job, r.Token(), note)
		d.mu.Unlock()

		select {
		case <-time.After(demoHoldMin + rand.N(demoHoldMax-demoHoldMin)):
		case <-r.Done():
			d.say(who, "LOST     %s: %v", job, r.Err())
			continue
		case <-ctx.Done():
			_ = r.Release(context.Background())
			return nil
		}
		to := time.Now()
		d.mu.Lock()
		d.holdings = append(d.holdings, holding{job, who, r.Token(), from, to})
		d.released[job] = release{who, r.Holder(), to}
		d.holders[job] = ""
		d.sayLocked(who, "releases %-13s after %s", job, fmtDuration(to.Sub(from)))
		d.mu.Unlock()
		if err := r.Release(ctx); err != nil {
			return d.demoError(ctx, err)
		}
		select {
		case <-time.After(demoPauseMin + rand.N(demoPauseMax-demoPauseMin)):
		case <-actCtx.Done():
		}
	}
	return nil
}

// crash is act 2: worker-4, a process of its own, holds demoCrashJob and
// is killed; c waits for the job and takes it over. It answers how long
// the takeover took after the kill.
func (d *demo) crash(ctx context.Context, c *reservation.Client) (time.Duration, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, &exitError{code: ExitFailure, err: fmt.Errorf("find reserve's own executable: %w", err)}
	}
	args := []string{"demo-worker", "--by", "worker-4", "--prefix", d.prefix,
		"--ttl", demoTTL.String(), "--heartbeat", demoHeartbeat.String()}
	if d.guard < 0 {
		args = append(args, "--restart-guard", "off")
	}
	if d.conn.cmd != nil && d.conn.cmd.Flags().Changed("cluster") {
		args = append(args, clusterArg(d.conn.cluster))
	}
	redisURL := d.addr
	if d.addrs != nil {
		args = append(args, "--quorum")
		redisURL = strings.Join(d.addrs, " ")
	}
	for _, fl := range []struct{ name, v string }{{"tls-ca", d.conn.tlsCA}, {"tls-cert", d.conn.tlsCert}, {"tls-key", d.conn.tlsKey},
		{"log-level", d.conn.logLevel}, {"log-format", d.conn.logFormat}} {
		if fl.v != "" {
			args = append(args, "--"+fl.name, fl.v)
		}
	}
	args = append(args, demoCrashJob)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(d.a.environ(), envRedisURL+"="+redisURL) // not in argv: it may hold a password
	cmd.Stderr = d.a.stderr
	cmd.SysProcAttr = sysProcAttr(-1)
	stdin, err := cmd.StdinPipe() // worker-4 quits when it closes, should the demo die
	if err != nil {
		return 0, &exitError{code: ExitFailure, err: err}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, &exitError{code: ExitFailure, err: err}
	}
	if err := cmd.Start(); err != nil {
		return 0, &exitError{code: ExitFailure, err: fmt.Errorf("start worker-4: %w", err)}
	}
	defer func() {
		_ = cmd.Process.Kill()
		stdin.Close()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	token, perr := strconv.ParseInt(strings.TrimPrefix(strings.TrimSpace(line), "token "), 10, 64)
	if err != nil || perr != nil {
		if ierr := interrupted(ctx); ierr != nil {
			return 0, ierr
		}
		return 0, &exitError{code: ExitFailure, err: fmt.Errorf("worker-4 did not get %s (it said %q)", demoCrashJob, line)}
	}
	d.mu.Lock()
	d.holders[demoCrashJob] = "worker-4"
	d.sayLocked("worker-4", "holds    %-13s token %d   (pid %d, renewing every %v)", demoCrashJob, token, cmd.Process.Pid, demoHeartbeat)
	d.sayLocked("worker-1", "waits for %-13s (held by worker-4)", demoCrashJob)
	d.mu.Unlock()

	type result struct {
		r   *reservation.Reservation
		at  time.Time
		err error
	}
	got := make(chan result, 1)
	wctx, cancel := context.WithTimeout(ctx, 5*demoTTL)
	defer cancel()
	go func() {
		r, err := c.Lock(wctx, demoCrashJob)
		got <- result{r, time.Now(), err}
	}()
	select {
	case <-time.After(demoBeforeKil):
	case <-ctx.Done():
		cancel()
		<-got
		return 0, interrupted(ctx)
	}
	killed := time.Now()
	_ = cmd.Process.Kill()
	d.say("demo", "kill -9 %d (worker-4): its heartbeat stops; nobody will release %s", cmd.Process.Pid, demoCrashJob)
	d.showList(ctx, c)

	res := <-got
	if res.err != nil {
		if ierr := interrupted(ctx); ierr != nil {
			return 0, ierr
		}
		return 0, &exitError{code: ExitFailure, err: fmt.Errorf("worker-1 did not take %s over: %w", demoCrashJob, res.err)}
	}
	takeover := res.at.Sub(killed)
	d.say("worker-1", "holds    %-13s token %d   took over %s after the kill (TTL %v)",
		demoCrashJob, res.r.Token(), fmtDuration(takeover), demoTTL)
	if res.r.Token() > token {
		d.mu.Lock()
		fmt.Fprintf(d.a.stdout, "%20stoken %d > %d: a store that keeps the largest token it saw\n"+
			"%20srefuses worker-4's writes, should a paused worker-4 wake up and try.\n", "", res.r.Token(), token, "")
		d.mu.Unlock()
	}
	d.mu.Lock()
	// worker-4's holding ended when its key expired, before the takeover.
	d.holdings = append(d.holdings,
		holding{demoCrashJob, "worker-4", token, killed, killed},
		holding{demoCrashJob, "worker-1", res.r.Token(), res.at, time.Now()})
	d.mu.Unlock()
	_ = res.r.Release(ctx)
	return takeover, nil
}

// showList prints what Redis holds for the demo's jobs, as reserve list.
func (d *demo) showList(ctx context.Context, c *reservation.Client) {
	infos, err := c.List(ctx, "demo:*")
	if err != nil && !errors.Is(err, reservation.ErrPartial) {
		return
	}
	var b strings.Builder
	_ = writeList(&b, infos, d.conn.serverCause, time.Now())
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sayLocked("demo", "what Redis holds now (reserve list --match 'demo:*'):")
	for _, l := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		fmt.Fprintf(d.a.stdout, "%20s%s\n", "", l)
	}
}

// summary checks the history and prints what was shown.
func (d *demo) summary(takeover time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.a.stdout
	fmt.Fprintf(out, "\n3. Summary after %s:\n", fmtDuration(time.Since(d.start)))
	ok := true
	check := func(good bool, format string, args ...any) {
		mark := "✓"
		if !good {
			mark, ok = "✗", false
		}
		fmt.Fprintf(out, "   %s %s\n", mark, fmt.Sprintf(format, args...))
	}
	byJob := make(map[string][]holding)
	for _, h := range d.holdings {
		byJob[h.job] = append(byJob[h.job], h)
	}
	overlaps, backwards := 0, 0
	for _, hs := range byJob {
		slices.SortFunc(hs, func(a, b holding) int { return a.from.Compare(b.from) })
		for i := 1; i < len(hs); i++ {
			if hs[i].from.Before(hs[i-1].to) {
				overlaps++
			}
			if hs[i].token <= hs[i-1].token {
				backwards++
			}
		}
	}
	check(overlaps == 0, "%d holdings of %d jobs, never two at once on one job (%d overlaps)", len(d.holdings), len(byJob), overlaps)
	check(backwards == 0, "the fencing token grew with every holding of each job")
	w := slices.Sorted(slices.Values(d.wakes))
	// Without subscriptions, the queue's waiters still find the job at
	// their place's renewal, every heartbeat, which can come soon enough
	// to pass for a push: a refused subscription says there was none.
	woke := len(w) > 0 && w[len(w)/2] <= demoWakeBound && !d.a.notes.saidAbout("subscriptions refused")
	var wakeups string
	switch {
	case woke:
		wakeups = fmt.Sprintf("a release woke the next waiter after %s (median of %d; max %s): Redis pushed the change",
			fmtLatency(w[len(w)/2]), len(w), fmtLatency(w[len(w)-1]))
	case len(w) > 0:
		wakeups = fmt.Sprintf("a release did not wake the next waiter: it got the job %s later (median of %d), at its own next look; "+
			"no push from Redis reached the waiters (see the messages on stderr)", fmtLatency(w[len(w)/2]), len(w))
	default:
		wakeups = "no release woke a waiter: there was no wake-up to measure"
	}
	check(woke, "%s", wakeups)
	check(takeover <= demoTTL+500*time.Millisecond,
		"worker-4's job was taken over %s after kill -9: once its key expired, within the TTL (%v)", fmtDuration(takeover), demoTTL)
	if d.victim != nil {
		during := 0
		for _, h := range d.holdings {
			if !d.killed.IsZero() && h.from.After(d.killed) && h.from.Before(d.back) {
				during++
			}
		}
		check(during > 0, "%d holdings while one of the %d servers was down: a majority was enough", during, len(d.addrs))
	}
	fmt.Fprintf(out, "\nNext: reserve run --help. In two terminals, against a running Redis:\n"+
		"   reserve run demo -- sleep 10      # the second one waits for the first\n")
	if !ok {
		return &exitError{code: ExitFailure, err: errors.New("demo: a check did not pass (see above)")}
	}
	return nil
}

// demoError maps an error of a worker to an exit, or nil when its context
// ended (the act is over).
func (d *demo) demoError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return d.conn.failure(ctx, err)
}

// fmtLatency prints a short latency: 0.62ms, 12ms.
func fmtLatency(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmtDuration(d)
}

// newDemoWorkerCmd is the hidden command that runs worker-4 of the demo: it
// takes RESOURCE, prints "token N", and holds it until its standard input
// closes (or it is killed, which is the point).
func newDemoWorkerCmd(a *app) *cobra.Command {
	var (
		conn connFlags
		hold holdFlags
	)
	cmd := &cobra.Command{
		Use:    "demo-worker [flags] RESOURCE",
		Short:  "Hold RESOURCE until standard input closes (for reserve demo)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opt, err := hold.options(a)
			if err != nil {
				return err
			}
			ctx, stop := a.interruptible(cmd.Context())
			defer stop()
			c, err := conn.connect(ctx, a, opt)
			if err != nil {
				return err
			}
			defer c.Close()
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			r, err := c.Lock(wctx, args[0])
			if err != nil {
				return conn.failure(ctx, err)
			}
			fmt.Fprintf(a.stdout, "token %d\n", r.Token())
			eof := make(chan struct{})
			go func() {
				_, _ = io.Copy(io.Discard, a.stdin)
				close(eof)
			}()
			select {
			case <-eof:
			case <-r.Done():
			case <-ctx.Done():
			}
			return nil
		},
	}
	conn.add(cmd)
	hold.add(cmd)
	return cmd
}
