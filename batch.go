package reservation

import (
	"context"
	"errors"
	"runtime/pprof"
	"sync"

	"github.com/redis/go-redis/v9"
)

// errNotSent is matched by the error of a call that never left the queue:
// the script did not run.
var errNotSent = errors.New("reservation: not sent")

// maxBatches is how many round trips of acquire and release scripts one
// Client has under way at once; calls that come while that many are under
// way queue and go together in the next pipeline. In scenario 2 of
// docs/PERFORMANCE.md (16 goroutines locking and releasing at once), four
// gave the highest median of six runs: 0.955x the go-redis floor
// (0.93x-1.02x), with 0.72 round trips per cycle, against 0.81x
// (0.77x-0.95x) and 1.31 with eight, whose round trips cost both sides more
// CPU per cycle, and 0.92x (0.79x-0.99x) and 0.45 with two. Fewer goroutines
// than that are served as before, a round trip each; a call that queues
// and is sent waits for its reply even when its context ends meanwhile.
const maxBatches = 4

// batcher sends the acquire and release scripts of concurrent calls of one
// Client in pipelines, so that many goroutines locking and releasing at
// once cost one round trip per batch, not one each (what rueidis does by
// itself; go-redis's AutoPipeliner is experimental and does not honour a
// call's context once queued). A call that finds fewer than maxBatches
// round trips under way runs at once, on its own, with its own context:
// an uncontended call costs what it did without the batcher.
//
// A queued call whose context ends before its batch is sent is taken off
// the queue and never runs; once sent, it waits for its reply, as a plain
// call does, so that its caller always learns what a script that ran did.
type batcher struct {
	rdb redis.UniversalClient

	mu       sync.Mutex
	inflight int // round trips under way, at most maxBatches
	// track, when not nil, is the notifier whose tracking connection
	// carries one of the round trips (trackBusy while it does): the
	// scripts sent there are followed by a read that watches the keys
	// they acquire (see scriptCall.onTracking), which saves the holder's
	// first read of its key, and their own writes do not come back as
	// invalidations (NOLOOP). The other round trips use rdb.
	track     *notifier
	trackBusy bool
	queue     []*batchedCall // calls waiting for the next batch
	senders   int            // goroutines sending batches
	idle      *sync.Cond     // signalled when senders drops to 0

	detached sync.WaitGroup // calls run by detach
	workers  *workers       // the goroutines detach runs them on
}

type batchedCall struct {
	*scriptCall
	done chan struct{}
}

func newBatcher(rdb redis.UniversalClient) *batcher {
	b := &batcher{rdb: rdb, workers: newWorkers()}
	b.idle = sync.NewCond(&b.mu)
	return b
}

// run runs sc like sc.run, in a batch when other calls are under way. It
// reports whether the call was left running when ctx ended: then sc.late
// gets its reply.
func (b *batcher) run(ctx context.Context, sc *scriptCall) (*redis.Cmd, bool) {
	b.mu.Lock()
	if b.inflight < maxBatches {
		b.inflight++
		on := b.claimLocked()
		b.mu.Unlock()
		if ctx.Done() == nil {
			cmd := b.runOn(ctx, sc, on)
			b.next(on)
			return cmd, false
		}
		return b.runDetached(ctx, sc, on)
	}
	call := &batchedCall{scriptCall: sc, done: make(chan struct{})}
	b.queue = append(b.queue, call)
	b.mu.Unlock()
	select {
	case <-call.done:
		return call.cmd, false
	case <-ctx.Done():
	}
	// Not sent yet: it never will be, and the caller knows it did not
	// run. Already sent: its outcome matters (a release that ran deleted
	// the key), so wait for it, as a plain call waits for a reply on its
	// way; the batch's round trip is bounded by the client's timeouts.
	b.mu.Lock()
	for i, c := range b.queue {
		if c == call {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			b.mu.Unlock()
			cmd := redis.NewCmd(ctx)
			cmd.SetErr(errors.Join(errNotSent, ctx.Err()))
			return cmd, false
		}
	}
	b.mu.Unlock()
	<-call.done
	return call.cmd, false
}

// runDetached runs sc on its own, in a goroutine, with ctx's values but not
// its deadline or cancellation, and returns its reply, or ctx's error when
// ctx ends first. A call so abandoned still runs to its reply (bounded by
// the client's timeouts), and then sc.late, when set, gets it: so what
// undoes the call (giving back a key the caller will not hold) runs after
// the server has answered it, never before it on another connection.
func (b *batcher) runDetached(ctx context.Context, sc *scriptCall, on *notifier) (*redis.Cmd, bool) {
	var cmd *redis.Cmd
	left := b.detach(ctx, func(dctx context.Context) {
		cmd = b.runOn(dctx, sc, on)
		b.next(on)
	}, func() {
		if sc.late != nil {
			sc.late(cmd)
		}
	})
	if left {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(ctx.Err())
		return cmd, true
	}
	return sc.cmd, false
}

// detach runs work on one of b.workers, with ctx's values but not its deadline
// or cancellation, and waits until it is done or ctx ends. It reports
// whether ctx ended first, work abandoned: then late, when not nil, runs
// once work is done (what answers the abandoned work runs after the server
// answered it, never before it on another connection).
func (b *batcher) detach(ctx context.Context, work func(context.Context), late func()) bool {
	var (
		mu                 sync.Mutex
		replied, abandoned bool
	)
	done := make(chan struct{})
	b.detached.Add(1)
	b.workers.run(func() {
		defer b.detached.Done()
		// The caller's profiler labels, which a goroutine of its own
		// would have inherited, not those of the worker's last call.
		pprof.SetGoroutineLabels(ctx)
		work(context.WithoutCancel(ctx))
		mu.Lock()
		replied = true
		after := abandoned
		mu.Unlock()
		close(done)
		if after && late != nil {
			late()
		}
	})
	select {
	case <-done:
		return false
	case <-ctx.Done():
	}
	mu.Lock()
	if replied {
		mu.Unlock()
		<-done
		return false
	}
	abandoned = true
	mu.Unlock()
	return true
}

// runAll runs release calls in one pipeline, as run runs one: on the
// tracking connection when it is free (whose own writes then come back as
// no invalidation, which the pool's would, each costing the holder a
// read), else on rdb; when maxBatches round trips are under way, through
// the pool at once, with ctx, rather than wait. Once sent on a round trip
// of its own, the pipeline runs to its replies, detached from ctx. Then
// answered runs, before runAll returns unless ctx ended first. It reports
// whether ctx ended first, the calls left running (their replies are then
// not the caller's to read, and the error is ctx's), and returns the
// pipeline's error.
func (b *batcher) runAll(ctx context.Context, calls []*scriptCall, answered func()) (left bool, err error) {
	b.mu.Lock()
	if b.inflight >= maxBatches {
		b.mu.Unlock()
		_, err := evalPipelined(ctx, b.rdb, calls)
		answered()
		return false, err
	}
	b.inflight++
	on := b.claimLocked()
	b.mu.Unlock()
	var perr error // the pipeline's, written before detach returns unless left
	left = b.detach(ctx, func(dctx context.Context) {
		perr = b.pipeline(dctx, calls, on)
		b.next(on)
		answered()
	}, nil)
	if left {
		return true, ctx.Err()
	}
	return false, perr
}

// useTracking has one round trip of the batcher's run on n's tracking
// connection from now on; nil stops it.
func (b *batcher) useTracking(n *notifier) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.track = n
}

// claimLocked returns the notifier whose tracking connection the round
// trip being started takes, or nil for rdb. b.mu is held.
func (b *batcher) claimLocked() *notifier {
	if b.track == nil || b.trackBusy || !b.track.settled() { // b.mu, then n.mu
		// Busy, or its tracking is being turned on again (a
		// reconnection): the pool.
		return nil
	}
	b.trackBusy = true
	return b.track
}

// runOn runs sc on its own, on on's tracking connection, or on rdb.
func (b *batcher) runOn(ctx context.Context, sc *scriptCall, on *notifier) *redis.Cmd {
	if on == nil {
		return sc.run(ctx, b.rdb)
	}
	sc.onTracking(on)
	cmd := sc.run(ctx, on.trackClient)
	trackingFailed(on, sc)
	return cmd
}

// trackingFailed has on's watches set again when a call on its tracking
// connection failed other than by Redis's answer (a timeout, a reset): the
// connection may have been closed by go-redis, with every watch on it,
// which nothing else would notice before the next dial.
func trackingFailed(on *notifier, calls ...*scriptCall) {
	for _, sc := range calls {
		if err := sc.cmd.Err(); err != nil {
			if _, reply := redisErr(err); !reply {
				on.askRearm()
				return
			}
		}
	}
}

// next hands a round trip that ended (on on's tracking connection, or
// rdb) to the calls queued meanwhile, or gives it up when none are.
func (b *batcher) next(on *notifier) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		b.inflight--
		if on != nil {
			b.trackBusy = false
		}
		return
	}
	calls := b.queue
	b.queue = nil
	b.senders++
	go b.send(calls, on)
}

// send sends calls in one pipeline, then what queued meanwhile, until the
// queue is empty, on on's tracking connection, or rdb.
func (b *batcher) send(calls []*batchedCall, on *notifier) {
	for {
		sc := make([]*scriptCall, len(calls))
		for i, c := range calls {
			sc[i] = c.scriptCall
		}
		_ = b.pipeline(context.Background(), sc, on)
		for _, c := range calls {
			close(c.done)
		}
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.inflight--
			if on != nil {
				b.trackBusy = false
			}
			b.senders--
			if b.senders == 0 {
				b.idle.Broadcast()
			}
			b.mu.Unlock()
			return
		}
		calls = b.queue
		b.queue = nil
		b.mu.Unlock()
	}
}

// pipeline runs calls in one pipeline, on on's tracking connection, or
// rdb, with ctx (never a caller's: once sent, every call waits for its
// reply, bounded by the client's timeouts); replies and errors are the
// calls', and it returns the pipeline's error.
func (b *batcher) pipeline(ctx context.Context, calls []*scriptCall, on *notifier) error {
	rdb := b.rdb
	if on != nil {
		rdb = on.trackClient
		for _, c := range calls {
			c.onTracking(on)
		}
	}
	_, err := evalPipelined(ctx, rdb, calls)
	if on != nil {
		trackingFailed(on, calls...)
	}
	return err
}

// wait returns once no batch is being sent and no detached call runs, and
// its idle workers have ended.
func (b *batcher) wait() {
	b.detached.Wait()
	b.workers.stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.senders > 0 {
		b.idle.Wait()
	}
}
