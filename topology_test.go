package reservation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation/internal/redisserver"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// clusterClient returns a Client on cl, its restart guard primed.
func clusterClient(t testing.TB, cl *redisserver.Cluster, opt Options) *Client {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = quiet
	}
	c, err := New(cl.URL(), &opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if !c.cluster {
		t.Fatalf("New(%s) made no cluster client", cl.URL())
	}
	if _, err := c.PrimeRestartGuard(t.Context()); err != nil {
		t.Fatal(err)
	}
	return c
}

// spread returns n resource names whose keys cover every master of c.
func spread(t testing.TB, c *Client, n int) (names []string, byNode map[string][]string) {
	t.Helper()
	byNode = make(map[string][]string)
	for i := 0; len(names) < n || len(byNode) < 3; i++ {
		name := fmt.Sprintf("job-%d", i)
		node := c.nodeOf(t.Context(), c.Key(name))
		if node == "" {
			t.Fatalf("no master for %s", name)
		}
		names = append(names, name)
		byNode[node] = append(byNode[node], name)
	}
	return names, byNode
}

func TestClusterBasics(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redisserver.ClusterOptions{})
	opt := Options{TTL: time.Second, RetryInterval: 10 * time.Second}
	a, b := clusterClient(t, cl, opt), clusterClient(t, cl, opt)
	ctx := t.Context()

	// Every script keeps its keys in one slot, whatever the name.
	names, byNode := spread(t, a, 12)
	names = append(names, "{a}b", "a}b", "{}x", "{", "}", "x{y}z{w}")
	held := make(map[string]*Reservation)
	for _, name := range names {
		r, err := a.TryLock(ctx, name)
		if err != nil {
			t.Fatalf("TryLock(%q): %v", name, err)
		}
		held[name] = r
	}
	if _, err := b.TryLock(ctx, "{a}b"); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("second TryLock of {a}b: %v, want ErrNotAcquired", err)
	}

	// List reads every master.
	infos, err := b.List(ctx, "")
	if err != nil || len(infos) != len(names) {
		t.Fatalf("List: %d infos, %v; want %d", len(infos), err, len(names))
	}

	// A client of one node, asked about a key of another, is told MOVED:
	// an error, never "free".
	node := redis.NewClient(&redis.Options{Addr: cl.Addrs()[0]})
	single, err := NewWithClient(node, &Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	defer single.Close()
	for name := range held {
		if a.nodeOf(ctx, a.Key(name)) == cl.Addrs()[0] {
			continue
		}
		if in, err := single.Status(ctx, name); err == nil || !strings.Contains(err.Error(), "MOVED") {
			t.Errorf("Status of %s through another node: %+v, %v; want a MOVED error", name, in, err)
		}
		break
	}

	// Renewals reach every master: held over three TTLs.
	time.Sleep(3 * opt.TTL)
	for name, r := range held {
		if err := r.Err(); err != nil {
			t.Errorf("%s (on %s) lost while renewed: %v", name, a.nodeOf(ctx, r.Key()), err)
		}
	}
	if len(byNode) != 3 {
		t.Fatalf("keys on %d masters, want 3", len(byNode))
	}

	// A release on any master wakes a waiter of another Client at once,
	// not at its RetryInterval (10 s).
	for _, names := range byNode {
		name := names[0]
		if d := handoff(t, b, name, 0, func() error { return held[name].Release(ctx) }); d > time.Second {
			t.Errorf("%s: waiter woken %v after the release, want at once", name, d)
		}
	}
}

// TestClusterWithoutTracking wakes waiters on every master by the sharded
// release notice alone, as where CLIENT TRACKING is refused.
func TestClusterWithoutTracking(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redisserver.ClusterOptions{})
	opt := Options{TTL: 5 * time.Second, RetryInterval: 10 * time.Second}
	a, b := clusterClient(t, cl, opt), clusterClient(t, cl, opt)
	b.noTracking = true
	ctx := t.Context()
	_, byNode := spread(t, a, 6)
	for _, names := range byNode {
		name := names[0]
		r := mustLock(t, a, name)
		// The wait for the subscription: what the waiter hears by.
		if d := handoff(t, b, name, 50*time.Millisecond, func() error { return r.Release(ctx) }); d > time.Second {
			t.Errorf("%s: waiter without tracking woken %v after the release, want at once", name, d)
		}
	}
}

// handoff has waiter Lock name in the background and, once it queues and
// its watch had settle to be set, calls release; it returns how long after
// the release the waiter held the resource (it then releases it).
func handoff(t *testing.T, waiter *Client, name string, settle time.Duration, release func() error) time.Duration {
	t.Helper()
	ctx := t.Context()
	got := make(chan error, 1)
	go func() {
		r, err := waiter.Lock(ctx, name)
		if err == nil {
			err = r.Release(ctx)
		}
		got <- err
	}()
	waitFor(t, func() bool {
		select {
		case err := <-got:
			t.Fatalf("Lock returned before the release: %v", err)
		default:
		}
		return queued(waiter, waiter.Key(name), 1)
	})
	time.Sleep(settle)
	start := time.Now()
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	waitWithin(t, 5*time.Second, "condition not met", cond)
}

// waitWithin polls cond every 5 ms until it holds, and fails t with what
// when it does not within d.
func waitWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClusterNodeDownCostsOnlyItsKeys pauses one master of three: only the
// reservations it held are lost, and List answers for the others.
func TestClusterNodeDownCostsOnlyItsKeys(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redisserver.ClusterOptions{AllowPartialCoverage: true, NodeTimeout: 5 * time.Second})
	a := clusterClient(t, cl, Options{TTL: time.Second})
	ctx := t.Context()
	_, byNode := spread(t, a, 12)
	held := make(map[string][]*Reservation)
	for node, names := range byNode {
		for _, name := range names {
			r, err := a.TryLock(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			held[node] = append(held[node], r)
		}
	}
	down := cl.Addrs()[0]
	cl.Server(down).Pause()
	defer cl.Server(down).Resume()
	time.Sleep(2500 * time.Millisecond)
	for node, rs := range held {
		for _, r := range rs {
			switch err := r.Err(); {
			case node == down && !errors.Is(err, ErrLost):
				t.Errorf("%s on the paused master: Err %v, want ErrLost", r.Resource(), err)
			case node != down && err != nil:
				t.Errorf("%s on a live master (%s) lost: %v", r.Resource(), node, err)
			}
		}
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	infos, err := a.List(lctx, "")
	var nerr *NodeError
	if !errors.Is(err, ErrPartial) || !errors.As(err, &nerr) || nerr.Addr != down {
		t.Errorf("List with a master paused: %v, want ErrPartial naming %s", err, down)
	}
	if want := len(held[cl.Addrs()[1]]) + len(held[cl.Addrs()[2]]); len(infos) != want {
		t.Errorf("List with a master paused: %d infos, want those of the others, %d", len(infos), want)
	}
}

// TestClusterResharding moves the slot of a held key, key by key (ASK, then
// MOVED), and back: the holder keeps it, and a waiter of another Client is
// woken by its release on the new master.
func TestClusterResharding(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redisserver.ClusterOptions{})
	opt := Options{TTL: time.Second, RetryInterval: 10 * time.Second}
	a, b := clusterClient(t, cl, opt), clusterClient(t, cl, opt)
	ctx := t.Context()
	r := mustLock(t, a, "moving")
	s := int(slot(hashPart(r.Key())))
	src, err := cl.MasterForSlot(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	var dst *redisserver.Server
	for _, addr := range cl.Addrs() {
		if addr != src.Addr {
			dst = cl.Server(addr)
			break
		}
	}
	if err := cl.BeginMigration(ctx, s, dst); err != nil {
		t.Fatal(err)
	}
	time.Sleep(opt.TTL) // renewed while the slot is migrating
	if err := cl.MigrateKeys(ctx, s); err != nil {
		t.Fatal(err)
	}
	time.Sleep(opt.TTL) // renewed on the target through ASK
	if err := cl.FinishMigration(ctx, s); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * opt.TTL) // renewed on the target through MOVED
	if err := r.Err(); err != nil {
		t.Fatalf("lost across a resharding: %v", err)
	}
	if node := a.nodeOf(ctx, r.Key()); node != dst.Addr {
		t.Fatalf("key on %s after the move, want %s", node, dst.Addr)
	}
	if d := handoff(t, b, "moving", 0, func() error { return r.Release(ctx) }); d > time.Second {
		t.Errorf("waiter woken %v after the release on the new master, want at once", d)
	}
}

// TestClusterFailoverLosesUnreplicated kills a master whose replica did
// not get a reservation: the holder reports the loss, and the other
// reservations of that master, which the replica has, stay held. With
// WaitReplicas, the same acquisition is refused instead.
func TestClusterFailoverLosesUnreplicated(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redisserver.ClusterOptions{Replicas: 1})
	// The replica's copy of kept lives one TTL from the last renewal it
	// saw, before it was paused: a TTL of 30 s leaves room for a failover
	// on a busy machine, and frequent renewals have the loss of lost heard
	// soon after it. safe's TTL outlives waitFor: its give-back must be
	// what frees its key, not expiry.
	a := clusterClient(t, cl, Options{TTL: 30 * time.Second, HeartbeatInterval: 500 * time.Millisecond})
	safe := clusterClient(t, cl, Options{TTL: 30 * time.Second, WaitReplicas: 1})
	ctx := t.Context()
	_, byNode := spread(t, a, 30)
	master := cl.Addrs()[0]
	names := byNode[master]
	if len(names) < 3 {
		t.Fatalf("%d keys on %s, want 3", len(names), master)
	}
	// Held before the fault, and on the replica: it survives. (Not by
	// safe: with WaitReplicas 1, a master left without a replica cannot
	// renew, and its reservations are lost at their deadline.)
	kept := mustLock(t, a, names[0])
	acquired := time.Now()
	replica := replicaOf(t, cl, master)
	onReplica := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer onReplica.Close()
	waitFor(t, func() bool {
		_ = onReplica.Do(ctx, "READONLY").Err()
		v, _ := onReplica.Get(ctx, kept.Key()).Result()
		return v != ""
	})
	// The replica stops, and the master drops its link (what it sent
	// before is in the replica's socket buffer): what is acquired now
	// stays on the master.
	replica.Pause()
	rdb := redis.NewClient(&redis.Options{Addr: master})
	defer rdb.Close()
	if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err(); err != nil {
		t.Fatal(err)
	}
	lost := mustLock(t, a, names[1])
	if _, err := safe.TryLock(ctx, names[2]); !errors.Is(err, ErrNotReplicated) {
		t.Errorf("TryLock with WaitReplicas 1 and the replica paused: %v, want ErrNotReplicated", err)
	}
	waitFor(t, func() bool { // given back
		in, err := safe.Status(ctx, names[2])
		return err == nil && !in.Held
	})
	killed := time.Now()
	cl.Server(master).Kill()
	replica.Resume()
	if _, err := cl.WaitForFailover(ctx, cl.Server(master)); err != nil {
		t.Fatal(err)
	}
	t.Logf("the replica took over %v after the master was killed, %v after kept was acquired",
		time.Since(killed).Round(time.Millisecond), time.Since(acquired).Round(time.Millisecond))
	select {
	case <-lost.Done():
		if !errors.Is(lost.Err(), ErrLost) {
			t.Errorf("unreplicated reservation ended with %v, want ErrLost", lost.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the holder of a key the replica never had did not report its loss")
	}
	time.Sleep(time.Second) // a renewal or two on the new master
	if err := kept.Err(); err != nil {
		t.Errorf("replicated reservation lost across the failover: %v", err)
	}
}

// TestClusterHungReplicaDelaysNothing pauses every replica of a cluster:
// new Clients' first calls, all on masters, keep one deadline. (Before
// the first command sent on its own, go-redis reads the command table of a
// random node, replicas included, for up to 5 s whatever the deadline: a
// give-back failed so in CI, with one replica paused. See scriptCall.run.)
// The deadlines catch such a read only when it picks a paused replica,
// which ten Clients may all miss (a CI run saw it); the count of COMMAND
// calls catches it always.
func TestClusterHungReplicaDelaysNothing(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redisserver.ClusterOptions{Replicas: 1})
	tableReads := func() int {
		t.Helper()
		n := 0
		for _, s := range cl.Servers() {
			info, err := s.Info(t.Context(), "commandstats")
			if err != nil {
				t.Fatal(err)
			}
			n += commandCalls(info, "command")
		}
		return n
	}
	readsBefore := tableReads()
	clients := make([]*Client, 10)
	for i := range clients {
		clients[i] = clusterClient(t, cl, Options{TTL: 5 * time.Second})
	}
	var replicas []*redisserver.Server // found before any is paused: replicaOf asks every node
	for _, master := range cl.Addrs() {
		replicas = append(replicas, replicaOf(t, cl, master))
	}
	for _, r := range replicas {
		r.Pause()
		t.Cleanup(r.Resume)
	}
	for i, c := range clients {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		start := time.Now()
		r, err := c.TryLock(ctx, fmt.Sprint("hung-", i))
		if err == nil {
			err = r.Release(ctx)
		}
		if err == nil {
			err = c.Ping(ctx)
		}
		if err == nil {
			_, err = c.Status(ctx, "hung")
		}
		if err == nil {
			_, err = c.ForceRelease(ctx, "hung")
		}
		if err == nil {
			_, err = c.List(ctx, "hung*")
		}
		cancel()
		if err != nil {
			t.Errorf("client %d, replicas paused: %v after %v", i, err, time.Since(start).Round(time.Millisecond))
		}
	}
	for _, r := range replicas {
		r.Resume()
	}
	if n := tableReads() - readsBefore; n > 0 {
		t.Errorf("the Clients read the command table %d times: a call was sent on its own", n)
	}
}

// TestClusterEvictionRiskOnAnyMaster sets an evicting policy on one master
// of three, each in turn: a new Client holding keys on every master reports
// it each time, naming that master. (A read of one node misses two in
// three.)
func TestClusterEvictionRiskOnAnyMaster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redisserver.ClusterOptions{})
	ctx := t.Context()
	for _, addr := range cl.Addrs() {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer rdb.Close()
		policy := func(p string) {
			t.Helper()
			if err := rdb.ConfigSet(ctx, "maxmemory", "100mb").Err(); err != nil {
				t.Fatal(err)
			}
			if err := rdb.ConfigSet(ctx, "maxmemory-policy", p).Err(); err != nil {
				t.Fatal(err)
			}
		}
		policy("allkeys-lru")
		events := make(chan Event, 10)
		c := clusterClient(t, cl, Options{OnEvent: func(e Event) {
			if e.Kind == EventEvictionRisk {
				events <- e
			}
		}})
		_, byNode := spread(t, c, 3)
		for _, names := range byNode {
			mustLock(t, c, names[0])
		}
		select {
		case e := <-events:
			if msg := e.Err.Error(); !strings.Contains(msg, "allkeys-lru") || !strings.Contains(msg, addr) {
				t.Errorf("event %v does not name the policy of %s and the node", e.Err, addr)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("no eviction-risk event for %s with allkeys-lru", addr)
		}
		select {
		case e := <-events:
			t.Errorf("a second eviction-risk event: %v", e.Err)
		case <-time.After(100 * time.Millisecond):
		}
		c.Close()
		policy("noeviction")
	}
}

// replicaOf returns the replica of master in cl.
func replicaOf(t testing.TB, cl *redisserver.Cluster, master string) *redisserver.Server {
	t.Helper()
	for _, s := range cl.Servers() {
		info, err := s.Info(t.Context(), "replication")
		if err != nil {
			continue
		}
		host := redisserver.InfoField(info, "master_host")
		port := redisserver.InfoField(info, "master_port")
		if host+":"+port == master {
			return s
		}
	}
	t.Fatalf("no replica of %s", master)
	return nil
}

// oldReleaseLua is the release script of the version before Cluster
// support, which published its notice with a plain PUBLISH.
const oldReleaseLua = `if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  local published = redis.pcall('PUBLISH', ARGV[2], KEYS[1])
  if type(published) == 'table' and published.err then
    return 2
  end
  return 1
end
return 0`

// TestClusterRollingUpgrade releases with the previous version's script:
// a waiter of this version hears it through tracking, at once.
func TestClusterRollingUpgrade(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redisserver.ClusterOptions{})
	b := clusterClient(t, cl, Options{TTL: 5 * time.Second, RetryInterval: 10 * time.Second})
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer rdb.Close()
	ctx := t.Context()
	key := b.Key("upgraded")
	if err := rdb.Set(ctx, key, "old-worker-1", 5*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	d := handoff(t, b, "upgraded", 50*time.Millisecond, func() error {
		n, err := rdb.Eval(ctx, oldReleaseLua, []string{key}, "old-worker-1", companion(key, channelSuffix)).Int()
		if err == nil && n != 1 {
			err = fmt.Errorf("old release script: %d, want 1", n)
		}
		return err
	})
	if d > time.Second {
		t.Errorf("waiter woken %v after an old client's release, want at once", d)
	}
}

// TestSentinelFollowsFailover pauses the master until Sentinel fails over,
// then lets it come back before Sentinel demotes it: handoffs between two
// Clients stay immediate (the notifier followed the master), where they
// used to wait a second each for about ten seconds.
func TestSentinelFollowsFailover(t *testing.T) {
	t.Parallel()
	sn := redistest.StartSentinel(t, redisserver.SentinelOptions{Replicas: 1})
	opt := &Options{TTL: 5 * time.Second, RestartGuard: -1, RetryInterval: 5 * time.Second, Logger: quiet}
	a, err := New(sn.URL(), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(sn.URL(), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	handoffs := func() time.Duration {
		r := mustLock(t, a, "job")
		return handoff(t, b, "job", 20*time.Millisecond, func() error { return r.Release(ctx) })
	}
	handoffs()
	a.batch.mu.Lock()
	track := a.batch.track
	a.batch.mu.Unlock()
	if track != nil {
		// Its connections follow a new master on their own, maybe after
		// go-redis's pool: an acquisition there could land on the old one.
		t.Error("acquisitions run on the notifier's connection through Sentinel")
	}
	old := sn.Master
	old.Pause()
	promoted, err := sn.WaitForNewMaster(ctx, old.Addr)
	if err != nil {
		old.Resume()
		t.Fatal(err)
	}
	old.Resume()
	var slow []time.Duration
	for range 10 {
		if d := handoffs(); d > 500*time.Millisecond {
			slow = append(slow, d)
		}
	}
	if len(slow) > 0 {
		t.Errorf("after the failover, %d of 10 handoffs waited (%v), want none: the notifier stayed on the old master", len(slow), slow)
	}
	// And every acquisition is on the new master: those sent on the
	// notifier's connection too (one Lock at a time takes it).
	onNew := redis.NewClient(&redis.Options{Addr: promoted.Addr})
	defer onNew.Close()
	for i := range 4 {
		r := mustLock(t, a, fmt.Sprint("after-", i))
		v, err := onNew.Get(ctx, r.Key()).Result()
		if err != nil || v != r.Holder() {
			t.Errorf("%s on the new master %s: %q, %v; want %q: acquired on the old master", r.Key(), promoted.Addr, v, err, r.Holder())
		}
		r.Release(ctx)
	}
}

// TestWaitReplicas asks each acquisition and renewal for one replica's
// acknowledgement.
func TestWaitReplicas(t *testing.T) {
	t.Parallel()
	rs := redistest.StartReplicated(t, redisserver.ReplicatedOptions{Replicas: 1})
	url := rs.Master.URL()
	ctx := t.Context()
	newC := func(replicas int) *Client {
		c, err := New(url, &Options{TTL: time.Second, RestartGuard: -1, WaitReplicas: replicas, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	one, two := newC(1), newC(2)
	if _, err := two.TryLock(ctx, "two"); !errors.Is(err, ErrNotReplicated) || !strings.Contains(err.Error(), "0 of 2") && !strings.Contains(err.Error(), "1 of 2") {
		t.Errorf("TryLock asking for 2 replicas of 1: %v, want ErrNotReplicated saying how many answered", err)
	}
	waitFor(t, func() bool { // given back
		in, err := one.Status(ctx, "two")
		return err == nil && !in.Held
	})
	if _, err := two.Lock(ctx, "two"); !errors.Is(err, ErrNotReplicated) {
		t.Errorf("Lock asking for 2 replicas of 1: %v, want ErrNotReplicated at once", err)
	}
	waitFor(t, func() bool { // given back
		in, err := one.Status(ctx, "two")
		return err == nil && !in.Held
	})
	r := mustLock(t, one, "one")
	time.Sleep(2 * time.Second) // renewed, and acknowledged
	if err := r.Err(); err != nil {
		t.Fatalf("lost while the replica acknowledged: %v", err)
	}
	// The replica stops: renewals are no longer acknowledged, and the
	// local deadline decides, though the master still extends the key.
	rs.Replicas[0].Pause()
	defer rs.Replicas[0].Resume()
	waitDone(t, r, 2*time.Second)
	if !errors.Is(r.Err(), ErrLost) {
		t.Errorf("Err = %v, want ErrLost", r.Err())
	}
}

func TestTopologyOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		make func() (*Client, error)
	}{
		{"nil failover", func() (*Client, error) { return NewFailover(nil, nil) }},
		{"no master name", func() (*Client, error) {
			return NewFailover(&redis.FailoverOptions{SentinelAddrs: []string{"h:1"}}, nil)
		}},
		{"no sentinel", func() (*Client, error) { return NewFailover(&redis.FailoverOptions{MasterName: "m"}, nil) }},
		{"replica only", func() (*Client, error) {
			return NewFailover(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"h:1"}, ReplicaOnly: true}, nil)
		}},
		{"nil cluster", func() (*Client, error) { return NewCluster(nil, nil) }},
		{"no node", func() (*Client, error) { return NewCluster(&redis.ClusterOptions{}, nil) }},
		{"read only", func() (*Client, error) {
			return NewCluster(&redis.ClusterOptions{Addrs: []string{"h:1"}, ReadOnly: true}, nil)
		}},
		{"bad wait", func() (*Client, error) { return New("h:1", &Options{WaitReplicas: -1}) }},
		{"wait timeout past TTL/4", func() (*Client, error) {
			return New("h:1", &Options{TTL: time.Second, WaitReplicas: 1, WaitTimeout: 300 * time.Millisecond})
		}},
		{"bad sentinel URL", func() (*Client, error) { return New("redis://:secret-pw@h:1?master_name=m&bogus=1", nil) }},
		{"password read as a port", func() (*Client, error) { return New("redis://u:secret-pw#x@h:1?addr=h:2", nil) }},
		{"password with a bad escape", func() (*Client, error) { return New("redis://u:secret-pw%zz@h:1?master_name=m", nil) }},
	} {
		c, err := tc.make()
		if c != nil || !errors.Is(err, ErrInvalidOptions) || strings.Contains(fmt.Sprint(err), "secret") {
			t.Errorf("%s: %v, %v; want ErrInvalidOptions without the password", tc.name, c, err)
		}
	}
	// go-redis's URL forms name the topology.
	for url, want := range map[string]string{
		"redis://h:1?master_name=m&addr=h:2": "sentinel",
		"redis://h:1?addr=h:2":               "cluster",
		"redis://h:1/0":                      "single",
		"h:1":                                "single",
	} {
		c, err := New(url, &Options{Logger: quiet})
		if err != nil {
			t.Fatalf("New(%s): %v", url, err)
		}
		got := "single"
		if c.sentinel != nil {
			got = "sentinel"
		} else if c.cluster {
			got = "cluster"
		}
		if got != want {
			t.Errorf("New(%s) made a %s client, want %s", url, got, want)
		}
		c.Close()
	}
}

// TestClusterTurnAfterReconnection: after the subscriber of a Client that
// waits for keys of several slots on one master reconnects (go-redis
// subscribes again to all its sharded channels in one SSUBSCRIBE, which the
// node refuses across slots), a waiter behind the head is still told its
// turn, rather than wait for its place's renewal.
func TestClusterTurnAfterReconnection(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redisserver.ClusterOptions{})
	opt := Options{TTL: 30 * time.Second, RetryInterval: 30 * time.Second} // renewals every 10 s
	a, b, c := clusterClient(t, cl, opt), clusterClient(t, cl, opt), clusterClient(t, cl, opt)
	ctx := t.Context()
	_, byNode := spread(t, a, 12)
	var node string
	var names []string
	for n, ns := range byNode {
		if len(ns) >= 2 && slot(hashPart(a.Key(ns[0]))) != slot(hashPart(a.Key(ns[1]))) {
			node, names = n, ns[:2]
			break
		}
	}
	if node == "" {
		t.Fatal("no master with two resources in different slots")
	}
	first, second := names[0], names[1]
	r1, r2 := mustLock(t, a, first), mustLock(t, a, second)
	defer r2.Release(ctx)
	lock := func(w *Client, name string) <-chan *Reservation {
		got := make(chan *Reservation, 1)
		go func() {
			r, err := w.Lock(ctx, name)
			if err != nil && ctx.Err() == nil {
				t.Error(err)
			}
			got <- r
		}()
		return got
	}
	rdb := redis.NewClient(&redis.Options{Addr: node})
	defer rdb.Close()
	queueOf := func(name string) []string { return rdb.ZRange(ctx, companion(a.Key(name), queueSuffix), 0, -1).Val() }
	cGot := lock(c, first)
	waitFor(t, func() bool { return len(queueOf(first)) == 1 })
	bGot := lock(b, first)
	lock(b, second)
	waitFor(t, func() bool { return len(queueOf(first)) == 2 && len(queueOf(second)) == 1 })
	var n *notifier
	waitFor(t, func() bool { // b subscribed to both turn channels
		if n = b.notifierIfStarted(node); n == nil {
			return false
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.turns) == 2
	})
	time.Sleep(100 * time.Millisecond) // the subscriptions confirmed
	before := n.psID.Load()
	if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return n.psID.Load() != before })
	time.Sleep(200 * time.Millisecond) // subscribed again
	r1.Release(ctx)
	rc := <-cGot
	released := time.Now()
	rc.Release(ctx)
	select {
	case rb := <-bGot:
		if d := time.Since(released); d > time.Second {
			t.Errorf("b had it %v after the release; want at once", d)
		}
		rb.Release(ctx)
	case <-time.After(5 * time.Second):
		t.Fatal("b was not told its turn after its subscriber reconnected")
	}
}

// On a Cluster a semaphore's permits live in its marker's slot, and a set
// must be in one slot: one hash tag does it, and names in different slots
// are refused before any round trip. Both are renewed, and wake waiters
// (with and without tracking), as on one server.
func TestClusterSemaphoresAndSets(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redisserver.ClusterOptions{})
	opt := Options{TTL: time.Second}
	a, b := clusterClient(t, cl, opt), clusterClient(t, cl, opt)
	b.noTracking = true
	ctx := t.Context()

	names, byNode := spread(t, a, 6)
	if len(byNode) < 2 {
		t.Fatalf("names on %d masters, want 2 or more", len(byNode))
	}
	var split []string // two names in different slots
	for _, ns := range byNode {
		split = append(split, ns[0])
	}
	if _, err := a.TryLock(ctx, split[0], With(split[1])); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "hash tag") {
		t.Errorf("set across slots: %v, want ErrInvalidOptions naming hash tags", err)
	}

	set, err := a.TryLock(ctx, "{nightly}-a", With("{nightly}-b"))
	if err != nil {
		t.Fatalf("set in one slot: %v", err)
	}
	var permits []*Reservation
	for _, name := range names[:2] {
		for range 2 {
			p, err := a.TryLock(ctx, name, Limit(2))
			if err != nil {
				t.Fatalf("permit of %s: %v", name, err)
			}
			permits = append(permits, p)
		}
	}
	time.Sleep(2 * opt.TTL) // renewed on their masters
	for _, r := range append(permits, set) {
		if err := r.Err(); err != nil {
			t.Errorf("%s lost while renewed: %v", r.Key(), err)
		}
	}
	// A release wakes the other Client's waiter, without tracking, at
	// once (its RetryInterval is 1 s).
	if d := handoff(t, b, "{nightly}-b", 0, func() error { return set.Release(ctx) }); d > 500*time.Millisecond {
		t.Errorf("set member's waiter woken %v after the release, want at once", d)
	}
	got := make(chan time.Time, 1)
	go func() {
		r, err := b.Lock(ctx, names[0], Limit(2))
		if err != nil {
			t.Errorf("Lock of a full semaphore: %v", err)
		}
		got <- time.Now()
		if r != nil {
			r.Release(ctx)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if err := permits[0].Release(ctx); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	select {
	case at := <-got:
		if d := at.Sub(released); d > 500*time.Millisecond {
			t.Errorf("semaphore waiter woken %v after a release, want at once", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("semaphore waiter not woken")
	}
}
