package cli

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

// localRedis is a throwaway redis-server that the demo started.
type localRedis struct {
	cmd    *exec.Cmd
	dir    string
	addr   string
	exited chan struct{}
}

// errNoRedisServer says how to get a Redis for the demo.
var errNoRedisServer = errors.New("redis-server is not installed. Install it (Debian, Ubuntu: sudo apt-get install redis-server; " +
	"Fedora: sudo dnf install redis; macOS: brew install redis) or point reserve demo at a Redis with --redis URL")

// startRedis starts redis-server on a free loopback port, in a temporary
// directory, without persistence, and waits until it answers.
func startRedis(ctx context.Context) (*localRedis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errNoRedisServer
	}
	dir, err := os.MkdirTemp("", "reserve-demo-")
	if err != nil {
		return nil, err
	}
	for try := 0; ; try++ {
		l, err := startRedisOn(ctx, bin, dir)
		if err == nil || try == 2 || ctx.Err() != nil {
			if err != nil {
				os.RemoveAll(dir)
			}
			return l, err
		}
	}
}

func startRedisOn(ctx context.Context, bin, dir string) (*localRedis, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logFile := filepath.Join(dir, "redis.log")
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--loglevel", "warning", "--logfile", logFile)
	// Its own process group, so that a Ctrl-C at the terminal reaches the
	// demo, which stops it; on Linux it dies with the demo, even by kill -9.
	cmd.SysProcAttr = sysProcAttr(-1)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	l := &localRedis{cmd: cmd, dir: dir, addr: addr, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(l.exited)
	}()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := rdb.Ping(pctx).Err()
		cancel()
		if err == nil {
			return l, nil
		}
		select {
		case <-l.exited:
			log, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("redis-server exited at start: %s", lastLine(string(log)))
		case <-ctx.Done():
			l.kill()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			l.kill()
			return nil, fmt.Errorf("redis-server did not answer on %s within 5s", addr)
		}
	}
}

// stop shuts the server down and deletes its directory.
func (l *localRedis) stop() {
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.exited:
	case <-time.After(3 * time.Second):
		l.kill()
	}
	os.RemoveAll(l.dir)
}

func (l *localRedis) kill() {
	_ = l.cmd.Process.Kill()
	<-l.exited
}

// freePort answers a TCP port free on the loopback interface right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// lastLine answers the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
