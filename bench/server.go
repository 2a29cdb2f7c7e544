package main

import (
	"context"
	"os"
	"os/exec"

	"github.com/redis-reservation/reservation/internal/redisserver"
)

// server is one redis-server started for a bench run, without persistence,
// on a free loopback port.
type server struct {
	addr    string
	srv     *redisserver.Server
	dir     string
	version string
	pinned  string // the CPU list it runs on, "" when not pinned
}

// startServer starts redis-server (REDIS_SERVER_BIN, else from PATH). When
// cpus is not empty and taskset exists, the server is pinned to those CPUs.
func startServer(cpus string) (*server, error) {
	if _, err := exec.LookPath("taskset"); err != nil {
		cpus = ""
	}
	dir, err := os.MkdirTemp("", "reservation-bench-")
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	srv, err := redisserver.Start(ctx, redisserver.Options{Dir: dir, CPUs: cpus})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &server{addr: srv.Addr, srv: srv, dir: dir, pinned: cpus}
	info, err := srv.Info(ctx, "server")
	if err != nil {
		s.stop()
		return nil, err
	}
	s.version = redisserver.InfoField(info, "redis_version")
	return s, nil
}

// stop kills the server and removes its directory.
func (s *server) stop() {
	s.srv.Kill()
	os.RemoveAll(s.dir)
}
