package reservation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/internal/redistest"
)

// A set is acquired all or none: one member held refuses the set and
// leaves the others free; then the set is had with one token each, under
// one holder value, and Release frees every member.
func TestSetAllOrNothing(t *testing.T) {
	for _, noQueue := range []bool{false, true} {
		t.Run(fmt.Sprintf("noqueue=%v", noQueue), func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := t.Context()
			rdb := srv.Client(t)
			other := newTestClient(t, srv, Options{By: "other", NoQueue: noQueue})
			c := newTestClient(t, srv, Options{By: "c", NoQueue: noQueue})
			b := mustLock(t, other, "b")
			_, err := c.TryLock(ctx, "a", With("b", "c", "a"))
			var nerr *NotAcquiredError
			if !errors.As(err, &nerr) || nerr.Resource != "b" || nerr.Holder != b.Holder() {
				t.Fatalf("TryLock of a set with b held: %v, want refused by b's holder", err)
			}
			for _, k := range []string{"reservation-a", "reservation-c"} {
				if n := rdb.Exists(ctx, k).Val(); n != 0 {
					t.Errorf("%s held after the set was refused", k)
				}
			}
			if err := b.Release(ctx); err != nil {
				t.Fatal(err)
			}
			r, err := c.TryLock(ctx, "a", With("b", "c", "a"))
			if err != nil {
				t.Fatalf("TryLock of a free set: %v", err)
			}
			fences := r.Fences()
			if len(fences) != 3 || fences[0].Resource != "a" || fences[1].Resource != "b" || fences[2].Resource != "c" ||
				r.Resource() != "a" || r.Token() != fences[0].Token {
				t.Fatalf("Fences %v, Resource %q, Token %d; want a, b, c with a first", fences, r.Resource(), r.Token())
			}
			if fences[1].Token <= b.Token() {
				t.Errorf("b's token %d in the set is not above its last holder's %d", fences[1].Token, b.Token())
			}
			for _, k := range []string{"reservation-a", "reservation-b", "reservation-c"} {
				if v := rdb.Get(ctx, k).Val(); v != r.Holder() {
					t.Errorf("%s holds %q, want the set's holder %q", k, v, r.Holder())
				}
			}
			time.Sleep(1500 * time.Millisecond) // renewed: 1.5 TTLs
			if err := r.Err(); err != nil || r.Validity() <= 0 {
				t.Fatalf("set after 1.5 TTLs: %v, validity %v", err, r.Validity())
			}
			if err := r.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if n := rdb.Exists(ctx, "reservation-a", "reservation-b", "reservation-c").Val(); n != 0 {
				t.Errorf("%d keys of the set remain after its release", n)
			}
			if !errors.Is(r.Err(), ErrReleased) {
				t.Errorf("Err after Release: %v", r.Err())
			}
			if err := r.Release(ctx); !errors.Is(err, ErrNotHeld) {
				t.Errorf("second Release: %v, want ErrNotHeld", err)
			}
		})
	}
}

// Callers that ask for overlapping sets in different orders never
// deadlock, and never hold a member at once.
func TestSetNoDeadlock(t *testing.T) {
	for _, noQueue := range []bool{false, true} {
		t.Run(fmt.Sprintf("noqueue=%v", noQueue), func(t *testing.T) {
			srv := redistest.Start(t)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			sets := [][]string{{"x", "y"}, {"y", "x"}, {"y", "z", "x"}, {"z", "x"}}
			var (
				wg      sync.WaitGroup
				holders [3]atomic.Int32
				done    atomic.Int32
			)
			index := map[string]int{"x": 0, "y": 1, "z": 2}
			for i, set := range sets {
				c := newTestClient(t, srv, Options{By: fmt.Sprintf("c%d", i), NoQueue: noQueue})
				for range 2 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range 15 {
							r, err := c.Lock(ctx, set[0], With(set[1:]...))
							if err != nil {
								t.Errorf("set %v: %v", set, err)
								return
							}
							for _, m := range set {
								if holders[index[m]].Add(1) > 1 {
									t.Errorf("%s held twice at once", m)
								}
							}
							time.Sleep(time.Millisecond)
							for _, m := range set {
								holders[index[m]].Add(-1)
							}
							if err := r.Release(ctx); err != nil {
								t.Errorf("set %v: release: %v", set, err)
								return
							}
							done.Add(1)
						}
					}()
				}
			}
			wg.Wait()
			if n := done.Load(); n != 8*15 {
				t.Errorf("%d sets held and released, want %d", n, 8*15)
			}
		})
	}
}

// A member lost is the set lost: Done closes with ErrLost naming it, and
// the other members are given back.
func TestSetLossOfAMember(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rdb := srv.Client(t)
	c := newTestClient(t, srv, Options{TTL: 5 * time.Second})
	r, err := c.TryLock(ctx, "p", With("q", "s"))
	if err != nil {
		t.Fatal(err)
	}
	rdb.Del(ctx, "reservation-q") // behind its back
	waitDone(t, r, time.Second)
	if err := r.Err(); !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), `member "q"`) {
		t.Errorf("set's Err: %v, want ErrLost naming member q", err)
	}
	waitFor(t, func() bool { return rdb.Exists(ctx, "reservation-p", "reservation-s").Val() == 0 })
	if err := r.Release(ctx); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Release of a lost set: %v, want ErrNotHeld", err)
	}
}

// A waiter for a set is woken at once by the release of the member that
// refused it, and a single waiter that came later waits behind it, even
// for a member that is free.
func TestSetLockWokenAndFirstServed(t *testing.T) {
	for _, tc := range []struct{ tracking, noQueue bool }{{true, false}, {false, false}, {true, true}, {false, true}} {
		t.Run(fmt.Sprintf("tracking=%v,noqueue=%v", tc.tracking, tc.noQueue), func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := t.Context()
			rdb := srv.Client(t)
			holder := newTestClient(t, srv, Options{By: "holder", TTL: 10 * time.Second})
			waiter := newTestClient(t, srv, Options{By: "waiter", TTL: 10 * time.Second, NoQueue: tc.noQueue})
			waiter.noTracking = !tc.tracking
			a := mustLock(t, holder, "a")
			got := lockLater(t, waiter, "a", With("b"))
			if !tc.noQueue {
				untilQueued(t, rdb, "reservation-b", 1)
				// b is free, but the set waits for it first.
				if _, err := holder.TryLock(ctx, "b"); !errors.Is(err, ErrNotAcquired) {
					t.Errorf("TryLock of b while a set queues for it: %v, want ErrNotAcquired", err)
				}
			} else {
				time.Sleep(200 * time.Millisecond)
			}
			if err := a.Release(ctx); err != nil {
				t.Fatal(err)
			}
			awaitHeld(t, got, time.Now(), 100*time.Millisecond, "the set waiter, after a's release,")
		})
	}
}

// Bad sets are refused before any round trip.
func TestSetBadOptions(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, Options{})
	many := make([]string, MaxSet)
	for i := range many {
		many[i] = fmt.Sprintf("r%d", i)
	}
	for _, tc := range []struct {
		name string
		opts []LockOption
		want error
	}{
		{"semaphore", []LockOption{With("b"), Limit(2)}, ErrInvalidOptions},
		{"too many", []LockOption{With(many...)}, ErrInvalidOptions},
		{"empty name", []LockOption{With("")}, ErrInvalidResource},
	} {
		if _, err := c.TryLock(t.Context(), "a", tc.opts...); !errors.Is(err, tc.want) {
			t.Errorf("%s: TryLock: %v, want %v", tc.name, err, tc.want)
		}
		if _, err := c.Lock(t.Context(), "a", tc.opts...); !errors.Is(err, tc.want) {
			t.Errorf("%s: Lock: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// Close releases a set's members, and the set ends as released.
func TestSetClose(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, err := New(srv.URL(), &Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	c.PrimeRestartGuard(t.Context())
	r, err := c.TryLock(t.Context(), "m", With("n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, r, time.Second)
	if !errors.Is(r.Err(), ErrReleased) {
		t.Errorf("set's Err after Close: %v, want ErrReleased", r.Err())
	}
	if n := rdb.Exists(t.Context(), "reservation-m", "reservation-n").Val(); n != 0 {
		t.Errorf("%d keys of the set remain after Close", n)
	}
}

// A set's waiter behind another in a member's queue does not contend for
// that member, though it is free: it waits to be told its turn (or to renew
// its places), rather than try again and again.
func TestSetWaiterBehindWaits(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rdb := srv.Client(t)
	// The holder and the first waiter are quiet for the test's second
	// (no renewal, no retry): every EVALSHA the server counts meanwhile is
	// the second waiter's, on its pool or its tracking connection (which
	// a go-redis hook on the pool would not see).
	holder := newTestClient(t, srv, Options{By: "holder", TTL: 30 * time.Second})
	first := newTestClient(t, srv, Options{By: "first", TTL: 30 * time.Second, RetryInterval: 10 * time.Second})
	c := mustLock(t, holder, "c")
	// The first set waits at the head of a's queue for c; a is free.
	go first.Lock(ctx, "a", With("c"))
	untilQueued(t, rdb, "reservation-a", 1)
	// Its attempts when its turn channels' subscriptions are confirmed
	// come before the count starts.
	time.Sleep(200 * time.Millisecond)
	second := newTestClient(t, srv, Options{By: "second", TTL: 10 * time.Second})
	before := commandCalls(rdb.Info(ctx, "commandstats").Val(), "evalsha")
	wctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancel()
	if _, err := second.Lock(wctx, "a", With("b")); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("Lock behind another set: %v, want ErrNotAcquired", err)
	}
	// Its give-back, a release script per member, done as it leaves.
	untilQueued(t, rdb, "reservation-a", 1)
	untilQueued(t, rdb, "reservation-b", 0)
	// Its first attempt and those its notifier asks of every waiter to
	// look (as it starts, and as each turn channel's subscription is
	// confirmed, so that a turn told before is not missed): 4 in 16 runs
	// of 16; and the give-back's two. One that tried at every change, or
	// spun, would run hundreds.
	if n := commandCalls(rdb.Info(ctx, "commandstats").Val(), "evalsha") - before; n > 6 {
		t.Errorf("a set waiter behind another ran %d scripts in 0.7s, want at most 6 (4 attempts, 2 to give its places back)", n)
	}
	c.Release(ctx)
}

// A set waiter refused by one member waits for that member alone: the
// other members coming and going (a Node worker taking b and letting it
// go, as DEL and SET) do not have it try again, since it could not take
// the set anyway. The release of the member that refused wakes it at once.
func TestSetWaiterWatchesTheMemberThatRefused(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rdb := srv.Client(t)
	// No renewal within the test: every EVALSHA the server counts is an
	// attempt of the waiter (on its tracking connection or its pool).
	holder := newTestClient(t, srv, Options{By: "holder", TTL: 30 * time.Second})
	// Its retries, every 10 s, are no part of it either.
	waiter := newTestClient(t, srv, Options{By: "waiter", TTL: 30 * time.Second, RetryInterval: 10 * time.Second})
	a := mustLock(t, holder, "a")
	got := lockLater(t, waiter, "a", With("b"))
	untilQueued(t, rdb, "reservation-b", 1)
	time.Sleep(100 * time.Millisecond) // its turn channels subscribed, a watched
	before := commandCalls(rdb.Info(ctx, "commandstats").Val(), "evalsha")
	for range 20 {
		rdb.Set(ctx, "reservation-b", "node-worker", 50*time.Millisecond)
		time.Sleep(5 * time.Millisecond)
		rdb.Del(ctx, "reservation-b")
		time.Sleep(5 * time.Millisecond)
	}
	if n := commandCalls(rdb.Info(ctx, "commandstats").Val(), "evalsha") - before; n > 2 {
		t.Errorf("the set waiter refused by a tried %d times while b changed 40 times, want at most 2", n)
	}
	released := time.Now()
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	awaitHeld(t, got, released, time.Second, "the set waiter (its retry interval: 10s), after a's release,")
}

// A set's release runs on the notifier's tracking connection, as a plain
// release does: its DELs come back as no invalidation there (NOLOOP), so
// the holder does not read its members again to learn what its own
// release did.
func TestSetReleaseOnTheTrackingConnection(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, slowHeartbeat)
	n := started(t, c)
	settle(t, n, 0)
	before := n.rereads.Load()
	_, noticesBefore := n.snapshot()
	for i := range 20 {
		r, err := c.TryLock(ctx, fmt.Sprintf("a%d", i), With(fmt.Sprintf("b%d", i), fmt.Sprintf("c%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	// Each acquisition's own read watched its members (see
	// TestAcquisitionReadWatchesTheKey): 3 reads per set, none after.
	if got := n.rereads.Load() - before; got > 60 {
		t.Errorf("%d reads of held keys in 20 cycles of a set of 3, want 60 (the acquisitions'): the releases' DELs woke their holder", got)
	}
	// Whether or not a notice came before its holding ended (and woke
	// it), none may come at all: the DELs ran where NOLOOP drops them.
	if _, notices := n.snapshot(); notices != noticesBefore {
		t.Errorf("%d notices of keys in 20 cycles of a set of 3, want none: the releases' DELs came back as invalidations", notices-noticesBefore)
	}
}

// A set's release tells the Client's own waiters of its members, whose
// DELs on the tracking connection come back as no notice, even when a
// member was lost: here a was overwritten just before the release, whose
// reply for a is then 0, and whose loss ends b as well.
func TestSetReleaseWakesTheClientsOwnWaiters(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rdb := srv.Client(t)
	c := newTestClient(t, srv, Options{TTL: 10 * time.Second, NoQueue: true, RetryInterval: 10 * time.Second})
	for i := range 5 {
		a, b := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		r, err := c.TryLock(ctx, a, With(b))
		if err != nil {
			t.Fatal(err)
		}
		got := lockLater(t, c, b)
		time.Sleep(100 * time.Millisecond) // b watched by its waiter
		rdb.Set(ctx, "reservation-"+a, "someone-else", 0)
		start := time.Now()
		_ = r.Release(ctx) // a not ours: ErrNotHeld
		awaitHeld(t, got, start, time.Second, fmt.Sprintf("round %d: the waiter of %s (its retry interval: 10s), after the set's release,", i, b))
	}
}

// A set's release left running when its context ends (the server paused)
// ends the set as lost, its outcome unknown, and its keys are deleted once
// the server answers.
func TestSetReleaseLeftWhenItsContextEnds(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rdb := srv.Client(t)
	c := newTestClient(t, srv, Options{TTL: 10 * time.Second})
	r, err := c.TryLock(ctx, "a", With("b"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", 1000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = r.Release(rctx)
	if !errors.Is(err, ErrLost) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Release as its context ended = %v, want ErrLost and the deadline", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Release returned %v after its call, past its context (50ms) and toward the pause's end (1s)", d)
	}
	if !errors.Is(r.Err(), ErrLost) {
		t.Errorf("set's Err() = %v, want ErrLost", r.Err())
	}
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n := rdb.Exists(ctx, "reservation-a", "reservation-b").Val(); n == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d of the set's keys still there 3s after its release (the pause: 1s)", n)
		}
	}
}

// A set sent in a pipeline (on the notifier's tracking connection, or
// with WaitReplicas) is acquired on a server that lost its scripts: the
// pipeline loads them all, the set's included, and sends it again.
func TestSetAfterScriptFlush(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{By: "flushed"})
	mustLock(t, c, "first").Release(ctx) // the notifier runs
	if _, err := c.notifierFor(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client(t).ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	r, err := c.TryLock(ctx, "a", With("b"))
	if err != nil {
		t.Fatalf("TryLock of a set after SCRIPT FLUSH: %v", err)
	}
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
