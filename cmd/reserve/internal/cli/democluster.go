package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation/internal/redisserver"
)

// demoMasters is the number of masters of the demo's own Cluster.
const demoMasters = 3

// localCluster is a throwaway Redis Cluster that the demo started.
type localCluster struct {
	c   *redisserver.Cluster
	dir string
}

// startCluster starts a Redis Cluster of demoMasters masters without
// replicas on free loopback ports, in a temporary directory, without
// persistence, and waits until it serves every slot. Its nodes have a
// process group of their own, as the demo's single server has.
func startCluster(ctx context.Context) (*localCluster, error) {
	// The one on PATH, as for the single server: the tests'
	// REDIS_SERVER_BIN is not for users.
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errNoRedisServer
	}
	dir, err := os.MkdirTemp("", "reserve-demo-")
	if err != nil {
		return nil, err
	}
	c, err := redisserver.StartCluster(ctx, redisserver.ClusterOptions{
		Options: redisserver.Options{Dir: dir, Bin: bin, Args: []string{"--loglevel", "warning"}},
		Masters: demoMasters,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &localCluster{c: c, dir: dir}, nil
}

// stop shuts the nodes down and deletes their directory.
func (l *localCluster) stop() {
	for _, s := range l.c.Servers() {
		s.Stop()
	}
	os.RemoveAll(l.dir)
}

// showPlacement prints which Cluster master holds the key of each job, so
// that the show's contention is seen to spread over the masters. It prints
// nothing when it cannot tell.
func (d *demo) showPlacement(ctx context.Context, jobs []string) {
	co := d.conn.clusterOptions()
	if co == nil {
		return
	}
	co.MaxRetries = -1
	rdb := redis.NewClusterClient(co)
	defer rdb.Close()
	ctx, cancel := bounded(ctx)
	defer cancel()
	var on []string
	masters := make(map[string]bool)
	for _, job := range jobs {
		node, err := rdb.MasterForKey(ctx, d.prefix+job)
		if err != nil {
			return
		}
		addr := node.Options().Addr
		masters[addr] = true
		on = append(on, fmt.Sprintf("%s on %s", job, addr))
	}
	fmt.Fprintf(d.a.stdout, "The jobs' keys live on %d of the Cluster's masters: %s.\n", len(masters), strings.Join(on, ", "))
}
