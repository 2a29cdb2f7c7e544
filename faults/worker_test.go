package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/faults/history"
)

// workerEnv, when set, makes the test binary a worker process: the variable
// holds the workerSpec as JSON. The parent re-executes its own test binary,
// so no separate worker binary is built.
const workerEnv = "FAULTS_WORKER"

// workerSpec describes a worker: one reservation.Client and Lanes
// goroutines that contend for Resources through it.
type workerSpec struct {
	Name      string        `json:"name"`
	URL       string        `json:"url"`
	Resources []string      `json:"resources"`
	Lanes     int           `json:"lanes"`
	TTL       time.Duration `json:"ttl"`
	Heartbeat time.Duration `json:"heartbeat"`
	Retry     time.Duration `json:"retry"`
	HoldMin   time.Duration `json:"hold_min"`
	HoldMax   time.Duration `json:"hold_max"`
	// LockRatio is the share of attempts made with Lock (then a short
	// pause when refused) rather than WaitUntilLock.
	LockRatio float64 `json:"lock_ratio"`
	Seed      uint64  `json:"seed"`
	// External makes the Client with NewWithClient over a go-redis client
	// of default options, as a user with Sentinel or Cluster would, rather
	// than with New. go-redis then bounds calls by its ReadTimeout (5 s),
	// not by contexts.
	External bool `json:"external"`
	// Life bounds a worker process's life, whatever its parent does.
	Life time.Duration `json:"life"`
}

// runWorker runs w until ctx ends, then releases what it holds and closes
// its Client. It reports every holding to emit.
func runWorker(ctx context.Context, w workerSpec, log *slog.Logger, emit func(history.Event)) error {
	opt := &reservation.Options{
		By:                w.Name,
		TTL:               w.TTL,
		HeartbeatInterval: w.Heartbeat,
		RetryInterval:     w.Retry,
		Logger:            log,
	}
	var c *reservation.Client
	if w.External {
		ropt, err := redis.ParseURL(w.URL)
		if err != nil {
			return err
		}
		rdb := redis.NewClient(ropt)
		defer rdb.Close()
		c, err = reservation.NewWithClient(rdb, opt)
		if err != nil {
			return err
		}
	} else {
		var err error
		if c, err = reservation.New(w.URL, opt); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	for lane := range max(w.Lanes, 1) {
		rng := rand.New(rand.NewPCG(w.Seed, uint64(lane)))
		wg.Go(func() { runLane(ctx, c, w, rng, emit) })
	}
	wg.Wait()
	// Everything was released by the lanes; Close only stops goroutines.
	if err := c.Close(); err != nil && !errors.Is(err, reservation.ErrClosed) {
		log.Warn("close", "err", err)
	}
	return nil
}

// runLane takes a resource, holds it for a while, gives it up, and again,
// until ctx ends.
func runLane(ctx context.Context, c *reservation.Client, w workerSpec, rng *rand.Rand, emit func(history.Event)) {
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	for ctx.Err() == nil {
		resource := w.Resources[rng.IntN(len(w.Resources))]
		call := history.Now()
		var r *reservation.Reservation
		if rng.Float64() < w.LockRatio {
			got, ok, err := c.Lock(ctx, resource)
			if err != nil || !ok {
				sleepCtx(ctx, between(5*time.Millisecond, 30*time.Millisecond))
				continue
			}
			r = got
		} else {
			wctx, cancel := context.WithTimeout(ctx, between(w.TTL, 4*w.TTL))
			got, err := c.WaitUntilLock(wctx, resource)
			cancel()
			if err != nil {
				if !errors.Is(err, reservation.ErrNotAcquired) {
					sleepCtx(ctx, 10*time.Millisecond)
				}
				continue
			}
			r = got
		}
		emit(history.Event{Kind: history.Acquired, Worker: w.Name, Resource: resource,
			Holder: r.Holder(), Token: r.Token(), Call: call, At: history.Now()})
		hold(ctx, r, w, between(w.HoldMin, w.HoldMax), emit)
	}
}

// hold keeps r for d, or until it is lost or ctx ends, and gives it up.
func hold(ctx context.Context, r *reservation.Reservation, w workerSpec, d time.Duration, emit func(history.Event)) {
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
		}
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := r.Release(rctx)
		cancel()
		ev := history.Event{Kind: history.Released, Worker: w.Name, Resource: r.Resource(), Holder: r.Holder(),
			At: first, Sent: sent, Reply: history.Now(), Validity: int64(validity), Outcome: history.OutcomeOK}
		switch {
		case err == nil:
			emit(ev)
			return
		case errors.Is(err, reservation.ErrNotHeld):
			ev.Outcome = history.OutcomeNotHeld
			emit(ev)
			return
		}
		// Redis did not answer: the reservation is still held and renewed
		// (or lost soon). The holder stopped using it at first.
		select {
		case <-r.Done():
			ev.Outcome = history.OutcomeError
			emit(ev)
			lost(r, w, history.Now(), emit)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lost reports the loss of r, seen at at, and releases it as a holder
// should, which frees a key still ours on the server.
func lost(r *reservation.Reservation, w workerSpec, at int64, emit func(history.Event)) {
	cause := "<nil>"
	if err := r.Err(); err != nil {
		cause = err.Error()
	}
	emit(history.Event{Kind: history.Lost, Worker: w.Name, Resource: r.Resource(), Holder: r.Holder(), At: at, Outcome: cause})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.Release(ctx)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// workerMain is the life of a worker process: run the spec in $FAULTS_WORKER,
// print each event as a JSON line on standard output, stop when standard
// input closes (the parent is done), on SIGTERM, or at the end of its Life.
func workerMain(specJSON string) int {
	var w workerSpec
	if err := json.Unmarshal([]byte(specJSON), &w); err != nil {
		fmt.Fprintln(os.Stderr, "worker: bad spec:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, w.Life)
	defer cancel()
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString(0) // EOF: the parent is done
		cancel()
	}()
	var mu sync.Mutex
	emit := func(e history.Event) {
		b, _ := json.Marshal(e)
		mu.Lock()
		defer mu.Unlock()
		_, _ = os.Stdout.Write(append(b, '\n'))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := runWorker(ctx, w, log, emit); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}
