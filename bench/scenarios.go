package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation/internal/redisserver"
)

// result is one library's run of one scenario in one round.
type result struct {
	Scenario string
	Lib      string
	Round    int
	Topology string // topoSingle, topoCluster or topoQuorum

	// On a cluster: the Redis keys that the scenario locked (the
	// library's own, for every resource measured), counted per master.
	PerMaster []int64

	Ops     int64         // cycles (1, 2, s1), acquisitions (3, 4, s3), trials (5, 6), losses noticed or not (8)
	Elapsed time.Duration // of the measured part
	Lat     []time.Duration
	U       usage

	// Scenarios 1, 2 and s1: how long each cycle's acquisition took.
	Acq []time.Duration

	// Scenario 3 (MinPer and MaxPer: s3 and s3p too).
	BackShare float64 // share of acquisitions that went back to the releaser
	MinPer    int64   // fewest acquisitions of one goroutine
	MaxPer    int64   // most acquisitions of one goroutine

	// Scenario 4: the holds imposed by the harness, left out of the rate.
	Held time.Duration

	// Scenarios 3, 4 and 9: the order of service against the order of
	// arrival, and every wait (from the wait call to holding).
	Order fairness
	Waits []time.Duration

	// Scenario 9.
	Procs int     // processes contending
	Sent  int64   // commands the processes sent (Redis calls less the scripts' inner ones)
	Conns float64 // connections to the server per process, while they contend

	// Scenario c1: Redis's instructions in the measured cycles.
	Instr int64

	// Scenario 7.
	Holding    int
	Lost       int
	BytesPer   float64 // Go heap and stacks per held reservation
	Goroutines float64 // goroutines per held reservation

	// Scenarios 1, 2 and 7: acquisitions of free resources that failed
	// (and, in 7, were tried again).
	Failures int64

	// Scenarios 5 and 6; in 8, losses not noticed within cfg.giveUp8.
	Timeouts int   // waiters that did not hold the resource within cfg.giveUp
	Expires  int64 // keys with a TTL in the database at the start

	// Scenario 8: losses whose Err did not match ErrLost.
	Causes int

	// Scenarios s3 and s3p: the most holders the harness saw at once, in
	// all, and the acquisitions that found their semaphore or plain
	// resource already held by as many as it allows (Limit, or 1): there
	// must be none.
	MostHolders int
	Excess      int64

	Err error
}

// env is what every scenario gets: one deployment, its clients that are
// not counted, and the run's configuration.
type env struct {
	tg target
	// infos are a plain client per master (the one server's alone on a
	// single server): INFO, FLUSHALL. Not counted.
	infos []*redis.Client
	// info is infos[0]: foreign holders and writes (scenarios that run on
	// a single server only). Not counted.
	info *redis.Client
	// prime primes this library's restart guard on the deployment.
	prime func(context.Context) error
	cfg   config
	tag   string // unique per run, so that keys never collide
	// With -callgrind: the single server, under callgrind.
	cg *callgrind
}

func randomValue() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// open makes n instances of lib sharing one round-trip counter.
func (e *env) open(lib string, n int, st settings) ([]locker, *roundTrips, error) {
	rt := &roundTrips{}
	ls := make([]locker, 0, n)
	for range n {
		l, err := newLocker(lib, e.tg, rt, st)
		if err != nil {
			closeAll(ls)
			return nil, nil, err
		}
		ls = append(ls, l)
	}
	return ls, rt, nil
}

func closeAll(ls []locker) {
	for _, l := range ls {
		l.close()
	}
}

// keyPrefix answers the prefix of the resources of lib in one round of a
// scenario.
func (e *env) keyPrefix(scenario, lib string, round int) string {
	return fmt.Sprintf("%s-s%s-%s-r%d", e.tag, scenario, lib, round)
}

// warmUp acquires and releases key once: connections, scripts loaded.
func warmUp(ctx context.Context, l locker, key string) error {
	if err := acquireRelease(ctx, l, key); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	return nil
}

// acquireRelease acquires key, which must be free, and releases it.
func acquireRelease(ctx context.Context, l locker, key string) error {
	h, ok, err := l.try(ctx, key)
	if err != nil || !ok {
		return fmt.Errorf("acquire %s: %v %v", key, ok, err)
	}
	return h.release(ctx)
}

// measure runs body between two snapshots.
func (e *env) measure(ctx context.Context, rt *roundTrips, body func() error) (usage, time.Duration, error) {
	a, err := take(ctx, e.infos, rt)
	if err != nil {
		return usage{}, 0, err
	}
	start := time.Now()
	berr := body()
	elapsed := time.Since(start)
	b, err := take(ctx, e.infos, rt)
	if err != nil {
		return usage{}, 0, err
	}
	return a.to(b), elapsed, berr
}

// cycleSettings are the timings of scenarios 1 to 6: long enough that no
// renewal happens while a reservation is held for a few microseconds.
var cycleSettings = settings{ttl: 10 * time.Second}

// cycles runs scenarios 1, 2 and s1: workers goroutines acquire and
// release fresh resources on one client made with st for d.
func (e *env) cycles(ctx context.Context, lib, scenario string, round, workers int, st settings, d time.Duration) result {
	r := result{Scenario: scenario, Lib: lib, Round: round}
	ls, rt, err := e.open(lib, 1, st)
	if err != nil {
		r.Err = err
		return r
	}
	defer closeAll(ls)
	l := ls[0]
	prefix := e.keyPrefix(scenario, lib, round)
	var ops, failures atomic.Int64
	// cycle acquires and releases name, and answers how long the cycle
	// and its acquisition took (-1: the acquisition failed). An
	// acquisition that fails (an error, or false though the resource is
	// free) is counted, not fatal: rueidislock gives up on a key after
	// TryNextAfter (20 ms) when busy.
	cycle := func(name string) (time.Duration, time.Duration, error) {
		start := time.Now()
		h, ok, err := l.try(ctx, name)
		acquired := time.Since(start)
		if err != nil || !ok {
			if ctx.Err() != nil {
				return 0, 0, ctx.Err()
			}
			if n := failures.Add(1); n > 100 && n > ops.Load()/10 {
				return 0, 0, fmt.Errorf("%d acquisitions of free resources failed, the last: %v", n, err)
			}
			return -1, -1, nil
		}
		if err := h.release(ctx); err != nil {
			return 0, 0, err
		}
		return time.Since(start), acquired, nil
	}
	// Warm up: connections, scripts loaded, goroutines started.
	for i := range 50 {
		if _, _, err := cycle(prefix + "-warm-" + strconv.Itoa(i)); err != nil {
			r.Err = err
			return r
		}
	}
	lats := make([][]time.Duration, workers)
	acqs := make([][]time.Duration, workers)
	tried := make([]int, workers) // resources each worker tried
	name := func(w, i int) string { return prefix + "-w" + strconv.Itoa(w) + "-" + strconv.Itoa(i) }
	r.U, r.Elapsed, r.Err = e.measure(ctx, rt, func() error {
		deadline := time.Now().Add(d)
		errs := make(chan error, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				lat := make([]time.Duration, 0, 1<<14)
				acq := make([]time.Duration, 0, 1<<14)
				i := 0
				defer func() { lats[w], acqs[w], tried[w] = lat, acq, i }()
				for ; time.Now().Before(deadline); i++ {
					d, a, err := cycle(name(w, i))
					if err != nil {
						errs <- err
						return
					}
					if d >= 0 {
						lat = append(lat, d)
						acq = append(acq, a)
						ops.Add(1)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	r.Ops = ops.Load()
	r.Failures = failures.Load()
	for w := range lats {
		r.Lat = append(r.Lat, lats[w]...)
		r.Acq = append(r.Acq, acqs[w]...)
	}
	// After the measurement, so that it costs the client nothing measured.
	for w, n := range tried {
		for i := range n {
			r.PerMaster = e.tg.count(r.PerMaster, l.keys(name(w, i)))
		}
	}
	return r
}

// holding is one acquisition in scenarios 3 and 4.
type holding struct {
	worker   int
	arrived  time.Time     // when the wait call began
	acquired time.Time     // when the wait call returned
	released time.Time     // when the release call returned
	waited   time.Duration // how long the wait call took
	held     time.Duration // from acquired to the release call
}

// park is how long, in scenario 4, the goroutine whose turn came back has
// been in its wait call before the holder releases: long enough for its
// first attempt to fail and for it to park, so that every handoff is a
// wake-up of a waiting goroutine. The holds are left out of the rate.
const park = time.Millisecond

// contended runs scenarios 3 and 4: workers goroutines take turns on one
// resource, over clients instances of the library (1: one shared client;
// workers: one client each, as separate processes would). In round-robin
// mode a releaser waits again only after every other worker acquired once,
// and a holder releases once every goroutine whose turn came back has
// been waiting for park.
func (e *env) contended(ctx context.Context, lib, scenario string, round, workers, clients int, roundRobin bool, d time.Duration) result {
	r := result{Scenario: scenario, Lib: lib, Round: round}
	ls, rt, err := e.open(lib, clients, cycleSettings)
	if err != nil {
		r.Err = err
		return r
	}
	defer closeAll(ls)
	res := e.keyPrefix(scenario, lib, round)
	// On a cluster, the resource is on another master every round.
	res = e.tg.onMaster(res, round, ls[0].keys)
	r.PerMaster = e.tg.count(nil, ls[0].keys(res))
	// Warm up every client.
	for i, l := range ls {
		h, ok, err := l.try(ctx, res+"-warm-"+strconv.Itoa(i))
		if err == nil && ok {
			err = h.release(ctx)
		}
		if err != nil {
			r.Err = err
			return r
		}
	}

	var (
		mu   sync.Mutex
		cond = sync.NewCond(&mu)
		hold = make([]holding, 0, 1<<14) // in the order of acquisition
		acqs int                         // acquisitions so far
		stop bool
		// stopped is when the run ended; unserved are the wait calls
		// that the end cut short, when they began.
		stopped  time.Time
		unserved []time.Time
		// Per worker: when its wait call began (zero: not waiting), and
		// the acquisitions counted at its last one (-1: none yet).
		since = make([]time.Time, workers)
		turns = make([]int, workers)
	)
	for w := range turns {
		turns[w] = -1
	}
	// parked reports whether every worker but self that may wait has been
	// waiting for park. Called with mu held.
	parked := func(self int, now time.Time) bool {
		for w, t := range turns {
			if w == self || (t >= 0 && acqs < t+workers-1) {
				continue
			}
			if since[w].IsZero() || now.Sub(since[w]) < park {
				return false
			}
		}
		return true
	}
	r.U, r.Elapsed, r.Err = e.measure(ctx, rt, func() error {
		runCtx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		go func() { // wake the round-robin sleepers at the end
			<-runCtx.Done()
			mu.Lock()
			stop = true
			stopped = time.Now()
			cond.Broadcast()
			mu.Unlock()
		}()
		errs := make(chan error, workers)
		var wg sync.WaitGroup
		for w := range workers {
			l := ls[w%len(ls)]
			wg.Go(func() {
				for {
					mu.Lock()
					for roundRobin && !stop && turns[w] >= 0 && acqs < turns[w]+workers-1 {
						cond.Wait()
					}
					start := time.Now()
					since[w] = start
					mu.Unlock()
					h, err := l.wait(runCtx, res)
					if err != nil {
						if runCtx.Err() == nil {
							errs <- err
						}
						mu.Lock()
						unserved = append(unserved, start)
						mu.Unlock()
						return
					}
					now := time.Now()
					mu.Lock()
					seq := len(hold)
					hold = append(hold, holding{worker: w, arrived: start, acquired: now, waited: now.Sub(start)})
					since[w] = time.Time{}
					acqs++
					cond.Broadcast()
					for roundRobin && !stop && !parked(w, time.Now()) {
						mu.Unlock()
						time.Sleep(20 * time.Microsecond)
						mu.Lock()
					}
					hold[seq].held = time.Since(now)
					mu.Unlock()
					// Release with a fresh context: the run may just have ended.
					if err := h.release(context.WithoutCancel(ctx)); err != nil {
						errs <- fmt.Errorf("release: %w", err)
						return
					}
					now = time.Now()
					mu.Lock()
					hold[seq].released = now
					turns[w] = seq + 1
					mu.Unlock()
					if runCtx.Err() != nil {
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	// Acquisitions, waits, handoffs and fairness, in acquisition order.
	per := make([]int64, workers)
	var back, pairs int64
	visits := make([]visit, 0, len(hold)+len(unserved))
	for _, h := range hold {
		visits = append(visits, visit{arrived: h.arrived, served: h.acquired})
	}
	for _, t := range unserved {
		visits = append(visits, visit{arrived: t})
	}
	mu.Lock()
	to := stopped
	mu.Unlock()
	if to.IsZero() { // a goroutine failed: the run ended early
		to = time.Now()
	}
	// The goroutines take their arrival time under mu, one at a time, and
	// send their first command at once: no slack.
	r.Order, r.Waits = orderOf(visits, time.Time{}, to, burst(visits, workers), 0)
	for k, h := range hold {
		r.Ops++
		r.Held += h.held
		per[h.worker]++
		if scenario == "3" || scenario == "3x" {
			r.Lat = append(r.Lat, h.waited)
		} else if k > 0 && !hold[k-1].released.IsZero() {
			// Handoff: from the release returning to the next acquire
			// returning. A waiter woken by the server may return before
			// the releaser has its reply: that counts as 0.
			r.Lat = append(r.Lat, max(h.acquired.Sub(hold[k-1].released), 0))
		}
		if k > 0 {
			pairs++
			if hold[k-1].worker == h.worker {
				back++
			}
		}
	}
	if pairs > 0 {
		r.BackShare = float64(back) / float64(pairs)
	}
	r.MinPer, r.MaxPer = per[0], per[0]
	for _, n := range per {
		r.MinPer, r.MaxPer = min(r.MinPer, n), max(r.MaxPer, n)
	}
	return r
}

// foreignHolder runs scenarios 5 and 6: a foreign holder (a holder that
// vanished, or a Node worker) holds the resource's keys; a waiter of lib
// waits. In scenario 5 the keys expire after ttl; in scenario 6 they are
// removed by a plain DEL. The latency is from the expiry or the DEL to the
// waiter holding the resource.
func (e *env) foreignHolder(ctx context.Context, lib, scenario string, round, trials int, ttl time.Duration) result {
	r := result{Scenario: scenario, Lib: lib, Round: round}
	ls, rt, err := e.open(lib, 1, cycleSettings)
	if err != nil {
		r.Err = err
		return r
	}
	defer closeAll(ls)
	l := ls[0]
	prefix := e.keyPrefix(scenario, lib, round)
	if err := warmUp(ctx, l, prefix+"-warm"); err != nil {
		r.Err = err
		return r
	}
	r.Expires = e.expires(ctx)
	r.U, r.Elapsed, r.Err = e.measure(ctx, rt, func() error {
		for i := range trials {
			res := prefix + "-" + strconv.Itoa(i)
			keys := l.keys(res)
			// A random extra lifetime, so that pollers are not in step
			// with the expiry.
			ttl := ttl
			if scenario != "6" {
				ttl += time.Duration(mrand.Int64N(int64(100 * time.Millisecond)))
			}
			sent := time.Now()
			_, err := e.info.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					if scenario != "6" {
						p.Set(ctx, k, "foreign-holder", ttl)
					} else {
						p.Set(ctx, k, "foreign-holder", 0)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			origin := sent.Add(time.Since(sent) / 2).Add(ttl) // the keys' expiry
			type got struct {
				h   held
				at  time.Time
				err error
			}
			done := make(chan got, 1)
			wctx, cancel := context.WithTimeout(ctx, ttl+e.cfg.giveUp)
			go func() {
				h, err := l.wait(wctx, res)
				done <- got{h, time.Now(), err}
			}()
			if scenario == "6" {
				time.Sleep(30 * time.Millisecond) // the waiter is parked
				sent := time.Now()
				if err := e.info.Del(ctx, keys...).Err(); err != nil {
					cancel()
					return err
				}
				origin = sent.Add(time.Since(sent) / 2)
			}
			g := <-done
			cancel()
			r.Ops++
			if g.err != nil {
				if wctx.Err() == nil || ctx.Err() != nil {
					return fmt.Errorf("trial %d: %w", i, g.err)
				}
				// Never woken: counted, with the time given up after.
				r.Timeouts++
				r.Lat = append(r.Lat, e.cfg.giveUp)
				_ = e.info.Del(ctx, keys...).Err()
				continue
			}
			r.Lat = append(r.Lat, max(g.at.Sub(origin), 0))
			if err := g.h.release(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	return r
}

// atScale runs scenario 7: one process holds n reservations, renewed every
// hb, valid for ttl, for d. Libraries without a heartbeat of their own get
// the loop their users would write: every hb, extend each lock, 16 at a
// time.
func (e *env) atScale(ctx context.Context, lib string, round, n int, ttl, hb, d time.Duration) result {
	r := result{Scenario: "7", Lib: lib, Round: round}
	base := heapInUse()
	ls, rt, err := e.open(lib, 1, settings{ttl: ttl, heartbeat: hb})
	if err != nil {
		r.Err = err
		return r
	}
	l := ls[0]
	defer closeAll(ls)
	prefix := e.keyPrefix("7", lib, round) + "-"
	if err := warmUp(ctx, l, prefix+"warm"); err != nil {
		r.Err = err
		return r
	}
	base = max(base, heapInUse())
	goroutines := runtime.NumGoroutine()

	hs := make([]held, n)
	const par = 16
	forEach := func(f func(i int) error) error {
		errs := make(chan error, par)
		var wg sync.WaitGroup
		for w := range par {
			wg.Go(func() {
				for i := w; i < n; i += par {
					if err := f(i); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	// An attempt may fail on a free resource under load (rueidislock gives
	// up on a key after TryNextAfter, 20 ms): try again a few times.
	var retries atomic.Int64
	err = forEach(func(i int) error {
		for attempt := 0; ; attempt++ {
			h, ok, err := l.try(ctx, prefix+strconv.Itoa(i))
			if err == nil && ok {
				hs[i] = h
				return nil
			}
			if err == nil {
				err = errors.New("not acquired though free")
			}
			if attempt == 10 || ctx.Err() != nil {
				return fmt.Errorf("%s%d: %w", prefix, i, err)
			}
			retries.Add(1)
			time.Sleep(10 * time.Millisecond)
		}
	})
	r.Failures = retries.Load()
	if err != nil {
		r.Err = err
		return r
	}
	r.Holding = n
	for i := range n {
		r.PerMaster = e.tg.count(r.PerMaster, l.keys(prefix+strconv.Itoa(i)))
	}
	r.BytesPer = float64(int64(heapInUse())-int64(base)) / float64(n)
	r.Goroutines = float64(runtime.NumGoroutine()-goroutines) / float64(n)

	hbCtx, stopHB := context.WithCancel(ctx)
	var hbWG sync.WaitGroup
	if !l.renews() {
		hbWG.Go(func() {
			t := time.NewTicker(hb)
			defer t.Stop()
			for {
				select {
				case <-hbCtx.Done():
					return
				case <-t.C:
				}
				// A sweep under way runs to its end: stopping the loop
				// must not fail the extensions it is sending.
				_ = forEach(func(i int) error {
					if !hs[i].lost() {
						_ = hs[i].extend(ctx)
					}
					return nil
				})
			}
		})
	}
	r.U, r.Elapsed, r.Err = e.measure(ctx, rt, func() error {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		return ctx.Err()
	})
	stopHB()
	hbWG.Wait()
	for _, h := range hs {
		if h.lost() {
			r.Lost++
		}
	}
	r.Ops = int64(n)
	_ = forEach(func(i int) error {
		if !hs[i].lost() {
			_ = hs[i].release(ctx)
		}
		return nil
	})
	return r
}

// pingRTT measures the loopback round trip of a plain go-redis client, to
// the server or the first master.
func (e *env) pingRTT(ctx context.Context, round, n int) result {
	r := result{Scenario: "rtt", Lib: "PING", Round: round}
	rdb := redis.NewClient(&redis.Options{Addr: e.tg.addrs[0]})
	defer rdb.Close()
	for range 100 {
		if r.Err = rdb.Ping(ctx).Err(); r.Err != nil {
			return r
		}
	}
	for range n {
		start := time.Now()
		if r.Err = rdb.Ping(ctx).Err(); r.Err != nil {
			return r
		}
		r.Lat = append(r.Lat, time.Since(start))
		r.Elapsed += r.Lat[len(r.Lat)-1]
	}
	r.Ops = int64(n)
	return r
}

// expires answers how many keys of database 0 have a TTL: Redis's active
// expiry samples them, so the more there are, the later an expired key is
// found and deleted (and its invalidation or notification sent).
func (e *env) expires(ctx context.Context) int64 {
	text, err := e.info.Info(ctx, "keyspace").Result()
	if err != nil {
		return -1
	}
	db0 := redisserver.InfoField(text, "db0")
	for field := range strings.SplitSeq(db0, ",") {
		if v, ok := strings.CutPrefix(field, "expires="); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// reset empties the server (every master of a cluster) before a library's
// run, so that every library finds it in the same state (no keys left by
// the one before, such as this library's fencing keys, which live a
// minute), and primes this library's restart guard again, as on a new
// server.
func (e *env) reset(ctx context.Context) error {
	for _, info := range e.infos {
		if err := info.FlushAll(ctx).Err(); err != nil {
			return err
		}
	}
	return e.prime(ctx)
}

// crowd adds n keys with a TTL of ten minutes: Redis's active expiry samples
// the keys with a TTL, so among many, an expired key is found later.
func (e *env) crowd(ctx context.Context, n int) error {
	const chunk = 1000
	for i := 0; i < n; i += chunk {
		_, err := e.info.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j := i; j < min(i+chunk, n); j++ {
				p.Set(ctx, "crowd-"+strconv.Itoa(j), "x", 10*time.Minute)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
