package faults

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/faults/history"
)

// Fault 3: a holder process is killed with kill -9 while it holds a
// reservation. Its key expires; another worker must take the resource over
// within the TTL and one retry interval.
func TestFaultKillHolder(t *testing.T) {
	s := newScenario(t, 3, "holder process killed (kill -9)", 5*time.Second)
	procs := map[string]*proc{}
	var names []string
	spawn := func() {
		name := fmt.Sprintf("p%d", len(names))
		names = append(names, name)
		procs[name] = s.startProc(s.spec(name, s.srv.URL()))
	}
	for range 4 {
		spawn()
	}
	for i := range 4 {
		s.goWorker(s.spec(fmt.Sprintf("w%d", i), s.srv.URL()), nil)
	}
	type kill struct {
		holder, resource string
		at               int64
	}
	var kills []kill
	for s.running() {
		time.Sleep(time.Duration(100+rand.IntN(400)) * time.Millisecond)
		var alive []string
		for _, n := range names {
			if procs[n] != nil {
				alive = append(alive, n)
			}
		}
		ev, ok := s.waitHolding(alive...)
		if !ok {
			continue
		}
		time.Sleep(time.Duration(rand.IntN(int(heartbeat))))
		p := procs[ev.Worker]
		p.kill()
		delete(procs, ev.Worker)
		s.fault()
		for _, e := range openHoldings(s.h, ev.Worker) {
			kills = append(kills, kill{e.Holder, e.Resource, history.Now()})
		}
		spawn()
	}
	time.Sleep(2 * ttl)
	s.finish(func(res *history.Result) {
		for _, k := range kills {
			hd := holdingOf(res, k.holder)
			if hd == nil || hd.EndKind != history.Crashed {
				continue // it had released just before the kill
			}
			next := nextHolding(res, k.resource, hd.End)
			if next == nil {
				t.Errorf("nobody took %q over after %s was killed", k.resource, k.holder)
				continue
			}
			// The key expires at most a TTL after the kill. The next holder
			// may have started to wait after it.
			from := max(hd.End, next.Call)
			took := time.Duration(next.Acquired - from)
			s.check("taken over within TTL + one retry", took <= ttl+retry+slack, took, false,
				"%q taken over by %s %v after its holder was killed (%v after it began to wait), want within %v",
				k.resource, next.Holder, time.Duration(next.Acquired-hd.End), took, ttl+retry)
		}
		if len(kills) == 0 {
			t.Error("no holder killed")
		}
	})
}

// Fault 6, in another process: a holder process is stopped (SIGSTOP) for
// longer than its TTL, then continued. On waking it must report its loss
// at once, and never touch its successor's key: the successor keeps its
// reservation and releases it normally; its token is greater.
func TestFaultHolderPaused(t *testing.T) {
	s := newScenario(t, 6, "holder process paused (SIGSTOP) past its TTL, then continued", 5*time.Second)
	var procs []*proc
	var names []string
	for i := range 4 {
		name := fmt.Sprintf("p%d", i)
		names = append(names, name)
		procs = append(procs, s.startProc(s.spec(name, s.srv.URL())))
	}
	for i := range 4 {
		s.goWorker(s.spec(fmt.Sprintf("w%d", i), s.srv.URL()), nil)
	}
	var pauses []pause
	for s.running() {
		time.Sleep(time.Duration(100+rand.IntN(300)) * time.Millisecond)
		ev, ok := s.waitHolding(names...)
		if !ok {
			continue
		}
		var p *proc
		for i, n := range names {
			if n == ev.Worker {
				p = procs[i]
			}
		}
		from, until := p.suspend(5 * ttl / 2)
		s.fault()
		pauses = append(pauses, pause{ev.Holder, ev.Resource, from, until})
	}
	time.Sleep(ttl)
	s.finish(func(res *history.Result) { s.checkPauses(res, pauses) })
}

// Fault 6, in this process: the heartbeat of one holder is blocked past its
// TTL, like a long GC pause, by a log handler that blocks (the heartbeat
// logs each renewal at debug level, holding the Client's lock). When it
// unblocks, the holder must report its loss at once and never touch its
// successor's key.
func TestFaultHeartbeatBlocked(t *testing.T) {
	s := newScenario(t, 6, "holder's heartbeat blocked past its TTL (in process, like a long GC pause)", 5*time.Second)
	gate := &gateHandler{Handler: s.logger("stalled").Handler()}
	for i := range 7 {
		s.goWorker(s.spec(fmt.Sprintf("w%d", i), s.srv.URL()), nil)
	}
	s.goWorker(s.spec("stalled", s.srv.URL()), slog.New(gate))
	var pauses []pause
	for s.running() {
		time.Sleep(time.Duration(100+rand.IntN(300)) * time.Millisecond)
		ev, ok := s.waitHolding("stalled")
		if !ok {
			continue
		}
		blocked, release := gate.arm()
		select {
		case <-blocked:
		case <-time.After(2 * heartbeat):
			release()
			continue // the holding ended first
		}
		from := history.Now()
		time.Sleep(5 * ttl / 2)
		until := history.Now() // before it wakes
		release()
		s.h.Add(history.Event{Kind: history.Suspended, Worker: "stalled", At: from, Until: until})
		s.fault()
		pauses = append(pauses, pause{ev.Holder, ev.Resource, from, until})
	}
	time.Sleep(ttl)
	s.finish(func(res *history.Result) { s.checkPauses(res, pauses) })
}

// pause is a holder suspended from from to until while it held resource.
type pause struct {
	holder, resource string
	from, until      int64
}

// checkPauses checks that each paused holder reported its loss on waking,
// and that its successors kept their reservations.
func (s *scenario) checkPauses(res *history.Result, pauses []pause) {
	t := s.t
	t.Helper()
	for _, p := range pauses {
		hd := holdingOf(res, p.holder)
		if hd == nil {
			t.Errorf("paused holding %s not in the history", p.holder)
			continue
		}
		if hd.End != 0 && hd.End < p.from {
			continue // released before the pause
		}
		s.check("loss reported on waking", hd.End != 0 && hd.End >= p.until && hd.End <= p.until+int64(heartbeat),
			time.Duration(hd.End-p.until), false,
			"holding %s paused %s-%s ended at %s (%s)", hd.Holder, stamp(p.from), stamp(p.until), stamp(hd.End), hd.EndKind)
		if hd.EndKind == history.Released && hd.Release.Outcome == history.OutcomeOK {
			t.Errorf("paused holding %s released its key after waking: it was not its own any more", hd.Holder)
		}
		for _, b := range res.Holds {
			if b.Resource != p.resource || b.Acquired <= p.from || b.Acquired >= hd.End {
				continue
			}
			// b took over while the paused holder still believed it held.
			// It must keep its reservation until it releases it, unless it
			// is paused in turn.
			kept := b.Excused != 0 || b.EndKind == history.Released && b.Release.Outcome == history.OutcomeOK
			s.check("successor kept its reservation", kept, -1, false,
				"successor %s of paused %s ended %s at %s", b.Holder, hd.Holder, b.EndKind, stamp(b.End))
			s.check("successor's token greater", b.Token > hd.Token, -1, false,
				"successor %s has token %d, paused %s had %d", b.Holder, b.Token, hd.Holder, hd.Token)
		}
	}
	if len(pauses) == 0 {
		t.Error("no holder paused")
	}
}

// gateHandler is a log handler that, once armed, blocks the next record of
// a renewal ("reservation-extended") until released. The heartbeat logs
// that record while it holds its Client's lock, so the whole Client stalls:
// the heartbeat, Validity, Release.
type gateHandler struct {
	slog.Handler
	mu      sync.Mutex
	blocked chan struct{}
	wait    chan struct{}
}

func (g *gateHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelDebug
}

func (g *gateHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "reservation-extended" {
		g.mu.Lock()
		blocked, wait := g.blocked, g.wait
		g.blocked = nil
		g.mu.Unlock()
		if blocked != nil {
			close(blocked)
			<-wait
		}
		return nil
	}
	if !g.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return g.Handler.Handle(ctx, r)
}

func (g *gateHandler) WithAttrs(as []slog.Attr) slog.Handler { panic("not used") }

func (g *gateHandler) WithGroup(string) slog.Handler { panic("not used") }

// arm makes the next renewal record block. blocked closes when it does;
// release unblocks it (and disarms the gate).
func (g *gateHandler) arm() (blocked <-chan struct{}, release func()) {
	b, w := make(chan struct{}), make(chan struct{})
	g.mu.Lock()
	g.blocked, g.wait = b, w
	g.mu.Unlock()
	var once sync.Once
	return b, func() {
		once.Do(func() {
			g.mu.Lock()
			g.blocked = nil
			g.mu.Unlock()
			close(w)
		})
	}
}
