package reservation_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redisserver"
)

// A Sentinel deployment: the Client finds the master through the Sentinels
// and follows it across failovers, its notifier's connections included.
func ExampleNewFailover() {
	sn := exampleSentinel()
	c, err := reservation.NewFailover(&redis.FailoverOptions{
		MasterName:    sn.MasterName,      // "mymaster"
		SentinelAddrs: sn.SentinelAddrs(), // "sentinel-1:26379", ...
		Password:      "",                 // the master's, if any
	}, &reservation.Options{By: "worker-1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	r, err := c.Lock(ctx, "nightly-report")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("held", r.Key())
	if err := r.Release(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: held reservation-nightly-report
}

// A Redis Cluster: each reservation lives on the master of its key's slot;
// renewals and wake-ups go to each master on its own.
func ExampleNewCluster() {
	cl := exampleCluster()
	c, err := reservation.NewCluster(&redis.ClusterOptions{
		Addrs: cl.Addrs(), // any nodes: "node-1:6379", "node-2:6379", ...
	}, &reservation.Options{By: "worker-1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, job := range []string{"invoices", "payroll", "{tenant-7}report"} {
		r, err := c.TryLock(ctx, job)
		if err != nil {
			log.Fatal(err)
		}
		defer r.Release(ctx)
	}
	infos, err := c.List(ctx, "") // every master's
	if err != nil {
		log.Fatal(err)
	}
	for _, in := range infos {
		fmt.Println(in.Resource, "held by worker-1:", strings.HasPrefix(in.Holder, "worker-1-"))
	}
	// Output:
	// invoices held by worker-1: true
	// payroll held by worker-1: true
	// {tenant-7}report held by worker-1: true
}

// WaitReplicas makes an acquisition count only once a replica has it too,
// so that a failover right after does not lose it. The same URL form as
// go-redis's names the Sentinels and the master.
func ExampleOptions_waitReplicas() {
	sn := exampleSentinel()
	url := sn.URL() // redis://sentinel-1:26379?master_name=mymaster&addr=sentinel-2:26379...
	c, err := reservation.New(url, &reservation.Options{
		WaitReplicas: 1,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	r, err := c.TryLock(ctx, "replicated-job")
	if err != nil {
		log.Fatal(err) // ErrNotReplicated: no replica acknowledged it in time
	}
	fmt.Println("held on the master and a replica")
	r.Release(ctx)
	// Output: held on the master and a replica
}

// The examples' Sentinel set and Cluster, started on first use and killed
// by TestMain (stopTopologies), their restart guards primed.
var (
	topoMu   sync.Mutex
	sentinel *redisserver.Sentinel
	cluster  *redisserver.Cluster
	topoDirs []string
)

func exampleSentinel() *redisserver.Sentinel {
	once(&sentinel, func(dir string) (*redisserver.Sentinel, string, error) {
		s, err := redisserver.StartSentinel(context.Background(), redisserver.SentinelOptions{Options: redisserver.Options{Dir: dir}})
		if err != nil {
			return nil, "", err
		}
		return s, s.URL(), nil
	})
	return sentinel
}

func exampleCluster() *redisserver.Cluster {
	once(&cluster, func(dir string) (*redisserver.Cluster, string, error) {
		c, err := redisserver.StartCluster(context.Background(), redisserver.ClusterOptions{Options: redisserver.Options{Dir: dir}})
		if err != nil {
			return nil, "", err
		}
		return c, c.URL(), nil
	})
	return cluster
}

// once starts a topology into *dst unless it runs, and primes its guard.
func once[T any](dst **T, start func(dir string) (*T, string, error)) {
	topoMu.Lock()
	defer topoMu.Unlock()
	if *dst != nil {
		return
	}
	dir, err := os.MkdirTemp("", "reservation-example-")
	if err != nil {
		log.Fatal(err)
	}
	topoDirs = append(topoDirs, dir)
	t, url, err := start(dir)
	if err != nil {
		log.Fatal(err)
	}
	c, err := reservation.New(url, &reservation.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PrimeRestartGuard(context.Background()); err != nil {
		log.Fatal(err)
	}
	*dst = t
}

// stopTopologies kills what the examples started.
func stopTopologies() {
	topoMu.Lock()
	defer topoMu.Unlock()
	if sentinel != nil {
		sentinel.Kill()
	}
	if cluster != nil {
		cluster.Kill()
	}
	for _, s := range quorumServers {
		s.Kill()
	}
	for _, d := range topoDirs {
		os.RemoveAll(d)
	}
}
