// Package worker is a fault-test worker: one reservation.Client whose
// lanes take resources, hold them for a while and give them up, and report
// every holding as history events. The fault tests run workers in their own
// process (Run) and in worker processes (Main): the test binary run again,
// or, for a process that must run as production binaries do (without the
// race detector), the command in ../workercmd.
package worker

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	neturl "net/url"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/faults/history"
)

// Env, when set, makes a process a worker process: the variable holds the
// Spec as JSON (see Main).
const Env = "FAULTS_WORKER"

// Spec describes a worker: one reservation.Client and Lanes
// goroutines that contend for Resources through it.
type Spec struct {
	Name string `json:"name"`
	// URL is the server's, or the deployment's (Sentinel, Cluster), for
	// New; "" when Quorum is set.
	URL string `json:"url"`
	// Quorum, when not empty, makes a Client in quorum mode over these
	// independent servers ("host:port" or URLs): with NewQuorum, or, with
	// External, NewQuorumWithClients over go-redis clients of default
	// options.
	Quorum    []string      `json:"quorum,omitempty"`
	Resources []string      `json:"resources"`
	Lanes     int           `json:"lanes"`
	TTL       time.Duration `json:"ttl"`
	Heartbeat time.Duration `json:"heartbeat"`
	Retry     time.Duration `json:"retry"`
	HoldMin   time.Duration `json:"hold_min"`
	HoldMax   time.Duration `json:"hold_max"`
	// Limit, when above 0, makes every TryLock and Lock call reserve one
	// of Limit permits of its resource (reservation.Limit): the resources
	// are semaphores. The events record it.
	Limit int `json:"limit,omitempty"`
	// SetSize, when above 1, makes every TryLock and Lock call reserve
	// SetSize distinct resources at once (reservation.With), picked at
	// random from Resources, in random order: a set. Each member's holding
	// is recorded by an event of its own, with its own token (Fences), all
	// with the set's holder value and the members in history.Event.Set; a
	// release or a loss of the set is recorded for every member.
	SetSize int `json:"set_size,omitempty"`
	// LockRatio is the share of attempts made with TryLock (then a short
	// pause when refused) rather than Lock.
	LockRatio float64 `json:"lock_ratio"`
	// WaitMin and WaitMax bound how long a Lock call waits before it
	// gives up (0: TTL and 4 TTL).
	WaitMin time.Duration `json:"wait_min,omitempty"`
	WaitMax time.Duration `json:"wait_max,omitempty"`
	// Queue records each Lock call as a history.LockCall event, with when
	// its Client reported that it waits in the server's queue (EventWait,
	// through Options.OnEvent). It needs one lane: then the Client's
	// events come in the order of its calls (see waits).
	Queue bool   `json:"queue,omitempty"`
	Seed  uint64 `json:"seed"`
	// External makes the Client with NewWithClient over a go-redis client
	// of default options, as a user with Sentinel or Cluster would, rather
	// than with New: a failover client for a Sentinel URL (master_name), a
	// cluster client for a Cluster URL (addr parameters), else a plain
	// one. go-redis then bounds calls by its ReadTimeout (5 s), not by
	// contexts.
	External bool `json:"external"`
	// WaitReplicas is the Client's Options.WaitReplicas (0: no wait).
	WaitReplicas int `json:"wait_replicas,omitempty"`
	// Life bounds a worker process's life, whatever its parent does.
	Life time.Duration `json:"life"`
	// Pinned gives lane i the resource i (modulo their number) for its
	// whole life, instead of one at random each time.
	Pinned bool `json:"pinned,omitempty"`
	// MaxProcs, for a worker process, is its GOMAXPROCS (0: Go's choice).
	MaxProcs int `json:"gomaxprocs,omitempty"`
	// Spin, for a worker process, is how many CPU-bound goroutines it
	// runs beside its lanes, to starve them of CPU (see Main); the process
	// then measures how late its timers fire while they spin and reports
	// it (a Lateness event) when it stops.
	Spin int `json:"spin,omitempty"`
}

// Run runs w until ctx ends, then releases what it holds and closes
// its Client. It reports every holding to emit. onEvent, when not nil, is
// the Client's Options.OnEvent.
func Run(ctx context.Context, w Spec, log *slog.Logger, onEvent func(reservation.Event), emit func(...history.Event)) error {
	var rec *waits
	if w.Queue {
		if w.Lanes > 1 {
			return fmt.Errorf("worker %s: Queue needs one lane, not %d", w.Name, w.Lanes)
		}
		rec = newWaits(onEvent)
		onEvent = rec.onEvent
	}
	opt := &reservation.Options{
		By:                w.Name,
		TTL:               w.TTL,
		HeartbeatInterval: w.Heartbeat,
		RetryInterval:     w.Retry,
		Logger:            log,
		OnEvent:           onEvent,
		WaitReplicas:      w.WaitReplicas,
	}
	var c *reservation.Client
	switch {
	case len(w.Quorum) > 0 && w.External:
		rdbs := make([]*redis.Client, len(w.Quorum))
		for i, addr := range w.Quorum {
			o, err := plainOptions(addr)
			if err != nil {
				return err
			}
			rdbs[i] = redis.NewClient(o)
			defer rdbs[i].Close()
		}
		var err error
		if c, err = reservation.NewQuorumWithClients(rdbs, opt); err != nil {
			return err
		}
	case len(w.Quorum) > 0:
		var err error
		if c, err = reservation.NewQuorum(w.Quorum, opt); err != nil {
			return err
		}
	case w.External:
		rdb, err := external(w.URL)
		if err != nil {
			return err
		}
		defer rdb.Close()
		c, err = reservation.NewWithClient(rdb, opt)
		if err != nil {
			return err
		}
	default:
		var err error
		if c, err = reservation.New(w.URL, opt); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	for lane := range max(w.Lanes, 1) {
		rng := rand.New(rand.NewPCG(w.Seed, uint64(lane)))
		wg.Go(func() { runLane(ctx, c, w, lane, rng, rec, emit) })
	}
	wg.Wait()
	// Everything was released by the lanes; Close only stops goroutines.
	if err := c.Close(); err != nil && !errors.Is(err, reservation.ErrClosed) {
		log.Warn("close", "err", err)
	}
	return nil
}

// external returns a go-redis client of default options for url, of the
// kind its form names, as go-redis's own parsers read it: a failover client
// for a Sentinel URL (a master_name parameter), a cluster client for a
// Cluster URL (addr parameters), else a plain client.
func external(url string) (redis.UniversalClient, error) {
	q := ""
	if _, rest, ok := strings.Cut(url, "?"); ok {
		q = rest
	}
	values, err := neturl.ParseQuery(q)
	if err != nil {
		return nil, err
	}
	switch {
	case values.Has("master_name"):
		fo, err := redis.ParseFailoverURL(url)
		if err != nil {
			return nil, err
		}
		return redis.NewFailoverClient(fo), nil
	case values.Has("addr"):
		co, err := redis.ParseClusterURL(url)
		if err != nil {
			return nil, err
		}
		return redis.NewClusterClient(co), nil
	}
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(o), nil
}

// plainOptions returns go-redis's default options for one server of a
// quorum, given as "host:port" or as a URL.
func plainOptions(addr string) (*redis.Options, error) {
	if strings.Contains(addr, "://") {
		return redis.ParseURL(addr)
	}
	return &redis.Options{Addr: addr}, nil
}

// runLane takes a resource, holds it for a while, gives it up, and again,
// until ctx ends. rec, when not nil, has the Client's wait events, and the
// lane records its Lock calls.
func runLane(ctx context.Context, c *reservation.Client, w Spec, lane int, rng *rand.Rand, rec *waits, emit func(...history.Event)) {
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	var opts []reservation.LockOption
	if w.Limit > 0 {
		opts = append(opts, reservation.Limit(w.Limit))
	}
	for ctx.Err() == nil {
		resource := w.Resources[rng.IntN(len(w.Resources))]
		if w.Pinned {
			resource = w.Resources[lane%len(w.Resources)]
		}
		var set []string
		callOpts := opts
		if w.SetSize > 1 {
			for _, i := range rng.Perm(len(w.Resources))[:min(w.SetSize, len(w.Resources))] {
				set = append(set, w.Resources[i])
			}
			resource = set[0]
			callOpts = append(slices.Clone(opts), reservation.With(set[1:]...))
		}
		call := history.Now()
		// acquired records r at once: a process killed right after must
		// leave its holding in the history. A set's members are recorded
		// at one instant, in one write: a kill never leaves part of them.
		acquired := func(r *reservation.Reservation) {
			at := history.Now()
			if set == nil {
				emit(history.Event{Kind: history.Acquired, Worker: w.Name, Resource: resource,
					Holder: r.Holder(), Token: r.Token(), Limit: w.Limit, Key: r.Key(), Call: call, At: at})
				return
			}
			var members []history.Event
			for _, f := range r.Fences() {
				members = append(members, history.Event{Kind: history.Acquired, Worker: w.Name, Resource: f.Resource,
					Holder: r.Holder(), Token: f.Token, Key: c.Key(f.Resource), Set: set, Call: call, At: at})
			}
			emit(members...)
		}
		var r *reservation.Reservation
		if rng.Float64() < w.LockRatio {
			got, err := c.TryLock(ctx, resource, callOpts...)
			if err != nil {
				// Held by someone else (ErrNotAcquired) or an error of
				// Redis: try again shortly either way.
				sleepCtx(ctx, between(5*time.Millisecond, 30*time.Millisecond))
				continue
			}
			acquired(got)
			r = got
		} else {
			wctx, cancel := context.WithTimeout(ctx, between(cmp.Or(w.WaitMin, w.TTL), cmp.Or(w.WaitMax, 4*w.TTL)))
			deadline, _ := wctx.Deadline()
			got, err := c.Lock(wctx, resource, callOpts...)
			cancel()
			if got != nil {
				acquired(got)
			}
			if rec != nil {
				e := rec.lockCall(ctx, w.Name, resource, call, deadline.UnixNano(), got, err)
				e.Set = set
				emit(e)
			}
			if err != nil {
				if !errors.Is(err, reservation.ErrNotAcquired) {
					sleepCtx(ctx, 10*time.Millisecond)
				}
				continue
			}
			r = got
		}
		Hold(ctx, r, w, between(w.HoldMin, w.HoldMax), emit)
	}
}

// Hold keeps r for d, or until it is lost or ctx ends, and gives it up.
func Hold(ctx context.Context, r *reservation.Reservation, w Spec, d time.Duration, emit func(...history.Event)) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-r.Done():
		lost(r, w, history.Now(), emit)
		return
	case <-timer.C:
	case <-ctx.Done():
	}
	// Stop using the resource, then release. Validity is read before the
	// send instant is taken: if the Client is stalled, so is this.
	var first int64
	for {
		validity := r.Validity()
		sent := history.Now()
		select {
		case <-r.Done():
			lost(r, w, sent, emit)
			return
		default:
		}
		if first == 0 {
			first = sent
			// Recorded before the send: a kill before the Released
			// event must not leave the holding open until the kill,
			// when the release may have reached the server.
			emitAll(r, history.Event{Kind: history.Releasing, Worker: w.Name, Resource: r.Resource(), Holder: r.Holder(), At: first}, emit)
		}
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := r.Release(rctx)
		cancel()
		ev := history.Event{Kind: history.Released, Worker: w.Name, Resource: r.Resource(), Holder: r.Holder(),
			At: first, Sent: sent, Reply: history.Now(), Validity: history.Validity(validity), Outcome: history.OutcomeOK}
		switch {
		case err == nil:
			emitAll(r, ev, emit)
			return
		case errors.Is(err, reservation.ErrNotHeld):
			ev.Outcome = history.OutcomeNotHeld
			emitAll(r, ev, emit)
			return
		}
		// Redis did not answer: the reservation is still held and renewed
		// (or lost soon). The holder stopped using it at first.
		select {
		case <-r.Done():
			ev.Outcome = history.OutcomeError
			emitAll(r, ev, emit)
			lost(r, w, history.Now(), emit)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lost reports the loss of r, seen at at, and releases it as a holder
// should, which frees a key still ours on the server. The Outcome is
// history.LostCause when Err matches reservation.ErrLost, else what Err
// said; Reason is Err's text (the loss's reason).
func lost(r *reservation.Reservation, w Spec, at int64, emit func(...history.Event)) {
	cause, reason := "<nil>", ""
	if err := r.Err(); err != nil {
		cause, reason = err.Error(), err.Error()
		if errors.Is(err, reservation.ErrLost) {
			cause = history.LostCause
		}
	}
	emitAll(r, history.Event{Kind: history.Lost, Worker: w.Name, Resource: r.Resource(), Holder: r.Holder(), At: at,
		Outcome: cause, Reason: reason}, emit)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.Release(ctx)
}

// emitAll emits e, an end of r, once for each resource r holds: once for a
// reservation of one resource, once for each member of a set, whose
// release and loss end every member (in one write).
func emitAll(r *reservation.Reservation, e history.Event, emit func(...history.Event)) {
	fences := r.Fences()
	if len(fences) <= 1 {
		emit(e)
		return
	}
	events := make([]history.Event, len(fences))
	for i, f := range fences {
		events[i] = e
		events[i].Resource = f.Resource
	}
	emit(events...)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Main is the life of a worker process: run the spec in $FAULTS_WORKER,
// print each event as a JSON line on standard output, stop when standard
// input closes (the parent is done), on SIGTERM, or at the end of its Life.
// With Spin, the lines "rest" and "starve" on standard input stop and
// resume the CPU-bound goroutines (they spin from the start).
func Main(specJSON string) int {
	var w Spec
	if err := json.Unmarshal([]byte(specJSON), &w); err != nil {
		fmt.Fprintln(os.Stderr, "worker: bad spec:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, w.Life)
	defer cancel()
	var starving atomic.Bool
	starving.Store(true)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			switch sc.Text() {
			case "rest":
				starving.Store(false)
			case "starve":
				starving.Store(true)
			}
		}
		cancel() // EOF: the parent is done
	}()
	var mu sync.Mutex
	// emit writes events in one write to the pipe: a set's members,
	// under PIPE_BUF, reach the test whole even when the process is
	// killed right after.
	emit := func(events ...history.Event) {
		var b []byte
		for _, e := range events {
			line, _ := json.Marshal(e)
			b = append(append(b, line...), '\n')
		}
		if len(events) > 1 && len(b) > pipeBuf {
			// A kill could split them: the history would be wrong.
			panic(fmt.Sprintf("worker %s: %d events take %d bytes, over PIPE_BUF (%d): they may not reach the test whole", w.Name, len(events), len(b), pipeBuf))
		}
		mu.Lock()
		defer mu.Unlock()
		_, _ = os.Stdout.Write(b)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var late []time.Duration
	var lateAt []int64
	probed := make(chan struct{})
	if w.Spin > 0 {
		starve(ctx, w.Spin, &starving)
		go func() {
			defer close(probed)
			late, lateAt = probeTimers(ctx, 5*time.Millisecond, &starving)
		}()
	} else {
		close(probed)
	}
	if err := Run(ctx, w, log, nil, emit); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	<-probed
	if len(late) > 0 {
		emit(history.Event{Kind: history.Lateness, Worker: w.Name, At: history.Now(), Late: late, LateAt: lateAt})
	}
	return 0
}

// starve starts n goroutines that keep a CPU busy while starving is set,
// until ctx ends.
func starve(ctx context.Context, n int, starving *atomic.Bool) {
	for range n {
		go func() {
			x := 0
			for ctx.Err() == nil {
				if !starving.Load() {
					time.Sleep(time.Millisecond)
					continue
				}
				for i := range 1_000_000 {
					x += i
				}
			}
			runtime.KeepAlive(x)
		}()
	}
}

// probeTimers sleeps for d again and again until ctx ends, and answers how
// late each sleep that began and ended while starving woke, and when it
// did: what the heartbeat of a starved process meets.
func probeTimers(ctx context.Context, d time.Duration, starving *atomic.Bool) (late []time.Duration, at []int64) {
	for ctx.Err() == nil {
		was := starving.Load()
		start := time.Now()
		time.Sleep(d)
		end := time.Now()
		if was && starving.Load() {
			late = append(late, end.Sub(start)-d)
			at = append(at, end.UnixNano())
		}
	}
	return late, at
}

// waits matches the wait events of a worker's Client (EventWait) to the
// Lock calls of its one lane. The Client delivers its events in the order
// it emitted them, from a goroutine of its own, so an event may arrive
// after the call that emitted it returned. So after each Lock call the lane
// waits for the event that must follow what the call emitted: its
// EventAcquired when it acquired, its EventWait when it gave up waiting.
// Every wait event of the call has arrived by then, and none of the next
// call's can have.
type waits struct {
	next func(reservation.Event) // the worker's own hook, or nil

	mu       sync.Mutex
	changed  chan struct{}   // closed at each event recorded, then replaced
	pending  []waitEvent     // wait events not yet matched to a call
	acquired map[string]bool // holder values whose EventAcquired arrived
}

// waitEvent is an EventWait of resource, delivered at at.
type waitEvent struct {
	resource string
	at       int64
}

// claimTimeout bounds the lane's wait for the event that follows a call:
// the events come within microseconds, unless the hook after this one
// blocks.
const claimTimeout = time.Second

func newWaits(next func(reservation.Event)) *waits {
	return &waits{next: next, changed: make(chan struct{}), acquired: map[string]bool{}}
}

// onEvent is the Client's Options.OnEvent.
func (ws *waits) onEvent(e reservation.Event) {
	at := history.Now()
	switch e.Kind {
	case reservation.EventWait, reservation.EventAcquired:
		ws.mu.Lock()
		if e.Kind == reservation.EventWait {
			ws.pending = append(ws.pending, waitEvent{e.Resource, at})
		} else {
			ws.acquired[e.Holder] = true
		}
		close(ws.changed)
		ws.changed = make(chan struct{})
		ws.mu.Unlock()
	}
	if ws.next != nil {
		ws.next(e)
	}
}

// lockCall returns the LockCall event of a call on resource begun at call,
// whose context (a child of ctx) had the deadline deadline, and which
// returned r or err.
func (ws *waits) lockCall(ctx context.Context, worker, resource string, call, deadline int64, r *reservation.Reservation, err error) history.Event {
	e := history.Event{Kind: history.LockCall, Worker: worker, Resource: resource, Call: call}
	var nerr *reservation.NotAcquiredError
	switch {
	case r != nil:
		e.Outcome, e.Holder = history.OutcomeAcquired, r.Holder()
	case errors.As(err, &nerr) && nerr.Err != nil && ctx.Err() == nil:
		e.Outcome, e.Until = history.OutcomeGaveUp, deadline
	case ctx.Err() != nil:
		e.Outcome = history.OutcomeStopped
	default:
		e.Outcome = history.OutcomeError
	}
	// A call that gave up waited, unless its context ended before the
	// first attempt's answer (then no wait event comes, and the lane waits
	// claimTimeout for nothing). When the worker stops, its calls are not
	// checked: their wait is not waited for.
	e.At = ws.claim(resource, call, e.Holder, e.Outcome == history.OutcomeGaveUp)
	return e
}

// claim waits until the events of the call on resource begun at call have
// arrived: the EventAcquired of holder when it is not "", else, when
// gaveUp, a wait event. It returns when the call's wait event arrived (0:
// none did), and forgets every wait event that arrived so far.
func (ws *waits) claim(resource string, call int64, holder string, gaveUp bool) int64 {
	timeout := time.NewTimer(claimTimeout)
	defer timeout.Stop()
	ws.mu.Lock()
	defer ws.mu.Unlock()
	arrived := func() bool {
		if holder != "" {
			return ws.acquired[holder]
		}
		return !gaveUp || len(ws.pending) > 0
	}
	for timedOut := false; !timedOut && !arrived(); {
		changed := ws.changed
		ws.mu.Unlock()
		select {
		case <-changed:
		case <-timeout.C:
			timedOut = true
		}
		ws.mu.Lock()
	}
	delete(ws.acquired, holder)
	var at int64
	for _, w := range ws.pending {
		// Only an event of this call's resource that arrived after it
		// began can be its own.
		if w.resource == resource && w.at >= call {
			at = w.at
		}
	}
	ws.pending = ws.pending[:0]
	return at
}

// pipeBuf is the most bytes Linux writes to a pipe at once, whole or not
// at all (PIPE_BUF): a set's events, written in one write, reach the test
// whole even when the process is killed.
const pipeBuf = 4096
