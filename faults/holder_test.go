package faults

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/faults/history"
)

// Fault 3: a holder process is killed with kill -9 while it holds a
// reservation. Its key expires (when, read with PTTL once the process is
// gone); nobody may take the resource before, and another worker must take
// it over within one retry interval of the expiry.
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
	// The killed holdings, and when their keys expire on the server (read
	// with PTTL once the process is gone: nothing renews them any more).
	var kills []holderKill
	rdb := s.srv.Client(t)
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
		at := history.Now()
		delete(procs, ev.Worker)
		s.fault()
		keys, _, err := readExpiries(context.Background(), rdb, resources, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range openHoldings(s.h, ev.Worker) {
			if k, ok := keys[e.Resource]; ok && k.holder == e.Holder {
				kills = append(kills, holderKill{e.Holder, e.Resource, at, k.lo, k.hi})
			}
		}
		spawn()
	}
	// Time for the last dead holders' keys to expire and workers to take
	// their resources. The workers pick resources at random, so a fixed
	// wait may end before any of them asks for one again: wait for each
	// killed holding's successor, for as long as a dozen of their cycles.
	waitTakenOver(s.h, kills, 10*time.Second)
	s.finish(func(res *history.Result) {
		s.checkTakeovers(res, kills)
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
	rdb := s.srv.Client(t)
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
		// Its key, read once it is stopped: nothing renews it any more.
		var key keyExpiry
		from, until := p.suspend(5*ttl/2, func() {
			keys, _, err := readExpiries(context.Background(), rdb, resources, false)
			if err != nil {
				t.Error(err)
			}
			key = keys[ev.Resource]
		})
		s.fault()
		if key.holder == ev.Holder {
			// The premise of the scenario: its key expired while it was
			// stopped, so that it wakes a stale holder.
			s.check("key expired while the holder was stopped", key.hi < until, time.Duration(until-key.hi), true,
				"holding %s stopped %s-%s: its key expired only at %s", ev.Holder, stamp(from), stamp(until), stamp(key.hi))
		}
		pauses = append(pauses, pause{ev.Holder, ev.Resource, from, until})
	}
	time.Sleep(ttl)
	s.finish(func(res *history.Result) { s.checkPauses(res, pauses) })
}

// Fault 6, in this process, turned around: the Client's events are held up
// for twice the TTL by a log handler or an OnEvent hook that blocks (as a
// slow log shipper would). The Client delivers events from a goroutine of
// its own, never from its heartbeat, so this must not look like a paused
// holder: its holding keeps being renewed (the key, read on the server at
// the end of the block, was renewed within the last heartbeat), is not
// lost for it and is released normally, the history checks pass (nothing
// is excused: no Suspended event is recorded), and the events held back
// are delivered once the block ends. The paused holder itself is
// TestFaultHolderPaused, with a stopped process.
func TestFaultEventsBlocked(t *testing.T) {
	s := newScenario(t, 6, "holder's log handler or OnEvent hook blocked for twice the TTL (in process): not a pause", 5*time.Second)
	g := &gate{}
	for i := range 7 {
		s.goWorker(s.spec(fmt.Sprintf("w%d", i), s.srv.URL()), nil)
	}
	// Holdings longer than the block, so that the key would expire during
	// it if it were not renewed.
	stalled := s.spec("stalled", s.srv.URL())
	stalled.HoldMin, stalled.HoldMax = 4*ttl, 5*ttl
	s.goWorkerHook(stalled, slog.New(&gateHandler{Handler: s.logger("stalled").Handler(), g: g}), g.onEvent)
	rdb := s.srv.Client(t)
	ctx := context.Background()
	type block struct {
		holder      string
		from, until int64
	}
	var blocks []block
	for n := 0; s.running(); n++ {
		time.Sleep(time.Duration(100+rand.IntN(300)) * time.Millisecond)
		// A fresh holding, which lasts past the block.
		_, ev, ok := s.waitFresh([]string{"stalled"}, ttl)
		if !ok {
			continue
		}
		inHook := n%2 == 1
		blocked, release := g.arm(inHook)
		select {
		case <-blocked:
		case <-time.After(2 * heartbeat):
			release()
			continue // the holding ended first
		}
		from := history.Now()
		time.Sleep(2 * ttl)
		pipe := rdb.Pipeline()
		get := pipe.Get(ctx, "reservation-"+ev.Resource)
		pttl := pipe.PTTL(ctx, "reservation-"+ev.Resource)
		_, _ = pipe.Exec(ctx)
		until := history.Now()
		release()
		s.fault()
		where := "log handler"
		if inHook {
			where = "OnEvent hook"
		}
		// Renewed every heartbeat: at most a heartbeat (and the
		// scheduling of a busy machine) since the last renewal.
		age := ttl - pttl.Val()
		s.check("holding renewed while the events were blocked", get.Val() == ev.Holder && age <= heartbeat+slack, age, false,
			"%s blocked %s-%s: the key of %s holds %q with %v left of its TTL %v (last renewed %v before), want it renewed within %v",
			where, stamp(from), stamp(until), ev.Holder, get.Val(), pttl.Val(), ttl, age, heartbeat)
		blocks = append(blocks, block{ev.Holder, from, until})
	}
	time.Sleep(ttl)
	s.finish(func(res *history.Result) {
		for _, b := range blocks {
			hd := holdingOf(res, b.holder)
			if hd == nil {
				t.Errorf("holding %s, held during a block, not in the history", b.holder)
				continue
			}
			kept := hd.EndKind == history.Released && hd.Release.Outcome == history.OutcomeOK && hd.End > b.until
			s.check("holding kept through the block and released", kept, noMeasure, false,
				"holding %s held during the block %s-%s ended %s at %s", hd.Holder, stamp(b.from), stamp(b.until), hd.EndKind, endStamp(hd.End))
			// The renewals made during the block were reported once it
			// ended: every heartbeat of it, less one for the phase.
			want := int(time.Duration(b.until-b.from)/heartbeat) - 1
			during, after := 0, 0
			var last int64
			for _, d := range g.deliveries() {
				if d.Kind != reservation.EventExtended || d.Holder != b.holder {
					continue
				}
				switch {
				case d.At > b.from && d.At < b.until:
					during++
				case d.At >= b.until && d.At < b.until+int64(heartbeat/2):
					after++
					last = d.At
				}
			}
			if during != 0 {
				t.Errorf("holding %s: %d renewals reported during the block %s-%s: the gate did not block", b.holder, during, stamp(b.from), stamp(b.until))
			}
			s.check("renewals of the block reported after it", after >= want, time.Duration(last-b.until), false,
				"holding %s: %d renewals reported within %v of the end of the block %s-%s, want at least %d",
				b.holder, after, heartbeat/2, stamp(b.from), stamp(b.until), want)
		}
		if len(blocks) == 0 {
			t.Error("no event blocked")
		}
	})
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
		s.checkSuccessors(res, hd, p)
	}
	if len(pauses) == 0 {
		t.Error("no holder paused")
	}
}

// checkSuccessors checks that those who took over the resource of hd while
// it was paused (p) kept their reservations, with greater tokens.
func (s *scenario) checkSuccessors(res *history.Result, hd *history.Holding, p pause) {
	s.t.Helper()
	for _, b := range res.Holds {
		if b.Resource != p.resource || b.Acquired <= p.from || (hd.End != 0 && b.Acquired >= hd.End) {
			continue
		}
		// b took over while the paused holder still believed it held.
		// It must keep its reservation until it releases it, unless it
		// is paused in turn.
		kept := len(b.Excuses) > 0 || b.EndKind == history.Released && b.Release.Outcome == history.OutcomeOK
		s.check("successor kept its reservation", kept, noMeasure, false,
			"successor %s of paused %s ended %s at %s", b.Holder, hd.Holder, b.EndKind, endStamp(b.End))
		s.check("successor's token greater", b.Token > hd.Token, noMeasure, false,
			"successor %s has token %d, paused %s had %d", b.Holder, b.Token, hd.Holder, hd.Token)
	}
}

// gate blocks the Client's event delivery on the next renewal event
// ("reservation-extended") once armed: in the OnEvent hook, or in the log
// handler (which the Client calls after the hook, from the same
// goroutine). The hook records every event it is given, with when.
type gate struct {
	mu      sync.Mutex
	inHook  bool
	blocked chan struct{}
	wait    chan struct{}
	got     []delivery
}

// delivery is an event as the hook received it, at At.
type delivery struct {
	Kind   reservation.EventKind
	Holder string
	At     int64
}

// onEvent is the Client's OnEvent hook.
func (g *gate) onEvent(e reservation.Event) {
	g.mu.Lock()
	g.got = append(g.got, delivery{e.Kind, e.Holder, history.Now()})
	g.mu.Unlock()
	if e.Kind == reservation.EventExtended {
		g.block(true)
	}
}

// block blocks, when armed for the hook (inHook) or the handler, until
// released.
func (g *gate) block(inHook bool) {
	g.mu.Lock()
	blocked, wait := g.blocked, g.wait
	if blocked == nil || g.inHook != inHook {
		g.mu.Unlock()
		return
	}
	g.blocked = nil
	g.mu.Unlock()
	close(blocked)
	<-wait
}

// deliveries answers the events the hook received so far.
func (g *gate) deliveries() []delivery {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.got)
}

// arm makes the next renewal event block, in the hook when inHook, else
// in the log handler. blocked closes when it does; release unblocks it
// (and disarms the gate).
func (g *gate) arm(inHook bool) (blocked <-chan struct{}, release func()) {
	b, w := make(chan struct{}), make(chan struct{})
	g.mu.Lock()
	g.blocked, g.wait, g.inHook = b, w, inHook
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

// gateHandler is a log handler that blocks on the renewal record when its
// gate is armed for the handler, and passes warnings and errors on.
type gateHandler struct {
	slog.Handler
	g *gate
}

func (h *gateHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelDebug
}

func (h *gateHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == string(reservation.EventExtended) {
		h.g.block(false)
		return nil
	}
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h *gateHandler) WithAttrs(as []slog.Attr) slog.Handler { panic("not used") }

func (h *gateHandler) WithGroup(string) slog.Handler { panic("not used") }
