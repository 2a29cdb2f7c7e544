package reservation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/internal/redistest"
)

// Up to n holders at once, each with a permit key of its own and a token
// above every earlier one; the next is refused until one releases, and
// then gets the permit freed.
func TestSemaphoreLimit(t *testing.T) {
	for _, noQueue := range []bool{false, true} {
		t.Run(fmt.Sprintf("noqueue=%v", noQueue), func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := t.Context()
			var (
				held []*Reservation
				keys = map[string]bool{}
				last int64
			)
			for i := range 3 {
				c := newTestClient(t, srv, Options{By: fmt.Sprintf("h%d", i), NoQueue: noQueue})
				r, err := c.TryLock(ctx, "exports", Limit(3))
				if err != nil {
					t.Fatalf("holder %d: %v", i, err)
				}
				if r.Limit() != 3 || keys[r.Key()] || r.Token() <= last {
					t.Fatalf("holder %d: limit %d, key %s (taken: %v), token %d after %d", i, r.Limit(), r.Key(), keys[r.Key()], r.Token(), last)
				}
				if sem, ok := permitOf(r.Key()); !ok || sem != "reservation-exports" {
					t.Fatalf("holder %d: key %s is not a permit of reservation-exports", i, r.Key())
				}
				keys[r.Key()] = true
				last = r.Token()
				held = append(held, r)
			}
			fourth := newTestClient(t, srv, Options{By: "fourth", NoQueue: noQueue})
			_, err := fourth.TryLock(ctx, "exports", Limit(3))
			var nerr *NotAcquiredError
			if !errors.As(err, &nerr) || !strings.HasPrefix(nerr.Holder, "h") || nerr.Remaining <= 0 ||
				!strings.Contains(err.Error(), `"exports": its 3 permits are held, the first to expire by "h`) {
				t.Fatalf("fourth TryLock: %v; want NotAcquiredError naming a holder and its time left", err)
			}
			if err := held[1].Release(ctx); err != nil {
				t.Fatal(err)
			}
			r, err := fourth.TryLock(ctx, "exports", Limit(3))
			if err != nil {
				t.Fatalf("fourth TryLock after a release: %v", err)
			}
			if r.Key() != held[1].Key() || r.Token() <= last {
				t.Errorf("fourth got %s (token %d), want the freed %s with a token above %d", r.Key(), r.Token(), held[1].Key(), last)
			}
			// Renewed like any reservation.
			time.Sleep(1500 * time.Millisecond) // 1.5 TTLs
			for _, h := range []*Reservation{held[0], held[2], r} {
				if err := h.Err(); err != nil {
					t.Errorf("%s: %v after 1.5 TTLs", h.Key(), err)
				}
			}
			if n := srv.Client(t).Exists(ctx, "reservation-exports").Val(); n != 1 {
				t.Errorf("the semaphore's marker is gone while permits are held")
			}
		})
	}
}

// A waiter for a full semaphore is woken by a release of any permit, by an
// expiry (a holder that died), and by a permit's key deleted, with client
// tracking and without it, with the server's queue and without.
func TestSemaphoreWaiterWoken(t *testing.T) {
	for _, tc := range []struct{ tracking, noQueue bool }{{true, false}, {false, false}, {true, true}, {false, true}} {
		t.Run(fmt.Sprintf("tracking=%v,noqueue=%v", tc.tracking, tc.noQueue), func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := t.Context()
			rdb := srv.Client(t)
			holder := newTestClient(t, srv, Options{By: "holder", TTL: 10 * time.Second})
			waiter := newTestClient(t, srv, Options{By: "waiter", TTL: 10 * time.Second, NoQueue: tc.noQueue})
			waiter.noTracking = !tc.tracking
			a, err := holder.TryLock(ctx, "jobs", Limit(2))
			if err != nil {
				t.Fatal(err)
			}
			// The other permit's holder died: its key runs out.
			dead := permitKey("reservation-jobs", 2)
			if a.Key() == dead {
				t.Fatalf("first holder got permit 2")
			}
			rdb.Set(ctx, dead, "dead-worker", 400*time.Millisecond)
			lockIn := func() (*Reservation, time.Time) {
				r, err := waiter.Lock(ctx, "jobs", Limit(2))
				if err != nil {
					t.Fatalf("Lock: %v", err)
				}
				return r, time.Now()
			}
			start := time.Now()
			r, at := lockIn()
			if d := at.Sub(start); d > 500*time.Millisecond || d < 300*time.Millisecond {
				t.Errorf("expired permit had after %v, want at its expiry, 400ms", d)
			}
			// Full again: the holder's release wakes the waiter.
			done := make(chan time.Time, 1)
			go func() {
				_, at := lockIn()
				done <- at
			}()
			time.Sleep(300 * time.Millisecond)
			if err := a.Release(ctx); err != nil {
				t.Fatal(err)
			}
			released := time.Now()
			select {
			case at := <-done:
				if d := at.Sub(released); d > 100*time.Millisecond {
					t.Errorf("waiter woken %v after a release, want within 100ms", d)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("waiter not woken by a release")
			}
			// A permit deleted behind its holder's back (a plain DEL):
			// its holder hears of it at once, with tracking; a waiter,
			// which does not watch the permits' keys (their renewals
			// would wake it), within its RetryInterval.
			go func() {
				_, at := lockIn()
				done <- at
			}()
			time.Sleep(300 * time.Millisecond)
			rdb.Del(ctx, r.Key())
			deleted := time.Now()
			select {
			case at := <-done:
				if d := at.Sub(deleted); d > time.Second+100*time.Millisecond {
					t.Errorf("waiter woken %v after a DEL, want within the RetryInterval (1s)", d)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("waiter not woken after a DEL")
			}
			if tc.tracking {
				waitDone(t, r, 100*time.Millisecond)
				if !errors.Is(r.Err(), ErrLost) {
					t.Errorf("holder of the deleted permit: %v, want ErrLost", r.Err())
				}
			}
		})
	}
}

// The holders' renewals do not wake a semaphore's waiters: they renew
// their permits' keys, which the waiters watch, but with the same value.
func TestSemaphoreWaitersNotWokenByRenewals(t *testing.T) {
	for _, noQueue := range []bool{false, true} {
		t.Run(fmt.Sprintf("noqueue=%v", noQueue), func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := t.Context()
			var holders []*Client
			for i := range 2 {
				h := newTestClient(t, srv, Options{By: fmt.Sprintf("h%d", i), TTL: time.Second, HeartbeatInterval: 20 * time.Millisecond})
				if _, err := h.TryLock(ctx, "busy", Limit(2)); err != nil {
					t.Fatal(err)
				}
				holders = append(holders, h)
			}
			// The server counts every script, on every connection (the
			// waiter's tracking connection included, which a go-redis
			// hook on its pool would not see): the waiter's are what the
			// holders' renewal rounds, one script each, leave.
			rdb := srv.Client(t)
			scripts := func() int {
				n := commandCalls(rdb.Info(ctx, "commandstats").Val(), "evalsha")
				for _, h := range holders {
					n -= int(h.renewRounds.Load())
				}
				return n
			}
			waiter := newTestClient(t, srv, Options{By: "waiter", TTL: 10 * time.Second, NoQueue: noQueue})
			before := scripts()
			wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			defer cancel()
			if _, err := waiter.Lock(wctx, "busy", Limit(2)); !errors.Is(err, ErrNotAcquired) {
				t.Fatalf("Lock: %v, want ErrNotAcquired", err)
			}
			// 150 renewals came meanwhile. The waiter tries at first, then
			// when the first permit it saw would expire (a TTL later), or
			// once per RetryInterval (1s), or to renew its place; it
			// gives its place back as it leaves. A renewal round counted
			// on either side of the window but run on the other adds up
			// to 2 for each holder.
			if n := scripts() - before; n > 9 {
				t.Errorf("waiter ran %d scripts in 1.5s while the holders renewed every 20ms, want at most 9 (4 attempts, its give-back, 4 renewals astride the window)", n)
			}
		})
	}
}

// One name is a reservation or a semaphore at a time, and a semaphore
// has one limit at a time: a permit held refuses a plain reservation of the
// name (a Node worker's SET NX included) and a semaphore of another limit,
// and a plain holding refuses every permit.
func TestSemaphoreAndReservationOfOneName(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rdb := srv.Client(t)
	c := newTestClient(t, srv, Options{By: "c", TTL: 500 * time.Millisecond})
	p, err := c.TryLock(ctx, "both", Limit(3))
	if err != nil {
		t.Fatal(err)
	}
	var nerr *NotAcquiredError
	if _, err := c.TryLock(ctx, "both"); !errors.As(err, &nerr) || nerr.Holder != "semaphore:3" ||
		!strings.Contains(err.Error(), `"both": used as a semaphore of 3 permits`) {
		t.Errorf("plain TryLock while a permit is held: %v, want refused by semaphore:3", err)
	}
	if ok := rdb.SetNX(ctx, "reservation-both", "node-worker", time.Minute).Val(); ok {
		t.Errorf("a Node worker's SET NX took the name while a permit is held")
	}
	if _, err := c.TryLock(ctx, "both", Limit(5)); !errors.As(err, &nerr) || nerr.Holder != "semaphore:3" {
		t.Errorf("TryLock with Limit(5) while Limit(3) permits are held: %v, want refused by semaphore:3", err)
	}
	if err := p.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// The marker outlives the last permit by up to a TTL.
	r, err := c.Lock(ctx, "both", Limit(5))
	if err != nil {
		t.Fatalf("Lock with Limit(5) once the Limit(3) permits are gone: %v", err)
	}
	r.Release(ctx)
	time.Sleep(600 * time.Millisecond)
	plain, err := c.TryLock(ctx, "both")
	if err != nil {
		t.Fatalf("plain TryLock a TTL after the last permit: %v", err)
	}
	if _, err := c.TryLock(ctx, "both", Limit(3)); !errors.As(err, &nerr) || nerr.Holder != plain.Holder() {
		t.Errorf("TryLock with Limit(3) while held as a reservation: %v, want refused by %s", err, plain.Holder())
	}
}

// Bad limits are refused with ErrInvalidOptions before any round trip.
func TestSemaphoreBadLimit(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, Options{})
	for _, n := range []int{0, -1, MaxLimit + 1} {
		if _, err := c.TryLock(t.Context(), "x", Limit(n)); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("TryLock with Limit(%d): %v, want ErrInvalidOptions", n, err)
		}
		if _, err := c.Lock(t.Context(), "x", Limit(n)); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Lock with Limit(%d): %v, want ErrInvalidOptions", n, err)
		}
	}
	r, err := c.TryLock(t.Context(), "x", Limit(MaxLimit))
	if err != nil {
		t.Fatalf("Limit(MaxLimit): %v", err)
	}
	r.Release(t.Context())
}

// Waiters for a semaphore are served in the order they arrived, each as a
// permit frees.
func TestSemaphoreQueueOrder(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rdb := srv.Client(t)
	holder := newTestClient(t, srv, Options{By: "holder", TTL: 10 * time.Second})
	var held []*Reservation
	for range 2 {
		r, err := holder.TryLock(ctx, "pool", Limit(2))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
	}
	got := make(chan int, 4)
	for i := range 4 {
		c := newTestClient(t, srv, Options{By: fmt.Sprintf("w%d", i), TTL: 10 * time.Second})
		go func() {
			_, err := c.Lock(ctx, "pool", Limit(2))
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("waiter %d: %v", i, err)
				}
				return
			}
			got <- i // and hold it to the end
		}()
		untilQueued(t, rdb, "reservation-pool", i+1)
	}
	for k, r := range held {
		if err := r.Release(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case i := <-got:
			if i != k {
				t.Fatalf("waiter %d had a permit, want %d", i, k)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("no waiter had the permit freed")
		}
	}
	// A newcomer's TryLock does not jump the queue.
	if _, err := holder.TryLock(ctx, "pool", Limit(2)); !errors.Is(err, ErrNotAcquired) {
		t.Errorf("TryLock while two wait: %v, want ErrNotAcquired", err)
	}
}
