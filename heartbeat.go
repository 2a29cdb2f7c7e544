package reservation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// renewChunk is how many keys one renew script extends at most, so that a
// script never keeps a single server busy for long.
const renewChunk = 500

// heartbeatLoop renews every held reservation of the Client and declares
// the loss of those whose local deadline passes. It is the Client's only
// timer for held reservations: renewals due within half an interval of each
// other go together, in one pipeline of multi-key scripts per node.
func (c *Client) heartbeatLoop() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.restartNotifier()
		batch, next := c.due(time.Now())
		if len(batch) > 0 {
			c.renew(batch)
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

// restartNotifier starts a notifier again when its start failed while
// reservations of its node are held: their keys are not watched meanwhile.
func (c *Client) restartNotifier() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	for r := range c.held {
		if c.notifs[r.node] == nil && c.starts[r.node] == nil {
			c.startNotifierLocked(r.node)
		}
	}
}

// due declares lost the reservations whose local deadline has passed, and
// returns the ones to renew now and when to look again. A reservation
// whose renewal is under way is left to it (its node may not answer), but
// declared lost all the same when its deadline passes.
func (c *Client) due(now time.Time) (batch []*Reservation, next time.Time) {
	var lost []*Reservation
	c.mu.Lock()
	anyDue := false
	next = now.Add(time.Hour)
	earliest := next
	for r := range c.held {
		if !now.Before(r.deadline) {
			lost = append(lost, r)
			continue
		}
		if r.deadline.Before(earliest) {
			earliest = r.deadline
		}
		if !r.releasing && !r.renewing && !r.due.After(now) {
			anyDue = true
		}
	}
	horizon := now.Add(c.opt.HeartbeatInterval / 2)
	for r := range c.held {
		if !now.Before(r.deadline) || r.releasing || r.renewing {
			continue
		}
		if anyDue && !r.due.After(horizon) {
			batch = append(batch, r)
			continue
		}
		if r.due.Before(next) {
			next = r.due
		}
	}
	if earliest.Before(next) {
		next = earliest
	}
	for _, r := range batch {
		r.renewing = true
	}
	c.mu.Unlock()
	for _, r := range lost {
		c.lose(r, "no renewal succeeded before the local deadline", LossDeadline)
	}
	return batch, next
}

// renew extends batch: one pipeline per node, each bounded by the earliest
// local deadline of its own reservations, so that a node that does not
// answer costs only the reservations it holds. Outside a Cluster it returns
// when the renewal is done; on a Cluster, each master's renewal runs on its
// own goroutine and kicks the loop when done, so that the loop is never
// held up by a master that does not answer.
func (c *Client) renew(batch []*Reservation) {
	parts := c.byNode(batch)
	if len(parts) == 1 && !c.cluster {
		c.renewNode(parts[0])
		return
	}
	for _, part := range parts {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.renewNode(part)
			select {
			case c.kick <- struct{}{}:
			default:
			}
		}()
	}
}

// nodeBatch is the reservations of one renewal round on one node.
type nodeBatch struct {
	node  string                // the Cluster master's address ("" elsewhere)
	rdb   redis.UniversalClient // where to send the pipeline
	batch []*Reservation
}

// byNode splits batch by the Cluster master that holds each key (one part
// elsewhere). Keys whose master is not known (the slot map could not be
// had) make a part of their own, node "", sent through the cluster client.
func (c *Client) byNode(batch []*Reservation) []nodeBatch {
	cc, ok := c.rdb.(*redis.ClusterClient)
	if !ok {
		return []nodeBatch{{rdb: c.rdb, batch: batch}}
	}
	var parts []nodeBatch
	index := make(map[string]int)
	masters := make(map[uint16]*redis.Client) // by slot: one lookup per slot, not per key
	for _, r := range batch {
		var rdb redis.UniversalClient = cc
		var node *redis.Client
		addr := ""
		s := slot(hashPart(r.key))
		m, seen := masters[s]
		if !seen {
			m, _ = cc.MasterForKey(c.ctx, r.key)
			masters[s] = m
		}
		if m != nil {
			node, addr = m, m.Options().Addr
			if c.opt.WaitReplicas > 0 {
				// WAIT has no key: sent through the cluster client it
				// would go to any node, not the one that took the write.
				rdb = node
			}
		}
		i, ok := index[addr]
		if !ok {
			i = len(parts)
			index[addr] = i
			parts = append(parts, nodeBatch{node: addr, rdb: rdb})
			if node != nil {
				// For the notifier of a master met here first (one that
				// replaced a failed one): it needs the master's client.
				c.mu.Lock()
				c.nodes[addr] = node
				c.mu.Unlock()
			}
		}
		parts[i].batch = append(parts[i].batch, r)
	}
	return parts
}

// renewNode extends part in one pipeline, bounded by the earliest local
// deadline of its reservations.
func (c *Client) renewNode(part nodeBatch) {
	batch := part.batch
	earliest := batch[0].deadline
	c.mu.Lock()
	for _, r := range batch {
		if r.deadline.Before(earliest) {
			earliest = r.deadline
		}
	}
	c.mu.Unlock()
	ctx, cancel := context.WithDeadline(c.ctx, earliest)
	defer cancel()
	groups := c.group(batch)
	c.renewRounds.Add(1)
	for prev := c.renewWidest.Load(); int64(len(groups)) > prev && !c.renewWidest.CompareAndSwap(prev, int64(len(groups))); {
		prev = c.renewWidest.Load()
	}
	sent, calls, err := c.renewBounded(ctx, part, groups)
	moved := errors.Is(err, errMoved)
	if moved {
		err = nil // renewed, elsewhere than part.node
	}
	if cc, ok := c.rdb.(*redis.ClusterClient); ok && (err != nil || moved) {
		// The node may have failed over: have the slot map read again
		// (in the background), so that the next try goes to its
		// successor. The renewals went on the node's own connection,
		// whose errors the cluster client does not see.
		cc.ReloadState(c.ctx)
	}
	if err != nil && c.ctx.Err() == nil {
		// classify, not explain: no network I/O on the heartbeat's path,
		// which must declare losses on time.
		c.emit(Event{Kind: EventRedisError, Err: fmt.Errorf("reservation: renew %d reservations on %s: %w",
			len(batch), c.where(), classify(c.where(), err))})
	}
	rtt := time.Since(sent)
	report := c.wants(EventExtended)
	var lost, extended []*Reservation
	var recheck []*Reservation
	c.mu.Lock()
	for _, r := range batch {
		r.renewing = false
	}
	for g, group := range groups {
		var res []int64
		var cerr error
		if calls != nil {
			res, cerr = calls[g].cmd.Int64Slice()
			if cerr == nil {
				cerr = calls[g].replicated()
			}
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
		c.lose(r, "renewal found the key gone or someone else's", LossForeign)
	}
	if n := c.notifierIfStarted(part.node); n != nil && len(recheck) > 0 {
		n.verifyLater(recheck)
	}
	if part.node != "" && err == nil && !moved {
		c.rehome(part.node, batch)
	}
	if err == nil && c.ctx.Err() == nil {
		// Renewed on the master, but not acknowledged by the replicas
		// asked for: say so once a round (the holder hears of it only
		// when its deadline passes).
		for _, call := range calls {
			if rerr := call.replicated(); rerr != nil && call.cmd.Err() == nil {
				c.emit(Event{Kind: EventRedisError, Err: fmt.Errorf("reservation: renew %d reservations on %s: %w",
					len(batch), c.where(), rerr)})
				break
			}
		}
	}
	for i, r := range extended {
		e := Event{Kind: EventExtended, Resource: r.resource, Key: r.key, Holder: r.value, Token: r.token, Duration: rtt}
		if i == 0 {
			e.Batch = len(extended) // the round trip, counted once
		}
		c.emit(e)
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
func (c *Client) renewBounded(ctx context.Context, part nodeBatch, groups [][]*Reservation) (time.Time, []*scriptCall, error) {
	type result struct {
		sent  time.Time
		calls []*scriptCall
		err   error
	}
	done := make(chan result, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		// On the notifier's tracking connection (to the node) when it has
		// one: the renewals then keep the keys watched, without waking us.
		rdb, n := part.rdb, c.notifierIfStarted(part.node)
		if n != nil && n.tracking {
			rdb = n.trackClient
		} else {
			n = nil
		}
		calls := c.renewals(groups, n)
		sent, err := evalPipelined(ctx, rdb, calls)
		if n != nil && part.node != "" && isRedirect(err) && c.opt.WaitReplicas == 0 {
			// Slots moved: through the cluster client, which follows
			// MOVED and ASK, and learns the new slot map.
			calls = c.renewals(groups, nil)
			sent, err = evalPipelined(ctx, c.rdb, calls)
			if err == nil {
				err = errMoved
			}
		}
		done <- result{sent, calls, err}
	}()
	select {
	case r := <-done:
		return r.sent, r.calls, r.err
	case <-ctx.Done():
		return time.Time{}, nil, ctx.Err()
	}
}

// errMoved is renewBounded's word for renewals that went through the
// cluster client after a redirection: done, but not on the node asked.
var errMoved = errors.New("reservation: renewed after a redirection")

// isRedirect reports whether err is a Cluster redirection (MOVED, ASK) or
// a slot in migration (TRYAGAIN).
func isRedirect(err error) bool {
	rerr, ok := redisErr(err)
	if !ok {
		return false
	}
	msg := rerr.Error()
	return strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK ") || strings.HasPrefix(msg, "TRYAGAIN")
}

// rehome moves the watch of the reservations of batch, just renewed
// through node, to that node's notifier when another one watched them (the
// slot moved: a failover or a resharding).
func (c *Client) rehome(node string, batch []*Reservation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return // closed: no notifier starts now
	}
	for _, r := range batch {
		if _, held := c.held[r]; !held || r.node == node {
			continue
		}
		if n := c.notifs[r.node]; n != nil {
			n.unwatchHeld(r)
		}
		r.node = node
		if n := c.notifs[node]; n != nil {
			n.watchHeld(r)
		} else {
			c.startNotifierLocked(node)
		}
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
	// Semaphores' permits in groups of their own: their companion, the
	// semaphore's marker, lives a TTL, not a fencing key's lifetime.
	if i := slices.IndexFunc(batch, func(r *Reservation) bool { return r.limit > 0 }); i >= 0 {
		var plain, permits []*Reservation
		for _, r := range batch {
			if r.limit > 0 {
				permits = append(permits, r)
			} else {
				plain = append(plain, r)
			}
		}
		return append(c.groupOf(plain), c.groupOf(permits)...)
	}
	return c.groupOf(batch)
}

// groupOf is group for reservations of one kind.
func (c *Client) groupOf(batch []*Reservation) [][]*Reservation {
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
		lifetime := fenceLifetime(c.ttlMs)
		for i, r := range group {
			keys[i] = r.key
			keys[len(group)+i] = companion(r.key, fenceSuffix)
			if r.limit > 0 {
				keys[len(group)+i] = semaphoreOf(r.key) // its marker
				lifetime = c.ttlMs
			}
			args[i] = r.value
		}
		args[len(group)] = c.ttlMs
		args[len(group)+1] = lifetime
		calls[g] = &scriptCall{script: renewScript, keys: keys, args: args}
		if n != nil {
			calls[g].then = rewatch(c.ctx, keys[:len(group)], &calls[g].exists)
		}
		c.waitAfter(calls[g])
	}
	return calls
}

// count returns how many of xs are x.
func count[T comparable](xs []T, x T) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}
