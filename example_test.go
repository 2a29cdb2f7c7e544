package reservation_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
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
	if err := c.PrimeRestartGuard(context.Background()); err != nil {
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

// lock(job_name, cb(err, lock_status)) answers at once.
func ExampleClient_Lock() {
	c := newExampleClient("worker-name", 30*time.Second)
	defer c.Close()
	ctx := context.Background()

	r, ok, err := c.Lock(ctx, "job_name")
	if err != nil {
		log.Fatal(err)
	}
	if ok {
		fmt.Println("doing the job")
		defer r.Release(ctx)
	} else {
		fmt.Println("Reservation already held")
	}

	// A second worker finds it held.
	other := newExampleClient("other-worker", 30*time.Second)
	defer other.Close()
	_, ok, err = other.Lock(ctx, "job_name")
	fmt.Println(ok, err)
	// Output:
	// doing the job
	// false <nil>
}

// wait_until_lock(job_name, cb(err, reserve_key)) blocks until it holds the
// resource; the reservation's key is the Node library's reserve_key.
func ExampleClient_WaitUntilLock() {
	c := newExampleClient("worker-name", 30*time.Second)
	defer c.Close()
	ctx := context.Background()

	r, err := c.WaitUntilLock(ctx, "wait_job")
	if err != nil {
		log.Fatal(err)
	}
	defer r.Release(ctx)
	fmt.Println(r.Key())
	// Output: reservation-wait_job
}

// A wait bounded by a deadline ends with both ErrNotAcquired and the
// context's error.
func ExampleClient_WaitUntilLock_deadline() {
	holder := newExampleClient("holder", 30*time.Second)
	defer holder.Close()
	waiter := newExampleClient("waiter", 30*time.Second)
	defer waiter.Close()

	r, _, _ := holder.Lock(context.Background(), "busy_job")
	defer r.Release(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := waiter.WaitUntilLock(ctx, "busy_job")
	fmt.Println(errors.Is(err, reservation.ErrNotAcquired), errors.Is(err, context.DeadlineExceeded))
	// Output: true true
}

// release(cb(err)) fails when the reservation was already lost.
func ExampleReservation_Release() {
	c := newExampleClient("worker-name", 30*time.Second)
	defer c.Close()
	ctx := context.Background()

	r, _, _ := c.Lock(ctx, "release_job")
	fmt.Println(r.Release(ctx))
	if err := r.Release(ctx); err != nil {
		fmt.Println("Could not release lock, maybe the reservation was already lost?")
		fmt.Println(errors.Is(err, reservation.ErrNotHeld))
	}
	// Output:
	// <nil>
	// Could not release lock, maybe the reservation was already lost?
	// true
}

// Done closes the moment the reservation is lost; Context carries the cause.
func ExampleReservation_Done() {
	c := newExampleClient("worker-name", time.Second)
	defer c.Close()
	ctx := context.Background()

	r, _, _ := c.Lock(ctx, "fragile_job")
	// Someone deletes the key behind the holder's back.
	deleteKey(r.Key())

	select {
	case <-r.Done():
		fmt.Println("lost:", context.Cause(r.Context()))
	case <-time.After(5 * time.Second):
		fmt.Println("still held")
	}
	// Output: lost: reservation: lost
}

// Every acquisition gets a token greater than all before it, for the
// storage the reservation protects to refuse stale holders.
func ExampleReservation_Token() {
	c := newExampleClient("worker-name", 30*time.Second)
	defer c.Close()
	ctx := context.Background()

	first, _, _ := c.Lock(ctx, "fenced_job")
	first.Release(ctx)
	second, _, _ := c.Lock(ctx, "fenced_job")
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
