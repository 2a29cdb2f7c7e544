package reservation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation/internal/redistest"
)

// Regression tests for what the fault tests (faults/) found: a server that
// does not answer (paused, or behind a link that drops everything) must not
// hold a holder past its local deadline.

// A go-redis client of default options bounds a call by its ReadTimeout
// (5 s), not by the context: the heartbeat must still declare the loss at
// the local deadline, not when the renewal's answer finally comes.
func TestLossWhenRedisHangs(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	const ttl = 500 * time.Millisecond
	c, err := NewWithClient(rdb, &Options{By: "a", TTL: ttl, HeartbeatInterval: 150 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.PrimeRestartGuard(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := mustLock(t, c, "hang")
	time.Sleep(200 * time.Millisecond) // a renewal or so
	expiry := expiresAt(t, srv, r.Key())
	srv.Pause()
	t.Cleanup(srv.Resume) // before Close: the abandoned renewal needs an answer
	waitDone(t, r, 3*ttl)
	assertLossBefore(t, r, expiry)
}

// New's client bounds calls by their context.
func TestCallsBoundedByContext(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, Options{TTL: 5 * time.Second})
	r := mustLock(t, c, "bounded")
	srv.Pause()
	t.Cleanup(srv.Resume)
	for name, call := range map[string]func(context.Context) error{
		"Lock": func(ctx context.Context) error {
			_, _, err := tryLock(ctx, c, "other")
			return err
		},
		"Release": r.Release,
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		err := call(ctx)
		cancel()
		if took := time.Since(start); took > time.Second || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s with a 200ms context on a paused server = %v after %v, want DeadlineExceeded at once", name, err, took)
		}
	}
}

// An acquisition whose answer comes back after its local deadline is no
// use: the key may have expired and been taken meanwhile. Lock answers
// false and gives the key back.
func TestAcquireAnsweredAfterDeadline(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = time.Second
	c := newTestClient(t, srv, Options{TTL: ttl})
	srv.Pause()
	t.Cleanup(srv.Resume)
	go func() {
		time.Sleep(ttl + 100*time.Millisecond)
		srv.Resume()
	}()
	r, ok, err := tryLock(context.Background(), c, "late")
	if ok || r != nil || err != nil {
		t.Fatalf("Lock answered after its deadline = %v, %v; want false, nil", ok, err)
	}
	// Given back in the background, after Lock returned: well before the
	// key's TTL (from the script's run, at the resume) would expire it.
	rdb := srv.Client(t)
	waitWithin(t, ttl/2, "the key of the late acquisition not given back", func() bool {
		return rdb.Exists(context.Background(), "reservation-late").Val() == 0
	})
}
