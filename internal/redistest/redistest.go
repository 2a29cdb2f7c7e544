// Package redistest starts real redis-server processes for tests, on free
// loopback ports, in temporary directories, and stops them when the test
// ends. There are no mocks: every test talks to a real server.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one running redis-server.
type Server struct {
	// Addr is the server's host:port on loopback.
	Addr string
	// Password is the server's requirepass, "" for none.
	Password string

	args []string
	dir  string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Option configures a Server.
type Option func(*config)

type config struct {
	password string
	args     []string
}

// WithPassword makes the server require password.
func WithPassword(password string) Option {
	return func(c *config) { c.password = password }
}

// WithArgs adds redis-server arguments, such as "--notify-keyspace-events", "KEA".
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Binary returns the path of redis-server ($REDIS_SERVER_BIN, else PATH),
// or an error that says how to install it.
func Binary() (string, error) {
	if bin := os.Getenv("REDIS_SERVER_BIN"); bin != "" {
		return bin, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redistest: redis-server not found on PATH: install it (Debian: apt-get install redis-server) or set REDIS_SERVER_BIN")
	}
	return bin, nil
}

// Start starts a redis-server without persistence on a free port, waits
// until it answers, and kills it when the test ends. It fails the test when
// redis-server is missing; it never skips.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := start(t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

// StartMain is Start for TestMain, where there is no testing.TB: the caller
// calls stop when done.
func StartMain(opts ...Option) (s *Server, stop func(), err error) {
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, nil, err
	}
	s, err = start(dir, opts...)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return s, func() { s.Kill(); os.RemoveAll(dir) }, nil
}

// StartMasters starts n independent servers.
func StartMasters(t testing.TB, n int, opts ...Option) []*Server {
	t.Helper()
	servers := make([]*Server, n)
	for i := range servers {
		servers[i] = Start(t, opts...)
	}
	return servers
}

func start(dir string, opts ...Option) (*Server, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	args := []string{"--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--dir", dir}
	if cfg.password != "" {
		args = append(args, "--requirepass", cfg.password)
	}
	args = append(args, cfg.args...)
	s := &Server{Password: cfg.password, args: args, dir: dir}
	var err error
	for range 5 {
		var port int
		if port, err = freePort(); err != nil {
			continue
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err = s.launch(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// freePort answers a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch runs redis-server on s.Addr and waits until it answers PING.
func (s *Server) launch() error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{"--port", port}, s.args...)
	cmd := exec.Command(bin, args...)
	logf, err := os.Create(filepath.Join(s.dir, "redis-"+port+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()

	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.Password, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logf.Name())
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			return fmt.Errorf("redistest: redis-server on %s exited (%v): %s", s.Addr, err, lastLines(string(log)))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			s.mu.Lock()
			s.cmd = cmd
			s.mu.Unlock()
			go func() { // reap: the waiter above owns Wait
				<-exited
			}()
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redistest: redis-server on %s does not answer: %v", s.Addr, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func lastLines(s string) string {
	if len(s) > 500 {
		return s[len(s)-500:]
	}
	return s
}

// URL returns redis://[:password@]host:port/0.
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr, Path: "/0"}
	if s.Password != "" {
		u.User = url.UserPassword("", s.Password)
	}
	return u.String()
}

// Client returns a go-redis client of the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.Password})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// signal sends sig to the server and, for a fatal one, waits until it died.
func (s *Server) signal(sig syscall.Signal, wait bool) {
	s.mu.Lock()
	cmd := s.cmd
	if wait {
		s.cmd = nil
	}
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if wait {
		// Wait is owned by the reaper goroutine; poll until the process
		// is gone.
		for cmd.Process.Signal(syscall.Signal(0)) == nil {
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// Kill kills the server with SIGKILL and waits for its end. It is safe to
// call more than once.
func (s *Server) Kill() {
	s.Resume()
	s.signal(syscall.SIGKILL, true)
}

// Stop stops the server with SIGTERM and waits for its end.
func (s *Server) Stop() {
	s.Resume()
	s.signal(syscall.SIGTERM, true)
}

// Pause stops the server's process (SIGSTOP): connections stay open but
// nothing answers.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP, false) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT, false) }

// Restart kills the server and starts it again on the same port with the
// same arguments: without persistence, its data is lost.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	var err error
	for range 50 {
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("redistest: restart: %v", err)
}

// FlushAll deletes every key of the server.
func (s *Server) FlushAll(t testing.TB) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.Password})
	defer rdb.Close()
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatalf("redistest: FLUSHALL: %v", err)
	}
}
