// Package nodeinterop runs workers of the Node library redis-reservation
// (interop/node/worker.js) against a redistest server, so that tests can
// check that Go and Node workers exclude each other on one Redis.
//
// A worker prints one JSON event per line; Proc hands them to the test as
// they come (Next, Expect) and keeps them all (Events) for history checks.
// See interop/node/worker.js for its modes, flags and events, and
// interop/node/README.md for the Node library's protocol.
//
// Functions and methods that take a testing.TB call its Fatalf, so they must
// be called from the goroutine running the test.
package nodeinterop

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/internal/redistest"
)

// Event is one line printed by worker.js. Fields a given event does not
// carry are zero.
type Event struct {
	Event string `json:"event"`
	// T is when the worker printed the event, in milliseconds since the
	// Unix epoch (Date.now()).
	T int64 `json:"t"`

	Key    string `json:"key"`    // acquired, wait_done, start
	Status bool   `json:"status"` // lock: whether this attempt acquired it
	Error  string `json:"error"`  // lock, wait_done, released, uncaught
	Lost   bool   `json:"lost"`   // uncaught: the library had flagged the reservation lost
	// AfterRelease marks an uncaught exception thrown after a successful
	// release (a heartbeat racing release(), see interop/node/README.md);
	// it does not change the exit code.
	AfterRelease bool `json:"after_release"`
	Code         int  `json:"code"` // exit: the worker's exit code

	// start only
	Mode     string `json:"mode"`
	Resource string `json:"resource"`
	Value    string `json:"value"` // the holder value the library writes
	Pid      int    `json:"pid"`

	// Reply is the library's callback value: release's DEL count (or
	// true), wait_until_lock's boolean.
	Reply json.RawMessage `json:"reply"`
	// Line is the whole line as printed.
	Line string `json:"-"`
}

// Time returns T as a time.Time.
func (e Event) Time() time.Time { return time.UnixMilli(e.T) }

// ErrExited is returned by Next when the worker has exited and every event
// has been read.
var ErrExited = errors.New("nodeinterop: worker exited")

// ErrTimeout is returned by Next when no event came in time.
var ErrTimeout = errors.New("nodeinterop: timed out waiting for an event")

// Proc is one running worker.js.
type Proc struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	args  []string

	mu      sync.Mutex
	queue   []Event       // not yet returned by Next
	all     []Event       // every event, in order
	notify  chan struct{} // closed and replaced when an event arrives or stdout ends
	eof     bool
	stderr  lockedBuffer
	done    chan struct{} // closed once the process is reaped
	waitErr error
}

// Worker starts `node interop/node/worker.js args...` with REDIS_HOST,
// REDIS_PORT and REDIS_PASSWORD set for srv, for example
//
//	nodeinterop.Worker(t, srv, "lock", "invoice:42", "500", "--ttl=5", "--heartbeat=1000")
//
// JOB_ID is removed from the worker's environment (the library would use it
// instead of the pid in its holder value) unless args set --job-id. The
// worker is killed in t.Cleanup if still running, and its stderr (the
// library's logs) is logged when the test failed. Worker calls t.Fatalf
// when node or the worker's npm dependencies are missing, saying how to
// install them.
func Worker(t testing.TB, srv *redistest.Server, args ...string) *Proc {
	t.Helper()
	root := repoRoot(t)
	dir := filepath.Join(root, "interop", "node")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("nodeinterop: node is not on PATH; the Node interop tests run the real Node library. "+
			"Install Node.js (`apt-get install nodejs npm` on Debian/Ubuntu), then run `cd %s && npm ci`", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "redis-reservation", "package.json")); err != nil {
		t.Fatalf("nodeinterop: the Node worker's dependencies are not installed (%v); run `cd %s && npm ci`", err, dir)
	}
	host, port, err := net.SplitHostPort(srv.Addr)
	if err != nil {
		t.Fatalf("nodeinterop: bad server address %q: %v", srv.Addr, err)
	}

	cmd := exec.Command(node, append([]string{filepath.Join(dir, "worker.js")}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(os.Environ()),
		"REDIS_HOST="+host, "REDIS_PORT="+port, "REDIS_PASSWORD="+srv.Password)
	p := &Proc{t: t, cmd: cmd, args: args, notify: make(chan struct{}), done: make(chan struct{})}
	cmd.Stderr = &p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("nodeinterop: %v", err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatalf("nodeinterop: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("nodeinterop: start %s: %v", cmd, err)
	}
	go p.read(stdout)
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("nodeinterop: worker %v: exit %v, events:\n%sstderr:\n%s", args, p.waitErr, p.eventLines(), p.Stderr())
		}
	})
	return p
}

// cleanEnv drops the variables the worker or the library read, so that
// the test process's environment cannot change what a worker does.
func cleanEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "JOB_ID",
			"WORKER_BY", "LOCK_TTL", "HEARTBEAT_MS", "NODE_OPTIONS":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// read parses stdout until EOF, then reaps the process (StdoutPipe must be
// read to the end before Wait).
func (p *Proc) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Event == "" {
			e = Event{Event: "garbage", Error: fmt.Sprintf("not an event: %v", err)}
		}
		e.Line = line
		p.mu.Lock()
		p.queue = append(p.queue, e)
		p.all = append(p.all, e)
		close(p.notify)
		p.notify = make(chan struct{})
		p.mu.Unlock()
	}
	// Drain on a scanner error too, so the worker never blocks writing.
	_, _ = io.Copy(io.Discard, stdout)
	err := p.cmd.Wait()
	p.mu.Lock()
	p.eof = true
	p.waitErr = err
	close(p.notify)
	p.mu.Unlock()
	close(p.done)
}

// Next returns the next event, waiting up to timeout for it. It returns
// ErrExited when the worker has exited and all its events have been read,
// and ErrTimeout when none came in time.
func (p *Proc) Next(timeout time.Duration) (Event, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		p.mu.Lock()
		if len(p.queue) > 0 {
			e := p.queue[0]
			p.queue = p.queue[1:]
			p.mu.Unlock()
			return e, nil
		}
		if p.eof {
			p.mu.Unlock()
			return Event{}, ErrExited
		}
		ch := p.notify
		p.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return Event{}, ErrTimeout
		}
	}
}

// Expect reads events until one named name and returns it, calling
// t.Fatalf if the worker exits or timeout passes first. Events skipped on
// the way stay in Events.
func (p *Proc) Expect(t testing.TB, name string, timeout time.Duration) Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		e, err := p.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("nodeinterop: worker %v: waiting for event %q: %v; events so far:\n%s\nstderr:\n%s",
				p.args, name, err, p.eventLines(), p.Stderr())
		}
		if e.Event == name {
			return e
		}
	}
}

// Events returns every event the worker has printed so far, including
// those already returned by Next.
func (p *Proc) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.all...)
}

func (p *Proc) eventLines() string {
	var b strings.Builder
	for _, e := range p.Events() {
		b.WriteString(e.Line)
		b.WriteByte('\n')
	}
	return b.String()
}

// Release closes the worker's stdin, which makes a worker started with
// HOLD_MS -1 release and exit.
func (p *Proc) Release() {
	_ = p.stdin.Close()
}

// Signal sends sig to the worker; SIGTERM makes a holding worker release
// and exit. It does nothing once the worker has exited.
func (p *Proc) Signal(sig os.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// Kill kills the worker with SIGKILL, as `kill -9` would (it cannot
// release), and waits until it is reaped.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Wait waits for the worker to exit and for all its output to be read, and
// returns its exit status as exec.Cmd.Wait does (an *exec.ExitError for a
// non-zero exit). Exit codes: 0 done, 1 uncaught error, 2 bad usage,
// 3 lock mode and not acquired.
func (p *Proc) Wait() error {
	<-p.done
	return p.waitErr
}

// ExitCode returns the worker's exit code, or -1 while it runs or when a
// signal killed it.
func (p *Proc) ExitCode() int {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Pid returns the worker's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Stderr returns what the worker has written to stderr so far: the Node
// library's kayvee log lines and any crash report.
func (p *Proc) Stderr() string { return p.stderr.String() }

// repoRoot walks up from the working directory to the directory with go.mod
// and interop/node/worker.js.
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("nodeinterop: %v", err)
	}
	for dir := wd; ; {
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "interop", "node", "worker.js")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("nodeinterop: no go.mod with interop/node/worker.js above %s", wd)
		}
		dir = parent
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
