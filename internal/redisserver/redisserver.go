// Package redisserver starts real redis-server processes: single servers
// and three topologies, a master with replicas (StartReplicated), a
// Sentinel set (StartSentinel) and a Cluster (StartCluster).
//
// Every server listens on a free loopback port, keeps its redis.conf, log
// and working files in a directory the caller gives, and persists nothing
// (save "" and appendonly no), so that a restart loses its data. It can be
// killed, stopped, restarted on the same port, paused and resumed. The
// package reports failures as errors and never touches a testing.TB:
// internal/redistest wraps it for tests, and the demo command and the
// benchmark harness use it directly.
//
// The methods of Server and of the topologies may be called from any
// goroutine. Linux kills every server when the process that started it
// dies; elsewhere the caller must Kill them.
package redisserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BinEnv is the environment variable that, when set, names the redis-server
// binary to run instead of the one found on PATH.
const BinEnv = "REDIS_SERVER_BIN"

// ErrNotFound is returned by Binary, and by every function that starts a
// server, when redis-server is neither named by BinEnv nor on PATH. Its
// message says how to install it.
var ErrNotFound = errors.New("redisserver: redis-server is not on PATH and " + BinEnv + " is not set; " +
	"install it with `apt-get install redis-server` (Debian/Ubuntu; `brew install redis` on macOS), " +
	"or set " + BinEnv + " to its path")

const (
	startTimeout = 15 * time.Second // from exec to an INFO answered by our process
	startTries   = 5                // fresh ports tried when the chosen one is taken
	stopTimeout  = 10 * time.Second // Stop's wait for a graceful exit before SIGKILL
	logTailBytes = 4 << 10
)

// Binary returns the path of the redis-server binary: the one BinEnv
// names, else the one on PATH. It returns ErrNotFound when there is none,
// and an error naming BinEnv and its value when that is not an executable.
func Binary() (string, error) {
	if bin := os.Getenv(BinEnv); bin != "" {
		path, err := exec.LookPath(bin)
		if err != nil {
			return "", fmt.Errorf("redisserver: %s=%q is not an executable: %w", BinEnv, bin, err)
		}
		return path, nil
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", ErrNotFound
	}
	return path, nil
}

// Options configures a server. Only Dir is required.
type Options struct {
	// Dir is an existing directory for the server's redis.conf, log
	// (redis.log) and working files. The caller owns it: the package
	// neither creates nor removes it. A topology makes one sub-directory
	// per server in it.
	Dir string
	// Bin is the redis-server binary; "" means Binary's.
	Bin string
	// Password sets requirepass (and masterauth, so that replicas of a
	// topology can sync); "" starts a server without one.
	Password string
	// Args are extra redis-server arguments, as on its command line (for
	// example "--notify-keyspace-events", "Kgx"). They come after the
	// package's own settings, so they can override them. A topology gives
	// them to its data servers, not to its Sentinels.
	Args []string
	// CPUs, when not "", runs the server under `taskset -c CPUs` (a CPU
	// list such as "1" or "0,2-3"); starting fails when taskset is missing.
	CPUs string

	conf     string // extra redis.conf lines, from a topology
	sentinel bool   // run as a Sentinel
	bus      bool   // a Cluster node: takes a second port for the cluster bus
}

// Server is one redis-server process started by Start or by a topology.
//
// Addr and Password are set when it starts and must not be changed.
type Server struct {
	// Addr is the server's host:port, on 127.0.0.1. Restart keeps it.
	Addr string
	// Password is Options.Password ("" for a Sentinel).
	Password string

	name    string   // program to exec: bin, or taskset
	argv    []string // its arguments up to the config file
	conf    string   // path of the generated redis.conf
	logPath string
	o       Options

	mu     sync.Mutex
	p      *proc // current process; nil before the first start
	paused bool
	ports  []int // the client port, and the cluster bus port of a Cluster node
}

// proc is one run of redis-server. done is closed once Wait has reaped it.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, valid after done is closed
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start starts a redis-server on a free loopback port and waits until it
// answers as the process started (INFO reports its pid, so a stranger that
// grabbed the port is not taken for it). A port taken between its choice
// and the bind is retried with a fresh one. It returns ErrNotFound when the
// binary is missing, and an error with the end of the server's log when it
// does not come up before ctx is done or 15 seconds have passed; the
// process is then gone.
func Start(ctx context.Context, o Options) (*Server, error) {
	s, err := newServer(o)
	if err != nil {
		return nil, err
	}
	nports := 1
	if o.bus {
		nports = 2
	}
	for range startTries {
		ports, err := freePorts(nports)
		if err != nil {
			return nil, fmt.Errorf("redisserver: find a free port: %w", err)
		}
		err = s.start(ctx, ports)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errAddrInUse) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("redisserver: start %s: no free port after %d tries", s.name, startTries)
}

// newServer resolves the binary and writes redis.conf.
func newServer(o Options) (*Server, error) {
	if o.Dir == "" {
		return nil, errors.New("redisserver: Options.Dir is empty")
	}
	bin := o.Bin
	if bin == "" {
		var err error
		if bin, err = Binary(); err != nil {
			return nil, err
		}
	}
	s := &Server{
		Password: o.Password,
		name:     bin,
		conf:     filepath.Join(o.Dir, "redis.conf"),
		logPath:  filepath.Join(o.Dir, "redis.log"),
		o:        o,
	}
	if o.sentinel {
		s.Password = ""
		// redis-sentinel is redis-server under another name; without one
		// beside the server binary, the flag does the same.
		if sb := filepath.Join(filepath.Dir(bin), "redis-sentinel"); isExecutable(sb) {
			s.name = sb
		} else {
			s.argv = []string{"--sentinel"}
		}
	}
	s.argv = append([]string{s.conf}, s.argv...)
	if o.CPUs != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("redisserver: pin to CPUs %s: taskset (util-linux) is not on PATH", o.CPUs)
		}
		// taskset execs the server, so the pid stays the server's.
		s.argv = append([]string{"-c", o.CPUs, s.name}, s.argv...)
		s.name = ts
	}
	if err := os.WriteFile(s.conf, []byte(s.config()), 0o600); err != nil {
		return nil, fmt.Errorf("redisserver: write config: %w", err)
	}
	return s, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// config is the redis.conf shared by every run of the server; the ports
// are given on the command line.
func (s *Server) config() string {
	c := confLine("bind", "127.0.0.1") +
		confLine("dir", s.o.Dir) +
		confLine("daemonize", "no") +
		confLine("save", "") +
		confLine("appendonly", "no") +
		confLine("logfile", "") // stdout, which start sends to redis.log
	if !s.o.sentinel {
		// A diskless sync makes the master hold back writes until the
		// replica's first acknowledgement, which may come a second late.
		// Synced through a file, the replica gets them at once; start
		// deletes the file.
		c += confLine("repl-diskless-sync", "no")
	}
	if s.Password != "" {
		c += confLine("requirepass", s.Password) + confLine("masterauth", s.Password)
	}
	return c + s.o.conf
}

// confLine returns the redis.conf line setting k to the values v.
func confLine(k string, v ...string) string {
	var b strings.Builder
	b.WriteString(k)
	for _, x := range v {
		b.WriteByte(' ')
		b.WriteString(quote(x))
	}
	b.WriteByte('\n')
	return b.String()
}

// quote writes v as a double-quoted redis.conf string, which redis's
// sdssplitargs reads back byte for byte.
func quote(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

var errAddrInUse = errors.New("address already in use")

// start runs the server on ports and waits until it answers. On failure
// the process is reaped before start returns.
func (s *Server) start(ctx context.Context, ports []int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	// Nothing persists: not even the RDB file of a replica's sync.
	if err := os.Remove(filepath.Join(s.o.Dir, "dump.rdb")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("redisserver: %w", err)
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("redisserver: open log: %w", err)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	args := append(append([]string(nil), s.argv...), "--port", strconv.Itoa(ports[0]))
	if len(ports) > 1 {
		args = append(args, "--cluster-port", strconv.Itoa(ports[1]))
	}
	args = append(args, s.o.Args...)
	cmd := exec.Command(s.name, args...)
	cmd.Dir = s.o.Dir
	cmd.Stdout = logf // an *os.File is handed to the child: no copying goroutine
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return fmt.Errorf("redisserver: start %s: %w", s.name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	s.mu.Lock()
	s.p = p
	s.paused = false
	s.ports = ports
	s.mu.Unlock()
	if s.Addr != addr {
		// Only while Start retries ports, before anyone else sees s;
		// Restart keeps the port, so Addr is never written while others
		// read it.
		s.Addr = addr
	}

	if err := s.waitReady(ctx, p); err != nil {
		exitedAlone := p.exited()
		s.Kill()
		log := s.logSince(logStart)
		if exitedAlone && strings.Contains(log, "Address already in use") {
			return fmt.Errorf("port %v: %w", ports, errAddrInUse)
		}
		return fmt.Errorf("redisserver: %s on %s: %w; its log ends:\n%s", filepath.Base(s.name), addr, err, tail(log, 1024))
	}
	return nil
}

// waitReady polls until the server at s.Addr is p (INFO's process_id is
// p's pid) and answers.
func (s *Server) waitReady(ctx context.Context, p *proc) error {
	want := strconv.Itoa(p.cmd.Process.Pid)
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var lastErr error
	for {
		if p.exited() {
			return fmt.Errorf("exited before it was ready: %v", p.err)
		}
		info, err := s.Info(ctx, "server")
		if err == nil {
			if InfoField(info, "process_id") == want {
				return nil
			}
			err = errors.New("another server answers on its port")
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last: %v)", ctx.Err(), lastErr)
		case <-p.done:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// URL returns redis://[:password@]host:port/0.
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr, Path: "/0"}
	if s.Password != "" {
		u.User = url.UserPassword("", s.Password)
	}
	return u.String()
}

// Pid returns the process id of the running server, or 0 when it is not
// running.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil || s.p.exited() {
		return 0
	}
	return s.p.cmd.Process.Pid
}

// Kill sends SIGKILL to the server (and any child it forked) and waits
// until it is reaped. It does nothing when the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	p := s.p
	s.paused = false
	if p != nil && !p.exited() {
		signal(p, syscall.SIGKILL)
	}
	s.mu.Unlock()
	if p != nil {
		<-p.done
	}
}

// Stop shuts the server down gracefully (SHUTDOWN NOSAVE NOW, or SIGTERM
// when that cannot be sent), resuming it first if paused, and waits until
// it has exited, killing it if it has not within 10 seconds. It does
// nothing when the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.p
	if p == nil || p.exited() {
		s.mu.Unlock()
		return
	}
	if s.paused {
		signal(p, syscall.SIGCONT)
		s.paused = false
	}
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// NOW skips waiting for lagging replicas (Redis 7); older servers
	// reject it, and then get the plain form.
	_, err := s.do(ctx, "SHUTDOWN", "NOSAVE", "NOW")
	if isReply(err) {
		_, err = s.do(ctx, "SHUTDOWN", "NOSAVE")
	}
	if err != nil && !isClosedConn(err) {
		s.mu.Lock()
		if !p.exited() {
			signal(p, syscall.SIGTERM)
		}
		s.mu.Unlock()
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		s.Kill()
	}
}

// Restart kills the server and starts it again on the same port (and
// cluster bus port) with the same settings; its data is lost, while a
// Cluster node keeps its identity (nodes.conf) and a Sentinel its
// configuration. It waits until the new process answers, and returns an
// error when it does not.
func (s *Server) Restart(ctx context.Context) error {
	s.Kill()
	s.mu.Lock()
	ports := s.ports
	s.mu.Unlock()
	// The port is normally free at once (redis sets SO_REUSEADDR); retry
	// briefly in case the kernel has not released it yet.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.start(ctx, ports)
		if err == nil || !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pause stops the server process with SIGSTOP: it keeps its connections
// open but answers nothing until Resume. It does nothing when the server
// is not running.
func (s *Server) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil && !s.p.exited() {
		signal(s.p, syscall.SIGSTOP)
		s.paused = true
	}
}

// Resume continues a server stopped by Pause with SIGCONT.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil && !s.p.exited() {
		signal(s.p, syscall.SIGCONT)
	}
	s.paused = false
}

// Log returns the server's log so far (all runs, including restarts).
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// LogTail returns the last 4 KiB of the server's log.
func (s *Server) LogTail() string {
	return tail(s.Log(), logTailBytes)
}

func (s *Server) logSince(off int64) string {
	b, _ := os.ReadFile(s.logPath)
	if off > int64(len(b)) {
		return ""
	}
	return string(b[off:])
}

// tail returns the last n bytes of l, marked as cut when they are not all.
func tail(l string, n int) string {
	if len(l) > n {
		l = "..." + l[len(l)-n:]
	}
	return l
}

// freePorts asks the kernel for n free loopback ports. Another process may
// take one before redis binds it; start reports that as errAddrInUse and
// Start tries others.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // held until all are chosen, so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
