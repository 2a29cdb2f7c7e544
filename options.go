package reservation

import (
	"crypto/tls"
	"log/slog"
	"os"
	"time"
)

// Defaults of the Options fields.
const (
	DefaultTTL           = 30 * time.Second
	DefaultPrefix        = "reservation-"
	DefaultRetryInterval = time.Second
	// MinTTL is the shortest TTL accepted: below it, the default drift
	// margin would leave a holder too little time to renew.
	MinTTL = 300 * time.Millisecond
	// DefaultDriftMargin is the default of Options.DriftMargin. It covers
	// what a CPU-starved Go process meets: with GOMAXPROCS=1 (what Go sets
	// in a 1-CPU container) and four CPU-bound goroutines, a timer of a
	// process that also does network I/O fired up to 96 ms late (p99
	// 78 ms): the scheduler gives each runnable goroutine 10 ms in turn.
	DefaultDriftMargin = 150 * time.Millisecond
	// MaxTTL is the longest TTL accepted. A holder keeps its reservation
	// for as long as it likes by renewing it; a long TTL only delays the
	// takeover after the holder dies.
	MaxTTL = 24 * time.Hour
	// DefaultWaitTimeout is the default of Options.WaitTimeout.
	DefaultWaitTimeout = 200 * time.Millisecond
	// DefaultQuorumTimeout is the longest default of Options.QuorumTimeout.
	DefaultQuorumTimeout = time.Second
	// MaxByLen is the longest worker name accepted, in bytes.
	MaxByLen = 256
)

// Options configures a Client. The zero value of every field means its
// default; New and NewWithClient copy the Options and return an error
// wrapping ErrInvalidOptions for a value out of range, never correcting it
// silently. Each field maps onto a flag of the reserve command.
type Options struct {
	// By names the worker, as the Node library's "by": holder values are
	// "<By>-<random id>". Default the host name. At most MaxByLen bytes.
	By string

	// TTL is how long a reservation lives on the server without renewal.
	// Default DefaultTTL (30 s); at least MinTTL (300 ms), at most MaxTTL,
	// a whole number of milliseconds.
	TTL time.Duration

	// HeartbeatInterval is how often a held reservation is renewed. Default
	// a third of the TTL (10 s for the default TTL). It must be shorter
	// than the TTL less the drift margin.
	HeartbeatInterval time.Duration

	// DriftMargin is how much earlier than the server a holder declares
	// its reservation lost when no renewal succeeded, on top of 1% of the
	// TTL for clock rates: the send time of the last successful renewal
	// plus the TTL, less the margin, is the holder's local deadline. It
	// must cover the longest delay the holder's process may meet in waking
	// up (a busy CPU, a container's CPU limit): a loss declared later than
	// the margin may overlap the next holder. Default DefaultDriftMargin
	// (150 ms); at least 1 ms, at most half the TTL.
	DriftMargin time.Duration

	// Prefix is put before the resource name to make its Redis key.
	// Default DefaultPrefix ("reservation-"), the Node library's.
	Prefix string

	// RetryInterval bounds how long a waiter sleeps between two attempts
	// when nothing wakes it earlier (a release that published nothing and
	// was not seen by client tracking). Default DefaultRetryInterval (1 s);
	// at least 1 ms.
	RetryInterval time.Duration

	// RestartGuard is how long acquisitions are refused after the server
	// is found to have lost its data (see the package documentation).
	// Zero means the TTL; a deployment whose clients use several TTLs sets
	// the largest. A negative value turns the guard off.
	RestartGuard time.Duration

	// Logger receives a record for every Event (after OnEvent, from the
	// same goroutine), with the event's kind as its message (reservation-acquired, -refused, -released, -extended, -lost, -wait,
	// restart-guard, eviction-risk, permission-denied, tracking-unavailable,
	// redis-error). Default slog.Default(). Routine events are at debug
	// level, losses and warnings at warn, Redis errors at error.
	Logger *slog.Logger

	// OnEvent, when not nil, is called with every Event, in order, from a
	// goroutine of the Client's own: a hook that blocks delays the events
	// after it (and the log records), never the Client's work. Past 10,000
	// events waiting, new ones are dropped and counted in the log. Close
	// delivers what is left before it returns. Default nil.
	OnEvent func(Event)

	// WaitReplicas is how many replicas must acknowledge each acquisition
	// and each renewal, with Redis's WAIT sent right after the script on
	// its connection (on Cluster, to the key's own master). An acquisition
	// that fewer replicas acknowledged within WaitTimeout is given back
	// and reported as an error matching ErrNotReplicated, never as held; such a
	// renewal counts as failed, so the local deadline still decides. It
	// narrows, without closing, the window in which a failover loses a
	// reservation (see the package documentation). Lock, like any error
	// of Redis, returns ErrNotReplicated when its first attempt meets it
	// and retries later ones (an event each). A master left with fewer
	// replicas than WaitReplicas for longer than the TTL (after its replica
	// was promoted elsewhere, say) cannot renew, and its reservations are
	// lost at their deadline: ask for fewer replicas than each master has.
	// Default 0: no wait.
	WaitReplicas int

	// WaitTimeout bounds each WAIT of WaitReplicas. Default
	// DefaultWaitTimeout (200 ms); at least 1 ms, at most a quarter of the
	// TTL.
	WaitTimeout time.Duration

	// QuorumTimeout bounds, in quorum mode (NewQuorum), each round of an
	// acquisition: a server that has not answered by then counts as a
	// no, so a TryLock with a majority of servers silent fails within
	// it. Default a tenth of the TTL, at most DefaultQuorumTimeout (1 s);
	// at least 1 ms, at most half the TTL. Ignored outside quorum mode.
	QuorumTimeout time.Duration

	// NoQueue turns the server's queue of waiters off for this Client.
	// By default every Lock call takes a place in a queue kept on the
	// server beside the key, leased like a reservation (a waiter that dies
	// leaves it within its TTL), and acquires in the order of arrival,
	// across processes and hosts; a release wakes the queue's head only,
	// and TryLock is refused while anyone queues. With NoQueue, this
	// Client's Lock and TryLock ignore the queue, as clients of versions
	// before the queue and Node workers do: they take the key whenever it
	// is free, ahead of queued waiters. Ignored in quorum mode, which has
	// no queue across processes.
	NoQueue bool

	// Username and Password authenticate to Redis. They override those in
	// the address URL. Default: none, or the URL's. New only:
	// NewWithClient refuses them (set them on the go-redis client).
	Username string
	Password string

	// TLSConfig, when not nil, makes New connect with TLS ("rediss://"
	// URLs do so with a default configuration). New only, like Username.
	TLSConfig *tls.Config
}

// credentials puts the user, password and TLS configuration of o, those
// that are set, in place of a go-redis client's.
func (o *Options) credentials(user, password *string, tlsConfig **tls.Config) {
	if o.Username != "" {
		*user = o.Username
	}
	if o.Password != "" {
		*password = o.Password
	}
	if o.TLSConfig != nil {
		*tlsConfig = o.TLSConfig.Clone()
	}
}

// margin is how much earlier than the server a holder gives up its
// reservation: 1% of the TTL for clock rate drift, plus DriftMargin.
func (o *Options) margin() time.Duration {
	return o.TTL/100 + o.DriftMargin
}

// withDefaults returns a validated copy of o with defaults filled in.
func (o *Options) withDefaults() (Options, error) {
	var opt Options
	if o != nil {
		opt = *o
	}
	if opt.By == "" {
		opt.By = hostname()
	}
	if len(opt.By) > MaxByLen {
		return opt, optionError("By is %d bytes long, more than %d", len(opt.By), MaxByLen)
	}
	if opt.TTL == 0 {
		opt.TTL = DefaultTTL
	}
	if opt.TTL < MinTTL || opt.TTL > MaxTTL {
		return opt, optionError("TTL %v is out of range [%v, %v]", opt.TTL, MinTTL, MaxTTL)
	}
	if opt.TTL%time.Millisecond != 0 {
		return opt, optionError("TTL %v is not a whole number of milliseconds", opt.TTL)
	}
	if opt.DriftMargin == 0 {
		opt.DriftMargin = DefaultDriftMargin
	}
	if opt.DriftMargin < time.Millisecond || opt.DriftMargin > opt.TTL/2 {
		return opt, optionError("drift margin %v is out of range [1ms, half the TTL %v]", opt.DriftMargin, opt.TTL)
	}
	if opt.HeartbeatInterval == 0 {
		opt.HeartbeatInterval = opt.TTL / 3
	}
	if limit := opt.TTL - opt.margin(); opt.HeartbeatInterval <= 0 || opt.HeartbeatInterval >= limit {
		return opt, optionError("heartbeat interval %v must be positive and shorter than the TTL %v less its drift margin (%v)",
			opt.HeartbeatInterval, opt.TTL, opt.margin())
	}
	if opt.Prefix == "" {
		opt.Prefix = DefaultPrefix
	}
	if opt.RetryInterval == 0 {
		opt.RetryInterval = DefaultRetryInterval
	}
	if opt.RetryInterval < time.Millisecond {
		return opt, optionError("retry interval %v is shorter than 1ms", opt.RetryInterval)
	}
	if opt.RestartGuard == 0 {
		opt.RestartGuard = opt.TTL
	}
	if opt.RestartGuard > 0 && opt.RestartGuard < time.Millisecond {
		return opt, optionError("restart guard %v is shorter than 1ms", opt.RestartGuard)
	}
	if opt.WaitReplicas < 0 {
		return opt, optionError("wait replicas %d is negative", opt.WaitReplicas)
	}
	if opt.WaitTimeout == 0 {
		opt.WaitTimeout = min(DefaultWaitTimeout, opt.TTL/4)
	}
	if opt.WaitTimeout < time.Millisecond || opt.WaitTimeout > opt.TTL/4 {
		return opt, optionError("wait timeout %v is out of range [1ms, a quarter of the TTL %v]", opt.WaitTimeout, opt.TTL)
	}
	if opt.QuorumTimeout == 0 {
		opt.QuorumTimeout = min(DefaultQuorumTimeout, opt.TTL/10)
	}
	if opt.QuorumTimeout < time.Millisecond || opt.QuorumTimeout > opt.TTL/2 {
		return opt, optionError("quorum timeout %v is out of range [1ms, half the TTL %v]", opt.QuorumTimeout, opt.TTL)
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return opt, nil
}

// hostname is the default worker name: the host name, or "reservation"
// when it cannot be read.
func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "reservation"
}
