package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation"
)

// workerEnv names the environment variable that makes the bench (or its
// test binary) a process of scenario 9 rather than the harness: it holds
// the worker's workerSpec, in JSON.
const workerEnv = "RESERVATION_BENCH_WORKER"

// Scenario 9's timings that do not change between runs.
const (
	// processSlack is how much earlier a process must have called Lock
	// to count as arrived before another: the call and its first command
	// reaching the server are apart by a round trip, and by however long
	// the process waits for the CPU it shares with the others. The
	// processes arrive a hold (20 ms) apart once under way.
	processSlack = 2 * time.Millisecond
	// tail is how long the processes keep waiting after the window, so
	// that its end is not the waiters leaving all at once.
	tail = 200 * time.Millisecond
	// readyTimeout bounds the processes' start.
	readyTimeout = 30 * time.Second
)

// workerSpec is what a process of scenario 9 does: loop Lock, hold for
// Hold, Release, on Resource, from Start (a workerStart) until To.
type workerSpec struct {
	Addr     string
	Resource string
	By       string
	NoQueue  bool
	TTL      time.Duration
	Hold     time.Duration
}

// workerStart is the one line the harness writes to every process once
// they are all ready: when to make its first call, the window measured,
// and when to stop waiting.
type workerStart struct {
	Start, From, To, Stop time.Time
}

// workerReport is a process's last line on its standard output (after
// "ready"): its visits, as Unix nanoseconds (arrived, served; served 0
// when not served), and the commands and round trips it sent in the
// window.
type workerReport struct {
	Visits     [][2]int64
	Sent       int64
	RoundTrips int64
}

// workerMain is the main function of a process of scenario 9; it returns
// the exit code.
func workerMain(spec string) int {
	var ws workerSpec
	err := json.Unmarshal([]byte(spec), &ws)
	if err == nil {
		err = runWorker(ws, os.Stdin, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench worker:", err)
		return 1
	}
	return 0
}

// runWorker runs a process of scenario 9: it says "ready" on out once its
// Client is connected, reads its workerStart from in, contends, and writes
// its workerReport on out.
func runWorker(ws workerSpec, in io.Reader, out io.Writer) error {
	rt := &roundTrips{commands: true}
	rdb := redis.NewClient(&redis.Options{Addr: ws.Addr, Dialer: rt.dial})
	defer rdb.Close()
	c, err := reservation.NewWithClient(rdb, &reservation.Options{
		By: ws.By, TTL: ws.TTL, NoQueue: ws.NoQueue, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	defer c.Close()
	bg := context.Background()
	// Warm up: a connection, the scripts loaded.
	r, err := c.TryLock(bg, ws.Resource+"-warm-"+ws.By)
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if err := r.Release(bg); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if _, err := fmt.Fprintln(out, "ready"); err != nil {
		return err
	}
	line, err := bufio.NewReader(in).ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read the start: %w", err)
	}
	var st workerStart
	if err := json.Unmarshal(line, &st); err != nil {
		return fmt.Errorf("read the start: %w", err)
	}

	// The counters at the window's two ends, taken on time by a goroutine
	// of their own.
	var rep workerReport
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		time.Sleep(time.Until(st.From))
		sent, rts := rt.cmds.Load(), rt.load()
		time.Sleep(time.Until(st.To))
		rep.Sent, rep.RoundTrips = rt.cmds.Load()-sent, rt.load()-rts
	}()
	time.Sleep(time.Until(st.Start))
	ctx, cancel := context.WithDeadline(bg, st.Stop)
	defer cancel()
	for time.Now().Before(st.To) {
		v := [2]int64{time.Now().UnixNano(), 0}
		r, err := c.Lock(ctx, ws.Resource)
		if err != nil {
			if ctx.Err() == nil {
				<-sampled
				return err
			}
			rep.Visits = append(rep.Visits, v)
			break
		}
		v[1] = time.Now().UnixNano()
		rep.Visits = append(rep.Visits, v)
		time.Sleep(ws.Hold)
		rctx, rcancel := context.WithTimeout(bg, 5*time.Second)
		err = r.Release(rctx)
		rcancel()
		if err != nil {
			<-sampled
			return fmt.Errorf("release: %w", err)
		}
	}
	<-sampled
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}

// worker is a process of scenario 9, seen from the harness.
type worker struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	stderr bytes.Buffer
}

// workerLine is a line a worker wrote, or the end of its output.
type workerLine struct {
	i    int
	line string
	end  bool
}

// processes runs scenario 9 with n processes of lib (this library with its
// queue or with NoQueue), each a run of this program as a worker: every
// process loops Lock, hold for cfg.hold9, Release, on one resource. After
// cfg.warm9, the window of cfg.d9 is measured: the handoffs (acquisitions
// within it), the server's calls (INFO commandstats), the commands and
// round trips the processes sent, the connections per process (CLIENT
// LIST, in the middle of it, less the harness's own), the waits and their
// order against the arrivals.
func (e *env) processes(ctx context.Context, lib, scenario string, round, n int) result {
	r := result{Scenario: scenario, Lib: lib, Round: round, Procs: n}
	exe, err := os.Executable()
	if err != nil {
		r.Err = err
		return r
	}
	base, err := e.connections(ctx)
	if err != nil {
		r.Err = err
		return r
	}
	wctx, kill := context.WithCancel(ctx)
	lines := make(chan workerLine, 4*n)
	var ws []*worker
	defer func() {
		kill() // ends those still running (killed, by their own pid)
		for _, w := range ws {
			_ = w.cmd.Wait() // and the goroutine that reads its output
		}
	}()
	res := e.keyPrefix(scenario, lib, round)
	for i := range n {
		spec, err := json.Marshal(workerSpec{
			Addr: e.tg.addrs[0], Resource: res, By: "bench-p" + strconv.Itoa(i),
			NoQueue: lib == libOursNoQueue, TTL: cycleSettings.ttl, Hold: e.cfg.hold9,
		})
		if err != nil {
			r.Err = err
			return r
		}
		w := &worker{cmd: exec.CommandContext(wctx, exe)}
		w.cmd.Env = append(os.Environ(), workerEnv+"="+string(spec))
		w.cmd.Stderr = &w.stderr
		w.cmd.WaitDelay = time.Second
		out, err := w.cmd.StdoutPipe()
		if err == nil {
			w.in, err = w.cmd.StdinPipe()
		}
		if err == nil {
			err = w.cmd.Start()
		}
		if err != nil {
			r.Err = fmt.Errorf("start process %d: %w", i, err)
			return r
		}
		ws = append(ws, w)
		go func() {
			sc := bufio.NewScanner(out)
			sc.Buffer(nil, 64<<20)
			for sc.Scan() {
				lines <- workerLine{i: i, line: sc.Text()}
			}
			lines <- workerLine{i: i, end: true}
		}()
	}
	// failed returns the error of a process that ended early.
	failed := func(i int, what string) error {
		err := ws[i].cmd.Wait()
		return fmt.Errorf("process %d ended %s: %v: %s", i, what, err, strings.TrimSpace(ws[i].stderr.String()))
	}
	timeout := time.After(readyTimeout)
	for ready := 0; ready < n; {
		select {
		case l := <-lines:
			if l.end || l.line != "ready" {
				r.Err = failed(l.i, "before it was ready")
				return r
			}
			ready++
		case <-timeout:
			r.Err = fmt.Errorf("%d of %d processes not ready within %v", n-ready, n, readyTimeout)
			return r
		case <-ctx.Done():
			r.Err = ctx.Err()
			return r
		}
	}
	start := time.Now().Add(100 * time.Millisecond)
	from := start.Add(e.cfg.warm9)
	to := from.Add(e.cfg.d9)
	for i, w := range ws {
		b, _ := json.Marshal(workerStart{Start: start, From: from, To: to, Stop: to.Add(tail)})
		if _, err := fmt.Fprintf(w.in, "%s\n", b); err != nil {
			r.Err = fmt.Errorf("start process %d: %w", i, err)
			return r
		}
	}

	if !sleepUntil(ctx, from) {
		r.Err = ctx.Err()
		return r
	}
	a, err := take(ctx, e.infos, nil)
	if err == nil && sleepUntil(ctx, from.Add(e.cfg.d9/2)) {
		var conns int
		conns, err = e.connections(ctx)
		r.Conns = float64(conns-base) / float64(n)
	}
	var b snapshot
	if err == nil && sleepUntil(ctx, to) {
		b, err = take(ctx, e.infos, nil)
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		r.Err = err
		return r
	}
	r.U = a.to(b)
	r.Elapsed = to.Sub(from)

	// The reports, then the processes' exits.
	var visits []visit
	per := make([]int64, n)
	for ended := 0; ended < n; {
		var l workerLine
		select {
		case l = <-lines:
		case <-time.After(readyTimeout):
			r.Err = fmt.Errorf("%d of %d processes did not end", n-ended, n)
			return r
		}
		if l.end {
			ended++
			if err := ws[l.i].cmd.Wait(); err != nil {
				r.Err = failed(l.i, "in error")
				return r
			}
			continue
		}
		var rep workerReport
		if err := json.Unmarshal([]byte(l.line), &rep); err != nil {
			r.Err = fmt.Errorf("process %d: %w", l.i, err)
			return r
		}
		r.Sent += rep.Sent
		r.U.rt += rep.RoundTrips
		for _, v := range rep.Visits {
			vi := visit{arrived: time.Unix(0, v[0])}
			if v[1] != 0 {
				vi.served = time.Unix(0, v[1])
				if !vi.served.Before(from) && !vi.served.After(to) {
					per[l.i]++
				}
			}
			visits = append(visits, vi)
		}
	}
	r.Order, r.Waits = orderOf(visits, from, to, burst(visits, n), processSlack)
	r.Ops = r.Order.Served
	r.MinPer, r.MaxPer = per[0], per[0]
	for _, k := range per {
		r.MinPer, r.MaxPer = min(r.MinPer, k), max(r.MaxPer, k)
	}
	if r.Ops == 0 {
		r.Err = errors.New("no handoff within the window")
	}
	return r
}

// connections returns how many clients the server has (CLIENT LIST).
func (e *env) connections(ctx context.Context) (int, error) {
	list, err := e.info.ClientList(ctx).Result()
	if err != nil {
		return 0, err
	}
	return strings.Count(strings.TrimSpace(list), "\n") + 1, nil
}

// sleepUntil sleeps until t, and reports whether ctx let it.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
