package nodeinterop

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/internal/redistest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const timeout = 10 * time.Second

func TestLockHoldRelease(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.WithPassword("node pw"))
	c := srv.Client(t)
	ctx := context.Background()

	w := Worker(t, srv, "lock", "job:1", "-1", "--by=alice", "--ttl=7", "--heartbeat=200", "--job-id=j1")
	start := w.Expect(t, "start", timeout)
	if start.Key != "reservation-job:1" || start.Value != "alice-j1" {
		t.Errorf("start: key %q value %q; want reservation-job:1, alice-j1", start.Key, start.Value)
	}
	acq := w.Expect(t, "acquired", timeout)
	if acq.Key != "reservation-job:1" {
		t.Errorf("acquired key = %q", acq.Key)
	}
	if got, err := c.Get(ctx, "reservation-job:1").Result(); err != nil || got != "alice-j1" {
		t.Errorf("GET while held = %q, %v; want alice-j1", got, err)
	}
	if ttl, err := c.TTL(ctx, "reservation-job:1").Result(); err != nil || ttl <= 5*time.Second || ttl > 7*time.Second {
		t.Errorf("TTL while held = %v, %v; want about 7s (EX, in seconds)", ttl, err)
	}
	// A second worker is refused.
	w2 := Worker(t, srv, "lock", "job:1", "0", "--by=bob")
	if e := w2.Expect(t, "lock", timeout); e.Status {
		t.Errorf("second worker acquired a held resource")
	}
	if err := w2.Wait(); w2.ExitCode() != 3 {
		t.Errorf("second worker: exit %v (code %d), want code 3", err, w2.ExitCode())
	}

	w.Release()
	rel := w.Expect(t, "released", timeout)
	if string(rel.Reply) != "1" || rel.Error != "" {
		t.Errorf("released: reply %s error %q; want 1 and no error", rel.Reply, rel.Error)
	}
	if err := w.Wait(); err != nil {
		t.Errorf("worker exit: %v\nstderr:\n%s", err, w.Stderr())
	}
	if n, _ := c.Exists(ctx, "reservation-job:1").Result(); n != 0 {
		t.Errorf("key still exists after release")
	}
	// The Node library throws once after a release when a heartbeat's GET
	// was in flight as release() ran (see worker.js): the key is deleted
	// already, and the worker records it as after_release.
	var events []Event
	for _, e := range w.Events() {
		if e.Event != "uncaught" || !e.AfterRelease {
			events = append(events, e)
		}
	}
	if names, want := eventNames(events), "start lock acquired releasing released exit"; names != want {
		t.Errorf("events = %q, want %q", names, want)
	}
}

func TestWaitAfterRelease(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	holder := Worker(t, srv, "lock", "r", "300")
	holderAcq := holder.Expect(t, "acquired", timeout)
	waiter := Worker(t, srv, "wait", "r", "0")
	rel := holder.Expect(t, "released", timeout)
	acq := waiter.Expect(t, "acquired", timeout)
	done := waiter.Expect(t, "wait_done", timeout)
	if acq.T < rel.T {
		t.Errorf("waiter acquired at %d, before the holder released at %d", acq.T, rel.T)
	}
	if acq.T < holderAcq.T+300 {
		t.Errorf("waiter acquired %d ms after the holder, want >= 300", acq.T-holderAcq.T)
	}
	// wait_until_lock sleeps 1 s after every attempt, the successful one too.
	if d := done.T - acq.T; d < 900 {
		t.Errorf("wait_done came %d ms after acquired; the library was expected to wait about 1000", d)
	}
	if string(done.Reply) != "true" {
		t.Errorf("wait_until_lock's reply = %s, want true (not the key, as its README says)", done.Reply)
	}
	for _, p := range []*Proc{holder, waiter} {
		if err := p.Wait(); err != nil {
			t.Errorf("exit: %v", err)
		}
	}
}

func TestLossIsUncaught(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	w := Worker(t, srv, "lock", "r", "-1", "--ttl=5", "--heartbeat=100")
	w.Expect(t, "acquired", timeout)
	if err := srv.Client(t).Set(context.Background(), "reservation-r", "thief", 0).Err(); err != nil {
		t.Fatal(err)
	}
	e := w.Expect(t, "uncaught", timeout)
	if !e.Lost || !strings.Contains(e.Error, "thief") {
		t.Errorf("uncaught = %+v, want lost to thief", e)
	}
	_ = w.Wait()
	if w.ExitCode() != 1 {
		t.Errorf("exit code = %d, want 1", w.ExitCode())
	}
}

func TestSignalAndKill(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	c := srv.Client(t)

	w := Worker(t, srv, "lock", "a", "-1")
	w.Expect(t, "acquired", timeout)
	w.Signal(syscall.SIGTERM)
	w.Expect(t, "released", timeout)
	if err := w.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}

	k := Worker(t, srv, "lock", "b", "-1", "--ttl=30")
	start := k.Expect(t, "start", timeout)
	k.Expect(t, "acquired", timeout)
	k.Kill()
	if k.ExitCode() != -1 {
		t.Errorf("ExitCode after SIGKILL = %d, want -1", k.ExitCode())
	}
	if got, _ := c.Get(ctx, "reservation-b").Result(); got != "node-worker-"+strconv.Itoa(start.Pid) {
		t.Errorf("after kill -9 the key = %q, want it left behind", got)
	}
	if _, err := k.Next(time.Second); err != ErrExited {
		t.Errorf("Next after exit: %v, want ErrExited", err)
	}
}

func TestManyWorkersExclude(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const n = 3
	ws := make([]*Proc, n)
	for i := range ws {
		ws[i] = Worker(t, srv, "wait", "shared", "150", "--by=w"+strconv.Itoa(i))
	}
	type span struct{ from, to int64 }
	var spans []span
	for _, w := range ws {
		if err := w.Wait(); err != nil {
			t.Fatalf("worker: %v\n%s", err, w.Stderr())
		}
		var s span
		for _, e := range w.Events() {
			switch e.Event {
			case "acquired":
				s.from = e.T
			case "released":
				s.to = e.T
			}
		}
		spans = append(spans, s)
	}
	for i := range spans {
		for j := range spans {
			if i != j && spans[i].from < spans[j].to && spans[j].from < spans[i].to {
				t.Errorf("holdings overlap: %v and %v", spans[i], spans[j])
			}
		}
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	w := Worker(t, srv, "bogus", "r", "1")
	err := w.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || w.ExitCode() != 2 {
		t.Errorf("bad usage: err %v code %d, want code 2", err, w.ExitCode())
	}
	if !strings.Contains(w.Stderr(), "usage:") {
		t.Errorf("stderr = %q, want a usage line", w.Stderr())
	}
}

func eventNames(es []Event) string {
	var names []string
	for _, e := range es {
		names = append(names, e.Event)
	}
	return strings.Join(names, " ")
}

// fatalTB records Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func TestMissingNode(t *testing.T) {
	srv := redistest.Start(t) // before PATH changes
	t.Setenv("PATH", t.TempDir())
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Worker(f, srv, "lock", "r", "0")
	}()
	<-done
	if !strings.Contains(f.msg, "npm ci") || !strings.Contains(f.msg, "apt-get install nodejs") {
		t.Errorf("Fatalf message = %q, want install instructions", f.msg)
	}
}
