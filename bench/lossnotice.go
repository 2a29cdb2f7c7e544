package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis-reservation/reservation"
)

// lossSettings are the timings of scenario 8: a TTL of 30 s and a heartbeat
// of 10 s, so that no renewal runs during a run and a loss is noticed by the
// push path (client tracking), never by the heartbeat.
var lossSettings = settings{ttl: 30 * time.Second, heartbeat: 10 * time.Second}

// settle is how long scenario 8 lets a Client that just acquired start
// watching its keys (one read of each on its tracking connection) before a
// foreign write.
const settle = 50 * time.Millisecond

// isLossNotice reports whether scenario is one of scenario 8's: 8 (DEL),
// 8s (SET to another value), 8f (FLUSHALL).
func isLossNotice(scenario string) bool { return lossWrite[scenario] != "" }

// lossWrite names the foreign write of each loss-notice scenario.
var lossWrite = map[string]string{"8": "DEL", "8s": "SET", "8f": "FLUSHALL"}

// lossNotice runs scenario 8: a Client holds cfg.n8 reservations; a plain
// go-redis client (e.info) writes to one held key at a time (8: DEL, 8s:
// SET to another value), or flushes the database (8f: every reservation
// ends at once). The latency is from the write's reply to the reservation's
// Done closing, for every reservation that the write ended. A reservation
// whose Done does not close within cfg.giveUp8 counts as not noticed, with
// that delay; one whose Err does not match ErrLost is counted in Causes.
// Only the writes and the notices are measured, not the acquisitions
// between them.
func (e *env) lossNotice(ctx context.Context, lib, scenario string, round int) result {
	r := result{Scenario: scenario, Lib: lib, Round: round}
	ls, rt, err := e.open(lib, 1, lossSettings)
	if err != nil {
		r.Err = err
		return r
	}
	defer closeAll(ls)
	o, ok := ls[0].(*ours)
	if !ok {
		r.Err = fmt.Errorf("scenario %s: %w", scenario, errNotSupported)
		return r
	}
	prefix := e.keyPrefix(scenario, lib, round) + "-"
	if err := warmUp(ctx, o, prefix+"warm"); err != nil {
		r.Err = err
		return r
	}
	n := e.cfg.n8
	batches := 0
	// hold acquires n fresh resources: a key overwritten by SET cannot be
	// acquired again.
	hold := func() ([]*reservation.Reservation, error) {
		rs := make([]*reservation.Reservation, 0, n)
		for i := range n {
			res, err := o.c.TryLock(ctx, prefix+strconv.Itoa(batches)+"-"+strconv.Itoa(i))
			if err != nil {
				for _, h := range rs {
					_ = h.Release(ctx)
				}
				return nil, err
			}
			rs = append(rs, res)
		}
		batches++
		// Let the Client start watching them.
		select {
		case <-time.After(settle):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return rs, nil
	}
	total := usage{calls: make(map[string]int64)}
	// measure runs body and adds what it used to the total.
	measure := func(body func() error) error {
		u, elapsed, err := e.measure(ctx, rt, body)
		total.add(u)
		r.Elapsed += elapsed
		return err
	}
	record := func(lats []time.Duration, missed, causes int) {
		r.Lat = append(r.Lat, lats...)
		r.Ops += int64(len(lats))
		r.Timeouts += missed
		r.Causes += causes
	}

	if scenario == "8f" {
		for range e.cfg.trials8f {
			rs, err := hold()
			if err != nil {
				r.Err = err
				break
			}
			err = measure(func() error {
				lats, missed, causes, err := e.notice(rs, func() error { return e.info.FlushAll(ctx).Err() })
				record(lats, missed, causes)
				return err
			})
			if err == nil {
				// The flush took the restart guard's marker too: prime
				// it again, as on a new server.
				err = e.prime(ctx)
			}
			if err != nil {
				r.Err = err
				break
			}
		}
		r.U = total
		return r
	}

	for done := 0; done < e.cfg.trials8 && r.Err == nil; {
		rs, err := hold()
		if err != nil {
			r.Err = err
			break
		}
		k := min(len(rs), e.cfg.trials8-done)
		r.Err = measure(func() error {
			for i, res := range rs[:k] {
				key := res.Key()
				write := func() error { return e.info.Del(ctx, key).Err() }
				if scenario == "8s" {
					write = func() error { return e.info.Set(ctx, key, "foreign-"+strconv.Itoa(i), 0).Err() }
				}
				lats, missed, causes, err := e.notice(rs[i:i+1], write)
				record(lats, missed, causes)
				if err != nil {
					return err
				}
			}
			return nil
		})
		done += k
		for _, res := range rs[k:] {
			_ = res.Release(ctx)
		}
	}
	r.U = total
	return r
}

// notice runs write, which ends every reservation of rs, and answers the
// delay from its reply to each one's Done closing (cfg.giveUp8 for those
// not closed by then, also counted in missed), and how many ended with an
// Err that does not match ErrLost.
func (e *env) notice(rs []*reservation.Reservation, write func() error) (lats []time.Duration, missed, causes int, err error) {
	doneAt := make([]time.Time, len(rs))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, res := range rs {
		wg.Go(func() {
			select {
			case <-res.Done():
				doneAt[i] = time.Now()
			case <-stop:
			}
		})
	}
	if err := write(); err != nil {
		close(stop)
		wg.Wait()
		return nil, 0, 0, err
	}
	replied := time.Now()
	timer := time.AfterFunc(e.cfg.giveUp8, func() { close(stop) })
	wg.Wait()
	timer.Stop()
	lats = make([]time.Duration, len(rs))
	for i, res := range rs {
		if doneAt[i].IsZero() {
			missed++
			lats[i] = e.cfg.giveUp8
			continue
		}
		lats[i] = max(doneAt[i].Sub(replied), 0)
		if !errors.Is(res.Err(), reservation.ErrLost) {
			causes++
		}
	}
	return lats, missed, causes, nil
}
