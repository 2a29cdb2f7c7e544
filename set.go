package reservation

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// MaxSet is the largest number of resources one call reserves together.
const MaxSet = 64

// With makes the call reserve the others together with its resource, all
// or none, in one round trip: a set. The Reservation then stands for the
// whole set: its Done closes, and Err says why, as soon as any member is
// lost (the other members are then given back), Release releases them all,
// Fences gives each member's fencing token, and Validity is the shortest
// of theirs; Resource, Key and Token are the first resource's.
//
// Two callers that ask for overlapping sets in different orders never
// deadlock: no member is ever held while others are waited for. With the
// server's queue (see Options.NoQueue), a set's Lock takes a place in every
// member's queue at once, so the one that came first is ahead in all of
// them, and it acquires once it is at the head of each and every member is
// free; meanwhile it holds the waiters behind it in each of those queues.
// A set's TryLock is refused while anyone queues for any member.
//
// Duplicates are ignored; the resources are at most MaxSet. On a Cluster,
// every member's key must be in one hash slot (give the names one hash
// tag: "{nightly}-a" and "{nightly}-b"); elsewhere the call is refused with
// ErrInvalidOptions. A set cannot include a semaphore (Limit), nor be
// used in quorum mode or over a Ring.
func With(others ...string) LockOption { return withOption(others) }

type withOption []string

func (o withOption) applyLock(cfg *lockConfig) { cfg.with = append(cfg.with, o...) }

// setOf returns the resources of a call with With: resource first, then
// the others in the order given, without duplicates; or the error of a set
// that cannot be.
func (c *Client) setOf(resource string, cfg lockConfig) ([]string, error) {
	set := []string{resource}
	for _, r := range cfg.with {
		if err := checkResource(r); err != nil {
			return nil, err
		}
		if !slices.Contains(set, r) {
			set = append(set, r)
		}
	}
	switch {
	case len(set) > MaxSet:
		return nil, optionError("With: a set of %d resources, more than %d", len(set), MaxSet)
	case cfg.limit > 0:
		return nil, optionError("With and Limit: a set cannot include a semaphore")
	case c.quorum != nil:
		return nil, optionError("With: sets are not available in quorum mode")
	case !c.single && !c.cluster:
		return nil, optionError("With: sets need one Redis server, Sentinel or Cluster (a Ring shards their keys)")
	}
	if c.cluster {
		first := slot(hashPart(c.Key(set[0])))
		for _, r := range set[1:] {
			if slot(hashPart(c.Key(r))) != first {
				return nil, optionError("With: on a Cluster, a set's keys must be in one hash slot, and %s and %s are not: give the names one hash tag, as in \"{batch}-a\" and \"{batch}-b\"",
					c.Key(set[0]), c.Key(r))
			}
		}
	}
	return set, nil
}

// acquireSet runs the set's acquire script once, in a mode of the queues.
func (c *Client) acquireSet(ctx context.Context, set []string, value string, mode queueMode) (*Reservation, *NotAcquiredError, error) {
	if mode != noQueue && c.queueRefused.Load() {
		mode = noQueue
	}
	if err := c.enter(); err != nil {
		return nil, nil, err
	}
	defer c.ops.Done()
	keys := make([]string, 0, 1+4*len(set))
	keys = append(keys, guardKeyFor(c.Key(set[0]), c.cluster))
	args := []any{value, c.args.ttl, c.args.guard, c.args.fenceLifetime, modeArgs[mode], c.args.publish}
	for _, r := range set {
		key := c.Key(r)
		keys = append(keys, key, companion(key, fenceSuffix), companion(key, queueSuffix), companion(key, leaseSuffix))
		args = append(args, companion(key, turnSuffix))
	}
	giveBack := func() { c.giveBackSet(set, value) }
	watch := make([]string, len(set))
	for i := range set {
		watch[i] = keys[1+4*i]
	}
	sent := time.Now()
	call := &scriptCall{script: acquireSetScript, keys: keys, args: args, watch: watch,
		late: func(cmd *redis.Cmd) {
			if res, err := cmd.Slice(); err != nil || len(res) > 0 && res[0] == int64(1) || mode == waitQueue {
				giveBack()
			}
		}}
	c.waitAfter(call)
	b, err := c.batcherFor(ctx, keys[1])
	if err != nil {
		return nil, nil, c.redisError("lock", set[0], err)
	}
	cmd, left := b.run(ctx, call)
	reply, err := cmd.Slice()
	if err != nil {
		if !left && mode != waitQueue {
			giveBack()
		}
		err = c.redisError("lock", strings.Join(set, ", "), err)
		if ctx.Err() == nil {
			c.emit(Event{Kind: EventRedisError, Resource: set[0], Key: keys[1], Err: err})
		}
		return nil, nil, err
	}
	if len(reply) == 0 || reply[0] != int64(1) {
		res, err := parseAcquire(reply)
		if err != nil {
			return nil, nil, fmt.Errorf("reservation: lock %s on %s: %w", quote(set[0]), c.where(), err)
		}
		i := 1
		if len(reply) > 5 {
			if n, ok := reply[5].(int64); ok && n >= 1 && int(n) <= len(set) {
				i = int(n)
			}
		}
		return nil, res.notAcquired(set[i-1], mode, 0), nil
	}
	tokens := make([]int64, len(set))
	for i := range set {
		if i+1 >= len(reply) {
			giveBack()
			return nil, nil, fmt.Errorf("reservation: lock %s on %s: unexpected reply %v", quote(set[0]), c.where(), reply)
		}
		tokens[i], _ = reply[i+1].(int64)
	}
	if err := call.replicated(); err != nil {
		c.giveBackSetFor(mode, set, value)
		err = fmt.Errorf("reservation: lock %s on %s: %w", quote(set[0]), c.where(), err)
		c.emit(Event{Kind: EventRedisError, Resource: set[0], Key: keys[1], Err: err})
		return nil, nil, err
	}
	if !time.Now().Before(sent.Add(c.opt.TTL - c.opt.margin())) {
		c.giveBackSetFor(mode, set, value)
		return nil, &NotAcquiredError{Resource: set[0], Late: true}, nil
	}
	node := c.nodeOf(ctx, keys[1])
	g := newReservation(c, set[0], c.Key(set[0]), value, tokens[0], sent)
	watched := call.heldRead(value)
	for i, r := range set {
		m := newReservation(c, r, c.Key(r), value, tokens[i], sent)
		m.node, m.group, m.watched = node, g, watched
		g.members = append(g.members, m)
	}
	for i, m := range g.members {
		if err := c.hold(m); err != nil {
			// Closed while acquiring: give the set back at once.
			for _, held := range g.members[:i] {
				held.end(ErrReleased)
			}
			c.giveBackSet(set, value)
			g.end(ErrReleased)
			return nil, nil, err
		}
	}
	return g, nil, nil
}

// giveBackSet gives back every key of set held with value, and takes value
// off their queues, in one round trip (see giveBack).
func (c *Client) giveBackSet(set []string, value string) {
	c.inBackground(func() { c.giveBackSetNow(set, value) })
}

// giveBackSetNow is giveBackSet now, within giveBackTimeout.
func (c *Client) giveBackSetNow(set []string, value string) {
	ctx, cancel := context.WithTimeout(context.Background(), giveBackTimeout)
	defer cancel()
	calls := make([]*scriptCall, len(set))
	for i, r := range set {
		calls[i] = c.releaseCall(c.Key(r), value, 0)
	}
	_, _ = evalPipelined(ctx, c.rdb, calls)
}

// giveBackSetFor is giveBackSet after an acquisition in mode: a waiter's
// give-back is done before its next attempt (see giveBackFor).
func (c *Client) giveBackSetFor(mode queueMode, set []string, value string) {
	if mode == waitQueue {
		c.giveBackSetNow(set, value)
		return
	}
	c.giveBackSet(set, value)
}

// memberEnded ends the set g when its member m ended: lost, the set is
// lost and its other members are given back; released (by Close), the set
// is released.
func (c *Client) memberEnded(g, m *Reservation, cause error) {
	c.mu.Lock()
	releasing := g.releasing
	c.mu.Unlock()
	if releasing && errors.Is(cause, ErrReleased) {
		return // Release releases them all
	}
	if errors.Is(cause, ErrLost) {
		cause = fmt.Errorf("%w (member %s of the set)", cause, quote(m.resource))
	}
	if !g.end(cause) || !errors.Is(cause, ErrLost) {
		return // Close releases the others
	}
	for _, o := range g.members {
		if o == m || o.Err() != nil {
			continue
		}
		c.mu.Lock()
		o.releasing = true // the heartbeat leaves it alone
		c.mu.Unlock()
		if o.end(ErrReleased) {
			c.giveBack(o.key, o.value, 0)
		}
	}
}

// releaseSet is Release of a set: every member in one pipeline.
func (c *Client) releaseSet(ctx context.Context, g *Reservation) error {
	c.mu.Lock()
	for _, m := range g.members {
		m.releasing = true
	}
	c.mu.Unlock()
	calls := make([]*scriptCall, len(g.members))
	for i, m := range g.members {
		calls[i] = c.releaseCall(m.key, m.value, 0)
	}
	// The scripts' DELs on the tracking connection come back to this
	// Client as no notice (NOLOOP): its own waiters of the members are
	// told by released, once the server answered, whatever the outcome
	// (a script whose reply was lost may have run).
	left, err := c.batch.runAll(ctx, calls, func() {
		for _, m := range g.members {
			c.releasedHere(m)
		}
	})
	var lost []string
	for i, m := range g.members {
		n, rerr := 0, err // left running when ctx ended: the outcome is unknown
		if !left {
			n, rerr = calls[i].cmd.Int()
		}
		switch {
		case rerr != nil:
			c.lose(m, "the release's outcome is unknown", LossRedisError)
			c.giveBack(m.key, m.value, 0)
			lost = append(lost, m.resource)
		case n == 0:
			c.lose(m, "release found the key gone or someone else's", LossForeign)
			lost = append(lost, m.resource)
		default:
			if m.end(ErrReleased) {
				c.emit(Event{Kind: EventReleased, Resource: m.resource, Key: m.key, Holder: m.value,
					Token: m.token, Duration: time.Since(m.acquired)})
			}
		}
	}
	if len(lost) > 0 || !g.end(ErrReleased) {
		if err != nil {
			err = c.explain(c.redisError("release", g.resource, err))
			c.emit(Event{Kind: EventRedisError, Resource: g.resource, Key: g.key, Err: err})
			return fmt.Errorf("%w: %w", err, ErrLost)
		}
		return fmt.Errorf("%w: release of the set of %s: %w", ErrNotHeld, quote(g.resource), g.Err())
	}
	return nil
}

// setLock is Lock of a set. Each attempt runs the set's script; between
// attempts the waiter watches the key of the member that refused it
// (client tracking, or release notices; every member's before the first
// refusal) and, with the server's queue, is told when its turn comes in
// that member's queue, and renews its places every HeartbeatInterval.
func (c *Client) setLock(ctx context.Context, set []string) (*Reservation, error) {
	start := time.Now()
	mode := noQueue
	if c.fair() {
		mode = waitQueue
	}
	value := c.newValue()
	acquired := false
	defer func() {
		if !acquired && mode == waitQueue {
			c.giveBackSet(set, value) // leave the queues
		}
	}()
	keys := make([]string, len(set))
	for i, r := range set {
		keys[i] = c.Key(r)
	}
	var (
		n        *notifier
		waiters  []*waiter
		last     *NotAcquiredError
		failures int
	)
	defer func() {
		for i, q := range waiters {
			n.leave(keys[i], q, acquired)
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r, nerr, err := c.acquireSet(ctx, set, value, mode)
		switch {
		case r != nil:
			acquired = true
			for _, m := range r.members {
				c.emit(Event{Kind: EventAcquired, Resource: m.resource, Key: m.key, Holder: m.value, Token: m.token,
					Duration: max(time.Since(start), time.Nanosecond)}) // never zero: zero is TryLock's
			}
			return r, nil
		case err != nil && (ctx.Err() != nil || errors.Is(err, ErrClosed)):
			return nil, waitEnded(ctx, set[0], 0, last)
		case err != nil && last == nil && failures == 0 && n == nil:
			return nil, err // the first attempt: a wrong address shows at once
		case err != nil:
			failures++
		default:
			failures = 0
			last = nerr
			if nerr.Guard {
				c.reportGuard(nerr)
			}
		}
		if n == nil {
			if n, err = c.notifierFor(ctx, keys[0]); err != nil {
				if ctx.Err() != nil {
					return nil, waitEnded(ctx, set[0], 0, last)
				}
				return nil, err
			}
			for _, k := range keys {
				waiters = append(waiters, n.joinServerQueue(k, value, false))
			}
			if last != nil {
				c.emit(Event{Kind: EventWait, Resource: set[0], Key: keys[0], Holder: last.Holder, Duration: last.Remaining})
			}
			if !n.tracking {
				continue // subscribed: try again, so that no release is missed
			}
		}
		delay := c.opt.RetryInterval
		if mode == waitQueue {
			delay = min(delay, c.opt.HeartbeatInterval) // renew the places
		}
		if failures > 0 {
			delay = min(delay, 10*time.Millisecond<<min(failures, 10))
		} else if last != nil && !last.NoExpiry && last.Remaining > 0 {
			delay = min(delay, last.Remaining+time.Millisecond)
		}
		// Behind another waiter in some queue, the keys are not ours to
		// watch: a turn told, or the lease due, wakes it.
		head := last == nil || last.place == 0
		// Only the member that refused stands in the way: the set waits
		// for its notices and its turn, not for every member's, which
		// would have it try again at every change of a member it could
		// not take anyway. The others' turns told meanwhile are kept
		// (the channel holds one), for when one of them refuses.
		refusing := -1
		if last != nil {
			refusing = slices.Index(set, last.Resource)
		}
		cases := make([]reflect.SelectCase, 0, 2*len(keys)+3)
		var unarmed []int // the members to watch again, in one round trip
		for i, k := range keys {
			wake, turn, armed := n.turnState(k, waiters[i])
			switch {
			case refusing >= 0 && i != refusing:
				wake, turn = nil, nil
			case !head:
				wake = nil
			case n.tracking && !armed:
				unarmed = append(unarmed, i)
			}
			cases = append(cases,
				reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(wake)},
				reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(turn)})
		}
		if len(unarmed) > 0 {
			arm := make([]string, len(unarmed))
			for j, i := range unarmed {
				arm[j] = keys[i]
			}
			// No later than the next attempt is due, which renews the
			// places: after a reconnection the notifier may take a second
			// or more to watch keys again.
			actx, cancel := context.WithTimeout(ctx, delay)
			pttls, err := n.armKeys(actx, arm...)
			cancel()
			free := false
			if err == nil {
				for j, i := range unarmed {
					free = free || pttls[j] == -2 && (last == nil || last.Resource == set[i])
				}
			}
			if free {
				continue // the member that refused is free since: again at once
			}
		}
		timer.Reset(max(delay, 0))
		cases = append(cases,
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c.ctx.Done())})
		chosen, _, _ := reflect.Select(cases)
		switch chosen {
		case len(cases) - 2:
			return nil, waitEnded(ctx, set[0], 0, last)
		case len(cases) - 1:
			return nil, ErrClosed
		case len(cases) - 3:
			continue // the timer fired: its channel is drained
		}
		if !timer.Stop() {
			<-timer.C
		}
	}
}
