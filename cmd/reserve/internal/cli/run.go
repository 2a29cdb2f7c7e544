package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/redis-reservation/reservation"
)

// releaseTimeout bounds the release after the command ended.
const releaseTimeout = 5 * time.Second

// closeWait bounds how long reserve run waits for the Client to close
// before it exits: the reservation is released (or lost) by then, and a
// Redis that stopped answering must not hold up the exit (the Client
// waits up to 5 s for a connection of its notifier that was being set up
// when Redis stopped).
const closeWait = time.Second

// closeWithin closes c, but returns after d at the latest, leaving the
// rest of Close to the process's exit.
func closeWithin(c *reservation.Client, d time.Duration) {
	done := make(chan struct{})
	go func() {
		c.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// runFlags are the flags of reserve run.
type runFlags struct {
	conn    connFlags
	hold    holdFlags
	noWait  bool
	timeout time.Duration
	grace   time.Duration
	limit   int // --limit: one of this many permits (0: a plain reservation)
	metrics string
}

func newRunCmd(a *app) *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run [flags] RESOURCE [RESOURCE...] -- COMMAND [ARG...]",
		Short: "Run COMMAND while holding RESOURCE (or several, or one of its --limit permits)",
		Long: `Run COMMAND while holding the reservation of RESOURCE, and release it when
COMMAND exits.

With several resources, run holds them all, or none: it takes them
together in one step (waiting until every one is free, never holding some
while it waits for others), so that two runs asking for overlapping
resources in any order never deadlock. The loss of any one is the loss of
all: COMMAND is stopped as below. At most 64 resources; on a Redis
Cluster, their keys must be in one hash slot (give the names one hash tag:
"{nightly}-a" and "{nightly}-b"). Not with --limit or --quorum.

With --limit N, RESOURCE is a semaphore: up to N holders hold it at once,
each with one of its N permits, and run takes one ("at most 3 exports at a
time across the fleet"). Every holder must give the same N: while permits
of one limit are held, and up to a TTL after the last is gone, a run with
another limit, or without --limit, waits (or fails, with --no-wait). N is
from 1 to 1000; --limit is not available with --quorum.

reserve waits for the reservation by default (--no-wait fails at once when
it is held, --timeout bounds the wait), then starts COMMAND with its
standard input, output and error, and in its environment:
  RESERVE_RESOURCE  the resource name
  RESERVE_KEY       the Redis key of the reservation (with --limit, of the
                    permit held)
  RESERVE_TOKEN     the fencing token: larger than every token issued before
                    for RESOURCE (with --limit, to any of its permits); hand
                    it to the storage you write to
  RESERVE_BY        the worker name (--by)
  RESERVE_LIMIT     the --limit given, 0 without it
With several resources, RESERVE_RESOURCE, RESERVE_KEY and RESERVE_TOKEN are
the first one's, and for each resource, numbered from 1 in the order given:
  RESERVE_COUNT       how many resources are held
  RESERVE_RESOURCE_i  the name of resource i (RESERVE_RESOURCE_1 is the first)
  RESERVE_KEY_i       its Redis key
  RESERVE_TOKEN_i     its fencing token
While COMMAND runs, reserve renews the reservation every --heartbeat. If the
reservation is lost all the same (the key was deleted or taken, or Redis was
unreachable for a TTL), reserve says so and why on stderr, COMMAND's process
group gets SIGTERM, then SIGKILL after --grace, and reserve exits 70.
SIGINT, SIGTERM and SIGHUP sent to reserve are passed on to COMMAND, which
keeps the reservation until it exits. If reserve itself is killed with
SIGKILL, COMMAND gets SIGTERM on Linux (its parent-death signal) and the
reservation expires after --ttl.

On a Redis that is new or lost its data, the restart guard holds every
acquisition back for --restart-guard (default the --ttl), so that holders
from before cannot overlap; reserve says so once, with the reserve prime
command for a server known to be new.

With --wait-replicas N, each acquisition and renewal waits (Redis's WAIT, at
most --wait-timeout) until N replicas have it, so that a failover right
after is less likely to lose it. An acquisition they do not confirm in time
is given back, and reserve exits 69 without starting COMMAND: the
deployment cannot give what was asked (a replica down or lagging, or fewer
replicas than N). A renewal they do not confirm counts as failed.

Exit status: COMMAND's own (128+n when killed by signal n); 75 when not
acquired (--no-wait while held or held back by the restart guard, --timeout
reached); 70 when lost while COMMAND ran; 69 when Redis cannot be reached,
refuses the credentials, or does not confirm the acquisition on
--wait-replicas replicas; 64 for bad usage; 126/127 when COMMAND cannot be
started/is not found.`,
		Example: `  # Run the report, waiting as long as another host runs it.
  reserve run nightly-report -- /usr/local/bin/report.sh

  # From cron: skip this run when the previous one still runs (exit 75).
  */5 * * * * reserve run --no-wait nightly-report -- /usr/local/bin/report.sh

  # Move money between two accounts, holding both (in any order: no deadlock).
  reserve run account:17 account:42 -- sh -c './transfer --from 17 --to 42 \
    --fence-17 "$RESERVE_TOKEN_1" --fence-42 "$RESERVE_TOKEN_2"'

  # At most 3 exports at a time across the fleet; skip this one when 3 run.
  reserve run --limit 3 --no-wait exports -- ./export.sh

  # Wait at most a minute; a short TTL so that a crashed host is taken over fast.
  reserve run --timeout 1m --ttl 10s invoice:42 -- ./bill --invoice 42

  # Use the fencing token and a Redis with a password (kept out of argv).
  REDIS_URL=redis://redis.internal:6379 REDIS_PASSWORD=... \
    reserve run migrate -- sh -c 'migrate --fence "$RESERVE_TOKEN"'

  # Through Sentinel, with each acquisition on a replica too before it starts.
  REDIS_URL='redis://sentinel-1:26379?master_name=main&addr=sentinel-2:26379' \
    reserve run --wait-replicas 1 invoice:42 -- ./bill --invoice 42`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			switch {
			case dash < 0 && len(args) == 0:
				return usageErrorf("missing RESOURCE and COMMAND: reserve run RESOURCE -- COMMAND [ARG...]")
			case dash < 0:
				return usageErrorf("missing -- before the command: reserve run RESOURCE -- COMMAND [ARG...]")
			case dash == 0:
				return usageErrorf("missing RESOURCE before --")
			case len(args) == dash:
				return usageErrorf("missing COMMAND after --")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			return f.run(cmd.Context(), a, args[:dash], args[dash:])
		},
	}
	f.conn.add(cmd)
	f.hold.add(cmd)
	fs := cmd.Flags()
	fs.BoolVar(&f.noWait, "no-wait", false, "fail at once (exit 75) when RESOURCE (or any of several) is held")
	fs.DurationVar(&f.timeout, "timeout", 0, "give up waiting after this long (exit 75); 0 waits for ever")
	fs.DurationVar(&f.grace, "grace", 10*time.Second, "after a loss, how long COMMAND has between SIGTERM and SIGKILL")
	fs.IntVar(&f.limit, "limit", 0, fmt.Sprintf("hold one of this `number` of permits of RESOURCE, a semaphore that up to that many "+
		"hold at once (1 to %d; every holder gives the same number)", reservation.MaxLimit))
	fs.StringVar(&f.metrics, "metrics-addr", "", "serve the reservation's metrics on http://`ADDR`/metrics (host:port, or :port), "+
		"in the Prometheus text format, while reserve runs; env $"+envMetricsAddr)
	cmd.MarkFlagsMutuallyExclusive("no-wait", "timeout")
	return cmd
}

// run acquires the resources (one, or a set), runs argv under them, and
// releases them.
func (f *runFlags) run(ctx context.Context, a *app, resources []string, argv []string) error {
	if f.timeout < 0 {
		return usageErrorf("--timeout %v is negative", f.timeout)
	}
	if f.grace < 0 {
		return usageErrorf("--grace %v is negative", f.grace)
	}
	if err := f.checkLimit(a); err != nil {
		return err
	}
	if err := f.checkSet(a, resources); err != nil {
		return err
	}
	a.notes.hold(resources)
	opt, err := f.hold.options(a)
	if err != nil {
		return err
	}
	if addr, from := f.conn.setting(a, "metrics-addr", f.metrics, envMetricsAddr); addr != "" {
		// The job matters more than its metrics: an address taken (by
		// an overlapping run of the same cron line, say) is said, and
		// the run goes on without them.
		if ms, err := serveMetrics(addr); err != nil {
			a.notes.say("metrics", fmt.Sprintf("cannot serve metrics on %s (%s): %v; running without them", addr, from, err))
		} else {
			// After the Client's Close (deferred later, so run
			// first), which delivers the last events.
			defer ms.close()
			f.conn.observe = ms.observe
		}
	}
	actx, stop := a.interruptible(ctx)
	c, err := f.conn.connect(actx, a, opt)
	if err != nil {
		stop()
		return err
	}
	defer closeWithin(c, closeWait)
	r, err := f.acquire(actx, a, c, resources)
	stop()
	if err != nil {
		return err
	}
	if ierr := interrupted(actx); ierr != nil {
		// A signal came just as the reservation was had.
		rctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		defer cancel()
		_ = r.Release(rctx)
		return ierr
	}
	return f.runChild(a, c, r, argv)
}

// checkSet refuses a set of resources (several given) that cannot be,
// before anything touches Redis: a resource given twice, more than the
// library's MaxSet, with --limit, or with a quorum. What depends on the
// server (a Cluster's hash slots) is the library's to say.
func (f *runFlags) checkSet(a *app, resources []string) error {
	if len(resources) < 2 {
		return nil
	}
	for i, r := range resources {
		if slices.Contains(resources[:i], r) {
			return usageErrorf("%q is given twice: give each RESOURCE once", r)
		}
	}
	if len(resources) > reservation.MaxSet {
		return usageErrorf("%d resources: run holds at most %d at once", len(resources), reservation.MaxSet)
	}
	if f.limit > 0 {
		return usageErrorf("--limit with %d resources: a semaphore is reserved alone (one RESOURCE with --limit)", len(resources))
	}
	on, from, err := f.conn.quorumSetting(a)
	if err != nil {
		return err
	}
	if on {
		return usageErrorf("%d resources with a quorum (%s): several resources at once need one Redis server, "+
			"a Sentinel master or a Cluster; give one RESOURCE", len(resources), from)
	}
	return nil
}

// setName names resources for a person: "a", or "a" and "b", or "a", "b"
// and "c".
func setName(resources []string) string {
	q := make([]string, len(resources))
	for i, r := range resources {
		q[i] = strconv.Quote(r)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}

// checkLimit refuses --limit out of the library's range, and with a
// quorum, which keeps no semaphores, before anything touches Redis.
func (f *runFlags) checkLimit(a *app) error {
	if !f.hold.cmd.Flags().Changed("limit") {
		return nil
	}
	switch {
	case f.limit < 1:
		return usageErrorf("--limit %d: a semaphore has 1 to %d permits; leave the flag out for a plain reservation (one holder at a time)",
			f.limit, reservation.MaxLimit)
	case f.limit > reservation.MaxLimit:
		return usageErrorf("--limit %d: a semaphore has at most %d permits", f.limit, reservation.MaxLimit)
	}
	on, from, err := f.conn.quorumSetting(a)
	if err != nil {
		return err
	}
	if on {
		return usageErrorf("--limit %d: semaphores are not available with a quorum (%s): give --limit with one Redis server, "+
			"a Sentinel master or a Cluster, or leave it out for a plain reservation", f.limit, from)
	}
	return nil
}

// lockOptions are the options of the flags and the resources after the
// first for TryLock and Lock.
func (f *runFlags) lockOptions(resources []string) []reservation.LockOption {
	switch {
	case f.limit > 0:
		return []reservation.LockOption{reservation.Limit(f.limit)}
	case len(resources) > 1:
		return []reservation.LockOption{reservation.With(resources[1:]...)}
	}
	return nil
}

// acquire gets the reservation of the resources as the flags say: at once,
// or waiting. The first try is one round trip, bounded as the first
// contact is.
func (f *runFlags) acquire(ctx context.Context, a *app, c *reservation.Client, resources []string) (*reservation.Reservation, error) {
	resource := resources[0]
	tctx, cancel := bounded(ctx)
	r, err := c.TryLock(tctx, resource, f.lockOptions(resources)...)
	cancel()
	var nerr *reservation.NotAcquiredError
	switch {
	case err == nil:
		return r, nil
	case errors.Is(err, reservation.ErrNotReplicated):
		return nil, f.notReplicated(ctx, c, resources, err)
	case !errors.As(err, &nerr):
		return nil, f.conn.failureOf(ctx, err, resource)
	case f.noWait:
		return nil, notAcquired(nerr, f.limit, resources, "not waiting (--no-wait)")
	}
	if isTerminal(a.stderr) {
		bound := ""
		if f.timeout > 0 {
			bound = " up to " + f.timeout.String()
		}
		fmt.Fprintf(a.stderr, "reserve: %s; waiting%s\n", a.redact(whyNot(nerr, f.limit, resources)), bound)
	}
	wctx := ctx
	if f.timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	r, err = c.Lock(wctx, resource, f.lockOptions(resources)...)
	switch {
	case err == nil:
		return r, nil
	case interrupted(ctx) != nil:
		return nil, interrupted(ctx)
	case errors.As(err, &nerr) && errors.Is(err, context.DeadlineExceeded):
		return nil, notAcquired(nerr, f.limit, resources, "gave up after --timeout "+f.timeout.String())
	case errors.Is(err, reservation.ErrNotReplicated):
		return nil, f.notReplicated(ctx, c, resources, err)
	}
	return nil, f.conn.failureOf(ctx, err, resource)
}

// notReplicated reports an acquisition that fewer replicas than
// --wait-replicas confirmed in time: exit 69, as for a Redis that cannot
// be used, since the deployment cannot give what was asked of it. It is
// not 75: that says someone else holds the resource, which a script may
// skip quietly, while this is the deployment's to fix (a replica down or
// lagging, or fewer replicas than asked for).
func (f *runFlags) notReplicated(ctx context.Context, c *reservation.Client, resources []string, err error) error {
	if ierr := interrupted(ctx); ierr != nil {
		return ierr
	}
	o := c.Options()
	return unavailable(fmt.Errorf("%s was not acquired on %s: fewer than %d %s (--wait-replicas) confirmed it within %v (--wait-timeout), "+
		"so it was given back; see that its master has %[3]d %[4]s connected and in sync (INFO replication): %[6]w",
		setName(resources), f.conn.where, o.WaitReplicas, plural(o.WaitReplicas, "replica", "replicas"), o.WaitTimeout, libCause(err)))
}

// plural answers one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// semaphoreHolder starts the holder value by which the library names a
// semaphore ("semaphore:<limit>"): see reservation.NotAcquiredError.Holder
// and Client.ForceRelease.
const semaphoreHolder = "semaphore:"

// notAcquired reports a reservation of resources not had (with a limit, a
// permit), saying why and who holds it: exit 75.
func notAcquired(e *reservation.NotAcquiredError, limit int, resources []string, then string) error {
	return &exitError{code: ExitNotAcquired, err: fmt.Errorf("%s; %s", whyNot(e, limit, resources), then)}
}

// whyNot says why e's acquisition of resources failed (with limit, of one
// of that many permits), for a person, from what the attempt found (no
// second look, which could find something else). For several resources,
// it says that they are taken together, and why the one that e names
// stood in the way.
func whyNot(e *reservation.NotAcquiredError, limit int, resources []string) string {
	if len(resources) > 1 {
		return fmt.Sprintf("%s are reserved together, all or none, and %s", setName(resources), whyNot(e, limit, nil))
	}
	queue := ""
	if e.Queued > 0 {
		workers := "workers are"
		if e.Queued == 1 {
			workers = "worker is"
		}
		queue = fmt.Sprintf("%d %s in the queue for it, first come, first served", e.Queued, workers)
	}
	inUse, semaphore := strings.CutPrefix(e.Holder, semaphoreHolder)
	switch {
	case e.Holder == "" && queue != "" && limit > 0:
		return fmt.Sprintf("a permit of %q is free, but %s", e.Resource, queue)
	case e.Holder == "" && queue != "":
		return fmt.Sprintf("%q is free, but %s", e.Resource, queue)
	case e.Guard:
		// Why, and what to do, is the guard sentence's to say: the library
		// reports the guard to this Client's hook with the refusal, and the
		// hook's events are all delivered, at the latest when the Client
		// is closed, which is before reserve prints its error.
		return fmt.Sprintf("%q is held back by the restart guard for %s more", e.Resource, fmtDuration(e.Remaining))
	case e.Late:
		return fmt.Sprintf("%q was acquired, but Redis answered after the reservation could have expired, so it was given back",
			e.Resource)
	case semaphore && limit > 0:
		// The marker of a semaphore of another limit.
		return fmt.Sprintf("%q is a semaphore of %s permits, not %d (--limit): every holder must give the same --limit, "+
			"and a semaphore of %[3]d waits until the semaphore's marker expires, up to a TTL after its last permit is gone "+
			"(in %[4]s at the earliest)%[5]s",
			e.Resource, inUse, limit, fmtDuration(e.Remaining), andQueue(queue))
	case semaphore:
		return fmt.Sprintf("%q is a semaphore of %s permits (reserve run --limit %[2]s takes one of them): a plain reservation "+
			"of it waits until the semaphore's marker expires, up to a TTL after its last permit is gone (in %[3]s at the earliest)%[4]s",
			e.Resource, inUse, fmtDuration(e.Remaining), andQueue(queue))
	case e.Holder != "" && limit > 0:
		// Every permit held, or the name held as a plain reservation: the
		// holder is then the permit's that expires first, or the plain
		// holder (the attempt does not say which).
		expiry := "expires in " + fmtDuration(e.Remaining) + " unless renewed"
		if e.NoExpiry {
			expiry = "it never expires: the key has no TTL"
		}
		return fmt.Sprintf("no permit of %q is free (--limit %d): the first to be freed is held by %s (%s)%s",
			e.Resource, limit, e.Holder, expiry, andQueue(queue))
	case e.Holder != "" && e.NoExpiry:
		return fmt.Sprintf("%q is held by %s (it never expires: the key has no TTL)%s", e.Resource, e.Holder, andQueue(queue))
	case e.Holder != "":
		return fmt.Sprintf("%q is held by %s (expires in %s unless renewed)%s", e.Resource, e.Holder, fmtDuration(e.Remaining), andQueue(queue))
	}
	return fmt.Sprintf("%q was not acquired", e.Resource)
}

// andQueue returns "; " and queue, or "" for no queue.
func andQueue(queue string) string {
	if queue == "" {
		return ""
	}
	return "; " + queue
}

// childEnv returns the variables that tell the command what it holds: r's
// first resource under the single names, and with several resources, each
// one numbered from 1 as well. c is r's Client.
func childEnv(c *reservation.Client, r *reservation.Reservation) []string {
	env := []string{
		"RESERVE_RESOURCE=" + r.Resource(),
		"RESERVE_KEY=" + r.Key(),
		"RESERVE_TOKEN=" + strconv.FormatInt(r.Token(), 10),
		"RESERVE_BY=" + c.Options().By,
		"RESERVE_LIMIT=" + strconv.Itoa(r.Limit()),
	}
	fences := r.Fences()
	if len(fences) < 2 {
		return env
	}
	env = append(env, "RESERVE_COUNT="+strconv.Itoa(len(fences)))
	for i, fc := range fences {
		n := strconv.Itoa(i + 1)
		env = append(env,
			"RESERVE_RESOURCE_"+n+"="+fc.Resource,
			"RESERVE_KEY_"+n+"="+c.Key(fc.Resource),
			"RESERVE_TOKEN_"+n+"="+strconv.FormatInt(fc.Token, 10))
	}
	return env
}

// runChild runs argv while r is held, then releases r. The moment r is
// lost it says so, then stops the command: SIGTERM to its process group
// (cmd.Cancel), SIGKILL after --grace. c is r's Client.
func (f *runFlags) runChild(a *app, c *reservation.Client, r *reservation.Reservation, argv []string) error {
	held := make([]string, 0, 1)
	for _, fc := range r.Fences() {
		held = append(held, fc.Resource)
	}
	name := setName(held)
	// The command's context is not r's: stop is called once the loss has
	// been told, so that the sentence comes before the command's SIGTERM.
	cctx, stop := context.WithCancel(context.Background())
	defer stop()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = a.stdin, a.stdout, a.stderr
	cmd.Env = append(a.environ(), childEnv(c, r)...)
	// The command gets a process group of its own, so that a loss stops
	// everything it started, not only its first process. When reserve is
	// in the foreground of a terminal, so is the group (as a shell does).
	tty := foregroundTTY(a.stdin)
	cmd.SysProcAttr = sysProcAttr(tty)
	cmd.Cancel = func() error { return signalGroup(cmd.Process, syscall.SIGTERM) }
	cmd.WaitDelay = max(f.grace, time.Millisecond)
	if errors.Is(r.Err(), reservation.ErrLost) {
		// Lost between the acquisition and here: do not start it.
		a.notes.lostHeld(r)
		return &exitError{code: ExitLost, err: fmt.Errorf("the reservation of %s was lost before the command started", name)}
	}
	if err := cmd.Start(); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		defer cancel()
		_ = r.Release(ctx)
		return startError(argv[0], err)
	}
	if tty >= 0 {
		defer reclaimTTY(tty)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the status is in cmd.ProcessState
		close(exited)
	}()

	var (
		done   = r.Done()
		kill   <-chan time.Time
		lostAt time.Time
	)
wait:
	for {
		select {
		case <-exited:
			break wait
		case s := <-a.signals:
			_ = signalGroup(cmd.Process, s)
		case <-done:
			done = nil
			if !errors.Is(r.Err(), reservation.ErrLost) {
				continue
			}
			lostAt = time.Now()
			// The library's hook may have said it already; once is enough.
			a.notes.lostHeld(r)
			stop() // SIGTERM, through cmd.Cancel
			fmt.Fprintf(a.stderr, "reserve: sent SIGTERM to the command; SIGKILL in %v if it is still running\n", f.grace)
			t := time.NewTimer(f.grace)
			defer t.Stop()
			kill = t.C
		case <-kill:
			kill = nil
			_ = signalGroup(cmd.Process, syscall.SIGKILL)
		}
	}
	status := childStatus(cmd.ProcessState)

	lostWhileRan := &exitError{code: ExitLost,
		err: fmt.Errorf("the reservation of %s was lost while the command ran (its exit status: %d)", name, status)}
	if errors.Is(r.Err(), reservation.ErrLost) {
		// The first process is gone; what it started must not outlive
		// the grace period either. No release: the key is someone
		// else's, or (lost by the local deadline, Redis not answering)
		// expires on the server within the drift margin, and giving it
		// back would only hold up the exit, in Close, until Redis answers.
		stopGroup(cmd.Process.Pid, lostAt.Add(f.grace))
		return lostWhileRan
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	switch err := r.Release(ctx); {
	case errors.Is(err, reservation.ErrLost):
		// Found at release: the key was deleted or taken before the
		// command ended, so it did not run under the reservation to its end.
		a.notes.lostHeld(r)
		return lostWhileRan
	case err != nil:
		fmt.Fprintf(a.stderr, "reserve: could not release %s (it expires within the TTL): %s\n", name, a.redact(err.Error()))
	}
	return exitCode(status)
}

// startError maps a failure to start the command to an exit.
func startError(name string, err error) error {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return &exitError{code: ExitNotFound, err: fmt.Errorf("%s: command not found", name)}
	}
	return &exitError{code: ExitCannotExec, err: fmt.Errorf("cannot run %s: %w", name, err)}
}

// childStatus answers the exit status of a child as a shell reports it:
// its exit code, or 128 + the number of the signal that killed it.
func childStatus(ps *os.ProcessState) int {
	if ps == nil {
		return ExitFailure
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ExitSignal + int(ws.Signal())
	}
	return ps.ExitCode()
}
