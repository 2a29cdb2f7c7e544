package reservation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// closeTimeout bounds how long Close spends releasing what is still held.
const closeTimeout = 5 * time.Second

// Client takes and holds reservations on one Redis deployment (a server,
// a Sentinel master, a Cluster). One Client holds any number of
// reservations over one go-redis client, renews them all from one heartbeat
// loop and waits for them over one notifier (one per master on a Cluster).
// It is safe for concurrent use; Close releases what it holds and stops its
// goroutines.
type Client struct {
	rdb     redis.UniversalClient
	ownsRDB bool
	opt     Options
	log     *slog.Logger
	addr    string // for messages; never holds a password; see where
	cluster bool
	single  bool // a *redis.Client: every key on one server
	// viaSentinel: that *redis.Client is go-redis's Sentinel client.
	viaSentinel bool
	ttlMs       int64
	guardMs     int64
	// valuePrefix starts every holder value of this Client: "<By>-" and
	// an id of the Client's, so that its notifier knows its own values
	// from those of other Clients with the same By.
	valuePrefix string
	// args are the scripts' arguments that never change for the Client,
	// converted to interfaces once: each conversion of a number allocates.
	args scriptArgs

	ctx    context.Context // the Client's one close signal: ends with Close (under mu)
	cancel context.CancelFunc
	wg     sync.WaitGroup // the Client's goroutines
	ops    sync.WaitGroup // acquisitions and releases under way

	renewRounds atomic.Int64        // heartbeat rounds that renewed something
	renewWidest atomic.Int64        // the most renew scripts one round sent
	batch       *batcher            // acquire and release scripts of concurrent calls
	nodeBatch   map[string]*batcher // on Cluster with WaitReplicas: one per master (under mu)
	oldBatch    []*batcher          // those replaced (under mu)
	events      *events             // delivers events to OnEvent and the log

	mu         sync.Mutex
	held       map[*Reservation]struct{}
	kick       chan struct{}             // wakes the heartbeat loop
	heartbeat  bool                      // whether the heartbeat loop runs
	notifs     map[string]*notifier      // by node ("" but on Cluster): started by the first hold or wait
	starts     map[string]*notifierStart // their starts, while under way
	nodes      map[string]*redis.Client  // Cluster: the masters' clients, by address
	masterAddr string                    // the Sentinel master last connected to
	sentinel   *redis.FailoverOptions    // with NewFailover: the notifier follows failovers

	quorum *quorum             // quorum mode (NewQuorum): the servers; nil otherwise
	member bool                // one server's Client inside a quorum Client
	heldKV map[[2]string]int   // a member's held reservations by key and value (under mu)
	turns  map[[2]string]*turn // a member's tries and give-backs under way, by key and value (under mu)

	noTracking bool // tests: wait without client tracking

	// queueRefused: the server refused the queue's commands to this user
	// (an ACL written before the queue): the Client goes on without it.
	queueRefused atomic.Bool
}

// New returns a Client for the Redis server at addr: "host:port", or a URL
// "redis://[user:password@]host:port[/db]" ("rediss://" for TLS). URLs in
// go-redis's Sentinel and Cluster forms name those deployments:
//
//   - "redis://[user:password@]sentinel:26379?master_name=NAME[&addr=sentinel2:26379...]"
//     is NewFailover's: the URL's user and password are the Sentinels'
//     (the master's come from opt, or the username and password
//     parameters);
//   - "redis://[user:password@]node:6379?addr=node2:6379[&addr=...]" is
//     NewCluster's.
//
// The password and user in opt override the URL's (the master's or the
// nodes'). It does not touch the network: an unreachable server or a wrong
// password is reported by the first call that does, or by Ping. New returns
// an error wrapping ErrInvalidOptions for a bad address or option.
func New(addr string, opt *Options) (*Client, error) {
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	if kind := topologyOf(addr); kind != "single" {
		return newFromURL(addr, kind, opt)
	}
	return newServer(addr, o, nil)
}

// newServer is New for one server; tune, when not nil, adjusts the
// go-redis options.
func newServer(addr string, o Options, tune func(*redis.Options)) (*Client, error) {
	ropt, err := parseAddr(addr)
	if err != nil {
		return nil, err
	}
	if tune != nil {
		tune(ropt)
	}
	o.credentials(&ropt.Username, &ropt.Password, &ropt.TLSConfig)
	if o.TLSConfig != nil && ropt.TLSConfig.ServerName == "" {
		ropt.TLSConfig.ServerName, _, _ = strings.Cut(ropt.Addr, ":")
	}
	// Without it go-redis bounds a call by its ReadTimeout (5 s) and not by
	// the caller's context, so a Lock or Release with a short deadline on a
	// server that does not answer would block for seconds.
	ropt.ContextTimeoutEnabled = true
	c := newClient(redis.NewClient(ropt), o)
	c.ownsRDB = true
	return c, nil
}

// NewWithClient returns a Client over an existing go-redis client: a
// *redis.Client (single server, or Sentinel through redis.NewFailoverClient),
// a *redis.ClusterClient, or any other redis.UniversalClient. Close does not
// close rdb. It returns an error wrapping ErrInvalidOptions when rdb is nil
// or an option is bad. Give a cluster client ContextTimeoutEnabled, so that
// deadlines bound each call (NewCluster does); its options that send reads
// to replicas are refused, as by NewCluster. With DisableRoutingPolicies,
// go-redis sends keyless commands (PING, and the TIME read with a Status)
// to any node, replicas included.
func NewWithClient(rdb redis.UniversalClient, opt *Options) (*Client, error) {
	if rdb == nil {
		return nil, optionError("nil redis client")
	}
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.Username != "" || o.Password != "" || o.TLSConfig != nil {
		return nil, optionError("Username, Password and TLSConfig are for New: set them on the go-redis client")
	}
	switch r := rdb.(type) {
	case *redis.ClusterClient:
		if co := r.Options(); co.ReadOnly || co.RouteByLatency || co.RouteRandomly {
			// As NewCluster; and go-redis then reads the command table
			// before every pipeline (see scriptCall.run).
			return nil, optionError("ReadOnly, RouteByLatency and RouteRandomly send reads to replicas, which may not have the last write")
		}
	case *redis.Client:
	default:
		if o.WaitReplicas > 0 {
			// WAIT must follow the script on its connection, which only
			// these let us know.
			return nil, optionError("WaitReplicas needs a *redis.Client or a *redis.ClusterClient, not a %T", rdb)
		}
	}
	return newClient(rdb, o), nil
}

func newClient(rdb redis.UniversalClient, o Options) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		rdb:   rdb,
		opt:   o,
		log:   o.Logger,
		ttlMs: o.TTL.Milliseconds(),
		// 8 hex digits of the Client's; newValue adds 16 of the call's.
		valuePrefix: o.By + "-" + newID()[:8],
		ctx:         ctx,
		cancel:      cancel,
		held:        make(map[*Reservation]struct{}),
		kick:        make(chan struct{}, 1),
		notifs:      make(map[string]*notifier),
		starts:      make(map[string]*notifierStart),
		nodes:       make(map[string]*redis.Client),
		heldKV:      make(map[[2]string]int),
		turns:       make(map[[2]string]*turn),
	}
	c.batch = newBatcher(rdb)
	c.events = newEvents(c)
	if o.RestartGuard > 0 {
		c.guardMs = max(o.RestartGuard.Milliseconds(), 1)
	}
	switch r := rdb.(type) {
	case *redis.Client:
		c.addr = r.Options().Addr
		if c.addr == "FailoverClient" {
			// go-redis's name for a Sentinel client: name the master it
			// last connected to instead.
			c.addr = "the Sentinel master"
			c.viaSentinel = true
			r.AddHook(masterHook{c})
		}
		c.single = true
	case *redis.ClusterClient:
		c.cluster = true
		c.addr = "cluster " + strings.Join(r.Options().Addrs, ",")
	default:
		c.addr = fmt.Sprintf("%T", rdb)
	}
	c.args = scriptArgs{ttl: c.ttlMs, guard: c.guardMs, fenceLifetime: fenceLifetime(c.ttlMs), publish: c.publishCommand()}
	return c
}

// scriptArgs are the arguments of a Client's scripts that never change.
type scriptArgs struct {
	ttl, guard, fenceLifetime, publish any
}

// modeArgs are the queue modes as script arguments.
var modeArgs = map[queueMode]any{noQueue: string(noQueue), tryQueue: string(tryQueue), waitQueue: string(waitQueue),
	repairPart: string(repairPart)}

// grantMode is waitQueue's argument for a waiter that takes the key when a
// release hands it over: its lease says so (see the acquire script).
const grantMode = "grant"

// batcherFor returns the batcher for the acquire script of key: the
// Client's, or on a Cluster with WaitReplicas, that of the key's master, so
// that WAIT goes to the node that took the write.
func (c *Client) batcherFor(ctx context.Context, key string) (*batcher, error) {
	cc, ok := c.rdb.(*redis.ClusterClient)
	if !ok || c.opt.WaitReplicas == 0 {
		return c.batch, nil
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	addr := node.Options().Addr
	b := c.nodeBatch[addr]
	if b == nil || b.rdb != redis.UniversalClient(node) {
		// New, or go-redis made a new client for the address (it closes
		// those of nodes gone from the slot map): the old batcher is kept
		// for Close to wait for.
		if c.nodeBatch == nil {
			c.nodeBatch = make(map[string]*batcher)
		}
		if b != nil {
			c.oldBatch = append(c.oldBatch, b)
		}
		b = newBatcher(node)
		c.nodeBatch[addr] = b
	}
	return b, nil
}

// nodeOf returns the address of the Cluster master of key, "" elsewhere
// (or when the slot map cannot be had: the cluster client finds the node
// itself then). It may load the slot map: never call it under c.mu.
func (c *Client) nodeOf(ctx context.Context, key string) string {
	cc, ok := c.rdb.(*redis.ClusterClient)
	if !ok {
		return ""
	}
	node, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return ""
	}
	addr := node.Options().Addr
	c.mu.Lock()
	c.nodes[addr] = node
	c.mu.Unlock()
	return addr
}

// masterHook records the address of the Sentinel master that a failover
// client connects to, for messages.
type masterHook struct{ c *Client }

func (h masterHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		cn, err := next(ctx, network, addr)
		if err == nil {
			h.c.mu.Lock()
			h.c.masterAddr = cn.RemoteAddr().String()
			h.c.mu.Unlock()
		}
		return cn, err
	}
}

func (h masterHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h masterHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// where returns the server's address for a message.
func (c *Client) where() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.masterAddr != "" {
		return "the Sentinel master " + c.masterAddr
	}
	return c.addr
}

// parseAddr turns "host:port" or a redis:// or rediss:// URL into go-redis
// options. Its errors never repeat the address, which may hold a password.
func parseAddr(addr string) (*redis.Options, error) {
	if addr == "" {
		return nil, optionError("empty Redis address")
	}
	if strings.Contains(addr, "://") {
		ropt, err := redis.ParseURL(addr)
		if err != nil {
			if scheme, rest, _ := strings.Cut(addr, "://"); strings.Contains(rest, "@") {
				// The parser's words may quote part of the password (read
				// as a port, or as a bad escape): say nothing of them.
				return nil, optionError("bad Redis URL: want %s://[user:password@]host:port[/db], "+
					"with the password URL-escaped (%%2F for /, %%23 for #, %%3F for ?, %%25 for %%)", scheme)
			}
			return nil, optionError("bad Redis URL: %s", redactURLError(err, addr))
		}
		return ropt, nil
	}
	_, port, ok := strings.Cut(addr, ":")
	if !ok || port == "" || strings.ContainsAny(addr, "/@ ") {
		if strings.Contains(addr, "@") {
			// It may hold a password: do not repeat it.
			return nil, optionError("bad Redis address: want host:port, or a redis:// URL for a user and password")
		}
		return nil, optionError("bad Redis address %q: want host:port or a redis:// URL", addr)
	}
	return &redis.Options{Addr: addr}, nil
}

// redactURLError returns err's text with any password of addr removed.
func redactURLError(err error, addr string) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		// Its text repeats the whole URL, escaped, where the password
		// could not be found and replaced: keep only what was wrong.
		err = uerr.Err
	}
	msg := err.Error()
	if i := strings.Index(addr, "://"); i >= 0 {
		if at := strings.LastIndex(addr, "@"); at > i {
			if _, pw, ok := strings.Cut(addr[i+3:at], ":"); ok && pw != "" {
				msg = strings.ReplaceAll(msg, pw, "xxxxx")
			}
		}
	}
	return msg
}

// Key returns the Redis key that holds resource: the prefix, then the name.
func (c *Client) Key(resource string) string {
	return c.opt.Prefix + resource
}

// Options returns the options in force, defaults filled in, without the
// password.
func (c *Client) Options() Options {
	o := c.opt
	o.Password = ""
	return o
}

// Ping checks that the server (on a Cluster, a master) answers and accepts
// the credentials. Its error names the server's address, never the
// password.
func (c *Client) Ping(ctx context.Context) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if c.quorum != nil {
		return c.quorumPing(ctx)
	}
	ping := alone(ctx, c.rdb, func(p redis.Pipeliner) *redis.StatusCmd { return p.Ping(ctx) })
	if err := ping.Err(); err != nil {
		return c.explain(fmt.Errorf("reservation: ping %s: %w", c.where(), classify(c.where(), err)))
	}
	return nil
}

// TryLock tries once to reserve resource, in one round trip. When someone
// else holds it, or the restart guard refuses, the error is a
// *NotAcquiredError matching ErrNotAcquired (and ErrRestartGuard for the
// guard), which says who holds it and for how long. While Lock callers
// queue for the resource, TryLock does not go ahead of them, even when the
// key is free: the error's Queued says how many wait (see Options.NoQueue).
// Other errors: a bad
// name (ErrInvalidResource), a closed Client (ErrClosed), refused
// credentials (*AuthError), or Redis not answering.
//
// The options of opts apply to this call only.
func (c *Client) TryLock(ctx context.Context, resource string, opts ...LockOption) (*Reservation, error) {
	cfg, err := c.lockConfig(resource, opts)
	if err != nil {
		return nil, err
	}
	var (
		r    *Reservation
		nerr *NotAcquiredError
	)
	if cfg.with != nil {
		set, serr := c.setOf(resource, cfg)
		if serr != nil {
			return nil, serr
		}
		mode := noQueue
		if c.fair() {
			mode = tryQueue
		}
		r, nerr, err = c.acquireSet(ctx, set, c.newValue(), mode)
	} else {
		r, nerr, err = c.acquire(ctx, resource, cfg.limit)
	}
	if err != nil {
		return nil, c.explain(err)
	}
	if nerr != nil {
		if nerr.Guard {
			c.reportGuard(nerr)
		}
		if c.wants(EventRefused) { // c.Key costs an allocation
			c.emit(Event{Kind: EventRefused, Resource: nerr.Resource, Key: c.Key(nerr.Resource), Holder: nerr.Holder,
				Duration: nerr.Remaining, Err: nerr})
		}
		return nil, nerr
	}
	for _, m := range r.all() {
		c.emit(Event{Kind: EventAcquired, Resource: m.resource, Key: m.key, Holder: m.value, Token: m.token})
	}
	return r, nil
}

// LockOption changes one TryLock or Lock call: Limit makes it take one
// of the permits of a semaphore, With several resources at once.
type LockOption interface {
	applyLock(*lockConfig)
}

// lockConfig is what the LockOptions of a call set.
type lockConfig struct {
	limit int      // 0: a reservation; n: one of the n permits of a semaphore
	with  []string // the other resources of a set
}

// MaxLimit is the largest number of permits of a semaphore.
const MaxLimit = 1000

// Limit makes the call reserve one of n permits of the resource, which up
// to n holders may then hold at once: a semaphore ("at most 3 exports at a
// time across the fleet"). Each permit is a reservation like any other:
// renewed by the heartbeat, lost and reported like one, with a fencing
// token (one sequence for all the permits of the resource), and freed
// within the TTL when its holder dies. Waiters are served first come,
// first served, as for a reservation.
//
// Every caller of one semaphore must give the same n. While permits of
// one limit are held, a call with another limit is refused as if every
// permit were held (its error's Holder is "semaphore:<n>" with the limit in
// use), and so is a plain reservation of the name, by this library or by a
// Node worker: the name is then a semaphore for everyone until its last
// permit is released and a TTL has passed. n is from 1 to MaxLimit; the
// semaphore's acquire reads each of its n permits, so keep it small.
// Semaphores are not available in quorum mode.
func Limit(n int) LockOption { return limitOption(n) }

type limitOption int

func (l limitOption) applyLock(cfg *lockConfig) { cfg.limit = int(l) }

// lockConfig checks a call's resource, options, and that the Client is
// open, and answers what the options set.
func (c *Client) lockConfig(resource string, opts []LockOption) (lockConfig, error) {
	var cfg lockConfig
	limited := false
	for _, o := range opts {
		if o == nil {
			continue
		}
		if _, ok := o.(limitOption); ok {
			limited = true
		}
		o.applyLock(&cfg)
	}
	if limited && (cfg.limit < 1 || cfg.limit > MaxLimit) {
		return cfg, optionError("Limit(%d): a semaphore has 1 to %d permits", cfg.limit, MaxLimit)
	}
	if cfg.limit > 0 && c.quorum != nil {
		return cfg, optionError("Limit(%d): semaphores are not available in quorum mode", cfg.limit)
	}
	return cfg, c.check(resource)
}

// check validates a call's resource and that the Client is open.
func (c *Client) check(resource string) error {
	if err := checkResource(resource); err != nil {
		return err
	}
	return c.checkOpen()
}

func (c *Client) checkOpen() error {
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	return nil
}

// enter counts a call that may change keys, so that Close waits for it
// before it closes the pool; it returns ErrClosed after Close. The caller
// calls c.ops.Done when done.
func (c *Client) enter() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	c.ops.Add(1)
	return nil
}

// acquire runs the acquire script once. It returns the Reservation when
// acquired, else a *NotAcquiredError that says why; err is for a call that
// failed.
func (c *Client) acquire(ctx context.Context, resource string, limit int) (*Reservation, *NotAcquiredError, error) {
	if c.quorum != nil {
		return c.quorumAcquire(ctx, resource)
	}
	mode := noQueue
	if c.fair() {
		mode = tryQueue
	}
	return c.acquireAs(ctx, resource, c.newValue(), mode, limit)
}

// newValue returns a new holder value: unique to one TryLock, or to one
// Lock call for its whole wait.
func (c *Client) newValue() string { return c.valuePrefix + newID()[:16] }

// giveBackFor gives back key held with value after an acquisition in mode.
// A waiter (waitQueue) tries again with the same value, so its give-back
// must be done before: in the background, it could delete what the next
// attempt acquires.
func (c *Client) giveBackFor(mode queueMode, key, value string, limit int) {
	if mode == waitQueue {
		c.giveBackNow(key, value, limit)
		return
	}
	c.giveBack(key, value, limit)
}

// queueMode is how an acquisition treats the server's queue of waiters.
type queueMode string

const (
	// noQueue: the key alone decides (Options.NoQueue, quorum members).
	noQueue queueMode = ""
	// tryQueue: refused while anyone queues (TryLock).
	tryQueue queueMode = "try"
	// waitQueue: a place in the queue is taken, or kept and its lease
	// renewed, and the key is taken only at the head (Lock).
	waitQueue queueMode = "wait"
	// repairPart: as noQueue, for a quorum's holder taking again its part
	// on a server where it lost it, refused when a force release of the
	// quorum deleted it there (see Client.retake).
	repairPart queueMode = "repair"
)

// fair reports whether this Client's acquisitions go through the server's
// queue of waiters.
func (c *Client) fair() bool {
	return !c.opt.NoQueue && c.quorum == nil && !c.member && !c.queueRefused.Load()
}

// acquireAs is acquire with the holder value given (quorum mode takes one
// value on every server; a waiter keeps one for its whole wait), in a mode
// of the queue, of a reservation (limit 0) or a semaphore's permit.
func (c *Client) acquireAs(ctx context.Context, resource, value string, mode queueMode, limit int) (*Reservation, *NotAcquiredError, error) {
	queue := mode == tryQueue || mode == waitQueue
	if queue && c.queueRefused.Load() {
		mode = noQueue
	}
	if err := c.enter(); err != nil {
		return nil, nil, err
	}
	defer c.ops.Done()
	key := c.Key(resource)
	defer c.takeTurn(key, value)()
	var names [4]string
	companionsOf(key, names[:], fenceSuffix, queueSuffix, leaseSuffix, turnSuffix)
	keys := []string{key, names[0], guardKeyFor(key, c.cluster), names[1], names[2]}
	args := []any{value, c.args.ttl, c.args.guard, c.args.fenceLifetime, modeArgs[mode], names[3], c.args.publish}
	if mode == waitQueue && limit == 0 && c.opt.WaitReplicas == 0 {
		// The waiter takes the key when another Client's release hands
		// it over (see notifier.turnTold): not a permit, and not with
		// WaitReplicas, whose WAIT it must see acknowledged first.
		args[4] = grantMode
	}
	if limit > 0 {
		keys = append(keys, permitKeys(key, limit)...)
		args = append(args, limit)
	}
	if mode == repairPart {
		keys = append(keys, companion(key, forcedSuffix))
	}
	sent := time.Now()
	call := &scriptCall{script: acquireScript, keys: keys, args: args,
		late: func(cmd *redis.Cmd) {
			// Abandoned by a context that ended first: now that the
			// server answered, give back what it gave us, if anything.
			if res, err := cmd.Slice(); err != nil || len(res) > 0 && res[0] == int64(1) || mode == waitQueue {
				c.giveBack(key, value, limit)
			}
		}}
	if limit == 0 {
		call.watch = keys[:1:1] // a permit's key is known from the reply only
	}
	c.waitAfter(call)
	b, err := c.batcherFor(ctx, key)
	if err != nil {
		return nil, nil, c.redisError("lock", resource, err)
	}
	cmd, left := b.run(ctx, call)
	reply, err := cmd.Slice()
	if cc, ok := c.rdb.(*redis.ClusterClient); ok && err != nil && b != c.batch {
		// Sent to a master's own client, whose errors (MOVED, a node
		// gone) the cluster client does not see: have it read the slot
		// map again, for the next attempt.
		cc.ReloadState(c.ctx)
	}
	if queue && commandRefused(err) {
		// Maybe an ACL written before the queue: the script stops at the
		// queue's first command, before any write of its own. Try
		// without the queue: if that works, go on without it from now
		// on, and say so once.
		r, nerr, nqErr := c.acquireAs(ctx, resource, value, noQueue, limit)
		if nqErr == nil || !commandRefused(nqErr) {
			c.queueRefused.Store(true)
			c.reportOnce("queue", Event{Kind: EventNoPermission, Resource: resource, Key: key, Err: fmt.Errorf(
				"%w: the queue of waiters is refused to this user, so waiters are not served first come, first served (Lock and TryLock go on as with Options.NoQueue): %w",
				ErrNoPermission, err)})
		}
		return r, nerr, nqErr
	}
	if err != nil {
		// The script may have run before the error (a reply lost): the
		// key may be ours, for nothing. Give it back, unless the call was
		// left running when ctx ended: then its late hook does, once the
		// server answered.
		if !left && mode != waitQueue { // a waiter's next attempt finds out, or it leaves
			c.giveBack(key, value, limit)
		}
		err = c.redisError("lock", resource, err)
		if ctx.Err() == nil {
			c.emit(Event{Kind: EventRedisError, Resource: resource, Key: key, Err: err})
		}
		return nil, nil, err
	}
	res, err := parseAcquire(reply)
	if err != nil {
		return nil, nil, fmt.Errorf("reservation: lock %s on %s: %w", quote(resource), c.where(), err)
	}
	if res.acquired {
		if err := call.replicated(); err != nil {
			// Held on the master only: a failover now would lose it
			// without a word. Not ours, then.
			c.giveBackFor(mode, key, value, limit)
			err = fmt.Errorf("reservation: lock %s on %s: %w", quote(resource), c.where(), err)
			c.emit(Event{Kind: EventRedisError, Resource: resource, Key: key, Err: err})
			return nil, nil, err
		}
	}
	if !res.acquired {
		call.armWaiters()
		return nil, res.notAcquired(resource, mode, limit), nil
	}
	held := key
	if limit > 0 {
		if res.permit < 1 || res.permit > limit {
			c.giveBackFor(mode, key, value, limit)
			return nil, nil, fmt.Errorf("reservation: lock %s on %s: unexpected permit %d of %d", quote(resource), c.where(), res.permit, limit)
		}
		held = permitKey(key, res.permit)
	}
	r := newReservation(c, resource, held, value, res.token, sent)
	r.limit = limit
	if limit == 0 { // a permit's key was not read
		r.watched = call.heldRead(value)
	}
	return c.keep(ctx, r, mode)
}

// keep holds r, just acquired in mode, unless it came too late to be of use
// or the Client closed meanwhile: then it is given back.
func (c *Client) keep(ctx context.Context, r *Reservation, mode queueMode) (*Reservation, *NotAcquiredError, error) {
	key := c.Key(r.resource) // a permit's semaphore
	if !time.Now().Before(r.deadline) {
		// The answer came back after the local deadline (a link or a
		// scheduler slower than the TTL): the key may have expired and
		// been taken by someone else before we knew it was ours. It is no
		// use: give it back if it is still ours.
		c.giveBackFor(mode, key, r.value, r.limit)
		r.end(lostError("the acquire reply came back after the local deadline"))
		return nil, &NotAcquiredError{Resource: r.resource, Late: true}, nil
	}
	r.node = c.nodeOf(ctx, key)
	if err := c.hold(r); err != nil {
		// Closed while acquiring: give it back at once.
		c.giveBack(r.key, r.value, 0)
		r.end(ErrReleased)
		return nil, nil, err
	}
	return r, nil, nil
}

// acquireResult is the acquire script's reply.
type acquireResult struct {
	acquired  bool
	token     int64
	holder    string
	remaining time.Duration
	noExpiry  bool
	guard     bool
	place     int   // the caller's place in the queue (wait), or its length (try)
	leased    int64 // the end of the lease the attempt wrote, with grants (ms; 0: none)
	permit    int   // the semaphore's permit taken (from 1)
}

// notAcquired is the error of a refusal of resource, in mode, with limit.
func (res acquireResult) notAcquired(resource string, mode queueMode, limit int) *NotAcquiredError {
	e := &NotAcquiredError{Resource: resource, Holder: res.holder, Remaining: res.remaining,
		NoExpiry: res.noExpiry, Guard: res.guard, place: res.place, limit: limit, leased: res.leased}
	if mode == tryQueue {
		e.Queued = res.place
	}
	return e
}

// commandRefused reports whether err is a refusal of a command by the
// user's ACL (Redis 7.0 says "NOPERM" outside scripts, and inside them
// that the user "can't run this command").
func commandRefused(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "NOPERM") || strings.Contains(err.Error(), "can't run this command"))
}

// parseAcquire reads the acquire script's reply: {1, token} when acquired,
// {0, pttl, guarded, holder, place, leased} otherwise.
func parseAcquire(reply []any) (acquireResult, error) {
	var res acquireResult
	num := func(i int) (int64, bool) {
		if i >= len(reply) {
			return 0, false
		}
		n, ok := reply[i].(int64)
		return n, ok
	}
	flag, ok1 := num(0)
	n, ok2 := num(1)
	if !ok1 || !ok2 {
		return res, fmt.Errorf("unexpected reply %v", reply)
	}
	if flag == 1 {
		res.acquired, res.token = true, n
		if p, ok := num(2); ok {
			res.permit = int(p)
		}
		return res, nil
	}
	switch {
	case n >= 0:
		res.remaining = time.Duration(n) * time.Millisecond
	case n == -1:
		res.noExpiry = true
	}
	g, _ := num(2)
	res.guard = g == 1
	if len(reply) > 3 {
		res.holder, _ = reply[3].(string)
	}
	place, _ := num(4)
	res.place = int(place)
	res.leased, _ = num(5)
	return res, nil
}

// reportGuard reports that the restart guard holds acquisitions back, once
// per guard period.
func (c *Client) reportGuard(e *NotAcquiredError) {
	if c.events.firstUntil("restart-guard", time.Now().Add(e.Remaining)) {
		c.emit(Event{Kind: EventRestartGuard, Resource: e.Resource, Key: c.Key(e.Resource), Duration: e.Remaining,
			Err: fmt.Errorf("%w: the server lost its data or is new", ErrRestartGuard)})
	}
}

// redisError wraps an error of Redis for operation op on resource.
func (c *Client) redisError(op, resource string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("reservation: %s %s: %w", op, quote(resource), err)
	}
	return fmt.Errorf("reservation: %s %s on %s: %w", op, quote(resource), c.where(), classify(c.where(), err))
}

// quote returns resource quoted for a message, shortened when long.
func quote(resource string) string {
	if len(resource) > 64 {
		return fmt.Sprintf("%q...", resource[:64])
	}
	return fmt.Sprintf("%q", resource)
}

// newID returns 96 random bits in hex, unique to one holding.
func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Close releases every reservation still held, within a few seconds and
// whatever the state of any caller's context, ends every wait with
// ErrClosed, stops the Client's goroutines and, when New made it, closes the
// connection pool. Calls after Close return ErrClosed, and so does a second
// Close. When Redis could not confirm every release, the error says how
// many keys may remain held: they expire within the TTL. A server that
// stops answering while the Client sets up its notifier's connections (at
// its first wait or holding) holds Close up to 5 s more: go-redis cannot
// be closed while it dials, so Close waits for the set-up to time out.
func (c *Client) Close() error {
	if c.quorum != nil {
		return c.quorumClose()
	}
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		return ErrClosed
	}
	c.cancel() // ends every wait, the heartbeat and the notifier
	held := make([]*Reservation, 0, len(c.held))
	for r := range c.held {
		if r.releasing {
			continue // its Release is under way: Close waits for it (ops)
		}
		r.releasing = true // the heartbeat leaves them alone from now on
		held = append(held, r)
	}
	notifs := make([]*notifier, 0, len(c.notifs))
	for _, n := range c.notifs {
		notifs = append(notifs, n)
	}
	c.mu.Unlock()

	err := c.releaseAll(held)
	// Calls under way may still acquire (and then give back, as the
	// Client is closed) or release: the pool must outlive them.
	c.ops.Wait()
	for _, n := range notifs {
		n.stopReceiving() // so that its reading goroutine returns
	}
	c.wg.Wait()
	c.batch.useTracking(nil)
	c.batch.wait() // its round trips on a notifier's connection
	for _, n := range notifs {
		n.close() // nothing uses its connections any more
	}
	c.batch.wait()
	c.mu.Lock()
	batchers := c.oldBatch
	for _, b := range c.nodeBatch {
		batchers = append(batchers, b)
	}
	c.mu.Unlock()
	for _, b := range batchers {
		b.wait()
	}
	if c.ownsRDB {
		err = errors.Join(err, c.rdb.Close())
	}
	c.events.stop()
	return err
}

// releaseAll releases reservations in one pipeline, with a fresh context.
func (c *Client) releaseAll(held []*Reservation) error {
	if len(held) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	calls := make([]*scriptCall, len(held))
	for i, r := range held {
		calls[i] = c.releaseCall(r.key, r.value, 0)
	}
	_, err := evalPipelined(ctx, c.rdb, calls)
	unknown := 0
	for i, r := range held {
		n, rerr := calls[i].cmd.Int()
		switch {
		case rerr != nil:
			// The outcome is unknown: the holder is done with it all
			// the same, and the key expires within a TTL at worst.
			unknown++
			r.end(ErrReleased)
		case n == 0:
			c.lose(r, "close found the key gone or someone else's", LossForeign)
		default: // released (n == noticeRefused: without its notice)
			if r.end(ErrReleased) {
				c.emit(Event{Kind: EventReleased, Resource: r.resource, Key: r.key, Holder: r.value,
					Token: r.token, Duration: time.Since(r.acquired)})
			}
		}
	}
	if err != nil {
		err = fmt.Errorf("reservation: close: %d of %d keys may remain held until they expire (within %v) on %s: %w",
			unknown, len(held), c.opt.TTL, c.where(), c.explain(classify(c.where(), err)))
		c.emit(Event{Kind: EventRedisError, Err: err})
		return err
	}
	return nil
}
