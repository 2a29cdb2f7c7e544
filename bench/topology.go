package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation"
)

// The deployments a run can measure.
const (
	topoSingle  = "single"  // one redis-server
	topoCluster = "cluster" // a Redis Cluster of cfg.masters masters, no replicas
	topoQuorum  = "quorum"  // cfg.servers independent redis-servers, locked by a majority
)

var allTopologies = []string{topoSingle, topoCluster, topoQuorum}

// clusterScenarios are the scenarios that run on a cluster or a quorum:
// those whose only clients are the libraries'. The others write as a
// foreign client through one plain connection (5, 5k, 6, 8) and run on a
// single server.
var clusterScenarios = []string{"1", "2", "3", "3x", "4", "4x", "7"}

// quorumLibs are the libraries that lock a majority of independent
// servers: this library (NewQuorum) and redsync (a pool per server).
// rueidislock's KeyMajority locks several keys on one deployment, not
// independent servers, and redislock and the floors lock one server: none
// of them has a like-for-like row.
var quorumLibs = []string{libOurs, libRedsync}

// target is the deployment a library instance connects to.
type target struct {
	topology string
	// addrs is the server's address, the cluster's masters' or the
	// quorum's servers'.
	addrs []string
	// masterOf returns the index in addrs of the master of a key; nil on
	// a single server and on a quorum (every key is on every server).
	masterOf func(key string) int
}

// count adds keys to per, the keys per master, and returns it; on a
// single server it returns per unchanged (nil).
func (tg target) count(per []int64, keys []string) []int64 {
	if tg.masterOf == nil {
		return per
	}
	if per == nil {
		per = make([]int64, len(tg.addrs))
	}
	for _, k := range keys {
		per[tg.masterOf(k)]++
	}
	return per
}

// onMaster returns base on a single server. On a cluster it returns a name
// made from base whose first key (keys gives a resource's keys) is on
// master round modulo the masters, so that a scenario of one contended
// resource moves from master to master over the rounds.
func (tg target) onMaster(base string, round int, keys func(res string) []string) string {
	if tg.masterOf == nil {
		return base
	}
	want := round % len(tg.addrs)
	for i := 0; ; i++ {
		// A name lands on a given master one time in len(addrs).
		if name := fmt.Sprintf("%s-m%d", base, i); tg.masterOf(keys(name)[0]) == want {
			return name
		}
	}
}

// deployment is an env with the servers it started.
type deployment struct {
	*env
	version string // Redis's
	pinned  string // CPU list of the servers, "" when not pinned
	stop    func()
}

// startDeployment starts the servers of topology, pinned to cfg.redisCPU,
// and the env that measures them. Stop ends both.
func startDeployment(cfg config, topology, tag string) (*deployment, error) {
	var (
		d     = &deployment{env: &env{cfg: cfg, tag: tag}}
		admin redis.UniversalClient // primes the restart guard; not counted
		stop  func()                // stops the servers
	)
	switch topology {
	case topoSingle:
		bin := ""
		if cfg.callgrind {
			cg, err := newCallgrind()
			if err != nil {
				return nil, err
			}
			d.cg, bin = cg, cg.bin
		}
		srv, err := startServer(cfg.redisCPU, bin)
		if err != nil {
			if d.cg != nil {
				if log := d.cg.logTail(); log != "" {
					err = fmt.Errorf("%w; valgrind's log ends:\n%s", err, log)
				}
				d.cg.remove()
			}
			return nil, err
		}
		d.tg = target{topology: topology, addrs: []string{srv.addr}}
		d.version, d.pinned, stop = srv.version, srv.pinned, srv.stop
		if d.cg != nil {
			d.cg.pid = srv.srv.Pid()
			stop = func() { srv.stop(); d.cg.remove() }
		}
		admin = redis.NewClient(&redis.Options{Addr: srv.addr})
	case topoCluster:
		c, err := startCluster(cfg.redisCPU, cfg.masters)
		if err != nil {
			return nil, err
		}
		d.tg = target{topology: topology, addrs: c.masters, masterOf: c.masterOf}
		d.version, d.pinned, stop = c.version, c.pinned, c.stop
		admin = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.masters})
	case topoQuorum:
		q, err := startQuorum(cfg.redisCPU, cfg.servers)
		if err != nil {
			return nil, err
		}
		d.tg = target{topology: topology, addrs: q.addrs()}
		d.version, d.pinned, stop = q[0].version, q[0].pinned, q.stop
	default:
		return nil, fmt.Errorf("unknown topology %q (known: %v)", topology, allTopologies)
	}
	for _, a := range d.tg.addrs {
		d.infos = append(d.infos, redis.NewClient(&redis.Options{Addr: a}))
	}
	d.info = d.infos[0]
	d.stop = func() {
		if admin != nil {
			admin.Close()
		}
		for _, c := range d.infos {
			c.Close()
		}
		stop()
	}
	// A fresh or flushed deployment: prime the restart guard (every slot's
	// on a cluster, every server's on a quorum), as its documentation says.
	d.prime = func(ctx context.Context) error {
		opt := &reservation.Options{By: "bench", Logger: slog.New(slog.DiscardHandler)}
		var (
			c   *reservation.Client
			err error
		)
		if topology == topoQuorum {
			c, err = reservation.NewQuorumWithClients(d.infos, opt)
		} else {
			c, err = reservation.NewWithClient(admin, opt)
		}
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.PrimeRestartGuard(ctx)
		return err
	}
	return d, nil
}

// runsOn reports whether scenario can run on topology.
func runsOn(scenario, topology string) bool {
	return topology == topoSingle || slices.Contains(clusterScenarios, scenario)
}

// libRunsOn reports whether lib has a row on topology: on a quorum, only
// the libraries that lock a majority of independent servers; NoQueue on a
// single server only (a quorum ignores it; the cluster's figures compare
// deployments, not modes).
func libRunsOn(lib, topology string) bool {
	switch {
	case lib == libOursNoQueue, lib == libRawRueScripts:
		return topology == topoSingle
	case topology == topoQuorum:
		return slices.Contains(quorumLibs, lib)
	}
	return true
}
