// Package redistest starts real redis-server processes for tests.
//
// Each server listens on a free loopback port, keeps its files in
// t.TempDir(), has no persistence (save "" and appendonly no) and is killed in
// t.Cleanup. There are no mocks: tests that use this package need the
// redis-server binary, and fail (never skip) when it is missing.
//
// Functions that take a testing.TB call its Fatalf, so they must be called
// from the goroutine running the test. Methods that do not take one (Kill,
// Stop, Pause, Resume) are safe to call from any goroutine.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// BinEnv is the environment variable that, when set, names the redis-server
// binary to run instead of the one found on PATH.
const BinEnv = "REDIS_SERVER_BIN"

const (
	startTimeout = 15 * time.Second // from exec to a PING answered by our process
	startTries   = 5                // fresh ports tried when the chosen one is taken
	stopTimeout  = 10 * time.Second // Stop's wait for a graceful exit before SIGKILL
	dialTimeout  = time.Second
	logTailBytes = 4 << 10
)

// Option configures a server started by Start or StartMasters.
type Option func(*config)

type config struct {
	password string
	args     []string
}

// WithPassword sets requirepass, so clients must AUTH with pw. The zero
// value (no option) starts a server without a password.
func WithPassword(pw string) Option {
	return func(c *config) { c.password = pw }
}

// WithArgs appends extra redis-server arguments, as on its command line
// (for example "--notify-keyspace-events", "Kgx"). They come after the
// package's own settings, so they can override them. Several WithArgs add up.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Server is one redis-server process started by Start.
//
// Addr and Password are set by Start and must not be changed.
type Server struct {
	// Addr is the server's host:port, on 127.0.0.1.
	Addr string
	// Password is the requirepass set with WithPassword, or "".
	Password string

	bin     string
	dir     string
	conf    string // path of the generated redis.conf
	logPath string
	args    []string // extra args from WithArgs
	port    int

	mu     sync.Mutex
	p      *proc // current process; nil before the first start
	paused bool
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

// Start starts a redis-server on a free loopback port, waits until it answers
// (INFO reports this process's pid, so a stranger that grabbed the port is
// not taken for it), and kills it in t.Cleanup, logging its log if the test
// failed. A port taken between choice and bind is retried with a fresh one.
// It calls t.Fatalf when the binary is missing (saying how to install it) or
// the server does not come up; it never skips.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	bin := findBinary(t)
	dir := t.TempDir()
	s := &Server{
		Password: c.password,
		bin:      bin,
		dir:      dir,
		conf:     filepath.Join(dir, "redis.conf"),
		logPath:  filepath.Join(dir, "redis.log"),
		args:     append([]string(nil), c.args...),
	}
	if err := os.WriteFile(s.conf, []byte(s.config()), 0o600); err != nil {
		t.Fatalf("redistest: write config: %v", err)
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("redistest: log of redis-server %s:\n%s", s.Addr, s.logTail())
		}
	})

	var lastErr error
	for range startTries {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		err = s.start(port)
		if err == nil {
			return s
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	t.Fatalf("redistest: start %s: %v\nlog:\n%s", bin, lastErr, s.logTail())
	return nil
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

// URL returns redis://[:password@]host:port/0.
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr, Path: "/0"}
	if s.Password != "" {
		u.User = url.UserPassword("", s.Password)
	}
	return u.String()
}

// Client returns a go-redis client for the server, closed in t.Cleanup.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.Password})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Pid returns the process id of the running redis-server, or 0 when it is
// not running.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil || s.p.exited() {
		return 0
	}
	return s.p.cmd.Process.Pid
}

// Kill sends SIGKILL to the server (and any child it forked) and waits until
// it is reaped. It does nothing when the server is not running.
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

// Stop shuts the server down gracefully (SHUTDOWN NOSAVE, or SIGTERM when
// that cannot be sent) and waits until it has exited, killing it if it has
// not done so within 10 seconds. It does nothing when the server is not
// running.
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

	// NOW skips waiting for lagging replicas (Redis 7); older servers reject
	// it, and then get the plain form.
	_, err := command(s.Addr, s.Password, "SHUTDOWN", "NOSAVE", "NOW")
	var re redisError
	if errors.As(err, &re) {
		_, err = command(s.Addr, s.Password, "SHUTDOWN", "NOSAVE")
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

// Restart kills the server and starts it again on the same port with the
// same settings; since nothing is persisted, its data is lost. It waits
// until the new process answers PING and calls t.Fatalf when it does not.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	// The port is normally free at once (redis sets SO_REUSEADDR); retry
	// briefly in case the kernel has not released it yet.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.start(s.port)
		if err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			t.Fatalf("redistest: restart redis-server on %s: %v\nlog:\n%s", s.Addr, err, s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pause stops the server process with SIGSTOP: it keeps its connections
// open but answers nothing until Resume. It does nothing when the server is
// not running.
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

// FlushAll deletes every key in every database (FLUSHALL SYNC), calling
// t.Fatalf on failure.
func (s *Server) FlushAll(t testing.TB) {
	t.Helper()
	if _, err := command(s.Addr, s.Password, "FLUSHALL", "SYNC"); err != nil {
		t.Fatalf("redistest: FLUSHALL on %s: %v", s.Addr, err)
	}
}

// Log returns the server's log so far (all runs, including restarts).
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// config is the redis.conf shared by every run of the server; the port is
// given on the command line.
func (s *Server) config() string {
	var b strings.Builder
	line := func(k string, v ...string) {
		b.WriteString(k)
		for _, x := range v {
			b.WriteByte(' ')
			b.WriteString(quote(x))
		}
		b.WriteByte('\n')
	}
	line("bind", "127.0.0.1")
	line("dir", s.dir)
	line("daemonize", "no")
	line("save", "")
	line("appendonly", "no")
	line("logfile", "")
	if s.Password != "" {
		line("requirepass", s.Password)
	}
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

// start runs redis-server on port and waits until it answers. On failure
// the process is reaped before start returns.
func (s *Server) start(port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	args := append([]string{s.conf, "--port", strconv.Itoa(port)}, s.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout = logf // an *os.File is handed to the child: no copying goroutine
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	s.mu.Lock()
	s.p = p
	s.paused = false
	s.port = port
	s.mu.Unlock()
	if s.Addr != addr {
		// Only while Start or StartMain retries ports, before anyone else
		// sees s; Restart keeps the port, so Addr is never written
		// while tests read it.
		s.Addr = addr
	}

	if err := waitReady(p, addr, s.Password); err != nil {
		exitedAlone := p.exited()
		s.Kill()
		if exitedAlone && strings.Contains(s.logSince(logStart), "Address already in use") {
			return fmt.Errorf("port %d: %w", port, errAddrInUse)
		}
		return err
	}
	return nil
}

// waitReady polls until the server at addr is our process (INFO's
// process_id is p's pid, so a stranger that owns the port is not mistaken
// for ours) and answers.
func waitReady(p *proc, addr, password string) error {
	want := "process_id:" + strconv.Itoa(p.cmd.Process.Pid) + "\r\n"
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for {
		if p.exited() {
			return fmt.Errorf("redis-server exited before it was ready: %v", p.err)
		}
		info, err := command(addr, password, "INFO", "server")
		if err == nil {
			if strings.Contains(info, want) {
				return nil
			}
			err = fmt.Errorf("another server answers on %s", addr)
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server not ready on %s after %v: %v", addr, startTimeout, lastErr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) logTail() string {
	l := s.Log()
	if len(l) > logTailBytes {
		l = "..." + l[len(l)-logTailBytes:]
	}
	return l
}

func (s *Server) logSince(off int64) string {
	b, _ := os.ReadFile(s.logPath)
	if off > int64(len(b)) {
		return ""
	}
	return string(b[off:])
}

func findBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv(BinEnv); bin != "" {
		path, err := exec.LookPath(bin)
		if err != nil {
			t.Fatalf("redistest: %s=%q is not an executable: %v", BinEnv, bin, err)
		}
		return path
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server is not on PATH and %s is not set; these tests run a real Redis. "+
			"Install it with `apt-get install redis-server` (Debian/Ubuntu; `brew install redis` on macOS), "+
			"or set %s to its path", BinEnv, BinEnv)
	}
	return path
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before redis binds it; start reports that as errAddrInUse and
// Start tries another.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// redisError is an error reply (-ERR ...) from the server.
type redisError string

func (e redisError) Error() string { return string(e) }

func isClosedConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF)
}

// command sends one command on a fresh connection (after AUTH when password
// is set) and returns a simple, integer or bulk string reply. It is a tiny
// RESP2 client so that starting and stopping servers needs no goroutines or
// pools.
func command(addr, password string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if password != "" {
		writeCommand(&buf, "AUTH", password)
	}
	writeCommand(&buf, args...)
	if _, err := conn.Write(buf.Bytes()); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	if password != "" {
		if _, err := readReply(r); err != nil {
			return "", fmt.Errorf("AUTH: %w", err)
		}
	}
	return readReply(r)
}

func writeCommand(w *bytes.Buffer, args ...string) {
	fmt.Fprintf(w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(w, "$%d\r\n%s\r\n", len(a), a)
	}
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("bad reply %q", line)
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", redisError(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("bad reply %q", line)
		}
		if n < 0 {
			return "", nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	default:
		return "", fmt.Errorf("unexpected reply %q", line)
	}
}
