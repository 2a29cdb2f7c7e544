package reservation

import (
	"context"
	"errors"
	"time"
)

// Lock blocks until it holds resource, or ctx ends, or the Client is
// closed. The Redis key of the reservation, which the Node library's
// wait_until_lock returns, is its Key.
//
// Waiters are served in the order they arrived, across processes and
// hosts: each Lock call takes a place in a queue kept on the server beside
// the key, leased for a TTL and renewed every HeartbeatInterval while it
// waits, so a waiter that dies leaves the queue within its TTL. A release
// tells the head of the queue, whichever process it is in, and wakes
// nobody else. Clients with Options.NoQueue, clients of versions before
// the queue and Node workers do not queue: they take the key whenever it
// is free, ahead of the queue, whose order among the others holds.
//
// It never polls at a fixed interval. The head of the queue is woken by
// the first of: the release's turn notice, a change of the key seen by
// server-assisted client tracking (a release by this library or a plain
// DEL by a Node worker, an expiry, an overwrite), a release notice
// published by this library's release script (where tracking is not
// available), the holder's remaining TTL running out, and the
// RetryInterval fallback. The others wait for the server to tell them
// their turn, and renew their place meanwhile. With NoQueue, waiters of
// one Client on one resource queue in FIFO order and only the first
// contends with other clients, woken as the head is.
//
// When ctx ends first, the error is a *NotAcquiredError that matches both
// ErrNotAcquired and ctx.Err(), and says who held the resource at the last
// attempt. An error of Redis on the first attempt is returned at once (a
// wrong address or password shows at once); later ones are retried until
// ctx ends.
func (c *Client) Lock(ctx context.Context, resource string, opts ...LockOption) (r *Reservation, err error) {
	defer func() { err = c.explain(err) }() // once, as the error leaves
	cfg, err := c.lockConfig(resource, opts)
	if err != nil {
		return nil, err
	}
	if cfg.with != nil {
		set, err := c.setOf(resource, cfg)
		if err != nil {
			return nil, err
		}
		return c.setLock(ctx, set)
	}
	if c.quorum != nil {
		return c.quorumLock(ctx, resource)
	}
	if c.fair() {
		return c.queueLock(ctx, resource, cfg.limit)
	}
	return c.plainLock(ctx, resource, cfg.limit)
}

// plainLock is Lock without the server's queue: the Client's waiters of a
// key queue among themselves, and only the first contends.
func (c *Client) plainLock(ctx context.Context, resource string, limit int) (*Reservation, error) {
	w := &wait{c: c, resource: resource, key: c.Key(resource), start: time.Now(), limit: limit}
	// First try at once, unless waiters of this Client queue for the key:
	// then take a place behind them.
	if n := c.notifierIfStarted(c.nodeOf(ctx, w.key)); n == nil || !n.waited(w.key) {
		r, err := w.attempt(ctx)
		if r != nil || err != nil {
			return r, err
		}
		w.tried = true
	}
	n, err := w.notifier(ctx)
	if err != nil {
		return nil, err
	}
	w.n = n
	if !w.tracked(n) {
		// Try again once subscribed: the confirmation may come before
		// the loop looks at the wake channel.
		w.tried = false
	}
	if w.last != nil {
		c.emit(Event{Kind: EventWait, Resource: resource, Key: w.key, Holder: w.last.Holder, Duration: w.last.Remaining})
	}
	return w.loop(ctx)
}

// wait is the state of one Lock call.
type wait struct {
	c        *Client
	n        *notifier
	resource string
	key      string
	start    time.Time
	value    string // with the server's queue: the holder value of the whole wait
	limit    int    // a semaphore's permit: how many (0: a reservation)

	tried    bool              // the attempt before joining counts as the first round
	last     *NotAcquiredError // what the last attempt found
	failures int               // attempts failed in a row (Redis errors)
	quiet    bool              // nothing woke the waiter for a whole RetryInterval

	// refused is when the last refused attempt that wrote a lease which
	// says the waiter takes grants was sent, and refusedLease the end of
	// that lease (0: none). Another Client's release that hands the
	// waiter the key keeps it until the end of the lease it found: when
	// that is this one, the attempt ran before, and a deadline counted
	// from its send time comes before the key's expiry (see granted).
	refused      time.Time
	refusedLease int64
}

// tracked reports whether the waiter watches its key with client tracking.
// A semaphore's waiters do not: its permits' keys change at every renewal.
// They are woken by release notices (and, with the server's queue, turn
// notices), and look when the first permit would expire.
func (w *wait) tracked(n *notifier) bool { return n.tracking && w.limit == 0 }

// notifier returns the notifier that watches the waiter's key, or the
// error that ends the wait.
func (w *wait) notifier(ctx context.Context) (*notifier, error) {
	n, err := w.c.notifierFor(ctx, w.key)
	switch {
	case err == nil:
		if w.limit > 0 {
			n.watchSemaphore(w.key)
		}
		return n, nil
	case ctx.Err() != nil:
		return nil, w.notAcquired(ctx)
	case errors.Is(err, ErrClosed):
		return nil, err
	}
	return nil, w.c.redisError("wait for", w.resource, err)
}

// follow moves waiter q from notifier n to the notifier of the key's master
// when its slot moved to another master (on a Cluster), joining there with
// join, and returns where the waiter is.
func (w *wait) follow(ctx context.Context, n *notifier, q *waiter, join func(*notifier) *waiter) (*notifier, *waiter) {
	if !w.c.cluster {
		return n, q
	}
	if node := w.c.nodeOf(ctx, w.key); node == "" || node == n.node {
		return n, q
	}
	moved, err := w.c.notifierFor(ctx, w.key)
	if err != nil || moved == n {
		return n, q
	}
	if w.limit > 0 {
		moved.watchSemaphore(w.key)
	}
	n.leave(w.key, q, false)
	return moved, join(moved)
}

// attempt tries once. It returns the reservation, or an error that ends the
// wait; neither when the resource is held (w.last says by whom).
func (w *wait) attempt(ctx context.Context) (*Reservation, error) {
	var (
		r    *Reservation
		nerr *NotAcquiredError
		err  error
	)
	sent := time.Now()
	if w.value != "" {
		r, nerr, err = w.c.acquireAs(ctx, w.resource, w.value, waitQueue, w.limit)
	} else {
		r, nerr, err = w.c.acquire(ctx, w.resource, w.limit)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, w.notAcquired(ctx)
	case err != nil:
		return nil, err
	case nerr != nil:
		w.last = nerr
		if nerr.Guard {
			w.c.reportGuard(nerr)
		}
		if nerr.leased != 0 {
			w.refused, w.refusedLease = sent, nerr.leased
		}
		return nil, nil
	}
	w.c.emit(Event{Kind: EventAcquired, Resource: w.resource, Key: w.key, Holder: r.value, Token: r.token,
		Duration: max(time.Since(w.start), time.Nanosecond)}) // never zero: zero is TryLock's
	return r, nil
}

// loop waits in the key's queue until the reservation is had.
func (w *wait) loop(ctx context.Context) (*Reservation, error) {
	n, c := w.n, w.c
	q := n.join(w.key)
	acquired := false
	defer func() { n.leave(w.key, q, acquired) }()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		n, q = w.follow(ctx, n, q, func(m *notifier) *waiter { return m.join(w.key) })
		w.n = n
		wake, head, armed := n.state(w.key, q)
		delay := c.opt.RetryInterval
		if head {
			r, d, err := w.round(ctx, armed)
			if r != nil {
				acquired = true
				return r, nil
			}
			if err != nil {
				return nil, err
			}
			if d < 0 {
				continue // the key changed since the attempt: again at once
			}
			delay = d
		}
		timer.Reset(delay)
		select {
		case <-wake:
		case <-timer.C:
			w.quiet = delay >= c.opt.RetryInterval
		case <-ctx.Done():
			return nil, w.notAcquired(ctx)
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// round is one turn of the queue's head: an attempt, then the watch set
// again. It returns the reservation, or an error that ends the wait, or how
// long to wait for a wake-up (negative: try again at once).
func (w *wait) round(ctx context.Context, armed bool) (*Reservation, time.Duration, error) {
	c, n := w.c, w.n
	delay := c.opt.RetryInterval
	if w.tried {
		// The attempt before joining the queue counts as this one: the
		// watch (or the subscription's confirmation) catches any change
		// since.
		w.tried = false
	} else {
		r, err := w.attempt(ctx)
		if r != nil {
			return r, 0, nil
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return nil, 0, err
			}
			w.failures++
			return nil, min(delay, 10*time.Millisecond<<min(w.failures, 10)), nil
		}
		// The attempt's own read may have watched the key (see
		// scriptCall.armWaiters).
		armed = n.armed(w.key)
	}
	w.failures = 0
	pttl := time.Duration(-1)
	if l := w.last; l != nil && !l.NoExpiry {
		pttl = l.Remaining
	}
	if w.tracked(n) && (!armed || w.quiet) {
		// Not watched, or nothing came for a whole RetryInterval: (re)set
		// the watch, which also finds out a tracking connection that died
		// silently.
		w.quiet = false
		p, err := n.arm(ctx, w.key)
		if err == nil && p == -2 {
			return nil, -1, nil
		}
		if err == nil {
			pttl = p
		}
	}
	if pttl >= 0 {
		delay = min(delay, pttl+time.Millisecond)
	}
	return nil, delay, nil
}

// notAcquired is Lock's error when ctx ended first.
func (w *wait) notAcquired(ctx context.Context) error {
	return waitEnded(ctx, w.resource, w.limit, w.last)
}

// waitEnded is the error of a wait for resource (with limit, a permit)
// when ctx ended first: what the last attempt found, last (nil without
// any), names who stood in the way, and for a set which member.
func waitEnded(ctx context.Context, resource string, limit int, last *NotAcquiredError) error {
	e := &NotAcquiredError{Resource: resource, Err: ctx.Err(), limit: limit}
	if last != nil {
		e.Resource, e.Holder, e.Remaining, e.NoExpiry, e.Guard = last.Resource, last.Holder, last.Remaining, last.NoExpiry, last.Guard
	}
	return e
}

// queueLock is Lock with the server's queue of waiters (see
// Options.NoQueue). The waiter's first attempt takes a place at the end of
// the queue under the value it keeps for its whole wait, unless the key is
// free and nobody queues. Then:
//
//   - behind the head, it sleeps until the server tells it its turn came
//     (on the key's turn channel), or until its place's lease is due: an
//     attempt every HeartbeatInterval renews it, and would find out a turn
//     that was told while the subscriber was away;
//   - at the head, it watches the key as a Lock without the queue does
//     (client tracking or release notices, the holder's remaining TTL,
//     RetryInterval), and a release, an expiry, or a turn told, wakes it.
//
// So a release wakes one waiter, whichever process it is in. When the wait
// ends without the reservation, the waiter leaves the queue (the release
// script with its value), and the server tells the next one.
func (c *Client) queueLock(ctx context.Context, resource string, limit int) (*Reservation, error) {
	w := &wait{c: c, resource: resource, key: c.Key(resource), start: time.Now(), value: c.newValue(), limit: limit}
	acquired := false
	defer func() {
		if !acquired {
			c.giveBack(w.key, w.value, limit) // leave the queue
		}
	}()
	r, err := w.attempt(ctx)
	if r != nil || err != nil {
		acquired = r != nil
		return r, err
	}
	if !c.fair() {
		// The server refused the queue to this user (see acquireAs).
		return c.plainLock(ctx, resource, limit)
	}
	n, err := w.notifier(ctx)
	if err != nil {
		return nil, err
	}
	grants := limit == 0 // a permit is never handed over (see Client.offer)
	q := n.joinServerQueue(w.key, w.value, grants)
	defer func() { n.leave(w.key, q, acquired) }() // n and q as they are then
	if w.last != nil {
		c.emit(Event{Kind: EventWait, Resource: resource, Key: w.key, Holder: w.last.Holder, Duration: w.last.Remaining})
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	leaseDue := time.Now().Add(c.opt.HeartbeatInterval)
	tried := true // the attempt above
	for {
		n, q = w.follow(ctx, n, q, func(m *notifier) *waiter { return m.joinServerQueue(w.key, w.value, grants) })
		failed := false
		if !tried {
			r, err := w.offered(ctx, n, q)
			if r == nil && err == nil {
				r, err = w.attempt(ctx)
			}
			if r != nil {
				acquired = true
				return r, nil
			}
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, ErrClosed) {
					return nil, err
				}
				w.failures++
				failed = true
			} else {
				w.failures = 0
				leaseDue = time.Now().Add(c.opt.HeartbeatInterval)
			}
		}
		tried = false
		wake, turn, armed := n.turnState(w.key, q)
		delay := time.Until(leaseDue)
		head := !failed && w.last != nil && w.last.place == 0
		switch {
		case failed:
			// Backing off, whenever the lease is due: Redis did not answer.
			delay = min(c.opt.RetryInterval, 10*time.Millisecond<<min(w.failures, 10))
		case head:
			// The head watches the key itself.
			pttl := time.Duration(-1)
			if !w.last.NoExpiry {
				pttl = w.last.Remaining
			}
			if w.tracked(n) && (!armed || w.quiet) {
				w.quiet = false
				// No later than the lease is due: after a reconnection the
				// notifier may take a second or more to watch keys again,
				// and a head that waited for it would lose its place.
				actx, cancel := context.WithDeadline(ctx, leaseDue)
				p, err := n.arm(actx, w.key)
				cancel()
				if err == nil && p == -2 {
					continue // free since the attempt: again at once
				}
				if err == nil {
					pttl = p
				}
			}
			delay = min(delay, c.opt.RetryInterval)
			if pttl >= 0 {
				delay = min(delay, pttl+time.Millisecond)
			}
		default:
			wake = nil // behind the head: the key's changes are not ours to see
		}
		timer.Reset(max(delay, 0))
		select {
		case g := <-q.grant: // nil without grants: never ready
			r, err := w.granted(ctx, g)
			if r != nil || err != nil {
				acquired = r != nil
				return r, err
			}
		case <-wake:
		case <-turn:
			if l := w.last; l != nil && !head && !failed && n.toldTurn(q) && w.tracked(n) {
				// The server says we are the head now: watch the key
				// (whose read says whether it is free) rather than try.
				// Without tracking there is no such read: try.
				l.place = 0
				tried = true
			}
		case <-timer.C:
			w.quiet = head && delay >= c.opt.RetryInterval
			continue
		case <-ctx.Done():
			return nil, w.notAcquired(ctx)
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
		if !timer.Stop() {
			<-timer.C
		}
	}
}

// grant is a reservation that a release handed to one of this Client's
// waiters in the server's queue (see Client.offer): the release script set
// the key to the waiter's value and issued token.
type grant struct {
	token int64
	// sent is when the release was sent, for one of this Client's: the
	// key's TTL ran from after it. Zero for another Client's, which set
	// the key until lease, the end of the waiter's lease (ms of the
	// server's clock; see wait.refused).
	sent  time.Time
	lease int64
	// watched is the read that followed the release on the tracking
	// connection, which watches the key since (nil: none did).
	watched *trackedRead
}

// offered waits, rather than try, while a release of this Client that
// offered the waiter's key to its waiters is under way (see Client.offer),
// and returns the reservation when it was handed to waiter q. It returns
// neither a reservation nor an error when the waiter should try.
func (w *wait) offered(ctx context.Context, n *notifier, q *waiter) (*Reservation, error) {
	if q.grant == nil {
		return nil, nil
	}
	if offer := n.offerOf(w.key); offer != nil {
		select {
		case <-offer:
		case <-ctx.Done():
			return nil, w.notAcquired(ctx)
		case <-w.c.ctx.Done():
			return nil, ErrClosed
		}
	}
	select {
	case g := <-q.grant:
		return w.granted(ctx, g)
	default:
		return nil, nil
	}
}

// granted holds the reservation handed to the waiter by g, as an attempt
// that acquired it would. It returns neither a reservation nor an error
// when g came too late to be of use (given back: the waiter goes on), or
// when it came from another Client for a lease other than the one the
// waiter's last refused attempt wrote (the waiter's next attempt finds the
// key its own, if it still is).
func (w *wait) granted(ctx context.Context, g grant) (*Reservation, error) {
	c := w.c
	if g.sent.IsZero() {
		// Handed over by another Client until the end of the lease of
		// the attempt sent at w.refused, which the server ran before:
		// counted from then, the deadline comes before the key's expiry.
		// A grant of an older lease, or one that came after a later
		// attempt found the key someone else's (it expired, or was taken
		// away, meanwhile), is of no use.
		if g.lease == 0 || g.lease != w.refusedLease {
			return nil, nil
		}
		g.sent = w.refused
	}
	r := newReservation(c, w.resource, w.key, w.value, g.token, g.sent)
	r.watched = g.watched
	r, nerr, err := c.keep(ctx, r, waitQueue)
	if err != nil || nerr != nil {
		w.last = nerr
		return nil, err
	}
	c.emit(Event{Kind: EventAcquired, Resource: w.resource, Key: w.key, Holder: r.value, Token: r.token,
		Duration: max(time.Since(w.start), time.Nanosecond)})
	return r, nil
}
