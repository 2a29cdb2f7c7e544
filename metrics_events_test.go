package reservation

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/internal/redistest"
)

// What the metrics adapters (metrics/) read from events: refusals, waits,
// holding times, renewal round trips and their size, and the cause of each
// loss, each provoked on a real server.

// recorder keeps the events a Client delivers to its OnEvent hook.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (rec *recorder) hook(e Event) {
	rec.mu.Lock()
	rec.events = append(rec.events, e)
	rec.mu.Unlock()
}

// of returns the events of kind k so far.
func (rec *recorder) of(k EventKind) []Event {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []Event
	for _, e := range rec.events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// wait returns the first event of kind k about resource ("": any),
// waiting up to limit for it.
func (rec *recorder) wait(t *testing.T, k EventKind, resource string, limit time.Duration) Event {
	t.Helper()
	return rec.waitFor(t, limit, func(e Event) bool { return e.Kind == k && (resource == "" || e.Resource == resource) })
}

// waitFor returns the first event that ok accepts, waiting up to limit.
func (rec *recorder) waitFor(t *testing.T, limit time.Duration, ok func(Event) bool) Event {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		rec.mu.Lock()
		i := slices.IndexFunc(rec.events, ok)
		var e Event
		if i >= 0 {
			e = rec.events[i]
		}
		rec.mu.Unlock()
		if i >= 0 {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("no such event within %v", limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TryLock refused because the resource is held: an EventRefused that
// says by whom. Acquisitions say how long Lock waited (TryLock: zero), and
// releases how long the reservation was held (ForceRelease: no token, no
// duration).
func TestEventRefusedWaitedHeld(t *testing.T) {
	srv := redistest.Start(t)
	var ra, rb recorder
	a := newTestClient(t, srv, Options{By: "a", OnEvent: ra.hook})
	b := newTestClient(t, srv, Options{By: "b", OnEvent: rb.hook})
	ctx := t.Context()

	r := mustLock(t, a, "job")
	if e := ra.wait(t, EventAcquired, "job", time.Second); e.Duration != 0 || e.Token != r.Token() {
		t.Errorf("TryLock's EventAcquired: Duration %v, Token %d; want 0 and %d", e.Duration, e.Token, r.Token())
	}
	if _, err := b.TryLock(ctx, "job"); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("TryLock of a held resource = %v; want ErrNotAcquired", err)
	}
	e := rb.wait(t, EventRefused, "job", time.Second)
	var nerr *NotAcquiredError
	if !errors.As(e.Err, &nerr) || nerr.Guard || e.Holder != r.Holder() || e.Key != r.Key() ||
		e.Duration <= 0 || e.Duration > time.Second {
		t.Errorf("EventRefused = %+v; want a NotAcquiredError, Holder %q, Key %q, Duration within the TTL", e, r.Holder(), r.Key())
	}

	// A set refused by its second member names that member.
	if _, err := b.TryLock(ctx, "other", With("job")); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("TryLock of a set with a held member = %v; want ErrNotAcquired", err)
	}
	firstRefusal := rb.of(EventRefused)[0]
	second := rb.waitFor(t, time.Second, func(e Event) bool { return e.Kind == EventRefused && e != firstRefusal })
	if second.Resource != "job" || second.Holder != r.Holder() {
		t.Errorf("EventRefused of the set = %+v; want Resource \"job\", Holder %q", second, r.Holder())
	}

	// Lock waits 200ms for the release.
	const wait = 200 * time.Millisecond
	got := make(chan *Reservation, 1)
	go func() {
		rr, err := b.Lock(ctx, "job")
		if err != nil {
			t.Errorf("Lock: %v", err)
		}
		got <- rr
	}()
	time.Sleep(wait)
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	rr := <-got
	if rr == nil {
		t.FailNow()
	}
	held := ra.wait(t, EventReleased, "job", time.Second)
	if held.Duration < wait || held.Duration > 5*time.Second || held.Token != r.Token() {
		t.Errorf("EventReleased: Duration %v, Token %d; want at least %v and %d", held.Duration, held.Token, wait, r.Token())
	}
	if e := rb.wait(t, EventAcquired, "job", time.Second); e.Duration < wait || e.Duration > 5*time.Second || e.Token != rr.Token() {
		t.Errorf("Lock's EventAcquired: Duration %v, Token %d; want at least %v and %d", e.Duration, e.Token, wait, rr.Token())
	}

	// Lock on a free resource waited a round trip: never zero.
	if _, err := b.Lock(ctx, "free"); err != nil {
		t.Fatal(err)
	}
	if e := rb.wait(t, EventAcquired, "free", time.Second); e.Duration <= 0 {
		t.Errorf("Lock's EventAcquired of a free resource: Duration %v; want above zero", e.Duration)
	}

	// ForceRelease: whose it was, with no token and no duration. The
	// holder loses it: a foreign change.
	if _, err := a.ForceRelease(ctx, "job"); err != nil {
		t.Fatal(err)
	}
	forced := ra.waitFor(t, time.Second, func(e Event) bool { return e.Kind == EventReleased && e.Holder == rr.Holder() })
	if forced.Holder != rr.Holder() || forced.Token != 0 || forced.Duration != 0 {
		t.Errorf("ForceRelease's EventReleased = %+v; want Holder %q, no Token, no Duration", forced, rr.Holder())
	}
	if e := rb.wait(t, EventLost, "job", 2*time.Second); e.Cause != LossForeign {
		t.Errorf("loss after a force release: Cause %q; want %q", e.Cause, LossForeign)
	}
}

// Close releases what is held, and says so, even for a user that may not
// publish release notices (an ACL user of Redis 7 has no channel).
func TestEventReleasedByCloseWithoutChannels(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	if err := srv.Client(t).Do(ctx, "ACL", "SETUSER", "worker", "on", ">pw", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	c, err := New(strings.Replace(srv.URL(), "redis://", "redis://worker:pw@", 1), &Options{By: "acl", Logger: quiet, OnEvent: rec.hook})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.PrimeRestartGuard(ctx); err != nil {
		t.Fatal(err)
	}
	r := mustLock(t, c, "job")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if e := rec.wait(t, EventReleased, "job", time.Second); e.Token != r.Token() || e.Duration <= 0 {
		t.Errorf("EventReleased by Close = %+v; want Token %d and a Duration", e, r.Token())
	}
}

// TryLock held back by the restart guard: an EventRefused whose error
// matches ErrRestartGuard.
func TestEventRefusedByRestartGuard(t *testing.T) {
	srv := redistest.Start(t)
	var rec recorder
	c, err := New(srv.URL(), &Options{By: "g", TTL: time.Second, Logger: quiet, OnEvent: rec.hook})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.TryLock(t.Context(), "job"); !errors.Is(err, ErrRestartGuard) {
		t.Fatalf("TryLock on a new server = %v; want ErrRestartGuard", err)
	}
	e := rec.wait(t, EventRefused, "job", time.Second)
	if !errors.Is(e.Err, ErrRestartGuard) || !errors.Is(e.Err, ErrNotAcquired) || e.Duration <= 0 {
		t.Errorf("EventRefused = %+v; want an error matching ErrRestartGuard, and the time left", e)
	}
	rec.wait(t, EventRestartGuard, "job", time.Second)
}

// One renewal round trip extends several reservations: their events say
// so once, on the first of them, with the round trip's size.
func TestEventExtendedBatch(t *testing.T) {
	srv := redistest.Start(t)
	var rec recorder
	c := newTestClient(t, srv, Options{OnEvent: rec.hook, HeartbeatInterval: 100 * time.Millisecond})
	// A set: five reservations acquired at once, due at once.
	const n = 5
	if _, err := c.TryLock(t.Context(), "a", With("b", "c", "d", "e")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(450 * time.Millisecond) // a few rounds
	if err := c.Close(); err != nil {  // delivers every event
		t.Fatal(err)
	}
	ext := rec.of(EventExtended)
	if len(ext) < 2*n {
		t.Fatalf("%d EventExtended after 4 heartbeat intervals; want at least %d", len(ext), 2*n)
	}
	rounds, full := 0, 0
	for i := 0; i < len(ext); {
		first := ext[i]
		if first.Batch <= 0 || i+first.Batch > len(ext) {
			t.Fatalf("event %d of %d opens a round trip with Batch %d", i, len(ext), first.Batch)
		}
		var names []string
		for _, e := range ext[i : i+first.Batch] {
			if e != first && e.Batch != 0 || e.Duration != first.Duration || e.Duration <= 0 {
				t.Fatalf("round trip at event %d: %+v; want Batch 0 and the round trip's Duration %v", i, e, first.Duration)
			}
			names = append(names, e.Resource)
		}
		slices.Sort(names)
		if len(slices.Compact(names)) != first.Batch {
			t.Errorf("round trip at event %d renews %v: a reservation twice", i, names)
		}
		rounds++
		if first.Batch == n {
			full++
		}
		i += first.Batch
	}
	if full == 0 {
		t.Errorf("none of %d round trips renewed all %d reservations at once", rounds, n)
	}
	for _, e := range rec.events {
		if e.Kind != EventExtended && e.Batch != 0 {
			t.Errorf("%s with Batch %d; want 0 on any other kind", e.Kind, e.Batch)
		}
		if e.Kind != EventLost && e.Cause != "" {
			t.Errorf("%s with Cause %q; want it on EventLost only", e.Kind, e.Cause)
		}
	}
}

// Each cause of a loss, provoked, is in its event.
func TestEventLossCauses(t *testing.T) {
	// checkLost checks the EventLost of r.
	checkLost := func(t *testing.T, rec *recorder, r *Reservation, want LossCause, limit time.Duration) {
		t.Helper()
		e := rec.wait(t, EventLost, r.Resource(), limit)
		if e.Cause != want || !errors.Is(e.Err, ErrLost) || e.Token != r.Token() || e.Holder != r.Holder() || e.Duration <= 0 {
			t.Errorf("EventLost = %+v; want Cause %q, an error matching ErrLost, Token %d, Holder %q, a Duration",
				e, want, r.Token(), r.Holder())
		}
		if !errors.Is(r.Err(), ErrLost) {
			t.Errorf("Err = %v; want ErrLost", r.Err())
		}
	}

	t.Run("foreign", func(t *testing.T) {
		srv := redistest.Start(t)
		var rec recorder
		c := newTestClient(t, srv, Options{OnEvent: rec.hook, TTL: 30 * time.Second})
		r := mustLock(t, c, "job")
		srv.Client(t).Del(t.Context(), r.Key())
		checkLost(t, &rec, r, LossForeign, 2*time.Second)
	})

	t.Run("deadline", func(t *testing.T) {
		srv := redistest.Start(t)
		var rec recorder
		c := newTestClient(t, srv, Options{OnEvent: rec.hook, TTL: 500 * time.Millisecond})
		r := mustLock(t, c, "job")
		srv.Pause()
		t.Cleanup(srv.Resume) // before Close
		checkLost(t, &rec, r, LossDeadline, 2*time.Second)
		if len(rec.of(EventRedisError)) == 0 {
			t.Errorf("no EventRedisError for the renewals that failed")
		}
	})

	t.Run("redis-error", func(t *testing.T) {
		srv := redistest.Start(t)
		var rec recorder
		c := newTestClient(t, srv, Options{OnEvent: rec.hook, TTL: 30 * time.Second})
		r := mustLock(t, c, "job")
		srv.Pause()
		t.Cleanup(srv.Resume)
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		if err := r.Release(ctx); !errors.Is(err, ErrLost) {
			t.Fatalf("Release on a paused server = %v; want ErrLost", err)
		}
		checkLost(t, &rec, r, LossRedisError, time.Second)
		if e := rec.wait(t, EventRedisError, "job", time.Second); e.Err == nil {
			t.Errorf("EventRedisError without an error")
		}
	})

	t.Run("quorum", func(t *testing.T) {
		servers := redistest.StartMasters(t, 3)
		var rec recorder
		c := newTestQuorum(t, servers, Options{OnEvent: rec.hook, TTL: 30 * time.Second})
		r, err := c.TryLock(t.Context(), "job")
		if err != nil {
			t.Fatal(err)
		}
		// Overwritten on two servers of three: nobody can take the
		// parts back there, and the majority is gone.
		for _, s := range servers[:2] {
			s.Client(t).Set(t.Context(), r.Key(), "intruder", 0)
		}
		checkLost(t, &rec, r, LossQuorum, 2*time.Second)
	})
}
