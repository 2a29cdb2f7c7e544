package reservation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation/internal/redistest"
)

// slowHeartbeat is a TTL and heartbeat under which a loss reported within a
// second cannot come from a renewal: it came through the notifier.
var slowHeartbeat = Options{TTL: 30 * time.Second, HeartbeatInterval: 10 * time.Second, RetryInterval: 10 * time.Second}

// started waits for c's notifier and returns it.
func started(t *testing.T, c *Client) *notifier {
	t.Helper()
	n, err := c.notifierFor(t.Context(), "")
	if err != nil {
		t.Fatalf("notifier: %v", err)
	}
	if !n.tracking {
		t.Fatal("notifier without client tracking on a Redis 7 server")
	}
	return n
}

// settle waits until n has read every held key once, so that they are
// watched.
func settle(t *testing.T, n *notifier, reads int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for n.rereads.Load() < reads {
		if time.Now().After(deadline) {
			t.Fatalf("notifier read %d held keys, want %d", n.rereads.Load(), reads)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(5 * time.Millisecond) // the read's reply, then the watch is set
}

func TestHolderHearsForeignChange(t *testing.T) {
	srv := redistest.Start(t)
	for _, tc := range []struct {
		name   string
		change func(ctx context.Context, rdb *redis.Client, key string) error
	}{
		{"DEL", func(ctx context.Context, rdb *redis.Client, key string) error { return rdb.Del(ctx, key).Err() }},
		{"SET", func(ctx context.Context, rdb *redis.Client, key string) error {
			return rdb.Set(ctx, key, "someone-else", time.Minute).Err()
		}},
		{"FLUSHALL", func(ctx context.Context, rdb *redis.Client, _ string) error { return rdb.FlushAll(ctx).Err() }},
		{"force release", func(ctx context.Context, _ *redis.Client, key string) error {
			op := newTestClient(t, srv, Options{By: "operator"})
			_, err := op.ForceRelease(ctx, strings.TrimPrefix(key, DefaultPrefix))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			c := newTestClient(t, srv, slowHeartbeat)
			r := mustLock(t, c, "foreign-"+tc.name)
			settle(t, started(t, c), 1)
			if err := tc.change(ctx, srv.Client(t), r.Key()); err != nil {
				t.Fatal(err)
			}
			took := waitDone(t, r, time.Second)
			t.Logf("%s: Done closed %v after the foreign change", tc.name, took)
			if err := r.Err(); !errors.Is(err, ErrLost) {
				t.Errorf("Err() = %v, want ErrLost", err)
			}
		})
	}
}

func TestHolderHearsEviction(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, slowHeartbeat)
	rs := make([]*Reservation, 20)
	for i := range rs {
		rs[i] = mustLock(t, c, fmt.Sprintf("evicted-%d", i))
	}
	settle(t, started(t, c), int64(len(rs)))
	rdb := srv.Client(t)
	used, err := rdb.MemoryUsage(ctx, rs[0].Key()).Result()
	if err != nil {
		t.Fatal(err)
	}
	info := rdb.Info(ctx, "memory").Val()
	var mem int64
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			fmt.Sscan(v, &mem)
		}
	}
	_ = used
	rdb.ConfigSet(ctx, "maxmemory-policy", "allkeys-random")
	rdb.ConfigSet(ctx, "maxmemory", fmt.Sprint(mem+256<<10))
	t.Cleanup(func() { rdb.ConfigSet(context.Background(), "maxmemory", "0") })
	// Fill memory until the server evicts every reservation key.
	big := strings.Repeat("x", 64<<10)
	start := time.Now()
	for i := 0; ; i++ {
		left := 0
		for _, r := range rs {
			if rdb.Exists(ctx, r.Key()).Val() == 1 {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d reservation keys still there after filling memory", left)
		}
		rdb.Set(ctx, fmt.Sprintf("filler-%d", i), big, 0)
	}
	for _, r := range rs {
		waitDone(t, r, time.Second)
		if err := r.Err(); !errors.Is(err, ErrLost) {
			t.Errorf("%s: Err() = %v, want ErrLost", r.Resource(), err)
		}
	}
}

func TestFlushOfAnotherDatabaseIsNotALoss(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	c := newTestClient(t, srv, slowHeartbeat)
	r := mustLock(t, c, "db0-job")
	n := started(t, c)
	settle(t, n, 1)
	other := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: 1})
	defer other.Close()
	if err := other.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// Redis 7.0 tells every tracking client of any flush: the holder reads
	// its key again and keeps it.
	settle(t, n, 2)
	select {
	case <-r.Done():
		t.Fatalf("lost after a FLUSHDB of another database: %v", r.Err())
	case <-time.After(100 * time.Millisecond):
	}
	// And it still watches it.
	srv.Client(t).Del(ctx, r.Key())
	waitDone(t, r, time.Second)
}

func TestOwnRenewalsDoNotWakeTheHolder(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, slowHeartbeat)
	r := mustLock(t, c, "renewed")
	n := started(t, c)
	settle(t, n, 1)
	before := n.rereads.Load()
	// Ten renewals, as the heartbeat sends them (it waits 10 s itself).
	for range 10 {
		c.renew([]*Reservation{r})
	}
	time.Sleep(50 * time.Millisecond)
	if got := n.rereads.Load() - before; got != 0 {
		t.Errorf("%d reads of the held key after our own renewals, want 0: they woke us", got)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("Err() = %v after renewals", err)
	}
	// The renewals kept it watched: a foreign delete is heard at once,
	// not at the next heartbeat, 10 s away.
	srv.Client(t).Del(t.Context(), r.Key())
	waitDone(t, r, time.Second)
}

// killClient kills the notifier connection of c named name.
func killClient(t *testing.T, srv *redistest.Server, name string) {
	t.Helper()
	rdb := srv.Client(t)
	list := rdb.ClientList(t.Context()).Val()
	for line := range strings.SplitSeq(list, "\n") {
		if strings.Contains(line, " name="+name+" ") {
			var id int64
			for field := range strings.SplitSeq(line, " ") {
				if v, ok := strings.CutPrefix(field, "id="); ok {
					fmt.Sscan(v, &id)
				}
			}
			if err := rdb.ClientKillByFilter(t.Context(), "ID", fmt.Sprint(id)).Err(); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no client named %s in %s", name, list)
}

func TestNotifierConnectionKilled(t *testing.T) {
	for _, name := range []string{"reservation-subscriber", "reservation-tracking"} {
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := t.Context()
			c := newTestClient(t, srv, slowHeartbeat)
			holder := newTestClient(t, srv, Options{By: "other"})
			r := mustLock(t, c, "held")
			busy := mustLock(t, holder, "busy")
			n := started(t, c)
			settle(t, n, 1)

			waited := make(chan *Reservation, 1)
			go func() {
				w, err := c.Lock(ctx, "busy")
				if err != nil {
					t.Error(err)
				}
				waited <- w
			}()
			time.Sleep(50 * time.Millisecond) // the waiter watches "busy"
			killClient(t, srv, name)
			time.Sleep(50 * time.Millisecond)

			// Both a holder and a waiter hear of changes again, through
			// the new connection, not the 10 s heartbeat or re-check.
			start := time.Now()
			if err := busy.Release(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case w := <-waited:
				t.Logf("waiter woken %v after the release", time.Since(start))
				w.Release(ctx)
			case <-time.After(time.Second):
				t.Fatal("waiter not woken within 1s of the release")
			}
			srv.Client(t).Del(ctx, r.Key())
			t.Logf("holder told %v after the foreign delete", waitDone(t, r, time.Second))
		})
	}
}

// An ACL user of Redis 7 gets no Pub/Sub channel by default: it can still
// release, is told once why its waiters lose the push path, and its waiters
// still get the reservation.
func TestUserWithoutChannels(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	admin := srv.Client(t)
	if err := admin.Do(ctx, "ACL", "SETUSER", "worker", "on", ">pw", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	var events []Event
	var mu sync.Mutex
	opt := Options{By: "acl", TTL: 2 * time.Second, RetryInterval: 100 * time.Millisecond, Logger: quiet,
		OnEvent: func(e Event) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
		}}
	c, err := New(strings.Replace(srv.URL(), "redis://", "redis://worker:pw@", 1), &opt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PrimeRestartGuard(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := c.TryLock(ctx, "acl-job")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Release(ctx); err != nil {
		t.Fatalf("Release by a user without channels = %v, want nil: the notice is best effort", err)
	}
	if n := admin.Exists(ctx, r.Key()).Val(); n != 0 {
		t.Errorf("key still there after Release")
	}
	// A waiter still gets the resource.
	held, err := c.TryLock(ctx, "acl-wait")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		w, err := c.Lock(ctx, "acl-wait")
		if err == nil {
			err = w.Release(ctx)
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	held.Release(ctx)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("waiter not served within 2s")
	}
	mu.Lock()
	defer mu.Unlock()
	perms := 0
	for _, e := range events {
		if e.Kind == EventNoPermission {
			perms++
			if !errors.Is(e.Err, ErrNoPermission) {
				t.Errorf("event %v: Err %v, want ErrNoPermission", e.Kind, e.Err)
			}
			t.Logf("told: %v", e.Err)
		}
	}
	if perms == 0 || perms > 2 {
		t.Errorf("%d permission-denied events, want one for the notices and at most one for subscriptions", perms)
	}
}

func TestEvictionRiskReported(t *testing.T) {
	for _, tc := range []struct {
		policy string
		want   int
	}{{"volatile-lru", 1}, {"allkeys-lru", 1}, {"noeviction", 0}} {
		t.Run(tc.policy, func(t *testing.T) {
			srv := redistest.Start(t, redistest.WithArgs("--maxmemory", "100mb", "--maxmemory-policy", tc.policy))
			var mu sync.Mutex
			var got []Event
			c := newTestClient(t, srv, Options{OnEvent: func(e Event) {
				if e.Kind == EventEvictionRisk {
					mu.Lock()
					got = append(got, e)
					mu.Unlock()
				}
			}})
			mustLock(t, c, "evictable")
			mustLock(t, c, "evictable-2")
			started(t, c)
			count := func() int {
				mu.Lock()
				defer mu.Unlock()
				return len(got)
			}
			if tc.want > 0 {
				// Checked by the notifier's loop, told by the event
				// goroutine: wait for it.
				waitFor(t, func() bool { return count() >= tc.want })
			}
			time.Sleep(100 * time.Millisecond) // and for any other
			mu.Lock()
			defer mu.Unlock()
			if len(got) != tc.want {
				t.Fatalf("%d eviction-risk events, want %d: %v", len(got), tc.want, got)
			}
			if tc.want > 0 && !strings.Contains(got[0].Err.Error(), "noeviction") {
				t.Errorf("event %v does not name the setting to change", got[0].Err)
			}
		})
	}
}

// Many waiters share the tracking connection with the heartbeat's
// renewals: their watches must not starve the renewals.
func TestManyWaitersDoNotStarveRenewals(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	other := newTestClient(t, srv, Options{By: "other", TTL: 30 * time.Second})
	c := newTestClient(t, srv, Options{TTL: 300 * time.Millisecond, RetryInterval: 5 * time.Millisecond})
	r := mustLock(t, c, "renewed-among-waiters")
	const waiters = 200
	for i := range waiters {
		mustLock(t, other, fmt.Sprintf("busy-%d", i))
	}
	wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Lock(wctx, fmt.Sprintf("busy-%d", i)); !errors.Is(err, ErrNotAcquired) {
				t.Errorf("waiter %d: %v, want ErrNotAcquired at its deadline", i, err)
			}
		}()
	}
	wg.Wait()
	if err := r.Err(); err != nil {
		t.Fatalf("holder lost among %d waiters: %v", waiters, err)
	}
}

// Calls whose deadlines end in the middle of the notifier's work leave no
// connection behind, and Close returns.
func TestCloseAfterAbandonedCalls(t *testing.T) {
	srv := redistest.Start(t)
	other := newTestClient(t, srv, Options{By: "other", TTL: 30 * time.Second})
	for i := range 10 {
		mustLock(t, other, fmt.Sprintf("held-%d", i))
	}
	// Without the server's queue, each Lock arms its key at once after its
	// first attempt: more deadlines end in the middle of a read.
	c, err := New(srv.URL(), &Options{By: "hasty", Logger: quiet, RestartGuard: -1, NoQueue: true})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := time.Now().Add(2 * time.Second)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(stop); n++ {
				// Deadlines from 100 µs to 5 ms: some end in the middle of
				// a read, or of a connection's set-up, however slow the
				// machine (a loaded CI ends most of the short ones before
				// the waiter reads its key at all).
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(100+n%50*100)*time.Microsecond)
				c.Lock(ctx, fmt.Sprintf("held-%d", i))
				cancel()
			}
		}()
	}
	wg.Wait()
	tracking := len(trackingIDs(t, srv.Client(t)))
	if tracking > 2 {
		t.Errorf("%d tracking connections open, want at most 2: connections leak", tracking)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5s")
	}
}

// trackingIDs returns the ids of the notifiers' tracking connections open
// on the server of rdb.
func trackingIDs(t *testing.T, rdb *redis.Client) []string {
	var ids []string
	for line := range strings.SplitSeq(rdb.ClientList(t.Context()).Val(), "\n") {
		if strings.Contains(line, "name=reservation-tracking ") {
			id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
			ids = append(ids, id)
		}
	}
	return ids
}

// A waiter's arm whose context ends in the middle of its read (the server
// holds every command back meanwhile) does not tear the shared tracking
// connection down: the notifier reads with its own context, and the
// waiter alone gives up.
func TestArmOutlivesTheWaitersContext(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, slowHeartbeat)
	n := started(t, c)
	settle(t, n, 0)
	admin := srv.Client(t)
	before, gen := trackingIDs(t, admin), n.gen
	for range 3 {
		if err := admin.Do(t.Context(), "CLIENT", "PAUSE", 300, "ALL").Err(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		_, err := n.arm(ctx, "reservation-paused")
		cancel()
		if err == nil {
			t.Fatal("arm answered while the server held every command back")
		}
		time.Sleep(400 * time.Millisecond) // the pause ends, the read is answered
	}
	n.mu.Lock()
	after := n.gen
	n.mu.Unlock()
	if ids := trackingIDs(t, admin); !slices.Equal(ids, before) || after != gen {
		t.Errorf("after 3 arms given up mid-read: tracking connections %v (generation %d), want %v as before (generation %d)", ids, after, before, gen)
	}
}

// A reservation acquired on the notifier's tracking connection is watched
// by the read that follows the acquire script there: its holder does not
// read it again, unless tracking may have been lost meanwhile (a rearm
// asked for, under way, or done since the read was sent).
func TestAcquisitionReadWatchesTheKey(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, slowHeartbeat)
	n := started(t, c)
	settle(t, n, 0)
	// An acquisition once the notifier runs: its read watched it.
	before := n.rereads.Load()
	r := mustLock(t, c, "watched")
	n.mu.Lock()
	verify := n.verify[r.key]
	n.mu.Unlock()
	if verify || n.rereads.Load() != before+1 {
		t.Errorf("acquired on the tracking connection: verify %v, reads %d; want no read of its own (the acquisition's read)", verify, n.rereads.Load()-before)
	}
	// And it is watched: a foreign delete is heard at once.
	srv.Client(t).Del(t.Context(), r.Key())
	waitDone(t, r, time.Second)

	// The rule itself, for each way tracking may have been lost. It is
	// asked with n.mu held from the change on: watchHeld would have the
	// watch loop read the key, and clear the mark the test would look at.
	for _, tc := range []struct {
		name   string
		before func() // between the read and the holding; n.mu is held
		verify bool
	}{
		{"nothing", func() {}, false},
		{"no read followed the acquisition", nil, true},
		{"rearm asked for", func() { n.rearm = true }, true},
		{"rearm under way", func() { n.rearming = true }, true},
		{"rearm done", func() { n.gen++ }, true},
		{"a notice came", func() { n.notices++ }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gen, notices := n.snapshot()
			var w *trackedRead
			if tc.before != nil {
				w = &trackedRead{n: n, gen: gen, notices: notices}
			}
			n.mu.Lock()
			if tc.before != nil {
				tc.before()
			}
			verify := !n.stillWatches(w)
			n.rearm, n.rearming = false, false
			n.mu.Unlock()
			if verify != tc.verify {
				t.Errorf("holder reads its key again: %v, want %v", verify, tc.verify)
			}
		})
	}
	// A notice counts as notify counts it.
	gen, notices := n.snapshot()
	n.notify("reservation-other")
	n.mu.Lock()
	trusted := n.stillWatches(&trackedRead{n: n, gen: gen, notices: notices})
	n.mu.Unlock()
	if trusted {
		t.Error("a held key's watch is trusted after a notice")
	}
}

// A key this Client released is no longer watched for its waiters (NOLOOP
// dropped it on the tracking connection without a notice): they read it
// again.
func TestReleaseHereUnarmsTheKey(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestClient(t, srv, slowHeartbeat)
	n := started(t, c)
	key := c.Key("unarmed")
	w := n.join(key)
	defer n.leave(key, w, false)
	n.mu.Lock()
	n.keys[key].armed = true
	n.mu.Unlock()
	n.released(key)
	if _, _, armed := n.state(key, w); armed {
		t.Error("the key is armed after this Client released it")
	}
}

// A waiter whose attempt ran on the tracking connection is watched by the
// read that followed it there: woken by a change of the key, it tries
// again and does not read the key once more to watch it (no PTTL), and a
// foreign delete still wakes it at once.
func TestRefusedAttemptWatchesTheKey(t *testing.T) {
	for _, noQueue := range []bool{false, true} {
		t.Run(fmt.Sprintf("noqueue=%v", noQueue), func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := t.Context()
			rdb := srv.Client(t)
			// Held by a plain SET, so that only the waiter reads with
			// CLIENT CACHING.
			key := DefaultPrefix + "watched-by-attempt"
			if err := rdb.Set(ctx, key, "someone", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			opt := slowHeartbeat
			opt.NoQueue = noQueue
			c := newTestClient(t, srv, opt)
			started(t, c)
			got := make(chan error, 1)
			go func() {
				r, err := c.Lock(ctx, "watched-by-attempt")
				if err == nil {
					err = r.Release(ctx)
				}
				got <- err
			}()
			time.Sleep(300 * time.Millisecond) // its attempt, and its first watch
			if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			// Taken over by someone else: the waiter wakes and tries.
			if err := rdb.Set(ctx, key, "someone-else", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			// Each attempt on the tracking connection is followed by a
			// read after CLIENT CACHING YES; a read to watch the key would
			// be one more.
			calls := func(cmd string) int {
				stats := rdb.Info(ctx, "commandstats").Val()
				_, after, _ := strings.Cut(stats, "cmdstat_"+cmd+":calls=")
				n, _ := strconv.Atoi(after[:strings.IndexByte(after+",", ',')])
				return n
			}
			attempts, reads := calls("evalsha"), calls("client|caching")
			if attempts == 0 {
				t.Fatal("the waiter did not try again after the change")
			}
			if reads != attempts {
				t.Errorf("%d attempts and %d reads that watch: the waiter read its key to watch it again", attempts, reads)
			}
			if err := rdb.Del(ctx, key).Err(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(time.Second):
				t.Fatal("the waiter was not woken by a foreign delete within 1 s")
			}
		})
	}
}
