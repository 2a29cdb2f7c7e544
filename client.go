package reservation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// closeTimeout bounds how long Close spends releasing what is still held.
const closeTimeout = 5 * time.Second

// Client takes and holds reservations on one Redis deployment. One Client
// holds any number of reservations over one connection pool, renews them all
// from one heartbeat loop and waits for them over one subscription. It is
// safe for concurrent use; Close releases what it holds and stops its
// goroutines.
type Client struct {
	rdb     redis.UniversalClient
	ownsRDB bool
	opt     Options
	log     *slog.Logger
	addr    string // for messages; never holds a password
	cluster bool
	single  bool // a *redis.Client: every key on one server
	ttlMs   int64
	guardMs int64

	ctx     context.Context // ends with Close
	cancel  context.CancelFunc
	closing chan struct{}
	wg      sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	held       map[*Reservation]struct{}
	kick       chan struct{}  // wakes the heartbeat loop
	heartbeat  bool           // whether the heartbeat loop runs
	notif      *notifier      // started by the first wait
	notifStart *notifierStart // its start, while under way
	batch      *batcher       // acquire and release scripts of concurrent calls

	noTracking bool // tests: wait without client tracking
}

// New returns a Client for the Redis server at addr: "host:port", or a URL
// "redis://[user:password@]host:port[/db]" ("rediss://" for TLS). The
// password and user in opt override the URL's. It does not touch the
// network: an unreachable server or a wrong password is reported by the
// first call that does, or by Ping. New returns an error wrapping
// ErrInvalidOptions for a bad address or option.
func New(addr string, opt *Options) (*Client, error) {
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	ropt, err := parseAddr(addr)
	if err != nil {
		return nil, err
	}
	if o.Username != "" {
		ropt.Username = o.Username
	}
	if o.Password != "" {
		ropt.Password = o.Password
	}
	if o.TLSConfig != nil {
		ropt.TLSConfig = o.TLSConfig.Clone()
		if ropt.TLSConfig.ServerName == "" {
			ropt.TLSConfig.ServerName, _, _ = strings.Cut(ropt.Addr, ":")
		}
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
// or an option is bad.
func NewWithClient(rdb redis.UniversalClient, opt *Options) (*Client, error) {
	if rdb == nil {
		return nil, optionError("nil redis client")
	}
	o, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	return newClient(rdb, o), nil
}

func newClient(rdb redis.UniversalClient, o Options) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		rdb:     rdb,
		opt:     o,
		log:     o.Logger,
		ttlMs:   o.TTL.Milliseconds(),
		ctx:     ctx,
		cancel:  cancel,
		closing: make(chan struct{}),
		held:    make(map[*Reservation]struct{}),
		kick:    make(chan struct{}, 1),
	}
	c.batch = newBatcher(ctx, rdb)
	if o.RestartGuard > 0 {
		c.guardMs = max(o.RestartGuard.Milliseconds(), 1)
	}
	switch r := rdb.(type) {
	case *redis.Client:
		c.addr = r.Options().Addr
		c.single = true
	case *redis.ClusterClient:
		c.cluster = true
		c.addr = "cluster " + strings.Join(r.Options().Addrs, ",")
	default:
		c.addr = fmt.Sprintf("%T", rdb)
	}
	return c
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

// Options returns the options in force, defaults filled in.
func (c *Client) Options() Options {
	return c.opt
}

// Ping checks that the server answers and accepts the credentials. Its error
// names the server's address, never the password.
func (c *Client) Ping(ctx context.Context) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("reservation: ping %s: %w", c.addr, err)
	}
	return nil
}

// Lock tries once to reserve resource, in one round trip. It answers true
// with the held Reservation when it got it, and false when someone else
// holds it (or the restart guard is on). The error is not nil only when
// Redis could not answer, the resource name is bad (ErrInvalidResource) or
// the Client is closed (ErrClosed); the answer is then false.
func (c *Client) Lock(ctx context.Context, resource string) (*Reservation, bool, error) {
	if err := c.check(resource); err != nil {
		return nil, false, err
	}
	r, pttl, err := c.acquire(ctx, resource)
	if err == errGuarded {
		c.logGuard(resource, pttl)
		return nil, false, nil
	}
	if err != nil || r == nil {
		return nil, false, err
	}
	return r, true, nil
}

// check validates a call's resource and that the Client is open.
func (c *Client) check(resource string) error {
	if err := checkResource(resource); err != nil {
		return err
	}
	return c.checkOpen()
}

func (c *Client) checkOpen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return nil
}

// acquire runs the acquire script once. It answers the Reservation when
// acquired, else how long the current holder (or the restart guard, with
// errGuarded) has left: -1 when the key has no expiry.
func (c *Client) acquire(ctx context.Context, resource string) (*Reservation, time.Duration, error) {
	key := c.Key(resource)
	value := c.opt.By + "-" + newID()
	keys := []string{key, companion(key, fenceSuffix), guardKeyFor(key, c.cluster)}
	sent := time.Now()
	reply, err := c.batch.run(ctx, acquireScript, keys, value, c.ttlMs, c.guardMs, fenceLifetime(c.ttlMs)).Int64Slice()
	if err != nil {
		// The script may have run before the error (a reply lost, a
		// context that ended while it was on its way): the key may be
		// ours, for nothing. Give it back.
		c.giveBack(key, value)
		err = c.redisError("lock", resource, err)
		if ctx.Err() == nil {
			c.log.Error("redis-error", "op", "lock", "resource", resource, "err", err)
		}
		return nil, 0, err
	}
	if len(reply) < 2 {
		return nil, 0, fmt.Errorf("reservation: lock %s: unexpected reply %v from %s", quote(resource), reply, c.addr)
	}
	if reply[0] != 1 {
		pttl := time.Duration(reply[1]) * time.Millisecond
		if reply[1] < 0 {
			pttl = time.Duration(reply[1])
		}
		if len(reply) > 2 && reply[2] == 1 {
			return nil, pttl, errGuarded
		}
		return nil, pttl, nil
	}
	r := newReservation(c, resource, key, value, reply[1], sent)
	if !time.Now().Before(r.deadline) {
		// The answer came back after the local deadline (a link slower
		// than the TTL): the key may have expired and been taken by
		// someone else before we knew it was ours. It is no use: give it
		// back if it is still ours, and answer that it was not acquired.
		c.giveBack(key, value)
		r.end(ErrLost)
		c.log.Warn("reservation-lost", "resource", resource, "key", key, "token", r.token,
			"reason", "the acquire reply came back after the local deadline")
		return nil, 0, nil
	}
	if err := c.hold(r); err != nil {
		// Closed while acquiring: give it back at once.
		c.giveBack(key, value)
		r.end(ErrReleased)
		return nil, 0, err
	}
	c.log.Debug("reservation-acquired", "resource", resource, "key", key, "token", r.token)
	return r, 0, nil
}

// giveBackTimeout bounds a give-back.
const giveBackTimeout = 2 * time.Second

// giveBack deletes key if it holds value, with a fresh bounded context: an
// acquisition the caller will not hold. The compare-and-delete is safe
// whatever happened, since value is unique to one attempt. It runs in the
// background while the Client is open (Close waits for it), else at once.
func (c *Client) giveBack(key, value string) {
	release := func() {
		ctx, cancel := context.WithTimeout(context.Background(), giveBackTimeout)
		defer cancel()
		_ = releaseScript.Run(ctx, c.rdb, []string{key}, value, companion(key, channelSuffix)).Err()
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		release()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		release()
	}()
}

// errGuarded is acquire's answer when the restart guard refused it. It
// never leaves the package: Lock answers false, WaitUntilLock waits.
var errGuarded = errors.New("reservation: refused by the restart guard")

// logGuard logs that the restart guard holds acquisitions back.
func (c *Client) logGuard(resource string, remaining time.Duration) {
	c.log.Warn("reservation-guarded", "resource", resource, "remaining", remaining,
		"reason", "the server lost its data (or is new): acquisitions wait for the restart guard")
}

// redisError wraps an error of Redis for operation op on resource.
func (c *Client) redisError(op, resource string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("reservation: %s %s: %w", op, quote(resource), err)
	}
	return fmt.Errorf("reservation: %s %s on %s: %w", op, quote(resource), c.addr, err)
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
// Close.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.closed = true
	close(c.closing)
	held := make([]*Reservation, 0, len(c.held))
	for r := range c.held {
		r.releasing = true // the heartbeat leaves them alone from now on
		held = append(held, r)
	}
	notif := c.notif
	c.mu.Unlock()

	err := c.releaseAll(held)
	c.cancel()
	if notif != nil {
		notif.close()
	}
	c.batch.wait()
	c.wg.Wait()
	if c.ownsRDB {
		err = errors.Join(err, c.rdb.Close())
	}
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
		calls[i] = &scriptCall{script: releaseScript, keys: []string{r.key}, args: []any{r.value, companion(r.key, channelSuffix)}}
	}
	_, err := evalPipelined(ctx, c.rdb, calls)
	for i, r := range held {
		if n, rerr := calls[i].cmd.Int(); rerr == nil && n == 0 {
			c.lose(r, "close found the key gone or someone else's")
			continue
		}
		// Released, or the outcome is unknown: either way the holder
		// is done with it, and the key expires within a TTL at worst.
		r.end(ErrReleased)
	}
	if err != nil {
		c.log.Error("redis-error", "op", "close", "err", err)
		return fmt.Errorf("reservation: release %d held on close on %s: %w", len(held), c.addr, err)
	}
	for _, r := range held {
		c.log.Debug("reservation-released", "resource", r.resource, "key", r.key)
	}
	return nil
}
