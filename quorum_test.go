package reservation

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// newQuorumClient returns a quorum Client over servers with short timings,
// every restart guard primed, closed at the end of the test.
func newTestQuorum(t testing.TB, servers []*redistest.Server, opt Options) *Client {
	t.Helper()
	if opt.By == "" {
		opt.By = "test"
	}
	if opt.TTL == 0 {
		opt.TTL = time.Second
	}
	if opt.Logger == nil {
		opt.Logger = quiet
	}
	addrs := make([]string, len(servers))
	for i, s := range servers {
		addrs[i] = s.URL()
	}
	c, err := NewQuorum(addrs, &opt)
	if err != nil {
		t.Fatalf("NewQuorum: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.PrimeRestartGuard(context.Background()); err != nil {
		t.Fatalf("PrimeRestartGuard: %v", err)
	}
	return c
}

// holders returns the value of key on each server ("" where it is gone or
// the server does not answer).
func holders(t *testing.T, servers []*redistest.Server, key string) []string {
	t.Helper()
	vals := make([]string, len(servers))
	for i, s := range servers {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		vals[i] = s.Client(t).Get(ctx, key).Val()
		cancel()
	}
	return vals
}

func TestQuorumBasics(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	a := newTestQuorum(t, servers, Options{By: "a"})
	b := newTestQuorum(t, servers, Options{By: "b"})
	ctx := t.Context()

	r, err := a.TryLock(ctx, "job")
	if err != nil {
		t.Fatalf("TryLock: %v", err)
	}
	for i, v := range holders(t, servers, r.Key()) {
		if v != r.Holder() {
			t.Errorf("server %d holds %q, want %q on every server", i, v, r.Holder())
		}
	}
	if v := r.Validity(); v < 500*time.Millisecond || v > time.Second {
		t.Errorf("Validity = %v, want within the TTL less the margin", v)
	}
	_, err = b.TryLock(ctx, "job")
	var nerr *NotAcquiredError
	if !errors.As(err, &nerr) || nerr.Holder != r.Holder() || nerr.Remaining <= 0 {
		t.Fatalf("TryLock of a held resource = %v; want a NotAcquiredError naming %q", err, r.Holder())
	}
	in, err := b.Status(ctx, "job")
	if err != nil || !in.Held || in.Holder != r.Holder() || in.Token != r.Token() || len(in.Servers) != 3 {
		t.Fatalf("Status = %+v, %v; want held by %q, token %d, 3 servers", in, err, r.Holder(), r.Token())
	}
	list, err := b.List(ctx, "*")
	if err != nil || len(list) != 1 || list[0].Holder != r.Holder() {
		t.Fatalf("List = %+v, %v", list, err)
	}

	// Renewed past several TTLs.
	time.Sleep(2500 * time.Millisecond)
	if err := r.Err(); err != nil {
		t.Fatalf("lost while renewed: %v", err)
	}

	// A waiter is woken by the release.
	got := make(chan *Reservation, 1)
	go func() {
		r2, err := b.Lock(ctx, "job")
		if err != nil {
			t.Errorf("Lock: %v", err)
		}
		got <- r2
	}()
	time.Sleep(100 * time.Millisecond)
	released := time.Now()
	if err := r.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	r2 := <-got
	if r2 == nil {
		return
	}
	if wait := time.Since(released); wait > 500*time.Millisecond {
		t.Errorf("waiter took %v after the release, want it woken at once", wait)
	}
	if r2.Token() <= r.Token() {
		t.Errorf("token %d after %d: want it to grow", r2.Token(), r.Token())
	}
	if !errors.Is(r.Release(ctx), ErrNotHeld) {
		t.Error("a second Release did not say ErrNotHeld")
	}
	if err := r2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for i, v := range holders(t, servers, r.Key()) {
		if v != "" {
			t.Errorf("server %d still holds %q after the release", i, v)
		}
	}
}

func TestQuorumOptions(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	addrs := []string{servers[0].Addr, servers[1].Addr, servers[2].Addr}
	for _, bad := range [][]string{nil, addrs[:1], addrs[:2], {addrs[0], addrs[1], addrs[1]},
		{addrs[0], addrs[1], "redis://" + addrs[2] + "?master_name=m"}} {
		if _, err := NewQuorum(bad, nil); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("NewQuorum(%q) = %v; want ErrInvalidOptions", bad, err)
		}
	}
	if _, err := NewQuorumWithClients(nil, nil); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("NewQuorumWithClients(nil) = %v; want ErrInvalidOptions", err)
	}
	rdbs := []*redis.Client{servers[0].Client(t), servers[1].Client(t), servers[2].Client(t)}
	c, err := NewQuorumWithClients(rdbs, &Options{By: "w", TTL: time.Second, Logger: quiet, RestartGuard: -1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.TryLock(t.Context(), "with-clients")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !errors.Is(r.Err(), ErrReleased) {
		t.Errorf("after Close, Err = %v; want ErrReleased", r.Err())
	}
	if err := rdbs[0].Ping(t.Context()).Err(); err != nil {
		t.Errorf("Close closed a client it did not make: %v", err)
	}
	if _, err := c.TryLock(t.Context(), "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("TryLock after Close = %v; want ErrClosed", err)
	}
}

// Every subset of failed servers out of 3, and a sample out of 5: a
// minority down changes nothing; a majority down makes acquisitions fail
// within the quorum timeout, and holders lose their holding at their
// deadline, before the keys can expire.
func TestQuorumFailedServers(t *testing.T) {
	cases := []struct {
		n    int
		down []int
	}{
		{3, nil}, {3, []int{0}}, {3, []int{1}}, {3, []int{2}},
		{3, []int{0, 1}}, {3, []int{0, 2}}, {3, []int{1, 2}}, {3, []int{0, 1, 2}},
		{5, []int{4}}, {5, []int{0, 3}}, {5, []int{1, 2, 4}}, {5, []int{0, 1, 2, 3}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d-servers-down-%v", tc.n, tc.down), func(t *testing.T) {
			servers := redistest.StartMasters(t, tc.n)
			c := newTestQuorum(t, servers, Options{By: "h", QuorumTimeout: 100 * time.Millisecond})
			ctx := t.Context()
			held, err := c.TryLock(ctx, "held")
			if err != nil {
				t.Fatal(err)
			}
			paused := time.Now()
			for _, i := range tc.down {
				servers[i].Pause()
			}
			defer func() {
				for _, i := range tc.down {
					servers[i].Resume()
				}
			}()
			majorityDown := 2*len(tc.down) > tc.n
			start := time.Now()
			r, err := c.TryLock(ctx, "new")
			took := time.Since(start)
			if majorityDown {
				var qerr *QuorumError
				if !errors.As(err, &qerr) || len(qerr.Servers) < tc.n/2+1 || qerr.Total != tc.n {
					t.Fatalf("TryLock with a majority down = %v; want a QuorumError naming a majority of the servers", err)
				}
				if took > time.Second {
					t.Errorf("TryLock took %v to fail; want about the quorum timeout (100ms)", took)
				}
				lost := waitDone(t, held, 2*time.Second)
				if !errors.Is(held.Err(), ErrLost) {
					t.Errorf("holding ended with %v; want ErrLost", held.Err())
				}
				// Lost by the deadline: before the TTL since the pause.
				if since := time.Since(paused); since > time.Second {
					t.Errorf("holding lost %v after the majority went down (waited %v); want before the TTL (1s)", since, lost)
				}
				return
			}
			if err != nil {
				t.Fatalf("TryLock with a minority down = %v; want it held", err)
			}
			time.Sleep(1500 * time.Millisecond) // past the TTL: renewed by the majority
			for _, h := range []*Reservation{held, r} {
				if err := h.Err(); err != nil {
					t.Errorf("%s lost with a minority down: %v", h.Resource(), err)
				}
			}
			if err := r.Release(ctx); err != nil {
				t.Errorf("Release with a minority down: %v", err)
			}
		})
	}
}

// A server restarted without its data while held: the holding stands on
// the others, the server does not vote until its restart guard passed, the
// part is taken again then, and tokens still grow.
func TestQuorumServerRestartedWithoutData(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	opt := Options{TTL: time.Second, RestartGuard: 1500 * time.Millisecond}
	opt.By = "a"
	a := newTestQuorum(t, servers, opt)
	opt.By = "b"
	b := newTestQuorum(t, servers, opt)
	ctx := t.Context()
	r, err := a.TryLock(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	<-r.lateDone // every part joined: one restart leaves a majority
	servers[0].Restart(t)
	time.Sleep(500 * time.Millisecond)
	if err := r.Err(); err != nil {
		t.Fatalf("lost after one server's restart: %v", err)
	}
	if _, err := b.TryLock(ctx, "job"); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("TryLock during the holding = %v; want ErrNotAcquired", err)
	}
	if v := holders(t, servers, r.Key())[0]; v != "" {
		t.Errorf("restarted server holds %q within its restart guard; want nothing", v)
	}
	// Past the guard, the holding is taken again on the restarted server.
	deadline := time.Now().Add(3 * time.Second)
	for holders(t, servers, r.Key())[0] != r.Holder() {
		if time.Now().After(deadline) {
			t.Fatal("the part on the restarted server was not taken again after its guard")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	r2, err := b.TryLock(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if r2.Token() <= r.Token() {
		t.Errorf("token %d after %d: want it to grow", r2.Token(), r.Token())
	}
}

// The token is written back to a majority: a holder whose token came from
// a server far ahead (a clock ahead, here a fencing key set high) is
// followed by tokens greater than its own even when that server is down.
func TestQuorumTokenWrittenBack(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	a := newTestQuorum(t, servers, Options{By: "a", QuorumTimeout: 100 * time.Millisecond})
	ctx := t.Context()
	ahead := time.Now().Add(time.Hour).UnixMicro()
	key := a.Key("job")
	if err := servers[0].Client(t).Set(ctx, companion(key, fenceSuffix), strconv.FormatInt(ahead, 10), 0).Err(); err != nil {
		t.Fatal(err)
	}
	// Taken on servers 0 and 2: the token is server 0's.
	servers[1].Pause()
	r, err := a.TryLock(ctx, "job")
	servers[1].Resume()
	if err != nil {
		t.Fatal(err)
	}
	if r.Token() <= ahead {
		t.Fatalf("token %d, want more than the server ahead's %d", r.Token(), ahead)
	}
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Server 1's late yes is given back in the background.
	for deadline := time.Now().Add(time.Second); holders(t, servers, key)[1] != ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("server 1 still holds the key after the release")
		}
	}
	servers[0].Pause()
	defer servers[0].Resume()
	r2, err := a.TryLock(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if r2.Token() <= r.Token() {
		t.Errorf("token %d after %d with the server ahead down: not written back", r2.Token(), r.Token())
	}
}

// A foreign change on a minority of servers does not end the holding (the
// part is taken again when free); on a majority it does.
func TestQuorumForeignChanges(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	c := newTestQuorum(t, servers, Options{By: "a", TTL: 30 * time.Second})
	ctx := t.Context()
	r, err := c.TryLock(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	// TryLock returns at a majority's yes: with the third part not
	// joined yet, one deletion would leave too few.
	<-r.lateDone
	// Deleted on one server: taken again there.
	servers[0].Client(t).Del(ctx, r.Key())
	deadline := time.Now().Add(2 * time.Second)
	for holders(t, servers, r.Key())[0] != r.Holder() {
		if time.Now().After(deadline) {
			t.Fatal("the deleted part was not taken again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Overwritten on one server: still held.
	servers[1].Client(t).Set(ctx, r.Key(), "intruder", 0)
	time.Sleep(200 * time.Millisecond)
	if err := r.Err(); err != nil {
		t.Fatalf("lost after a change on one server: %v", err)
	}
	// Overwritten on a second one: lost at once.
	servers[2].Client(t).Set(ctx, r.Key(), "intruder", 0)
	waitDone(t, r, time.Second)
	if !errors.Is(r.Err(), ErrLost) {
		t.Fatalf("Err = %v; want ErrLost", r.Err())
	}
	// What was left on server 0 is given back.
	deadline = time.Now().Add(2 * time.Second)
	for holders(t, servers, r.Key())[0] != "" {
		if time.Now().After(deadline) {
			t.Fatal("the part left on one server was not given back after the loss")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A force release of the quorum that reaches the servers one at a time
// (here, two of them hold writes back) ends the holding: the holder does
// not take each part back as it hears of its deletion, which would leave
// it holding for ever.
func TestQuorumForceReleaseOneServerAtATime(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	holder := newTestQuorum(t, servers, Options{By: "a", TTL: 30 * time.Second})
	operator := newTestQuorum(t, servers, Options{By: "operator"})
	ctx := t.Context()
	r, err := holder.TryLock(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	// Writes (scripts included) wait 300 ms on one server, 800 ms on
	// another: time enough for the holder to take back what it lost.
	for i, ms := range map[int]int{1: 300, 2: 800} {
		if err := servers[i].Client(t).Do(ctx, "CLIENT", "PAUSE", ms, "WRITE").Err(); err != nil {
			t.Fatal(err)
		}
	}
	v, err := operator.ForceRelease(ctx, "job")
	if err != nil || v != r.Holder() {
		t.Fatalf("ForceRelease = %q, %v; want %q", v, err, r.Holder())
	}
	waitDone(t, r, 2*time.Second)
	if !errors.Is(r.Err(), ErrLost) {
		t.Fatalf("Err = %v; want ErrLost", r.Err())
	}
	deadline := time.Now().Add(2 * time.Second)
	for h := holders(t, servers, r.Key()); h[0] != "" || h[1] != "" || h[2] != ""; h = holders(t, servers, r.Key()) {
		if time.Now().After(deadline) {
			t.Fatalf("after the force release, the servers hold %q; want none", h)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Someone else takes it at once: the record the force release left
	// refuses the old holder only.
	if _, err := operator.TryLock(ctx, "job"); err != nil {
		t.Fatalf("TryLock after the force release: %v", err)
	}
}

// The holding's deadline is the majority-th latest of the servers': one
// server that stops answering does not shorten it.
func TestQuorumDeadlineIsTheMajoritys(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	c := newTestQuorum(t, servers, Options{By: "a", TTL: time.Second, HeartbeatInterval: 200 * time.Millisecond})
	r, err := c.TryLock(t.Context(), "job")
	if err != nil {
		t.Fatal(err)
	}
	// TryLock returns at the majority's yes: wait for the third part, so
	// that the paused server's part is one of the holding's (without it the
	// earliest deadline and the majority's are the same).
	waitFor(t, func() bool {
		hs := holders(t, servers, r.Key())
		return hs[0] == r.Holder() && hs[1] == r.Holder() && hs[2] == r.Holder()
	})
	servers[0].Pause()
	defer servers[0].Resume()
	time.Sleep(500 * time.Millisecond)
	// The paused server's part has at most 1000-160-500 ms left; the
	// others were renewed within 200 ms.
	if v := r.Validity(); v < 450*time.Millisecond {
		t.Errorf("Validity = %v with one server paused; want the majority's (> 450ms)", v)
	}
}

// Mutual exclusion needs a majority: a resource held on two servers of
// three by someone else cannot be had.
func TestQuorumNeedsAMajority(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	c := newTestQuorum(t, servers, Options{By: "a", TTL: 30 * time.Second})
	key := c.Key("job")
	for _, s := range servers[1:] {
		s.Client(t).Set(t.Context(), key, "other", 10*time.Second)
	}
	r, err := c.TryLock(t.Context(), "job")
	var nerr *NotAcquiredError
	if !errors.As(err, &nerr) || nerr.Holder != "other" {
		t.Fatalf("TryLock of a resource held on 2 of 3 = %v, %v; want a NotAcquiredError naming \"other\"", r, err)
	}
	// Given back in the background, well before its TTL (30 s) would
	// expire it.
	waitFor(t, func() bool { return holders(t, servers, key)[0] == "" })
}

// Clients contending for one resource through Lock: never two holders at
// once, tokens that grow from one holder to the next, and every waiter
// served (servers split between contenders are given back and retried).
func TestQuorumContention(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	var clients []*Client
	for i := range 4 {
		clients = append(clients, newTestQuorum(t, servers, Options{By: fmt.Sprintf("c%d", i), RetryInterval: 200 * time.Millisecond}))
	}
	var (
		mu      sync.Mutex
		holding bool
		last    int64
	)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range clients {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					r, err := c.Lock(ctx, "contended")
					if err != nil {
						t.Errorf("Lock: %v", err)
						return
					}
					mu.Lock()
					if holding {
						t.Error("two holders at once")
					}
					if r.Token() <= last {
						t.Errorf("token %d after %d", r.Token(), last)
					}
					holding, last = true, r.Token()
					mu.Unlock()
					time.Sleep(time.Millisecond)
					mu.Lock()
					holding = false
					mu.Unlock()
					if err := r.Release(ctx); err != nil {
						t.Errorf("Release: %v", err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
}

// A quorum Client's waiters of one resource are served first come, first
// served, and a holder that releases and locks again takes its place
// behind them.
func TestQuorumWaitersQueueFairly(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	ctx := t.Context()
	c := newTestQuorum(t, servers, Options{TTL: 5 * time.Second})
	// Several rounds: the releaser's race with the first waiter is won
	// either way on a given run.
	for range 5 {
		first := mustLock(t, c, "shared")
		const waiters = 4
		served := make(chan int, waiters+1)
		var wg sync.WaitGroup
		lock := func(w int) {
			defer wg.Done()
			r, err := c.Lock(ctx, "shared")
			if err != nil {
				t.Error(err)
				return
			}
			served <- w
			time.Sleep(2 * time.Millisecond)
			if err := r.Release(ctx); err != nil {
				t.Error(err)
			}
		}
		for w := range waiters {
			wg.Add(1)
			go lock(w)
			deadline := time.Now().Add(2 * time.Second)
			for !queued(c.quorum.servers[0], "reservation-shared", w+1) {
				if time.Now().After(deadline) {
					t.Fatalf("waiter %d never queued", w)
				}
				time.Sleep(time.Millisecond)
			}
		}
		if err := first.Release(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go lock(waiters) // the releaser, again: behind the others
		wg.Wait()
		close(served)
		var order []int
		for w := range served {
			order = append(order, w)
		}
		for i, w := range order {
			if w != i {
				t.Fatalf("served in order %v, want first come, first served", order)
			}
		}
	}
}

// A Lock that finds waiters of its Client queued for the resource sends
// nothing until its turn: it does not try ahead of them.
func TestQuorumLockBehindWaitersSendsNothing(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	ctx := t.Context()
	c := newTestQuorum(t, servers, Options{TTL: 30 * time.Second}) // no renewal meanwhile
	held := mustLock(t, c, "shared")
	defer held.Release(ctx)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go c.Lock(wctx, "shared")
	for deadline := time.Now().Add(2 * time.Second); !queued(c.quorum.servers[0], "reservation-shared", 1); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first waiter never queued")
		}
	}
	rdb := servers[0].Client(t)
	before := commandCalls(rdb.Info(ctx, "commandstats").Val(), "evalsha")
	lctx, lcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer lcancel()
	if _, err := c.Lock(lctx, "shared"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock behind a waiter = %v; want its context's end", err)
	}
	if after := commandCalls(rdb.Info(ctx, "commandstats").Val(), "evalsha"); after != before {
		t.Errorf("%d scripts ran while the second waiter queued behind the first; want none", after-before)
	}
}

// A server that answers the acquisition late, while the repair loop is
// asked to take it again: one part there, whose key stays.
func TestQuorumLateVoteAndRepairKeepOnePart(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	c := newTestQuorum(t, servers, Options{TTL: 10 * time.Second, QuorumTimeout: time.Second})
	servers[2].Pause()
	r, err := c.TryLock(t.Context(), "job")
	if err != nil {
		servers[2].Resume()
		t.Fatal(err)
	}
	c.kickRepair() // while server 2's vote is still under way
	time.Sleep(150 * time.Millisecond)
	servers[2].Resume()
	<-r.lateDone
	for range 30 {
		time.Sleep(10 * time.Millisecond)
		if v := holders(t, servers, r.Key())[2]; v != r.Holder() {
			t.Fatalf("server 2 holds %q; want the holding's part (%q) to stay", v, r.Holder())
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
}

// The give-back of an earlier try on a server (a reply lost, a late
// answer) that the server runs after a later try of the same holding,
// whose value is the same, leaves that try's part alone: it waits until
// the part is held, then finds it is.
func TestQuorumGiveBackWaitsForALaterTry(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	c := newTestQuorum(t, servers, Options{TTL: 30 * time.Second})
	m := c.quorum.servers[0]
	ctx := t.Context()
	value := c.newValue()
	// The scripts loaded first: a NOSCRIPT answered after the pause would
	// have either call sent again, in any order.
	if err := mustLock(t, c, "warm").Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Writes wait 300 ms: the try, then the give-back, queue up behind
	// the pause, and the server runs them in that order.
	if err := servers[0].Client(t).Do(ctx, "CLIENT", "PAUSE", 300, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	tried := make(chan *Reservation, 1)
	go func() {
		p, _, err := m.acquireAs(ctx, "job", value, noQueue, 0)
		if err != nil {
			t.Errorf("try: %v", err)
		}
		tried <- p
	}()
	time.Sleep(100 * time.Millisecond) // the try waits on the server
	m.giveBackNow(m.Key("job"), value, 0)
	p := <-tried
	if p == nil {
		t.Fatal("the try took nothing")
	}
	if v := holders(t, servers, p.Key())[0]; v != value {
		t.Fatalf("after the give-back, server 0 holds %q; want the later try's part (%q)", v, value)
	}
	if err := p.Err(); err != nil {
		t.Fatalf("the later try's part ended: %v", err)
	}
}

// setVotes sets up the votes on "job" of c's servers, once c dialled each:
// the servers held hold it for "someone-else", the server dead is killed
// (it refuses at once), the server silent is paused until the test ends.
func setVotes(t *testing.T, c *Client, servers []*redistest.Server, held []int, dead, silent int) {
	t.Helper()
	ctx := t.Context()
	if _, err := c.TryLock(ctx, "warm"); err != nil {
		t.Fatal(err)
	}
	for _, i := range held {
		if err := servers[i].Client(t).Set(ctx, c.Key("job"), "someone-else", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	servers[dead].Kill()
	servers[silent].Pause()
	t.Cleanup(servers[silent].Resume)
}

// A majority down while the one server up holds the key for someone else:
// the answer is a QuorumError, whichever comes first (the holder's no, a
// dead server's refused connection), never a refusal that names the
// holder of one server.
func TestQuorumMajorityDownIsAQuorumError(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	c := newTestQuorum(t, servers, Options{By: "a", QuorumTimeout: 100 * time.Millisecond})
	ctx := t.Context()
	setVotes(t, c, servers, []int{0}, 1, 2)
	for range 5 {
		_, err := c.TryLock(ctx, "job")
		var qerr *QuorumError
		if !errors.As(err, &qerr) || len(qerr.Servers) != 2 {
			t.Fatalf("TryLock with servers 1 and 2 down and the key held on server 0 = %v; want a QuorumError naming servers 1 and 2", err)
		}
	}
}

// A refusal that no answer still to come could turn into a QuorumError is
// answered at once: five servers, two hold the key for someone else, one
// is down, one says yes, and the last one answers nothing.
func TestQuorumRefusalDoesNotWaitForTheSilent(t *testing.T) {
	servers := redistest.StartMasters(t, 5)
	c := newTestQuorum(t, servers, Options{By: "a", TTL: 10 * time.Second, QuorumTimeout: 2 * time.Second})
	ctx := t.Context()
	setVotes(t, c, servers, []int{0, 1}, 2, 4)
	start := time.Now()
	_, err := c.TryLock(ctx, "job")
	took := time.Since(start)
	var nerr *NotAcquiredError
	if !errors.As(err, &nerr) || nerr.Holder != "someone-else" {
		t.Fatalf("TryLock = %v; want a refusal naming someone-else", err)
	}
	if took > time.Second {
		t.Errorf("TryLock took %v; want the refusal before the quorum timeout (2s)", took)
	}
}

// A slow minority holds up neither Release nor its answer.
func TestQuorumReleaseWithASlowServer(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	c := newTestQuorum(t, servers, Options{TTL: 30 * time.Second})
	// Slow during the acquisition: its vote is still under way.
	servers[2].Pause()
	r, err := c.TryLock(t.Context(), "during")
	if err != nil {
		servers[2].Resume()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	err = r.Release(ctx)
	cancel()
	servers[2].Resume()
	if err != nil {
		t.Fatalf("Release with a slow minority: %v", err)
	}
	// Slow after it.
	r, err = c.TryLock(t.Context(), "after")
	if err != nil {
		t.Fatal(err)
	}
	<-r.lateDone
	servers[2].Pause()
	defer servers[2].Resume()
	start := time.Now()
	if err := r.Release(t.Context()); err != nil {
		t.Fatalf("Release with a slow minority: %v", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("Release took %v with a slow minority; want the majority's answer", took)
	}
}

func TestQuorumSameServerTwice(t *testing.T) {
	servers := redistest.StartMasters(t, 2)
	c, err := NewQuorum([]string{servers[0].Addr, "redis://" + servers[0].Addr, servers[1].Addr}, &Options{Logger: quiet})
	if !errors.Is(err, ErrInvalidOptions) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("NewQuorum with one server twice = %v; want ErrInvalidOptions", err)
	}
}

// Servers held back by their restart guards are not contenders: Lock waits
// for the guard, without a storm of attempts.
func TestQuorumLockWaitsForGuards(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	c := newTestQuorum(t, servers, Options{TTL: time.Second, RestartGuard: 5 * time.Second})
	servers[1].Restart(t)
	servers[2].Restart(t)
	before := commandCalls(servers[0].Client(t).Info(t.Context(), "commandstats").Val(), "evalsha")
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err := c.Lock(ctx, "job")
	var nerr *NotAcquiredError
	if !errors.As(err, &nerr) || !nerr.Guard {
		t.Fatalf("Lock during the guards = %v; want a NotAcquiredError of the guard", err)
	}
	after := commandCalls(servers[0].Client(t).Info(t.Context(), "commandstats").Val(), "evalsha")
	if after-before > 10 {
		t.Errorf("%d scripts in a second on the healthy server while the guards held; want a few", after-before)
	}
}

// With a minority down, reads answer with the majority's view, without
// waiting for the server that is down.
func TestQuorumReadsWithAServerDown(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	c := newTestQuorum(t, servers, Options{QuorumTimeout: 100 * time.Millisecond})
	ctx := t.Context()
	r := mustLock(t, c, "job")
	servers[2].Kill()
	start := time.Now()
	if err := c.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	in, err := c.Status(ctx, "job")
	if err != nil || !in.Held || in.Servers[2].Err == nil {
		t.Errorf("Status = %+v, %v; want held, with server 2's error", in, err)
	}
	if _, err := c.List(ctx, "*"); !errors.Is(err, ErrPartial) {
		t.Errorf("List = %v; want ErrPartial", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Ping, Status and List took %v with one server down; want the majority's answers", took)
	}
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// After a refused attempt, a waiter counts as free the servers that said
// yes (it gave the key back there, whether or not their watch saw it yet)
// and the servers that refused but where the watch now finds the key
// gone: free on a majority, it tries again at once rather than wait for
// a wake-up that already happened. Here server 0 said yes, server 1
// refused and its holder left since, server 2 is still held.
func TestQuorumWaiterCountsGivenBackServersFree(t *testing.T) {
	servers := redistest.StartMasters(t, 3)
	ctx := t.Context()
	c := newTestQuorum(t, servers, Options{})
	key := c.Key("split")
	if err := servers[2].Client(t).Set(ctx, key, "other", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	seats := c.join(ctx, key)
	if len(seats) != 3 {
		t.Fatalf("joined %d notifiers; want 3", len(seats))
	}
	defer func() {
		for _, s := range seats {
			s.n.leave(key, s.w, false)
		}
	}()
	w := &wait{c: c, resource: "split", key: key, last: &NotAcquiredError{granted: []int{0}}}
	for _, tc := range []struct {
		name    string
		unarmed []seat
	}{
		{"given-back server's watch armed", seats[1:]},
		{"given-back server's watch fired", seats},
	} {
		if got := c.freeSince(ctx, w, tc.unarmed); got != 2 {
			t.Errorf("%s: free on %d servers; want 2 (the one that said yes, the one its holder left)", tc.name, got)
		}
	}
}
