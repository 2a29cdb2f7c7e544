package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation/internal/redisserver"
)

// server is one redis-server started for a bench run, without persistence,
// on a free loopback port.
type server struct {
	addr    string
	srv     *redisserver.Server
	dir     string
	version string
	pinned  string // the CPU list it runs on, "" when not pinned
}

// startServer starts redis-server (bin, else REDIS_SERVER_BIN, else from
// PATH). When cpus is not empty and taskset exists, the server is pinned to
// those CPUs.
func startServer(cpus, bin string) (*server, error) {
	if _, err := exec.LookPath("taskset"); err != nil {
		cpus = ""
	}
	dir, err := os.MkdirTemp("", "reservation-bench-")
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	srv, err := redisserver.Start(ctx, redisserver.Options{Dir: dir, CPUs: cpus, Bin: bin})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &server{addr: srv.Addr, srv: srv, dir: dir, pinned: cpus}
	info, err := srv.Info(ctx, "server")
	if err != nil {
		s.stop()
		return nil, err
	}
	s.version = redisserver.InfoField(info, "redis_version")
	return s, nil
}

// stop kills the server and removes its directory.
func (s *server) stop() {
	s.srv.Kill()
	os.RemoveAll(s.dir)
}

// quorum is independent servers started for a bench run, for a lock held
// by a majority of them: no replication, no cluster bus between them.
type quorum []*server

// startQuorum starts n servers, each pinned to cpus as startServer pins
// one.
func startQuorum(cpus string, n int) (quorum, error) {
	if n < 1 {
		return nil, fmt.Errorf("a quorum of %d servers", n)
	}
	var q quorum
	for range n {
		s, err := startServer(cpus, "")
		if err != nil {
			q.stop()
			return nil, err
		}
		q = append(q, s)
	}
	return q, nil
}

// addrs answers the servers' addresses, in the order of the figures per
// server.
func (q quorum) addrs() []string {
	addrs := make([]string, len(q))
	for i, s := range q {
		addrs[i] = s.addr
	}
	return addrs
}

// stop kills the servers and removes their directories.
func (q quorum) stop() {
	for _, s := range q {
		s.stop()
	}
}

// cluster is a Redis Cluster of masters without replicas, started for a
// bench run.
type cluster struct {
	c       *redisserver.Cluster
	dir     string
	masters []string // addresses, in the order of the figures per master
	// master is the index in masters of each hash slot's master.
	master  [redisserver.Slots]int
	version string
	pinned  string
}

// startCluster starts a cluster of n masters, every node pinned to cpus as
// startServer pins a server, and reads its slot map.
func startCluster(cpus string, n int) (*cluster, error) {
	if _, err := exec.LookPath("taskset"); err != nil {
		cpus = ""
	}
	dir, err := os.MkdirTemp("", "reservation-bench-cluster-")
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	rc, err := redisserver.StartCluster(ctx, redisserver.ClusterOptions{
		Options: redisserver.Options{Dir: dir, CPUs: cpus},
		Masters: n,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := &cluster{c: rc, dir: dir, masters: rc.Addrs(), pinned: cpus}
	if err := c.readSlots(ctx); err != nil {
		c.stop()
		return nil, err
	}
	info, err := rc.Nodes[0].Info(ctx, "server")
	if err != nil {
		c.stop()
		return nil, err
	}
	c.version = redisserver.InfoField(info, "redis_version")
	return c, nil
}

// readSlots reads the slot map from the first master. It does not change
// during a run: no node fails and no slot moves.
func (c *cluster) readSlots(ctx context.Context) error {
	rdb := redis.NewClient(&redis.Options{Addr: c.masters[0]})
	defer rdb.Close()
	shards, err := rdb.ClusterShards(ctx).Result()
	if err != nil {
		return fmt.Errorf("cluster shards: %w", err)
	}
	covered := 0
	for _, sh := range shards {
		i := -1
		for _, n := range sh.Nodes {
			if n.Role == "master" {
				i = slices.Index(c.masters, net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10)))
			}
		}
		if i < 0 {
			return fmt.Errorf("cluster shards: a shard of slots %v has no master among %v", sh.Slots, c.masters)
		}
		for _, r := range sh.Slots {
			for s := r.Start; s <= r.End; s++ {
				c.master[s] = i
				covered++
			}
		}
	}
	if covered != redisserver.Slots {
		return fmt.Errorf("cluster shards: %d of %d slots have a master", covered, redisserver.Slots)
	}
	return nil
}

// masterOf returns the index in c.masters of the master of key.
func (c *cluster) masterOf(key string) int {
	return c.master[redisserver.SlotOf(key)]
}

// stop kills the nodes and removes their directory.
func (c *cluster) stop() {
	c.c.Kill()
	os.RemoveAll(c.dir)
}
