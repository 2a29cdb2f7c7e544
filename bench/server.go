package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// server is one redis-server started for a bench run, without persistence,
// on a free loopback port. It is this module's own launcher: the library's
// internal/redistest cannot be imported from another module.
type server struct {
	addr    string
	dir     string
	cmd     *exec.Cmd
	exited  chan error
	version string
	pinned  string // the CPU list it runs on, "" when not pinned
}

// startServer starts redis-server (REDIS_SERVER_BIN, else from PATH). When
// cpus is not empty and taskset exists, the server is pinned to those CPUs.
func startServer(cpus string) (*server, error) {
	bin := os.Getenv("REDIS_SERVER_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			return nil, errors.New("bench: redis-server not found on PATH: install it (Debian: apt-get install redis-server) or set REDIS_SERVER_BIN")
		}
	}
	dir, err := os.MkdirTemp("", "reservation-bench-")
	if err != nil {
		return nil, err
	}
	for range 5 {
		var s *server
		if s, err = launch(bin, dir, cpus); err == nil {
			return s, nil
		}
	}
	os.RemoveAll(dir)
	return nil, err
}

func launch(bin, dir, cpus string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir}
	name := bin
	s := &server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, exited: make(chan error, 1)}
	if cpus != "" {
		if ts, err := exec.LookPath("taskset"); err == nil {
			name = ts
			args = append([]string{"-c", cpus, bin}, args...)
			s.pinned = cpus
		}
	}
	s.cmd = exec.Command(name, args...)
	logf, err := os.Create(filepath.Join(dir, "redis-"+strconv.Itoa(port)+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", bin, err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	rdb := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-s.exited:
			out, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("bench: redis-server on %s exited (%v): %s", s.addr, err, tail(string(out), 400))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		info, err := rdb.Info(ctx, "server").Result()
		cancel()
		if err == nil {
			s.version = infoField(info, "redis_version")
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("bench: redis-server on %s does not answer: %v", s.addr, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop kills the server and removes its directory.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// infoField returns the value of field in the text of INFO.
func infoField(info, field string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
