//go:build !unix

package reservation

import (
	"context"
	"net"
	"sync"
)

// watchClosing returns dial: without a way to wait on a socket here, a
// closed tracking connection is found by the health checks and renewals.
func watchClosing(dial func(context.Context, string, string) (net.Conn, error), _ *sync.WaitGroup, _ *sync.Map, _ func()) func(context.Context, string, string) (net.Conn, error) {
	return dial
}
