package redisserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// Options are those of every node; Dir gets a sub-directory per node
	// ("node-1", ...).
	Options
	// Masters is the number of masters; 0 means 3.
	Masters int
	// Replicas is the number of replicas of each master; 0 means none.
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a node must not
	// answer before it is failing; 0 means 1 second.
	NodeTimeout time.Duration
	// AllowPartialCoverage sets cluster-require-full-coverage no, so that
	// the nodes go on serving their slots while some slot has no master.
	// The zero value keeps Redis's default: every node refuses queries then.
	AllowPartialCoverage bool
}

// Cluster is a Redis Cluster started by StartCluster.
type Cluster struct {
	// Nodes are the nodes in the order they were created: the first
	// Masters were made masters, the others replicas.
	Nodes []*Server

	masters int

	mu         sync.Mutex
	replicaOf  map[*Server]*Server // as last seen settled
	migrations map[int]migration   // by slot, from BeginMigration
}

// migration is a slot on its way from src to dst.
type migration struct{ src, dst *Server }

// slotRange is one entry of CLUSTER SLOTS: slots start to end (inclusive)
// and the address of their master.
type slotRange struct {
	start, end int
	master     string
}

// StartCluster starts o.Masters × (1 + o.Replicas) nodes, makes them a
// cluster with `redis-cli --cluster create --cluster-replicas R` (the
// redis-cli beside the redis-server binary, else on PATH), and waits until
// every node says cluster_state:ok, all agree on the slot map and every
// replica has synced. On error, every node it started is killed.
func StartCluster(ctx context.Context, o ClusterOptions) (*Cluster, error) {
	masters, err := orDefault("Masters", o.Masters, 3)
	if err != nil {
		return nil, err
	}
	if o.Replicas < 0 {
		return nil, fmt.Errorf("redisserver: Replicas = %d, want 0 or more", o.Replicas)
	}
	timeout := o.NodeTimeout
	if timeout == 0 {
		timeout = time.Second
	}
	if o.Bin == "" {
		if o.Bin, err = Binary(); err != nil {
			return nil, err
		}
	}
	cli, err := redisCLI(o.Bin)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()

	no := o.Options
	no.bus = true
	no.conf = confLine("cluster-enabled", "yes") +
		confLine("cluster-config-file", "nodes.conf") +
		confLine("cluster-node-timeout", strconv.FormatInt(timeout.Milliseconds(), 10))
	if o.AllowPartialCoverage {
		no.conf += confLine("cluster-require-full-coverage", "no")
	}
	c := &Cluster{masters: masters, migrations: map[int]migration{}}
	args := []string{"--cluster", "create"}
	for i := range masters * (1 + o.Replicas) {
		s, err := startNode(ctx, no, fmt.Sprintf("node-%d", i+1))
		if err != nil {
			c.Kill()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
		args = append(args, s.Addr)
	}
	cmd := exec.CommandContext(ctx, cli, append(args, "--cluster-replicas", strconv.Itoa(o.Replicas), "--cluster-yes")...)
	if o.Password != "" {
		cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+o.Password) // not in argv
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		c.Kill()
		return nil, fmt.Errorf("redisserver: redis-cli --cluster create: %w; its output ends:\n%s", err, tail(string(out), 1024))
	}
	err = c.settle(ctx, "wait for the cluster to form", func(_ []slotRange, replicaOf map[*Server]*Server) error {
		if n := masters * o.Replicas; len(replicaOf) != n {
			return fmt.Errorf("%d of %d replicas synced", len(replicaOf), n)
		}
		return nil
	})
	if err != nil {
		c.Kill()
		return nil, err
	}
	return c, nil
}

// redisCLI returns the redis-cli beside bin, else the one on PATH.
func redisCLI(bin string) (string, error) {
	if cli := filepath.Join(filepath.Dir(bin), "redis-cli"); isExecutable(cli) {
		return cli, nil
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return "", errors.New("redisserver: redis-cli is not on PATH; install it with `apt-get install redis-tools` " +
			"(Debian/Ubuntu; it comes with redis-server)")
	}
	return cli, nil
}

// settle waits until every running node says cluster_state:ok and reports
// the same slot map, every running replica has synced (and its master
// streams to it), and check (when not
// nil) accepts the slot map and who replicates whom; it then records the
// latter.
func (c *Cluster) settle(ctx context.Context, what string, check func([]slotRange, map[*Server]*Server) error) error {
	return poll(ctx, what, func(ctx context.Context) error {
		var slots []slotRange
		replicaOf := map[*Server]*Server{}
		live := running(c.Nodes)
		for i, n := range live {
			v, err := n.do(ctx, "CLUSTER", "INFO")
			if err != nil {
				return fmt.Errorf("node %s: %w", n.Addr, err)
			}
			if st := InfoField(toString(v), "cluster_state"); st != "ok" {
				return fmt.Errorf("node %s: cluster_state:%s", n.Addr, st)
			}
			s, err := n.slotMap(ctx)
			if err != nil {
				return err
			}
			if i == 0 {
				slots = s
			} else if !slices.Equal(s, slots) {
				return fmt.Errorf("nodes %s and %s disagree on the slot map", live[0].Addr, n.Addr)
			}
			info, err := n.Info(ctx, "replication")
			if err != nil {
				return fmt.Errorf("node %s: %w", n.Addr, err)
			}
			if InfoField(info, "role") == "slave" {
				if st := InfoField(info, "master_link_status"); st != "up" {
					return fmt.Errorf("replica %s: master_link_status:%s", n.Addr, st)
				}
				replicaOf[n] = c.Server(net.JoinHostPort(InfoField(info, "master_host"), InfoField(info, "master_port")))
			}
		}
		for _, m := range live {
			n := 0
			for _, master := range replicaOf {
				if master == m {
					n++
				}
			}
			if n > 0 {
				if err := online(ctx, m, n); err != nil {
					return err
				}
			}
		}
		if check != nil {
			if err := check(slots, replicaOf); err != nil {
				return err
			}
		}
		c.mu.Lock()
		c.replicaOf = replicaOf
		c.mu.Unlock()
		return nil
	})
}

// slotMap returns the node's CLUSTER SLOTS, ordered by slot.
func (s *Server) slotMap(ctx context.Context) ([]slotRange, error) {
	v, err := s.do(ctx, "CLUSTER", "SLOTS")
	if err != nil {
		return nil, fmt.Errorf("node %s: CLUSTER SLOTS: %w", s.Addr, err)
	}
	list, _ := v.([]any)
	slots := make([]slotRange, 0, len(list))
	for _, e := range list {
		r, _ := e.([]any)
		var m []any
		if len(r) >= 3 {
			m, _ = r[2].([]any)
		}
		if len(m) < 2 {
			return nil, fmt.Errorf("node %s: unexpected CLUSTER SLOTS entry %v", s.Addr, e)
		}
		start, _ := r[0].(int64)
		end, _ := r[1].(int64)
		host, _ := m[0].(string)
		port, _ := m[1].(int64)
		slots = append(slots, slotRange{int(start), int(end), net.JoinHostPort(host, strconv.FormatInt(port, 10))})
	}
	slices.SortFunc(slots, func(a, b slotRange) int { return cmp.Compare(a.start, b.start) })
	return slots, nil
}

// owner returns the address of slot's master in slots, or "".
func owner(slots []slotRange, slot int) string {
	for _, r := range slots {
		if r.start <= slot && slot <= r.end {
			return r.master
		}
	}
	return ""
}

// Addrs returns the addresses of the nodes created as masters: seeds for a
// cluster client.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, c.masters)
	for i, n := range c.Nodes[:c.masters] {
		addrs[i] = n.Addr
	}
	return addrs
}

// URL returns the go-redis form of the cluster's URL,
// redis://[:password@]node1?addr=node2&addr=node3, naming the nodes
// created as masters.
func (c *Cluster) URL() string {
	q := url.Values{}
	for _, a := range c.Addrs()[1:] {
		q.Add("addr", a)
	}
	u := url.URL{Scheme: "redis", Host: c.Nodes[0].Addr, RawQuery: q.Encode()}
	if pw := c.Nodes[0].Password; pw != "" {
		u.User = url.UserPassword("", pw)
	}
	return u.String()
}

// Servers returns the nodes.
func (c *Cluster) Servers() []*Server {
	return c.Nodes
}

// Server returns the node listening on addr, or nil.
func (c *Cluster) Server(addr string) *Server {
	return find(c.Nodes, addr)
}

// Kill kills every node.
func (c *Cluster) Kill() {
	killAll(c.Nodes)
}

// slotMap returns the slot map as the first running node that answers
// reports it.
func (c *Cluster) slotMap(ctx context.Context) ([]slotRange, error) {
	err := errors.New("no node is running")
	for _, n := range running(c.Nodes) {
		var slots []slotRange
		if slots, err = n.slotMap(ctx); err == nil {
			return slots, nil
		}
	}
	return nil, fmt.Errorf("redisserver: %w", err)
}

// MasterForSlot returns the master of slot as the first running node that
// answers reports it. It returns an error when no node answers, or none
// serves the slot.
func (c *Cluster) MasterForSlot(ctx context.Context, slot int) (*Server, error) {
	slots, err := c.slotMap(ctx)
	if err != nil {
		return nil, err
	}
	addr := owner(slots, slot)
	if s := c.Server(addr); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("redisserver: no node of ours serves slot %d (master %q)", slot, addr)
}

// BeginMigration starts moving slot from its master to master dst: dst
// imports it (CLUSTER SETSLOT IMPORTING) and its master migrates it
// (MIGRATING). Until FinishMigration, the master answers a command on a
// key of the slot it no longer holds with -ASK, and dst answers one
// without ASKING first with -MOVED.
func (c *Cluster) BeginMigration(ctx context.Context, slot int, dst *Server) error {
	if slot < 0 || slot >= Slots {
		return fmt.Errorf("redisserver: slot %d out of range", slot)
	}
	src, err := c.MasterForSlot(ctx, slot)
	if err != nil {
		return err
	}
	if src == dst {
		return fmt.Errorf("redisserver: slot %d is on %s already", slot, dst.Addr)
	}
	srcID, err := src.do(ctx, "CLUSTER", "MYID")
	if err != nil {
		return fmt.Errorf("redisserver: node %s: %w", src.Addr, err)
	}
	dstID, err := dst.do(ctx, "CLUSTER", "MYID")
	if err != nil {
		return fmt.Errorf("redisserver: node %s: %w", dst.Addr, err)
	}
	if _, err := dst.do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID); err != nil {
		return fmt.Errorf("redisserver: import slot %d on %s: %w", slot, dst.Addr, err)
	}
	if _, err := src.do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID); err != nil {
		return fmt.Errorf("redisserver: migrate slot %d from %s: %w", slot, src.Addr, err)
	}
	c.mu.Lock()
	c.migrations[slot] = migration{src: src, dst: dst}
	c.mu.Unlock()
	return nil
}

func (c *Cluster) migration(slot int) (migration, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.migrations[slot]
	if !ok {
		return m, fmt.Errorf("redisserver: slot %d is not migrating (BeginMigration)", slot)
	}
	return m, nil
}

// MigrateKeys moves every key of slot, which BeginMigration started to
// migrate, to its new master (CLUSTER GETKEYSINSLOT and MIGRATE, 100 keys
// at a time).
func (c *Cluster) MigrateKeys(ctx context.Context, slot int) error {
	m, err := c.migration(slot)
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(m.dst.Addr)
	for {
		v, err := m.src.do(ctx, "CLUSTER", "GETKEYSINSLOT", slot, 100)
		if err != nil {
			return fmt.Errorf("redisserver: keys of slot %d on %s: %w", slot, m.src.Addr, err)
		}
		keys, _ := v.([]any)
		if len(keys) == 0 {
			return nil
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000}
		if m.dst.Password != "" {
			args = append(args, "AUTH", m.dst.Password)
		}
		args = append(append(args, "KEYS"), keys...)
		if _, err := m.src.do(ctx, args...); err != nil {
			return fmt.Errorf("redisserver: migrate keys of slot %d to %s: %w", slot, m.dst.Addr, err)
		}
	}
}

// FinishMigration gives slot to its new master on every running master
// (CLUSTER SETSLOT NODE: the new one first, then the old one, then the
// others), and waits until every running node reports the new owner. The
// keys must have moved first (MigrateKeys): those left behind are lost to
// clients.
func (c *Cluster) FinishMigration(ctx context.Context, slot int) error {
	m, err := c.migration(slot)
	if err != nil {
		return err
	}
	dstID, err := m.dst.do(ctx, "CLUSTER", "MYID")
	if err != nil {
		return fmt.Errorf("redisserver: node %s: %w", m.dst.Addr, err)
	}
	slots, err := c.slotMap(ctx)
	if err != nil {
		return err
	}
	masters := []*Server{m.dst, m.src}
	for _, r := range slots {
		if s := c.Server(r.master); s != nil && !slices.Contains(masters, s) && s.Pid() != 0 {
			masters = append(masters, s)
		}
	}
	for _, s := range masters {
		if _, err := s.do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID); err != nil {
			return fmt.Errorf("redisserver: give slot %d to %s on %s: %w", slot, m.dst.Addr, s.Addr, err)
		}
	}
	c.mu.Lock()
	delete(c.migrations, slot)
	c.mu.Unlock()
	return poll(ctx, fmt.Sprintf("wait for every node to see slot %d on %s", slot, m.dst.Addr), func(ctx context.Context) error {
		for _, n := range running(c.Nodes) {
			s, err := n.slotMap(ctx)
			if err != nil {
				return err
			}
			if got := owner(s, slot); got != m.dst.Addr {
				return fmt.Errorf("node %s: slot %d on %q", n.Addr, slot, got)
			}
		}
		return nil
	})
}

// MoveSlot moves slot and its keys to master dst: BeginMigration,
// MigrateKeys and FinishMigration.
func (c *Cluster) MoveSlot(ctx context.Context, slot int, dst *Server) error {
	if err := c.BeginMigration(ctx, slot, dst); err != nil {
		return err
	}
	if err := c.MigrateKeys(ctx, slot); err != nil {
		return err
	}
	return c.FinishMigration(ctx, slot)
}

// WaitForFailover waits, after master killed was killed, until
// one of its replicas has been promoted and serves slots, killed serves
// none, and every running node says cluster_state:ok and agrees on the slot
// map; it returns the promoted replica. It returns an error at once when
// killed had no replica, and when ctx is done first.
func (c *Cluster) WaitForFailover(ctx context.Context, killed *Server) (*Server, error) {
	c.mu.Lock()
	var candidates []*Server
	for r, m := range c.replicaOf {
		if m == killed {
			candidates = append(candidates, r)
		}
	}
	c.mu.Unlock()
	if len(candidates) == 0 {
		return nil, fmt.Errorf("redisserver: master %s has no replica to fail over to", killed.Addr)
	}
	var promoted *Server
	err := c.settle(ctx, "wait for a replica of "+killed.Addr+" to take over", func(slots []slotRange, replicaOf map[*Server]*Server) error {
		promoted = nil
		for _, r := range slots {
			if r.master == killed.Addr {
				return fmt.Errorf("%s still serves slots %d-%d", killed.Addr, r.start, r.end)
			}
			if s := c.Server(r.master); slices.Contains(candidates, s) && replicaOf[s] == nil {
				promoted = s
			}
		}
		if promoted == nil {
			return errors.New("no replica of it serves slots yet")
		}
		return nil
	})
	return promoted, err
}
