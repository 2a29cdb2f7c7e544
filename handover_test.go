package reservation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// untilJoined waits until n of c's waiters of key joined its notifier's
// queue: then a release offers them the key.
func untilJoined(t *testing.T, c *Client, key string, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !queued(c, key, n); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters of %s never joined", n, key)
		}
	}
}

// handoverClients starts a server and two Clients of it with a TTL of 10 s
// (heartbeats every 3.3 s: none in a test), the second By "other", and
// loads the release script with a release of the first's.
func handoverClients(t *testing.T) (rdb *redis.Client, c, other *Client) {
	t.Helper()
	srv := redistest.Start(t)
	rdb = srv.Client(t)
	c = newTestClient(t, srv, Options{TTL: 10 * time.Second})
	other = newTestClient(t, srv, Options{By: "other", TTL: 10 * time.Second})
	if err := mustLock(t, c, "warm-up").Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	return rdb, c, other
}

// awaitHanded waits for the reservation that a release of prev handed to
// the waiter of lockLater's channel got, with value, and checks its token:
// above prev's, and in the fencing key.
func awaitHanded(t *testing.T, rdb *redis.Client, got <-chan *Reservation, value string, prev *Reservation) *Reservation {
	t.Helper()
	var r *Reservation
	select {
	case r = <-got:
	case <-time.After(3 * time.Second):
		t.Fatal("the waiter was not handed the reservation")
	}
	if r == nil {
		t.FailNow()
	}
	if r.Holder() != value || r.Token() <= prev.Token() {
		t.Errorf("handed %s with token %d; want %s with a token above %d", r.Holder(), r.Token(), value, prev.Token())
	}
	if fence, _ := rdb.Get(t.Context(), companion(r.Key(), fenceSuffix)).Int64(); fence != r.Token() {
		t.Errorf("fencing key holds %d; want the handed token %d", fence, r.Token())
	}
	return r
}

// untilScriptsSettle waits until no script has run for 100 ms, and returns
// how many ran.
func untilScriptsSettle(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	last := -1
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		n := commandCalls(rdb.Info(t.Context(), "commandstats").Val(), "evalsha")
		if n == last {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatal("scripts still run after 5 s")
		}
		last = n
	}
}

// A release hands the key over to the Client's own waiter at the head of
// the server's queue: the release script gives it the key and a greater
// token, the waiter makes no attempt of its own, and the next place (a
// waiter of another Client) is told its turn, so that it watches the key.
func TestReleaseHandsOverToOwnWaiter(t *testing.T) {
	rdb, c, other := handoverClients(t)
	ctx := t.Context()
	r := mustLock(t, c, "baton")
	key := r.Key()
	mine := lockLater(t, c, "baton")
	untilQueued(t, rdb, key, 1)
	untilJoined(t, c, key, 1)
	theirs := lockLater(t, other, "baton")
	q := untilQueued(t, rdb, key, 2)
	before := untilScriptsSettle(t, rdb) // the turn channels subscribed, and the waiters' attempts after it made
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Held by the waiter as the release answered, with its token.
	if v := rdb.Get(ctx, key).Val(); v != q[0] {
		t.Fatalf("after the release the key holds %q; want the waiter's %q", v, q[0])
	}
	got := awaitHanded(t, rdb, mine, q[0], r)
	defer got.Release(ctx)
	if pttl := rdb.PTTL(ctx, key).Val(); pttl <= 0 || pttl > c.opt.TTL {
		t.Errorf("handed key's PTTL %v; want the TTL", pttl)
	}
	time.Sleep(50 * time.Millisecond) // any attempt of the waiters shows
	if scripts := commandCalls(rdb.Info(ctx, "commandstats").Val(), "evalsha") - before; scripts != 1 {
		t.Errorf("%d scripts ran; want 1, the release (the waiter was handed the key, it did not try)", scripts)
	}
	if q := serverQueue(t, rdb, key); len(q) != 1 || q[0] == got.Holder() {
		t.Errorf("queue %v; want the other Client's waiter only", q)
	}
	if got.Err() != nil {
		t.Fatalf("handed reservation ended: %v", got.Err())
	}

	// The other Client's waiter, now the head, was told so: it watches
	// the key, and takes it within moments of a foreign delete, not at
	// its next lease renewal.
	since := time.Now()
	rdb.Del(ctx, key)
	awaitHeld(t, theirs, since, time.Second, "the next waiter")
	select {
	case <-got.Done():
	case <-time.After(3 * time.Second):
		t.Error("the handed reservation did not hear of its loss")
	}
}

// A release does not hand the key over while the restart guard runs: the
// waiter acquires when the guard has passed, as an attempt would.
func TestHandOverWaitsForRestartGuard(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	const guard = 500 * time.Millisecond
	c := newTestClient(t, srv, Options{TTL: 10 * time.Second, RestartGuard: guard})
	r := mustLock(t, c, "guarded")
	mine := lockLater(t, c, "guarded")
	untilQueued(t, rdb, r.Key(), 1)
	untilJoined(t, c, r.Key(), 1)
	// The server lost its marker (as in a restart) after r acquired.
	rdb.Del(ctx, guardKeyFor(r.Key(), false))
	since := time.Now()
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if v := rdb.Get(ctx, r.Key()).Val(); v != "" {
		t.Fatalf("the release handed the key to %q while the guard runs", v)
	}
	got := <-mine
	if got == nil {
		t.FailNow()
	}
	defer got.Release(ctx)
	if waited := time.Since(since); waited < guard-50*time.Millisecond {
		t.Errorf("the waiter held %v after the marker's loss; want the guard, %v", waited, guard)
	}
}

// A waiter that gives up while a release that offered it the key is under
// way does not keep it: the key is free again, whichever ran first on the
// server, the release or the waiter's give-back.
func TestHandOverToAWaiterThatGaveUp(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{TTL: 10 * time.Second})
	r := mustLock(t, c, "quitter")
	wctx, cancel := context.WithCancel(ctx)
	ended := make(chan error, 1)
	go func() {
		got, err := c.Lock(wctx, "quitter")
		if got != nil {
			got.Release(ctx)
		}
		ended <- err
	}()
	untilQueued(t, rdb, r.Key(), 1)
	untilJoined(t, c, r.Key(), 1)
	// The waiter's join subscribes to the key's turn channel, and the
	// confirmation has it try once (a turn told before it would be
	// missed). Let that try be over, or it would wait out the pause below
	// (writes) instead of the waiter: it came after the pause in 5 of 8
	// runs under two CPU burners, and then the test could not see the
	// waiter wait for the release.
	n := c.notifierIfStarted("")
	waitFor(t, func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		_, ok := n.turns[r.Key()]
		return ok
	})
	untilScriptsSettle(t, rdb)
	// Writes wait on the server: the release is under way, and the
	// waiter, offered the key, waits for it.
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", 400, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	released := make(chan error, 1)
	go func() { released <- r.Release(ctx) }()
	waitFor(t, func() bool { return n.offerOf(r.Key()) != nil }) // the release offered the key
	// A notice of the key (as from client tracking) wakes the waiter,
	// which waits for the release rather than try. It gives up 100 ms
	// later, long before the writes resume: had it not taken in the
	// notice by then (a loaded machine), its select would see both.
	n.notify(r.Key())
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-ended; !errors.Is(err, ErrNotAcquired) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock of a waiter that gave up: %v; want ErrNotAcquired and context.Canceled", err)
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		v, err := rdb.Get(ctx, r.Key()).Result()
		if errors.Is(err, redis.Nil) && len(serverQueue(t, rdb, r.Key())) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key holds %q (%v), queue %v; want both gone", v, err, serverQueue(t, rdb, r.Key()))
		}
	}
}

// A release hands the key over to another Client's waiter only when its
// lease says it takes grants: not to one of a version before grants (a
// whole number of milliseconds), nor to one whose lease has less than
// half the releasing Client's TTL left. Here waiters that never try, to
// see what the release did: the key is free as the release answers.
func TestReleaseDoesNotHandOverToOthers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lease time.Duration // left
		mark  float64       // added to the lease's end in ms
	}{
		{"no grants", 10 * time.Second, 0},
		{"short lease", 4 * time.Second, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			testNoHandOverToStranger(t, srv, tc.lease, tc.mark)
		})
	}
}

func testNoHandOverToStranger(t *testing.T, srv *redistest.Server, lease time.Duration, mark float64) {
	rdb := srv.Client(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{TTL: 10 * time.Second})
	r := mustLock(t, c, "theirs-first")
	const stranger = "other-waiter"
	now := time.Now()
	rdb.ZAdd(ctx, companion(r.Key(), queueSuffix), redis.Z{Score: float64(now.UnixMicro()), Member: stranger})
	rdb.ZAdd(ctx, companion(r.Key(), leaseSuffix), redis.Z{Score: float64(now.Add(lease).UnixMilli()) + mark, Member: stranger})
	mine := lockLater(t, c, "theirs-first")
	untilQueued(t, rdb, r.Key(), 2)
	untilJoined(t, c, r.Key(), 1)
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if v := rdb.Get(ctx, r.Key()).Val(); v != "" {
		t.Fatalf("the release handed the key to %q, a waiter of another Client", v)
	}
	// The stranger gives up: the next waiter, the Client's own, is told.
	since := time.Now()
	c.giveBackNow(r.Key(), stranger, 0)
	awaitHeld(t, mine, since, time.Second, "the Client's own waiter")
}

// A waiter offered the key by a release under way waits for it rather than
// try, whatever wakes it meanwhile: a try would cost a round trip, which the
// handover would then wait for.
func TestHandOverWaiterWaitsForTheRelease(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{TTL: 10 * time.Second})
	if err := mustLock(t, c, "warm-up").Release(ctx); err != nil { // the release script loaded
		t.Fatal(err)
	}
	r := mustLock(t, c, "patient")
	mine := lockLater(t, c, "patient")
	untilQueued(t, rdb, r.Key(), 1)
	untilJoined(t, c, r.Key(), 1)
	before := untilScriptsSettle(t, rdb)
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", 200, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	released := make(chan error, 1)
	go func() { released <- r.Release(ctx) }()
	time.Sleep(50 * time.Millisecond)
	c.notifierIfStarted("").notify(r.Key()) // as from client tracking
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	got := <-mine
	if got == nil {
		t.FailNow()
	}
	defer got.Release(ctx)
	time.Sleep(50 * time.Millisecond) // any attempt shows
	if scripts := commandCalls(rdb.Info(ctx, "commandstats").Val(), "evalsha") - before; scripts != 1 {
		t.Errorf("%d scripts ran; want 1, the release (the waiter tried while it was under way)", scripts)
	}
}

// A release hands the key over to another Client's waiter at the head of
// the server's queue, which takes grants: the key holds its value until
// the end of its lease, with a greater token, and the waiter is told on
// the turn channel, so that it holds with no attempt of its own. Its
// deadline is counted from its last refused attempt, before the lease's
// end.
func TestReleaseHandsOverToAnotherClientsWaiter(t *testing.T) {
	rdb, c, other := handoverClients(t)
	ctx := t.Context()
	r := mustLock(t, c, "relay")
	key := r.Key()
	theirs := lockLater(t, other, "relay")
	q := untilQueued(t, rdb, key, 1)
	untilJoined(t, other, key, 1)
	before := untilScriptsSettle(t, rdb) // the turn channel subscribed, and the waiter's attempts made
	lease, err := rdb.ZScore(ctx, companion(key, leaseSuffix), q[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if lease-float64(int64(lease)) != 0.5 {
		t.Fatalf("the waiter's lease ends at %v ms; want half a millisecond past a whole one (it takes grants)", lease)
	}
	ends := time.UnixMilli(int64(lease))
	// Long enough after the waiter's attempt that a deadline counted from
	// now (or a TTL from the release) would outlast its lease.
	time.Sleep(600 * time.Millisecond)
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if v := rdb.Get(ctx, key).Val(); v != q[0] {
		t.Fatalf("after the release the key holds %q; want the waiter's %q", v, q[0])
	}
	if pttl := rdb.PTTL(ctx, key).Val(); pttl <= 0 || pttl > time.Until(ends)+5*time.Millisecond {
		t.Errorf("handed key's PTTL %v; want no more than the waiter's lease, %v", pttl, time.Until(ends))
	}
	got := awaitHanded(t, rdb, theirs, q[0], r)
	defer got.Release(ctx)
	if got.deadline.After(ends) {
		t.Errorf("the holder's deadline %v is after the key's expiry %v", got.deadline.Format(time.StampMicro), ends.Format(time.StampMicro))
	}
	time.Sleep(50 * time.Millisecond) // any attempt of the waiter shows
	if scripts := commandCalls(rdb.Info(ctx, "commandstats").Val(), "evalsha") - before; scripts != 1 {
		t.Errorf("%d scripts ran; want 1, the release (the waiter was handed the key, it did not try)", scripts)
	}
	if q := serverQueue(t, rdb, key); len(q) != 0 {
		t.Errorf("queue %v; want it empty", q)
	}
	// The holder watches its key: it hears of a foreign delete.
	rdb.Del(ctx, key)
	waitDone(t, got, 3*time.Second)
}

// A grant told before its waiter joined the notifier's queue (the reply of
// its first attempt still on its way) is kept for it; a waiter that takes
// no grants is told its turn instead, and its next attempt finds the key.
func TestGrantToldBeforeJoin(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, Options{By: "early"})
	key := c.Key("early")
	n, err := c.notifierFor(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	value := c.newValue()
	n.turnTold(key, value+"\t1234\t99")
	w := n.joinServerQueue(key, value, true)
	defer n.leave(key, w, false)
	select {
	case g := <-w.grant:
		if g.token != 1234 || g.lease != 99 || !g.sent.IsZero() {
			t.Errorf("grant %+v; want token 1234 until 99 from another Client", g)
		}
	default:
		t.Error("a grant told before the waiter joined was lost")
	}

	plain := c.newValue()
	n.turnTold(key, plain+"\t1235\t99")
	p := n.joinServerQueue(key, plain, false)
	defer n.leave(key, p, false)
	select {
	case <-p.turn:
		if !n.toldTurn(p) {
			t.Error("the turn was not told")
		}
	default:
		t.Error("a waiter that takes no grants was not told its turn")
	}
}

// A grant from another Client is taken only for the lease that the
// waiter's last refused attempt wrote: the deadline is counted from that
// attempt's send time, which came before the key's expiry only for that
// lease. A grant of another lease (an older one, or one that came after a
// later attempt found the key someone else's) is left for the next
// attempt, which finds the key its own if it still is.
func TestGrantOfAnotherLeaseIgnored(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, Options{TTL: 10 * time.Second})
	ctx := t.Context()
	sent := time.Now().Add(-time.Second)
	w := &wait{c: c, resource: "leased", key: c.Key("leased"), start: sent, value: c.newValue(),
		refused: sent, refusedLease: 1000}
	for _, lease := range []int64{0, 999, 1001} {
		if r, err := w.granted(ctx, grant{token: 7, lease: lease}); r != nil || err != nil {
			t.Errorf("a grant until %d after a refused attempt whose lease ends at 1000: %v, %v; want neither", lease, r, err)
			if r != nil {
				r.Release(ctx)
			}
		}
	}
	r, err := w.granted(ctx, grant{token: 7, lease: 1000})
	if r == nil || err != nil {
		t.Fatalf("the grant of the attempt's lease: %v, %v; want held", r, err)
	}
	defer r.Release(ctx)
	if want := sent.Add(c.opt.TTL - c.opt.margin()); !r.deadline.Equal(want) || r.Token() != 7 {
		t.Errorf("held with token %d until %v; want token 7 until %v (counted from the attempt)", r.Token(), r.deadline, want)
	}
}
