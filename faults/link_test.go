package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"

	"github.com/redis-reservation/reservation/faults/history"
)

// Fault 1: the link from one holder to Redis is cut. The holder must report
// the loss before its key expires on the server, and nobody else may hold
// the resource before then.
//
// "reset": the proxy stops: connections close and new ones are refused.
// "blackhole": the proxy drops every byte both ways and keeps the
// connections open, so that calls hang until a timeout.
func TestFaultCutLink(t *testing.T) {
	for _, mode := range []string{"reset", "blackhole"} {
		t.Run(mode, func(t *testing.T) {
			title := "link of one holder cut: connections reset, new ones refused"
			if mode == "blackhole" {
				title = "link of one holder cut: every byte dropped, connections left open"
			}
			s := newScenario(t, 1, title, 5*time.Second)
			const n = 8
			proxies := make([]*toxiproxy.Proxy, n)
			names := make([]string, n)
			for i := range n {
				names[i] = fmt.Sprintf("w%d", i)
				proxies[i] = s.proxy(names[i])
				// Long holdings, so that a cut holder learns of its loss
				// before it would release.
				spec := s.spec(names[i], proxyURL(proxies[i]))
				spec.HoldMin, spec.HoldMax = 2*ttl, 3*ttl
				s.goWorker(spec, nil)
			}
			rdb := s.srv.Client(t)
			ctx := context.Background()

			// A cut holding, and when its key expires on the server: after
			// expiresLo and before expiresHi.
			type cut struct {
				holder, resource     string
				at                   int64
				expiresLo, expiresHi int64
			}
			var cuts []cut
			for s.running() {
				time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
				// A holding fresh enough that its holder will not release
				// it before its local deadline.
				i, ev, ok := s.waitFresh(names, ttl-2*retry)
				if !ok {
					continue
				}
				p := proxies[i]
				if mode == "reset" {
					p.Stop()
				} else {
					s.addToxic(p, "cut", "timeout", map[string]int64{"timeout": 0})
				}
				at := history.Now()
				// Let what was in flight land, then read when the key will
				// expire: nothing from the holder reaches the server now.
				// PTTL is in whole milliseconds and read at an instant
				// between send and reply: the key expires before reply +
				// PTTL + 1 ms (and after sent + PTTL).
				time.Sleep(50 * time.Millisecond)
				sent := history.Now()
				pipe := rdb.Pipeline()
				get := pipe.Get(ctx, "reservation-"+ev.Resource)
				pttl := pipe.PTTL(ctx, "reservation-"+ev.Resource)
				_, _ = pipe.Exec(ctx)
				reply := history.Now()
				if get.Val() == ev.Holder && pttl.Val() > 0 {
					s.fault()
					lo, hi := sent+int64(pttl.Val()), reply+int64(pttl.Val()+time.Millisecond)
					cuts = append(cuts, cut{ev.Holder, ev.Resource, at, lo, hi})
					time.Sleep(time.Until(time.Unix(0, hi)) + 2*retry)
				}
				// Otherwise the holding ended just before the cut.
				if mode == "reset" {
					if err := p.Start(); err != nil {
						t.Fatalf("restart proxy: %v", err)
					}
				} else {
					s.removeToxic(p, "cut")
				}
			}
			s.finish(func(res *history.Result) {
				for _, c := range cuts {
					hd := holdingOf(res, c.holder)
					if hd == nil {
						t.Errorf("cut holding %s not in the history", c.holder)
						continue
					}
					// The key expires no sooner than expiresLo: the loss
					// must come before it.
					s.check("loss reported before the key expired on the server", hd.LostAt != 0 && hd.LostAt < c.expiresLo,
						time.Duration(c.expiresLo-hd.LostAt), true,
						"holding %s (cut at %s) reported its loss at %s (ended %s at %s), its key expired at %s-%s", c.holder,
						stamp(c.at), endStamp(hd.LostAt), hd.EndKind, endStamp(hd.End), stamp(c.expiresLo), stamp(c.expiresHi))
					if next := nextHolding(res, c.resource, c.at); next != nil {
						s.check("nobody else held it before the key expired", next.Acquired >= c.expiresLo,
							time.Duration(next.Acquired-c.expiresLo), true,
							"%s acquired %q at %s, before the cut holder's key expired at %s",
							next.Holder, c.resource, stamp(next.Acquired), stamp(c.expiresLo))
					}
				}
				if len(cuts) == 0 {
					t.Error("no cut injected")
				}
			})
		})
	}
}

// Fault 2: every worker's link turns slow now and then (latency and jitter
// beyond the heartbeat interval), or drops everything for a while and then
// closes the connection (toxiproxy's timeout toxic).
func TestFaultSlowLink(t *testing.T) {
	s := newScenario(t, 2, fmt.Sprintf("links slow (latency %v-%v each way with jitter %v, or beyond the TTL) or timing out (data dropped, then closed)",
		heartbeat-50*time.Millisecond, heartbeat+150*time.Millisecond, heartbeat), 6*time.Second)
	const n = 8
	proxies := make([]*toxiproxy.Proxy, n)
	for i := range n {
		name := fmt.Sprintf("w%d", i)
		proxies[i] = s.proxy(name)
		s.goWorker(s.spec(name, proxyURL(proxies[i])), nil)
	}
	busy := make([]bool, n)
	type toxic struct {
		i     int
		name  string
		until time.Time
	}
	var active []toxic
	seq := 0
	for s.running() {
		time.Sleep(time.Duration(50+rand.IntN(150)) * time.Millisecond)
		now := time.Now()
		kept := active[:0]
		for _, x := range active {
			if now.After(x.until) {
				s.removeToxic(proxies[x.i], x.name)
				busy[x.i] = false
				continue
			}
			kept = append(kept, x)
		}
		active = kept
		i := rand.IntN(n)
		if busy[i] {
			continue
		}
		seq++
		name := fmt.Sprintf("t%d", seq)
		switch k := rand.IntN(6); {
		case k < 3:
			lat := int64(heartbeat/time.Millisecond) - 50 + rand.Int64N(200)
			s.addToxic(proxies[i], name, "latency", map[string]int64{"latency": lat, "jitter": int64(heartbeat / time.Millisecond)})
		case k < 4:
			// Beyond the TTL: a reply comes back after the reservation
			// it answers could have expired.
			s.addToxic(proxies[i], name, "latency", map[string]int64{"latency": int64(ttl/time.Millisecond) + rand.Int64N(200)})
		default:
			s.addToxic(proxies[i], name, "timeout", map[string]int64{"timeout": 50 + rand.Int64N(400)})
		}
		busy[i] = true
		s.fault()
		active = append(active, toxic{i, name, now.Add(time.Duration(200+rand.IntN(1300)) * time.Millisecond)})
	}
	for _, x := range active {
		s.removeToxic(proxies[x.i], x.name)
	}
	s.finish(nil)
}

// nextHolding answers the first holding of resource acquired after at.
func nextHolding(res *history.Result, resource string, at int64) *history.Holding {
	var next *history.Holding
	for _, hd := range res.Holds {
		if hd.Resource == resource && hd.Acquired > at && (next == nil || hd.Acquired < next.Acquired) {
			next = hd
		}
	}
	return next
}

func stamp(ns int64) string {
	return time.Unix(0, ns).Format("15:04:05.000000")
}

// endStamp is stamp of an end instant, "never" when it is 0.
func endStamp(ns int64) string {
	if ns == 0 {
		return "never"
	}
	return stamp(ns)
}
