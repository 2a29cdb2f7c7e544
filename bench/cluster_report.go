package main

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"time"
)

// The markers of the cluster's results: a run with -topology cluster
// writes between them, and leaves the single server's results alone.
const (
	beginClusterMarker = "<!-- bench cluster results: begin (written by bench/ -topology single,cluster, do not edit by hand) -->"
	endClusterMarker   = "<!-- bench cluster results: end -->"
)

// clusterView shows the cluster's rows beside the single server's: the
// scenario 1 ratio to the go-redis floor and the scenario 4 ratio to
// rueidislock on the same deployment, as on the single server; the keys
// and the Redis calls per master.
func (rep *report) clusterView() beside {
	return beside{
		topology: topoCluster, begin: beginClusterMarker, end: endClusterMarker,
		where: "on the cluster", all: "all masters",
		baseline1: libRawGo, baseline4: libRueidis,
		extraCols: func(string) []string { return []string{"keys per master", "Redis calls per master"} },
		extras: func(key, l, topo string, _ bool) []string {
			if topo != topoCluster {
				return []string{"-", "-"}
			}
			return []string{rep.keysPerMaster(key, l), rep.callsPerNode(key, l)}
		},
		setup: rep.writeClusterSetup,
	}
}

// perMaster answers lib's keys per master under key, summed over rounds.
func (rep *report) perMaster(key, l string) []int64 {
	var sum []int64
	for _, r := range rep.results[key][l] {
		if sum == nil {
			sum = make([]int64, len(r.PerMaster))
		}
		for i, n := range r.PerMaster {
			sum[i] += n
		}
	}
	return sum
}

// keysPerMaster answers "a / b / c": the keys lib locked on each master
// under key, over rounds.
func (rep *report) keysPerMaster(key, l string) string {
	var parts []string
	for _, n := range rep.perMaster(key, l) {
		parts = append(parts, fmt.Sprint(n))
	}
	return strings.Join(parts, " / ")
}

func (rep *report) writeClusterSetup(b *bytes.Buffer) {
	fmt.Fprintf(b, "Measured %s, in %v.\n\n", rep.started.UTC().Format("2006-01-02 15:04 MST"),
		rep.ended.Sub(rep.started).Round(time.Second))
	fmt.Fprintf(b, "Command (from the repository root):\n\n```\n%s\n```\n\n", rep.command)
	fmt.Fprintf(b, "- Machine: %s, %d CPUs, kernel %s; this process on CPUs %s (GOMAXPROCS %d); "+
		"every redis-server (the single server and the %d masters) on CPUs %s.\n",
		cpuModel(), cpuCount(), readTrim("/proc/sys/kernel/osrelease"), allowedCPUs(), runtime.GOMAXPROCS(0),
		rep.cfg.masters, orAll(rep.pinned))
	fmt.Fprintf(b, "- Redis %s (no persistence, default configuration otherwise), on loopback; "+
		"the cluster: %d masters, no replicas, made by `redis-cli --cluster create` (slots split evenly).\n", rep.redis, rep.cfg.masters)
	fmt.Fprintf(b, "- %s; %s.\n", runtime.Version(), versions())
	fmt.Fprintf(b, "- %d round(s); in each, every library runs every scenario on each deployment (%s) in turn, "+
		"the order of the libraries and of the deployments rotated every round. Scenarios 1-2: %v per library, deployment and round; 3-4: %v.\n\n",
		rep.cfg.rounds, strings.Join(rep.cfg.topologies, ", "), rep.cfg.d12, rep.cfg.d34)
}
