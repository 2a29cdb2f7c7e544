package reservation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// invalidateChannel carries client-tracking invalidations redirected to a
// subscriber (RESP2).
const invalidateChannel = "__redis__:invalidate"

// healthInterval is how long the subscriber may stay silent before it is
// pinged; silent for as long again, its connection is dropped and made anew.
// So a connection that went silent (a blackholed link, a NAT that forgot
// it) is replaced within two intervals, 30 s; one that was closed (reset,
// FIN, CLIENT KILL) at once. Meanwhile waiters wake on their timers and
// holders learn of a loss at their next renewal. The interval is a trade:
// a client that holds reservations and waits for none sends one ping per
// interval on top of its heartbeat.
const healthInterval = 15 * time.Second

// notifierStartTimeout bounds the start of the notifier.
const notifierStartTimeout = 5 * time.Second

// notifier carries every push of the server to one Client: the waiters of
// a key are woken when it changes, and its holder checks at once whether it
// still holds it. It uses two connections of its own:
//
//   - the subscriber, always reading: client-tracking invalidations are
//     redirected to it (RESP2 REDIRECT), and without tracking it receives
//     release notices and keyspace notifications;
//   - the tracking connection (CLIENT TRACKING ON REDIRECT ... NOLOOP): the
//     keys it reads are watched. Waiters read their key's PTTL on it, and
//     the heartbeat renews on it, with a last read of each key after the
//     renew script: NOLOOP keeps our own renewals from waking us, and the
//     read watches the key again. On one server, acquisitions and releases
//     run on it too when it is free (see batcher), each acquisition
//     followed by a read that watches what it acquired.
//
// On a Cluster each master has a notifier of its own, as tracking and
// keyspace events are per node. Where tracking is not available (a Ring,
// servers before Redis 6, a refused CLIENT TRACKING), the subscriber
// subscribes to the release channel (sharded on a Cluster) and keyspace
// channel of every watched key instead.
type notifier struct {
	c        *Client
	node     string        // its Cluster master's address ("" elsewhere)
	base     *redis.Client // that master's client (nil elsewhere)
	tracking bool
	db       int

	psClient    *redis.Client // the subscriber's own client
	trackClient *redis.Client // the tracking connection
	ps          *redis.PubSub
	psID        atomic.Int64 // client id of the subscriber connection
	trackConns  atomic.Int64 // connections the tracking client opened

	rereads atomic.Int64 // held keys read to watch them: at the start, and at each push that concerns them

	kick     chan struct{}  // wakes the watch loop
	switched chan struct{}  // Sentinel named a new master: the watch loop retries at once
	watches  sync.WaitGroup // watchClosing's goroutines
	dups     sync.Map       // the sockets they watch (net.Conn): closed by close

	mu         sync.Mutex // never held across network I/O
	keys       map[string]*keyWatch
	verify     map[string]bool      // held keys to read again
	rearm      bool                 // re-enable tracking and read every held key
	subscribed map[string][]string  // keys subscribed to, without tracking: their channels
	turns      map[string]time.Time // keys whose turn channel is subscribed to: when last waited for
	turnKeys   map[string]string    // those turn channels, and the key of each
	// gen counts the times the tracking connection's watches may have
	// been lost (a rearm asked for, or done): a key read there to watch it
	// is watched only if gen did not change since, and no rearm is asked
	// for or under way (rearming).
	gen      uint64
	rearming bool
	// notices counts the notices of any key: a read that watches a new
	// holding is trusted only if none came between it and the holding
	// (a foreign change of the key meanwhile ended its watch, and its
	// notice found no holder to read it again).
	notices uint64
	early   map[string]earlyTold        // turns told to values of this Client not yet joined, and when
	arms    map[string][]chan armResult // waiters' watches to set
	denied  bool                        // the server refused our subscriptions

	servers serverConns // with NewFailover: where its connections are
}

// keyWatch is the state of one watched key: held by this Client, waited
// for, or both.
type keyWatch struct {
	queue  []*waiter     // FIFO: the head contends, the others wait
	wake   chan struct{} // closed at every notice for the key, then replaced
	armed  bool          // a waiter's read watches it since the last notice
	holder *Reservation  // this Client's reservation of the key, or nil
	// semaphore reports that the key is a semaphore's (see watchSemaphore).
	semaphore bool
	// offer, while releases of this Client that offered to hand the key
	// over to its waiters are under way (offers of them), closes when the
	// last answered (see notifier.grantees).
	offer  chan struct{}
	offers int
}

// waiter is one Lock call's place in a key's queue: the Client's own queue,
// and, with the server's queue (see Options.NoQueue), its place there under
// its holder value, and the channel that gets a signal when the server
// tells it its turn came or it should look (buffered: a signal that comes
// while the waiter is busy, in an attempt, waits for it).
type waiter struct {
	value string
	turn  chan struct{}
	told  bool // the server told its turn since the waiter last looked
	// grant, when not nil, takes a reservation of the key that a release
	// of this Client handed to the waiter (see Client.offer): a Lock of
	// a reservation (not a permit, not a set) in the server's queue.
	grant chan grant
}

// notifierStart is a start of the notifier under way.
type notifierStart struct {
	done chan struct{}
	n    *notifier
	err  error
}

// notifierIfStarted returns the notifier of node ("" but on a Cluster),
// or nil.
func (c *Client) notifierIfStarted(node string) *notifier {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notifs[node]
}

// notifierFor returns the notifier that watches key (that of its master,
// on a Cluster), starting it on first use. The start (a few round trips)
// runs in the background with its own bounded context, never under c.mu,
// which the heartbeat needs; callers wait for it as long as their ctx lets
// them.
func (c *Client) notifierFor(ctx context.Context, key string) (*notifier, error) {
	node := c.nodeOf(ctx, key)
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if n := c.notifs[node]; n != nil {
		c.mu.Unlock()
		return n, nil
	}
	st := c.startNotifierLocked(node)
	c.mu.Unlock()
	select {
	case <-st.done:
		return st.n, st.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, ErrClosed
	}
}

// startNotifierLocked starts the notifier of node unless a start is under
// way, and returns the start. c.mu is held.
func (c *Client) startNotifierLocked(node string) *notifierStart {
	st := c.starts[node]
	if st == nil {
		st = &notifierStart{done: make(chan struct{})}
		c.starts[node] = st
		c.wg.Add(1)
		go c.startNotifier(st, node, c.nodes[node])
	}
	return st
}

// startNotifier starts the notifier of node for st, and publishes it,
// watching every reservation of node already held.
func (c *Client) startNotifier(st *notifierStart, node string, base *redis.Client) {
	defer c.wg.Done()
	defer close(st.done)
	// Not ended by Close: go-redis goes on dialing in the background for
	// a call whose context ended, and closing a client while it dials is a
	// data race in go-redis. Close waits for the start instead.
	ctx, cancel := context.WithTimeout(context.Background(), notifierStartTimeout)
	defer cancel()
	n := &notifier{
		c:          c,
		node:       node,
		base:       base,
		keys:       make(map[string]*keyWatch),
		verify:     make(map[string]bool),
		subscribed: make(map[string][]string),
		turns:      make(map[string]time.Time),
		turnKeys:   make(map[string]string),
		early:      make(map[string]earlyTold),
		arms:       make(map[string][]chan armResult),
		kick:       make(chan struct{}, 1),
		switched:   make(chan struct{}, 1),
	}
	err := n.start(ctx)
	c.mu.Lock()
	defer func() {
		c.mu.Unlock()
		if err != nil && c.ctx.Err() == nil {
			// The heartbeat tries again while anything is held.
			c.emit(Event{Kind: EventRedisError, Err: fmt.Errorf(
				"reservation: start the notifier on %s (until it starts, waiters wake on their timers and holders learn of a loss at their next renewal): %w",
				n.where(), classify(n.where(), err))})
		}
	}()
	delete(c.starts, node)
	switch {
	case err != nil:
		st.err = err
	case c.ctx.Err() != nil:
		n.close()
		st.err = ErrClosed
	default:
		c.notifs[node], st.n = n, n
		if node == "" && c.single && !c.viaSentinel && n.tracking && c.opt.WaitReplicas == 0 {
			// One server only. Through Sentinel, the notifier's
			// connections learn of a new master on their own, maybe
			// later than go-redis's pool: an acquisition sent meanwhile
			// would land on the old master. With WaitReplicas, the WAIT
			// after the scripts would hold up the connection that the
			// heartbeat and the waiters' reads use.
			c.batch.useTracking(n)
		}
		for r := range c.held {
			if r.node == node {
				n.watchHeld(r)
			}
		}
		c.wg.Add(1)
		go n.watchLoop()
		if c.sentinel != nil {
			c.wg.Add(1)
			go n.followSentinel(c.sentinel)
		}
		if n.ps != nil {
			c.wg.Add(1)
			go n.receive()
		}
	}
}

// where returns the notifier's server for a message.
func (n *notifier) where() string {
	if n.node != "" {
		return "cluster node " + n.node
	}
	return n.c.where()
}

// start opens the subscriber. Client tracking needs a *redis.Client (one
// server, a Sentinel master, or a Cluster master's own client) that answers
// CLIENT TRACKING (Redis 6 and later); elsewhere the notifier subscribes to
// release notices and keyspace notifications.
func (n *notifier) start(ctx context.Context) error {
	base, ok := n.c.rdb.(*redis.Client)
	if n.base != nil {
		base, ok = n.base, true
	}
	if ok {
		n.db = base.Options().DB
	}
	if ok && !n.c.noTracking {
		err := n.startTracking(ctx, base)
		var rerr redis.Error
		switch {
		case err == nil:
			return nil
		case subscribeRefused(err):
			// The fallback subscribes too, and would be refused the same
			// way: say it all once, and subscribe to nothing.
			n.denied, n.ps = true, nil
			n.c.reportOnce("subscribe", Event{Kind: EventNoPermission, Err: fmt.Errorf(
				"%w: SUBSCRIBE refused, so there is neither client tracking nor any notice: waiters wake on their timers (the holder's TTL, RetryInterval, and in the queue the renewal of their place every HeartbeatInterval) and holders learn of a loss at their next renewal: %w",
				ErrNoPermission, err)})
			return nil
		case errors.As(err, &rerr):
			n.c.emit(Event{Kind: EventTrackingUnavailable, Err: classify(n.c.where(), err)})
		default:
			return err
		}
	}
	if _, ring := n.c.rdb.(*redis.Ring); ring {
		// A Ring subscribes on the shard of its first channel only: no
		// push source fits keys spread over shards. Waiters wake on
		// their timers, holders learn of a loss at the next renewal.
		return nil
	}
	if ok && n.c.sentinel != nil {
		// A subscriber of our own, which leaves a replaced master.
		opt := *base.Options()
		opt.PoolSize, opt.MinIdleConns, opt.MaxIdleConns = 1, 0, 1
		opt.Dialer = n.servers.dial("subscriber", opt.Dialer)
		opt.ClientName = "reservation-subscriber"
		n.psClient = redis.NewClient(&opt)
		n.ps = n.psClient.Subscribe(ctx)
		return nil
	}
	if n.base != nil {
		// A Cluster master's: its keyspace events and sharded release
		// notices are heard on that node only.
		n.ps = n.base.Subscribe(ctx)
		return nil
	}
	n.ps = n.c.rdb.Subscribe(ctx)
	return nil
}

// subscribeRefused reports whether err is the user's ACL refusing the
// SUBSCRIBE command itself, whatever the channel.
func subscribeRefused(err error) bool {
	return commandRefused(err) && strings.Contains(err.Error(), "'subscribe' command")
}

// startTracking opens the subscriber and the tracking connection, clones
// of base's options with one connection each.
func (n *notifier) startTracking(ctx context.Context, base *redis.Client) error {
	opt := *base.Options()
	opt.Protocol = 2 // invalidations arrive as messages of invalidateChannel
	opt.ClientSideCache, opt.ClientSideCacheConfig = nil, nil
	opt.PushNotificationProcessor, opt.Limiter = nil, nil
	// Our own: the base's is shared, and go-redis writes to it while it
	// connects (a data race with the copy NewClient makes). Maintenance
	// notifications are RESP3 pushes, which these connections never get.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	// Options() returns normalized values that NewClient would normalize
	// again; set the ones that matter outright.
	opt.MaxRetries = 1
	opt.ReadTimeout, opt.WriteTimeout = 3*time.Second, 3*time.Second
	opt.PoolSize, opt.MinIdleConns, opt.MaxIdleConns = 1, 0, 1
	opt.PipelinePoolSize = -1 // pipelines on the one connection too
	// Without these, go-redis keeps a pool of its own for pipelines.
	opt.PipelineReadBufferSize, opt.PipelineWriteBufferSize = 0, 0
	opt.ConnMaxIdleTime, opt.ConnMaxLifetime = -1, 0
	onConnect := opt.OnConnect
	psOpt, trackOpt := opt, opt
	psOpt.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if onConnect != nil {
			if err := onConnect(ctx, cn); err != nil {
				return err
			}
		}
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			return err
		}
		if n.psID.Swap(id) != 0 {
			// A new subscriber: the tracking connection still redirects
			// to the old one. go-redis subscribes it to every channel it
			// knows, but in one SSUBSCRIBE for the sharded ones, which a
			// Cluster node refuses (CROSSSLOT) when they span slots: the
			// watch loop subscribes to them again, one by one.
			n.mu.Lock()
			clear(n.turns)
			clear(n.turnKeys)
			clear(n.subscribed)
			n.mu.Unlock()
			n.askRearm()
		}
		return nil
	}
	if n.c.sentinel != nil {
		psOpt.Dialer = n.servers.dial("subscriber", opt.Dialer)
		trackOpt.Dialer = n.servers.dial("tracking", opt.Dialer)
	}
	trackOpt.Dialer = watchClosing(trackOpt.Dialer, &n.watches, &n.dups, n.askRearm)
	trackOpt.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		if onConnect != nil {
			if err := onConnect(ctx, cn); err != nil {
				return err
			}
		}
		// A new tracking connection watches nothing: turn tracking on,
		// and have every key watched again.
		if err := n.trackOn(ctx, cn); err != nil {
			return err
		}
		if n.trackConns.Add(1) > 1 {
			n.askRearm()
		}
		return nil
	}
	// Named, so that an operator's CLIENT LIST tells them apart.
	psOpt.ClientName, trackOpt.ClientName = "reservation-subscriber", "reservation-tracking"
	n.psClient = redis.NewClient(&psOpt)
	n.trackClient = redis.NewClient(&trackOpt)
	n.ps = n.psClient.Subscribe(ctx, invalidateChannel)
	// The first receive is the confirmation: it connects the subscriber,
	// whose id the tracking connection needs.
	if _, err := n.ps.ReceiveTimeout(ctx, notifierStartTimeout); err != nil {
		n.close()
		return err
	}
	if err := n.trackClient.Ping(ctx).Err(); err != nil {
		n.close()
		return err
	}
	n.tracking = true
	return nil
}

// trackOn turns tracking on for cn, redirected to the subscriber.
func (n *notifier) trackOn(ctx context.Context, cn *redis.Conn) error {
	id := n.psID.Load()
	if id == 0 {
		return errors.New("reservation: tracking: subscriber not connected")
	}
	if n.c.sentinel == nil {
		return n.trackOnConn(ctx, cn, id)
	}
	// Connected first (a Conn of the pool dials at its first command), to
	// know where it is.
	if err := cn.Ping(ctx).Err(); err != nil {
		return err
	}
	if !n.servers.sameServer() {
		// One of them is still on a master that Sentinel replaced: the
		// id would name some other client of this server. The older one
		// dials again (the other asked Sentinel later); a new subscriber
		// connection has tracking turned on again.
		n.servers.closeOlder()
		return errors.New("reservation: tracking: the subscriber is on another server")
	}
	return n.trackOnConn(ctx, cn, id)
}

// trackOnConn turns tracking on for cn, redirected to client id.
func (n *notifier) trackOnConn(ctx context.Context, cn *redis.Conn, id int64) error {
	_, err := cn.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "CLIENT", "TRACKING", "OFF")
		p.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", id, "NOLOOP", "OPTIN")
		return nil
	})
	return err
}

// close ends the notifier's connections; its goroutines then return.
func (n *notifier) close() {
	n.stopReceiving()
	if n.psClient != nil {
		n.psClient.Close()
	}
	if n.trackClient != nil {
		n.trackClient.Close()
	}
	// go-redis does not close the socket of a connection whose set-up
	// failed (it only drops it): close every duplicate still watched.
	n.dups.Range(func(k, _ any) bool {
		k.(net.Conn).Close()
		return true
	})
	n.watches.Wait()
}

// stopReceiving closes the subscription, so that receive returns.
func (n *notifier) stopReceiving() {
	if n.ps != nil {
		n.ps.Close()
	}
}

// masterSwitched moves the notifier's connections to the master that
// Sentinel just named, and has every key watched again there.
func (n *notifier) masterSwitched(addr string) {
	n.c.mu.Lock()
	n.c.masterAddr = addr
	n.c.mu.Unlock()
	n.servers.closeAll()
	n.askRearm()
	select {
	case n.switched <- struct{}{}:
	default:
	}
}

// channels returns the channels to subscribe to for key without tracking:
// its release notices and its keyspace events; for a semaphore, only the
// release notices of its permits (their keyspace events come at every
// renewal). n.mu is held.
func (n *notifier) channels(key string) []string {
	chans := []string{companion(key, channelSuffix)}
	if kw := n.keys[key]; kw != nil && kw.semaphore {
		return chans
	}
	return append(chans, "__keyspace@"+strconv.Itoa(n.db)+"__:"+key)
}

// watchSemaphore has the waiters of key, a semaphore's, woken by its
// release notices (subscribed to, with or without tracking).
func (n *notifier) watchSemaphore(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if kw := n.watch(key); !kw.semaphore {
		kw.semaphore = true
		n.kickLocked()
	}
}

// watch returns the keyWatch of key, made on first use. n.mu is held.
func (n *notifier) watch(key string) *keyWatch {
	kw := n.keys[key]
	if kw == nil {
		kw = &keyWatch{wake: make(chan struct{})}
		n.keys[key] = kw
		if !n.tracking {
			n.kickLocked()
		}
	}
	return kw
}

// forget drops the keyWatch of key when nothing needs it any more. n.mu is
// held.
func (n *notifier) forget(key string, kw *keyWatch) {
	if len(kw.queue) == 0 && kw.holder == nil {
		delete(n.keys, key)
		if !n.tracking {
			n.kickLocked()
		}
	}
}

// watchHeld watches r's key for changes by others, and reads it once to
// start (which also catches a change since the acquisition). c.mu is held.
func (n *notifier) watchHeld(r *Reservation) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.watch(r.key).holder = r
	w := r.watched
	r.watched = nil
	if n.stillWatches(w) {
		// Read on the tracking connection right after it was acquired,
		// as its own value (see scriptCall.onTracking): watched already.
		n.rereads.Add(1)
		return
	}
	n.verify[r.key] = true
	n.kickLocked()
}

// stillWatches reports whether w, the read that followed an acquisition
// on the tracking connection (nil: none did), still watches its key: no
// notice came since (it may have ended the watch unheard), and tracking
// was not turned on again since, nor is about to be (that may drop it).
// n.mu is held.
func (n *notifier) stillWatches(w *trackedRead) bool {
	return w != nil && w.n == n && w.gen == n.gen && w.notices == n.notices && !n.rearm && !n.rearming
}

// armed reports whether key is watched for its waiters since its last
// notice.
func (n *notifier) armed(key string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	kw := n.keys[key]
	return kw != nil && kw.armed
}

// wakeOf returns the wake channel of key's waiters, nil without any.
func (n *notifier) wakeOf(key string) chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if kw := n.keys[key]; kw != nil {
		return kw.wake
	}
	return nil
}

// armedByRead marks key as watched for its waiters after a read of it on
// the tracking connection at generation gen, sent when their wake channel
// was wake: only if no notice of the key came since (the channel is the
// same) and tracking was not lost meanwhile.
func (n *notifier) armedByRead(key string, wake chan struct{}, gen uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if kw := n.keys[key]; kw != nil && wake != nil && kw.wake == wake && gen == n.gen && !n.rearm && !n.rearming {
		kw.armed = true
	}
}

// settled reports whether no rearm is asked for or under way: the batcher
// leaves the tracking connection alone meanwhile.
func (n *notifier) settled() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.rearm && !n.rearming
}

// snapshot returns the tracking generation and the count of notices (see
// gen and notices).
func (n *notifier) snapshot() (gen, notices uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gen, n.notices
}

// unwatchHeld stops watching r's key for r. c.mu is held.
func (n *notifier) unwatchHeld(r *Reservation) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if kw := n.keys[r.key]; kw != nil && kw.holder == r {
		kw.holder = nil
		n.forget(r.key, kw)
	}
}

// join queues a waiter on key. Without tracking, the watch loop subscribes
// to the key's channels; the confirmation wakes the waiter, and it tries
// again, so no release between its last attempt and then is missed.
func (n *notifier) join(key string) *waiter {
	w := &waiter{}
	n.mu.Lock()
	defer n.mu.Unlock()
	kw := n.watch(key)
	kw.queue = append(kw.queue, w)
	return w
}

// joinServerQueue is join for a waiter with a place in the server's queue
// under value: the watch loop subscribes to the key's turn channel, and the
// confirmation of a new subscription signals every such waiter of the key,
// so that a turn told before it is not missed. A turn told to value while
// the waiter was between its first attempt and here is signalled at once.
// With grants, the waiter takes reservations handed to it (see
// notifier.handTo).
func (n *notifier) joinServerQueue(key, value string, grants bool) *waiter {
	w := &waiter{value: value, turn: make(chan struct{}, 1)}
	if grants {
		w.grant = make(chan grant, 1)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	kw := n.watch(key)
	kw.queue = append(kw.queue, w)
	if e, ok := n.early[value]; ok {
		delete(n.early, value)
		if e.grant.token != 0 && w.grant != nil {
			w.grant <- e.grant
		} else {
			w.told = true
			w.turn <- struct{}{}
		}
	}
	if _, ok := n.turns[key]; !ok && !n.denied {
		n.kickLocked()
	}
	return w
}

// turnState returns, for waiter w of key in the server's queue: the channel
// that closes at the next notice of the key, the one that gets a signal
// when its turn is told, and whether the key is watched.
func (n *notifier) turnState(key string, w *waiter) (wake, turn <-chan struct{}, armed bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	kw := n.keys[key]
	return kw.wake, w.turn, kw.armed || !n.tracking
}

// signalTurns signals the waiters of key whose holder value is value (their
// turn came), or all of them when value is "" (they should look), and
// reports whether it found any. n.mu is held.
func (n *notifier) signalTurns(key, value string) bool {
	found := false
	if kw := n.keys[key]; kw != nil {
		for _, w := range kw.queue {
			if w.turn != nil && (value == "" || w.value == value) {
				found = true
				w.told = w.told || value != ""
				select {
				case w.turn <- struct{}{}:
				default: // a signal waits already
				}
			}
		}
	}
	return found
}

// grantees returns the holder values of key's waiters that take
// reservations handed to them, in the order they joined, at most
// maxGrantees, for a release that offers to hand the key over to them.
// Until it calls answered, once the release answered and what it handed
// over was handed (see handTo), they wait for it rather than try (see
// offerOf): a try meanwhile would cost a round trip, and the handoff would
// wait for it.
func (n *notifier) grantees(key string) (values []string, answered func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	kw := n.keys[key]
	if kw == nil {
		return nil, nil
	}
	for _, w := range kw.queue {
		if w.grant != nil && len(values) < maxGrantees {
			values = append(values, w.value)
		}
	}
	if len(values) == 0 {
		return nil, nil
	}
	if kw.offers == 0 {
		kw.offer = make(chan struct{})
	}
	kw.offers++
	offer := kw.offer
	return values, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if kw.offers--; kw.offers == 0 {
			close(offer)
			kw.offer = nil
		}
	}
}

// offerOf returns the channel that closes when the releases under way that
// offered key to its waiters answered, or nil when none is.
func (n *notifier) offerOf(key string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if kw := n.keys[key]; kw != nil && kw.offers > 0 {
		return kw.offer
	}
	return nil
}

// maxGrantees bounds the values a release offers to hand the key to: the
// server's queue serves the Client's waiters in the order they joined, so
// the head is one of the first few when it is one of them.
const maxGrantees = 8

// handTo hands g, a reservation of key given to value by a release, to the
// waiter of key with value. A waiter that left meanwhile has nothing to
// do: its give-back deletes the key, or the server ran it first and the
// release found it out of the queue (see Client.queueLock).
func (n *notifier) handTo(key, value string, g grant) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.handToLocked(key, value, g)
}

// handToLocked is handTo under n.mu; it reports whether it found the
// waiter, which takes grants. One that takes none (see Client.acquireAs)
// is not handed anything.
func (n *notifier) handToLocked(key, value string, g grant) bool {
	kw := n.keys[key]
	if kw == nil {
		return false
	}
	for _, w := range kw.queue {
		if w.grant != nil && w.value == value {
			select {
			case w.grant <- g:
			default: // one came already: the key was handed once
			}
			return true
		}
	}
	return false
}

// toldTurn reports whether the server told w its turn since the last call
// (rather than only a new subscription, or a reconnection, asking it to
// look), and forgets it.
func (n *notifier) toldTurn(w *waiter) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	told := w.told
	w.told = false
	return told
}

// earlyTurn is how long a turn told to a value of this Client that has no
// waiter yet is kept for it: the waiter joins once its first attempt
// answered, a round trip after the server made it the head.
const earlyTurn = 2 * time.Second

// earlyTold is a turn told to a value of this Client with no waiter yet
// (see turnTold): when, and the grant (its token 0: a turn).
type earlyTold struct {
	at    time.Time
	grant grant
}

// turnTold handles a message of key's turn channel: the waiter with value
// is now the head of the server's queue, or, with a payload of
// "<value>\t<token>\t<lease>", another Client's release handed it the key
// with token, until lease, the end of its lease (see Client.offer). A
// value of this Client with no waiter yet is kept for a while, for the
// waiter that is about to join.
func (n *notifier) turnTold(key, payload string) {
	value, g := parseGrant(payload)
	n.mu.Lock()
	defer n.mu.Unlock()
	// A grant for a waiter that takes none is a turn: its next attempt
	// finds the key its own.
	if g.token != 0 && n.handToLocked(key, value, g) {
		return
	}
	if n.signalTurns(key, value) || value == "" || !strings.HasPrefix(value, n.c.valuePrefix) {
		return
	}
	now := time.Now()
	for v, e := range n.early {
		if now.Sub(e.at) > earlyTurn {
			delete(n.early, v)
		}
	}
	n.early[value] = earlyTold{at: now, grant: g}
}

// parseGrant reads a turn channel's payload: the holder value, and for a
// grant ("<value>\t<token>\t<lease>") the grant, else one with token 0. A
// holder value never ends with tabs and digits: it ends with its random
// id.
func parseGrant(payload string) (string, grant) {
	rest, leaseText, ok1 := cutLast(payload, '\t')
	value, tokenText, ok2 := cutLast(rest, '\t')
	if !ok1 || !ok2 {
		return payload, grant{}
	}
	token, err1 := strconv.ParseInt(tokenText, 10, 64)
	lease, err2 := strconv.ParseInt(leaseText, 10, 64)
	if err1 != nil || err2 != nil || token <= 0 || lease <= 0 {
		return payload, grant{}
	}
	return value, grant{token: token, lease: lease}
}

// cutLast slices s around the last sep.
func cutLast(s string, sep byte) (before, after string, found bool) {
	if i := strings.LastIndexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// keyOfTurn returns the key whose turn channel is channel.
func (n *notifier) keyOfTurn(channel string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	key, ok := n.turnKeys[channel]
	return key, ok
}

// turnLinger is how long the turn channel of a key stays subscribed to
// after its last waiter left: a worker that releases and waits again keeps
// it, rather than unsubscribe and subscribe at every turn.
const turnLinger = 5 * time.Second

// turnChanges returns the turn channels to subscribe to (keys waited for in
// the server's queue) and to unsubscribe from (not waited for since
// turnLinger), and records them as done. n.mu is held.
func (n *notifier) turnChanges(now time.Time) (sub, unsub []string) {
	if n.denied {
		return nil, nil
	}
	for key, kw := range n.keys {
		for _, w := range kw.queue {
			if w.turn != nil {
				if _, ok := n.turns[key]; !ok {
					ch := companion(key, turnSuffix)
					n.turnKeys[ch] = key
					sub = append(sub, ch)
				}
				n.turns[key] = now
				break
			}
		}
	}
	for key, last := range n.turns {
		if now.Sub(last) >= turnLinger {
			ch := companion(key, turnSuffix)
			unsub = append(unsub, ch)
			delete(n.turns, key)
			delete(n.turnKeys, ch)
		}
	}
	return sub, unsub
}

// leave takes w off key's queue. When w gave up without acquiring, the next
// waiter is woken to contend in its place (without the server's queue: with
// it, the server tells the next waiter).
func (n *notifier) leave(key string, w *waiter, acquired bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	kw := n.keys[key]
	if kw == nil {
		return
	}
	head := slices.IndexFunc(kw.queue, func(q *waiter) bool { return q.turn == nil })
	for i, q := range kw.queue {
		if q == w {
			kw.queue = append(kw.queue[:i], kw.queue[i+1:]...)
			if i == head && !acquired && w.turn == nil {
				kw.signal()
			}
			break
		}
	}
	n.forget(key, kw)
}

// state returns, for waiter w of key: the channel that closes at the next
// notice, whether w is at the head of the queue, and whether the key is
// watched.
func (n *notifier) state(key string, w *waiter) (<-chan struct{}, bool, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	kw := n.keys[key]
	// The Client's own queue: the first waiter that is not in the
	// server's queue (a set's waiter always is) is the head.
	i := slices.IndexFunc(kw.queue, func(q *waiter) bool { return q.turn == nil })
	return kw.wake, i >= 0 && kw.queue[i] == w, kw.armed || !n.tracking
}

// arm makes the tracking connection watch key for a waiter, and returns its
// PTTL at that moment (-2 when it is gone, -1 when it has no expiry). The
// watch loop reads the keys of every arm asked for meanwhile in one
// pipeline, with the notifier's context: the waiters' round trips do not
// queue one by one before the heartbeat's renewals on the one tracking
// connection, and a waiter whose context ends does not tear the shared
// connection down in the middle of a read.
func (n *notifier) arm(ctx context.Context, key string) (time.Duration, error) {
	pttls, err := n.armKeys(ctx, key)
	if err != nil {
		return 0, err
	}
	return pttls[0], nil
}

// armKeys is arm for several keys (a set's), read in one pipeline.
func (n *notifier) armKeys(ctx context.Context, keys ...string) ([]time.Duration, error) {
	chs := make([]chan armResult, len(keys))
	n.mu.Lock()
	for i, key := range keys {
		chs[i] = make(chan armResult, 1)
		if kw := n.keys[key]; kw != nil {
			kw.armed = true
		}
		n.arms[key] = append(n.arms[key], chs[i])
	}
	n.kickLocked()
	n.mu.Unlock()
	pttls := make([]time.Duration, len(keys))
	for i, ch := range chs {
		select {
		case res := <-ch:
			if res.err != nil {
				// The connection may have been replaced, and its
				// watches lost: every key is watched again at its
				// next attempt.
				n.mu.Lock()
				for _, kw := range n.keys {
					kw.armed = false
				}
				n.mu.Unlock()
				return nil, res.err
			}
			pttls[i] = res.pttl
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-n.c.ctx.Done():
			return nil, ErrClosed
		}
	}
	return pttls, nil
}

// armResult is what arm waits for.
type armResult struct {
	pttl time.Duration
	err  error
}

// armAll reads the PTTL of every key in arms on the tracking connection,
// each after CLIENT CACHING YES, in one pipeline, and answers each arm.
func (n *notifier) armAll(ctx context.Context, arms map[string][]chan armResult) error {
	if len(arms) == 0 {
		return nil
	}
	keys := make([]string, 0, len(arms))
	cmds := make([]*redis.DurationCmd, 0, len(arms))
	_, err := n.trackClient.Pipelined(ctx, func(p redis.Pipeliner) error {
		for key := range arms {
			p.Do(ctx, "CLIENT", "CACHING", "YES") // OPTIN: watch what the next command reads
			keys = append(keys, key)
			cmds = append(cmds, p.PTTL(ctx, key))
		}
		return nil
	})
	for i, key := range keys {
		res := armResult{pttl: cmds[i].Val(), err: err}
		for _, ch := range arms[key] {
			ch <- res
		}
	}
	return err
}

// waited reports whether waiters of this Client queue for key.
func (n *notifier) waited(key string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	kw := n.keys[key]
	return kw != nil && len(kw.queue) > 0
}

// released tells the local waiters of key that it was (or may have been)
// just released here, without waiting for the notice to come back from
// the server.
func (n *notifier) released(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if kw := n.keys[key]; kw != nil {
		// A release sent on the tracking connection (see batcher) leaves
		// the key unwatched there (NOLOOP drops it without a notice): its
		// waiters read it again to watch it.
		kw.armed = false
		kw.signal()
	}
}

// notify handles a notice that key changed: its waiters wake, and its
// holder reads it again.
func (n *notifier) notify(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notices++
	if sem, ok := permitOf(key); ok {
		// A permit changed: the semaphore's waiters look.
		if kw := n.keys[sem]; kw != nil && len(kw.queue) > 0 {
			kw.armed = false
			kw.signal()
		}
	}
	if kw := n.keys[key]; kw != nil {
		kw.armed = false
		kw.signal()
		if kw.holder != nil {
			n.verify[key] = true
			n.kickLocked()
		}
	}
}

// askRearm has the watch loop turn tracking on again and read every held
// key, and wakes every waiter: after a reconnection or a flush, anything
// may have happened.
func (n *notifier) askRearm() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rearm = true
	n.gen++
	for key, kw := range n.keys {
		kw.armed = false
		kw.signal()
		n.signalTurns(key, "")
	}
	n.kickLocked()
}

func (n *notifier) kickLocked() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (kw *keyWatch) signal() {
	close(kw.wake)
	kw.wake = make(chan struct{})
}

// watchLoop does the notifier's network work that must not wait under a
// lock: reading held keys again when they changed, turning tracking on
// again after a reconnection, and, without tracking, the subscriptions.
func (n *notifier) watchLoop() {
	defer n.c.wg.Done()
	ctx := n.c.ctx
	var failures int
	n.checkEviction(ctx)
	evictionCheck := time.NewTicker(evictionCheckInterval)
	defer evictionCheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-evictionCheck.C:
			n.checkEviction(ctx)
			// and drop the turn channels no longer waited for
		case <-n.kick:
		}
		for {
			err := n.watchOnce(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				failures = 0
				break
			}
			failures++
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(5*time.Millisecond<<min(failures, 8), time.Second)):
			case <-n.switched:
				// Sentinel named a new master: what failed against the
				// old one may work at once.
				failures = 0
			}
		}
	}
}

// watchOnce does what the watch loop was asked for. On an error, what
// failed is asked for again.
func (n *notifier) watchOnce(ctx context.Context) error {
	n.mu.Lock()
	rearm := n.rearm
	n.rearm = false
	n.rearming = rearm
	verify := make(map[string]*Reservation, len(n.verify))
	for key := range n.verify {
		if kw := n.keys[key]; kw != nil && kw.holder != nil {
			verify[key] = kw.holder
		}
	}
	if rearm {
		for key, kw := range n.keys {
			if kw.holder != nil {
				verify[key] = kw.holder
			}
		}
	}
	clear(n.verify)
	arms := n.arms
	n.arms = make(map[string][]chan armResult)
	var sub, unsub []string
	if !n.denied {
		for key, kw := range n.keys {
			// With tracking, only a semaphore's waiters need its
			// release notices (see wait.tracked).
			if n.subscribed[key] == nil && (!n.tracking || kw.semaphore) {
				chans := n.channels(key)
				sub = append(sub, chans...)
				n.subscribed[key] = chans
			}
		}
		for key, chans := range n.subscribed {
			if n.keys[key] == nil {
				unsub = append(unsub, chans...)
				delete(n.subscribed, key)
			}
		}
	}
	if n.ps != nil {
		tsub, tunsub := n.turnChanges(time.Now())
		sub, unsub = append(sub, tsub...), append(unsub, tunsub...)
	}
	n.mu.Unlock()

	err := n.subscribe(ctx, sub, unsub)
	if rearm && n.tracking {
		if rerr := n.retrack(ctx); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	if verr := n.verifyHeld(ctx, verify); verr != nil {
		err = errors.Join(err, verr)
	}
	// Each arm gets its answer, error or not: its waiter retries.
	_ = n.armAll(ctx, arms)
	n.mu.Lock()
	if err != nil {
		n.rearm = n.rearm || rearm
		for key := range verify {
			n.verify[key] = true
		}
	}
	if rearm {
		// A key read to watch it while tracking was turned on again may
		// have been dropped by it: its holder has it read again.
		n.rearming = false
		n.gen++
	}
	n.mu.Unlock()
	return err
}

// subscribe changes the subscriptions, without tracking. On a Cluster the
// release channels are sharded: one SSUBSCRIBE per channel, as Redis takes
// the channels of one slot only in each.
func (n *notifier) subscribe(ctx context.Context, sub, unsub []string) error {
	if n.ps == nil {
		return nil
	}
	var err error
	for _, batch := range n.shardSplit(sub) {
		if batch.sharded {
			err = errors.Join(err, n.ps.SSubscribe(ctx, batch.channels...))
		} else if len(batch.channels) > 0 {
			err = errors.Join(err, n.ps.Subscribe(ctx, batch.channels...))
		}
	}
	for _, batch := range n.shardSplit(unsub) {
		if batch.sharded {
			err = errors.Join(err, n.ps.SUnsubscribe(ctx, batch.channels...))
		} else if len(batch.channels) > 0 {
			err = errors.Join(err, n.ps.Unsubscribe(ctx, batch.channels...))
		}
	}
	return err
}

// channelBatch is channels of one subscribing command.
type channelBatch struct {
	sharded  bool
	channels []string
}

// shardSplit splits channels into one batch of plain channels and, on a
// Cluster, one batch for each release channel, which is sharded.
func (n *notifier) shardSplit(channels []string) []channelBatch {
	if !n.c.cluster {
		return []channelBatch{{channels: channels}}
	}
	plain := channelBatch{}
	var out []channelBatch
	for _, ch := range channels {
		if strings.HasPrefix(ch, "__keyspace@") {
			plain.channels = append(plain.channels, ch)
		} else {
			out = append(out, channelBatch{sharded: true, channels: []string{ch}})
		}
	}
	return append(out, plain)
}

// retrack turns tracking on again on the tracking connection, redirected
// to the subscriber of now.
func (n *notifier) retrack(ctx context.Context) error {
	cn := n.trackClient.Conn()
	defer cn.Close()
	return n.trackOn(ctx, cn)
}

// verifyHeld reads held keys again, on the tracking connection (which
// watches them again), and declares lost those that are not ours any more.
func (n *notifier) verifyHeld(ctx context.Context, held map[string]*Reservation) error {
	if len(held) == 0 {
		return nil
	}
	n.rereads.Add(int64(len(held)))
	keys := make([]string, 0, len(held))
	for key := range held {
		keys = append(keys, key)
	}
	values, err := n.read(ctx, keys)
	if commandRefused(err) {
		// Until the user may read its keys there, a holder learns of a
		// foreign change at its next renewal: say so, once.
		n.c.reportOnce("watch-read", Event{Kind: EventNoPermission, Key: keys[0], Err: fmt.Errorf(
			"%w: holders cannot watch their keys (a read on the tracking connection was refused), so they learn of a foreign change at their next renewal: %w",
			ErrNoPermission, err)})
	}
	if err != nil {
		return err
	}
	for i, key := range keys {
		r := held[key]
		v := values[i]
		n.c.mu.Lock()
		releasing := r.releasing // its own release deleted it
		n.c.mu.Unlock()
		if v != r.value && !releasing {
			n.c.lose(r, "its key was deleted or overwritten by another client", LossForeign)
		}
	}
	return nil
}

// read returns the string values of keys ("" for a missing key or one of
// another type). With tracking, it reads them on the tracking connection,
// watched (watchReads); else with GETs on the Client's connections.
func (n *notifier) read(ctx context.Context, keys []string) ([]string, error) {
	values := make([]string, len(keys))
	var gets []*redis.StringCmd
	rdb := redis.Cmdable(n.c.rdb)
	if n.tracking {
		rdb = n.trackClient
	}
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if n.tracking {
			_, gets = watchReads(ctx, p, keys) // the pipeline's error covers CLIENT CACHING
		} else {
			gets = make([]*redis.StringCmd, len(keys))
			for i, key := range keys {
				gets[i] = p.Get(ctx, key)
			}
		}
		return nil
	})
	if err != nil && !isPerKey(err) {
		return nil, err
	}
	for i := range keys {
		v, gerr := gets[i].Result()
		if gerr != nil && !isPerKey(gerr) {
			return nil, gerr
		}
		values[i] = v
	}
	return values, nil
}

// watchReads adds to p, on a tracking connection (OPTIN), a read of each
// key that watches it: CLIENT CACHING YES, then GET, for each, since the
// former covers the next command only. GET rather than one MGET: it is
// what the worker's ACL rule allows (ACLRules: MGET is not in it), and
// a Cluster refuses MGET across slots.
func watchReads(ctx context.Context, p redis.Pipeliner, keys []string) (caching []*redis.Cmd, gets []*redis.StringCmd) {
	caching, gets = make([]*redis.Cmd, len(keys)), make([]*redis.StringCmd, len(keys))
	for i, key := range keys {
		caching[i] = p.Do(ctx, "CLIENT", "CACHING", "YES")
		gets[i] = p.Get(ctx, key)
	}
	return caching, gets
}

// rewatch returns what follows a renew script of keys on the tracking
// connection: a read that watches them again (OPTIN), whose reply lands in
// *exists.
func rewatch(ctx context.Context, keys []string, exists **redis.IntCmd) func(redis.Pipeliner) {
	return func(p redis.Pipeliner) {
		p.Do(ctx, "CLIENT", "CACHING", "YES")
		*exists = p.Exists(ctx, keys...)
	}
}

// verifyLater has the watch loop read the keys of rs again.
func (n *notifier) verifyLater(rs []*Reservation) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range rs {
		if kw := n.keys[r.key]; kw != nil && kw.holder == r {
			n.verify[r.key] = true
		}
	}
	n.kickLocked()
}

// isWrongType reports whether err is Redis's answer to a read of a key of
// another type.
func isWrongType(err error) bool {
	rerr, ok := redisErr(err)
	return ok && strings.HasPrefix(rerr.Error(), "WRONGTYPE")
}

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
		if err != nil && errors.Is(classify(n.c.where(), err), ErrNoPermission) {
			// The user may not subscribe (a Redis 7 ACL user gets no
			// channel by default): say so once, and stop asking.
			// Redis refuses a whole SUBSCRIBE when one of its channels is
			// not allowed, and go-redis sends every channel it knows in
			// one SUBSCRIBE when it reconnects: forget all but the
			// invalidations, and subscribe to those again, so that an ACL
			// that allows them (and not the release or turn channels)
			// keeps tracking.
			n.mu.Lock()
			n.denied = true
			var others []string
			for key := range n.turns {
				others = append(others, companion(key, turnSuffix))
			}
			clear(n.turns)
			clear(n.turnKeys)
			for _, chans := range n.subscribed {
				others = append(others, chans...)
			}
			clear(n.subscribed)
			n.mu.Unlock()
			_ = n.subscribe(ctx, nil, others)
			if n.tracking {
				_ = n.ps.Subscribe(ctx, invalidateChannel)
			}
			n.c.reportOnce("subscribe", Event{Kind: EventNoPermission,
				Err: fmt.Errorf("%w: subscriptions refused, so waiters wake on their timers (the holder's TTL, RetryInterval, and in the queue the renewal of their place every HeartbeatInterval) and holders learn of a loss at their next renewal: %w", ErrNoPermission, err)})
			n.askRearm()
			continue
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
			// of a FLUSHALL: either way, every key is looked at again.
			pinged = false
			n.askRearm()
			if failures++; failures > 1 {
				if !sleep(ctx, min(5*time.Millisecond<<min(failures, 8), time.Second)) {
					return
				}
			}
			continue
		}
		failures, pinged = 0, false
		n.dispatch(msg)
	}
}

// dispatch handles one message of the subscriber.
func (n *notifier) dispatch(msg any) {
	switch m := msg.(type) {
	case *redis.Subscription:
		if m.Kind != "subscribe" && m.Kind != "ssubscribe" {
			return
		}
		if m.Channel == invalidateChannel {
			n.askRearm() // a new connection: watches must be set again
		} else if key, ok := n.keyOfTurn(m.Channel); ok {
			n.turnTold(key, "") // a turn told before may have been missed
		} else if key, ok := n.keyOfChannel(m.Channel, ""); ok {
			n.notify(key)
		}
	case *redis.Message:
		switch {
		case m.Channel == invalidateChannel:
			if len(m.PayloadSlice) == 0 && m.Payload == "" {
				// A flush (of any database: Redis 7.0 tells every
				// tracking client the same): read everything again.
				n.askRearm()
			}
			for _, key := range m.PayloadSlice {
				n.notify(key)
			}
		default:
			if key, ok := n.keyOfTurn(m.Channel); ok {
				n.turnTold(key, m.Payload)
			} else if key, ok := n.keyOfChannel(m.Channel, m.Payload); ok {
				n.notify(key)
			}
		}
	}
}

// keyOfChannel returns the key that a release-notice or keyspace channel is
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

// sleep waits d, and reports false when ctx ended first.
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

// evictionCheckInterval is how often the server's eviction policy is read
// again: it can change at run time (CONFIG SET).
const evictionCheckInterval = time.Minute

// evictionCheckTimeout bounds each eviction check.
const evictionCheckTimeout = 2 * time.Second

// checkEviction warns, once per setting, when the notifier's server (on a
// Cluster, its master) may evict reservation keys: maxmemory set with a
// policy other than noeviction (the volatile-* policies evict ours too, as
// every reservation key has a TTL). It reads INFO, which users without
// CONFIG may still run.
func (n *notifier) checkEviction(ctx context.Context) {
	c := n.c
	var rdb redis.Cmdable = n.base
	if n.base == nil {
		if _, cluster := c.rdb.(*redis.ClusterClient); cluster {
			return // no master known (see scriptCall.run)
		}
		rdb = c.rdb
	}
	// Bounded: the watch loop waits for it.
	ctx, cancel := context.WithTimeout(ctx, evictionCheckTimeout)
	defer cancel()
	info, err := rdb.Info(ctx, "memory").Result()
	if commandRefused(err) {
		c.reportOnce("eviction-check", Event{Kind: EventNoPermission, Err: fmt.Errorf(
			"%w: INFO refused, so the Client cannot tell whether %s may evict reservation keys (eviction-risk events): %w",
			ErrNoPermission, n.where(), err)})
	}
	if err != nil {
		return
	}
	var maxmemory, policy string
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "maxmemory:"); ok {
			maxmemory = v
		} else if v, ok := strings.CutPrefix(line, "maxmemory_policy:"); ok {
			policy = v
		}
	}
	setting := ""
	if maxmemory != "" && maxmemory != "0" && policy != "" && policy != "noeviction" {
		setting = "maxmemory " + maxmemory + " with maxmemory-policy " + policy
	}
	if c.events.changed("eviction "+n.node, setting) && setting != "" {
		c.emit(Event{Kind: EventEvictionRisk, Err: fmt.Errorf(
			"reservation: %s may evict reservation keys, and another client can then take a resource that is still held: set maxmemory-policy noeviction on %s", setting, n.where())})
	}
}
