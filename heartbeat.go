package reservation

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// renewChunk is how many keys one renew script extends at most, so that a
// script never keeps a single server busy for long.
const renewChunk = 500

// heartbeatLoop renews every held reservation of the Client and declares
// the loss of those whose local deadline passes. It is the Client's only
// timer for held reservations: renewals due within half an interval of each
// other go together, in one pipeline of multi-key scripts.
func (c *Client) heartbeatLoop() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.restartNotifier()
		batch, next, earliest := c.due(time.Now())
		if len(batch) > 0 {
			c.renew(batch, earliest)
			continue
		}
		timer.Reset(time.Until(next))
		select {
		case <-c.ctx.Done():
			return
		case <-c.kick:
		case <-timer.C:
		}
	}
}

// restartNotifier starts the notifier again when its start failed while
// reservations are held: their keys are not watched meanwhile.
func (c *Client) restartNotifier() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.notif == nil && c.notifStart == nil && len(c.held) > 0 && c.ctx.Err() == nil {
		c.startNotifierLocked()
	}
}

// due declares lost the reservations whose local deadline has passed, and
// returns the ones to renew now, when to look again, and the earliest local
// deadline of all.
func (c *Client) due(now time.Time) (batch []*Reservation, next, earliest time.Time) {
	var lost []*Reservation
	c.mu.Lock()
	anyDue := false
	next = now.Add(time.Hour)
	earliest = next
	for r := range c.held {
		if !now.Before(r.deadline) {
			lost = append(lost, r)
			continue
		}
		if r.deadline.Before(earliest) {
			earliest = r.deadline
		}
		if !r.releasing && !r.due.After(now) {
			anyDue = true
		}
	}
	horizon := now.Add(c.opt.HeartbeatInterval / 2)
	for r := range c.held {
		if !now.Before(r.deadline) {
			continue
		}
		if anyDue && !r.releasing && !r.due.After(horizon) {
			batch = append(batch, r)
			continue
		}
		if !r.releasing && r.due.Before(next) {
			next = r.due
		}
	}
	if earliest.Before(next) {
		next = earliest
	}
	c.mu.Unlock()
	for _, r := range lost {
		c.lose(r, "no renewal succeeded before the local deadline")
	}
	return batch, next, earliest
}

// renew extends batch in one pipeline, bounded by the earliest deadline.
func (c *Client) renew(batch []*Reservation, earliest time.Time) {
	ctx, cancel := context.WithDeadline(c.ctx, earliest)
	defer cancel()
	groups := c.group(batch)
	c.renewRounds.Add(1)
	for prev := c.renewWidest.Load(); int64(len(groups)) > prev && !c.renewWidest.CompareAndSwap(prev, int64(len(groups))); {
		prev = c.renewWidest.Load()
	}
	sent, calls, err := c.renewBounded(ctx, groups)
	if err != nil && c.ctx.Err() == nil {
		// classify, not explain: no network I/O on the heartbeat's path,
		// which must declare losses on time.
		c.emit(Event{Kind: EventRedisError, Err: fmt.Errorf("reservation: renew %d reservations on %s: %w",
			len(batch), c.where(), classify(c.where(), err))})
	}
	rtt := time.Since(sent)
	report := c.opt.OnEvent != nil || c.log.Enabled(ctx, slog.LevelDebug)
	var lost, extended []*Reservation
	var recheck []*Reservation
	c.mu.Lock()
	for g, group := range groups {
		var res []int64
		var cerr error
		if calls != nil {
			res, cerr = calls[g].cmd.Int64Slice()
			if ex := calls[g].exists; ex != nil && cerr == nil && ex.Err() == nil && ex.Val() < int64(count(res, 1)) {
				// A key changed between the script and the read that
				// watches it again: no push will say so.
				recheck = append(recheck, group...)
			}
		} else {
			cerr = err
		}
		for i, r := range group {
			if r.err != nil || r.releasing {
				continue
			}
			switch {
			case cerr != nil || i >= len(res):
				r.failures++
				r.due = time.Now().Add(c.backoff(r.failures))
			case res[i] == 1:
				r.failures = 0
				r.deadline = sent.Add(c.opt.TTL - c.opt.margin())
				r.due = sent.Add(c.opt.HeartbeatInterval)
				if report {
					extended = append(extended, r)
				}
			default:
				lost = append(lost, r)
			}
		}
	}
	c.mu.Unlock()
	for _, r := range lost {
		c.lose(r, "renewal found the key gone or someone else's")
	}
	if n := c.notifierIfStarted(); n != nil && len(recheck) > 0 {
		n.verifyLater(recheck)
	}
	for _, r := range extended {
		c.emit(Event{Kind: EventExtended, Resource: r.resource, Key: r.key, Holder: r.value, Token: r.token, Duration: rtt})
	}
}

// renewBounded sends the renewals of groups (again after loading the
// scripts on NOSCRIPT) and returns when the last attempt was sent and its
// replies, but stops waiting when ctx ends: go-redis bounds a call by its
// ReadTimeout, not by the context (unless ContextTimeoutEnabled is set), and
// the heartbeat must not be held past the earliest local deadline by a
// server that does not answer (paused, or behind a link that drops
// everything), or it would declare the loss late, after the key could
// expire and someone else take it. Replies that come later are dropped.
func (c *Client) renewBounded(ctx context.Context, groups [][]*Reservation) (time.Time, []*scriptCall, error) {
	type result struct {
		sent  time.Time
		calls []*scriptCall
		err   error
	}
	done := make(chan result, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		// On the notifier's tracking connection when it has one: the
		// renewals then keep the keys watched, without waking us.
		rdb, n := c.rdb, c.notifierIfStarted()
		if n != nil && n.tracking {
			rdb = n.trackClient
		} else {
			n = nil
		}
		calls := c.renewals(groups, n)
		sent, err := evalPipelined(ctx, rdb, calls)
		done <- result{sent, calls, err}
	}()
	select {
	case r := <-done:
		return r.sent, r.calls, r.err
	case <-ctx.Done():
		return time.Time{}, nil, ctx.Err()
	}
}

// backoff is the delay before the n-th retry of a failed renewal: from
// 10 ms, doubling, up to a quarter of the heartbeat interval. Retries go on
// until the local deadline.
func (c *Client) backoff(n int) time.Duration {
	d := 10 * time.Millisecond << min(n-1, 16)
	return min(d, max(c.opt.HeartbeatInterval/4, time.Millisecond))
}

// group splits batch into the key sets of renew scripts: chunks of
// renewChunk keys on a single server, one hash slot each on Cluster, one
// key each on other clients (Ring).
func (c *Client) group(batch []*Reservation) [][]*Reservation {
	var groups [][]*Reservation
	if !c.cluster && !c.single {
		// A Ring, or a client we do not know, may shard keys its own
		// way: one key per script.
		for _, r := range batch {
			groups = append(groups, []*Reservation{r})
		}
		return groups
	}
	if !c.cluster {
		for len(batch) > 0 {
			n := min(len(batch), renewChunk)
			groups = append(groups, batch[:n])
			batch = batch[n:]
		}
		return groups
	}
	bySlot := make(map[uint16]int)
	for _, r := range batch {
		s := slot(hashPart(r.key))
		i, ok := bySlot[s]
		if !ok || len(groups[i]) >= renewChunk {
			i = len(groups)
			bySlot[s] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], r)
	}
	return groups
}

// renewals returns one renew script per group. With n, they run on its
// tracking connection, and each script is followed, on that connection, by
// a read of its keys that watches them again: NOLOOP keeps our own PEXPIRE
// from waking us, but drops the key from the tracking table. The read is
// outside the script because Redis before 7.2 tracks every key declared to
// a script at each read the script makes: the cost of a read inside grows
// with the square of the chunk (33 ms a script of 500 keys on 7.0).
func (c *Client) renewals(groups [][]*Reservation, n *notifier) []*scriptCall {
	calls := make([]*scriptCall, len(groups))
	for g, group := range groups {
		keys := make([]string, 2*len(group))
		args := make([]any, len(group)+2)
		for i, r := range group {
			keys[i] = r.key
			keys[len(group)+i] = companion(r.key, fenceSuffix)
			args[i] = r.value
		}
		args[len(group)] = c.ttlMs
		args[len(group)+1] = fenceLifetime(c.ttlMs)
		calls[g] = &scriptCall{script: renewScript, keys: keys, args: args}
		if n != nil {
			calls[g].then = rewatch(c.ctx, keys[:len(group)], &calls[g].exists)
		}
	}
	return calls
}

// count returns how many of xs are x.
func count(xs []int64, x int64) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}
