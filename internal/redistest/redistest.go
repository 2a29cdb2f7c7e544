// Package redistest starts real redis-server processes for tests: single
// servers, a master with replicas, a Sentinel set and a Cluster. It is a
// thin layer over internal/redisserver, which does the work: each server
// listens on a free loopback port, keeps its files in t.TempDir(), has no
// persistence and is killed in t.Cleanup, which logs the end of every
// server's log if the test failed. There are no mocks: tests that use this
// package need the redis-server binary, and fail (never skip) when it is
// missing, saying how to install it.
//
// Functions that take a testing.TB call its Fatalf, so they must be called
// from the goroutine running the test. Methods that do not take one (Kill,
// Stop, Pause, Resume) are safe to call from any goroutine.
package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation/internal/redisserver"
)

// BinEnv is the environment variable that, when set, names the redis-server
// binary to run instead of the one found on PATH.
const BinEnv = redisserver.BinEnv

// Option configures a server started by Start, StartMasters or StartMain.
type Option func(*redisserver.Options)

// WithPassword sets requirepass, so clients must AUTH with pw. The zero
// value (no option) starts a server without a password.
func WithPassword(pw string) Option {
	return func(o *redisserver.Options) { o.Password = pw }
}

// WithArgs appends extra redis-server arguments, as on its command line
// (for example "--notify-keyspace-events", "Kgx"). They come after the
// package's own settings, so they can override them. Several WithArgs add up.
func WithArgs(args ...string) Option {
	return func(o *redisserver.Options) { o.Args = append(o.Args, args...) }
}

// Server is one redis-server process started by Start. Its Addr, Password
// and methods (URL, Pid, Kill, Stop, Pause, Resume, Log, Info) are those
// of redisserver.Server; Restart here takes the test.
type Server struct {
	*redisserver.Server
	dir string
}

func options(dir string, opts []Option) redisserver.Options {
	o := redisserver.Options{Dir: dir}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Start starts a redis-server on a free loopback port, waits until it
// answers, and kills it in t.Cleanup, logging its log if the test failed.
// It calls t.Fatalf when the binary is missing (saying how to install it)
// or the server does not come up; it never skips.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	dir := t.TempDir()
	s, err := redisserver.Start(context.Background(), options(dir, opts))
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	cleanup(t, s)
	return &Server{Server: s, dir: dir}
}

// StartMasters starts n independent redis-server masters, as Start does,
// for tests of a quorum over several servers.
func StartMasters(t testing.TB, n int, opts ...Option) []*Server {
	t.Helper()
	servers := make([]*Server, n)
	for i := range servers {
		servers[i] = Start(t, opts...)
	}
	return servers
}

// StartMain is Start for a TestMain, where there is no testing.TB (runnable
// examples need a server too). The caller calls stop when done. The error
// says how to install redis-server when it is missing.
func StartMain(opts ...Option) (s *Server, stop func(), err error) {
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, nil, err
	}
	rs, err := redisserver.Start(context.Background(), options(dir, opts))
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("redistest: %w", err)
	}
	stop = func() {
		rs.Kill()
		os.RemoveAll(dir)
	}
	return &Server{Server: rs, dir: dir}, stop, nil
}

// Client returns a go-redis client for the server, closed in t.Cleanup.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.Password})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Restart kills the server and starts it again on the same port with the
// same settings; since nothing is persisted, its data is lost. It waits
// until the new process answers and calls t.Fatalf when it does not.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.Server.Restart(context.Background()); err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
}

// FlushAll deletes every key in every database (FLUSHALL SYNC), calling
// t.Fatalf on failure.
func (s *Server) FlushAll(t testing.TB) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.Password, MaxRetries: -1})
	defer c.Close()
	if err := c.Do(context.Background(), "FLUSHALL", "SYNC").Err(); err != nil {
		t.Fatalf("redistest: FLUSHALL on %s: %v", s.Addr, err)
	}
}

// StartReplicated starts a master and its replicas (redisserver's
// StartReplicated) in t.TempDir() unless o.Dir is set, and kills them in
// t.Cleanup. It calls t.Fatalf, with the servers' logs, when they do not
// come up.
func StartReplicated(t testing.TB, o redisserver.ReplicatedOptions) *redisserver.Replicated {
	t.Helper()
	o.Dir = dir(t, o.Dir)
	r, err := redisserver.StartReplicated(context.Background(), o)
	if err != nil {
		t.Fatalf("redistest: %v%s", err, logs(o.Dir))
	}
	cleanup(t, r.Servers()...)
	return r
}

// StartSentinel starts a master, its replicas and Sentinels (redisserver's
// StartSentinel) in t.TempDir() unless o.Dir is set, and kills them in
// t.Cleanup. It calls t.Fatalf, with the servers' logs, when they do not
// come up.
func StartSentinel(t testing.TB, o redisserver.SentinelOptions) *redisserver.Sentinel {
	t.Helper()
	o.Dir = dir(t, o.Dir)
	s, err := redisserver.StartSentinel(context.Background(), o)
	if err != nil {
		t.Fatalf("redistest: %v%s", err, logs(o.Dir))
	}
	cleanup(t, s.Servers()...)
	return s
}

// StartCluster starts a Redis Cluster (redisserver's StartCluster) in
// t.TempDir() unless o.Dir is set, and kills its nodes in t.Cleanup. It
// calls t.Fatalf, with the nodes' logs, when they do not come up.
func StartCluster(t testing.TB, o redisserver.ClusterOptions) *redisserver.Cluster {
	t.Helper()
	o.Dir = dir(t, o.Dir)
	c, err := redisserver.StartCluster(context.Background(), o)
	if err != nil {
		t.Fatalf("redistest: %v%s", err, logs(o.Dir))
	}
	cleanup(t, c.Servers()...)
	return c
}

func dir(t testing.TB, d string) string {
	if d == "" {
		d = t.TempDir()
	}
	return d
}

// cleanup kills servers when the test ends, logging the end of their logs
// if it failed.
func cleanup(t testing.TB, servers ...*redisserver.Server) {
	t.Cleanup(func() {
		for _, s := range servers {
			s.Kill()
		}
		if t.Failed() {
			for _, s := range servers {
				t.Logf("redistest: log of %s:\n%s", s.Addr, s.LogTail())
			}
		}
	})
}

// logs returns the end of the log of every server of a topology that did
// not come up, from the sub-directories of dir.
func logs(dir string) string {
	paths, _ := filepath.Glob(filepath.Join(dir, "*", "redis.log"))
	var b strings.Builder
	for _, p := range paths {
		l, _ := os.ReadFile(p)
		if len(l) > 2048 {
			l = l[len(l)-2048:]
		}
		fmt.Fprintf(&b, "\nlog of %s:\n%s", filepath.Base(filepath.Dir(p)), l)
	}
	return b.String()
}
