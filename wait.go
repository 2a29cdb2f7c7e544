package reservation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// invalidateChannel carries client-tracking invalidations redirected to a
// subscriber (RESP2).
const invalidateChannel = "__redis__:invalidate"

// WaitUntilLock blocks until it holds resource, or ctx ends, or the Client
// is closed. The Redis key of the reservation, which the Node library's
// wait_until_lock answers, is its Key.
//
// It never polls at a fixed interval. A waiter is woken by the first of: a
// change of the key seen by server-assisted client tracking (a release by
// this library or a plain DEL by a Node worker, an expiry, an overwrite), a
// release notice published by this library's release script (where
// tracking is not available), the holder's remaining TTL running out, and
// the RetryInterval fallback. Waiters of one Client on one resource queue
// in FIFO order and only the first contends with other clients, so a
// release wakes one script, not a herd.
//
// When ctx ends first, the error wraps both ErrNotAcquired and ctx.Err().
func (c *Client) WaitUntilLock(ctx context.Context, resource string) (*Reservation, error) {
	if err := c.check(resource); err != nil {
		return nil, err
	}
	key := c.Key(resource)
	// First try at once, unless waiters of this Client queue for the key:
	// then take a place behind them. An error of Redis on this first
	// attempt is returned (a wrong address or password shows at once);
	// later ones are retried until ctx ends.
	guardLogged := false
	tried, triedPTTL := false, time.Duration(0)
	if n := c.notifierIfStarted(); n == nil || !n.waited(key) {
		r, pttl, err := c.acquire(ctx, resource)
		tried, triedPTTL = true, pttl
		if err == errGuarded {
			c.logGuard(resource, pttl)
			guardLogged, err = true, nil
		}
		if err != nil && ctx.Err() != nil {
			return nil, notAcquired(ctx, resource)
		}
		if r != nil || err != nil {
			return r, err
		}
	}
	n, err := c.notifierFor(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, notAcquired(ctx, resource)
		}
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		return nil, c.redisError("wait for", resource, err)
	}
	w := n.join(key)
	if !n.tracking {
		// Try again once subscribed: the confirmation may come before
		// the loop looks at the wake channel.
		tried = false
	}
	acquired := false
	defer func() { n.leave(key, w, acquired) }()

	start := time.Now()
	c.log.Debug("reservation-wait", "resource", resource, "key", key)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var failures int
	quiet := false
	for {
		wake, head, armed := n.state(key, w)
		delay := c.opt.RetryInterval
		if head {
			var r *Reservation
			var pttl time.Duration
			var err error
			if tried {
				// The attempt before joining the queue counts as this
				// one: the watch (or the subscription's confirmation)
				// catches any change since.
				tried, pttl = false, triedPTTL
			} else {
				r, pttl, err = c.acquire(ctx, resource)
			}
			if err == errGuarded {
				if !guardLogged {
					c.logGuard(resource, pttl)
					guardLogged = true
				}
				err = nil
			}
			switch {
			case r != nil:
				acquired = true
				c.log.Debug("reservation-wait", "resource", resource, "key", key, "waited", time.Since(start), "acquired", true)
				return r, nil
			case err != nil:
				if ctx.Err() != nil {
					return nil, notAcquired(ctx, resource)
				}
				if errors.Is(err, ErrClosed) {
					return nil, err
				}
				failures++
				delay = min(c.opt.RetryInterval, 10*time.Millisecond<<min(failures, 10))
			default:
				failures = 0
				if n.tracking && (!armed || quiet) {
					// Not watched, or nothing came for a whole
					// RetryInterval: (re)set the watch, which also finds
					// out a tracking connection that died silently.
					quiet = false
					// If the key changed since the attempt, try again at
					// once.
					p, aerr := n.arm(ctx, key)
					if aerr == nil && p == -2 {
						continue
					}
					if aerr == nil {
						pttl = p
					}
				}
				if pttl >= 0 {
					delay = min(delay, pttl+time.Millisecond)
				}
			}
		}
		timer.Reset(delay)
		select {
		case <-wake:
		case <-timer.C:
			quiet = delay >= c.opt.RetryInterval
		case <-ctx.Done():
			return nil, notAcquired(ctx, resource)
		case <-c.closing:
			return nil, ErrClosed
		}
	}
}

// notAcquired is WaitUntilLock's error when ctx ended first.
func notAcquired(ctx context.Context, resource string) error {
	return errors.Join(fmt.Errorf("%w: %s", ErrNotAcquired, quote(resource)), ctx.Err())
}

// notifier multiplexes every wake-up source of one Client over one
// subscriber connection: client-tracking invalidations (redirected to it),
// release notices and keyspace notifications.
type notifier struct {
	c        *Client
	tracking bool
	db       int

	psClient    *redis.Client // the subscriber's own client, with tracking
	trackClient *redis.Client // one connection that reads watched keys
	ps          *redis.PubSub
	psID        atomic.Int64 // client id of the subscriber connection
	trackConns  atomic.Int64 // connections the tracking client opened

	subMu sync.Mutex // orders the subscription changes of join and leave

	mu   sync.Mutex // never held across network I/O
	keys map[string]*keyWait
}

// keyWait is the state of one waited key.
type keyWait struct {
	queue []*waiter     // FIFO: the head contends, the others wait
	wake  chan struct{} // closed at every notice for the key, then replaced
	armed bool          // tracked since the last invalidation
}

type waiter struct{ _ byte }

// notifierIfStarted answers the Client's notifier, or nil.
func (c *Client) notifierIfStarted() *notifier {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notif
}

// notifierStartTimeout bounds the start of the subscriber.
const notifierStartTimeout = 5 * time.Second

// notifierStart is a start of the notifier under way.
type notifierStart struct {
	done chan struct{}
	n    *notifier
	err  error
}

// notifierFor answers the Client's notifier, starting it on first use. The
// start (a few round trips) runs in the background with its own bounded
// context, never under c.mu, which the heartbeat needs; callers wait for it
// as long as their ctx lets them.
func (c *Client) notifierFor(ctx context.Context) (*notifier, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if c.notif != nil {
		n := c.notif
		c.mu.Unlock()
		return n, nil
	}
	st := c.notifStart
	if st == nil {
		st = &notifierStart{done: make(chan struct{})}
		c.notifStart = st
		c.wg.Add(1)
		go c.startNotifier(st)
	}
	c.mu.Unlock()
	select {
	case <-st.done:
		return st.n, st.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.closing:
		return nil, ErrClosed
	}
}

// startNotifier starts the notifier for st, and publishes it.
func (c *Client) startNotifier(st *notifierStart) {
	defer c.wg.Done()
	defer close(st.done)
	ctx, cancel := context.WithTimeout(c.ctx, notifierStartTimeout)
	defer cancel()
	n := &notifier{c: c, keys: make(map[string]*keyWait)}
	err := n.start(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notifStart = nil
	switch {
	case err != nil:
		st.err = err
	case c.closed:
		n.close()
		st.err = ErrClosed
	default:
		c.notif, st.n = n, n
		c.wg.Add(1)
		go n.receive()
	}
}

// start opens the subscriber. Client tracking needs a *redis.Client (one
// server) that answers CLIENT TRACKING (Redis 6 and later); elsewhere the
// notifier subscribes to release notices and keyspace notifications.
func (n *notifier) start(ctx context.Context) error {
	base, ok := n.c.rdb.(*redis.Client)
	if ok && !n.c.noTracking {
		opt := *base.Options()
		n.db = opt.DB
		opt.Protocol = 2 // invalidations arrive as messages of invalidateChannel
		opt.ClientSideCache, opt.ClientSideCacheConfig = nil, nil
		opt.PushNotificationProcessor, opt.Limiter = nil, nil
		// Options() answers normalized values that NewClient would
		// normalize again; set the ones that matter outright.
		opt.MaxRetries = 1
		opt.ReadTimeout, opt.WriteTimeout = 3*time.Second, 3*time.Second
		opt.PoolSize, opt.MinIdleConns, opt.MaxIdleConns = 1, 0, 1
		opt.PipelinePoolSize = -1 // pipelines on the one connection too
		opt.ConnMaxIdleTime, opt.ConnMaxLifetime = -1, 0
		onConnect := opt.OnConnect
		trackOpt := opt
		trackOpt.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
			if onConnect != nil {
				if err := onConnect(ctx, cn); err != nil {
					return err
				}
			}
			// A new tracking connection has no watches: every waiter
			// sets its watch again.
			if n.trackConns.Add(1) > 1 {
				n.wakeAll()
			}
			return nil
		}
		opt.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
			if onConnect != nil {
				if err := onConnect(ctx, cn); err != nil {
					return err
				}
			}
			id, err := cn.ClientID(ctx).Result()
			if err != nil {
				return err
			}
			n.psID.Store(id)
			return nil
		}
		n.psClient = redis.NewClient(&opt)
		n.trackClient = redis.NewClient(&trackOpt)
		err := n.trackClient.Do(ctx, "CLIENT", "TRACKING", "OFF").Err()
		var rerr redis.Error
		switch {
		case err == nil:
			n.tracking = true
			n.ps = n.psClient.Subscribe(ctx, invalidateChannel)
			return nil
		case errors.As(err, &rerr):
			// No client tracking here: use the other sources.
			n.psClient.Close()
			n.trackClient.Close()
			n.psClient, n.trackClient = nil, nil
		default:
			n.psClient.Close()
			n.trackClient.Close()
			return err
		}
	}
	if ok {
		n.db = base.Options().DB
	}
	n.ps = n.c.rdb.Subscribe(ctx)
	return nil
}

// close ends the subscriber; receive then returns.
func (n *notifier) close() {
	n.ps.Close()
	if n.psClient != nil {
		n.psClient.Close()
		n.trackClient.Close()
	}
}

// channels answers the channels to subscribe to for key without tracking.
func (n *notifier) channels(key string) []string {
	return []string{
		companion(key, channelSuffix),
		"__keyspace@" + strconv.Itoa(n.db) + "__:" + key,
	}
}

// join queues a waiter on key. Without tracking, the first waiter of a key
// subscribes to its channels; the confirmation wakes it, and it tries
// again, so no release between its last attempt and then is missed.
func (n *notifier) join(key string) *waiter {
	w := &waiter{}
	n.subMu.Lock()
	defer n.subMu.Unlock()
	n.mu.Lock()
	kw := n.keys[key]
	first := kw == nil
	if first {
		kw = &keyWait{wake: make(chan struct{})}
		n.keys[key] = kw
	}
	kw.queue = append(kw.queue, w)
	n.mu.Unlock()
	if first && !n.tracking {
		_ = n.ps.Subscribe(n.c.ctx, n.channels(key)...)
	}
	return w
}

// leave takes w off key's queue. When w gave up without acquiring, the next
// waiter is woken to contend in its place.
func (n *notifier) leave(key string, w *waiter, acquired bool) {
	n.subMu.Lock()
	defer n.subMu.Unlock()
	n.mu.Lock()
	kw := n.keys[key]
	if kw == nil {
		n.mu.Unlock()
		return
	}
	for i, q := range kw.queue {
		if q == w {
			kw.queue = append(kw.queue[:i], kw.queue[i+1:]...)
			if i == 0 && !acquired {
				kw.signal()
			}
			break
		}
	}
	last := len(kw.queue) == 0
	if last {
		delete(n.keys, key)
	}
	n.mu.Unlock()
	if last && !n.tracking && n.c.ctx.Err() == nil {
		_ = n.ps.Unsubscribe(n.c.ctx, n.channels(key)...)
	}
}

// state answers, for waiter w of key: the channel that closes at the next
// notice, whether w is at the head of the queue, and whether the key is
// tracked.
func (n *notifier) state(key string, w *waiter) (<-chan struct{}, bool, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	kw := n.keys[key]
	return kw.wake, len(kw.queue) > 0 && kw.queue[0] == w, kw.armed || !n.tracking
}

// arm makes the tracking connection watch key, and answers its PTTL at that
// moment (-2 when it is gone, -1 when it has no expiry).
func (n *notifier) arm(ctx context.Context, key string) (time.Duration, error) {
	id := n.psID.Load()
	if id == 0 {
		return 0, errors.New("subscriber not connected")
	}
	n.mu.Lock()
	if kw := n.keys[key]; kw != nil {
		kw.armed = true
	}
	n.mu.Unlock()
	var pttl *redis.DurationCmd
	_, err := n.trackClient.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", id)
		pttl = p.PTTL(ctx, key)
		return nil
	})
	if err != nil {
		// The connection may have been replaced, and its watches lost:
		// every key is watched again at its next attempt.
		n.mu.Lock()
		for _, kw := range n.keys {
			kw.armed = false
		}
		n.mu.Unlock()
		return 0, err
	}
	return pttl.Val(), nil
}

// waited reports whether waiters of this Client queue for key.
func (n *notifier) waited(key string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.keys[key] != nil
}

// released tells the local waiters of key that it was just released here,
// without waiting for the notice to come back from the server.
func (n *notifier) released(key string) {
	n.notify(key, false)
}

// notify wakes the waiters of key; disarm says the key's tracking fired.
func (n *notifier) notify(key string, disarm bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if kw := n.keys[key]; kw != nil {
		if disarm {
			kw.armed = false
		}
		kw.signal()
	}
}

// wakeAll wakes every waiter and forgets every watch: after a reconnection
// or a flush, anything may have happened.
func (n *notifier) wakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, kw := range n.keys {
		kw.armed = false
		kw.signal()
	}
}

func (kw *keyWait) signal() {
	close(kw.wake)
	kw.wake = make(chan struct{})
}

// healthInterval is how long the subscriber may stay silent before it is
// pinged; silent for as long again, its connection is dropped and made anew.
const healthInterval = 10 * time.Second

// receive dispatches what the subscriber receives until the Client closes.
func (n *notifier) receive() {
	defer n.c.wg.Done()
	ctx := n.c.ctx
	var failures int
	pinged := false
	for {
		var msg any
		var err error
		if !pinged {
			// A timeout here leaves the connection alone.
			msg, err = n.ps.ReceiveTimeout(ctx, healthInterval)
		} else {
			// Pinged and still silent: a timeout here is a dead
			// connection, which go-redis replaces.
			rctx, cancel := context.WithTimeout(ctx, healthInterval)
			msg, err = n.ps.Receive(rctx)
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if !pinged && errors.As(err, &ne) && ne.Timeout() {
				pinged = true
				_ = n.ps.Ping(ctx)
				continue
			}
			// A broken connection (it reconnects on the next Receive), or a
			// message go-redis cannot parse, such as the null invalidation
			// of a FLUSHALL: either way, every waiter looks again.
			pinged = false
			n.wakeAll()
			failures++
			if !sleep(ctx, min(10*time.Millisecond<<min(failures, 7), time.Second)) {
				return
			}
			continue
		}
		failures, pinged = 0, false
		n.dispatch(msg)
	}
}

// dispatch wakes the waiters that msg concerns.
func (n *notifier) dispatch(msg any) {
	switch m := msg.(type) {
	case *redis.Subscription:
		if m.Kind != "subscribe" {
			return
		}
		if m.Channel == invalidateChannel {
			n.wakeAll() // a new connection: watches must be set again
		} else if key, ok := n.keyOfChannel(m.Channel, ""); ok {
			n.notify(key, false)
		}
	case *redis.Message:
		switch {
		case m.Channel == invalidateChannel:
			if len(m.PayloadSlice) == 0 && m.Payload == "" {
				n.wakeAll()
			}
			for _, key := range m.PayloadSlice {
				n.notify(key, true)
			}
		default:
			if key, ok := n.keyOfChannel(m.Channel, m.Payload); ok {
				n.notify(key, false)
			}
		}
	}
}

// keyOfChannel answers the key that a release-notice or keyspace channel is
// about. A release notice's payload is the key.
func (n *notifier) keyOfChannel(channel, payload string) (string, bool) {
	if rest, ok := strings.CutPrefix(channel, "__keyspace@"); ok {
		_, key, ok := strings.Cut(rest, "__:")
		return key, ok
	}
	if payload != "" {
		return payload, true
	}
	// A subscription confirmation of a release channel: find its key.
	n.mu.Lock()
	defer n.mu.Unlock()
	for key := range n.keys {
		if companion(key, channelSuffix) == channel {
			return key, true
		}
	}
	return "", false
}

// sleep waits d, and answers false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
