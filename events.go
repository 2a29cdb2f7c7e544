package reservation

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// EventKind names what an Event reports. Its value is also the message of
// the log record that the Client writes for it.
type EventKind string

// The kinds of Event.
const (
	// EventAcquired: a reservation was acquired. Token is its token,
	// Duration how long Lock waited, from the call to the reply that
	// acquired. Duration is zero for TryLock, and never zero for Lock.
	EventAcquired EventKind = "reservation-acquired"
	// EventRefused: TryLock did not acquire: someone holds the resource,
	// Lock callers queue for it, the restart guard holds acquisitions
	// back, or the reply came back after the local deadline. Err is the
	// *NotAcquiredError, which says which; Holder and Duration say who
	// holds the resource and for how long, when known. For a set (see
	// With), Resource is the member that was refused.
	EventRefused EventKind = "reservation-refused"
	// EventReleased: a reservation was released by its holder, by Close,
	// or by ForceRelease (then Holder is whose it was). Duration is how
	// long it was held. Token and Duration are zero for ForceRelease,
	// which does not know them.
	EventReleased EventKind = "reservation-released"
	// EventExtended: a renewal extended a reservation. Duration is the
	// renewal's round trip. In quorum mode each server's renewal is one,
	// with that server's own token. One round trip extends many
	// reservations, each with an event of its own: the first of them has
	// Batch set (see Event.Batch).
	EventExtended EventKind = "reservation-extended"
	// EventLost: a reservation was lost. Err matches ErrLost and says why;
	// Cause says why in one word. Duration is how long it was held.
	EventLost EventKind = "reservation-lost"
	// EventWait: Lock found the resource held and waits. Holder and
	// Duration say who holds it and for how long.
	EventWait EventKind = "reservation-wait"
	// EventRestartGuard: the restart guard holds acquisitions back on a
	// server that lost its data or is new. Duration is the time left. It is
	// reported once per guard period, not once per attempt.
	EventRestartGuard EventKind = "restart-guard"
	// EventEvictionRisk: the server may evict reservation keys (maxmemory
	// with a policy other than noeviction), which breaks mutual exclusion.
	// Err says which setting.
	EventEvictionRisk EventKind = "eviction-risk"
	// EventNoPermission: the server refused a command to the connection's
	// user (an ACL), and the Client carries on without what it did. Err
	// says which.
	EventNoPermission EventKind = "permission-denied"
	// EventTrackingUnavailable: the server refused client tracking, so
	// waiters and holders are woken by release notices, keyspace events
	// and timers only. Err says why.
	EventTrackingUnavailable EventKind = "tracking-unavailable"
	// EventRedisError: a call to Redis failed. Err is the error.
	EventRedisError EventKind = "redis-error"
	// EventServerFailed: in quorum mode, one server failed a call, or a holding
	// there was lost, and the Client carried on with the majority. Err is a
	// *NodeError naming the server.
	EventServerFailed EventKind = "server-failed"
)

// Event is what Options.OnEvent receives: one thing a user or a metrics
// system may want to know.
type Event struct {
	Kind     EventKind
	Resource string // the resource concerned, "" for the Client as a whole
	Key      string // its Redis key
	Holder   string // the holder value concerned, when known
	Token    int64  // the fencing token, when a holding is concerned
	// Duration: see each EventKind.
	Duration time.Duration
	// Err: see each EventKind.
	Err error
	// Cause is, for EventLost, why the reservation was lost, from a small
	// fixed set (see LossCause); "" for other kinds.
	Cause LossCause
	// Batch is, for EventExtended, how many reservations the renewal's
	// round trip extended. It is set on the first event of each round
	// trip only, and zero on the others: a round trip is counted once,
	// so its latency (Duration) and its size are taken from the events
	// whose Batch is not zero. Every event still counts one renewal.
	Batch int
}

// LossCause says why a reservation was lost, in one word. Its values are
// the constants below and no others, so it suits a metrics label.
type LossCause string

// The causes of a loss.
const (
	// LossForeign: the key was found gone or someone else's. Someone
	// deleted, overwrote or flushed it (ForceRelease among them), or the
	// server lost it (a restart without its data, an eviction). A
	// renewal, the watch on the key, Release or Close found out.
	LossForeign LossCause = "foreign"
	// LossDeadline: no renewal succeeded before the holder's local
	// deadline. Redis failed or did not answer in time (each failure is
	// an EventRedisError too), or the process was too slow to renew.
	LossDeadline LossCause = "deadline"
	// LossRedisError: Release failed with an error of Redis, so whether
	// it released the key is unknown. The holding ends as lost.
	LossRedisError LossCause = "redis-error"
	// LossQuorum: in quorum mode, fewer than a majority of the servers
	// held the reservation any more. Err names the server lost last and
	// why.
	LossQuorum LossCause = "quorum"
)

// level is the log level of an event of kind k.
func (k EventKind) level() slog.Level {
	switch k {
	case EventLost, EventRestartGuard, EventEvictionRisk, EventNoPermission, EventServerFailed:
		return slog.LevelWarn
	case EventRedisError:
		return slog.LevelError
	case EventTrackingUnavailable:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// maxQueuedEvents bounds the events waiting for delivery: past it (a hook
// or log handler that blocks), new events are dropped and counted.
const maxQueuedEvents = 10000

// events delivers a Client's events to Options.OnEvent and the log from a
// goroutine of its own, in order: a hook or handler that blocks delays
// other events, never the Client's work (the heartbeat, which declares
// losses at their local deadlines, must never wait for user code).
type events struct {
	c *Client

	mu      sync.Mutex
	queue   []Event
	dropped int
	started bool // run is started by the first event
	stopped bool
	wake    chan struct{}
	done    chan struct{}

	// What was reported, so as not to say it again.
	until  map[string]time.Time // reported until then
	values map[string]string    // reported for this value
}

func newEvents(c *Client) *events {
	return &events{c: c, wake: make(chan struct{}, 1), done: make(chan struct{}),
		until: make(map[string]time.Time), values: make(map[string]string)}
}

// firstUntil reports whether what key names was not reported since, and if
// so records that it is reported until end.
func (ev *events) firstUntil(key string, end time.Time) bool {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if time.Now().Before(ev.until[key]) {
		return false
	}
	ev.until[key] = end
	return true
}

// changed reports whether value differs from the one last seen for key,
// and records it.
func (ev *events) changed(key, value string) bool {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	old := ev.values[key]
	ev.values[key] = value
	return old != value
}

// reportOnce emits e the first time only for key, for the Client's life.
func (c *Client) reportOnce(key string, e Event) {
	if c.events.changed(key, "reported") {
		c.emit(e)
	}
}

// wants reports whether an event of kind k would go anywhere: to OnEvent,
// or to the log at k's level. A caller checks it first when an event costs
// something to build.
func (c *Client) wants(k EventKind) bool {
	return c.opt.OnEvent != nil || c.log.Enabled(context.Background(), k.level())
}

// emit queues e for OnEvent and the log, unless neither wants it. After
// stop, it delivers at once.
func (c *Client) emit(e Event) {
	if c.opt.OnEvent == nil && !c.log.Enabled(context.Background(), e.Kind.level()) { // c.wants written out: as a call, it made emit 20% slower
		return
	}
	ev := c.events
	ev.mu.Lock()
	if ev.stopped {
		ev.mu.Unlock()
		c.deliver(e)
		return
	}
	if len(ev.queue) >= maxQueuedEvents {
		ev.dropped++
		ev.mu.Unlock()
		return
	}
	ev.queue = append(ev.queue, e)
	if !ev.started {
		ev.started = true
		go ev.run()
	}
	ev.mu.Unlock()
	select {
	case ev.wake <- struct{}{}:
	default:
	}
}

// run delivers queued events until stop, then what is left.
func (ev *events) run() {
	defer close(ev.done)
	for {
		ev.mu.Lock()
		batch, dropped, stopped := ev.queue, ev.dropped, ev.stopped
		ev.queue, ev.dropped = nil, 0
		ev.mu.Unlock()
		for _, e := range batch {
			ev.c.deliver(e)
		}
		if dropped > 0 {
			ev.c.log.Warn("events-dropped", "count", dropped,
				"reason", "the OnEvent hook or the log handler did not keep up")
		}
		if stopped {
			return
		}
		if len(batch) == 0 {
			<-ev.wake
		}
	}
}

// stop delivers what is queued and ends the goroutine: Close calls it last.
// Events after it are delivered at once.
func (ev *events) stop() {
	ev.mu.Lock()
	ev.stopped = true
	started := ev.started
	ev.mu.Unlock()
	if !started {
		return
	}
	select {
	case ev.wake <- struct{}{}:
	default:
	}
	<-ev.done
}

// deliver hands e to Options.OnEvent and logs it.
func (c *Client) deliver(e Event) {
	if h := c.opt.OnEvent; h != nil {
		h(e)
	}
	lvl := e.Kind.level()
	if !c.log.Enabled(context.Background(), lvl) {
		return
	}
	attrs := make([]slog.Attr, 0, 8)
	if e.Resource != "" {
		attrs = append(attrs, slog.String("resource", e.Resource), slog.String("key", e.Key))
	}
	if e.Holder != "" {
		attrs = append(attrs, slog.String("holder", e.Holder))
	}
	if e.Token != 0 {
		attrs = append(attrs, slog.Int64("token", e.Token))
	}
	if e.Duration != 0 {
		attrs = append(attrs, slog.Duration("duration", e.Duration))
	}
	if e.Cause != "" {
		attrs = append(attrs, slog.String("cause", string(e.Cause)))
	}
	if e.Batch != 0 {
		attrs = append(attrs, slog.Int("batch", e.Batch))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("err", e.Err.Error()))
	}
	c.log.LogAttrs(context.Background(), lvl, string(e.Kind), attrs...)
}
