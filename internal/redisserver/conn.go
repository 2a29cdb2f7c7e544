package redisserver

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// do sends one command to the server on a connection of its own and
// returns the reply (RESP2: string, int64, []any), or redis.Nil for a
// null reply.
func (s *Server) do(ctx context.Context, args ...any) (any, error) {
	return do(ctx, s.Addr, s.Password, args...)
}

// do sends one command to addr. The connection is dialled here and handed
// to go-redis, because go-redis's pool answers a failed dial by probing in
// a goroutine of its own until the client is closed; servers that are not
// up yet (or killed) are the usual case here.
func do(ctx context.Context, addr, password string, args ...any) (any, error) {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	one := make(chan net.Conn, 1)
	one <- conn
	rdb := redis.NewClient(&redis.Options{
		Addr:     addr,
		Password: password,
		Dialer: func(context.Context, string, string) (net.Conn, error) {
			select {
			case c := <-one:
				return c, nil
			default:
				return nil, errors.New("redisserver: one connection per command")
			}
		},
		Protocol:              2, // replies as plain values, servers of any version
		DisableIdentity:       true,
		MaxRetries:            -1,
		PoolSize:              1,
		ReadTimeout:           10 * time.Second, // bounded by ctx as well
		ContextTimeoutEnabled: true,
	})
	v, err := rdb.Do(ctx, args...).Result()
	rdb.Close()
	select {
	case c := <-one: // never used: ctx was done first
		c.Close()
	default:
	}
	return v, err
}

// Info returns the text of INFO section from the server.
func (s *Server) Info(ctx context.Context, section string) (string, error) {
	v, err := s.do(ctx, "INFO", section)
	if err != nil {
		return "", err
	}
	return toString(v), nil
}

// toString returns a string reply, or "" for any other.
func toString(v any) string {
	s, _ := v.(string)
	return s
}

// InfoField returns the value of field in the text of INFO, or "" when
// there is no such field.
func InfoField(info, field string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// isReply reports whether err is an error reply from the server (-ERR ...).
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && err != redis.Nil
}

func isClosedConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF)
}
