package reservation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation/internal/redistest"
)

// quiet is a logger for tests that do not look at the log.
var quiet = slog.New(slog.DiscardHandler)

// newClient returns a Client on srv with short timings, its restart guard
// primed (the server is new), closed at the end of the test.
func newTestClient(t testing.TB, srv *redistest.Server, opt Options) *Client {
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
	c, err := New(srv.URL(), &opt)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.PrimeRestartGuard(context.Background()); err != nil {
		t.Fatalf("PrimeRestartGuard: %v", err)
	}
	return c
}

// mustLock locks resource and fails the test unless it was acquired.
func mustLock(t testing.TB, c *Client, resource string) *Reservation {
	t.Helper()
	r, ok, err := tryLock(context.Background(), c, resource)
	if err != nil || !ok {
		t.Fatalf("Lock(%q) = %v, %v; want true, nil", resource, ok, err)
	}
	return r
}

// lockLater runs c.Lock of resource with opts in a goroutine: the channel
// gets what it held (nil when it failed, which fails the test).
func lockLater(t testing.TB, c *Client, resource string, opts ...LockOption) <-chan *Reservation {
	got := make(chan *Reservation, 1)
	go func() {
		r, err := c.Lock(t.Context(), resource, opts...)
		if err != nil {
			t.Errorf("Lock(%q): %v", resource, err)
		}
		got <- r
	}()
	return got
}

// awaitHeld waits, at most 3 s, for what lockLater's channel got, fails
// the test unless it came within bound of since, and releases it; what
// names the waiter in the failures.
func awaitHeld(t testing.TB, got <-chan *Reservation, since time.Time, bound time.Duration, what string) {
	t.Helper()
	select {
	case r := <-got:
		if d := time.Since(since); d > bound {
			t.Errorf("%s held it %v later, want within %v", what, d, bound)
		}
		if r != nil {
			r.Release(t.Context())
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("%s not woken within 3s", what)
	}
}

// waitDone waits up to limit for r to end and returns how long it took.
func waitDone(t testing.TB, r *Reservation, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-r.Done():
		return time.Since(start)
	case <-time.After(limit):
		t.Fatalf("reservation %q still held after %v", r.Resource(), limit)
		return 0
	}
}

func TestLockContention(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	a := newTestClient(t, srv, Options{By: "a"})
	b := newTestClient(t, srv, Options{By: "b"})

	r := mustLock(t, a, "job")
	if got, want := r.Key(), "reservation-job"; got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
	if !strings.HasPrefix(r.Holder(), "a-") {
		t.Errorf("Holder() = %q, want prefix a-", r.Holder())
	}
	if _, ok, err := tryLock(ctx, b, "job"); ok || err != nil {
		t.Fatalf("second Lock = %v, %v; want false, nil", ok, err)
	}
	if _, ok, err := tryLock(ctx, a, "job"); ok || err != nil {
		t.Fatalf("Lock by the same client = %v, %v; want false, nil", ok, err)
	}
	if err := r.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := r.Err(); !errors.Is(err, ErrReleased) {
		t.Errorf("Err() after Release = %v, want ErrReleased", err)
	}
	if got := context.Cause(r.Context()); got != ErrReleased {
		t.Errorf("Cause = %v, want ErrReleased", got)
	}
	r2 := mustLock(t, b, "job")
	if r2.Token() <= r.Token() {
		t.Errorf("token %d after %d, want it greater", r2.Token(), r.Token())
	}
	if err := r.Release(ctx); !errors.Is(err, ErrNotHeld) {
		t.Errorf("second Release = %v, want ErrNotHeld", err)
	}
	if got := srv.Client(t).Get(ctx, "reservation-job").Val(); got != r2.Holder() {
		t.Errorf("key holds %q after a stale release, want %q", got, r2.Holder())
	}
}

// A release of a key that someone else took does not delete it. With
// tracking, the holder may hear of the change before its release, which
// then sends nothing; without, the release script itself must refuse.
func TestReleaseNotOursRefused(t *testing.T) {
	for _, tracking := range []bool{true, false} {
		t.Run(fmt.Sprintf("tracking=%v", tracking), func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := t.Context()
			c := newTestClient(t, srv, Options{TTL: 5 * time.Second})
			c.noTracking = !tracking
			rdb := srv.Client(t)

			r := mustLock(t, c, "stolen")
			// Someone else takes the key (a Node worker after our key
			// expired, or an operator): our release must not delete it.
			rdb.Set(ctx, r.Key(), "node-worker", time.Minute)
			err := r.Release(ctx)
			if !errors.Is(err, ErrNotHeld) || !errors.Is(err, ErrLost) {
				t.Fatalf("Release = %v, want ErrNotHeld and ErrLost", err)
			}
			if got := rdb.Get(ctx, r.Key()).Val(); got != "node-worker" {
				t.Errorf("key = %q, want the other holder's value left alone", got)
			}
			if got := r.Err(); !errors.Is(got, ErrLost) {
				t.Errorf("Err() = %v, want ErrLost", got)
			}
		})
	}
}

func TestRenewalKeepsReservation(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, Options{TTL: 300 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond})
	r := mustLock(t, c, "long-job")
	time.Sleep(1500 * time.Millisecond) // five TTLs
	if err := r.Err(); err != nil {
		t.Fatalf("Err() after 5 TTLs = %v, want nil", err)
	}
	pttl := srv.Client(t).PTTL(context.Background(), r.Key()).Val()
	if pttl <= 0 || pttl > 300*time.Millisecond {
		t.Errorf("PTTL = %v, want in (0, 300ms]", pttl)
	}
	if v := r.Validity(); v <= 0 || v > 300*time.Millisecond {
		t.Errorf("Validity() = %v, want in (0, 300ms]", v)
	}
	if err := r.Release(context.Background()); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

func TestLossBehindItsBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		apply func(rdb *redis.Client, key string)
	}{
		{"deleted", func(rdb *redis.Client, key string) { rdb.Del(context.Background(), key) }},
		{"overwritten", func(rdb *redis.Client, key string) { rdb.Set(context.Background(), key, "other", time.Minute) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			const hb = 100 * time.Millisecond
			c := newTestClient(t, srv, Options{TTL: time.Second, HeartbeatInterval: hb})
			r := mustLock(t, c, "job-"+tc.name)
			rdb := srv.Client(t)
			tc.apply(rdb, r.Key())
			if took := waitDone(t, r, 2*time.Second); took > hb+100*time.Millisecond {
				t.Errorf("loss reported after %v, want within one heartbeat (%v)", took, hb)
			}
			if got := r.Err(); !errors.Is(got, ErrLost) {
				t.Errorf("Err() = %v, want ErrLost", got)
			}
			if got := context.Cause(r.Context()); !errors.Is(got, ErrLost) {
				t.Errorf("Cause = %v, want ErrLost", got)
			}
			if err := r.Release(context.Background()); !errors.Is(err, ErrNotHeld) {
				t.Errorf("Release after loss = %v, want ErrNotHeld", err)
			}
			if tc.name == "overwritten" {
				// After the Release, which must not touch it, and after
				// any give-back it started in the background.
				time.Sleep(100 * time.Millisecond)
				if got := rdb.Get(context.Background(), r.Key()).Val(); got != "other" {
					t.Errorf("key = %q after Release, want the other value left alone", got)
				}
			}
		})
	}
}

func TestLossWhenRedisStops(t *testing.T) {
	srv := redistest.Start(t)
	const ttl = 600 * time.Millisecond
	c := newTestClient(t, srv, Options{TTL: ttl, HeartbeatInterval: 150 * time.Millisecond})
	r := mustLock(t, c, "cut-off")
	time.Sleep(200 * time.Millisecond)
	expiry := expiresAt(t, srv, r.Key())
	srv.Kill()
	waitDone(t, r, 2*ttl)
	assertLossBefore(t, r, expiry)
}

// expiresAt returns when key expires on srv, at the latest, as read now.
func expiresAt(t *testing.T, srv *redistest.Server, key string) time.Time {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: srv.Password})
	defer rdb.Close()
	before := time.Now()
	pttl, err := rdb.PTTL(context.Background(), key).Result()
	if err != nil || pttl <= 0 {
		t.Fatalf("PTTL %s = %v, %v", key, pttl, err)
	}
	// PTTL is whole milliseconds, rounded down: the key lives at least
	// that long after the read, which came after before.
	return before.Add(pttl)
}

// assertLossBefore checks that r was declared lost before its key could
// expire on the server, with the drift margin to spare: a loss declared
// at the expiry itself would let a new holder overlap the old one.
func assertLossBefore(t *testing.T, r *Reservation, expiry time.Time) {
	t.Helper()
	lost := time.Now() // waitDone returned just now
	if err := r.Err(); !errors.Is(err, ErrLost) {
		t.Errorf("Err() = %v, want ErrLost", err)
	}
	early := expiry.Sub(lost)
	t.Logf("loss declared %v before the key could expire", early)
	if early < DefaultDriftMargin/2 {
		t.Errorf("loss declared %v before the key's expiry on the server, want at least %v before (the drift margin)", early, DefaultDriftMargin/2)
	}
}

// A waiter is woken by a release at once: with client tracking or without
// (the release notice, or the queue's turn notice), in the server's queue or
// not.
func TestWaiterWokenByRelease(t *testing.T) {
	for _, tc := range []struct{ tracking, noQueue bool }{{true, false}, {false, false}, {true, true}, {false, true}} {
		t.Run(fmt.Sprintf("tracking=%v,noqueue=%v", tc.tracking, tc.noQueue), func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := context.Background()
			holder := newTestClient(t, srv, Options{By: "holder", TTL: 10 * time.Second})
			waiter := newTestClient(t, srv, Options{By: "waiter", TTL: 10 * time.Second, NoQueue: tc.noQueue})
			waiter.noTracking = !tc.tracking

			r := mustLock(t, holder, "handoff")
			got := make(chan time.Time, 1)
			go func() {
				w, err := waiter.Lock(ctx, "handoff")
				if err != nil {
					t.Errorf("Lock: %v", err)
				}
				got <- time.Now()
				if w != nil {
					w.Release(ctx)
				}
			}()
			time.Sleep(300 * time.Millisecond) // let it wait
			if err := r.Release(ctx); err != nil {
				t.Fatal(err)
			}
			released := time.Now()
			select {
			case at := <-got:
				if d := at.Sub(released); d > 100*time.Millisecond {
					t.Errorf("waiter woken %v after the release, want within 100ms (fallback is 1s)", d)
				} else {
					t.Logf("waiter had it %v after the release", d)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("waiter not woken")
			}
		})
	}
}

func TestWaiterWokenByForeignDelete(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rdb := srv.Client(t)
	c := newTestClient(t, srv, Options{TTL: 5 * time.Second})
	// A Node worker holds the key: SET EX NX with its own value.
	rdb.SetNX(ctx, "reservation-node-job", "node-worker", 30*time.Second)
	got := make(chan time.Time, 1)
	go func() {
		r, err := c.Lock(ctx, "node-job")
		if err != nil {
			t.Errorf("Lock: %v", err)
		}
		got <- time.Now()
		if r != nil {
			r.Release(ctx)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	rdb.Del(ctx, "reservation-node-job") // the Node library's release
	deleted := time.Now()
	select {
	case at := <-got:
		if d := at.Sub(deleted); d > 100*time.Millisecond {
			t.Errorf("waiter woken %v after a plain DEL, want within 100ms", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("waiter not woken")
	}
}

func TestWaiterGetsExpiredKey(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{})
	// A holder that died: its key just runs out.
	srv.Client(t).Set(ctx, "reservation-orphan", "dead-worker", 400*time.Millisecond)
	start := time.Now()
	r, err := c.Lock(ctx, "orphan")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release(ctx)
	if d := time.Since(start); d > 400*time.Millisecond+100*time.Millisecond {
		t.Errorf("got the orphaned key after %v, want within TTL (400ms) + 100ms", d)
	}
}

func TestWaitContextCancelled(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, Options{TTL: 5 * time.Second})
	r := mustLock(t, c, "busy")
	defer r.Release(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Lock(ctx, "busy")
	if !errors.Is(err, ErrNotAcquired) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock = %v, want ErrNotAcquired and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("returned %v after start, want soon after the 100ms deadline", d)
	}
}

// Without the server's queue, a Client's own waiters of one key are served
// first come, first served.
func TestWaitersQueueFairly(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{TTL: 5 * time.Second, NoQueue: true})
	// Waiters that queue one after the other are served in that order.
	first := mustLock(t, c, "shared")
	const waiters = 5
	served := make(chan int, waiters)
	var wg sync.WaitGroup
	for w := range waiters {
		wg.Add(1)
		go func() {
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
		}()
		// Each joins the queue before the next one comes.
		deadline := time.Now().Add(2 * time.Second)
		for !queued(c, "reservation-shared", w+1) {
			if time.Now().After(deadline) {
				t.Fatalf("waiter %d never queued", w)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
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

// queued reports whether n waiters of c queue for key (on the notifier of
// its master, on a Cluster).
func queued(c *Client, key string, n int) bool {
	notif := c.notifierIfStarted(c.nodeOf(c.ctx, key))
	if notif == nil {
		return false
	}
	notif.mu.Lock()
	defer notif.mu.Unlock()
	kw := notif.keys[key]
	return kw != nil && len(kw.queue) == n
}

func TestTokensGrowAcrossDataLoss(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{TTL: 300 * time.Millisecond, RestartGuard: 300 * time.Millisecond})
	var last int64
	take := func(step string) {
		t.Helper()
		r, err := c.Lock(ctx, "fenced")
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if r.Token() <= last {
			t.Errorf("%s: token %d, want more than %d", step, r.Token(), last)
		}
		last = r.Token()
		if err := r.Release(ctx); err != nil {
			t.Fatalf("%s: release: %v", step, err)
		}
	}
	take("first")
	take("second")
	srv.FlushAll(t)
	take("after FLUSHALL")
	srv.Restart(t)
	take("after restart")
}

// TestFenceKeyHoldsTheToken checks that the fencing key holds the token
// that the acquisition answered, written as a decimal number: from the
// server's clock (its seconds, then its microseconds in 6 digits) and,
// when the key already holds a later token, that token plus one.
func TestFenceKeyHoldsTheToken(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{})
	rdb := srv.Client(t)
	fence := companion(c.Key("fenced"), fenceSuffix)
	check := func(step string, r *Reservation) {
		t.Helper()
		if got := rdb.Get(ctx, fence).Val(); got != strconv.FormatInt(r.Token(), 10) {
			t.Fatalf("%s: the fencing key holds %q, the token is %d", step, got, r.Token())
		}
		if err := r.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		check(fmt.Sprintf("acquisition %d", i), mustLock(t, c, "fenced"))
	}
	// In the first tenth of the server's next second, the microseconds
	// have fewer than 6 digits; a slow machine may miss it, and try again.
	var r *Reservation
	for try := 0; ; try++ {
		now, err := rdb.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(now.Truncate(time.Second).Add(time.Second + 20*time.Millisecond).Sub(now))
		r = mustLock(t, c, "fenced")
		if r.Token()%1e6 < 1e5 {
			break
		}
		if try == 4 {
			t.Fatalf("token %d: 5 acquisitions missed the first tenth of a second", r.Token())
		}
		if err := r.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	check("early in a second", r)
	later := time.Now().Add(24 * time.Hour).UnixMicro()
	if err := rdb.Set(ctx, fence, later, 0).Err(); err != nil {
		t.Fatal(err)
	}
	r = mustLock(t, c, "fenced")
	if r.Token() != later+1 {
		t.Errorf("token %d after a token %d, want the next", r.Token(), later)
	}
	check("after a later token", r)
}

func TestRestartGuard(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	const ttl = 500 * time.Millisecond
	a := newTestClient(t, srv, Options{By: "a", TTL: ttl, HeartbeatInterval: 100 * time.Millisecond})
	b := newTestClient(t, srv, Options{By: "b", TTL: ttl, HeartbeatInterval: 100 * time.Millisecond})
	r := mustLock(t, a, "guarded")
	srv.FlushAll(t)
	flushed := time.Now()
	// b must not get the resource before a knows it lost it.
	nb, err := b.Lock(ctx, "guarded")
	if err != nil {
		t.Fatal(err)
	}
	defer nb.Release(ctx)
	got := time.Now()
	select {
	case <-r.Done():
	default:
		t.Fatal("b acquired while a still believed it held the reservation")
	}
	if d := got.Sub(flushed); d < ttl-50*time.Millisecond {
		t.Errorf("b acquired %v after the flush, want after the guard (%v)", d, ttl)
	}
	if nb.Token() <= r.Token() {
		t.Errorf("token %d after the flush, want more than %d", nb.Token(), r.Token())
	}
}

func TestResourceNames(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{})
	rdb := srv.Client(t)
	for _, name := range []string{
		"with space", "{braces}", "a}b{c", "{}", "line\nbreak", "bin\x00\xff\x01ary",
		strings.Repeat("x", MaxResourceLen), "ünïcødé",
	} {
		r, ok, err := tryLock(ctx, c, name)
		if err != nil || !ok {
			t.Errorf("Lock(%q) = %v, %v; want true", name, ok, err)
			continue
		}
		if got := rdb.Get(ctx, "reservation-"+name).Val(); got != r.Holder() {
			t.Errorf("key of %q holds %q, want %q", name, got, r.Holder())
		}
		if err := r.Release(ctx); err != nil {
			t.Errorf("Release(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", strings.Repeat("x", MaxResourceLen+1)} {
		if _, ok, err := tryLock(ctx, c, name); ok || !errors.Is(err, ErrInvalidResource) {
			t.Errorf("Lock(%d bytes) = %v, %v; want ErrInvalidResource", len(name), ok, err)
		}
		if _, err := c.Lock(ctx, name); !errors.Is(err, ErrInvalidResource) {
			t.Errorf("Lock(%d bytes) = %v; want ErrInvalidResource", len(name), err)
		}
	}
}

func TestConnectionErrors(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPassword("s3cret-pw"))
	ctx := t.Context()

	wrong, err := New("redis://:wrong-pw@"+srv.Addr, &Options{By: "x", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	_, ok, err := tryLock(ctx, wrong, "job")
	if ok || err == nil || !strings.Contains(err.Error(), srv.Addr) || strings.Contains(err.Error(), "wrong-pw") {
		t.Errorf("Lock with a wrong password = %v, %v; want an error naming %s, not the password", ok, err, srv.Addr)
	}
	if err := wrong.Ping(ctx); err == nil || strings.Contains(err.Error(), "wrong-pw") {
		t.Errorf("Ping = %v, want an error without the password", err)
	}

	right, err := New(srv.Addr, &Options{By: "x", Password: "s3cret-pw", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer right.Close()
	if err := right.Ping(ctx); err != nil {
		t.Errorf("Ping with the password: %v", err)
	}

	gone, err := New("127.0.0.1:1", &Options{By: "x", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	if _, ok, err := tryLock(ctx, gone, "job"); ok || err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Lock on an unreachable server = %v, %v; want an error naming the address", ok, err)
	}
	if _, err := gone.Lock(ctx, "job"); err == nil {
		t.Error("Lock on an unreachable server: no error")
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr string
		opt  *Options
	}{
		{"long by", "127.0.0.1:6379", &Options{By: strings.Repeat("b", MaxByLen+1)}},
		{"negative ttl", "127.0.0.1:6379", &Options{By: "x", TTL: -time.Second}},
		{"ttl below 1ms", "127.0.0.1:6379", &Options{By: "x", TTL: time.Microsecond}},
		{"ttl below the minimum", "127.0.0.1:6379", &Options{By: "x", TTL: MinTTL - time.Millisecond}},
		{"drift margin over half the ttl", "127.0.0.1:6379", &Options{By: "x", TTL: time.Second, DriftMargin: 501 * time.Millisecond}},
		{"negative drift margin", "127.0.0.1:6379", &Options{By: "x", DriftMargin: -time.Millisecond}},
		{"ttl not whole ms", "127.0.0.1:6379", &Options{By: "x", TTL: 1500 * time.Microsecond}},
		{"ttl too long", "127.0.0.1:6379", &Options{By: "x", TTL: 25 * time.Hour}},
		{"heartbeat equals ttl", "127.0.0.1:6379", &Options{By: "x", TTL: time.Second, HeartbeatInterval: time.Second}},
		{"heartbeat above ttl", "127.0.0.1:6379", &Options{By: "x", TTL: time.Second, HeartbeatInterval: 2 * time.Second}},
		{"heartbeat in drift margin", "127.0.0.1:6379", &Options{By: "x", TTL: time.Second, HeartbeatInterval: 990 * time.Millisecond}},
		{"negative heartbeat", "127.0.0.1:6379", &Options{By: "x", HeartbeatInterval: -1}},
		{"retry below 1ms", "127.0.0.1:6379", &Options{By: "x", RetryInterval: time.Microsecond}},
		{"empty address", "", &Options{By: "x"}},
		{"no port", "localhost", &Options{By: "x"}},
		{"bad url", "redis://:pw@host:notaport", &Options{By: "x"}},
		{"bad scheme", "http://host:6379", &Options{By: "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.addr, tc.opt)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("New = %v, want ErrInvalidOptions", err)
			}
			if c != nil {
				c.Close()
			}
			if err != nil && strings.Contains(err.Error(), ":pw@") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
	if _, err := NewWithClient(nil, &Options{By: "x"}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("NewWithClient(nil) = %v, want ErrInvalidOptions", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	for _, opt := range []*Options{{Password: "pw"}, {Username: "u"}, {TLSConfig: &tls.Config{}}} {
		if _, err := NewWithClient(rdb, opt); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("NewWithClient with %+v = %v, want ErrInvalidOptions: New's fields only", opt, err)
		}
	}
	for _, co := range []*redis.ClusterOptions{{ReadOnly: true}, {RouteByLatency: true}, {RouteRandomly: true}} {
		co.Addrs = []string{"127.0.0.1:6379"}
		cc := redis.NewClusterClient(co)
		if _, err := NewWithClient(cc, nil); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "replicas") {
			t.Errorf("NewWithClient of a cluster client with %+v = %v, want ErrInvalidOptions: reads sent to replicas", co, err)
		}
		cc.Close()
	}
	// Nil options mean every default, the host name as By included.
	for _, opt := range []*Options{nil, {}} {
		c, err := New("127.0.0.1:6379", opt)
		if err != nil {
			t.Fatalf("New(%v) = %v, want defaults", opt, err)
		}
		if host, _ := os.Hostname(); c.Options().By != host {
			t.Errorf("default By = %q, want the host name %q", c.Options().By, host)
		}
		c.Close()
	}
	if c, err := New("redis://:secret@127.0.0.1:6379", &Options{Password: "pw"}); err != nil || c.Options().Password != "" {
		t.Errorf("Options() shows the password, or New failed: %v", err)
	} else {
		c.Close()
	}
	c, err := New("127.0.0.1:6379", &Options{By: "x"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := c.Options()
	if o.TTL != 30*time.Second || o.HeartbeatInterval != 10*time.Second || o.Prefix != "reservation-" ||
		o.RetryInterval != time.Second || o.RestartGuard != 30*time.Second {
		t.Errorf("defaults = %+v, want TTL 30s, heartbeat 10s, prefix reservation-, retry 1s, guard 30s", o)
	}
}

func TestCloseReleasesAndStops(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{TTL: 5 * time.Second})
	other := newTestClient(t, srv, Options{TTL: 5 * time.Second})
	held := make([]*Reservation, 50)
	for i := range held {
		held[i] = mustLock(t, c, fmt.Sprintf("close-%d", i))
	}
	blocker := mustLock(t, other, "blocked")
	waitErr := make(chan error, 1)
	go func() {
		_, err := c.Lock(ctx, "blocked")
		waitErr <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-waitErr; !errors.Is(err, ErrClosed) {
		t.Errorf("wait ended with %v, want ErrClosed", err)
	}
	keys := make([]string, len(held))
	for i, r := range held {
		if r.Err() != ErrReleased {
			t.Errorf("%s: Err() = %v after Close, want ErrReleased", r.Resource(), r.Err())
		}
		keys[i] = r.Key()
	}
	if n := srv.Client(t).Exists(ctx, keys...).Val(); n != 0 {
		t.Errorf("%d of %d keys left after Close, want 0", n, len(keys))
	}
	if _, _, err := tryLock(ctx, c, "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Lock after Close = %v, want ErrClosed", err)
	}
	if _, err := c.Lock(ctx, "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Lock after Close = %v, want ErrClosed", err)
	}
	if err := c.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	blocker.Release(ctx)
}

func TestHeartbeatBatches(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, Options{TTL: time.Second, HeartbeatInterval: 200 * time.Millisecond})
	rdb := srv.Client(t)
	const n = 1200
	held := make([]*Reservation, n)
	for i := range held {
		held[i] = mustLock(t, c, fmt.Sprintf("many-%d", i))
	}
	rdb.ConfigResetStat(ctx)
	rounds := c.renewRounds.Load()
	time.Sleep(2 * time.Second)
	rounds = c.renewRounds.Load() - rounds
	calls := commandCalls(rdb.Info(ctx, "commandstats").Val(), "evalsha")
	// 1200 keys in chunks of 500: at most 3 scripts a round, however
	// loaded the machine (which only changes how many rounds there are,
	// and how many retries).
	if widest := c.renewWidest.Load(); widest > 3 {
		t.Errorf("a heartbeat round sent %d renew scripts for %d reservations, want at most 3 (chunks of 500)", widest, n)
	}
	if rounds == 0 || int64(calls) < rounds {
		t.Errorf("%d heartbeat rounds, %d EVALSHA calls: want renewals", rounds, calls)
	}
	t.Logf("%d EVALSHA calls in %d heartbeat rounds for %d reservations over 2s (%d beyond 3 a round: retries)",
		calls, rounds, n, max(0, calls-int(3*rounds)))
	for _, r := range held {
		if r.Err() != nil {
			t.Fatalf("%s lost: %v", r.Resource(), r.Err())
		}
	}
}

// commandCalls reads the calls of cmd from INFO commandstats.
func commandCalls(info, cmd string) int {
	for line := range strings.SplitSeq(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			var n int
			fmt.Sscanf(rest, "%d", &n)
			return n
		}
	}
	return 0
}

// A go-redis retry of an acquire whose reply was lost finds its own key:
// the script answers acquired, not held by someone else. Simulated by
// running the script twice with one value.
func TestAcquireScriptIsRetrySafe(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rdb := srv.Client(t)
	key := "reservation-retry"
	keys := []string{key, companion(key, fenceSuffix), guardKey, companion(key, queueSuffix), companion(key, leaseSuffix)}
	run := func(value string) acquireResult {
		t.Helper()
		reply, err := acquireScript.Run(ctx, rdb, keys, value, 5000, 0, 60000, "try", companion(key, turnSuffix), "PUBLISH").Slice()
		if err != nil {
			t.Fatal(err)
		}
		res, err := parseAcquire(reply)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first, again := run("a-1"), run("a-1")
	if !first.acquired || !again.acquired || again.token != first.token {
		t.Errorf("first %+v, retried %+v; want both acquired with one token", first, again)
	}
	if other := run("b-1"); other.acquired || other.holder != "a-1" || other.remaining <= 0 {
		t.Errorf("another value got %+v, want refused, naming holder a-1 and its time left", other)
	}
}

func TestWaitCancelledContextContract(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Lock(ctx, "cancelled")
	if !errors.Is(err, ErrNotAcquired) || !errors.Is(err, context.Canceled) {
		t.Errorf("Lock(cancelled) = %v; want ErrNotAcquired and context.Canceled", err)
	}
	r := mustLock(t, c, "kept")
	if err := r.Release(ctx); err == nil || r.Err() != nil {
		t.Errorf("Release(cancelled) = %v, Err() = %v; want an error and the reservation still held", err, r.Err())
	}
}

func TestCloseEndsReservationsByWhatRedisSays(t *testing.T) {
	srv := redistest.Start(t)
	c, err := New(srv.URL(), &Options{By: "a", TTL: 10 * time.Second, Logger: quiet, RestartGuard: -1})
	if err != nil {
		t.Fatal(err)
	}
	stolen := mustLock(t, c, "stolen")
	kept := mustLock(t, c, "kept")
	srv.Client(t).Set(context.Background(), stolen.Key(), "node-worker", 0)
	c.Close()
	if !errors.Is(stolen.Err(), ErrLost) {
		t.Errorf("stolen: Err() = %v after Close, want ErrLost", stolen.Err())
	}
	if kept.Err() != ErrReleased {
		t.Errorf("kept: Err() = %v after Close, want ErrReleased", kept.Err())
	}
}

// Close and a heartbeat running at the same moment: every reservation ends
// released, none lost.
func TestCloseRacesHeartbeat(t *testing.T) {
	srv := redistest.Start(t)
	for round := range 5 {
		c, err := New(srv.URL(), &Options{By: "a", TTL: MinTTL, HeartbeatInterval: 10 * time.Millisecond, Logger: quiet, RestartGuard: -1})
		if err != nil {
			t.Fatal(err)
		}
		held := make([]*Reservation, 40)
		for i := range held {
			held[i] = mustLock(t, c, fmt.Sprintf("race-%d-%d", round, i))
		}
		time.Sleep(15 * time.Millisecond)
		c.Close()
		for _, r := range held {
			if r.Err() != ErrReleased {
				t.Fatalf("round %d: %s ended with %v, want ErrReleased", round, r.Resource(), r.Err())
			}
		}
	}
}

// On a Ring each key may live on another shard: renewals must not be
// grouped into one multi-key script.
func TestRingRenewals(t *testing.T) {
	s1, s2 := redistest.Start(t), redistest.Start(t)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"s1": s1.Addr, "s2": s2.Addr}})
	t.Cleanup(func() { ring.Close() })
	c, err := NewWithClient(ring, &Options{By: "a", TTL: time.Second, HeartbeatInterval: 200 * time.Millisecond, RestartGuard: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var held []*Reservation
	for i := range 8 {
		held = append(held, mustLock(t, c, fmt.Sprintf("ring-%d", i)))
	}
	// Past two TTLs: without renewals every key would have expired, and
	// every holding been declared lost at its local deadline (940 ms).
	time.Sleep(2200 * time.Millisecond)
	for _, r := range held {
		if r.Err() != nil {
			t.Errorf("%s: %v on a healthy Ring", r.Resource(), r.Err())
		}
		if got := ring.Get(context.Background(), r.Key()).Val(); got != r.Holder() {
			t.Errorf("%s: key holds %q after two TTLs, want %q: not renewed", r.Resource(), got, r.Holder())
		}
	}
}

// tryLock is TryLock with its outcome split the way these tests check it:
// ok reports whether it was acquired, and a resource held by someone else
// (ErrNotAcquired) is not an error.
func tryLock(ctx context.Context, c *Client, resource string) (*Reservation, bool, error) {
	r, err := c.TryLock(ctx, resource)
	if errors.Is(err, ErrNotAcquired) {
		return nil, false, nil
	}
	return r, err == nil, err
}

// After Close returns without an error, nothing the Client acquired remains,
// whatever Lock and Release calls were under way.
func TestCloseUnderLoadLeavesNothing(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	for round := range 20 {
		prefix := fmt.Sprintf("close-%d-", round)
		c, err := New(srv.URL(), &Options{By: "closer", TTL: 30 * time.Second, Prefix: prefix, Logger: quiet, RestartGuard: -1})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := context.Background()
				for i := 0; ; i++ {
					r, err := c.TryLock(ctx, fmt.Sprintf("%d-%d", g, i))
					if errors.Is(err, ErrClosed) {
						return
					}
					if err == nil && i%2 == 0 {
						if err := r.Release(ctx); err != nil && !errors.Is(err, ErrNotHeld) {
							t.Errorf("Release during Close: %v", err)
						}
					}
				}
			}()
		}
		time.Sleep(time.Duration(round%5) * 5 * time.Millisecond)
		if err := c.Close(); err != nil {
			t.Fatalf("round %d: Close: %v", round, err)
		}
		wg.Wait()
		if keys := rdb.Keys(context.Background(), prefix+"*").Val(); len(keys) > 0 {
			t.Fatalf("round %d: %d keys held by nobody after Close, e.g. %q (PTTL %v)",
				round, len(keys), keys[0], rdb.PTTL(context.Background(), keys[0]).Val())
		}
	}
}

// A server at maxclients closes new connections after saying why; the
// error says it too, not only "broken pipe".
func TestMaxClientsExplained(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--maxclients", "2"))
	ctx := t.Context()
	hog1, hog2 := srv.Client(t), redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer hog2.Close()
	hog1.Ping(ctx)
	hog2.Ping(ctx)
	c, err := New(srv.URL(), &Options{By: "late", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Ping(ctx)
	if err == nil || !strings.Contains(err.Error(), "max number of clients reached") {
		t.Fatalf("Ping at maxclients = %v, want the server's reason", err)
	}
	t.Logf("told: %v", err)
}

// A user denied TIME cannot acquire (tokens need it); the error says which
// command, and matches ErrNoPermission.
func TestTimeDeniedNamed(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	if err := srv.Client(t).Do(ctx, "ACL", "SETUSER", "notime", "on", ">pw", "~*", "&*", "+@all", "-time").Err(); err != nil {
		t.Fatal(err)
	}
	c, err := New(strings.Replace(srv.URL(), "redis://", "redis://notime:pw@", 1), &Options{By: "x", Logger: quiet, RestartGuard: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.TryLock(ctx, "timeless")
	if !errors.Is(err, ErrNoPermission) || !strings.Contains(err.Error(), "TIME") {
		t.Fatalf("TryLock without TIME = %v, want ErrNoPermission naming TIME", err)
	}
	if n := srv.Client(t).Exists(ctx, "reservation-timeless").Val(); n != 0 {
		t.Error("the key was set although the script failed")
	}
}

// The renew script extends only keys that hold our value, and leaves
// another's value and its TTL exactly as they were.
func TestRenewScriptLeavesOthersAlone(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rdb := srv.Client(t)
	rdb.Set(ctx, "reservation-mine", "me-1", time.Second)
	rdb.Set(ctx, "reservation-theirs", "them-1", 500*time.Millisecond)
	keys := []string{"reservation-mine", "reservation-theirs",
		companion("reservation-mine", fenceSuffix), companion("reservation-theirs", fenceSuffix)}
	got, err := renewScript.Run(ctx, rdb, keys, "me-1", "me-2", 60000, 120000, 1).Int64Slice()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != 1 || got[1] != 0 {
		t.Fatalf("renew = %v, want [1 0]", got)
	}
	if d := rdb.PTTL(ctx, "reservation-mine").Val(); d < 59*time.Second {
		t.Errorf("our key's PTTL %v, want it extended to 60s", d)
	}
	if v, d := rdb.Get(ctx, "reservation-theirs").Val(), rdb.PTTL(ctx, "reservation-theirs").Val(); v != "them-1" || d > 500*time.Millisecond {
		t.Errorf("their key = %q with PTTL %v, want them-1 with at most 500ms left", v, d)
	}
}

// An acquire whose caller stopped waiting (its context ended while the
// server was busy) still runs on the server; once it has, what it took is
// given back.
func TestAbandonedAcquireGivenBack(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, Options{TTL: 30 * time.Second})
	c.Ping(t.Context()) // a connection in the pool, so that the call is sent
	srv.Pause()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	_, err := c.TryLock(ctx, "abandoned")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		srv.Resume()
		t.Fatalf("TryLock on a paused server = %v, want DeadlineExceeded", err)
	}
	srv.Resume()
	rdb := srv.Client(t)
	deadline := time.Now().Add(2 * time.Second)
	for rdb.Exists(t.Context(), "reservation-abandoned").Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatalf("key held by nobody 2s after the server answered (PTTL %v)", rdb.PTTL(t.Context(), "reservation-abandoned").Val())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The acquire did run (it issued a token), so the give-back mattered.
	if rdb.Exists(t.Context(), companion("reservation-abandoned", fenceSuffix)).Val() != 1 {
		t.Fatal("the abandoned acquire never ran: this test proves nothing")
	}
}

// PrimeRestartGuard sets the marker on a new server, lifts a guard that a
// first acquisition started, and changes nothing once primed.
func TestPrimeRestartGuard(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c, err := New(srv.URL(), &Options{By: "p", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.TryLock(ctx, "early"); !errors.Is(err, ErrRestartGuard) {
		t.Fatalf("TryLock on a new server = %v, want ErrRestartGuard", err)
	}
	if changed, err := c.PrimeRestartGuard(ctx); err != nil || !changed {
		t.Fatalf("PrimeRestartGuard under a started guard = %v, %v; want true", changed, err)
	}
	r, err := c.TryLock(ctx, "early")
	if err != nil {
		t.Fatalf("TryLock after priming = %v", err)
	}
	r.Release(ctx)
	if changed, err := c.PrimeRestartGuard(ctx); err != nil || changed {
		t.Errorf("PrimeRestartGuard again = %v, %v; want false: primed already", changed, err)
	}
}

// Status and List say when the credentials are refused, rather than
// reporting what they could not read.
func TestStatusWithWrongPassword(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPassword("right"))
	c, err := New(srv.URL(), &Options{By: "x", Password: "wrong", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var aerr *AuthError
	if _, err := c.Status(t.Context(), "job"); !errors.As(err, &aerr) {
		t.Errorf("Status with a wrong password = %v, want an *AuthError", err)
	}
	if _, err := c.List(t.Context(), ""); !errors.As(err, &aerr) {
		t.Errorf("List with a wrong password = %v, want an *AuthError", err)
	}
}

// The restart guard is reported once per guard period, not once per
// attempt: a client retrying through it does not flood the log.
func TestGuardReportedOncePerPeriod(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	var mu sync.Mutex
	guards := 0
	c, err := New(srv.URL(), &Options{By: "g", TTL: 300 * time.Millisecond, Logger: quiet, OnEvent: func(e Event) {
		if e.Kind == EventRestartGuard {
			mu.Lock()
			guards++
			mu.Unlock()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	refused := 0
	for range 50 {
		if _, err := c.TryLock(ctx, "guarded"); errors.Is(err, ErrRestartGuard) {
			refused++
		}
	}
	// Lock waits through the rest of the guard.
	r, err := c.Lock(ctx, "guarded")
	if err != nil {
		t.Fatal(err)
	}
	r.Release(ctx)
	mu.Lock()
	defer mu.Unlock()
	if refused < 50 || guards != 1 {
		t.Errorf("%d attempts refused, %d restart-guard events; want 50 and 1", refused, guards)
	}
}

// With maxmemory and noeviction, a full server refuses new keys but keeps
// those it has: holders renew through it and lose nothing.
func TestNoEvictionUnderFullMemory(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--maxmemory-policy", "noeviction"))
	ctx := t.Context()
	c := newTestClient(t, srv, Options{TTL: 300 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond})
	rs := make([]*Reservation, 10)
	for i := range rs {
		rs[i] = mustLock(t, c, fmt.Sprintf("kept-%d", i))
	}
	rdb := srv.Client(t)
	// A limit far below what the server uses: it stays full.
	rdb.ConfigSet(ctx, "maxmemory", "1")
	t.Cleanup(func() { rdb.ConfigSet(context.Background(), "maxmemory", "0") })
	if err := rdb.Set(ctx, "one-more", "x", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("SET on a full server = %v, want OOM", err)
	}
	time.Sleep(time.Second) // more than three TTLs
	for _, r := range rs {
		if err := r.Err(); err != nil {
			t.Errorf("%s: %v on a full server with noeviction", r.Resource(), err)
		}
	}
}

// Errors through a Sentinel client name the master's address, not
// go-redis's "FailoverClient".
func TestSentinelErrorsNameTheMaster(t *testing.T) {
	master := redistest.Start(t)
	ctx := t.Context()
	if err := master.Client(t).Do(ctx, "ACL", "SETUSER", "notime", "on", ">pw", "~*", "&*", "+@all", "-time").Err(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor m 127.0.0.1 %s 1\n",
		port, dir, strings.Split(master.Addr, ":")[1])), 0o644)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not found: install it (apt-get install redis-server)")
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{fmt.Sprintf("127.0.0.1:%d", port)},
		Username: "notime", Password: "pw", ContextTimeoutEnabled: true})
	defer rdb.Close()
	c, err := NewWithClient(rdb, &Options{By: "s", Logger: quiet, RestartGuard: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for rdb.Ping(ctx).Err() != nil { // the sentinel starts
		if time.Now().After(deadline) {
			t.Fatal("no master through the sentinel")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, err = c.TryLock(ctx, "through-sentinel")
	if err == nil || strings.Contains(err.Error(), "FailoverClient") || !strings.Contains(err.Error(), master.Addr) {
		t.Fatalf("TryLock error = %v, want one naming the master %s", err, master.Addr)
	}
	t.Logf("told: %v", err)
}

// A URL that does not parse says nothing of its password, even where the
// parser would quote part of it (read as a port, or as a bad escape).
func TestBadURLHidesPassword(t *testing.T) {
	for _, tc := range []struct{ url, secret string }{
		{"redis://user:qx/zz@host:6379", "qx"},
		{"redis://user:secret#word@host:6379", "secret"},
		{"redis://user:sec?ret@host:6379", "sec"},
		{"redis://user:s%zzecret@host:6379", "zzecret"},
	} {
		_, err := New(tc.url, &Options{By: "x"})
		if !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("New(%q) = %v, want ErrInvalidOptions", tc.url, err)
			continue
		}
		if strings.Contains(err.Error(), tc.secret) {
			t.Errorf("New(%q): error %q shows part of the password", tc.url, err)
		}
	}
}
