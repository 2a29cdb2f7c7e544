package reservation

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"time"
)

// seat is a waiter's place in the queue of one server's notifier.
type seat struct {
	server int
	n      *notifier
	w      *waiter
}

// quorumLock is Lock in quorum mode. A waiter queues on every server's
// notifier, in one order for all the waiters of the Client (so the head is
// the head everywhere), and is woken by a change of the key on any server.
func (c *Client) quorumLock(ctx context.Context, resource string) (*Reservation, error) {
	w := &wait{c: c, resource: resource, key: c.Key(resource), start: time.Now()}
	// First try at once, unless waiters of this Client queue for the key:
	// then take a place behind them.
	tried := !c.queued(w.key)
	if tried {
		r, err := w.attempt(ctx)
		if r != nil || err != nil {
			return r, err
		}
	}
	seats := c.join(ctx, w.key)
	acquired := false
	defer func() {
		for _, s := range seats {
			s.n.leave(w.key, s.w, acquired)
		}
	}()
	if w.last != nil {
		c.emit(Event{Kind: EventWait, Resource: resource, Key: w.key, Holder: w.last.Holder, Duration: w.last.Remaining})
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	splits := 0 // attempts in a row that found the servers split
	// tried: the attempt before joining counts as the first round; the
	// watches set next catch any change since.
	for {
		delay := c.opt.RetryInterval
		head := len(seats) == 0
		wakes := make([]<-chan struct{}, len(seats))
		var unarmed []seat
		for i, s := range seats {
			wake, h, armed := s.n.state(w.key, s.w)
			wakes[i] = wake
			head = head || i == 0 && h
			if l := w.last; l != nil && slices.Contains(l.down, s.server) {
				// Failed at the last attempt: its watch would wait for
				// a connection that is not there.
				continue
			}
			if !armed || w.quiet {
				unarmed = append(unarmed, s)
			}
		}
		if head {
			if !tried {
				r, err := w.attempt(ctx)
				if r != nil {
					acquired = true
					return r, nil
				}
				if err != nil {
					if ctx.Err() != nil || errors.Is(err, ErrClosed) {
						return nil, err
					}
					w.failures++
					delay = min(delay, 10*time.Millisecond<<min(w.failures, 10))
				} else {
					w.failures = 0
				}
				if l := w.last; err == nil && l != nil && l.split {
					// The servers split between contenders, and each gave
					// back what it took: try again after a random pause
					// that doubles with each split in a row (from 5 ms, at
					// most RetryInterval), so that the next round is not
					// split the same way.
					splits++
					pause := min(5*time.Millisecond<<min(splits-1, 10), c.opt.RetryInterval)
					if !sleep(ctx, time.Duration(rand.Int64N(int64(pause)))) {
						return nil, w.notAcquired(ctx)
					}
					continue
				}
				splits = 0
			}
			tried = false
			w.quiet = false
			// Free on a majority since the attempt: again at once. Not
			// when the restart guard refused: it ends with time, not with
			// a change of the key, and a key free on servers that guard
			// would send the waiter round again and again.
			if l := w.last; (l == nil || !l.Guard) && c.freeSince(ctx, w, unarmed) >= c.quorum.majority {
				continue
			}
			if l := w.last; l != nil && !l.NoExpiry && l.Remaining > 0 && w.failures == 0 {
				delay = min(delay, l.Remaining+time.Millisecond)
			}
		}
		timer.Reset(delay)
		cases := make([]reflect.SelectCase, 0, len(wakes)+3)
		for _, ch := range []any{timer.C, ctx.Done(), c.ctx.Done()} {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		for i, ch := range wakes {
			if l := w.last; head && l != nil && slices.Contains(l.granted, seats[i].server) {
				// It said yes and we gave it back: its change is ours,
				// and says nothing of the servers that refused.
				continue
			}
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		chosen, _, _ := reflect.Select(cases)
		switch chosen {
		case 0:
			w.quiet = delay >= c.opt.RetryInterval
		case 1:
			return nil, w.notAcquired(ctx)
		case 2:
			return nil, ErrClosed
		default:
			if !timer.Stop() {
				<-timer.C
			}
		}
	}
}

// queued reports whether waiters of this Client queue for key.
func (c *Client) queued(key string) bool {
	for _, m := range c.quorum.servers {
		if n := m.notifierIfStarted(""); n != nil {
			return n.waited(key)
		}
	}
	return false
}

// join queues a waiter for key on the notifier of every server that can
// start one within QuorumTimeout (the others go on starting in the
// background; a change there is seen by the next attempt), in one order
// for all the Client's waiters.
func (c *Client) join(ctx context.Context, key string) []seat {
	ctx, cancel := context.WithTimeout(ctx, c.opt.QuorumTimeout)
	defer cancel()
	ns, _, _ := eachServer(ctx, c, func(ctx context.Context, m *Client) (*notifier, error) {
		return m.notifierFor(ctx, key)
	})
	c.quorum.joinMu.Lock()
	defer c.quorum.joinMu.Unlock()
	var seats []seat
	for i, n := range ns {
		if n != nil {
			seats = append(seats, seat{i, n, n.join(key)})
		}
	}
	return seats
}

// freeSince sets the watch of the waiter's key on the notifier of each seat
// of unarmed, in parallel, within QuorumTimeout, and returns on how many
// servers the key is known free since the waiter's last attempt: those
// that said yes to it (it gave the key back there) and those that refused
// it but where the watch found the key gone. A change on those happened
// before the watch was set, so no wake-up will tell of it.
func (c *Client) freeSince(ctx context.Context, w *wait, unarmed []seat) int {
	ctx, cancel := context.WithTimeout(ctx, c.opt.QuorumTimeout)
	defer cancel()
	var granted []int
	if w.last != nil {
		granted = w.last.granted
	}
	var mu sync.Mutex
	free := len(granted)
	var wg sync.WaitGroup
	for _, s := range unarmed {
		if !s.n.tracking {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p, err := s.n.arm(ctx, w.key); err == nil && p == -2 && !slices.Contains(granted, s.server) {
				mu.Lock()
				free++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return free
}
