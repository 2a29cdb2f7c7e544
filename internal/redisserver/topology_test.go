package redisserver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// cleanup kills servers when the test ends, logging their logs' ends if it
// failed.
func cleanup(t *testing.T, servers []*Server) {
	t.Cleanup(func() {
		killAll(servers)
		if t.Failed() {
			for _, s := range servers {
				t.Logf("log of %s:\n%s", s.Addr, s.LogTail())
			}
		}
	})
}

func timed(t *testing.T, what string) func() {
	start := time.Now()
	return func() { t.Logf("%s took %v", what, time.Since(start).Round(time.Millisecond)) }
}

func TestReplicated(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := timed(t, "StartReplicated with 2 replicas")
	r, err := StartReplicated(ctx, ReplicatedOptions{Options: Options{Dir: t.TempDir(), Password: "pw"}, Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	done()
	cleanup(t, r.Servers())
	if _, err := r.Master.do(ctx, "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Replicas {
		info, err := s.Info(ctx, "replication")
		if err != nil || InfoField(info, "role") != "slave" || InfoField(info, "master_link_status") != "up" {
			t.Errorf("replica %s: role:%s link:%s (%v)", s.Addr, InfoField(info, "role"), InfoField(info, "master_link_status"), err)
		}
		err = poll(ctx, "replicate k", func(ctx context.Context) error {
			v, err := s.do(ctx, "GET", "k")
			if err == nil && v != "v" {
				err = fmt.Errorf("GET k = %v", v)
			}
			return err
		})
		if err != nil {
			t.Errorf("replica %s: %v", s.Addr, err)
		}
	}
	if r.Server(r.Replicas[1].Addr) != r.Replicas[1] || r.Server("127.0.0.1:1") != nil {
		t.Errorf("Server(addr) does not find the server of addr")
	}
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := timed(t, "StartSentinel (master, 1 replica, 3 Sentinels)")
	s, err := StartSentinel(ctx, SentinelOptions{Options: Options{Dir: t.TempDir(), Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	done()
	cleanup(t, s.Servers())
	if len(s.Sentinels) != 3 || len(s.Replicas) != 1 || s.MasterName != "mymaster" {
		t.Fatalf("%d Sentinels, %d replicas, master name %q; want 3, 1, mymaster", len(s.Sentinels), len(s.Replicas), s.MasterName)
	}
	if got, err := s.CurrentMaster(ctx); err != nil || got != s.Master.Addr {
		t.Fatalf("CurrentMaster = %q, %v; want %s", got, err, s.Master.Addr)
	}
	fo, err := redis.ParseFailoverURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(append([]string{fo.SentinelAddrs[0]}, fo.SentinelAddrs[1:]...), s.SentinelAddrs()) || fo.Password != "pw" {
		t.Errorf("URL() = %s: parsed as %v, password %q", s.URL(), fo.SentinelAddrs, fo.Password)
	}
	rdb := redis.NewFailoverClient(fo)
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Master.Kill()
	done = timed(t, "failover")
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	m, err := s.WaitForNewMaster(wctx, s.Master.Addr)
	if err != nil {
		t.Fatal(err)
	}
	done()
	if m != s.Replicas[0] {
		t.Errorf("new master %s, want the replica %s", m.Addr, s.Replicas[0].Addr)
	}
	if got, err := s.CurrentMaster(ctx); err != nil || got != m.Addr {
		t.Errorf("CurrentMaster after the failover = %q, %v; want %s", got, err, m.Addr)
	}
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("GET k through Sentinel after the failover = %q, %v; want v", got, err)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := timed(t, "StartCluster 3 masters")
	c, err := StartCluster(ctx, ClusterOptions{Options: Options{Dir: t.TempDir(), Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	done()
	cleanup(t, c.Servers())
	if len(c.Nodes) != 3 || len(c.Addrs()) != 3 {
		t.Fatalf("%d nodes, Addrs %v; want 3 masters", len(c.Nodes), c.Addrs())
	}
	co, err := redis.ParseClusterURL(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClusterClient(co)
	defer rdb.Close()

	keys := []string{"a", "b", "c", "d", "{tag}x", "{tag}y", "slot-key"}
	for _, k := range keys {
		if err := rdb.Set(ctx, k, "v-"+k, 0).Err(); err != nil {
			t.Fatal(err)
		}
		slot := SlotOf(k)
		if got, err := rdb.ClusterKeySlot(ctx, k).Result(); err != nil || int(got) != slot {
			t.Errorf("CLUSTER KEYSLOT %s = %d, %v; SlotOf says %d", k, got, err, slot)
		}
		m, err := c.MasterForSlot(ctx, slot)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := m.do(ctx, "GET", k); err != nil || v != "v-"+k {
			t.Errorf("GET %s on MasterForSlot(%d) = %s: %v, %v", k, slot, m.Addr, v, err)
		}
	}

	// Step by step: while slot moves, its old master sends clients on
	// with -ASK and its new one sends them back with -MOVED.
	slot := SlotOf("slot-key")
	src, _ := c.MasterForSlot(ctx, slot)
	dst := c.Nodes[0]
	if dst == src {
		dst = c.Nodes[1]
	}
	if err := c.BeginMigration(ctx, slot, dst); err != nil {
		t.Fatal(err)
	}
	if err := c.MigrateKeys(ctx, slot); err != nil {
		t.Fatal(err)
	}
	if _, err := src.do(ctx, "GET", "slot-key"); err == nil || !strings.HasPrefix(err.Error(), "ASK ") {
		t.Errorf("GET on the migrating master: %v, want -ASK", err)
	}
	if _, err := dst.do(ctx, "GET", "slot-key"); err == nil || !strings.HasPrefix(err.Error(), "MOVED ") {
		t.Errorf("GET on the importing master without ASKING: %v, want -MOVED", err)
	}
	if got, err := rdb.Get(ctx, "slot-key").Result(); err != nil || got != "v-slot-key" {
		t.Errorf("GET slot-key through the cluster client during the migration = %q, %v", got, err)
	}
	if err := c.FinishMigration(ctx, slot); err != nil {
		t.Fatal(err)
	}
	if m, err := c.MasterForSlot(ctx, slot); err != nil || m != dst {
		t.Errorf("MasterForSlot(%d) after the move = %v, %v; want %s", slot, m, err, dst.Addr)
	}
	if got, err := rdb.Get(ctx, "slot-key").Result(); err != nil || got != "v-slot-key" {
		t.Errorf("GET slot-key through the cluster client after the move = %q, %v", got, err)
	}

	// At once, and back.
	tag := SlotOf("{tag}")
	src, _ = c.MasterForSlot(ctx, tag)
	dst = c.Nodes[(slices.Index(c.Nodes, src)+1)%3]
	if err := c.MoveSlot(ctx, tag, dst); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"{tag}x", "{tag}y"} {
		if v, err := dst.do(ctx, "GET", k); err != nil || v != "v-"+k {
			t.Errorf("GET %s on the new master = %v, %v", k, v, err)
		}
		if got, err := rdb.Get(ctx, k).Result(); err != nil || got != "v-"+k {
			t.Errorf("GET %s through the cluster client after MoveSlot = %q, %v", k, got, err)
		}
	}
	if err := c.MoveSlot(ctx, tag, dst); err == nil {
		t.Errorf("MoveSlot to the slot's own master: no error")
	}
}

func TestClusterFailover(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := timed(t, "StartCluster 3 masters × 1 replica")
	c, err := StartCluster(ctx, ClusterOptions{Options: Options{Dir: t.TempDir()}, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	done()
	cleanup(t, c.Servers())
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes, want 6", len(c.Nodes))
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rdb.Close()
	const key = "k"
	if err := rdb.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	master, err := c.MasterForSlot(ctx, SlotOf(key))
	if err != nil {
		t.Fatal(err)
	}
	// The write must reach the replica before its master dies.
	if _, err := master.do(ctx, "WAIT", 1, 5000); err != nil {
		t.Fatal(err)
	}

	master.Kill()
	done = timed(t, "cluster failover")
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	promoted, err := c.WaitForFailover(wctx, master)
	if err != nil {
		t.Fatal(err)
	}
	done()
	if m, err := c.MasterForSlot(ctx, SlotOf(key)); err != nil || m != promoted {
		t.Errorf("MasterForSlot after the failover = %v, %v; want the promoted %s", m, err, promoted.Addr)
	}
	// A new client: how a client follows a failover is not this
	// package's business.
	rdb2 := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rdb2.Close()
	if got, err := rdb2.Get(ctx, key).Result(); err != nil || got != "v" {
		t.Errorf("GET %s through a cluster client after the failover = %q, %v", key, got, err)
	}
	if _, err := c.WaitForFailover(ctx, promoted); err == nil {
		t.Errorf("WaitForFailover of a master without replicas: no error")
	}
}
