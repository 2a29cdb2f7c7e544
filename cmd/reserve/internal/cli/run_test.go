package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis-reservation/reservation"
)

// TestRunNeverOverlaps runs several reserve run on one resource at once;
// their commands append their start and end to one file, which must show
// one command at a time, with growing fencing tokens.
func TestRunNeverOverlaps(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	log := filepath.Join(t.TempDir(), "log")
	script := `echo "start $(date +%s%N) $RESERVE_TOKEN" >> "$LOG"; sleep 0.15; echo "end $(date +%s%N)" >> "$LOG"`
	const runs = 4
	var procs []*proc
	for i := range runs {
		procs = append(procs, startReserve(t, srv, []string{"LOG=" + log},
			"run", "--by", "w"+strconv.Itoa(i), "shared-job", "--", "sh", "-c", script))
	}
	for _, p := range procs {
		if res := p.wait(t, 20*time.Second); res.code != 0 {
			t.Fatalf("reserve run: %v", res)
		}
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if got, want := len(lines), 2*runs; got != want {
		t.Fatalf("log has %d lines, want %d:\n%s", got, want, b)
	}
	var lastEnd, lastToken int64
	for i := 0; i < len(lines); i += 2 {
		start, end := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if start[0] != "start" || end[0] != "end" || len(start) != 3 {
			t.Fatalf("lines %d-%d are %q, %q; want a start then its end (overlap)\n%s", i, i+1, lines[i], lines[i+1], b)
		}
		from, _ := strconv.ParseInt(start[1], 10, 64)
		to, _ := strconv.ParseInt(end[1], 10, 64)
		token, _ := strconv.ParseInt(start[2], 10, 64)
		if from < lastEnd {
			t.Errorf("holding %d started at %d, before the previous one ended at %d", i/2, from, lastEnd)
		}
		if token <= lastToken {
			t.Errorf("holding %d has token %d, not above the previous %d", i/2, token, lastToken)
		}
		lastEnd, lastToken = to, token
	}
}

// TestRunNoWaitWhileHeld checks that --no-wait gives up at once, saying
// who holds the resource: the holder renews it for as long as the test
// runs, so a reserve that waited would be killed at the bound.
func TestRunNoWaitWhileHeld(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	c := libClient(t, srv, "other-host", 5*time.Second)
	r := hold(t, c, "busy")
	res := startReserve(t, srv, nil, "run", "--no-wait", "busy", "--", "sh", "-c", "echo ran").wait(t, 5*time.Second)
	if res.code != ExitNotAcquired {
		t.Fatalf("got %v\nwant exit %d", res, ExitNotAcquired)
	}
	if strings.Contains(res.stdout, "ran") {
		t.Errorf("the command ran without the reservation: %v", res)
	}
	if !strings.Contains(res.stderr, r.Holder()) {
		t.Errorf("stderr does not name the holder %s: %v", r.Holder(), res)
	}
}

func TestRunTimeout(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	hold(t, libClient(t, srv, "other-host", 5*time.Second), "busy")
	p := startReserve(t, srv, nil, "run", "--timeout", "300ms", "busy", "--", "sh", "-c", "echo ran")
	res := p.wait(t, 10*time.Second)
	if res.code != ExitNotAcquired {
		t.Fatalf("got %v\nwant exit %d", res, ExitNotAcquired)
	}
	// From the process's start: its own start-up (a race-enabled build)
	// comes on top of the 300 ms.
	if res.elapsed < 300*time.Millisecond || res.elapsed > 3*time.Second {
		t.Errorf("exited after %v, want about 300ms", res.elapsed)
	}
	if !strings.Contains(res.stderr, "--timeout") {
		t.Errorf("stderr does not say why: %v", res)
	}
}

func TestRunExitStatus(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	c := libClient(t, srv, "checker", time.Second)
	for _, tc := range []struct {
		name   string
		argv   []string
		want   int
		stderr string
	}{
		{"zero", []string{"true"}, 0, ""},
		{"three", []string{"sh", "-c", "exit 3"}, 3, ""},
		{"sigterm", []string{"sh", "-c", "kill -TERM $$"}, ExitSignal + int(syscall.SIGTERM), ""},
		{"sigkill", []string{"sh", "-c", "kill -KILL $$"}, ExitSignal + int(syscall.SIGKILL), ""},
		{"not found", []string{"no-such-command-here"}, ExitNotFound, "command not found"},
		{"not executable", []string{"/etc/hostname"}, ExitCannotExec, "cannot run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resource := "status-" + strings.ReplaceAll(tc.name, " ", "-")
			res := runReserve(t, srv, nil, append([]string{"run", resource, "--"}, tc.argv...)...)
			if res.code != tc.want {
				t.Errorf("got %v\nwant exit %d", res, tc.want)
			}
			// The command's status is reserve's, with nothing said about it.
			if !strings.Contains(res.stderr, tc.stderr) || tc.stderr == "" && res.stderr != "" {
				t.Errorf("stderr = %q, want it to contain %q (nothing, for \"\")", res.stderr, tc.stderr)
			}
			if in, err := c.Status(context.Background(), resource); err != nil || in.Held {
				t.Errorf("after the run, Status = %+v, %v; want released", in, err)
			}
		})
	}
}

// TestRunEnvironment checks the command's environment and that standard
// input and output pass through.
func TestRunEnvironment(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	p := startReserveIn(t, srv, strings.NewReader("from stdin\n"), []string{"RESERVE_BY=env-worker", "KEEP=kept"},
		"run", "env-job", "--", "sh", "-c", `echo "$RESERVE_RESOURCE|$RESERVE_KEY|$RESERVE_TOKEN|$RESERVE_BY|$KEEP|$RESERVE_LIMIT"; cat`)
	res := p.wait(t, 10*time.Second)
	if res.code != 0 {
		t.Fatalf("got %v", res)
	}
	fields := strings.Split(strings.SplitN(res.stdout, "\n", 2)[0], "|")
	if len(fields) != 6 || fields[0] != "env-job" || fields[1] != "reservation-env-job" || fields[3] != "env-worker" || fields[4] != "kept" ||
		fields[5] != "0" {
		t.Errorf("environment line = %q, want env-job|reservation-env-job|TOKEN|env-worker|kept|0", res.stdout)
	}
	if token, err := strconv.ParseInt(fields[2], 10, 64); err != nil || token <= 0 {
		t.Errorf("RESERVE_TOKEN = %q, want a positive number", fields[2])
	}
	if !strings.HasSuffix(res.stdout, "from stdin\n") {
		t.Errorf("stdout = %q, want standard input passed through", res.stdout)
	}
}

// TestRunKill9Takeover kills a holding reserve with SIGKILL: another
// reserve, waiting meanwhile, gets the resource once the TTL has run out,
// and the killed one's command is stopped (its parent-death signal).
func TestRunKill9Takeover(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	dir := t.TempDir()
	pidFile, startFile := filepath.Join(dir, "pid"), filepath.Join(dir, "start")
	const ttl = time.Second
	a := startReserve(t, srv, []string{"PIDFILE=" + pidFile},
		"run", "--ttl", ttl.String(), "--by", "a", "crashy", "--", "sh", "-c", `echo $$ > "$PIDFILE"; exec sleep 30`)
	waitFor(t, 10*time.Second, "first command started", func() bool { return fileHas(pidFile, "\n") })
	b := startReserve(t, srv, []string{"STARTFILE=" + startFile},
		"run", "--ttl", ttl.String(), "--by", "b", "crashy", "--", "sh", "-c", `date +%s%N > "$STARTFILE"`)
	time.Sleep(300 * time.Millisecond) // b is waiting; a renews

	killed := time.Now()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	res := b.wait(t, 10*time.Second)
	if res.code != 0 {
		t.Fatalf("second reserve: %v", res)
	}
	raw, _ := os.ReadFile(startFile)
	ns, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		t.Fatalf("start file %q: %v", raw, err)
	}
	takeover := time.Unix(0, ns).Sub(killed)
	// The key lives a TTL after a's last renewal, at most a heartbeat
	// (TTL/3) before the kill.
	if takeover < ttl-ttl/3-100*time.Millisecond || takeover > ttl+1500*time.Millisecond {
		t.Errorf("taken over %v after the kill, want about the TTL %v", takeover, ttl)
	} else {
		t.Logf("taken over %v after kill -9 (TTL %v)", takeover.Round(time.Millisecond), ttl)
	}
	raw, _ = os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	waitFor(t, 5*time.Second, "the killed reserve's command gone", func() bool { return processGone(pid) })
}

// TestRunLost deletes the key while the command runs: the command gets
// SIGTERM (or SIGKILL after --grace when it ignores it) and reserve exits 70.
func TestRunLost(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	rdb := srv.Client(t)
	for _, tc := range []struct {
		name   string
		script string
		marker string
	}{
		{"stops on SIGTERM", `trap 'echo got-TERM >> "$F"; exit 0' TERM; echo "started $$" >> "$F"; while :; do sleep 0.05; done`, "got-TERM"},
		{"killed after grace", `trap 'echo ignored-TERM >> "$F"' TERM; echo "started $$" >> "$F"; while :; do sleep 0.05; done`, "ignored-TERM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resource := "lost-" + strings.ReplaceAll(tc.name, " ", "-")
			f := filepath.Join(t.TempDir(), "log")
			p := startReserve(t, srv, []string{"F=" + f},
				"run", "--ttl", "1500ms", "--heartbeat", "200ms", "--grace", "300ms", resource, "--", "sh", "-c", tc.script)
			waitFor(t, 10*time.Second, "command started", func() bool { return fileHas(f, "started") })
			deleted := time.Now()
			if err := rdb.Del(context.Background(), "reservation-"+resource).Err(); err != nil {
				t.Fatal(err)
			}
			res := p.wait(t, 10*time.Second)
			if res.code != ExitLost {
				t.Fatalf("got %v\nwant exit %d", res, ExitLost)
			}
			b, _ := os.ReadFile(f)
			if !fileHas(f, tc.marker) {
				t.Errorf("the command's log %q has no %q", b, tc.marker)
			}
			// reserve waits for the command to end, by SIGKILL if need be.
			var pid int
			if _, err := fmt.Sscanf(string(b), "started %d", &pid); err != nil || !processGone(pid) {
				t.Errorf("the command (log %q) still runs after reserve exited", b)
			}
			// Seen at once (the holder watches its key; at worst at the
			// next renewal, 200 ms), then SIGTERM, and for the stubborn one
			// SIGKILL 300 ms later.
			if after := time.Since(deleted); after > 3*time.Second {
				t.Errorf("reserve exited %v after the key was deleted", after)
			}
			if !strings.Contains(res.stderr, "lost") {
				t.Errorf("stderr does not say it was lost: %v", res)
			}
			// Sentences only, the loss told once; no log record.
			if n := strings.Count(res.stderr, "is gone: "); n != 1 {
				t.Errorf("stderr tells the loss %d times, want once: %v", n, res)
			}
			assertNoLogRecords(t, res.stderr)
		})
	}
}

// assertNoLogRecords fails the test when stderr holds a log record of
// slog's text or JSON handler.
func assertNoLogRecords(t *testing.T, stderr string) {
	t.Helper()
	for _, rec := range []string{"level=", "msg=", `"level":`, `"msg":`} {
		if strings.Contains(stderr, rec) {
			t.Errorf("stderr holds a log record (%s) without --log-level:\n%s", rec, stderr)
		}
	}
}

// TestRunReleaseForce breaks a running reserve run's reservation with
// reserve release --force: the holder watches its key, so its command gets
// SIGTERM at once (the heartbeat, every 10 s, cannot be what noticed), after
// reserve said why, and reserve exits 70.
func TestRunReleaseForce(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	f := filepath.Join(t.TempDir(), "log")
	p := startReserve(t, srv, []string{"F=" + f},
		"run", "--ttl", "30s", "--heartbeat", "10s", "--grace", "5s", "forced", "--", "sh", "-c",
		`trap 'echo "got-TERM $(date +%s%N)" >> "$F"; echo command-got-TERM >&2; exit 0' TERM; echo started >> "$F"; sleep 5 & wait`)
	waitFor(t, 10*time.Second, "command started", func() bool { return fileHas(f, "started") })
	started := time.Now()
	res := runReserve(t, srv, nil, "release", "--force", "forced")
	returned := time.Now()
	if res.code != 0 || !strings.Contains(res.stdout, "released forced") {
		t.Fatalf("release --force: %v", res)
	}
	res = p.wait(t, 10*time.Second)
	if res.code != ExitLost {
		t.Fatalf("reserve run: got %v\nwant exit %d", res, ExitLost)
	}
	b, _ := os.ReadFile(f)
	_, after, ok := strings.Cut(string(b), "got-TERM ")
	ns, err := strconv.ParseInt(strings.TrimSpace(after), 10, 64)
	if !ok || err != nil {
		t.Fatalf("the command's log %q has no SIGTERM time", b)
	}
	term := time.Unix(0, ns)
	if d := term.Sub(returned); d > time.Second {
		t.Errorf("the command got SIGTERM %v after release --force returned, want within 1s", d)
	}
	t.Logf("SIGTERM %v after release --force returned (%v after it was started; a process start and exit of its own)",
		term.Sub(returned).Round(time.Millisecond), term.Sub(started).Round(time.Millisecond))
	told, termed := strings.Index(res.stderr, `the reservation of "forced" is gone`), strings.Index(res.stderr, "command-got-TERM")
	if told < 0 || termed < 0 || told > termed {
		t.Errorf("stderr does not say the reservation is gone before the command's SIGTERM:\n%s", res.stderr)
	}
	assertNoLogRecords(t, res.stderr)
}

// TestRunLostRedisUnreachable stops Redis while the command runs: reserve
// declares the loss at its local deadline, before the key could expire on
// the server, stops the command and exits 70.
func TestRunLostRedisUnreachable(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	f := filepath.Join(t.TempDir(), "log")
	p := startReserve(t, srv, []string{"F=" + f},
		"run", "--ttl", "1s", "paused", "--", "sh", "-c", `trap 'echo "got-TERM $(date +%s%N)" >> "$F"; exit 0' TERM; echo started >> "$F"; while :; do sleep 0.05; done`)
	waitFor(t, 10*time.Second, "command started", func() bool { return fileHas(f, "started") })
	srv.Pause()
	t.Cleanup(srv.Resume)
	paused := time.Now()
	res := p.wait(t, 10*time.Second)
	if res.code != ExitLost || !fileHas(f, "got-TERM") {
		t.Fatalf("got %v\nwant exit %d after SIGTERM to the command", res, ExitLost)
	}
	b, _ := os.ReadFile(f)
	_, after, _ := strings.Cut(string(b), "got-TERM ")
	ns, err := strconv.ParseInt(strings.TrimSpace(after), 10, 64)
	if err != nil {
		t.Fatalf("log %q: %v", b, err)
	}
	// The local deadline comes before the key's expiry on the server: the
	// TTL after the last renewal, less a margin.
	if term := time.Unix(0, ns).Sub(paused); term > 1500*time.Millisecond { // slack for a loaded machine
		t.Errorf("the command got SIGTERM %v after Redis was paused, want within the TTL (1s)", term)
	} else {
		t.Logf("SIGTERM %v after Redis was paused (TTL 1s)", term.Round(time.Millisecond))
	}
	if took := time.Since(paused); took > 4*time.Second {
		t.Errorf("reserve exited %v after Redis was paused", took)
	}
}

// TestRunForwardsSIGTERM sends SIGTERM to reserve: the command gets it,
// exits in its own way, reserve exits with its status and releases.
func TestRunForwardsSIGTERM(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	c := libClient(t, srv, "checker", time.Second)
	f := filepath.Join(t.TempDir(), "log")
	p := startReserve(t, srv, []string{"F=" + f},
		"run", "term-job", "--", "sh", "-c", `trap 'echo got-TERM >> "$F"; exit 5' TERM; echo started >> "$F"; while :; do sleep 0.05; done`)
	waitFor(t, 10*time.Second, "command started", func() bool { return fileHas(f, "started") })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	res := p.wait(t, 10*time.Second)
	if res.code != 5 {
		t.Fatalf("got %v\nwant exit 5, the command's", res)
	}
	if !fileHas(f, "got-TERM") {
		t.Errorf("the command did not get SIGTERM")
	}
	if in, err := c.Status(context.Background(), "term-job"); err != nil || in.Held {
		t.Errorf("after the run, Status = %+v, %v; want released", in, err)
	}
}

// TestRunSignalWhileWaiting interrupts a waiting reserve: it exits 130
// without running the command.
func TestRunSignalWhileWaiting(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	hold(t, libClient(t, srv, "other", 5*time.Second), "waited")
	p := startReserve(t, srv, nil, "run", "waited", "--", "sh", "-c", "echo ran")
	time.Sleep(300 * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	res := p.wait(t, 10*time.Second)
	if res.code != ExitSignal+int(syscall.SIGINT) || strings.Contains(res.stdout, "ran") {
		t.Fatalf("got %v\nwant exit %d and no command", res, ExitSignal+int(syscall.SIGINT))
	}
}

// TestRunWaitsForRelease checks that a waiting reserve is woken by the
// release itself, which Redis pushes to it (client tracking, or the release
// notice): its command starts well within the 1 s that a waiter that no
// push woke would sleep before it looked again (the TTL is 30 s, so the
// key running out cannot be what wakes it either).
func TestRunWaitsForRelease(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	r := hold(t, libClient(t, srv, "other", 30*time.Second), "handoff")
	f := filepath.Join(t.TempDir(), "start")
	// --timeout 0 waits for ever, as no --timeout does. The log records
	// say when reserve starts to wait.
	p := startReserve(t, srv, []string{"F=" + f}, "run", "--timeout", "0", "--log-level", "debug",
		"handoff", "--", "sh", "-c", `date +%s%N > "$F"`)
	waitFor(t, 10*time.Second, "reserve waiting", func() bool {
		return strings.Contains(p.stderr.String(), "msg="+string(reservation.EventWait))
	})
	// The record comes as the wait starts: let it set its watch and sleep,
	// so that only a push can wake it within the next 700 ms or so.
	time.Sleep(200 * time.Millisecond)
	released := time.Now()
	if err := r.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	res := p.wait(t, 10*time.Second)
	if res.code != 0 {
		t.Fatalf("got %v", res)
	}
	raw, _ := os.ReadFile(f)
	ns, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		t.Fatalf("start file %q: %v", raw, err)
	}
	if after := time.Unix(0, ns).Sub(released); after > 500*time.Millisecond {
		t.Errorf("the command started %v after the release, want within 500ms: a push wakes the waiter within milliseconds", after)
	} else {
		t.Logf("the command started %v after the release", after.Round(time.Millisecond))
	}
}

// TestProcWaitIsBounded checks the tests' own helper: a reserve whose
// command ignores SIGTERM (so that it outlives reserve, whose death sends
// it SIGTERM) and keeps reserve's output open must fail the wait within
// seconds, not when the command ends, and leave nothing running.
func TestProcWaitIsBounded(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	f := filepath.Join(t.TempDir(), "pid")
	p := startReserve(t, srv, []string{"F=" + f}, "run", "stuck", "--", "sh", "-c", `trap '' TERM; echo $$ > "$F"; sleep 60`)
	waitFor(t, 10*time.Second, "command started", func() bool { return fileHas(f, "\n") })
	start := time.Now()
	_, ranOut, leftOver := p.waitUntil(200 * time.Millisecond)
	if took := time.Since(start); !ranOut || len(leftOver) == 0 || took > 200*time.Millisecond+outputGrace+time.Second {
		t.Errorf("waitUntil returned after %v, ran out %v, left over %v; want within %v, true, the command",
			took, ranOut, leftOver, 200*time.Millisecond+outputGrace)
	}
	raw, _ := os.ReadFile(f)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if !slices.Contains(leftOver, pid) {
		t.Errorf("left over %v, want the command (%d) among them", leftOver, pid)
	}
	waitFor(t, 5*time.Second, "the stuck command gone", func() bool { return processGone(pid) })
}

// TestRunConcurrentCounter is the classic: reserve run guards a
// read-modify-write of a file by many processes.
func TestRunConcurrentCounter(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	counter := filepath.Join(t.TempDir(), "n")
	if err := os.WriteFile(counter, []byte("0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const n = 6
	var procs []*proc
	for range n {
		procs = append(procs, startReserve(t, srv, []string{"N=" + counter},
			"run", "counter", "--", "sh", "-c", `v=$(cat "$N"); sleep 0.02; echo $((v+1)) > "$N"`))
	}
	for _, p := range procs {
		if res := p.wait(t, 20*time.Second); res.code != 0 {
			t.Fatalf("got %v", res)
		}
	}
	if b, _ := os.ReadFile(counter); strings.TrimSpace(string(b)) != strconv.Itoa(n) {
		t.Errorf("counter = %q, want %d: increments were lost", b, n)
	}
}
