// Package redisproc runs a real redis-server for the fault tests: on a free
// loopback port, in a temporary directory, without persistence, so that a
// restart loses the data. It can kill, restart (on the same port), pause
// (SIGSTOP) and resume (SIGCONT) it.
//
// The main module's internal/redistest cannot be imported from this module,
// and this one needs only a single server, so it is a small launcher of its
// own rather than a copy.
package redisproc

import (
	"context"
	"errors"
	"fmt"
	"net"
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

// Server is one redis-server process.
type Server struct {
	// Addr is host:port on loopback; it stays the same across restarts.
	Addr string

	dir string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Binary returns the path of redis-server ($REDIS_SERVER_BIN, else PATH),
// or an error that says how to install it.
func Binary() (string, error) {
	if bin := os.Getenv("REDIS_SERVER_BIN"); bin != "" {
		return bin, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redisproc: redis-server not found on PATH: install it (Debian: apt-get install redis-server) or set REDIS_SERVER_BIN")
	}
	return bin, nil
}

// Start starts a server and kills it when the test ends. It fails the test
// when redis-server is missing; it never skips.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{dir: t.TempDir()}
	var err error
	for range 5 {
		var port int
		if port, err = freePort(); err != nil {
			continue
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err = s.launch(); err == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatal(err)
	return nil
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
	logPath := filepath.Join(s.dir, "redis.log")
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--appendonly", "no", "--logfile", logPath)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redisproc: start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			s.mu.Lock()
			s.cmd, s.exited = cmd, exited
			s.mu.Unlock()
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			if len(log) > 500 {
				log = log[len(log)-500:]
			}
			return fmt.Errorf("redisproc: redis-server on %s exited: %s", s.Addr, log)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redisproc: redis-server on %s does not answer: %v", s.Addr, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// URL returns redis://host:port/0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Client returns a go-redis client of the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// signal sends sig to the running server, if any.
func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Kill kills the server (SIGKILL) and waits until it is gone. It is safe to
// call more than once.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Kill()
	<-exited
}

// Restart kills the server and starts a new one on the same port: without
// persistence, every key is lost.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	var err error
	for range 100 {
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("redisproc: restart: %v", err)
}

// Pause stops the server process (SIGSTOP): connections stay open, nothing
// answers, and its clock goes on, so keys expire meanwhile.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

// Pid answers the process id of the running server, 0 when none.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
