package cli

import (
	"context"
	"errors"
	"os"
	"os/exec"

	"github.com/redis-reservation/reservation/internal/redisserver"
)

// localRedis is a throwaway redis-server that the demo started.
type localRedis struct {
	addr string // host:port
	srv  *redisserver.Server
	dir  string
}

// errNoRedisServer says how to get a Redis for the demo.
var errNoRedisServer = errors.New("redis-server is not installed. Install it (Debian, Ubuntu: sudo apt-get install redis-server; " +
	"Fedora: sudo dnf install redis; macOS: brew install redis) or point reserve demo at a Redis with --redis URL")

// startRedis starts redis-server on a free loopback port, in a temporary
// directory, without persistence, and waits until it answers. The server
// has a process group of its own, so that a Ctrl-C at the terminal reaches
// the demo, which stops it; on Linux it dies with the demo, even by kill -9.
func startRedis(ctx context.Context) (*localRedis, error) {
	// The one on PATH: the tests' REDIS_SERVER_BIN is not for users.
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errNoRedisServer
	}
	dir, err := os.MkdirTemp("", "reserve-demo-")
	if err != nil {
		return nil, err
	}
	s, err := redisserver.Start(ctx, redisserver.Options{Dir: dir, Bin: bin, Args: []string{"--loglevel", "warning"}})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &localRedis{addr: s.Addr, srv: s, dir: dir}, nil
}

// stop shuts the server down and deletes its directory.
func (l *localRedis) stop() {
	l.srv.Stop()
	os.RemoveAll(l.dir)
}
