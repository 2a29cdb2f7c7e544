package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// reserveBin is the reserve binary built by TestMain.
var reserveBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "reserve-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	reserveBin = filepath.Join(dir, "reserve")
	args := []string{"build", "-o", reserveBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/redis-reservation/reservation/cmd/reserve")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build reserve: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		err := goleak.Find()
		if err != nil {
			// go-redis redials a server that refused a connection once a
			// second, in a goroutine that sees its client closed only
			// when it wakes: a test that ends right after closing a
			// client of a dead server leaves it for up to a second.
			time.Sleep(1100 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// startTestRedis starts a Redis for one test, with its restart guard primed
// (the server is brand new), as a deployment's long-lived server has it.
func startTestRedis(t *testing.T, opts ...redistest.Option) *redistest.Server {
	t.Helper()
	srv := redistest.Start(t, opts...)
	c := libClient(t, srv, "primer", time.Second)
	if primed, err := c.PrimeRestartGuard(context.Background()); err != nil || !primed {
		t.Fatalf("PrimeRestartGuard = %v, %v; want true, nil", primed, err)
	}
	return srv
}

// libClient returns a library Client on srv, closed at the end of the test.
func libClient(t *testing.T, srv *redistest.Server, by string, ttl time.Duration) *reservation.Client {
	t.Helper()
	c, err := reservation.New(srv.URL(), &reservation.Options{By: by, TTL: ttl, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("reservation.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// hold takes resource with c and fails the test when it cannot.
func hold(t *testing.T, c *reservation.Client, resource string) *reservation.Reservation {
	t.Helper()
	r, err := c.TryLock(context.Background(), resource)
	if err != nil {
		t.Fatalf("TryLock(%q): %v", resource, err)
	}
	return r
}

// result is what a run of reserve left.
type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %v\nstdout:\n%s\nstderr:\n%s", r.code, r.elapsed.Round(time.Millisecond), r.stdout, r.stderr)
}

// proc is a reserve process started by a test.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr lockedBuffer
	start          time.Time

	// The test's ends of the pipes of standard output and error, and their
	// copies into stdout and stderr, which end at EOF: once every process
	// that has the write ends (reserve, its command, what that started)
	// has exited or closed them.
	readers []*os.File
	copied  sync.WaitGroup
	waited  bool
}

// lockedBuffer is a bytes.Buffer that a test may read while the copy of a
// process's output writes to it.
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

// outputGrace is how long the output of a reserve that exited may stay
// open: what its command started must be gone by then.
const outputGrace = 2 * time.Second

// baseEnv is the test's environment without the variables reserve reads.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case envRedisURL, envRedisPassword, envBy, "GORACE":
		default:
			env = append(env, kv)
		}
	}
	// A race-enabled binary sleeps a second at exit by default; a race
	// still makes it exit 66.
	return append(env, "GORACE=atexit_sleep_ms=0")
}

// startReserve starts the built reserve with args and extra environment
// variables; REDIS_URL is srv's unless env sets it.
func startReserve(t *testing.T, srv *redistest.Server, env []string, args ...string) *proc {
	t.Helper()
	return startReserveIn(t, srv, nil, env, args...)
}

// startReserveIn is startReserve with stdin as standard input.
func startReserveIn(t *testing.T, srv *redistest.Server, stdin io.Reader, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(reserveBin, args...)}
	p.cmd.Stdin = stdin
	p.cmd.Env = baseEnv()
	if srv != nil {
		p.cmd.Env = append(p.cmd.Env, envRedisURL+"="+srv.URL())
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	// Pipes of the test's own rather than exec's: exec's Wait would wait
	// for their EOF, for ever when a process left behind keeps them open.
	var writers []*os.File
	for _, out := range []*lockedBuffer{&p.stdout, &p.stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		p.readers, writers = append(p.readers, r), append(writers, w)
		p.copied.Add(1)
		go func() {
			defer p.copied.Done()
			_, _ = io.Copy(out, r)
		}()
	}
	p.cmd.Stdout, p.cmd.Stderr = writers[0], writers[1]
	p.start = time.Now()
	err := p.cmd.Start()
	for _, w := range writers {
		w.Close()
	}
	if err != nil {
		p.closeOutput(0)
		t.Fatalf("start reserve: %v", err)
	}
	t.Cleanup(func() {
		if !p.waited {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
			p.waited = true
		}
		p.closeOutput(outputGrace)
	})
	return p
}

// wait waits for p to exit, at most limit, and for the end of its output:
// a process that reserve started and that is left running fails the test.
func (p *proc) wait(t *testing.T, limit time.Duration) result {
	t.Helper()
	res, ranOut, leftOver := p.waitUntil(limit)
	args := strings.Join(p.cmd.Args[1:], " ")
	if ranOut {
		t.Fatalf("reserve %s still ran after %v; killed\n%v", args, limit, res)
	}
	if len(leftOver) > 0 {
		t.Errorf("reserve %s exited, but processes it started (pids %v) still had its output open %v later; killed\n%v",
			args, leftOver, outputGrace, res)
	}
	return res
}

// waitUntil waits for p to exit, at most limit (then it kills it and
// reports ranOut), then at most outputGrace for the end of its output, and
// kills what still holds it (leftOver). It returns in about limit +
// outputGrace at most, whatever the processes do.
func (p *proc) waitUntil(limit time.Duration) (res result, ranOut bool, leftOver []int) {
	exited := make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(limit):
		ranOut = true
		_ = p.cmd.Process.Kill()
		<-exited
	}
	p.waited = true
	elapsed := time.Since(p.start)
	grace := outputGrace
	if ranOut {
		grace = 100 * time.Millisecond // failed already: no need to wait
	}
	leftOver = p.closeOutput(grace)
	return result{stdout: p.stdout.String(), stderr: p.stderr.String(), code: p.cmd.ProcessState.ExitCode(), elapsed: elapsed}, ranOut, leftOver
}

// closeOutput waits at most grace for the end of p's output, then kills
// the processes that still hold it and answers their pids, and closes the
// test's ends of the pipes.
func (p *proc) closeOutput(grace time.Duration) (killed []int) {
	copied := make(chan struct{})
	go func() {
		p.copied.Wait()
		close(copied)
	}()
	select {
	case <-copied:
	case <-time.After(grace):
		for _, r := range p.readers {
			for _, pid := range pipeHolders(r) {
				if !slices.Contains(killed, pid) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					killed = append(killed, pid)
				}
			}
		}
		// Closing the read ends ends the copies, should a holder escape.
		for _, r := range p.readers {
			r.Close()
		}
		<-copied
	}
	for _, r := range p.readers {
		r.Close()
	}
	return killed
}

// pipeHolders answers the pids of the other processes that have the pipe
// of r open.
func pipeHolders(r *os.File) []int {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(r.Fd()), &st); err != nil {
		return nil
	}
	want := fmt.Sprintf("pipe:[%d]", st.Ino)
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	var pids []int
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err != nil || link != want {
			continue
		}
		pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
		if err == nil && pid != os.Getpid() && !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// runReserve runs the built reserve with args and waits for it.
func runReserve(t *testing.T, srv *redistest.Server, env []string, args ...string) result {
	t.Helper()
	return startReserve(t, srv, env, args...).wait(t, 30*time.Second)
}

// inProcess runs reserve's commands in this process, through SetArgs, with
// env as its whole environment. Its output goes to locked buffers: a
// command that run starts writes to them from os/exec's goroutines, while
// reserve's own sentences come from the library's event goroutine.
func inProcess(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr lockedBuffer
	a := &app{
		stdin:   strings.NewReader(""),
		stdout:  &stdout,
		stderr:  &stderr,
		getenv:  func(k string) string { return env[k] },
		environ: func() []string { return nil },
	}
	start := time.Now()
	code := a.main(context.Background(), args)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code, elapsed: time.Since(start)}
}

// waitFor polls cond every 10 ms until it holds, at most limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fileHas reports whether the file at path contains s.
func fileHas(path, s string) bool {
	b, _ := os.ReadFile(path)
	return strings.Contains(string(b), s)
}

// processGone reports whether pid has exited (a zombie counts as gone).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
