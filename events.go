package reservation

import (
	"context"
	"log/slog"
	"time"
)

// EventKind names what an Event reports. Its value is also the message of
// the log record that the Client writes for it.
type EventKind string

// The kinds of Event.
const (
	// EventAcquired: a reservation was acquired. Token is its token,
	// Duration how long Lock waited (zero for TryLock).
	EventAcquired EventKind = "reservation-acquired"
	// EventReleased: a reservation was released by its holder, by Close,
	// or by ForceRelease (then Holder is whose it was). Duration is how
	// long it was held.
	EventReleased EventKind = "reservation-released"
	// EventExtended: a renewal extended a reservation. Duration is the
	// renewal's round trip.
	EventExtended EventKind = "reservation-extended"
	// EventLost: a reservation was lost. Err matches ErrLost and says why.
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
}

// level is the log level of an event of kind k.
func (k EventKind) level() slog.Level {
	switch k {
	case EventLost, EventRestartGuard, EventEvictionRisk, EventNoPermission:
		return slog.LevelWarn
	case EventRedisError:
		return slog.LevelError
	case EventTrackingUnavailable:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// emit logs e and hands it to Options.OnEvent. It is never called with
// c.mu held: the hook and the log handler may take their time.
func (c *Client) emit(e Event) {
	if h := c.opt.OnEvent; h != nil {
		h(e)
	}
	lvl := e.Kind.level()
	if !c.log.Enabled(context.Background(), lvl) {
		return
	}
	attrs := make([]slog.Attr, 0, 6)
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
	if e.Err != nil {
		attrs = append(attrs, slog.String("err", e.Err.Error()))
	}
	c.log.LogAttrs(context.Background(), lvl, string(e.Kind), attrs...)
}
