package reservation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Reservation is one holding of a resource. It stays held, renewed by its
// Client's heartbeat, until Release, Close, or its loss. Its Done channel
// closes the moment it ends, and Err says why. It is not safe to assume a
// reservation is held until it is released: watch Done, and pass Token to
// the storage you protect.
//
// The life of a Reservation, in this file: the Client holds it (hold),
// renews it (heartbeat.go), watches its key (notifier.go), and it ends once,
// by end: released (Release, Close), or lost (lose). A key that the Client
// holds for nobody (an acquisition that will not be used) is given back
// (giveBack).
type Reservation struct {
	c        *Client
	resource string
	key      string
	value    string
	token    int64
	acquired time.Time

	ctx    context.Context // ends when the reservation ends; its cause is Err
	cancel context.CancelCauseFunc

	releaseMu sync.Mutex // one Release at a time

	// Guarded by c.mu.
	deadline  time.Time // local deadline: lost if not renewed by then
	due       time.Time // next renewal
	failures  int       // renewals failed in a row
	releasing bool      // a release is under way: renewals leave it alone
	renewing  bool      // a renewal is under way
	node      string    // the Cluster master whose notifier watches it ("" elsewhere)
	limit     int       // a permit of a semaphore of limit permits (0: a reservation)
	err       error     // nil while held, then why it ended

	// Quorum mode. A holding of the quorum Client has a part on each
	// server that holds it (nil elsewhere), under the quorum Client's mu;
	// a part, a Reservation of that server's Client, points back to its
	// holding (parent, under the server Client's mu).
	parts    []*Reservation
	parent   *Reservation
	lateDone chan struct{} // closed once every server answered the acquisition

	// watched, when not nil, is the read on a tracking connection that
	// watched the key right after it was acquired (see
	// notifier.watchHeld). Guarded by c.mu.
	watched *trackedRead

	// A set (see With) is a holding that the Client does not hold itself:
	// its members are held, each pointing back to it (group).
	members []*Reservation
	group   *Reservation
}

// all returns the members of a set, else r.
func (r *Reservation) all() []*Reservation {
	if r.members != nil {
		return r.members
	}
	return []*Reservation{r}
}

func newReservation(c *Client, resource, key, value string, token int64, sent time.Time) *Reservation {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Reservation{
		c:        c,
		resource: resource,
		key:      key,
		value:    value,
		token:    token,
		acquired: sent,
		ctx:      ctx,
		cancel:   cancel,
		deadline: sent.Add(c.opt.TTL - c.opt.margin()),
		due:      sent.Add(c.opt.HeartbeatInterval),
	}
}

// Resource returns the name of the reserved resource.
func (r *Reservation) Resource() string { return r.resource }

// Key returns the Redis key that holds the reservation, as the Node
// library's wait_until_lock returns it.
func (r *Reservation) Key() string { return r.key }

// Holder returns the holder value stored in the key: "<By>-<random id>".
func (r *Reservation) Holder() string { return r.value }

// Token returns the fencing token of this holding: greater than every token
// issued before for the resource, even across a loss of the server's data.
func (r *Reservation) Token() int64 { return r.token }

// Limit returns, for a permit of a semaphore (see the Limit option), how
// many permits the semaphore has; 0 for a reservation.
func (r *Reservation) Limit() int { return r.limit }

// Fence is the fencing token of one resource of a holding.
type Fence struct {
	Resource string
	Token    int64
}

// Fences returns the fencing token of every resource the reservation holds:
// one, Token's, for a reservation or a permit; for a set (see With), one
// for each member, in the order given.
func (r *Reservation) Fences() []Fence {
	fences := make([]Fence, 0, len(r.all()))
	for _, m := range r.all() {
		fences = append(fences, Fence{Resource: m.resource, Token: m.token})
	}
	return fences
}

// Done returns a channel that is closed when the reservation ends: lost,
// released, or its Client closed.
func (r *Reservation) Done() <-chan struct{} { return r.ctx.Done() }

// Context returns a context that is cancelled when the reservation ends;
// context.Cause of it is the error that Err returns. Use it to bound work
// that must stop when the reservation is lost.
func (r *Reservation) Context() context.Context { return r.ctx }

// Err returns nil while the reservation is held, then why it ended: an
// error matching ErrLost (with the reason) once it was lost, or ErrReleased
// once it was released.
func (r *Reservation) Err() error {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	return r.err
}

// Validity returns how long the reservation is sure to stay held without a
// further renewal: the time to its local deadline, which comes before the
// key can expire on the server. It is zero once the reservation has ended.
func (r *Reservation) Validity() time.Duration {
	if r.c.quorum != nil {
		return r.c.quorumValidity(r)
	}
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if r.err != nil {
		return 0
	}
	deadline := r.deadline
	for i, m := range r.members { // a set: its members' shortest
		if i == 0 || m.deadline.Before(deadline) {
			deadline = m.deadline
		}
	}
	return max(time.Until(deadline), 0)
}

// Release gives the reservation up: it deletes the key only if it still
// holds our value, and wakes the waiters. It returns an error matching
// ErrNotHeld when the reservation is nil, was not ours any more (also
// matching ErrLost when it was lost) or was already released. When ctx has
// already ended it sends nothing and the reservation stays held. When Redis
// could not answer, the outcome is unknown: the error wraps the Redis error
// and ErrLost, the reservation ends as lost, and its key is deleted in the
// background if it is still ours.
func (r *Reservation) Release(ctx context.Context) error {
	if r == nil {
		return fmt.Errorf("%w: release of a nil reservation (did the lock fail?)", ErrNotHeld)
	}
	r.releaseMu.Lock()
	defer r.releaseMu.Unlock()
	c := r.c
	if err := r.startRelease(ctx); err != nil {
		return err
	}
	defer c.ops.Done()
	if c.quorum != nil {
		return c.quorumRelease(ctx, r)
	}
	if r.members != nil {
		return c.releaseSet(ctx, r)
	}

	call := c.releaseCall(r.key, r.value, 0)
	n, offeredTo, offered := c.offer(call, r)
	sent := time.Now()
	var answered func(*redis.Cmd)
	if n != nil {
		// The waiter that the release handed the key to gets it, and
		// the others try again if they must.
		answered = func(cmd *redis.Cmd) {
			// Only to a waiter it offered the key to: the script hands
			// another one (one of this Client's beyond those it offered)
			// the key as another Client's, for its lease, and tells it
			// so on the turn channel (see wait.granted).
			if h, ok := handoffOf(cmd); ok && slices.Contains(offeredTo, h.value) {
				n.handTo(r.key, h.value, grant{token: h.token, sent: sent, watched: call.heldRead(h.value)})
			}
			offered()
		}
		// Left running when ctx ended: once this Release has ended r
		// (as lost), one holder at a time here too.
		ended := make(chan struct{})
		defer close(ended)
		call.late = func(cmd *redis.Cmd) {
			<-ended
			answered(cmd)
		}
	}
	cmd, left := c.batch.run(ctx, call)
	released, err := cmd.Int()
	if h, ok := handoffOf(cmd); ok {
		released, err = h.released, nil
		if h.value == "" {
			c.reportOnce("grant", Event{Kind: EventNoPermission, Resource: r.resource, Key: r.key,
				Err: fmt.Errorf("%w: releases hand the key to no other Client's waiter (ZSCORE on %s refused): the waiter tries as before, a round trip later",
					ErrNoPermission, companion(r.key, leaseSuffix))})
		}
	}
	if answered != nil && !left {
		defer answered(cmd) // after r ended: one holder at a time, here too
	}
	if errors.Is(err, errNotSent) {
		// ctx ended while it waited for its turn: nothing was sent, and
		// the reservation is still held.
		c.mu.Lock()
		r.releasing = false
		c.mu.Unlock()
		return fmt.Errorf("reservation: release %s: %w", quote(r.resource), ctx.Err())
	}
	if err != nil {
		// The script may or may not have run: the key may be deleted
		// already, and someone else may take it at any moment. Holding
		// on would be unsafe, so the reservation ends as lost, and its
		// key is deleted in the background if it is still ours.
		err = c.explain(c.redisError("release", r.resource, err))
		c.emit(Event{Kind: EventRedisError, Resource: r.resource, Key: r.key, Err: err})
		c.lose(r, "the release's outcome is unknown", LossRedisError)
		c.giveBack(r.key, r.value, 0)
		c.releasedHere(r) // it may have run
		return fmt.Errorf("%w: %w", err, ErrLost)
	}
	if released == noticeRefused {
		c.reportOnce("release-notice", Event{Kind: EventNoPermission, Resource: r.resource, Key: r.key,
			Err: fmt.Errorf("%w: release notices are not published (PUBLISH to %s refused): waiters of other clients rely on client tracking or their timers",
				ErrNoPermission, companion(r.key, channelSuffix))})
	} else if released != 1 {
		c.lose(r, "release found the key gone or someone else's", LossForeign)
		return fmt.Errorf("%w: release %s: %w", ErrNotHeld, quote(r.resource), r.Err())
	}
	c.releasedHere(r)
	if !r.end(ErrReleased) {
		// Lost locally (deadline passed) while the release ran: the key
		// was still ours and is now deleted, but the holder was told.
		return fmt.Errorf("%w: release %s: %w", ErrNotHeld, quote(r.resource), r.Err())
	}
	c.emit(Event{Kind: EventReleased, Resource: r.resource, Key: r.key, Holder: r.value, Token: r.token,
		Duration: time.Since(r.acquired)})
	return nil
}

// offer has call, a release of r, hand r's key over to the head of the
// server's queue: the release script sets the key to its value and issues
// its token, which saves it an attempt (a round trip and the acquire
// script). The head of another Client takes it when its lease says it
// takes grants, and is told on the turn channel (see notifier.turnTold).
// When the head may be one of this Client's own waiters, their values go
// with the release, and offer returns the notifier whose waiters were
// offered, their values, and what to call once the release answered (see
// notifier.grantees); nil when none were: not fair, WaitReplicas (whose
// WAIT the waiter must see acknowledged before it holds), or no such
// waiter. A permit, and a quorum's part, are handed to nobody: the script
// would have to search the semaphore's permits, and a part on one server
// is no reservation.
func (c *Client) offer(call *scriptCall, r *Reservation) (*notifier, []string, func()) {
	if r.limit > 0 || c.quorum != nil || c.member {
		return nil, nil, nil
	}
	call.keys = append(call.keys, companion(r.key, fenceSuffix), guardKeyFor(r.key, c.cluster))
	call.args = append(call.args, c.args.ttl, c.args.guard, c.args.fenceLifetime)
	if !c.fair() || c.opt.WaitReplicas > 0 {
		return nil, nil, nil
	}
	n := c.notifierIfStarted(r.node)
	if n == nil {
		return nil, nil, nil
	}
	values, answered := n.grantees(r.key)
	if len(values) == 0 {
		return nil, nil, nil
	}
	for _, v := range values {
		call.args = append(call.args, v)
	}
	// Read on the tracking connection after the release, the key is
	// watched for the waiter that holds it now.
	call.watch = call.keys[:1:1]
	return n, values, answered
}

// handover is the release script's reply when it handed the key over to a
// waiter: released as the script's plain reply, and the waiter's value and
// token; value "" when the read of another Client's waiter's lease was
// refused, and nothing was handed over.
type handover struct {
	released int
	value    string
	token    int64
}

// handoffOf returns the handover that cmd, a release offered to waiters,
// answers, if any.
func handoffOf(cmd *redis.Cmd) (handover, bool) {
	reply, ok := cmd.Val().([]any)
	if !ok || len(reply) != 3 {
		return handover{}, false
	}
	released, ok1 := reply[0].(int64)
	value, ok2 := reply[1].(string)
	token, ok3 := reply[2].(int64)
	return handover{int(released), value, token}, ok1 && ok2 && ok3 && cmd.Err() == nil
}

// releasedHere tells the local waiters of r's key that r's release ran, or
// may have (see notifier.released).
func (c *Client) releasedHere(r *Reservation) {
	if n := c.notifierIfStarted(r.node); n != nil {
		n.released(r.key)
	}
}

// startRelease marks r as being released and counts the release in ops
// (the caller calls c.ops.Done), or returns why it cannot be: ended
// already, ctx ended (nothing sent: still held), or taken by Close.
func (r *Reservation) startRelease(ctx context.Context) error {
	c := r.c
	c.mu.Lock()
	ended, err := r.err, r.releasable(ctx)
	c.mu.Unlock()
	if ended != nil && errors.Is(ended, ErrLost) && c.quorum == nil {
		// Lost by its local deadline, the key may still be ours on the
		// server: free it for the others, as it is no use to us. (A
		// quorum holding gave its parts back when it ended.)
		c.giveBack(r.key, r.value, 0)
	}
	return err
}

// releasable is startRelease under c.mu.
func (r *Reservation) releasable(ctx context.Context) error {
	c := r.c
	if r.err != nil {
		return fmt.Errorf("%w: release %s: %w", ErrNotHeld, quote(r.resource), r.err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("reservation: release %s: %w", quote(r.resource), err)
	}
	if r.releasing || c.ctx.Err() != nil {
		// Close took it to release it with the others.
		return fmt.Errorf("%w: release %s: %w by Close", ErrNotHeld, quote(r.resource), ErrReleased)
	}
	// Counted in ops and marked under one lock: Close either leaves it to
	// this Release and waits for it, or took it before. From now on, a
	// quorum part that comes late is given back by attach.
	r.releasing = true
	c.ops.Add(1)
	return nil
}

// noticeRefused is the release script's reply when it released the key but
// the server refused to publish the notice.
const noticeRefused = 2

// hold registers a new reservation with the heartbeat and the notifier,
// which watches its key.
func (c *Client) hold(r *Reservation) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	c.held[r] = struct{}{}
	if c.member {
		c.heldKV[[2]string{r.key, r.value}]++
	}
	if n := c.notifs[r.node]; n != nil {
		n.watchHeld(r)
	} else {
		c.startNotifierLocked(r.node) // it watches r once started
	}
	if !c.heartbeat {
		c.heartbeat = true
		c.wg.Add(1)
		go c.heartbeatLoop()
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return nil
}

// end ends the reservation with cause unless it already ended, and reports
// whether it did.
func (r *Reservation) end(cause error) bool {
	c := r.c
	c.mu.Lock()
	if r.err != nil {
		c.mu.Unlock()
		return false
	}
	r.err = cause
	if _, ok := c.held[r]; ok {
		delete(c.held, r)
		if c.member {
			if kv := [2]string{r.key, r.value}; c.heldKV[kv] > 1 {
				c.heldKV[kv]--
			} else {
				delete(c.heldKV, kv)
			}
		}
		if n := c.notifs[r.node]; n != nil {
			n.unwatchHeld(r)
		}
	}
	parent := r.parent
	c.mu.Unlock()
	r.cancel(cause)
	if parent != nil {
		parent.c.partEnded(parent, r, cause)
	}
	if r.group != nil {
		c.memberEnded(r.group, r, cause)
	}
	if c.quorum != nil {
		c.dropParts(r)
	}
	return true
}

// giveBackTimeout bounds a give-back.
const giveBackTimeout = 2 * time.Second

// giveBack deletes key if it holds value, with a fresh bounded context: an
// acquisition the caller will not hold. The compare-and-delete is safe
// whatever happened, since value is unique to one attempt. With a limit,
// key is a semaphore's, and whichever of its permits holds value is
// deleted. It runs in the background while the Client is open (Close waits
// for it), else at once.
func (c *Client) giveBack(key, value string, limit int) {
	c.inBackground(func() { c.giveBackNow(key, value, limit) })
}

// inBackground runs f in the background while the Client is open (Close
// waits for it), else at once.
func (c *Client) inBackground(f func()) {
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		f()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// giveBackNow gives back key held with value, now, within giveBackTimeout.
func (c *Client) giveBackNow(key, value string, limit int) {
	if c.member {
		// A quorum holding tries a server again with its one value: the
		// give-back of an earlier try must not delete the part that a
		// later try holds, nor one that it is taking (see takeTurn).
		// After Close, a give-back runs in its caller's goroutine, which
		// may be a try that has the turn. No try starts then, and one
		// still running cannot hold (hold refuses once closed).
		if c.ctx.Err() == nil {
			defer c.takeTurn(key, value)()
		}
		if c.holds(key, value) {
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), giveBackTimeout)
	defer cancel()
	_ = c.releaseCall(key, value, limit).run(ctx, c.rdb).Err()
}

// turn orders a member's tries of one key and value and its give-backs.
type turn struct {
	mu    sync.Mutex
	users int // under the Client's mu
}

// takeTurn waits, on a member Client, until no other try of key with value
// and no give-back of it is under way, and returns the function that ends
// this one's turn; on other Clients it does nothing. A try keeps its turn
// until the part it took is held, and a give-back from its check that the
// part is not held to the answer of its release: else a give-back could
// check, then delete the key that a later try sets meanwhile, as the
// value is the same. A try's own give-backs run in the background (a
// member never waits in the queue, whose give-back runs at once): one in
// the try's goroutine would wait for the turn it has.
func (c *Client) takeTurn(key, value string) (done func()) {
	if !c.member {
		return func() {}
	}
	kv := [2]string{key, value}
	c.mu.Lock()
	t := c.turns[kv]
	if t == nil {
		t = &turn{}
		c.turns[kv] = t
	}
	t.users++
	c.mu.Unlock()
	t.mu.Lock()
	return func() {
		t.mu.Unlock()
		c.mu.Lock()
		if t.users--; t.users == 0 {
			delete(c.turns, kv)
		}
		c.mu.Unlock()
	}
}

// holds reports whether a held reservation of c has key and value.
func (c *Client) holds(key, value string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heldKV[[2]string{key, value}] > 0
}

// lose ends r as lost, for reason, and reports it with cause.
func (c *Client) lose(r *Reservation, reason string, cause LossCause) {
	err := lostError(reason)
	if r.end(err) {
		c.emit(Event{Kind: EventLost, Resource: r.resource, Key: r.key, Holder: r.value, Token: r.token,
			Duration: time.Since(r.acquired), Err: err, Cause: cause})
	}
}
