package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	redsyncredis "github.com/go-redsync/redsync/v4/redis"
	redsyncgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidislock"

	"github.com/redis-reservation/reservation"
)

// The libraries compared, in the order of the tables.
const (
	libOurs = "reservation"
	// libOursNoQueue is this library with Options.NoQueue: waiters take
	// the key whenever it is free, as before the server's queue.
	libOursNoQueue = "reservation-noqueue"
	libRedsync     = "redsync"
	libRedlock     = "redislock"
	libRueidis     = "rueidislock"
	libRueidis1    = "rueidislock-km1"
	// libRueidis1NoLoop is rueidislock's fastest configuration: KeyMajority
	// 1 and NoLoopTracking (its own writes send it no invalidations).
	libRueidis1NoLoop = "rueidislock-km1-noloop"
	libRawGo          = "raw go-redis"
	libRawRue         = "raw rueidis"
	// libRawRueScripts is this library's own acquire and release scripts,
	// and the holder's read of its key, sent raw on rueidis: what this
	// library could reach on rueidis's pipelining, with every guarantee
	// the scripts keep, and none of the library's client side.
	libRawRueScripts = "reservation-scripts-rueidis"
)

var allLibs = []string{libOurs, libOursNoQueue, libRedsync, libRedlock, libRueidis, libRueidis1, libRueidis1NoLoop, libRawGo, libRawRue, libRawRueScripts}

// peers are the lock libraries (not the raw floors).
var peers = []string{libRedsync, libRedlock, libRueidis, libRueidis1, libRueidis1NoLoop}

// isRaw reports whether lib is a raw floor (or this library's scripts
// sent raw): it cannot wait or renew.
func isRaw(lib string) bool { return lib == libRawGo || lib == libRawRue || lib == libRawRueScripts }

// settings are the timings a library instance is made with.
type settings struct {
	ttl       time.Duration // lock validity
	heartbeat time.Duration // renewal interval (0: the library's default)
	// limit makes this library's calls take one of limit permits of a
	// semaphore (reservation.Limit); 0 for a plain reservation.
	limit int
	// tryNext is rueidislock's TryNextAfter (0: its default, 20 ms), how
	// long it waits for a key's reply before it gives up on it: longer for
	// a server under valgrind, which a call can take that long to answer.
	tryNext time.Duration
}

// locker is what every library offers the scenarios.
type locker interface {
	// try acquires res once and answers false when someone else holds it.
	try(ctx context.Context, res string) (held, bool, error)
	// wait blocks until it holds res or ctx ends. The raw floors cannot.
	wait(ctx context.Context, res string) (held, error)
	// keys are the Redis keys that hold res for this library: a foreign
	// holder (scenarios 5 and 6) sets all of them.
	keys(res string) []string
	// renews reports whether the library renews what it holds by itself.
	renews() bool
	close()
}

// held is one holding.
type held interface {
	release(ctx context.Context) error
	// extend renews it once, for libraries without a heartbeat of their own.
	extend(ctx context.Context) error
	// lost reports whether the library has declared it lost.
	lost() bool
}

var errNotSupported = errors.New("not supported by this library")

// newLocker makes an instance of lib on tg, counting its round trips in rt.
// On a cluster, every library gets a cluster client: go-redis's
// ClusterClient, or rueidis's, which finds the cluster by itself from the
// same addresses. On a quorum, this library and redsync get a go-redis
// client per server; the others have no row there.
func newLocker(lib string, tg target, rt *roundTrips, st settings) (locker, error) {
	goRedis := func() redis.UniversalClient {
		if tg.topology == topoCluster {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: tg.addrs, Dialer: rt.dial})
		}
		return redis.NewClient(&redis.Options{Addr: tg.addrs[0], Dialer: rt.dial})
	}
	if tg.topology == topoQuorum {
		return newQuorumLocker(lib, tg, rt, st)
	}
	switch lib {
	case libOurs, libOursNoQueue:
		// Over a ClusterClient, NewWithClient makes the Client NewCluster
		// makes (a notifier per master, renewals per master), but for
		// ContextTimeoutEnabled, which the single server's client does not
		// set either.
		rdb := goRedis()
		opt := oursOptions(st)
		opt.NoQueue = lib == libOursNoQueue
		c, err := reservation.NewWithClient(rdb, opt)
		if err != nil {
			rdb.Close()
			return nil, err
		}
		o := &ours{c: c, rdbs: []redis.UniversalClient{rdb}}
		if st.limit > 0 {
			o.opts = []reservation.LockOption{reservation.Limit(st.limit)}
		}
		return o, nil
	case libRedsync:
		rdb := goRedis()
		return &redsyncLocker{rdbs: []redis.UniversalClient{rdb}, rs: redsync.New(redsyncgoredis.NewPool(rdb)), ttl: st.ttl}, nil
	case libRedlock:
		rdb := goRedis()
		return &redlockLocker{rdb: rdb, c: redislock.New(rdb), ttl: st.ttl}, nil
	case libRueidis, libRueidis1, libRueidis1NoLoop:
		opt := rueidislock.LockerOption{
			ClientOption: rueidis.ClientOption{InitAddress: tg.addrs, DialCtxFn: rt.dialRueidis},
			KeyValidity:  st.ttl,
			// The default extend interval is half the validity; the
			// heartbeat of scenario 7 is set like the others'.
			ExtendInterval: st.heartbeat,
			TryNextAfter:   st.tryNext,
		}
		majority := int32(2) // the default
		if lib != libRueidis {
			majority = 1
		}
		opt.KeyMajority = majority
		opt.NoLoopTracking = lib == libRueidis1NoLoop
		l, err := rueidislock.NewLocker(opt)
		if err != nil {
			return nil, err
		}
		return &rueidisLocker{l: l, n: 2*majority - 1}, nil
	case libRawGo:
		return &rawGoRedis{rdb: goRedis(), ttl: st.ttl}, nil
	case libRawRue:
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: tg.addrs, DialCtxFn: rt.dialRueidis, DisableCache: true})
		if err != nil {
			return nil, err
		}
		return &rawRueidis{c: c, ttl: st.ttl}, nil
	case libRawRueScripts:
		return newRawScripts(tg, rt, st)
	}
	return nil, fmt.Errorf("unknown library %q", lib)
}

// newQuorumLocker makes an instance of lib over a go-redis client per
// server of tg, a quorum: this library through NewQuorumWithClients (as
// NewQuorum would make them, but with the dialer that counts round trips),
// redsync with a pool per server (its go-redis v9 pool), as its README's
// Redlock example.
func newQuorumLocker(lib string, tg target, rt *roundTrips, st settings) (locker, error) {
	if !libRunsOn(lib, tg.topology) {
		return nil, fmt.Errorf("%s on a quorum: %w", lib, errNotSupported)
	}
	rdbs := make([]*redis.Client, len(tg.addrs))
	closers := make([]redis.UniversalClient, len(tg.addrs))
	for i, a := range tg.addrs {
		rdbs[i] = redis.NewClient(&redis.Options{Addr: a, Dialer: rt.dial})
		closers[i] = rdbs[i]
	}
	if lib == libRedsync {
		pools := make([]redsyncredis.Pool, len(rdbs))
		for i, rdb := range rdbs {
			pools[i] = redsyncgoredis.NewPool(rdb)
		}
		return &redsyncLocker{rdbs: closers, rs: redsync.New(pools...), ttl: st.ttl}, nil
	}
	c, err := reservation.NewQuorumWithClients(rdbs, oursOptions(st))
	if err != nil {
		closeClients(closers)
		return nil, err
	}
	return &ours{c: c, rdbs: closers}, nil
}

// oursOptions are this library's options for st.
func oursOptions(st settings) *reservation.Options {
	return &reservation.Options{
		By: "bench", TTL: st.ttl, HeartbeatInterval: st.heartbeat,
		Logger: slog.New(slog.DiscardHandler),
	}
}

// closeClients closes rdbs.
func closeClients(rdbs []redis.UniversalClient) {
	for _, rdb := range rdbs {
		rdb.Close()
	}
}

// --- this library ---

type ours struct {
	c *reservation.Client
	// rdbs are its clients: one, or one per server of a quorum (which
	// Close does not close).
	rdbs []redis.UniversalClient
	// opts are the options of every call: Limit(n) when it takes permits
	// of a semaphore, made once, so that the calls' allocations are the
	// library's.
	opts []reservation.LockOption
}

type oursHeld struct{ r *reservation.Reservation }

func (o *ours) try(ctx context.Context, res string) (held, bool, error) {
	r, err := o.c.TryLock(ctx, res, o.opts...)
	switch {
	case errors.Is(err, reservation.ErrNotAcquired):
		return nil, false, nil // held by someone else, or the restart guard
	case err != nil:
		return nil, false, err
	}
	return oursHeld{r}, true, nil
}

func (o *ours) wait(ctx context.Context, res string) (held, error) {
	r, err := o.c.Lock(ctx, res, o.opts...)
	if err != nil {
		return nil, err
	}
	return oursHeld{r}, nil
}

func (o *ours) keys(res string) []string { return []string{o.c.Key(res)} }
func (o *ours) renews() bool             { return true }
func (o *ours) close()                   { o.c.Close(); closeClients(o.rdbs) }

func (h oursHeld) release(ctx context.Context) error { return h.r.Release(ctx) }
func (h oursHeld) extend(context.Context) error      { return errNotSupported }
func (h oursHeld) lost() bool                        { return errors.Is(h.r.Err(), reservation.ErrLost) }

// --- redsync v4: SET NX PX to acquire, a script to release and extend; it
// waits by retrying after a random 50-250 ms, 32 times by default. ---

type redsyncLocker struct {
	rdbs []redis.UniversalClient // one per pool
	rs   *redsync.Redsync
	ttl  time.Duration
}

type redsyncHeld struct {
	m    *redsync.Mutex
	gone bool
}

func (l *redsyncLocker) mutex(res string) *redsync.Mutex {
	if l.ttl > 0 {
		return l.rs.NewMutex(res, redsync.WithExpiry(l.ttl))
	}
	return l.rs.NewMutex(res)
}

func (l *redsyncLocker) try(ctx context.Context, res string) (held, bool, error) {
	m := l.mutex(res)
	err := m.TryLockContext(ctx)
	var taken *redsync.ErrTaken
	switch {
	case err == nil:
		return &redsyncHeld{m: m}, true, nil
	case errors.As(err, &taken), errors.Is(err, redsync.ErrFailed):
		return nil, false, nil
	}
	return nil, false, err
}

func (l *redsyncLocker) wait(ctx context.Context, res string) (held, error) {
	m := l.mutex(res)
	for {
		err := m.LockContext(ctx) // 32 tries, then ErrFailed: try again
		if err == nil {
			return &redsyncHeld{m: m}, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

func (l *redsyncLocker) keys(res string) []string { return []string{res} }
func (l *redsyncLocker) renews() bool             { return false }
func (l *redsyncLocker) close()                   { closeClients(l.rdbs) }

func (h *redsyncHeld) release(ctx context.Context) error {
	ok, err := h.m.UnlockContext(ctx)
	if err == nil && !ok {
		err = errors.New("redsync: not released")
	}
	return err
}

func (h *redsyncHeld) extend(ctx context.Context) error {
	ok, err := h.m.ExtendContext(ctx)
	if err == nil && !ok {
		err = errors.New("redsync: not extended")
	}
	if err != nil {
		h.gone = true
	}
	return err
}

func (h *redsyncHeld) lost() bool { return h.gone }

// --- bsm/redislock: a script to acquire (EVALSHA), one to release; it
// waits with the README's LinearBackoff(100ms). ---

type redlockLocker struct {
	rdb redis.UniversalClient
	c   *redislock.Client
	ttl time.Duration
}

type redlockHeld struct {
	l    *redislock.Lock
	ttl  time.Duration
	gone bool
}

func (l *redlockLocker) try(ctx context.Context, res string) (held, bool, error) {
	lk, err := l.c.Obtain(ctx, res, l.ttl, nil)
	switch {
	case err == nil:
		return &redlockHeld{l: lk, ttl: l.ttl}, true, nil
	case errors.Is(err, redislock.ErrNotObtained):
		return nil, false, nil
	}
	return nil, false, err
}

func (l *redlockLocker) wait(ctx context.Context, res string) (held, error) {
	lk, err := l.c.Obtain(ctx, res, l.ttl, &redislock.Options{RetryStrategy: redislock.LinearBackoff(100 * time.Millisecond)})
	if err != nil {
		return nil, err
	}
	return &redlockHeld{l: lk, ttl: l.ttl}, nil
}

func (l *redlockLocker) keys(res string) []string { return []string{res} }
func (l *redlockLocker) renews() bool             { return false }
func (l *redlockLocker) close()                   { l.rdb.Close() }

func (h *redlockHeld) release(ctx context.Context) error { return h.l.Release(ctx) }

func (h *redlockHeld) extend(ctx context.Context) error {
	err := h.l.Refresh(ctx, h.ttl, nil)
	if err != nil {
		h.gone = true
	}
	return err
}

func (h *redlockHeld) lost() bool { return h.gone }

// --- rueidislock: 2*KeyMajority-1 keys per lock, client-side caching
// invalidations to wait, a goroutine per key to extend, rueidis's automatic
// pipelining underneath. ---

type rueidisLocker struct {
	l rueidislock.Locker
	n int32 // keys per lock
}

type rueidisHeld struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   bool
}

func (l *rueidisLocker) try(ctx context.Context, res string) (held, bool, error) {
	// The lock's context derives from ctx: hold it on a context of its own.
	lctx, cancel, err := l.l.TryWithContext(context.WithoutCancel(ctx), res)
	switch {
	case err == nil:
		return &rueidisHeld{ctx: lctx, cancel: cancel}, true, nil
	case errors.Is(err, rueidislock.ErrNotLocked):
		return nil, false, nil
	}
	return nil, false, err
}

func (l *rueidisLocker) wait(ctx context.Context, res string) (held, error) {
	lctx, cancel, err := l.l.WithContext(ctx, res)
	if err != nil {
		return nil, err
	}
	return &rueidisHeld{ctx: lctx, cancel: cancel}, nil
}

func (l *rueidisLocker) keys(res string) []string {
	keys := make([]string, l.n)
	for i := range keys {
		keys[i] = "rueidislock:" + strconv.Itoa(i) + ":" + res
	}
	return keys
}

func (l *rueidisLocker) renews() bool { return true }
func (l *rueidisLocker) close()       { l.l.Close() }

func (h *rueidisHeld) release(context.Context) error {
	h.done = true
	h.cancel() // waits until every key was deleted
	return nil
}

func (h *rueidisHeld) extend(context.Context) error { return errNotSupported }
func (h *rueidisHeld) lost() bool                   { return !h.done && h.ctx.Err() != nil }

// --- raw floors: SET NX PX, then EVALSHA of a compare-and-delete script.
// No waiting, no renewal, no fencing: the least a correct lock costs. ---

const casDelete = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`

var casDeleteScript = redis.NewScript(casDelete)

type rawGoRedis struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

type rawGoHeld struct {
	rdb        redis.UniversalClient
	key, value string
}

func (l *rawGoRedis) try(ctx context.Context, res string) (held, bool, error) {
	v := randomValue()
	ok, err := l.rdb.SetNX(ctx, res, v, l.ttl).Result()
	if err != nil || !ok {
		return nil, false, err
	}
	return rawGoHeld{l.rdb, res, v}, true, nil
}

func (l *rawGoRedis) wait(context.Context, string) (held, error) { return nil, errNotSupported }
func (l *rawGoRedis) keys(res string) []string                   { return []string{res} }
func (l *rawGoRedis) renews() bool                               { return false }
func (l *rawGoRedis) close()                                     { l.rdb.Close() }

func (h rawGoHeld) release(ctx context.Context) error {
	return casDeleteScript.Run(ctx, h.rdb, []string{h.key}, h.value).Err()
}
func (h rawGoHeld) extend(context.Context) error { return errNotSupported }
func (h rawGoHeld) lost() bool                   { return false }

var casDeleteLua = rueidis.NewLuaScript(casDelete)

type rawRueidis struct {
	c   rueidis.Client
	ttl time.Duration
}

type rawRueHeld struct {
	c          rueidis.Client
	key, value string
}

func (l *rawRueidis) try(ctx context.Context, res string) (held, bool, error) {
	v := randomValue()
	err := l.c.Do(ctx, l.c.B().Set().Key(res).Value(v).Nx().PxMilliseconds(l.ttl.Milliseconds()).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return rawRueHeld{l.c, res, v}, true, nil
}

func (l *rawRueidis) wait(context.Context, string) (held, error) { return nil, errNotSupported }
func (l *rawRueidis) keys(res string) []string                   { return []string{res} }
func (l *rawRueidis) renews() bool                               { return false }
func (l *rawRueidis) close()                                     { l.c.Close() }

func (h rawRueHeld) release(ctx context.Context) error {
	return casDeleteLua.Exec(ctx, h.c, []string{h.key}, []string{h.value}).Error()
}
func (h rawRueHeld) extend(context.Context) error { return errNotSupported }
func (h rawRueHeld) lost() bool                   { return false }
