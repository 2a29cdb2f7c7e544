package reservation

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// explainTimeout bounds the look at what a server says to a new
// connection.
const explainTimeout = 200 * time.Millisecond

// explain returns err, an error of a call to Redis, with what the server
// said when it closed a connection on us: a server at maxclients accepts a
// connection, writes "max number of clients reached" and closes it, and the
// client then reports only a broken pipe or a reset. Where a connection
// broke so, explain opens one more and reads the server's first words. It
// dials: call it where an error leaves the library, never on a path that
// retries (Lock's wait) or must keep time (the heartbeat).
func (c *Client) explain(err error) error {
	if err == nil || !brokenConn(err) {
		return err
	}
	base, ok := c.rdb.(*redis.Client)
	if !ok || base.Options().TLSConfig != nil || base.Options().Network == "unix" {
		return err
	}
	addr := base.Options().Addr
	if _, _, serr := net.SplitHostPort(addr); serr != nil {
		return err
	}
	cn, derr := net.DialTimeout("tcp", addr, explainTimeout)
	if derr != nil {
		return err
	}
	defer cn.Close()
	_ = cn.SetReadDeadline(time.Now().Add(explainTimeout))
	line, rerr := bufio.NewReader(cn).ReadString('\n')
	if rerr != nil && line == "" || !strings.HasPrefix(line, "-") {
		return err
	}
	said := strings.TrimSpace(strings.TrimPrefix(line, "-"))
	return fmt.Errorf("%w (the server says: %s)", err, said)
}

// brokenConn reports whether err is a connection that the other side
// closed or reset.
func brokenConn(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
