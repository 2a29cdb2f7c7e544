package reservation

import (
	"context"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/internal/nodeinterop"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// These tests run the real npm package redis-reservation@0.4.0 (see
// interop/node) against the same server as the Go library.

// TestNodeReleaseWakesGoWaiter: a Node worker holds; a Go waiter is woken by
// its release (a plain DEL, no notice published) through client tracking,
// and never holds before the Node worker let go.
func TestNodeReleaseWakesGoWaiter(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{By: "go-worker", TTL: 5 * time.Second})

	node := nodeinterop.Worker(t, srv, "lock", "shared-job", "-1", "--by=node-worker")
	node.Expect(t, "acquired", 10*time.Second)

	// The Node worker holds: Go is refused.
	if _, ok, err := tryLock(ctx, c, "shared-job"); ok || err != nil {
		t.Fatalf("Go Lock while Node holds = %v, %v; want false, nil", ok, err)
	}

	got := make(chan *Reservation, 1)
	go func() {
		r, err := c.Lock(ctx, "shared-job")
		if err != nil {
			t.Errorf("WaitUntilLock: %v", err)
		}
		got <- r
	}()
	time.Sleep(300 * time.Millisecond)
	node.Release()
	releasing := node.Expect(t, "releasing", 5*time.Second)
	released := node.Expect(t, "released", 5*time.Second)
	r := <-got
	if r == nil {
		t.FailNow()
	}
	acquired := time.Now()
	defer r.Release(ctx)
	if acquired.Before(releasing.Time()) {
		t.Errorf("Go acquired at %v, before the Node worker released at %v", acquired, releasing.Time())
	}
	// Millisecond timestamps from another process: allow a few ms.
	if d := acquired.Sub(released.Time()); d > 150*time.Millisecond {
		t.Errorf("Go waiter had it %v after the Node release, want well under the 1s fallback", d)
	} else {
		t.Logf("Go waiter had it %v after the Node release", d)
	}
	if err := node.Wait(); err != nil {
		t.Errorf("node worker: %v", err)
	}
}

// TestGoReleaseLetsNodeIn: Go holds; a Node worker polling with
// wait_until_lock is refused until the Go release, then gets the key.
func TestGoReleaseLetsNodeIn(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{By: "go-worker", TTL: 5 * time.Second})
	r := mustLock(t, c, "handover")

	// A Node worker trying once is refused.
	once := nodeinterop.Worker(t, srv, "lock", "handover", "0", "--by=node-once")
	once.Expect(t, "not_acquired", 10*time.Second)
	once.Wait()

	node := nodeinterop.Worker(t, srv, "wait", "handover", "100", "--by=node-worker")
	node.Expect(t, "start", 10*time.Second)
	// Let it poll (every second) while Go holds, renewing.
	time.Sleep(1500 * time.Millisecond)
	if err := r.Err(); err != nil {
		t.Fatalf("Go reservation ended while the Node worker polled: %v", err)
	}
	releasedAt := time.Now()
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	acq := node.Expect(t, "acquired", 5*time.Second)
	if acq.Time().Before(releasedAt.Truncate(time.Millisecond)) {
		t.Errorf("Node acquired at %v, before the Go release at %v", acq.Time(), releasedAt)
	}
	for _, e := range node.Events() {
		if e.Event == "lock" && e.Status && e.Time().Before(releasedAt.Truncate(time.Millisecond)) {
			t.Errorf("a Node lock() succeeded at %v, while Go held it", e.Time())
		}
	}
	// While the Node worker holds it, Go is refused, then gets it after.
	if _, ok, err := tryLock(ctx, c, "handover"); ok || err != nil {
		t.Errorf("Go Lock while Node holds = %v, %v; want false, nil", ok, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r2, err := c.Lock(wctx, "handover")
	acquiredAt := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Release(ctx)
	// The Node worker logs "releasing" (in whole milliseconds) before its
	// DEL: Go's acquisition must come after it.
	if rel := node.Expect(t, "releasing", 5*time.Second); acquiredAt.Truncate(time.Millisecond).Before(rel.Time()) {
		t.Errorf("Go acquired at %v, before the Node worker released at %v", acquiredAt, rel.Time())
	}
	if r2.Token() <= r.Token() {
		t.Errorf("token %d after %d, want it greater", r2.Token(), r.Token())
	}
}

// TestNodeWorkerAndTheQueue: Node workers do not queue. A Node worker
// polling with wait_until_lock may take the resource ahead of Go waiters
// that queue, whenever it finds it free; the Go waiters are still served
// in their order of arrival, and nobody holds it beside anyone else.
func TestNodeWorkerAndTheQueue(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	holder := newTestClient(t, srv, Options{By: "go-holder", TTL: 5 * time.Second})
	r := mustLock(t, holder, "mixed")

	node := nodeinterop.Worker(t, srv, "wait", "mixed", "300", "--by=node-worker")
	node.Expect(t, "start", 10*time.Second)

	type holding struct {
		by       string
		from, to time.Time
	}
	held := make(chan holding, 2)
	for i, by := range []string{"go-first", "go-second"} {
		c := newTestClient(t, srv, Options{By: by, TTL: 5 * time.Second})
		go func() {
			got, err := c.Lock(ctx, "mixed")
			if err != nil {
				t.Errorf("%s: %v", by, err)
				held <- holding{by: by}
				return
			}
			h := holding{by: by, from: time.Now()}
			time.Sleep(300 * time.Millisecond)
			h.to = time.Now()
			got.Release(ctx)
			held <- h
		}()
		untilQueued(t, rdb, r.Key(), i+1)
	}
	time.Sleep(1200 * time.Millisecond) // the Node worker polls once a second, refused meanwhile
	r.Release(ctx)
	first, second := <-held, <-held
	if first.by != "go-first" || second.by != "go-second" {
		t.Errorf("Go waiters served %s then %s; want go-first then go-second, their order of arrival", first.by, second.by)
	}
	acq := node.Expect(t, "acquired", 10*time.Second)
	rel := node.Expect(t, "releasing", 10*time.Second)
	for _, h := range []holding{first, second} {
		// Node's times are whole milliseconds, from another process.
		if h.from.Before(rel.Time()) && acq.Time().Add(-time.Millisecond).Before(h.to) && !h.from.IsZero() {
			t.Errorf("%s held %v-%v beside the Node worker (%v-%v)", h.by, h.from, h.to, acq.Time(), rel.Time())
		}
	}
	t.Logf("Node worker held %v-%v; go-first %v-%v; go-second %v-%v", acq.Time().Format("05.000"), rel.Time().Format("05.000"),
		first.from.Format("05.000"), first.to.Format("05.000"), second.from.Format("05.000"), second.to.Format("05.000"))
	if err := node.Wait(); err != nil {
		t.Errorf("node worker: %v", err)
	}
}

// TestNodeWorkerAndASemaphore: a name used as a semaphore is held for a
// Node worker while any permit may be held (the marker is in its key):
// its lock() is refused, and its wait_until_lock gets the name only once
// the last permit is released and the marker has run out. Go permits are
// refused while the Node worker holds the name.
func TestNodeWorkerAndASemaphore(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{By: "go-worker", TTL: 500 * time.Millisecond})
	p, err := c.TryLock(ctx, "pool", Limit(3))
	if err != nil {
		t.Fatal(err)
	}
	once := nodeinterop.Worker(t, srv, "lock", "pool", "0", "--by=node-once")
	once.Expect(t, "not_acquired", 10*time.Second)
	once.Wait()

	node := nodeinterop.Worker(t, srv, "wait", "pool", "1500", "--by=node-worker")
	node.Expect(t, "start", 10*time.Second)
	time.Sleep(1200 * time.Millisecond) // it polls once a second: refused
	releasedAt := time.Now()
	if err := p.Release(ctx); err != nil {
		t.Fatal(err)
	}
	acq := node.Expect(t, "acquired", 5*time.Second)
	if acq.Time().Before(releasedAt.Truncate(time.Millisecond)) {
		t.Errorf("Node acquired at %v, before the last permit's release at %v", acq.Time(), releasedAt)
	}
	// The Node worker holds the name: no permit.
	if _, err := c.TryLock(ctx, "pool", Limit(3)); err == nil {
		t.Errorf("a permit was granted while the Node worker holds the name")
	}
	if err := node.Wait(); err != nil {
		t.Errorf("node worker: %v", err)
	}
}
