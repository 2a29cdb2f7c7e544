package reservation

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// serverQueue returns the holder values in the server's queue of key, in
// order.
func serverQueue(t *testing.T, rdb *redis.Client, key string) []string {
	t.Helper()
	q, err := rdb.ZRange(t.Context(), companion(key, queueSuffix), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// untilQueued waits until the server's queue of key has n waiters.
func untilQueued(t *testing.T, rdb *redis.Client, key string, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		q := serverQueue(t, rdb, key)
		if len(q) == n {
			return q
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue of %s is %v; want %d waiters", key, q, n)
		}
	}
}

// Waiters of different Clients (as in different processes) acquire in the
// order they arrived, whatever order they wake in.
func TestQueueServesInArrivalOrder(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	holder := newTestClient(t, srv, Options{By: "holder", TTL: 10 * time.Second})
	r := mustLock(t, holder, "fifo")
	// Each waiter is told its turn: none waits for its lease's renewal
	// (every 3.3 s) to find it out.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	const n = 6
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range n {
		c := newTestClient(t, srv, Options{By: "w" + strconv.Itoa(i), TTL: 10 * time.Second})
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := c.Lock(ctx, "fifo")
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			if err := got.Release(ctx); err != nil {
				t.Errorf("waiter %d: release: %v", i, err)
			}
		}()
		untilQueued(t, rdb, r.Key(), i+1) // arrived
	}
	info, err := holder.Status(ctx, "fifo")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Waiters) != n {
		t.Fatalf("Status waiters %v; want %d", info.Waiters, n)
	}
	for i, w := range info.Waiters {
		if !strings.HasPrefix(w, "w"+strconv.Itoa(i)+"-") {
			t.Fatalf("Status waiters %v; want w0-... to w5-... in order", info.Waiters)
		}
	}
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if want := []int{0, 1, 2, 3, 4, 5}; !slices.Equal(order, want) {
		t.Errorf("acquired in order %v; want the order of arrival %v", order, want)
	}
	if q := serverQueue(t, rdb, r.Key()); len(q) != 0 {
		t.Errorf("queue left behind: %v", q)
	}
}

// TryLock is refused while anyone queues, even with the key free; a
// waiter whose lease ran out (its process died) leaves the queue, and the
// next waiter then acquires.
func TestQueueTryLockAndDeadWaiter(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{TTL: 10 * time.Second})
	key := c.Key("dead")
	// A waiter of another process, which died 300 ms from now.
	rdb.ZAdd(ctx, companion(key, queueSuffix), redis.Z{Score: 1, Member: "dead-1"})
	lease := time.Now().Add(300*time.Millisecond).UnixMilli() - serverClockSkew(t, rdb)
	rdb.ZAdd(ctx, companion(key, leaseSuffix), redis.Z{Score: float64(lease), Member: "dead-1"})
	_, err := c.TryLock(ctx, "dead")
	var nerr *NotAcquiredError
	if !errors.As(err, &nerr) || nerr.Queued != 1 || nerr.Holder != "" {
		t.Fatalf("TryLock with a waiter queued = %v; want NotAcquiredError with Queued 1 and no holder", err)
	}
	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := c.Lock(lctx, "dead")
	if err != nil {
		t.Fatalf("Lock behind a waiter whose lease ran out: %v", err)
	}
	defer r.Release(ctx)
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("Lock went ahead of a waiter with a live lease (took %v)", took)
	}
	if q := serverQueue(t, rdb, key); len(q) != 0 {
		t.Errorf("queue after the dead waiter's lease: %v; want empty", q)
	}
}

// serverClockSkew returns the server's clock minus ours, in milliseconds.
func serverClockSkew(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	now, err := rdb.Time(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now.UnixMilli() - time.Now().UnixMilli()
}

// A release wakes the head of the queue only: the other waiters, in other
// Clients, run no script for it, however many they are.
func TestQueueReleaseWakesTheHeadOnly(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	var clients []*Client
	for i := range 7 {
		clients = append(clients, newTestClient(t, srv, Options{By: "c" + strconv.Itoa(i), TTL: 30 * time.Second}))
	}
	r := mustLock(t, clients[0], "herd")
	got := make(chan *Reservation, 6)
	for i, c := range clients[1:] {
		go func() {
			r, err := c.Lock(ctx, "herd")
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			got <- r
		}()
		untilQueued(t, rdb, r.Key(), i+1)
	}
	time.Sleep(50 * time.Millisecond) // the head's watch set, the turn channels subscribed
	for handoff := range 3 {
		before := commandCalls(rdb.Info(ctx, "commandstats").Val(), "evalsha")
		if err := r.Release(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case r = <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("nobody acquired after the release")
		}
		time.Sleep(50 * time.Millisecond) // let any herd show
		scripts := commandCalls(rdb.Info(ctx, "commandstats").Val(), "evalsha") - before
		// The release, the head's acquisition.
		if scripts > 2 {
			t.Errorf("handoff %d with %d waiters: %d scripts ran; want 2 (the release, the head's acquisition)", handoff, 6-handoff, scripts)
		}
	}
	r.Release(ctx)
	for range 3 {
		(<-got).Release(ctx)
	}
}

// A waiter that gives up leaves the queue at once, and when it was the
// head, the next waiter takes its turn.
func TestQueueWaiterLeaves(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	a := newTestClient(t, srv, Options{By: "a", TTL: 30 * time.Second})
	b := newTestClient(t, srv, Options{By: "b", TTL: 30 * time.Second})
	c := newTestClient(t, srv, Options{By: "c", TTL: 30 * time.Second})
	r := mustLock(t, a, "leave")
	bctx, cancel := context.WithCancel(ctx)
	berr := make(chan error, 1)
	go func() {
		_, err := b.Lock(bctx, "leave")
		berr <- err
	}()
	untilQueued(t, rdb, r.Key(), 1)
	cgot := make(chan *Reservation, 1)
	go func() {
		r, err := c.Lock(ctx, "leave")
		if err != nil {
			t.Error(err)
		}
		cgot <- r
	}()
	untilQueued(t, rdb, r.Key(), 2)
	// c's look when its turn channel's subscription is confirmed comes
	// while b is ahead of it: once b leaves, only the turn notice can tell
	// c it heads the queue.
	time.Sleep(200 * time.Millisecond)
	cancel()
	if err := <-berr; !errors.Is(err, context.Canceled) {
		t.Fatalf("b's Lock = %v; want its context's end", err)
	}
	if q := untilQueued(t, rdb, r.Key(), 1); q[0][:2] != "c-" {
		t.Fatalf("queue after b left: %v; want c alone", q)
	}
	start := time.Now()
	releaseAsBefore(t, a, rdb, r) // the head is told its turn, not handed the key
	select {
	case got := <-cgot:
		if took := time.Since(start); took > time.Second {
			t.Errorf("c acquired %v after the release", took)
		}
		got.Release(ctx)
	case <-time.After(5 * time.Second):
		t.Fatal("c never acquired")
	}
}

// Node workers (SET NX, no queue), like Clients with NoQueue, take a free
// key ahead of the queue; the queue's order among the others is kept, and
// its head acquires once they release.
func TestQueueNodeWorkerGoesAhead(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	a := newTestClient(t, srv, Options{By: "a", TTL: 30 * time.Second})
	r := mustLock(t, a, "node")
	order := make(chan string, 2)
	for i, by := range []string{"b", "c"} {
		c := newTestClient(t, srv, Options{By: by, TTL: 30 * time.Second})
		go func() {
			got, err := c.Lock(ctx, "node")
			if err != nil {
				t.Error(err)
				order <- ""
				return
			}
			order <- by
			got.Release(ctx)
		}()
		untilQueued(t, rdb, r.Key(), i+1)
	}
	// The Node library's acquisition, right after a release.
	r.Release(ctx)
	ok, err := rdb.SetNX(ctx, r.Key(), "node-worker", 30*time.Second).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		// The Node worker went ahead of the queue: b and c wait on.
		time.Sleep(100 * time.Millisecond)
		if v := rdb.Get(ctx, r.Key()).Val(); v != "node-worker" {
			t.Fatalf("key %q; want the Node worker's", v)
		}
		rdb.Del(ctx, r.Key()) // the Node library's release
	}
	var got []string
	for range 2 {
		select {
		case by := <-order:
			got = append(got, by)
		case <-time.After(5 * time.Second):
			t.Fatalf("waiters never acquired (got %v)", got)
		}
	}
	if !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("acquired in order %v; want b, c", got)
	}

	// A NoQueue Client goes ahead too, as Node does: here of a waiter of
	// another process whose lease has a minute to run.
	key := r.Key()
	rdb.ZAdd(ctx, companion(key, queueSuffix), redis.Z{Score: 1, Member: "other-1"})
	rdb.ZAdd(ctx, companion(key, leaseSuffix), redis.Z{Score: float64(time.Now().Add(time.Minute).UnixMilli() + serverClockSkew(t, rdb)), Member: "other-1"})
	if _, err := a.TryLock(ctx, "node"); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("TryLock with a waiter queued = %v; want ErrNotAcquired", err)
	}
	unfair := newTestClient(t, srv, Options{By: "unfair", NoQueue: true, TTL: 30 * time.Second})
	u, err := unfair.TryLock(ctx, "node")
	if err != nil {
		t.Fatalf("NoQueue TryLock with a waiter queued = %v; want acquired", err)
	}
	u.Release(ctx)
}

// releaseAsBefore releases r with the release script as a version before
// handovers sends it (none of the handover's arguments): the key is deleted,
// and the queue's head is told its turn, which it takes by an attempt of
// its own.
func releaseAsBefore(t *testing.T, c *Client, rdb *redis.Client, r *Reservation) {
	t.Helper()
	call := c.releaseCall(r.Key(), r.Holder(), 0)
	if n, err := call.script.Run(t.Context(), rdb, call.keys, call.args...).Int(); err != nil || n != 1 {
		t.Fatalf("release as before handovers = %d, %v; want 1", n, err)
	}
}

// When the head of the queue acquires, the next waiter is told its turn at
// once and watches the key: if the new holder then dies (here: its key
// expires long before its next renewal), the next waiter acquires at the
// expiry, not at its place's next renewal.
func TestQueueNextWaiterWatchesTheKey(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	// Renewals and retries every 10 s: c learns of its turn from the turn
	// notice alone, not from a retry that happens to come in time.
	opt := func(by string) Options {
		return Options{By: by, TTL: 30 * time.Second, RetryInterval: 10 * time.Second}
	}
	a, b, c := newTestClient(t, srv, opt("a")), newTestClient(t, srv, opt("b")), newTestClient(t, srv, opt("c"))
	r := mustLock(t, a, "next")
	got := make(chan *Reservation, 2)
	for i, w := range []*Client{b, c} {
		go func() {
			r, err := w.Lock(ctx, "next")
			if err != nil {
				t.Error(err)
			}
			got <- r
		}()
		untilQueued(t, rdb, r.Key(), i+1)
	}
	// c's look when its turn channel's subscription is confirmed comes
	// while a holds, behind b: once b acquires, only the turn notice can
	// tell c it heads the queue (a look after b acquired would find it out
	// by itself, and hide a turn never told).
	time.Sleep(200 * time.Millisecond)
	releaseAsBefore(t, a, rdb, r) // b acquires by its own attempt, which tells c
	rb := <-got
	if !strings.HasPrefix(rb.Holder(), "b-") {
		t.Fatalf("%s acquired first; want b", rb.Holder())
	}
	time.Sleep(50 * time.Millisecond) // c told, its watch set
	if err := rdb.PExpire(ctx, rb.Key(), 100*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	expiry := time.Now().Add(100 * time.Millisecond)
	select {
	case rc := <-got:
		if late := time.Since(expiry); late > time.Second {
			t.Errorf("c acquired %v after b's key expired; want at once", late)
		}
		rc.Release(ctx)
	case <-time.After(5 * time.Second):
		t.Fatal("c did not acquire within 5 s of b's key expiring")
	}
}

// The worker's ACL rule (ACLRules, as docs/DESIGN.md "ACL" shows it) is
// enough for everything a worker does, the queue included: no permission
// is refused, and a release hands the resource to a waiter of another
// Client at once. TestWorkerACLRuleMinimal checks that each of its words
// is needed.
func TestWorkerACLRule(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rule := append([]string{"worker", "on", ">secret"}, ACLRules("", OneServer).Worker...)
	if err := srv.Client(t).Do(ctx, append([]any{"ACL", "SETUSER"}, toAny(rule)...)...).Err(); err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		refused []error
	)
	client := func(by string) *Client {
		return aclClient(t, srv, "worker:secret", by, func(e Event) {
			if e.Kind == EventNoPermission || e.Kind == EventRedisError || e.Kind == EventTrackingUnavailable {
				mu.Lock()
				refused = append(refused, e.Err)
				mu.Unlock()
			}
		})
	}
	a, b := client("a"), client("b")
	if _, err := a.PrimeRestartGuard(ctx); err != nil {
		t.Fatal(err)
	}
	r := mustLock(t, a, "acl")
	got := make(chan *Reservation, 1)
	go func() {
		r, err := b.Lock(ctx, "acl")
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	untilQueued(t, srv.Client(t), r.Key(), 1)
	if info, err := a.Status(ctx, "acl"); err != nil || len(info.Waiters) != 1 {
		t.Errorf("Status = %+v, %v; want one waiter", info, err)
	}
	if _, err := a.List(ctx, ""); err != nil {
		t.Error(err)
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if rb := <-got; rb != nil {
		if d := time.Since(start); d > time.Second {
			t.Errorf("the waiter had it %v after the release; want at once (pushes allowed)", d)
		}
		rb.Release(ctx)
	}
	// A semaphore's permit, its waiter woken by a release notice, and a set.
	p, err := a.TryLock(ctx, "acl-pool", Limit(1))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		r, err := b.Lock(ctx, "acl-pool", Limit(1))
		if err != nil {
			t.Errorf("Lock of a permit: %v", err)
		}
		got <- r
	}()
	untilQueued(t, srv.Client(t), "reservation-acl-pool", 1)
	if err := p.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if rb := <-got; rb != nil {
		rb.Release(ctx)
	}
	set, err := a.TryLock(ctx, "acl-x", With("acl-y"))
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// The holder watch: a foreign delete is heard at once, not at the
	// next renewal (the watch's reads are allowed).
	watched := mustLock(t, a, "acl-watched")
	time.Sleep(50 * time.Millisecond)
	if err := srv.Client(t).Del(ctx, watched.Key()).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-watched.Done():
	case <-time.After(time.Second):
		t.Error("a foreign delete was not heard within 1 s under the generated rule")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, err := range refused {
		t.Errorf("refused or failed under the generated rule: %v", err)
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// A user whose ACL was written before the queue (no sorted-set commands,
// no turn channel) still waits and acquires: the Client goes on without
// the queue and says so once per Client. (The rule is that of the docs before the
// queue, with +info, whose refusal is reported on its own.)
func TestQueueRefusedByACL(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rule := strings.Fields(`old on >secret resetkeys ~reservation-* ~{reservation-*}:* ~{reservation}:restart-guard
		resetchannels &__redis__:invalidate &{reservation-*}:released
		-@all +hello +ping +evalsha +eval +script|load +get +set +pexpire +del +exists +pttl +time
		+publish +setnx +scan +client|id +client|setname +client|tracking +client|caching +subscribe +unsubscribe +info`)
	if err := srv.Client(t).Do(ctx, append([]any{"ACL", "SETUSER"}, toAny(rule)...)...).Err(); err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		refused []string
	)
	client := func(by string) *Client {
		return aclClient(t, srv, "old:secret", by, func(e Event) {
			if e.Kind == EventNoPermission {
				mu.Lock()
				refused = append(refused, e.Err.Error())
				mu.Unlock()
			}
		})
	}
	a, b := client("a"), client("b")
	if _, err := a.PrimeRestartGuard(ctx); err != nil {
		t.Fatal(err)
	}
	r := mustLock(t, a, "old-acl")
	got := make(chan *Reservation, 1)
	go func() {
		r, err := b.Lock(ctx, "old-acl")
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case rb := <-got:
		if d := time.Since(start); d > time.Second {
			t.Errorf("the waiter had it %v after the release; want at once", d)
		}
		if rb != nil {
			rb.Release(ctx)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter never acquired")
	}
	// Status and List read what the user may read.
	if _, err := a.Status(ctx, "old-acl"); err != nil {
		t.Errorf("Status by a user without the queue's commands: %v", err)
	}
	if _, err := a.List(ctx, ""); err != nil {
		t.Errorf("List by a user without the queue's commands: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Each Client's first acquisition meets the queue (the script reads
	// its head): one event each.
	if len(refused) != 2 || !strings.Contains(refused[0], "queue of waiters is refused") || !strings.Contains(refused[1], "queue of waiters is refused") {
		t.Errorf("permission events %q; want one about the queue from each of the 2 Clients", refused)
	}
}

// aclClient returns a Client of srv for the user "name:password", with
// onEvent, closed at the end of the test.
func aclClient(t *testing.T, srv *redistest.Server, user, by string, onEvent func(Event)) *Client {
	t.Helper()
	opt := Options{By: by, TTL: 30 * time.Second, RetryInterval: 10 * time.Second, Logger: quiet, OnEvent: onEvent}
	c, err := New(strings.Replace(srv.URL(), "redis://", "redis://"+user+"@", 1), &opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A turn told while the waiter is busy is not lost: told before the waiter
// joined its notifier (between its first attempt's reply and the join), or
// while it runs an attempt, the waiter finds it when it next waits.
func TestQueueTurnToldWhileBusy(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, Options{By: "busy"})
	key := c.Key("busy")
	n, err := c.notifierFor(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	signalled := func(w *waiter) bool {
		select {
		case <-w.turn:
			return n.toldTurn(w)
		default:
			return false
		}
	}
	// Before the join. A value of this Client's (its prefix).
	early := c.newValue()
	n.turnTold(key, early)
	w := n.joinServerQueue(key, early, false)
	defer n.leave(key, w, false)
	if !signalled(w) {
		t.Error("a turn told before the waiter joined was lost")
	}
	// While it runs an attempt (nobody receives on its channel).
	n.turnTold(key, early)
	if !signalled(w) {
		t.Error("a turn told while the waiter was busy was lost")
	}
	// Another Client's value is not kept, whatever its By.
	n.turnTold(key, "other-1")
	n.turnTold(key, newTestClient(t, srv, Options{By: "busy"}).newValue())
	if len(n.early) != 0 {
		t.Errorf("turns kept for values of other Clients: %v", n.early)
	}
}

// runAcquire runs the acquire script on key as value in mode, with a TTL
// of 5 s and no restart guard.
func runAcquire(t *testing.T, rdb *redis.Client, key, value string, mode queueMode) acquireResult {
	t.Helper()
	return runAcquireTTL(t, rdb, key, value, mode, 5000)
}

// runAcquireTTL is runAcquire with a TTL of ttl ms.
func runAcquireTTL(t *testing.T, rdb *redis.Client, key, value string, mode queueMode, ttl int) acquireResult {
	t.Helper()
	keys := []string{key, companion(key, fenceSuffix), guardKey, companion(key, queueSuffix), companion(key, leaseSuffix)}
	reply, err := acquireScript.Run(t.Context(), rdb, keys, value, ttl, 0, 60000, string(mode), companion(key, turnSuffix), "PUBLISH").Slice()
	if err != nil {
		t.Fatal(err)
	}
	res, err := parseAcquire(reply)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A waiter's attempt whose reply was lost left the key in its value; its
// next attempt, with the same value, finds it its own even with others
// queued (not behind them, for a key that nobody else can take), and the
// key lives a whole TTL from then, so that the deadline counted from this
// attempt comes first.
func TestAcquireScriptRetryOfAWaiter(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	key := "reservation-retried"
	if res := runAcquire(t, rdb, key, "w-1", waitQueue); !res.acquired {
		t.Fatalf("first attempt %+v; want acquired", res)
	}
	if res := runAcquire(t, rdb, key, "x-1", waitQueue); res.acquired || res.place != 0 {
		t.Fatalf("second waiter %+v; want queued at the head", res)
	}
	rdb.PExpire(ctx, key, time.Second) // time passed since the lost reply
	res := runAcquire(t, rdb, key, "w-1", waitQueue)
	if !res.acquired {
		t.Fatalf("retry with the holder's value %+v; want acquired", res)
	}
	if pttl := rdb.PTTL(ctx, key).Val(); pttl < 4*time.Second {
		t.Errorf("key's PTTL %v after the retry; want the whole TTL again", pttl)
	}
	if q := serverQueue(t, rdb, key); !slices.Equal(q, []string{"x-1"}) {
		t.Errorf("queue %v; want x-1 alone", q)
	}
}

// A waiter arriving when the queue holds only waiters whose lease ran out
// takes a place (the head's), rather than believe it is the head without
// one.
func TestAcquireScriptNewcomerAfterDeadWaiters(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	key := "reservation-newcomer"
	runAcquire(t, rdb, key, "holder-1", waitQueue)
	runAcquire(t, rdb, key, "dead-1", waitQueue)
	rdb.ZAdd(ctx, companion(key, leaseSuffix), redis.Z{Score: 1, Member: "dead-1"}) // its lease ran out
	if res := runAcquire(t, rdb, key, "new-1", waitQueue); res.acquired || res.place != 0 {
		t.Fatalf("newcomer %+v; want refused, at the head", res)
	}
	if q := serverQueue(t, rdb, key); !slices.Equal(q, []string{"new-1"}) {
		t.Errorf("queue %v; want new-1 alone", q)
	}
}

// The head of the queue that acquires tells the next live waiter its turn,
// past a dead one that its own attempt took off the queue; and a head whose
// lease was lost (evicted) keeps its place, as it is alive (its attempt
// says so), and gets a lease again.
func TestAcquireScriptTellsTheNextLiveWaiter(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	key := "reservation-next-live"
	leases := companion(key, leaseSuffix)
	runAcquire(t, rdb, key, "holder-1", waitQueue)
	for _, w := range []string{"head-1", "dead-1", "live-1"} {
		runAcquire(t, rdb, key, w, waitQueue)
	}
	rdb.ZRem(ctx, leases, "head-1")
	if res := runAcquire(t, rdb, key, "head-1", waitQueue); res.acquired || res.place != 0 {
		t.Fatalf("head without a lease, while the key is held: %+v; want refused, still at the head", res)
	}
	if err := rdb.ZScore(ctx, leases, "head-1").Err(); err != nil {
		t.Errorf("head's lease after its attempt: %v; want one", err)
	}
	rdb.ZAdd(ctx, leases, redis.Z{Score: 1, Member: "dead-1"}) // its lease ran out
	sub := rdb.Subscribe(ctx, companion(key, turnSuffix))
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	rdb.Del(ctx, key) // the holder released
	if res := runAcquire(t, rdb, key, "head-1", waitQueue); !res.acquired {
		t.Fatalf("head after the release: %+v; want acquired", res)
	}
	if q := serverQueue(t, rdb, key); !slices.Equal(q, []string{"live-1"}) {
		t.Errorf("queue %v; want live-1 alone", q)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Payload != "live-1" {
		t.Errorf("turn told to %q; want live-1", msg.Payload)
	}
}

// The queue and its leases live as long as the longest lease in them: a new
// queue gets an expiry, a waiter with a longer TTL extends it, and one with
// a shorter TTL never shortens it.
func TestAcquireScriptQueueExpiry(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	key := "reservation-expiry"
	check := func(when string, lo, hi time.Duration) {
		t.Helper()
		for _, k := range []string{companion(key, queueSuffix), companion(key, leaseSuffix)} {
			if pttl := rdb.PTTL(ctx, k).Val(); pttl <= lo || pttl > hi {
				t.Errorf("%s: PTTL of %s = %v; want in (%v, %v]", when, k, pttl, lo, hi)
			}
		}
	}
	if res := runAcquireTTL(t, rdb, key, "holder-1", waitQueue, 5000); !res.acquired {
		t.Fatalf("first attempt %+v; want acquired", res)
	}
	runAcquireTTL(t, rdb, key, "short-1", waitQueue, 1000)
	check("a new queue", 0, time.Second)
	runAcquireTTL(t, rdb, key, "long-1", waitQueue, 3000)
	check("after a waiter with a longer TTL", 2*time.Second, 3*time.Second)
	runAcquireTTL(t, rdb, key, "short-1", waitQueue, 1000)
	check("after a waiter with a shorter TTL", 2*time.Second, 3*time.Second)
}
