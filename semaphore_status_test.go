package reservation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation/internal/redisserver"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// pipelineCounter counts the round trips a client makes: each command
// sent alone and each pipeline is one.
type pipelineCounter struct{ n *atomic.Int64 }

func countRoundTrips(rdb redis.UniversalClient) *atomic.Int64 {
	var n atomic.Int64
	rdb.AddHook(pipelineCounter{&n})
	return &n
}

func (pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// checkPermits fails the test unless in is a semaphore of limit permits
// held by held (in permit order), each with a TTL of at most its holder's.
func checkPermits(t *testing.T, in Info, limit int, held []*Reservation, ttls []time.Duration) {
	t.Helper()
	if in.Limit != limit || len(in.Permits) != len(held) {
		t.Fatalf("Info = %+v; want a semaphore of %d permits with %d held", in, limit, len(held))
	}
	for i, p := range in.Permits {
		r := held[i]
		if p.Key != r.Key() || p.Holder != r.Holder() || p.NoExpiry || p.TTL <= ttls[i]-time.Second || p.TTL > ttls[i] {
			t.Errorf("permit %d = %+v; want key %s, holder %s, TTL within a second under %v", i, p, r.Key(), r.Holder(), ttls[i])
		}
		if sem, ok := permitOf(p.Key); !ok || sem != in.Key || permitKey(in.Key, p.Number) != p.Key {
			t.Errorf("permit %d: key %s is not permit %d of %s", i, p.Key, p.Number, in.Key)
		}
	}
}

// Status shows a semaphore with every holder: its limit, each permit's
// key, holder and TTL, the holder and TTL of the first to expire, and the
// shared fence's last token; with the permits read in one more round trip.
// Once the permits are gone, the marker still says it is a semaphore.
func TestSemaphoreStatus(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rdb := srv.Client(t)
	long := newTestClient(t, srv, Options{By: "long", TTL: 20 * time.Second})
	short := newTestClient(t, srv, Options{By: "short", TTL: 10 * time.Second})
	a, err := long.TryLock(ctx, "exports", Limit(3))
	if err != nil {
		t.Fatal(err)
	}
	b, err := short.TryLock(ctx, "exports", Limit(3))
	if err != nil {
		t.Fatal(err)
	}
	plain := mustLock(t, long, "plain")

	op := newTestClient(t, srv, Options{By: "op"})
	trips := countRoundTrips(op.rdb)
	in, err := op.Status(ctx, "exports")
	if err != nil {
		t.Fatal(err)
	}
	if n := trips.Load(); n != 2 {
		t.Errorf("Status of a semaphore took %d round trips, want 2", n)
	}
	checkPermits(t, in, 3, []*Reservation{a, b}, []time.Duration{20 * time.Second, 10 * time.Second})
	if !in.Held || in.Key != "reservation-exports" || in.Holder != b.Holder() || in.TTL != in.Permits[1].TTL || in.NoExpiry {
		t.Errorf("Status = %+v; want held, the first to expire's holder %s and TTL", in, b.Holder())
	}
	if in.Token != max(a.Token(), b.Token()) {
		t.Errorf("Token = %d, want the last issued, %d", in.Token, max(a.Token(), b.Token()))
	}

	// A permit set by hand without expiry is shown, and comes last.
	rdb.Set(ctx, permitKey("reservation-exports", 3), "by-hand", 0)
	in, err = op.Status(ctx, "exports")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Permits) != 3 || in.Permits[2].Holder != "by-hand" || !in.Permits[2].NoExpiry || in.Permits[2].Number != 3 ||
		in.Holder != b.Holder() {
		t.Errorf("with a permit without expiry, Status = %+v", in)
	}

	// A reservation reads as before, in one round trip.
	trips.Store(0)
	in, err = op.Status(ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	if n := trips.Load(); n != 1 {
		t.Errorf("Status of a reservation took %d round trips, want 1", n)
	}
	if !in.Held || in.Holder != plain.Holder() || in.Limit != 0 || in.Permits != nil {
		t.Errorf("Status of a reservation = %+v", in)
	}

	// Every permit gone: not held, but still a semaphore while its
	// marker lasts.
	for _, r := range []*Reservation{a, b} {
		if err := r.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rdb.Del(ctx, permitKey("reservation-exports", 3))
	in, err = op.Status(ctx, "exports")
	if err != nil {
		t.Fatal(err)
	}
	if in.Held || in.Holder != "" || in.TTL != 0 || in.Limit != 3 || in.Permits != nil {
		t.Errorf("Status with no permit held = %+v; want free, a semaphore of 3", in)
	}
}

// List shows one entry for each semaphore with a permit held, with every
// holder, beside the reservations, and ForceRelease frees a semaphore; on a
// single server and on every master of a Cluster.
func TestSemaphoreList(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		srv := redistest.Start(t)
		c := newTestClient(t, srv, Options{By: "h", TTL: 10 * time.Second})
		checkList(t, c, []string{"a", "b", "c"})
	})
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t, redisserver.ClusterOptions{})
		c := clusterClient(t, cl, Options{By: "h", TTL: 10 * time.Second})
		names, byNode := spread(t, c, 3)
		if len(byNode) < 3 {
			t.Fatalf("names %v cover %d masters, want 3", names, len(byNode))
		}
		checkList(t, c, names)
	})
}

// checkList has c take two permits of a semaphore of 3 for each of names
// (all its masters, on a Cluster), and a reservation, and checks List.
func checkList(t *testing.T, c *Client, names []string) {
	t.Helper()
	ctx := t.Context()
	held := make(map[string][]*Reservation)
	for _, name := range names {
		for range 2 {
			r, err := c.TryLock(ctx, name, Limit(3))
			if err != nil {
				t.Fatal(err)
			}
			held[name] = append(held[name], r)
		}
	}
	plain := mustLock(t, c, "plain")
	// A semaphore with no permit held is not listed.
	gone, err := c.TryLock(ctx, "gone", Limit(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := gone.Release(ctx); err != nil {
		t.Fatal(err)
	}
	infos, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, in := range infos {
		listed = append(listed, in.Resource)
		if in.Resource == "plain" {
			if in.Holder != plain.Holder() || in.Limit != 0 || in.Permits != nil {
				t.Errorf("List has %+v for the reservation", in)
			}
			continue
		}
		checkPermits(t, in, 3, held[in.Resource], []time.Duration{10 * time.Second, 10 * time.Second})
	}
	want := append(slices.Clone(names), "plain")
	slices.Sort(want)
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		t.Errorf("List = %v, want %v: one entry for each semaphore and reservation held", listed, want)
	}
	// ForceRelease frees each, on its own master.
	for _, name := range names {
		if v, err := c.ForceRelease(ctx, name); err != nil || v != "semaphore:3" {
			t.Errorf("ForceRelease(%q) = %q, %v; want semaphore:3", name, v, err)
		}
		for _, r := range held[name] {
			waitDone(t, r, time.Second)
		}
	}
	infos, err = c.List(ctx, "")
	if err != nil || len(infos) != 1 || infos[0].Resource != "plain" {
		t.Errorf("List after ForceRelease = %+v, %v; want plain alone", infos, err)
	}
}

// ForceRelease of a semaphore deletes every permit and the marker at once:
// the holders learn of their loss, the waiters are woken, the name is free
// for a plain reservation, and each permit deleted is reported with its
// holder.
func TestSemaphoreForceRelease(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rdb := srv.Client(t)
	var held []*Reservation
	for i := range 2 {
		h := newTestClient(t, srv, Options{By: fmt.Sprintf("h%d", i), TTL: 10 * time.Second})
		r, err := h.TryLock(ctx, "stuck", Limit(2))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
	}
	var (
		mu     sync.Mutex
		events []Event
	)
	op := newTestClient(t, srv, Options{By: "op", OnEvent: func(e Event) {
		if e.Kind == EventReleased {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}
	}})
	v, err := op.ForceRelease(ctx, "stuck")
	if err != nil || v != "semaphore:2" {
		t.Fatalf("ForceRelease = %q, %v; want semaphore:2", v, err)
	}
	for _, r := range held {
		waitDone(t, r, time.Second)
		if !errors.Is(r.Err(), ErrLost) {
			t.Errorf("%s: %v, want ErrLost", r.Key(), r.Err())
		}
	}
	keys := append([]string{"reservation-stuck"}, permitKeys("reservation-stuck", 2)...)
	if n := rdb.Exists(ctx, keys...).Val(); n != 0 {
		t.Errorf("%d of the marker and permits left after ForceRelease", n)
	}
	op.Close() // delivers the events
	var got []string
	for _, e := range events {
		got = append(got, e.Key+"="+e.Holder)
	}
	want := []string{held[0].Key() + "=" + held[0].Holder(), held[1].Key() + "=" + held[1].Holder()}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("released events %v, want %v", got, want)
	}

	c := newTestClient(t, srv, Options{By: "c", TTL: 10 * time.Second})
	plain := mustLock(t, c, "stuck")
	if err := plain.Release(ctx); err != nil {
		t.Fatal(err)
	}

	// A marker with no permit held: deleted too.
	r, err := c.TryLock(ctx, "stuck", Limit(3))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := c.ForceRelease(ctx, "stuck"); err != nil || v != "semaphore:3" {
		t.Errorf("ForceRelease of a marker alone = %q, %v; want semaphore:3", v, err)
	}
	if v, err := c.ForceRelease(ctx, "stuck"); err != nil || v != "" {
		t.Errorf("ForceRelease of a free name = %q, %v; want \"\"", v, err)
	}
}

// A full semaphore's waiter is woken by a ForceRelease and takes a permit,
// with and without client tracking.
func TestSemaphoreForceReleaseWakesWaiter(t *testing.T) {
	for _, tracking := range []bool{true, false} {
		t.Run(fmt.Sprintf("tracking=%v", tracking), func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := t.Context()
			rdb := srv.Client(t)
			holder := newTestClient(t, srv, Options{By: "holder", TTL: 10 * time.Second})
			if _, err := holder.TryLock(ctx, "full", Limit(1)); err != nil {
				t.Fatal(err)
			}
			waiter := newTestClient(t, srv, Options{By: "waiter", TTL: 10 * time.Second, RetryInterval: 10 * time.Second})
			waiter.noTracking = !tracking
			got := make(chan error, 1)
			go func() {
				_, err := waiter.Lock(ctx, "full", Limit(1))
				got <- err
			}()
			untilQueued(t, rdb, "reservation-full", 1)
			time.Sleep(100 * time.Millisecond) // its subscription
			start := time.Now()
			if _, err := newTestClient(t, srv, Options{By: "op"}).ForceRelease(ctx, "full"); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
				if d := time.Since(start); d > 500*time.Millisecond {
					t.Errorf("waiter had the permit %v after the ForceRelease, want at once", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("waiter not woken by the ForceRelease")
			}
		})
	}
}

// A semaphore whose limit changes between ForceRelease's read of its marker
// and the deletion (its permits expired, and a semaphore of more permits
// took the name) has every permit deleted all the same.
func TestSemaphoreForceReleaseLimitChanged(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rdb := srv.Client(t)
	c := newTestClient(t, srv, Options{By: "c", TTL: 10 * time.Second})
	if _, err := c.TryLock(ctx, "moving", Limit(1)); err != nil {
		t.Fatal(err)
	}
	op := newTestClient(t, srv, Options{By: "op"})
	var once sync.Once
	op.rdb.AddHook(afterGet{key: "reservation-moving", then: func() {
		once.Do(func() {
			// What an expiry and a new semaphore of 3 would leave.
			rdb.Set(ctx, "reservation-moving", "semaphore:3", time.Minute)
			for i := 1; i <= 3; i++ {
				rdb.Set(ctx, permitKey("reservation-moving", i), fmt.Sprintf("other-%d", i), time.Minute)
			}
		})
	}})
	v, err := op.ForceRelease(ctx, "moving")
	if err != nil || v != "semaphore:3" {
		t.Errorf("ForceRelease = %q, %v; want semaphore:3", v, err)
	}
	keys := append([]string{"reservation-moving"}, permitKeys("reservation-moving", 3)...)
	if left := rdb.Exists(ctx, keys...).Val(); left != 0 {
		t.Errorf("%d of the marker and permits of the new semaphore left", left)
	}
}

// afterGet runs then after each GET of key, before its reply is read.
type afterGet struct {
	key  string
	then func()
}

func (afterGet) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h afterGet) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.after(cmd)
		return err
	}
}
func (h afterGet) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			h.after(cmd)
		}
		return err
	}
}

// after calls h.then when cmd is a GET of h.key.
func (h afterGet) after(cmd redis.Cmder) {
	if args := cmd.Args(); len(args) == 2 && args[0] == "get" && args[1] == h.key {
		h.then()
	}
}
