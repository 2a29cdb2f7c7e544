package reservation

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Errors returned by this package. Test for them with errors.Is: most are
// wrapped with the resource concerned, and several may apply at once (a
// Lock whose context ended matches both ErrNotAcquired and the context's
// error).
var (
	// ErrNotAcquired is matched by the error of TryLock when someone else
	// holds the resource (or the restart guard refuses), and of Lock when
	// its context ends first. The error is a *NotAcquiredError, which says
	// who holds the resource and for how long.
	ErrNotAcquired = errors.New("reservation: not acquired")

	// ErrRestartGuard is matched, together with ErrNotAcquired, when the
	// restart guard refused the acquisition: the server lost its data (or
	// is new) and acquisitions wait for the guard period.
	ErrRestartGuard = errors.New("reservation: held back by the restart guard")

	// ErrNotHeld is returned by Release when the reservation is no longer
	// ours: it was lost (expired, deleted or taken by someone else), was
	// already released, or is nil. When it was lost, the error also
	// matches ErrLost.
	ErrNotHeld = errors.New("reservation: not held")

	// ErrLost is the cause of a reservation's end when it was lost: its key
	// was found gone or someone else's, or no renewal succeeded before the
	// holder's local deadline. The error that Err returns wraps it with the
	// reason.
	ErrLost = errors.New("reservation: lost")

	// ErrReleased is the cause of a reservation's end when it was released
	// by its holder, or by Close.
	ErrReleased = errors.New("reservation: released")

	// ErrClosed is returned by every call on a Client after Close.
	ErrClosed = errors.New("reservation: client closed")

	// ErrInvalidResource is returned for a resource name that is empty or
	// longer than MaxResourceLen bytes.
	ErrInvalidResource = errors.New("reservation: invalid resource")

	// ErrInvalidOptions is returned by the constructors for a bad Options
	// value or address.
	ErrInvalidOptions = errors.New("reservation: invalid options")

	// ErrNoPermission is matched when Redis refused a command to the
	// connection's user (an ACL error, NOPERM).
	ErrNoPermission = errors.New("reservation: permission denied")

	// ErrNotReplicated is matched by the error of an acquisition that
	// fewer replicas than Options.WaitReplicas acknowledged in time: the
	// key was given back, and nothing is held.
	ErrNotReplicated = errors.New("reservation: not replicated")

	// ErrPartial is matched by the error of List when some Cluster masters
	// could not be read: the Infos returned are those of the others, and
	// the error names each master that failed (a *NodeError).
	ErrPartial = errors.New("reservation: partial answer")
)

// NodeError is the failure of one Redis node, in a call that went on with
// the others (List on a Cluster).
type NodeError struct {
	// Addr is the node's address.
	Addr string
	// Err is what went wrong.
	Err error
}

func (e *NodeError) Error() string { return e.Addr + ": " + e.Err.Error() }

// Unwrap returns e.Err.
func (e *NodeError) Unwrap() error { return e.Err }

// QuorumError is the error of a call in quorum mode that fewer servers
// than the majority answered as it needed: too many servers failed (down,
// slow, refusing credentials), or the fencing token could not be written
// back to a majority. It matches each server's error (errors.Is and As see
// them through Unwrap) and, when it ended a holding, ErrLost.
type QuorumError struct {
	// Op is the call: "lock", "lock (write the fencing token back)",
	// "release", "status of", "list", "force release", "prime restart
	// guard", "ping".
	Op string
	// Resource is the resource concerned, "" for the Client as a whole.
	Resource string
	// Needed is the majority: how many servers had to answer.
	Needed int
	// Got is how many did.
	Got int
	// Total is the number of servers.
	Total int
	// Servers holds a *NodeError for each server that failed, naming it
	// and saying how.
	Servers []*NodeError
}

func (e *QuorumError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "reservation: %s", e.Op)
	if e.Resource != "" {
		fmt.Fprintf(&b, " %s", quote(e.Resource))
	}
	fmt.Fprintf(&b, ": %d of %d servers answered, fewer than the %d needed", e.Got, e.Total, e.Needed)
	for i, s := range e.Servers {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(s.Error())
	}
	return b.String()
}

// Unwrap returns the servers' errors.
func (e *QuorumError) Unwrap() []error {
	errs := make([]error, len(e.Servers))
	for i, s := range e.Servers {
		errs[i] = s
	}
	return errs
}

// NotAcquiredError is the error of an acquisition that did not succeed. It
// matches ErrNotAcquired, ErrRestartGuard when the guard refused, and the
// context's error when Lock's context ended first.
type NotAcquiredError struct {
	// Resource is the resource asked for.
	Resource string
	// Holder is the value in the resource's key when the attempt found it
	// held: "<By>-<id>" for this library, the Node library's value for a
	// Node worker. It is empty when the key was free. For a semaphore
	// whose permits are all held, it is the holder of the permit that
	// expires first (Remaining is its); for a name used as a semaphore of
	// another limit than the call's, or by a call without Limit, it is
	// "semaphore:<limit in use>".
	Holder string
	// Remaining is how long the holder's key lives without renewal, or,
	// when Guard is set, how long the restart guard still refuses. It is
	// zero when unknown or when the key has no expiry.
	Remaining time.Duration
	// NoExpiry reports that the key has no expiry: whoever set it never
	// lets it go by itself.
	NoExpiry bool
	// Guard reports that the restart guard refused the attempt.
	Guard bool
	// Late reports that the key was acquired, but the reply came back
	// after the holder's local deadline (a link or a scheduler slower than
	// the TTL), so the key was given back: it may have expired before we
	// knew it was ours.
	Late bool
	// Queued is, for a TryLock refused because others queue for the
	// resource (see Options.NoQueue), how many waiters queue; the key may
	// be free. Zero otherwise.
	Queued int
	// Err is the context's error when Lock gave up, else nil.
	Err error

	place int // a waiter's place in the server's queue (0: its head)
	limit int // the call's semaphore limit (0: a reservation)
	// leased is the end of the lease that a waiter's attempt wrote, in
	// ms of the server's clock, when it takes grants (0: none written).
	leased int64

	split   bool  // quorum mode: the servers split between contenders
	granted []int // quorum mode: the servers that said yes (given back)
	down    []int // quorum mode: the servers that failed
}

// Error returns a sentence that names the resource and why.
func (e *NotAcquiredError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "reservation: not acquired: %s", quote(e.Resource))
	switch {
	case e.Guard:
		fmt.Fprintf(&b, ": the restart guard refuses acquisitions for %v more", e.Remaining.Round(time.Millisecond))
	case e.Late:
		b.WriteString(": the acquire reply came back after the local deadline, so the key was given back")
	case strings.HasPrefix(e.Holder, semaphorePrefix):
		fmt.Fprintf(&b, ": used as a semaphore of %s permits (for %v more at least), and a plain reservation or a semaphore of another limit waits until its last permit is gone",
			strings.TrimPrefix(e.Holder, semaphorePrefix), e.Remaining.Round(time.Millisecond))
	case e.Holder != "" && e.limit > 0:
		fmt.Fprintf(&b, ": its %d %s held, the first to expire by %q for %v more", e.limit, plural(e.limit, "permit is", "permits are"),
			e.Holder, e.Remaining.Round(time.Millisecond))
	case e.Holder != "" && e.NoExpiry:
		fmt.Fprintf(&b, ": held by %q, with no expiry", e.Holder)
	case e.Holder != "":
		fmt.Fprintf(&b, ": held by %q for %v more", e.Holder, e.Remaining.Round(time.Millisecond))
	}
	if e.Queued > 0 {
		fmt.Fprintf(&b, ": %d %s queue for it, and TryLock does not go ahead of them", e.Queued, plural(e.Queued, "waiter", "waiters"))
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Unwrap returns ErrNotAcquired, ErrRestartGuard when the guard refused,
// and Err.
func (e *NotAcquiredError) Unwrap() []error {
	errs := []error{ErrNotAcquired}
	if e.Guard {
		errs = append(errs, ErrRestartGuard)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// AuthError is the error of a call that Redis refused because of the
// credentials: a wrong user or password (WRONGPASS), or none given where one
// is needed (NOAUTH). It names the server, never the password.
type AuthError struct {
	// Addr is the server's address.
	Addr string
	// Err is Redis's answer.
	Err error
}

// Error returns the server's address and its answer.
func (e *AuthError) Error() string {
	return fmt.Sprintf("reservation: %s refused the credentials: %v", e.Addr, e.Err)
}

// Unwrap returns Redis's answer.
func (e *AuthError) Unwrap() error { return e.Err }

// MaxResourceLen is the longest resource name accepted, in bytes.
const MaxResourceLen = 1024

// checkResource reports whether resource is a name this package accepts.
func checkResource(resource string) error {
	switch {
	case resource == "":
		return fmt.Errorf("%w: empty name", ErrInvalidResource)
	case len(resource) > MaxResourceLen:
		return fmt.Errorf("%w: name of %d bytes is longer than %d", ErrInvalidResource, len(resource), MaxResourceLen)
	}
	return nil
}

// optionError reports a bad option.
func optionError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
}

// lostError returns the error of a loss for reason: it matches ErrLost.
func lostError(reason string) error {
	return fmt.Errorf("%w: %s", ErrLost, reason)
}

// classify wraps err, an error of Redis, so that errors.As and errors.Is
// find what a caller acts on: *AuthError for refused credentials,
// ErrNoPermission for an ACL refusal.
func classify(addr string, err error) error {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return err
	}
	msg := rerr.Error()
	switch {
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"),
		strings.Contains(msg, "invalid password"), strings.Contains(msg, "invalid username-password"),
		strings.Contains(msg, "without any password configured"):
		return &AuthError{Addr: addr, Err: err}
	case strings.HasPrefix(msg, "NOPERM"), strings.Contains(msg, "NOPERM"):
		return fmt.Errorf("%w: %w", ErrNoPermission, err)
	}
	return err
}

// plural returns one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
