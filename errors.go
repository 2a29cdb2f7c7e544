package reservation

import (
	"errors"
	"fmt"
)

// Errors returned by this package. Test for them with errors.Is: most are
// wrapped with the resource concerned, and several may be joined (a wait
// that ran out ends with both ErrNotAcquired and the context's error).
var (
	// ErrNotHeld is returned by Release when the reservation is no longer
	// ours: it was lost (expired, deleted or taken by someone else) or was
	// already released. When it was lost, the error also matches ErrLost.
	ErrNotHeld = errors.New("reservation: not held")

	// ErrLost is the cause of a reservation's end when it was lost: a
	// renewal found its key gone or someone else's, or no renewal succeeded
	// before the holder's local deadline.
	ErrLost = errors.New("reservation: lost")

	// ErrReleased is the cause of a reservation's end when it was released
	// by its holder, or by Close.
	ErrReleased = errors.New("reservation: released")

	// ErrNotAcquired is returned, joined with the context's error, by
	// WaitUntilLock when its context ended before the reservation was had.
	ErrNotAcquired = errors.New("reservation: not acquired")

	// ErrClosed is returned by every call on a Client after Close.
	ErrClosed = errors.New("reservation: client closed")

	// ErrInvalidResource is returned for a resource name that is empty or
	// longer than MaxResourceLen bytes.
	ErrInvalidResource = errors.New("reservation: invalid resource")

	// ErrInvalidOptions is returned by the constructors for a bad Options
	// value or address.
	ErrInvalidOptions = errors.New("reservation: invalid options")
)

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
