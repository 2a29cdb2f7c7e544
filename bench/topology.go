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
)

var allTopologies = []string{topoSingle, topoCluster}

// clusterScenarios are the scenarios that run on a cluster: those whose
// only clients are the libraries'. The others write as a foreign client
// through one plain connection (5, 5k, 6, 8) and run on a single server.
var clusterScenarios = []string{"1", "2", "3", "3x", "4", "4x", "7"}

// target is the deployment a library instance connects to.
type target struct {
	topology string
	// addrs is the server's address, or the cluster's masters'.
	addrs []string
	// masterOf returns the index in addrs of the master of a key; nil on
	// a single server.
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
		srv, err := startServer(cfg.redisCPU)
		if err != nil {
			return nil, err
		}
		d.tg = target{topology: topology, addrs: []string{srv.addr}}
		d.version, d.pinned, stop = srv.version, srv.pinned, srv.stop
		admin = redis.NewClient(&redis.Options{Addr: srv.addr})
	case topoCluster:
		c, err := startCluster(cfg.redisCPU, cfg.masters)
		if err != nil {
			return nil, err
		}
		d.tg = target{topology: topology, addrs: c.masters, masterOf: c.masterOf}
		d.version, d.pinned, stop = c.version, c.pinned, c.stop
		admin = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.masters})
	default:
		return nil, fmt.Errorf("unknown topology %q (known: %v)", topology, allTopologies)
	}
	for _, a := range d.tg.addrs {
		d.infos = append(d.infos, redis.NewClient(&redis.Options{Addr: a}))
	}
	d.info = d.infos[0]
	d.stop = func() {
		admin.Close()
		for _, c := range d.infos {
			c.Close()
		}
		stop()
	}
	// A fresh or flushed deployment: prime the restart guard (every slot's
	// on a cluster), as its documentation says.
	d.prime = func(ctx context.Context) error {
		c, err := reservation.NewWithClient(admin, &reservation.Options{By: "bench", Logger: slog.New(slog.DiscardHandler)})
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
