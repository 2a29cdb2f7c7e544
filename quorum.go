package reservation

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Quorum mode: one Client over N independent servers. Each server has a
// Client of its own (a member), which holds, renews, watches and releases
// the holding's part on that server exactly as a single-server Client
// does; the quorum Client decides, from its members' answers, whether a
// majority holds the resource. This file is that decision: acquisition,
// the write-back of the fencing token, the holding's deadline, the repair
// of parts lost on a minority, and release.

// quorum is the state of a Client in quorum mode.
type quorum struct {
	servers  []*Client // one member Client per server
	majority int
	repair   chan struct{} // wakes the repair loop
	repairOn bool          // the repair loop runs (under the Client's mu)
	// unguarded: a server's ACL refused the force-release record to the
	// repair loop, which takes parts back without it from then on.
	unguarded atomic.Bool
	joinMu    sync.Mutex // waiters join the servers' queues in one order
}

// NewQuorum returns a Client that holds each reservation on a majority of
// the independent Redis servers at addrs: an odd number, at least 3, each
// "host:port" or a redis:// or rediss:// URL of a plain server (not a
// Sentinel or a Cluster). Username, Password and TLSConfig of opt apply to
// every server.
//
// It has the API of a single-server Client. TryLock asks every server at
// once, in one round trip each, and holds when a majority said yes before
// the holding's validity ran out (each server's deadline is when its
// request was sent plus the TTL, less the drift margin) and within
// Options.QuorumTimeout; otherwise it gives back at once what it took.
// Before it returns, the fencing token (the largest of the majority's) is
// written back to a majority, so that every later holding, which needs a
// majority too, meets it: tokens grow even when the servers' clocks differ
// and a minority lost its data, as long as the clocks differ by less than
// the restart guard and the fencing keys' lifetime (max(2×TTL, 60 s)),
// after which a server's clock takes over from its lost or expired key.
// That is one round trip more than a single server.
//
// A holding stays while a majority of servers keep it: each server's part
// is renewed by that server's heartbeat, and its local deadline is the
// majority-th latest of the parts' deadlines. A part lost on one server (a
// foreign change, a server down, a restart without data) is taken again
// there as soon as the key is free and the server's restart guard lets it
// vote; Done closes only when fewer than a majority hold it. Each server
// keeps its own restart guard, so a server restarted without persistence
// does not vote until its guard passed.
//
// A minority of servers failing is not an error of any call: it is an
// Event of kind EventServerFailed. With a majority failing, calls return a
// *QuorumError that names each failed server; TryLock does so within
// QuorumTimeout.
//
// The keys on each server are those of a single-server Client, with one
// holder value on every server.
func NewQuorum(addrs []string, opt *Options) (*Client, error) {
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkQuorumSize(len(addrs)); err != nil {
		return nil, err
	}
	for _, addr := range addrs {
		if kind := topologyOf(addr); kind != "single" {
			return nil, optionError("quorum servers must be plain servers: one address is a %s URL", kind)
		}
	}
	return newQuorum(o, len(addrs), func(i int, mo *Options) (*Client, error) {
		// No retries, of commands or of dials: a server that fails is
		// outvoted, and go-redis's retries (with their back-off: five
		// dials 100 ms apart) would only delay the answer about it
		// (Status, Release, Close) by a second or more.
		return newServer(addrs[i], *mo, func(ro *redis.Options) { ro.MaxRetries, ro.DialerRetries = -1, 1 })
	})
}

// NewQuorumWithClients is NewQuorum over existing go-redis clients, one per
// independent server. Close does not close them. It returns an error
// wrapping ErrInvalidOptions when their number is even or below 3, one is
// nil, or an option is bad.
//
// go-redis retries a failed command (MaxRetries, 3 by default, with a
// back-off) and a failed dial (DialerRetries, 5): over clients of default
// options, a server that is down answers only after those, so a vote that
// needs its answer (the others split, or a release counted) waits for
// QuorumTimeout. Clients with MaxRetries -1 and DialerRetries 1, as
// NewQuorum makes them, answer at once that the server is down; in a test
// with one server of three killed, they kept the rate of handovers between
// four Clients, where default ones halved it.
func NewQuorumWithClients(rdbs []*redis.Client, opt *Options) (*Client, error) {
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := checkQuorumSize(len(rdbs)); err != nil {
		return nil, err
	}
	if slices.Contains(rdbs, nil) {
		return nil, optionError("nil redis client")
	}
	if o.Username != "" || o.Password != "" || o.TLSConfig != nil {
		return nil, optionError("Username, Password and TLSConfig are for NewQuorum: set them on the go-redis clients")
	}
	return newQuorum(o, len(rdbs), func(i int, mo *Options) (*Client, error) {
		return NewWithClient(rdbs[i], mo)
	})
}

// newQuorum returns a quorum Client over n members that member makes, from
// the options it is given.
func newQuorum(o Options, n int, member func(i int, mo *Options) (*Client, error)) (*Client, error) {
	c := newClient(nil, o)
	c.quorum = &quorum{repair: make(chan struct{}, 1)}
	for i := range n {
		m, err := member(i, c.memberOptions(i))
		if err != nil {
			_ = c.closeMembers()
			return nil, err
		}
		m.member = true
		c.quorum.servers = append(c.quorum.servers, m)
	}
	c.addr = c.quorumName()
	if err := c.checkDistinct(); err != nil {
		_ = c.closeMembers()
		return nil, err
	}
	return c, nil
}

// checkDistinct refuses a server given twice (the same address and
// database, however written): its two votes would make a majority of one.
// Two names of one address (localhost and 127.0.0.1) are not caught here.
func (c *Client) checkDistinct() error {
	seen := make(map[string]bool)
	for _, m := range c.quorum.servers {
		o := m.rdb.(*redis.Client).Options()
		id := fmt.Sprintf("%s/%d", o.Addr, o.DB)
		if seen[id] {
			return optionError("quorum servers must be distinct: %s is given twice", o.Addr)
		}
		seen[id] = true
	}
	return nil
}

func checkQuorumSize(n int) error {
	if n < 3 || n%2 == 0 {
		return optionError("a quorum needs an odd number of servers, at least 3, not %d", n)
	}
	return nil
}

// quorumName names the servers for messages.
func (c *Client) quorumName() string {
	addrs := make([]string, len(c.quorum.servers))
	for i, m := range c.quorum.servers {
		addrs[i] = m.addr
	}
	c.quorum.majority = len(addrs)/2 + 1
	return "quorum " + strings.Join(addrs, ",")
}

// memberOptions returns the options of a member: the quorum Client's,
// with its events handed to the quorum Client.
func (c *Client) memberOptions(i int) *Options {
	o := c.opt
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	// Events come only once the constructor has returned, with
	// c.quorum.servers complete.
	o.OnEvent = func(e Event) { c.memberEvent(c.quorum.servers[i], e) }
	return &o
}

// memberEvent passes on an event of a member: what concerns one server
// only becomes EventServerFailed, naming it.
func (c *Client) memberEvent(m *Client, e Event) {
	switch e.Kind {
	case EventAcquired, EventReleased, EventWait:
		return // the quorum Client reports those of its holdings
	case EventExtended:
		c.emit(e)
		return
	case EventLost:
		return // partEnded reports it, knowing whether it matters
	}
	if e.Err != nil {
		e.Err = &NodeError{Addr: m.addr, Err: e.Err}
	}
	if e.Kind == EventRedisError {
		e.Kind = EventServerFailed
	}
	c.emit(e)
}

// closeMembers closes the members, in parallel.
func (c *Client) closeMembers() error {
	errs := make([]error, len(c.quorum.servers))
	var wg sync.WaitGroup
	for i, m := range c.quorum.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Close(); err != nil && !errors.Is(err, ErrClosed) {
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// serverCause is what a NodeError says of err, the error of a member's
// call: its cause, without the member's words around it (the NodeError
// names the server), or that the server did not answer in time.
func (c *Client) serverCause(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return c.noAnswer()
	}
	if cause := errors.Unwrap(err); cause != nil {
		return cause
	}
	return err
}

// noAnswer is the cause of a server that did not answer within
// QuorumTimeout.
func (c *Client) noAnswer() error {
	return fmt.Errorf("no answer within the quorum timeout (%v): %w", c.opt.QuorumTimeout, context.DeadlineExceeded)
}

// vote is one server's answer to an acquisition.
type vote struct {
	server int
	part   *Reservation
	nerr   *NotAcquiredError
	err    error
}

// quorumAcquire takes resource on a majority of the servers, as acquire
// does on one.
func (c *Client) quorumAcquire(ctx context.Context, resource string) (*Reservation, *NotAcquiredError, error) {
	if err := c.enter(); err != nil {
		return nil, nil, err
	}
	defer c.ops.Done()
	q := c.quorum
	n := len(q.servers)
	value := c.newValue()
	start := time.Now()
	actx, cancel := context.WithTimeout(ctx, c.opt.QuorumTimeout)
	votes := make(chan vote, n)
	c.wg.Add(n + 1)
	for i, m := range q.servers {
		go func() {
			defer c.wg.Done()
			part, nerr, err := m.acquireAs(actx, resource, value, noQueue, 0)
			votes <- vote{i, part, nerr, err}
		}()
	}
	var yes []*Reservation
	var no []vote
	var failed []*NodeError
	got := 0
	// Its own bound as well as actx's: a call may wait for a pipeline
	// that does not honour its context (a go-redis pool that redials a
	// dead server once a second).
	timeout := time.NewTimer(c.opt.QuorumTimeout)
	defer timeout.Stop()
	answered := make([]bool, n)
	// Decided when a majority said yes or failed, or when neither can
	// any more (a refusal). Until then the answers to come say which, as
	// when the noes and failures so far leave too few for a majority of
	// yeses: a server up that holds the key and a majority down is a
	// QuorumError, not a refusal. They are waited for, within the timeout.
collect:
	for len(yes) < q.majority && len(failed) < q.majority && (len(yes)+n-got >= q.majority || len(failed)+n-got >= q.majority) {
		var v vote
		var silent error // why the servers that have not answered count as failed
		select {
		case v = <-votes:
		case <-timeout.C:
			silent = c.noAnswer()
		case <-ctx.Done():
			silent = ctx.Err()
		}
		if silent != nil {
			for i, m := range q.servers {
				if !answered[i] {
					failed = append(failed, &NodeError{Addr: m.addr, Err: silent})
				}
			}
			break collect
		}
		got++
		answered[v.server] = true
		switch {
		case v.part != nil:
			yes = append(yes, v.part)
		case v.nerr != nil:
			no = append(no, v)
		default:
			failed = append(failed, &NodeError{Addr: q.servers[v.server].addr, Err: c.serverCause(ctx, v.err)})
		}
	}
	// The holding, once decided; the servers that have not answered yet
	// join it (or give back) when they do.
	holding := make(chan *Reservation, 1)
	lateDone := make(chan struct{})
	go func() {
		defer c.wg.Done()
		defer cancel()
		defer close(lateDone)
		r := <-holding
		for range n - got {
			if v := <-votes; v.part != nil {
				c.attach(r, v.server, v.part)
			}
		}
	}()
	r, nerr, err := c.decide(ctx, resource, value, start, yes, no, failed, lateDone)
	holding <- r
	if r == nil {
		for _, p := range yes {
			dropPart(p)
		}
	}
	return r, nerr, err
}

// decide turns the votes into a holding, writing its token back, or into
// the error of the acquisition.
func (c *Client) decide(ctx context.Context, resource, value string, start time.Time,
	yes []*Reservation, no []vote, failed []*NodeError, lateDone chan struct{}) (*Reservation, *NotAcquiredError, error) {
	q := c.quorum
	for _, f := range failed {
		if ctx.Err() == nil {
			c.emit(Event{Kind: EventServerFailed, Resource: resource, Key: c.Key(resource), Err: f})
		}
	}
	if len(yes) < q.majority {
		if len(failed) >= q.majority || len(no) == 0 {
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("reservation: lock %s: %w", quote(resource), ctx.Err())
			}
			return nil, nil, &QuorumError{Op: "lock", Resource: resource, Needed: q.majority, Total: len(c.quorum.servers), Got: len(yes) + len(no), Servers: failed}
		}
		e := c.refusal(resource, len(yes), no, len(failed))
		for _, p := range yes {
			e.granted = append(e.granted, slices.Index(q.servers, p.c))
		}
		for _, f := range failed {
			e.down = append(e.down, slices.IndexFunc(q.servers, func(m *Client) bool { return m.addr == f.Addr }))
		}
		return nil, e, nil
	}
	parts := make([]*Reservation, len(q.servers))
	var token int64
	for _, p := range yes {
		parts[slices.Index(q.servers, p.c)] = p
		token = max(token, p.token)
	}
	deadline := majorityDeadline(yes, q.majority)
	if err := c.writeBack(ctx, resource, token, yes, deadline); err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, nil, fmt.Errorf("reservation: lock %s: %w", quote(resource), ctx.Err())
		case !time.Now().Before(deadline):
			return nil, &NotAcquiredError{Resource: resource, Late: true}, nil
		}
		return nil, nil, err
	}
	if !time.Now().Before(deadline) {
		// The answers, or the write-back, came after the holding's
		// validity: the keys may have expired already.
		return nil, &NotAcquiredError{Resource: resource, Late: true}, nil
	}
	r := newReservation(c, resource, c.Key(resource), value, token, start)
	r.parts = parts
	r.deadline = deadline
	r.lateDone = lateDone
	if err := c.holdQuorum(r); err != nil {
		return nil, nil, err
	}
	return r, nil, nil
}

// refusal is the NotAcquiredError of an acquisition that too few servers
// granted: who holds the resource on most of the servers that refused,
// and how long until enough of them could say yes.
func (c *Client) refusal(resource string, granted int, no []vote, failed int) *NotAcquiredError {
	e := &NotAcquiredError{Resource: resource}
	holders := make(map[string]int)
	var left []time.Duration // when each refusing server could say yes
	guards := 0
	for _, v := range no {
		switch {
		case v.nerr.Guard:
			guards++
		case v.nerr.Holder != "":
			holders[v.nerr.Holder]++
		}
		if !v.nerr.NoExpiry {
			left = append(left, v.nerr.Remaining)
		}
	}
	for h, k := range holders {
		if k > holders[e.Holder] || k == holders[e.Holder] && h < e.Holder {
			e.Holder = h
		}
	}
	// Some said yes, every other server answered with a holder (no
	// guard, no failure), and none of those holders was seen on a
	// majority: the servers split between contenders.
	named := 0
	for _, k := range holders {
		named += k
	}
	e.split = granted > 0 && failed == 0 && named == len(no) && holders[e.Holder] < c.quorum.majority
	// The refusals by the guard alone would have let a majority say yes:
	// the guard is what refused.
	e.Guard = guards > 0 && len(c.quorum.servers)-(len(no)-guards) >= c.quorum.majority
	slices.Sort(left)
	if need := c.quorum.majority - granted; need >= 1 && need <= len(left) {
		e.Remaining = left[need-1]
	} else {
		e.NoExpiry = !e.Guard && len(no) > 0
	}
	return e
}

// majorityDeadline returns the majority-th latest of the parts' local
// deadlines: until then, a majority of the servers hold the key.
func majorityDeadline(parts []*Reservation, majority int) time.Time {
	var ds []time.Time
	for _, p := range parts {
		p.c.mu.Lock()
		if p.err == nil {
			ds = append(ds, p.deadline)
		}
		p.c.mu.Unlock()
	}
	if len(ds) < majority {
		return time.Time{}
	}
	slices.SortFunc(ds, func(a, b time.Time) int { return b.Compare(a) })
	return ds[majority-1]
}

// writeBack raises the fencing key of the resource to token on enough
// servers that a majority has it (those whose own token it is have it
// already): first on the others of the majority that said yes, then, if
// some of those fail, on the remaining servers. It returns an error when a
// majority cannot have it before deadline.
func (c *Client) writeBack(ctx context.Context, resource string, token int64, yes []*Reservation, deadline time.Time) error {
	q := c.quorum
	key := c.Key(resource)
	have := 0
	var first, second []*Client
	for _, m := range q.servers {
		i := slices.IndexFunc(yes, func(p *Reservation) bool { return p.c == m })
		switch {
		case i >= 0 && yes[i].token == token:
			have++
		case i >= 0:
			first = append(first, m)
		default:
			second = append(second, m)
		}
	}
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	wctx, cancel2 := context.WithTimeout(wctx, c.opt.QuorumTimeout)
	defer cancel2()
	var failed []*NodeError
	for _, wave := range [][]*Client{first, second} {
		if have >= q.majority || len(wave) == 0 {
			break
		}
		acks := make(chan *NodeError, len(wave))
		c.wg.Add(len(wave))
		for _, m := range wave {
			go func() {
				defer c.wg.Done()
				args := []any{strconv.FormatInt(token, 10), fenceLifetime(c.ttlMs)}
				if err := raiseFenceScript.Run(wctx, m.rdb, []string{companion(key, fenceSuffix)}, args...).Err(); err != nil {
					acks <- &NodeError{Addr: m.addr, Err: classify(m.addr, err)}
					return
				}
				acks <- nil
			}()
		}
		// Those not awaited end with wctx, into the buffered channel.
		for received := 0; received < len(wave) && have < q.majority; received++ {
			if f := <-acks; f != nil {
				failed = append(failed, f)
			} else {
				have++
			}
		}
	}
	if have < q.majority {
		return &QuorumError{Op: "lock (write the fencing token back)", Resource: resource, Needed: q.majority,
			Total: len(q.servers), Got: have, Servers: failed}
	}
	for _, f := range failed {
		c.emit(Event{Kind: EventServerFailed, Resource: resource, Key: key, Err: f})
	}
	return nil
}

// holdQuorum registers a new holding, links its parts to it, and starts
// the repair loop.
func (c *Client) holdQuorum(r *Reservation) error {
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		return ErrClosed
	}
	c.held[r] = struct{}{}
	if !c.quorum.repairOn {
		c.quorum.repairOn = true
		c.wg.Add(1)
		go c.repairLoop()
	}
	parts := slices.Clone(r.parts)
	c.mu.Unlock()
	for i, p := range parts {
		if p != nil {
			c.link(r, i, p)
		}
	}
	return nil
}

// link makes p, the part of r on server i, report its end to r; when it
// ended already, r hears of it now.
func (c *Client) link(r *Reservation, i int, p *Reservation) {
	p.c.mu.Lock()
	ended := p.err
	if ended == nil {
		p.parent = r
	}
	p.c.mu.Unlock()
	if ended != nil {
		c.partEnded(r, p, ended)
	}
}

// attach adds p, a part of r on server i acquired after the decision (a
// late answer, or a repair), to r; when r is no longer held, p is given
// back.
func (c *Client) attach(r *Reservation, i int, p *Reservation) {
	c.mu.Lock()
	ok := r != nil && r.err == nil && !r.releasing && r.parts[i] == nil
	if ok {
		r.parts[i] = p
	}
	c.mu.Unlock()
	if !ok {
		dropPart(p)
		return
	}
	c.link(r, i, p)
}

// dropPart ends a part that no holding needs, and deletes its key if it is
// still ours.
func dropPart(p *Reservation) {
	if p.end(ErrReleased) {
		p.c.giveBack(p.key, p.value, 0)
	}
}

// dropParts gives back the parts of r, which ended, that still hold and
// are not being released already. After Close, the members release them.
func (c *Client) dropParts(r *Reservation) {
	c.mu.Lock()
	parts := slices.Clone(r.parts)
	shut := c.ctx.Err() != nil
	c.mu.Unlock()
	if shut {
		return
	}
	for _, p := range parts {
		if p == nil {
			continue
		}
		p.c.mu.Lock()
		releasing := p.releasing
		p.c.mu.Unlock()
		if !releasing {
			dropPart(p)
		}
	}
}

// partEnded handles the end of p, a part of r: when fewer than a majority
// of the servers hold r any more, r is lost; otherwise the server is
// reported and the part is taken again when it can be.
func (c *Client) partEnded(r *Reservation, p *Reservation, cause error) {
	c.mu.Lock()
	i := slices.Index(r.parts, p)
	if i < 0 {
		c.mu.Unlock()
		return
	}
	r.parts[i] = nil
	alive := len(r.parts) - count(r.parts, nil)
	quiet := r.err != nil || r.releasing
	c.mu.Unlock()
	if quiet {
		return
	}
	addr := p.c.addr
	if alive < c.quorum.majority {
		c.lose(r, fmt.Sprintf("held on %d of %d servers, fewer than a majority, after %s: %v",
			alive, len(r.parts), addr, cause), LossQuorum)
		return
	}
	c.emit(Event{Kind: EventServerFailed, Resource: r.resource, Key: r.key, Holder: r.value, Token: r.token,
		Err: &NodeError{Addr: addr, Err: cause}})
	c.kickRepair()
}

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (c *Client) kickRepair() {
	select {
	case c.quorum.repair <- struct{}{}:
	default:
	}
}

// repairLoop takes again, on each server, the parts of held reservations
// that were lost there (or never had): at once when one is lost, then
// every heartbeat interval while some are missing. A server that fails is
// tried with one reservation per round until it answers.
func (c *Client) repairLoop() {
	defer c.wg.Done()
	timer := time.NewTimer(c.opt.HeartbeatInterval)
	defer timer.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.quorum.repair:
		case <-timer.C:
		}
		missing := make([][]*Reservation, len(c.quorum.servers))
		c.mu.Lock()
		for r := range c.held {
			if r.releasing || !closed(r.lateDone) {
				// Not while the acquisition's own tries may still
				// answer: two parts on one server would be one too many.
				continue
			}
			for i, p := range r.parts {
				if p == nil {
					missing[i] = append(missing[i], r)
				}
			}
		}
		c.mu.Unlock()
		var wg sync.WaitGroup
		for i, rs := range missing {
			if len(rs) > 0 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.retake(i, rs)
				}()
			}
		}
		wg.Wait()
		timer.Reset(c.opt.HeartbeatInterval)
	}
}

// retake takes rs again on server i, where they are not held: the first on
// its own, then, if the server answered, the others at once (its batcher
// pipelines them). A part that a force release of the quorum deleted is
// not taken again: the record it left on the server ({K}:forced, which
// holds the holder value for as long as the key had to live) refuses it.
// Else a holder that hears of the deletions one server at a time would
// take back each part before the next deletion, and hold on for ever.
func (c *Client) retake(i int, rs []*Reservation) {
	m := c.quorum.servers[i]
	one := func(r *Reservation) bool {
		ctx, cancel := context.WithTimeout(c.ctx, c.opt.QuorumTimeout)
		defer cancel()
		mode := repairPart
		if c.quorum.unguarded.Load() {
			mode = noQueue
		}
		p, _, err := m.acquireAs(ctx, r.resource, r.value, mode, 0)
		if mode == repairPart && commandRefused(err) {
			// An ACL written for one server, without the record: a
			// part lost for any reason is still worth taking back.
			c.quorum.unguarded.Store(true)
			c.reportOnce("repair-unguarded", Event{Kind: EventNoPermission, Resource: r.resource, Key: r.key, Err: fmt.Errorf(
				"%w: the force-release record %s is refused to this user on %s, so parts lost there are taken back without it, "+
					"and a force release that reaches the servers one at a time may not end a holding (allow the key: ACLRules with QuorumServers): %w",
				ErrNoPermission, companion(r.key, forcedSuffix), m.addr, err)})
			p, _, err = m.acquireAs(ctx, r.resource, r.value, noQueue, 0)
		}
		if p != nil {
			c.attach(r, i, p)
		}
		return err == nil
	}
	if !one(rs[0]) {
		return
	}
	var wg sync.WaitGroup
	for _, r := range rs[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			one(r)
		}()
	}
	wg.Wait()
}

// quorumValidity is Validity in quorum mode.
func (c *Client) quorumValidity(r *Reservation) time.Duration {
	c.mu.Lock()
	if r.err != nil {
		c.mu.Unlock()
		return 0
	}
	var parts []*Reservation
	for _, p := range r.parts {
		if p != nil {
			parts = append(parts, p)
		}
	}
	c.mu.Unlock()
	d := majorityDeadline(parts, c.quorum.majority)
	if d.IsZero() {
		return 0
	}
	return max(time.Until(d), 0)
}

// quorumRelease is Release in quorum mode: each server releases its part,
// in parallel. It returns once a majority confirmed (or ctx ended); the
// other servers' releases finish in the background.
func (c *Client) quorumRelease(ctx context.Context, r *Reservation) error {
	c.mu.Lock()
	parts := slices.Clone(r.parts)
	c.mu.Unlock()

	type result struct {
		server int
		err    error
	}
	results := make(chan result, len(parts))
	// The releases outlive ctx: a server slower than the caller's
	// patience still deletes its part, within giveBackTimeout.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), giveBackTimeout)
	var sent sync.WaitGroup
	for i, p := range parts {
		if p == nil {
			continue
		}
		sent.Add(1)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer sent.Done()
			err := p.Release(rctx)
			if err != nil {
				dropPart(p) // not sent in time: still ours, given back
			}
			results <- result{i, err}
		}()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		sent.Wait()
		cancel()
	}()
	released, answered, live := 0, 0, len(parts)-count(parts, nil)
	var failed []*NodeError
wait:
	for answered < live && released < c.quorum.majority {
		select {
		case res := <-results:
			answered++
			if res.err == nil {
				released++
			} else {
				failed = append(failed, &NodeError{Addr: c.quorum.servers[res.server].addr, Err: res.err})
			}
		case <-ctx.Done():
			failed = append(failed, &NodeError{Addr: "the servers that had not answered", Err: ctx.Err()})
			break wait
		}
	}
	if released < c.quorum.majority {
		// Fewer than a majority confirmed: the holding may still stand
		// until the keys expire there.
		qerr := &QuorumError{Op: "release", Resource: r.resource, Needed: c.quorum.majority,
			Total: len(c.quorum.servers), Got: released, Servers: failed}
		c.lose(r, "the release's outcome is unknown on a majority of the servers", LossRedisError)
		return fmt.Errorf("%w: %w", qerr, ErrLost)
	}
	for _, f := range failed {
		c.emit(Event{Kind: EventServerFailed, Resource: r.resource, Key: r.key, Holder: r.value, Token: r.token, Err: f})
	}
	if !r.end(ErrReleased) {
		return fmt.Errorf("%w: release %s: %w", ErrNotHeld, quote(r.resource), r.Err())
	}
	c.emit(Event{Kind: EventReleased, Resource: r.resource, Key: r.key, Holder: r.value, Token: r.token,
		Duration: time.Since(r.acquired)})
	return nil
}

// quorumClose is Close in quorum mode: the holdings end first (their
// holders stop before anyone else can take the resources), then the members
// release the parts, in one pipeline each, and stop.
func (c *Client) quorumClose() error {
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		return ErrClosed
	}
	c.cancel()
	var held []*Reservation
	for r := range c.held {
		if !r.releasing {
			r.releasing = true
			held = append(held, r)
		}
	}
	c.mu.Unlock()
	for _, r := range held {
		if r.end(ErrReleased) {
			c.emit(Event{Kind: EventReleased, Resource: r.resource, Key: r.key, Holder: r.value, Token: r.token,
				Duration: time.Since(r.acquired)})
		}
	}
	err := c.closeMembers()
	c.ops.Wait()
	c.wg.Wait()
	c.events.stop()
	if err != nil {
		return fmt.Errorf("reservation: close: %w", err)
	}
	return nil
}

// eachServer runs f on every member in parallel and returns their results
// and errors, by server, and how many failed. It returns once every server
// answered, or once a majority did and QuorumTimeout passed since: a server
// slower than that (down, paused, behind go-redis's retries) counts as
// failed, and its call is cancelled.
func eachServer[T any](ctx context.Context, c *Client, f func(ctx context.Context, m *Client) (T, error)) ([]T, []*NodeError, int) {
	n := len(c.quorum.servers)
	vals := make([]T, n)
	errs := make([]*NodeError, n)
	if err := c.enter(); err != nil {
		for i, m := range c.quorum.servers {
			errs[i] = &NodeError{Addr: m.addr, Err: err}
		}
		return vals, errs, n
	}
	type result struct {
		server int
		val    T
		err    error
	}
	results := make(chan result, n)
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, m := range c.quorum.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := f(cctx, m)
			results <- result{i, v, err}
		}()
	}
	go func() { // Close waits for the calls left behind
		defer c.ops.Done()
		wg.Wait()
		cancel()
	}()
	answered := make([]bool, n)
	ok := 0
	var grace <-chan time.Time
wait:
	for range n {
		select {
		case r := <-results:
			answered[r.server] = true
			vals[r.server] = r.val
			if r.err != nil {
				errs[r.server] = &NodeError{Addr: c.quorum.servers[r.server].addr, Err: r.err}
				continue
			}
			if ok++; ok == c.quorum.majority {
				t := time.NewTimer(c.opt.QuorumTimeout)
				defer t.Stop()
				grace = t.C
			}
		case <-grace:
			cancel()
			break wait
		}
	}
	failed := 0
	for i, m := range c.quorum.servers {
		if !answered[i] {
			errs[i] = &NodeError{Addr: m.addr, Err: fmt.Errorf("no answer within the quorum timeout (%v) after the majority's", c.opt.QuorumTimeout)}
		}
		if errs[i] != nil {
			failed++
		}
	}
	return vals, errs, failed
}

// quorumError returns the QuorumError of op when a majority failed, else
// nil, having reported the minority that failed.
func (c *Client) quorumError(op, resource string, errs []*NodeError, failed int) error {
	var list []*NodeError
	for _, e := range errs {
		if e != nil {
			list = append(list, e)
		}
	}
	n := len(c.quorum.servers)
	if n-failed < c.quorum.majority {
		return &QuorumError{Op: op, Resource: resource, Needed: c.quorum.majority, Total: len(c.quorum.servers), Got: n - failed, Servers: list}
	}
	for _, e := range list {
		c.emit(Event{Kind: EventServerFailed, Resource: resource, Key: c.Key(resource), Err: e})
	}
	return nil
}

// quorumPing is Ping in quorum mode: an error when a majority does not
// answer.
func (c *Client) quorumPing(ctx context.Context) error {
	_, errs, failed := eachServer(ctx, c, func(ctx context.Context, m *Client) (struct{}, error) {
		return struct{}{}, m.Ping(ctx)
	})
	return c.quorumError("ping", "", errs, failed)
}

// quorumStatus is Status in quorum mode.
func (c *Client) quorumStatus(ctx context.Context, resource string) (Info, error) {
	infos, errs, failed := eachServer(ctx, c, func(ctx context.Context, m *Client) (Info, error) {
		return m.Status(ctx, resource)
	})
	servers := make([]ServerInfo, len(infos))
	for i, in := range infos {
		servers[i] = ServerInfo{Addr: c.quorum.servers[i].addr, Info: in}
		if errs[i] != nil {
			servers[i].Info, servers[i].Err = Info{}, errs[i].Err
		}
	}
	if n := len(servers); n-failed < c.quorum.majority {
		return Info{}, c.quorumError("status of", resource, errs, failed)
	}
	return c.majorityInfo(resource, servers), nil
}

// majorityInfo sums up the servers' views of resource: see Info.Servers.
func (c *Client) majorityInfo(resource string, servers []ServerInfo) Info {
	m := c.quorum.majority
	in := Info{Resource: resource, Key: c.Key(resource), Servers: servers}
	holders := make(map[string]int)
	unset := 0
	var guards []time.Duration
	var tokens []int64
	for _, s := range servers {
		if s.Err != nil {
			continue
		}
		if s.Held {
			holders[s.Holder]++
		}
		tokens = append(tokens, s.Token)
		if s.GuardUnset {
			unset++
		} else {
			guards = append(guards, s.Guard)
		}
	}
	for h, k := range holders {
		if k >= m {
			in.Held, in.Holder = true, h
		}
	}
	if in.Held {
		var ttls []time.Duration
		forever := 0
		for _, s := range servers {
			if s.Err == nil && s.Held && s.Holder == in.Holder {
				if s.NoExpiry {
					forever++
				} else {
					ttls = append(ttls, s.TTL)
				}
			}
		}
		slices.SortFunc(ttls, func(a, b time.Duration) int { return cmp.Compare(b, a) })
		switch {
		case forever >= m:
			in.NoExpiry = true
		case m-forever <= len(ttls):
			in.TTL = ttls[m-forever-1]
		}
	}
	// The majority-th largest token: every later holding's token is
	// above it, and while a holding stands, it is the holder's.
	slices.SortFunc(tokens, func(a, b int64) int { return cmp.Compare(b, a) })
	if len(tokens) >= m {
		in.Token = tokens[m-1]
	} else if len(tokens) > 0 {
		in.Token = tokens[len(tokens)-1]
	}
	in.GuardUnset = unset > len(servers)-m
	slices.Sort(guards)
	if !in.GuardUnset && len(guards) >= m {
		in.Guard = guards[m-1]
	}
	return in
}

// quorumList is List in quorum mode: every server is read, and each
// resource held on any of them is listed with each server's view.
func (c *Client) quorumList(ctx context.Context, match string) ([]Info, error) {
	lists, errs, failed := eachServer(ctx, c, func(ctx context.Context, m *Client) ([]Info, error) {
		return m.List(ctx, match)
	})
	if failed == len(c.quorum.servers) {
		return nil, c.quorumError("list", "", errs, failed)
	}
	byResource := make(map[string][]ServerInfo)
	for i, infos := range lists {
		for _, in := range infos {
			if byResource[in.Resource] == nil {
				byResource[in.Resource] = make([]ServerInfo, len(lists))
			}
			byResource[in.Resource][i] = ServerInfo{Addr: c.quorum.servers[i].addr, Info: in}
		}
	}
	all := make([]Info, 0, len(byResource))
	for resource, servers := range byResource {
		for i := range servers {
			if servers[i].Addr == "" {
				servers[i] = ServerInfo{Addr: c.quorum.servers[i].addr, Info: Info{Resource: resource, Key: c.Key(resource)}}
				if errs[i] != nil {
					servers[i].Info, servers[i].Err = Info{}, errs[i].Err
				}
			}
		}
		all = append(all, c.majorityInfo(resource, servers))
	}
	slices.SortFunc(all, func(a, b Info) int { return strings.Compare(a.Resource, b.Resource) })
	if failed > 0 {
		var list []error
		for _, e := range errs {
			if e != nil {
				list = append(list, e)
			}
		}
		return all, fmt.Errorf("reservation: list %q: %w: %d of the %d quorum servers could not be read: %w",
			match, ErrPartial, failed, len(errs), errors.Join(list...))
	}
	return all, nil
}

// quorumForceRelease is ForceRelease in quorum mode: on every server; it
// returns the holder value deleted from most servers.
func (c *Client) quorumForceRelease(ctx context.Context, resource string) (string, error) {
	values, errs, failed := eachServer(ctx, c, func(ctx context.Context, m *Client) (string, error) {
		return m.ForceRelease(ctx, resource)
	})
	if err := c.quorumError("force release", resource, errs, failed); err != nil {
		return "", err
	}
	counts := make(map[string]int)
	best := ""
	for _, v := range values {
		if v != "" {
			counts[v]++
			if counts[v] > counts[best] {
				best = v
			}
		}
	}
	if best != "" {
		c.emit(Event{Kind: EventReleased, Resource: resource, Key: c.Key(resource), Holder: best})
	}
	return best, nil
}

// quorumPrime is PrimeRestartGuard in quorum mode: every server is
// primed. A minority that could not be is reported as events: such a
// server, new when it comes back, starts its own guard, which is safe.
func (c *Client) quorumPrime(ctx context.Context) (bool, error) {
	changed, errs, failed := eachServer(ctx, c, func(ctx context.Context, m *Client) (bool, error) {
		return m.PrimeRestartGuard(ctx)
	})
	return slices.Contains(changed, true), c.quorumError("prime restart guard", "", errs, failed)
}
