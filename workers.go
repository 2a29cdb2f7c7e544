package reservation

import (
	"sync"
	"sync/atomic"
	"time"
)

// workerIdle is how long a worker waits for more work before it ends.
const workerIdle = 10 * time.Second

// workers runs functions on goroutines it keeps for a while after each, so
// that a call that needs a goroutine of its own (a call detached from its
// caller's context: see batcher.detach) does not start one every time.
// Starting one, and growing its stack to what a round trip through
// go-redis needs, was 10% of the client's CPU in scenario 1 of
// docs/PERFORMANCE.md (runtime.copystack), when the runtime sized new
// stacks small (it follows the average it found at the last collection).
type workers struct {
	work     chan func() // unbuffered: taken by an idle worker only
	quit     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	started  atomic.Int64 // goroutines started, ever
	idle     atomic.Int64 // workers waiting for work
}

func newWorkers() *workers {
	return &workers{work: make(chan func()), quit: make(chan struct{})}
}

// run runs f on an idle worker, or on a new one when none is idle. After
// stop, f still runs, on a goroutine that ends with it.
func (w *workers) run(f func()) {
	select {
	case w.work <- f:
		return
	default:
	}
	w.wg.Add(1)
	w.started.Add(1)
	go w.loop(f)
}

// loop runs f, then the work given to it, until it has been idle for
// workerIdle or stop is called.
func (w *workers) loop(f func()) {
	defer w.wg.Done()
	var idle *time.Timer
	for {
		f()
		f = nil // the idle worker keeps nothing of the work it did
		if idle == nil {
			idle = time.NewTimer(workerIdle)
			defer idle.Stop()
		} else {
			idle.Reset(workerIdle)
		}
		w.idle.Add(1)
		select {
		case f = <-w.work:
			w.idle.Add(-1)
		case <-idle.C:
			w.idle.Add(-1)
			return
		case <-w.quit:
			w.idle.Add(-1)
			return
		}
	}
}

// stop ends the idle workers, and returns once every worker has ended.
// Work given to run must be done by then, or ends on its own goroutine.
func (w *workers) stop() {
	w.stopOnce.Do(func() { close(w.quit) })
	w.wg.Wait()
}
