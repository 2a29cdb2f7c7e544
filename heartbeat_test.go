package reservation

import (
	"errors"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/internal/redistest"
)

// scheduleClient returns a Client that is never connected, for testing the
// heartbeat's schedule as a pure function of time.
func scheduleClient(t *testing.T, ttl, hb time.Duration) *Client {
	t.Helper()
	o, err := (&Options{By: "sched", TTL: ttl, HeartbeatInterval: hb, Logger: quiet}).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(nil, o)
	t.Cleanup(c.cancel)
	return c
}

func TestScheduleBatchesNearbyRenewals(t *testing.T) {
	const ttl, hb = 3 * time.Second, time.Second
	c := scheduleClient(t, ttl, hb)
	t0 := time.Unix(1000, 0)
	// Acquired at t0, t0+200ms, t0+400ms and t0+900ms: due a heartbeat later.
	for _, off := range []time.Duration{0, 200, 400, 900} {
		r := newReservation(c, "r", "k", "v", 1, t0.Add(off*time.Millisecond))
		c.held[r] = struct{}{}
	}

	// Before the first is due: nothing to do, look again when it is.
	batch, next := c.due(t0.Add(500 * time.Millisecond))
	if len(batch) != 0 || !next.Equal(t0.Add(hb)) {
		t.Fatalf("at +500ms: batch %d, next %v; want 0 and %v", len(batch), next.Sub(t0), hb)
	}
	// The local deadline: sent + TTL - (1% of it + DriftMargin).
	for r := range c.held {
		if r.acquired.Equal(t0) {
			if want := t0.Add(ttl - ttl/100 - DefaultDriftMargin); !r.deadline.Equal(want) {
				t.Errorf("deadline %v, want %v", r.deadline.Sub(t0), want.Sub(t0))
			}
		}
	}

	// When the first falls due, those due within half an interval come
	// along (+1.2s and +1.4s), the one due at +1.9s waits.
	batch, next = c.due(t0.Add(hb))
	if len(batch) != 3 {
		t.Fatalf("at +1s: batch of %d, want 3", len(batch))
	}
	if want := t0.Add(1900 * time.Millisecond); !next.Equal(want) {
		t.Errorf("next = %v, want %v", next.Sub(t0), want.Sub(t0))
	}
	// Their renewal under way (on a node that does not answer, say), they
	// are not sent again; the fourth waits for its own time.
	batch, next = c.due(t0.Add(hb + 100*time.Millisecond))
	if len(batch) != 0 || !next.Equal(t0.Add(1900*time.Millisecond)) {
		t.Errorf("at +1.1s with three renewals under way: batch %d, next %v; want 0 and 1.9s", len(batch), next.Sub(t0))
	}
}

func TestScheduleDeclaresLossAtDeadline(t *testing.T) {
	const ttl, hb = time.Second, 300 * time.Millisecond
	c := scheduleClient(t, ttl, hb)
	t0 := time.Unix(1000, 0)
	r := newReservation(c, "r", "k", "v", 1, t0)
	c.held[r] = struct{}{}
	deadline := t0.Add(840 * time.Millisecond) // 1 s less 1% and the default 150 ms

	// A renewal that keeps failing is retried, never past the deadline.
	c.due(deadline.Add(-time.Millisecond))
	if r.Err() != nil {
		t.Fatalf("lost a millisecond before the deadline: %v", r.Err())
	}
	batch, _ := c.due(deadline)
	if len(batch) != 0 || !errors.Is(r.Err(), ErrLost) {
		t.Fatalf("at the deadline: batch %d, Err %v; want 0, ErrLost", len(batch), r.Err())
	}
	select {
	case <-r.Done():
	default:
		t.Fatal("Done not closed at the deadline")
	}
	if got := r.deadline.Sub(t0); got != 840*time.Millisecond {
		t.Errorf("deadline %v after the send, want TTL less 1%% less 150ms = 840ms", got)
	}
}

func TestScheduleSkipsReleasing(t *testing.T) {
	c := scheduleClient(t, time.Second, 300*time.Millisecond)
	t0 := time.Unix(1000, 0)
	r := newReservation(c, "r", "k", "v", 1, t0)
	r.releasing = true
	c.held[r] = struct{}{}
	if batch, _ := c.due(t0.Add(400 * time.Millisecond)); len(batch) != 0 {
		t.Errorf("a reservation being released was renewed")
	}
}

func TestBackoff(t *testing.T) {
	c := scheduleClient(t, 10*time.Second, 2*time.Second)
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{1, 10 * time.Millisecond}, {2, 20 * time.Millisecond}, {3, 40 * time.Millisecond},
		{6, 320 * time.Millisecond}, {7, 500 * time.Millisecond}, {60, 500 * time.Millisecond},
	} {
		if got := c.backoff(tc.n); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

// Renewals go in pipelines of EVALSHA; where SCRIPT is renamed away (or
// denied) they cannot load their script, and fall back to EVAL.
func TestRenewalsWithoutScriptLoad(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--rename-command", "SCRIPT", ""))
	c := newTestClient(t, srv, Options{TTL: 300 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond})
	r := mustLock(t, c, "no-script-load")
	select {
	case <-r.Done():
		t.Fatalf("lost with SCRIPT renamed: %v", r.Err())
	case <-time.After(time.Second): // more than three TTLs
	}
}
