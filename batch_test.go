package reservation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// pipelineSizes is a go-redis hook that records how many scripts each
// pipeline carried.
type pipelineSizes struct {
	mu    sync.Mutex
	sizes []int
}

func (h *pipelineSizes) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipelineSizes) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineSizes) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := 0
		for _, cmd := range cmds {
			if cmd.Name() == "evalsha" {
				n++
			}
		}
		h.mu.Lock()
		h.sizes = append(h.sizes, n)
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (h *pipelineSizes) largest() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := 0
	for _, n := range h.sizes {
		m = max(m, n)
	}
	return m
}

// batcherState reports how many round trips b has under way and how many
// calls wait for the next.
func batcherState(b *batcher) (inflight, queued int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inflight, len(b.queue)
}

// untilBatcher waits until b has inflight round trips under way and queued
// calls waiting.
func untilBatcher(t *testing.T, b *batcher, inflight, queued int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		i, q := batcherState(b)
		if i == inflight && q == queued {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("batcher: %d round trips under way and %d calls queued, want %d and %d", i, q, inflight, queued)
		}
	}
}

// TestBatcherQueuesBeyondMaxBatches: while maxBatches round trips are under
// way (their scripts held up by CLIENT PAUSE WRITE), further calls queue and
// then go together in one pipeline; a queued call whose context ends is
// never sent, and its resource is left free.
func TestBatcherQueuesBeyondMaxBatches(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	hook := &pipelineSizes{}
	// Timeouts well past the pause below, which a loaded machine may need
	// seconds to set up under.
	rdb := redis.NewClient(&redis.Options{Addr: admin.Options().Addr, ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	rdb.AddHook(hook)
	c, err := NewWithClient(rdb, &Options{By: "batch", TTL: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	defer c.Close()
	if _, err := c.PrimeRestartGuard(ctx); err != nil {
		t.Fatal(err)
	}
	// Start the notifier, then keep every round trip off its tracking
	// connection, whose pipelines the hook does not see.
	r, err := c.TryLock(ctx, "warm")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	c.batch.useTracking(nil)

	// Long enough for the set-up below on a loaded machine; unpaused as
	// soon as it is done.
	if err := admin.Do(ctx, "CLIENT", "PAUSE", 30_000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	unpaused := false
	unpause := func() {
		if !unpaused {
			unpaused = true
			if err := admin.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
				t.Error(err)
			}
		}
	}
	defer unpause()

	const queuedCalls = 3
	type result struct {
		r   *Reservation
		err error
	}
	results := make(chan result, maxBatches+queuedCalls)
	// A context that can end, as most callers': the calls under way run
	// detached from it, on the batcher's workers.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lock := func(resource string) {
		r, err := c.TryLock(lctx, resource)
		results <- result{r, err}
	}
	for i := range maxBatches {
		go lock(fmt.Sprintf("under-way-%d", i))
	}
	untilBatcher(t, c.batch, maxBatches, 0)
	for i := range queuedCalls {
		go lock(fmt.Sprintf("queued-%d", i))
	}
	untilBatcher(t, c.batch, maxBatches, queuedCalls)

	// One more, whose context ends while it queues.
	gctx, giveUp := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() {
		_, err := c.TryLock(gctx, "given-up")
		gaveUp <- err
	}()
	untilBatcher(t, c.batch, maxBatches, queuedCalls+1)
	giveUp()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("TryLock whose context ended while queued: %v, want context.Canceled", err)
	}
	untilBatcher(t, c.batch, maxBatches, queuedCalls)

	unpause()
	var held []*Reservation
	for range maxBatches + queuedCalls {
		res := <-results
		if res.err != nil {
			t.Fatalf("a call under way or queued: %v", res.err)
		}
		held = append(held, res.r)
	}
	if got := hook.largest(); got != queuedCalls {
		t.Errorf("the largest pipeline carried %d scripts, want the %d queued calls together", got, queuedCalls)
	}
	for _, r := range held {
		if err := r.Release(ctx); err != nil {
			t.Error(err)
		}
	}
	if n, err := admin.Exists(ctx, c.Key("given-up")).Result(); err != nil || n != 0 {
		t.Errorf("the call that gave up while queued: its key exists (%d, %v); it must never have been sent", n, err)
	}
}
