package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/faults/history"
	"github.com/redis-reservation/reservation/faults/internal/worker"
	"github.com/redis-reservation/reservation/internal/redisserver"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// Timings of the failover scenarios. The TTL outlasts a failover (2-3 s
// from the kill to the promoted replica answering), so that a holding can
// live through one: a shorter TTL would have every holder reach its local
// deadline while no master answers, and the failover could lose nothing
// that anyone still relied on.
const (
	failoverTTL       = 5 * time.Second
	failoverHeartbeat = 200 * time.Millisecond
	// failoverRounds is the short form's number of failovers per run:
	// two plain kills and two after the replica fell behind.
	failoverRounds = 4
	// maxLag bounds how long the replica's link is cut before the probe
	// tries, in a lagging round; the kill follows the probe. The replica
	// stops for less than half a second, far less than it takes Sentinel
	// (1.5 s) or the cluster (1 s) to find it down.
	maxLag = 200 * time.Millisecond
)

// failoverMode is one run of a failover scenario: its workers' WaitReplicas.
type failoverMode struct {
	name         string
	waitReplicas int
}

var failoverModes = []failoverMode{{"no-wait", 0}, {"wait-replicas-1", 1}}

// deployment is what the failover rounds need of a Sentinel set or a
// Cluster.
type deployment struct {
	url string
	// nodes are the data servers (no Sentinel), to find a master's replica.
	nodes []*redisserver.Server
	// readOnly: reading a replica needs READONLY first (Cluster).
	readOnly bool
	// victim returns the master to kill in round n, the resources of the
	// workers it serves (nil: all of them) and the probe's resource, which
	// it serves too.
	victim func(ctx context.Context, n int) (master *redisserver.Server, served []string, probe string, err error)
	// promote waits until a replica of killed answers as master, and
	// returns it.
	promote func(ctx context.Context, killed *redisserver.Server) (*redisserver.Server, error)
	// rejoin restarts killed and waits until it is a synced replica of
	// promoted.
	rejoin func(ctx context.Context, killed, promoted *redisserver.Server) error
}

// failover is one round: the master killed, the replica promoted in its
// place, and what that replica held right after the kill.
type failover struct {
	n               int
	master, replica string // addresses
	resources       []string
	lag             time.Duration // the replica's link cut that long before the kill; 0: a plain kill
	// from: the kill sent; at: the process gone; promoted: the replica
	// answering as master; rejoined: the killed server a synced replica.
	from, at, promoted, rejoined int64
	keys                         map[string]keyExpiry // on the replica, after the kill, before its promotion
}

// Fault 10: Sentinel failover. Workers contend through the Sentinel URL
// while the master is killed with kill -9, again and again: each round
// kills the master of now, waits until Sentinel promotes its replica, and
// restarts the killed server as a replica of the new master before the next
// round. Every other round, the replica falls behind first: its link is cut
// (the replica stopped, its connection killed on the master), and a probe
// acquires a resource before the kill (see probe), which dies with the
// master, as does whatever the workers took meanwhile. Run without and with
// WaitReplicas 1; see checkFailovers for what each must show.
func TestFaultSentinel(t *testing.T) {
	for _, mode := range failoverModes {
		t.Run(mode.name, func(t *testing.T) {
			// DownAfter 1.5 s, not 1 s: with 1 s, the Sentinel that led a
			// failover marked the new master down about a second after the
			// switch (it reconnects to an instance at most once a second)
			// and failed over a second time, to the server just restarted,
			// in every round after the first.
			sn := redistest.StartSentinel(t, redisserver.SentinelOptions{Replicas: 1, DownAfter: 1500 * time.Millisecond})
			d := &deployment{
				url:   sn.URL(),
				nodes: append([]*redisserver.Server{sn.Master}, sn.Replicas...),
				victim: func(ctx context.Context, _ int) (*redisserver.Server, []string, string, error) {
					addr, err := sn.CurrentMaster(ctx)
					if err != nil {
						return nil, nil, "", err
					}
					m := sn.Server(addr)
					if m == nil {
						return nil, nil, "", fmt.Errorf("the Sentinels report a master %s that is not ours", addr)
					}
					return m, nil, "probe", nil
				},
				promote: func(ctx context.Context, killed *redisserver.Server) (*redisserver.Server, error) {
					return sn.WaitForNewMaster(ctx, killed.Addr)
				},
				// Restarted without its data, the old master comes back as
				// an empty master until Sentinel converts it, about ten
				// seconds later; an operator restarting a master without
				// persistence makes it a replica at once, and so does this.
				rejoin: func(ctx context.Context, killed, promoted *redisserver.Server) error {
					if err := killed.Restart(ctx); err != nil {
						return err
					}
					host, port, _ := net.SplitHostPort(promoted.Addr)
					rdb := redis.NewClient(&redis.Options{Addr: killed.Addr, Password: killed.Password, MaxRetries: -1})
					defer rdb.Close()
					if err := rdb.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
						return fmt.Errorf("REPLICAOF %s on %s: %w", promoted.Addr, killed.Addr, err)
					}
					return waitReplica(ctx, killed, promoted)
				},
			}
			title := "Sentinel (master, 1 replica, 3 Sentinels): master killed (kill -9) each round, replica promoted, old master back as its replica; every other round the replica's link cut first and a resource acquired before the kill"
			runFailovers(t, 10, title, mode, d, []string{"job-a", "job-b", "job-c", "job-d", "{tagged}job-e", "{tagged}job-f"})
		})
	}
}

// Fault 11: Cluster failover, as fault 10 on a cluster of 3 masters with a
// replica each: the workers' resources are spread over the masters, two on
// each, and each round kills one master, in turn, waits until its replica
// is promoted, and restarts the killed node, which rejoins as a replica
// (its nodes.conf kept).
func TestFaultCluster(t *testing.T) {
	for _, mode := range failoverModes {
		t.Run(mode.name, func(t *testing.T) {
			cl := redistest.StartCluster(t, redisserver.ClusterOptions{Replicas: 1})
			ctx := t.Context()
			// Three resources per master, in its slots as the cluster
			// starts: two for the workers, one for the probe.
			var shards [][]string
			byMaster := map[string]int{}
			for i := 0; len(shards) < 3 || slices.ContainsFunc(shards, func(s []string) bool { return len(s) < 3 }); i++ {
				if i > 1000 {
					t.Fatalf("no three resource names for each of 3 masters among 1000: %v", shards)
				}
				name := fmt.Sprintf("job-%d", i)
				m, err := cl.MasterForSlot(ctx, redisserver.SlotOf("reservation-"+name))
				if err != nil {
					t.Fatal(err)
				}
				k, ok := byMaster[m.Addr]
				if !ok {
					k = len(shards)
					byMaster[m.Addr] = k
					shards = append(shards, nil)
				}
				if len(shards[k]) < 3 {
					shards[k] = append(shards[k], name)
				}
			}
			var names []string
			for _, sh := range shards {
				names = append(names, sh[:2]...)
			}
			d := &deployment{
				url:      cl.URL(),
				nodes:    cl.Servers(),
				readOnly: true,
				victim: func(ctx context.Context, n int) (*redisserver.Server, []string, string, error) {
					sh := shards[n%len(shards)]
					m, err := cl.MasterForSlot(ctx, redisserver.SlotOf("reservation-"+sh[0]))
					return m, sh[:2], sh[2], err
				},
				promote: cl.WaitForFailover,
				rejoin: func(ctx context.Context, killed, promoted *redisserver.Server) error {
					if err := killed.Restart(ctx); err != nil {
						return err
					}
					return waitReplica(ctx, killed, promoted)
				},
			}
			title := "Cluster (3 masters × 1 replica): one master killed (kill -9) each round, in turn, replica promoted, killed node back as its replica; every other round the replica's link cut first and a resource acquired before the kill"
			runFailovers(t, 11, title, mode, d, names)
		})
	}
}

// runFailovers runs a failover scenario on d: 8 workers contending for
// names, and a probe (see probe), through rounds of failover
// (failoverRounds, or as many as -soak allows), then the checks.
func runFailovers(t *testing.T, order int, title string, mode failoverMode, d *deployment, names []string) {
	if mode.waitReplicas > 0 {
		title += fmt.Sprintf("; WaitReplicas %d", mode.waitReplicas)
	} else {
		title += "; without WaitReplicas"
	}
	// The short form is a number of rounds, not a duration.
	s := newScenarioAt(t, order, title, 0, d.url, failoverTTL, failoverHeartbeat)
	s.localDeadline = failoverTTL - (failoverTTL/100 + reservation.DefaultDriftMargin)
	var trylockers []string
	for i := range 8 {
		name := fmt.Sprintf("w%d", i)
		spec := s.spec(name, d.url)
		spec.Resources = names
		spec.WaitReplicas = mode.waitReplicas
		// Long holdings with Lock, some of which outlive a failover (2-3
		// s); short ones with TryLock only, whose acquisitions time the
		// acquire itself, not a wait for the resource.
		spec.HoldMin, spec.HoldMax = time.Second, 4*time.Second
		if i%4 < 2 {
			spec.LockRatio = 1
			spec.HoldMin, spec.HoldMax = 20*time.Millisecond, 300*time.Millisecond
			trylockers = append(trylockers, name)
		}
		s.goWorker(spec, nil)
	}
	p := newProbe(s, d.url, mode.waitReplicas)
	time.Sleep(1500 * time.Millisecond)
	var rounds []failover
	for n := 0; !t.Failed() && (n < failoverRounds || s.running()); n++ {
		f := failOver(t, d, n, names, p)
		rounds = append(rounds, f)
		s.fault()
		t.Logf("round %d: %s killed (%s), %s answered as master %v later, old master a synced replica again %v after that; the replica held %d of %d keys",
			n, f.master, lagText(f.lag), f.replica, time.Duration(f.promoted-f.at).Round(time.Millisecond),
			time.Duration(f.rejoined-f.promoted).Round(time.Millisecond), len(f.keys), len(f.resources))
		time.Sleep(1500*time.Millisecond + time.Duration(rand.Int64N(int64(time.Second))))
	}
	p.wait()
	checkFailovers(s, mode, rounds, trylockers, p)
}

// probe acquires, in each lagging round, the probe's resource on the
// master about to be killed, after its replica's link was cut, and holds it
// through the failover, while a waiter of its own queues for it (Lock): the
// acquisition that asynchronous replication loses, and the one that takes
// its place on the promoted replica. With WaitReplicas, the acquisition
// must be refused (ErrNotReplicated).
type probe struct {
	s              *scenario
	holder, waiter *reservation.Client
	wg             sync.WaitGroup
	// tries, acquired and refused count the holder's attempts, those that
	// acquired, and those refused as not replicated; the others failed
	// otherwise.
	tries, acquired, refused int
}

func newProbe(s *scenario, url string, waitReplicas int) *probe {
	p := &probe{s: s}
	for _, c := range []**reservation.Client{&p.holder, &p.waiter} {
		by := "probe-holder"
		if c == &p.waiter {
			by = "probe-waiter"
		}
		var err error
		*c, err = reservation.New(url, &reservation.Options{By: by, TTL: s.ttl, HeartbeatInterval: s.heartbeat,
			RetryInterval: retry, WaitReplicas: waitReplicas, Logger: s.logger(by)})
		if err != nil {
			s.t.Fatal(err)
		}
		s.t.Cleanup(func() { (*c).Close() })
	}
	return p
}

// warm has the probe's Clients read resource, so that a Cluster client
// whose slot map went stale in the failovers since it last worked (it
// would send its next command to a former master, now a replica that the
// round is about to stop) reads the map again, before the round cuts the
// replica's link.
func (p *probe) warm(resource string) {
	for _, c := range []*reservation.Client{p.holder, p.waiter} {
		ctx, cancel := context.WithTimeout(p.s.ctx, time.Second)
		if _, err := c.Status(ctx, resource); err != nil {
			p.s.t.Logf("probe: Status %q before the round: %v", resource, err)
		}
		cancel()
	}
	// go-redis reads the slot map again in the background after a MOVED.
	time.Sleep(100 * time.Millisecond)
}

// try acquires resource with the holder and, when it did, holds it for
// longer than the failover in the background and has the waiter queue for
// it.
func (p *probe) try(resource string) {
	p.tries++
	ctx, cancel := context.WithTimeout(p.s.ctx, time.Second)
	call := history.Now()
	r, err := p.holder.TryLock(ctx, resource)
	cancel()
	switch {
	case errors.Is(err, reservation.ErrNotReplicated):
		p.refused++
		return
	case err != nil:
		p.s.t.Logf("probe: TryLock %q after the replica's link was cut: %v", resource, err)
		return
	}
	p.acquired++
	p.s.h.Add(history.Event{Kind: history.Acquired, Worker: "probe-holder", Resource: resource,
		Holder: r.Holder(), Token: r.Token(), Call: call, At: history.Now()})
	p.wg.Go(func() { worker.Hold(p.s.ctx, r, worker.Spec{Name: "probe-holder"}, 2*failoverTTL, p.s.h.Add) })
	p.wg.Go(func() {
		ctx, cancel := context.WithTimeout(p.s.ctx, 3*failoverTTL)
		call := history.Now()
		r, err := p.waiter.Lock(ctx, resource)
		cancel()
		if err != nil {
			p.s.t.Logf("probe: waiter's Lock %q: %v", resource, err)
			return
		}
		p.s.h.Add(history.Event{Kind: history.Acquired, Worker: "probe-waiter", Resource: resource,
			Holder: r.Holder(), Token: r.Token(), Call: call, At: history.Now()})
		worker.Hold(p.s.ctx, r, worker.Spec{Name: "probe-waiter"}, 100*time.Millisecond, p.s.h.Add)
	})
	time.Sleep(50 * time.Millisecond) // the waiter refused, and waiting
}

// wait waits until the probe's holdings are over.
func (p *probe) wait() { p.wg.Wait() }

// failOver runs round n on d: it kills the master of now, reads the keys of
// names that the replica holds once the kill has reached it, waits for the
// promotion and has the killed server rejoin as a replica. Every other
// round, it cuts the replica's link first and has p try its resource
// before the kill.
func failOver(t *testing.T, d *deployment, n int, names []string, p *probe) failover {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	master, served, probeResource, err := d.victim(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if served != nil {
		names = served
	}
	names = append(slices.Clone(names), probeResource)
	replica, err := replicaOf(ctx, d.nodes, master.Addr)
	if err != nil {
		t.Fatal(err)
	}
	f := failover{n: n, master: master.Addr, replica: replica.Addr, resources: names}
	if n%2 == 1 {
		p.warm(probeResource)
		// The replica falls behind: stopped, so that it cannot connect
		// again, its link killed on the master. What the master takes from
		// now on reaches no replica.
		replica.Pause()
		rdb := redis.NewClient(&redis.Options{Addr: master.Addr, Password: master.Password, MaxRetries: -1})
		err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err()
		rdb.Close()
		if err != nil {
			replica.Resume()
			t.Fatalf("cut the replica's link: CLIENT KILL TYPE replica on %s: %v", master.Addr, err)
		}
		cut := history.Now()
		time.Sleep(time.Duration(rand.Int64N(int64(maxLag))))
		p.try(probeResource)
		f.lag = time.Since(time.Unix(0, cut))
	}
	f.from = history.Now()
	master.Kill()
	f.at = history.Now()
	replica.Resume()
	if f.keys, err = replicaKeys(ctx, replica, names, d.readOnly); err != nil {
		t.Fatal(err)
	}
	promoted, err := d.promote(ctx, master)
	if err != nil {
		t.Fatal(err)
	}
	f.promoted = history.Now()
	if promoted != replica {
		t.Fatalf("round %d: %s promoted, want the replica %s of the killed master %s", n, promoted.Addr, replica.Addr, master.Addr)
	}
	if err := d.rejoin(ctx, master, promoted); err != nil {
		t.Fatalf("round %d: restart %s as a replica of %s: %v", n, master.Addr, promoted.Addr, err)
	}
	f.rejoined = history.Now()
	return f
}

func lagText(lag time.Duration) string {
	if lag == 0 {
		return "plain kill"
	}
	return fmt.Sprintf("its replica's link cut %v before", lag.Round(time.Millisecond))
}

// replicaOf returns the running node of nodes that replicates addr.
func replicaOf(ctx context.Context, nodes []*redisserver.Server, addr string) (*redisserver.Server, error) {
	for _, n := range nodes {
		if n.Pid() == 0 {
			continue
		}
		info, err := n.Info(ctx, "replication")
		if err != nil {
			continue
		}
		if redisserver.InfoField(info, "role") == "slave" &&
			net.JoinHostPort(redisserver.InfoField(info, "master_host"), redisserver.InfoField(info, "master_port")) == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no replica of %s", addr)
}

// waitReplica waits until s is a replica of master, synced, and master sees
// it online.
func waitReplica(ctx context.Context, s, master *redisserver.Server) error {
	var last string
	for {
		info, err := s.Info(ctx, "replication")
		if err == nil {
			mi, merr := master.Info(ctx, "replication")
			upstream := net.JoinHostPort(redisserver.InfoField(info, "master_host"), redisserver.InfoField(info, "master_port"))
			last = fmt.Sprintf("role:%s master:%s link:%s; master sees %q", redisserver.InfoField(info, "role"), upstream,
				redisserver.InfoField(info, "master_link_status"), redisserver.InfoField(mi, "slave0"))
			if redisserver.InfoField(info, "role") == "slave" && upstream == master.Addr &&
				redisserver.InfoField(info, "master_link_status") == "up" && merr == nil &&
				strings.Contains(redisserver.InfoField(mi, "slave0"), ",state=online,") {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not a synced replica of %s: %w (last: %s)", s.Addr, master.Addr, ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// replicaKeys waits until replica has seen its master's link end (it has
// then applied all it received), and reads the keys of names it holds.
func replicaKeys(ctx context.Context, replica *redisserver.Server, names []string, readOnly bool) (map[string]keyExpiry, error) {
	for {
		info, err := replica.Info(ctx, "replication")
		if err == nil && redisserver.InfoField(info, "master_link_status") == "down" {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("replica %s never saw its master go: %w", replica.Addr, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	opt := &redis.Options{Addr: replica.Addr, Password: replica.Password, MaxRetries: -1}
	if readOnly {
		opt.OnConnect = func(ctx context.Context, cn *redis.Conn) error { return cn.ReadOnly(ctx).Err() }
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	keys, _, err := readExpiries(ctx, rdb, names, false)
	return keys, err
}

// checkFailovers stops the workers and checks the history.
//
// A holding is held at a kill when it was acquired before the master of its
// resource died and had not ended by then; it is lost with the failover
// when the replica promoted in its place did not hold its key with its
// holder value (read on the replica after the kill, before its promotion).
// An overlap and an unreported loss are what the history checker calls an
// overlap and a silent loss, with no failover to excuse them: two holdings
// of one resource at once, and a release that found its key gone while its
// holder still had validity left and had reported no loss (the holder never
// knew).
//
// Without WaitReplicas, replication is asynchronous: every holding held at
// a kill is recorded as such (history.FailedOver), which excuses an overlap
// and an unreported loss, counted and not failed, as long as the holder
// stopped holding by its local deadline and its successor's token is
// greater. With WaitReplicas 1, nothing is excused: every holding held at a
// kill must be on the promoted replica, no acquisition of the probe after
// the replica's link was cut may be held (and some must be refused as not
// replicated), and there must be no overlap and no unreported loss. In
// both, a holder whose key the failover lost must stop holding by its local
// deadline, measured from the kill.
func checkFailovers(s *scenario, mode failoverMode, rounds []failover, trylockers []string, p *probe) {
	t := s.t
	type atRisk struct {
		f    failover
		held history.Event
	}
	var risks []atRisk
	events := s.h.Events()
	for _, f := range rounds {
		for _, e := range heldAt(events, f.resources, f.from, f.at) {
			risks = append(risks, atRisk{f, e})
			if mode.waitReplicas == 0 {
				s.h.Add(history.Event{Kind: history.FailedOver, Worker: e.Worker, Resource: e.Resource, Holder: e.Holder,
					At: f.at, Until: f.promoted})
			}
		}
	}
	s.finish(func(res *history.Result) {
		// The same history, with no failover to excuse anything.
		strict := history.New()
		for _, e := range s.h.Events() {
			if e.Kind != history.FailedOver {
				strict.Add(e)
			}
		}
		unreported := 0
		for _, v := range strict.Check(s.limits()).Violations {
			if v.Check == "silent-loss" {
				unreported++
			}
			if mode.waitReplicas == 0 {
				t.Logf("failover excused: %v", v)
			}
		}
		overlaps, stale := overlapsOf(res)
		lost := 0
		var afterPromotion []time.Duration
		for _, r := range risks {
			hd := holdingOf(res, r.held.Holder)
			if hd == nil {
				t.Errorf("holding %s held at a kill is not in the history", r.held.Holder)
				continue
			}
			if k, ok := r.f.keys[hd.Resource]; ok && k.holder == hd.Holder {
				continue
			}
			lost++
			t.Logf("round %d: holding %s of %q (token %d, acquired %s, %s) lost with the failover: the replica held %q; ended %s (%s)",
				r.f.n, hd.Holder, hd.Resource, hd.Token, stamp(hd.Acquired), lagText(r.f.lag), r.f.keys[hd.Resource].holder,
				endStamp(hd.End), hd.EndKind)
			if hd.End != 0 {
				afterPromotion = append(afterPromotion, time.Duration(hd.End-r.f.promoted))
			}
			bound := r.f.at + int64(s.localDeadline+slack)
			s.check("holder whose key the failover lost stopped holding by its local deadline", hd.End != 0 && hd.End <= bound,
				time.Duration(hd.End-r.f.at), false,
				"holding %s of %q, whose key the replica promoted at %s lacked, ended at %s (%s), after its local deadline (the kill at %s plus %v)",
				hd.Holder, hd.Resource, stamp(r.f.promoted), endStamp(hd.End), hd.EndKind, stamp(r.f.at), s.localDeadline)
		}
		if mode.waitReplicas > 0 {
			s.checkCounted("held at a kill and on the promoted replica", len(risks), lost,
				"%d of %d holdings held at a kill were not on the replica promoted: WaitReplicas let a holder rely on a write that no replica had", lost, len(risks))
			s.checkCounted("acquisition after the replica's link was cut not held", p.tries, p.acquired,
				"%d of %d acquisitions after the replica's link was cut were held: WaitReplicas returned a reservation that no replica had", p.acquired, p.tries)
			if p.refused == 0 {
				t.Errorf("none of %d acquisitions after the replica's link was cut was refused as not replicated (ErrNotReplicated): the scenario tested nothing", p.tries)
			}
		}
		p50, p99, n := acquireLatency(res, trylockers, rounds)
		var promote, firstAcq []time.Duration
		lagging := 0
		for _, f := range rounds {
			promote = append(promote, time.Duration(f.promoted-f.at))
			if f.lag > 0 {
				lagging++
			}
			if first := firstAfter(res, f.resources, f.at); first != 0 {
				firstAcq = append(firstAcq, time.Duration(first-f.at))
			}
		}
		t.Logf("probe: %d acquisitions tried after the replica's link was cut: %d held, %d refused as not replicated, %d failed otherwise",
			p.tries, p.acquired, p.refused, p.tries-p.acquired-p.refused)
		t.Logf("%d failovers (%d after the replica fell behind): promoted replica answering %s after the kill, first acquisition of its resources %s after; "+
			"%d acquisitions, TryLock p50 %v p99 %v (%d outside the failovers); %d held at a kill, %d lost with it (holding ended %s after the promotion); "+
			"%d overlaps (%d stale holders), %d unreported losses",
			len(rounds), lagging, spread(promote), spread(firstAcq), res.Holdings, p50, p99, n, len(risks), lost, spread(afterPromotion),
			overlaps, stale, unreported)
		s.title += fmt.Sprintf(": %d failovers (%d lagging), replica answering as master %s after the kill, first acquisition %s after; "+
			"%d acquisitions, TryLock p50 %v / p99 %v; held at a kill %d, lost with the failover %d, overlaps %d (stale holders %d), unreported losses %d",
			len(rounds), lagging, spread(promote), spread(firstAcq), res.Holdings, p50, p99, len(risks), lost, overlaps, stale, unreported)
		if len(risks) == 0 {
			t.Error("no holding was held at a kill: the failovers tested nothing")
		}
	})
}

// overlapsOf counts the overlaps of res as the history checker finds them
// (a holding acquired while an earlier one of its resource had not ended),
// excused or not, and how many holdings were the earlier one of an overlap.
func overlapsOf(res *history.Result) (overlaps, stale int) {
	byRes := map[string][]*history.Holding{}
	for _, hd := range res.Holds {
		byRes[hd.Resource] = append(byRes[hd.Resource], hd)
	}
	for _, list := range byRes {
		for _, a := range list {
			n := 0
			for _, b := range list {
				if b != a && (b.Acquired > a.Acquired || b.Acquired == a.Acquired && b.Token > a.Token) && (a.End == 0 || a.End >= b.Acquired) {
					n++
				}
			}
			overlaps += n
			if n > 0 {
				stale++
			}
		}
	}
	return overlaps, stale
}

// heldAt returns the acquisitions of names whose reply came before at and
// whose holding had not ended before from.
func heldAt(events []history.Event, names []string, from, at int64) []history.Event {
	ended := map[string]bool{}
	for _, e := range events {
		if (e.Kind == history.Released || e.Kind == history.Lost) && e.At < from {
			ended[e.Holder] = true
		}
	}
	var held []history.Event
	for _, e := range events {
		if e.Kind == history.Acquired && e.At < at && slices.Contains(names, e.Resource) && !ended[e.Holder] {
			held = append(held, e)
		}
	}
	return held
}

// acquireLatency answers the median and 99th percentile of the acquire
// round trip (call to reply) of the holdings of workers whose call was made
// outside every round (from the replica's link cut, or the kill, to the
// rejoin), and how many.
func acquireLatency(res *history.Result, workers []string, rounds []failover) (p50, p99 time.Duration, n int) {
	var d []time.Duration
	for _, hd := range res.Holds {
		during := slices.ContainsFunc(rounds, func(f failover) bool {
			return hd.Call >= f.from-int64(f.lag) && hd.Call <= f.rejoined
		})
		if slices.Contains(workers, hd.Worker) && !during {
			d = append(d, time.Duration(hd.Acquired-hd.Call))
		}
	}
	if len(d) == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	q := func(p float64) time.Duration {
		return d[min(len(d)-1, int(p*float64(len(d))))].Round(10 * time.Microsecond)
	}
	return q(0.50), q(0.99), len(d)
}

// firstAfter answers when the first holding of names acquired after at was
// acquired, 0 when none was.
func firstAfter(res *history.Result, names []string, at int64) int64 {
	var first int64
	for _, hd := range res.Holds {
		if hd.Acquired > at && slices.Contains(names, hd.Resource) && (first == 0 || hd.Acquired < first) {
			first = hd.Acquired
		}
	}
	return first
}

// spread renders durations as their range, "2.5s-2.9s".
func spread(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	lo, hi := slices.Min(d), slices.Max(d)
	r := func(x time.Duration) string { return x.Round(10 * time.Millisecond).String() }
	if r(lo) == r(hi) {
		return r(lo)
	}
	return r(lo) + "-" + r(hi)
}
