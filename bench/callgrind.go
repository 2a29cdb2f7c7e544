package main

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis-reservation/reservation/internal/redisserver"
)

// The markers of the instruction counts: a run with -callgrind writes
// between them, and leaves the other sections alone.
const (
	beginCallgrindMarker = "<!-- bench callgrind results: begin (written by bench/ -callgrind, do not edit by hand) -->"
	endCallgrindMarker   = "<!-- bench callgrind results: end -->"
)

// scenarioInstr is scenario 1 counted in Redis's instructions: one
// goroutine acquires and releases fresh resources, cfg.cycles times, on a
// redis-server that runs under valgrind's callgrind. Unlike CPU time, the
// count does not move with the machine's load or frequency, so that two
// commits (or two libraries) can be compared in runs made days apart. It
// leaves out the kernel's work (system calls), which is the same for every
// library that makes the same round trips.
const scenarioInstr = "c1"

// callgrind runs redis-server under valgrind's callgrind tool and reads
// how many instructions it ran between two points.
type callgrind struct {
	dir    string // the wrapper script and callgrind's dumps
	bin    string // the wrapper: runs redis-server under callgrind
	pid    int    // the server's, once started
	dumped int    // dumps written: callgrind numbers them from 1
}

// newCallgrind checks that valgrind and callgrind_control are on PATH and
// writes, in a new directory, a wrapper that runs redis-server (Binary's)
// under callgrind, for redisserver.Options.Bin.
func newCallgrind() (*callgrind, error) {
	valgrind, err := exec.LookPath("valgrind")
	if err != nil {
		return nil, errors.New("-callgrind needs valgrind (Debian: apt-get install valgrind), and it is not on PATH")
	}
	if _, err := exec.LookPath("callgrind_control"); err != nil {
		return nil, errors.New("-callgrind needs callgrind_control (valgrind's), and it is not on PATH")
	}
	server, err := redisserver.Binary()
	if err != nil {
		return nil, err
	}
	// valgrind would count the instructions of a script that runs the
	// server (as REDIS_SERVER_BIN may be, to pin it), not the server's.
	f, err := elf.Open(server)
	if err != nil {
		return nil, fmt.Errorf("-callgrind runs %s under valgrind, and it is not an executable binary (REDIS_SERVER_BIN must be redis-server itself, not a script)", server)
	}
	f.Close()
	dir, err := os.MkdirTemp("", "reservation-bench-callgrind-")
	if err != nil {
		return nil, err
	}
	cg := &callgrind{dir: dir, bin: filepath.Join(dir, "redis-server-callgrind")}
	// exec keeps the pid the server's: redisserver checks it in INFO, and
	// callgrind_control is given it.
	script := fmt.Sprintf("#!/bin/sh\nexec %s --tool=callgrind --log-file=%s --callgrind-out-file=%s %s \"$@\"\n",
		shellQuote(valgrind), shellQuote(filepath.Join(dir, "valgrind.log")),
		shellQuote(filepath.Join(dir, "callgrind.out")), shellQuote(server))
	if err := os.WriteFile(cg.bin, []byte(script), 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return cg, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// remove removes the wrapper and the dumps.
func (cg *callgrind) remove() { os.RemoveAll(cg.dir) }

// zero sets the server's counts to zero.
func (cg *callgrind) zero(ctx context.Context) error { return cg.control(ctx, "-z") }

// dump has the server write its counts since the last zero, and answers
// their total: the summary line of the dump.
func (cg *callgrind) dump(ctx context.Context) (int64, error) {
	if err := cg.control(ctx, "-d"); err != nil {
		return 0, err
	}
	cg.dumped++
	b, err := os.ReadFile(filepath.Join(cg.dir, "callgrind.out."+strconv.Itoa(cg.dumped)))
	if err != nil {
		return 0, fmt.Errorf("callgrind_control -d %d: %w", cg.pid, err)
	}
	return summaryOf(b)
}

// control runs callgrind_control op on the server. It exits with 0
// whatever happened (a pid that runs no callgrind, a failed vgdb), and
// prints "OK." when the command reached callgrind.
func (cg *callgrind) control(ctx context.Context, op string) error {
	out, err := exec.CommandContext(ctx, "callgrind_control", op, strconv.Itoa(cg.pid)).CombinedOutput()
	if err == nil && !bytes.Contains(out, []byte("OK.")) {
		err = errors.New("not done")
	}
	if err != nil {
		return fmt.Errorf("callgrind_control %s %d: %v: %s", op, cg.pid, err, bytes.TrimSpace(out))
	}
	return nil
}

// logTail answers the end of valgrind's log, for an error: it says why
// the server did not start under it.
func (cg *callgrind) logTail() string {
	b, err := os.ReadFile(filepath.Join(cg.dir, "valgrind.log"))
	if err != nil {
		return ""
	}
	if b = bytes.TrimSpace(b); len(b) > 1024 {
		b = append([]byte("..."), b[len(b)-1024:]...)
	}
	return string(b)
}

// summaryOf answers the total of a callgrind dump (its "summary:" line,
// of the single event Ir that callgrind counts by default).
func summaryOf(dump []byte) (int64, error) {
	for line := range strings.SplitSeq(string(dump), "\n") {
		if v, ok := strings.CutPrefix(line, "summary:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("callgrind dump: summary %q: %v", v, err)
			}
			return n, nil
		}
	}
	return 0, errors.New("callgrind dump: no summary line")
}

// instructions runs scenario c1 of lib: after a warm-up, the counts are
// zeroed, one goroutine runs cycles acquire + release of fresh resources,
// and the counts are dumped. The INFO snapshots of the calls are taken
// outside of that window, so that they are not counted.
func (e *env) instructions(ctx context.Context, lib string, round, cycles int) result {
	r := result{Scenario: scenarioInstr, Lib: lib, Round: round}
	if e.cg == nil {
		r.Err = errors.New("scenario c1 runs with -callgrind only")
		return r
	}
	st := cycleSettings
	st.tryNext = 5 * time.Second
	ls, rt, err := e.open(lib, 1, st)
	if err != nil {
		r.Err = err
		return r
	}
	defer closeAll(ls)
	l := ls[0]
	prefix := e.keyPrefix(scenarioInstr, lib, round)
	for i := range 50 {
		if err := warmUp(ctx, l, prefix+"-warm-"+strconv.Itoa(i)); err != nil {
			r.Err = err
			return r
		}
	}
	r.U, r.Elapsed, r.Err = e.measure(ctx, rt, func() error {
		if err := e.cg.zero(ctx); err != nil {
			return err
		}
		for i := range cycles {
			if err := acquireRelease(ctx, l, prefix+"-"+strconv.Itoa(i)); err != nil {
				return fmt.Errorf("cycle %d: %w", i, err)
			}
		}
		n, err := e.cg.dump(ctx)
		r.Instr = n
		return err
	})
	if r.Err == nil {
		r.Ops = int64(cycles)
	}
	return r
}

// instrPerOp is a round's Redis instructions per cycle.
func instrPerOp(r result) float64 { return float64(r.Instr) / float64(max(r.Ops, 1)) }

// callgrindMarkdown answers the section of a -callgrind run.
func (rep *report) callgrindMarkdown() string {
	return rep.sectionMarkdown(beginCallgrindMarker, endCallgrindMarker, fmt.Sprintf(
		"- %d round(s); in each, every library runs scenario 1 for %d cycles, in turn, on one redis-server "+
			"run by valgrind's callgrind (%s), which counts the instructions the server runs (the kernel's work left out). "+
			"The counts are set to zero after a warm-up of 50 cycles and read after the last cycle. "+
			"Under valgrind the server is tens of times slower, so the loopback round trip below is not that of the other tables.\n\n",
		rep.cfg.rounds, rep.cfg.cycles, valgrindVersion()),
		rep.writeCallgrind, rep.callgrindTargets)
}

// writeCallgrind writes the table of scenario c1.
func (rep *report) writeCallgrind(b *bytes.Buffer) {
	t := table{b}
	fmt.Fprintf(b, "### Scenario 1 in Redis's instructions: one goroutine, fresh resources, acquire + release\n\n")
	t.head("library", "Redis instructions/cycle, median (min-max)", "x raw go-redis (median of per-round ratios, min-max)",
		"Redis calls/cycle", "Redis calls by command", "round trips/cycle")
	for _, l := range rep.cfg.libs {
		rs := rep.results[scenarioInstr][l]
		if len(rs) == 0 {
			continue
		}
		var xs []float64
		for _, r := range rs {
			xs = append(xs, instrPerOp(r))
		}
		x := "-"
		if l != libRawGo {
			x = fmtRange(rep.instrRatio(l, libRawGo))
		}
		t.row(name(l), spreadCount(xs), x, fmtNum(rep.per(scenarioInstr, l, callsPer)),
			rep.callsText(scenarioInstr, l), fmtNum(rep.per(scenarioInstr, l, rtPer)))
	}
	b.WriteString("\n")
}

// instrRatio answers the median over rounds of lib's instructions per
// cycle divided by other's in the same round, with the lowest and highest.
func (rep *report) instrRatio(lib, other string) (med, lo, hi float64, ok bool) {
	return ratioBy(rep.results[scenarioInstr][lib], rep.results[scenarioInstr][other], instrPerOp)
}

// callgrindTargets writes the target that the count speaks to: Redis's
// work per cycle of scenario 1 within 1.3x of the go-redis floor's, which
// the main tables measure in CPU time, the kernel's included.
func (rep *report) callgrindTargets(t table) {
	med, lo, hi, ok := rep.instrRatio(libOurs, libRawGo)
	if !ok {
		return
	}
	met := "no"
	if med <= 1.3 {
		met = "yes"
	}
	t.row("scenario 1: Redis's work per cycle within 1.3x of the go-redis floor's, in instructions (user space only)",
		fmtRange(med, lo, hi, true), met)
}

// spreadCount answers "median (min-max)" of counts, rounded to hundreds.
func spreadCount(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	c := func(x float64) string { return fmtCount(int64(x/100+0.5) * 100) }
	if len(xs) == 1 {
		return c(xs[0])
	}
	return fmt.Sprintf("%s (%s-%s)", c(median(xs)), c(slices.Min(xs)), c(slices.Max(xs)))
}

// fmtCount writes n with commas between thousands: 184,100.
func fmtCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// valgrindVersion answers valgrind's own version line, or "valgrind".
func valgrindVersion() string {
	out, err := exec.Command("valgrind", "--version").Output()
	if err != nil {
		return "valgrind"
	}
	return strings.TrimSpace(string(out))
}
