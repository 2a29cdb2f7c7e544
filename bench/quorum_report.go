package main

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"time"
)

// The markers of the quorum's results: a run with -topology quorum writes
// between them, and leaves the other sections alone.
const (
	beginQuorumMarker = "<!-- bench quorum results: begin (written by bench/ -topology single,quorum, do not edit by hand) -->"
	endQuorumMarker   = "<!-- bench quorum results: end -->"
)

// quorumView shows the quorum's rows beside the single server's: the
// ratios to redsync on the same deployment (the peer that locks a
// majority of independent servers), the round trips to each server and
// each server's share of the Redis calls.
func (rep *report) quorumView() beside {
	return beside{
		topology: topoQuorum, begin: beginQuorumMarker, end: endQuorumMarker,
		where: "in quorum mode", all: "all servers",
		baseline1: libRedsync, baseline4: libRedsync,
		extraCols: func(unit string) []string {
			return []string{"round trips/" + unit + " to each server", "Redis calls per server"}
		},
		extras: func(key, l, topo string, perSecond bool) []string {
			calls := "-"
			if topo == topoQuorum {
				calls = rep.callsPerNode(key, l)
			}
			return []string{rep.roundTripsPerNode(key, l, perSecond), calls}
		},
		setup: rep.writeQuorumSetup,
	}
}

// roundTripsPerNode answers "a / b / c": the client round trips of lib
// under key to each master (server), per operation or per second, over
// rounds. The servers of a quorum are sent to in parallel: one round trip
// to each is one round trip of time.
func (rep *report) roundTripsPerNode(key, l string, perSecond bool) string {
	var per []int64
	var ops, secs float64
	for _, r := range rep.results[key][l] {
		for i, n := range r.U.rtNodes {
			if i == len(per) {
				per = append(per, 0)
			}
			per[i] += n
		}
		ops += float64(r.Ops)
		secs += r.Elapsed.Seconds()
	}
	div := ops
	if perSecond {
		div = secs
	}
	if len(per) == 0 || div == 0 {
		return "-"
	}
	parts := make([]string, len(per))
	for i, n := range per {
		parts[i] = fmtNum(float64(n) / div)
	}
	return strings.Join(parts, " / ")
}

func (rep *report) writeQuorumSetup(b *bytes.Buffer) {
	fmt.Fprintf(b, "Measured %s, in %v.\n\n", rep.started.UTC().Format("2006-01-02 15:04 MST"),
		rep.ended.Sub(rep.started).Round(time.Second))
	fmt.Fprintf(b, "Command (from the repository root):\n\n```\n%s\n```\n\n", rep.command)
	fmt.Fprintf(b, "- Machine: %s, %d CPUs, kernel %s; this process on CPUs %s (GOMAXPROCS %d); "+
		"every redis-server (the single server and the %d of the quorum) on CPUs %s.\n",
		cpuModel(), cpuCount(), readTrim("/proc/sys/kernel/osrelease"), allowedCPUs(), runtime.GOMAXPROCS(0),
		rep.cfg.servers, orAll(rep.pinned))
	fmt.Fprintf(b, "- Redis %s (no persistence, default configuration otherwise), on loopback; "+
		"the quorum: %d independent servers (no replication), a majority of %d; this library through `NewQuorumWithClients` "+
		"over a go-redis client per server, redsync with a pool per server (its go-redis v9 pool).\n",
		rep.redis, rep.cfg.servers, rep.cfg.servers/2+1)
	fmt.Fprintf(b, "- %s; %s.\n", runtime.Version(), versions())
	fmt.Fprintf(b, "- %d round(s); in each, every library runs every scenario on each deployment (%s) in turn, "+
		"the order of the libraries and of the deployments rotated every round. Scenarios 1-2: %v per library, deployment and round; 3-4: %v; "+
		"7: %d reservation(s) for %v, %d round(s).\n\n",
		rep.cfg.rounds, strings.Join(rep.cfg.topologies, ", "), rep.cfg.d12, rep.cfg.d34, rep.cfg.n7, rep.cfg.d7, rep.cfg.rounds7)
}
