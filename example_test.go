package reservation_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// redisURL is the address of the throwaway server the examples run against.
var redisURL string

func TestMain(m *testing.M) {
	srv, stop, err := redistest.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	redisURL = srv.URL()
	code := m.Run()
	stop()
	stopTopologies()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newExampleClient is New with the restart guard primed, as a fresh test
// server needs.
func newExampleClient(by string, ttl time.Duration) *reservation.Client {
	c, err := reservation.New(redisURL, &reservation.Options{By: by, TTL: ttl, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.PrimeRestartGuard(context.Background()); err != nil {
		log.Fatal(err)
	}
	return c
}

// The Node constructor, new ReserveResource(by, host, port,
// heartbeat_interval, lock_ttl, log, password), is New with Options.
func ExampleNew() {
	c, err := reservation.New(redisURL, &reservation.Options{
		By:                "worker-name",
		HeartbeatInterval: 10 * time.Minute,
		TTL:               30 * time.Minute,
		Logger:            slog.Default(), // the default
		Password:          "",             // the default: none, or the URL's
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println(c.Options().TTL, c.Options().HeartbeatInterval)
	// Output: 30m0s 10m0s
}

// lock(job_name, cb(err, lock_status)) tries once and returns at once: a
// resource held by someone else is an error matching ErrNotAcquired, which
// says who holds it.
func ExampleClient_TryLock() {
	c := newExampleClient("worker-name", 30*time.Second)
	defer c.Close()
	ctx := context.Background()

	r, err := c.TryLock(ctx, "job_name")
	switch {
	case err == nil:
		fmt.Println("doing the job")
		defer r.Release(ctx)
	case errors.Is(err, reservation.ErrNotAcquired):
		fmt.Println("Reservation already held")
	default:
		log.Fatal(err)
	}

	// A second worker finds it held.
	other := newExampleClient("other-worker", 30*time.Second)
	defer other.Close()
	_, err = other.TryLock(ctx, "job_name")
	var held *reservation.NotAcquiredError
	if errors.As(err, &held) {
		fmt.Println("held by", held.Holder[:len("worker-name")], "for up to", time.Duration(math.Ceil(held.Remaining.Seconds()))*time.Second)
	}
	// Output:
	// doing the job
	// held by worker-name for up to 30s
}

// wait_until_lock(job_name, cb(err, reserve_key)) blocks until it holds the
// resource; the reservation's key is the Node library's reserve_key.
func ExampleClient_Lock() {
	c := newExampleClient("worker-name", 30*time.Second)
	defer c.Close()
	ctx := context.Background()

	r, err := c.Lock(ctx, "wait_job")
	if err != nil {
		log.Fatal(err)
	}
	defer r.Release(ctx)
	fmt.Println(r.Key())
	// Output: reservation-wait_job
}

// Waiters in different processes (here, Clients) are served in the order
// they arrived, and TryLock does not go ahead of them.
func ExampleClient_Lock_fair() {
	ctx := context.Background()
	holder := newExampleClient("holder", 30*time.Second)
	defer holder.Close()
	r, err := holder.TryLock(ctx, "fair_job")
	if err != nil {
		log.Fatal(err)
	}

	served := make(chan string, 3)
	for _, by := range []string{"first", "second", "third"} {
		w := newExampleClient(by, 30*time.Second)
		defer w.Close()
		go func() {
			r, err := w.Lock(ctx, "fair_job")
			if err != nil {
				log.Fatal(err)
			}
			served <- by
			r.Release(ctx)
		}()
		// Wait until it queues, as workers arriving one after another.
		for info, _ := holder.Status(ctx, "fair_job"); len(info.Waiters) == 0 || !strings.HasPrefix(info.Waiters[len(info.Waiters)-1], by+"-"); info, _ = holder.Status(ctx, "fair_job") {
			time.Sleep(time.Millisecond)
		}
	}

	_, err = holder.TryLock(ctx, "fair_job")
	var nerr *reservation.NotAcquiredError
	if errors.As(err, &nerr) {
		fmt.Println("TryLock refused:", nerr.Queued, "waiters queue")
	}
	r.Release(ctx)
	fmt.Println(<-served, <-served, <-served)
	// Output:
	// TryLock refused: 3 waiters queue
	// first second third
}

// A wait bounded by a deadline ends with an error that matches both
// ErrNotAcquired and the context's error.
func ExampleClient_Lock_deadline() {
	holder := newExampleClient("holder", 30*time.Second)
	defer holder.Close()
	waiter := newExampleClient("waiter", 30*time.Second)
	defer waiter.Close()

	r, err := holder.TryLock(context.Background(), "busy_job")
	if err != nil {
		log.Fatal(err)
	}
	defer r.Release(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = waiter.Lock(ctx, "busy_job")
	fmt.Println(errors.Is(err, reservation.ErrNotAcquired), errors.Is(err, context.DeadlineExceeded))
	// Output: true true
}

// release(cb(err)) fails when the reservation was already lost or
// released, and on the nil reservation of a failed TryLock.
func ExampleReservation_Release() {
	c := newExampleClient("worker-name", 30*time.Second)
	defer c.Close()
	ctx := context.Background()

	r, err := c.TryLock(ctx, "release_job")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Release(ctx))
	if err := r.Release(ctx); err != nil {
		fmt.Println("Could not release lock, maybe the reservation was already lost?")
		fmt.Println(errors.Is(err, reservation.ErrNotHeld))
	}
	var none *reservation.Reservation
	fmt.Println(errors.Is(none.Release(ctx), reservation.ErrNotHeld))
	// Output:
	// <nil>
	// Could not release lock, maybe the reservation was already lost?
	// true
	// true
}

// Done closes the moment the reservation is lost, here within milliseconds
// of an operator's forced release although the next renewal is minutes
// away; Context carries the cause.
func ExampleReservation_Done() {
	c := newExampleClient("worker-name", 30*time.Minute)
	defer c.Close()
	ctx := context.Background()

	r, err := c.TryLock(ctx, "fragile_job")
	if err != nil {
		log.Fatal(err)
	}
	// Someone deletes the key behind the holder's back.
	deleteKey(r.Key())

	select {
	case <-r.Done():
		fmt.Println("lost:", errors.Is(context.Cause(r.Context()), reservation.ErrLost))
	case <-time.After(time.Second):
		fmt.Println("still held")
	}
	// Output: lost: true
}

// Every acquisition gets a token greater than all before it, for the
// storage the reservation protects to refuse stale holders.
func ExampleReservation_Token() {
	c := newExampleClient("worker-name", 30*time.Second)
	defer c.Close()
	ctx := context.Background()

	first, err := c.TryLock(ctx, "fenced_job")
	if err != nil {
		log.Fatal(err)
	}
	first.Release(ctx)
	second, err := c.TryLock(ctx, "fenced_job")
	if err != nil {
		log.Fatal(err)
	}
	defer second.Release(ctx)
	fmt.Println(second.Token() > first.Token())
	// Output: true
}

// deleteKey deletes a key with a plain client, as an operator would.
func deleteKey(key string) {
	c := newExampleClient("operator", 30*time.Second)
	defer c.Close()
	if _, err := c.ForceRelease(context.Background(), key[len("reservation-"):]); err != nil {
		log.Fatal(err)
	}
}

// A semaphore: at most 2 exports run at once across the fleet. Each permit
// is a reservation of its own, with its key and fencing token.
func ExampleLimit() {
	ctx := context.Background()
	c := newExampleClient("exporter", 30*time.Second)
	defer c.Close()

	a, err := c.TryLock(ctx, "exports", reservation.Limit(2))
	if err != nil {
		log.Fatal(err)
	}
	b, err := c.TryLock(ctx, "exports", reservation.Limit(2))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(a.Key(), b.Key(), b.Token() > a.Token())

	_, err = c.TryLock(ctx, "exports", reservation.Limit(2))
	fmt.Println("third:", errors.Is(err, reservation.ErrNotAcquired))

	a.Release(ctx)
	third, err := c.TryLock(ctx, "exports", reservation.Limit(2))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("third, once one released:", third.Key())
	b.Release(ctx)
	third.Release(ctx)
	// Output:
	// {reservation-exports}:permit-1 {reservation-exports}:permit-2 true
	// third: true
	// third, once one released: {reservation-exports}:permit-1
}

// Several resources at once, all or none: a job that moves money between
// two accounts holds both, with a fencing token for each.
func ExampleWith() {
	ctx := context.Background()
	c := newExampleClient("mover", 30*time.Second)
	defer c.Close()
	other := newExampleClient("other", 30*time.Second)
	defer other.Close()

	b, err := other.TryLock(ctx, "account-b")
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.TryLock(ctx, "account-a", reservation.With("account-b"))
	var nerr *reservation.NotAcquiredError
	if errors.As(err, &nerr) {
		fmt.Println("refused by", nerr.Resource)
	}
	b.Release(ctx)

	r, err := c.Lock(ctx, "account-a", reservation.With("account-b"))
	if err != nil {
		log.Fatal(err)
	}
	defer r.Release(ctx)
	for _, f := range r.Fences() {
		fmt.Println(f.Resource, f.Token > 0)
	}
	// Output:
	// refused by account-b
	// account-a true
	// account-b true
}
