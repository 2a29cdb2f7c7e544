//go:build unix

package reservation

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// watchClosing wraps dial so that closed is called as soon as the server
// closes or resets a connection it made, even while the connection is idle:
// go-redis reads a connection only when it waits for a reply, and the
// tracking connection is idle between two renewals while the server sends
// its invalidations elsewhere. Without it, a tracking connection killed by
// an operator (CLIENT KILL) or a proxy would watch nothing until the next
// renewal. The goroutines it starts are counted in wg.
//
// The watch waits on a duplicate of the socket in the runtime's poller and
// reads it with MSG_PEEK: it never takes a byte from go-redis.
func watchClosing(dial func(context.Context, string, string) (net.Conn, error), wg *sync.WaitGroup, dups *sync.Map, closed func()) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		cn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		raw := cn
		for range 8 {
			u, ok := raw.(interface{ NetConn() net.Conn })
			if !ok {
				break
			}
			raw = u.NetConn()
		}
		dup, rc, err := duplicate(raw)
		if err != nil {
			return cn, nil // no watch: the health checks remain
		}
		dups.Store(dup, struct{}{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer dups.Delete(dup)
			defer dup.Close()
			if peekUntilClosed(rc) {
				closed()
			}
		}()
		w := &watchedConn{Conn: cn, dup: dup}
		// go-redis drops a connection whose set-up failed without closing
		// it: when it is gone, so is the watch.
		runtime.AddCleanup(w, func(dup net.Conn) { dup.Close() }, dup)
		return w, nil
	}
}

// duplicate returns a duplicate of c's socket, registered with the poller.
func duplicate(c net.Conn) (net.Conn, syscall.RawConn, error) {
	f, ok := c.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, nil, errors.New("not a socket")
	}
	file, err := f.File()
	if err != nil {
		return nil, nil, err
	}
	defer file.Close()
	dup, err := net.FileConn(file)
	if err != nil {
		return nil, nil, err
	}
	sc, ok := dup.(syscall.Conn)
	if !ok {
		dup.Close()
		return nil, nil, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		dup.Close()
		return nil, nil, err
	}
	return dup, rc, nil
}

// peekUntilClosed waits until the peer closes or resets the socket, and
// reports true, or until our side closes it, and reports false.
func peekUntilClosed(rc syscall.RawConn) bool {
	var buf [1]byte
	wait := time.Millisecond
	for {
		var gone, pending bool
		err := rc.Read(func(fd uintptr) bool {
			n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
				return false // wait in the poller
			case n > 0:
				pending = true // a reply that go-redis is about to read
			default:
				gone = true // n == 0: end of stream; or a reset
			}
			return true
		})
		switch {
		case err != nil:
			return false // our duplicate was closed
		case gone:
			return true
		case pending:
			// A reply go-redis reads in a moment; one that stays is on
			// a connection go-redis dropped: look less and less often.
			time.Sleep(wait)
			wait = min(2*wait, time.Second)
		default:
			wait = time.Millisecond
		}
	}
}

// watchedConn closes the watch's duplicate with the connection.
type watchedConn struct {
	net.Conn
	dup net.Conn
}

func (c *watchedConn) Close() error {
	c.dup.Close()
	return c.Conn.Close()
}
