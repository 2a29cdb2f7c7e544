// Package faults proves the reservation library safe under real faults: it
// runs workers that contend for a few resources with short TTLs, injects a
// fault (a cut or slow link through toxiproxy, kill -9 of a holder process,
// a Redis restart or FLUSHALL, a paused Redis, a paused holder, a log
// handler or event hook that blocks, a key deleted or overwritten by
// another client, a holder process starved of CPU, deadlines shorter than a
// round trip over a jittery link, a Sentinel or Cluster master killed and
// replaced by its replica; in quorum mode, one server of three killed,
// restarted without its data, cut off or slowed, and two killed; with Lock
// callers queued on the server, a waiter, the head of the queue or the
// holder killed, a waiter cut off, Redis restarted; with the permits of a
// semaphore, a holder or a waiter killed, Redis restarted, a holder's link
// cut), records every holding (and every Lock call, with when it began to
// wait) in a history and checks it (package history). Each scenario prints a summary line that
// cmd/reliability-table turns into the table of docs/RELIABILITY.md.
//
// Workers run in this process and in worker processes (package
// internal/worker): this test binary run again, or, for the starved
// holder, the command internal/workercmd built without the race detector.
//
// Short form (seconds per scenario, as CI runs it):
//
//	go test -race -count=1 ./...
//
// Long form (soak; the failover scenarios run failovers, one every 5-6 s,
// for that long instead of their short form's four):
//
//	go test -race -count=1 -v -run Fault -soak=60s -timeout=40m . | go run ./cmd/reliability-table
package faults

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/redis-reservation/reservation/faults/internal/worker"
)

func TestMain(m *testing.M) {
	// go-redis logs each failed dial; here they are the faults injected.
	redis.SetLogger(quietLog{})
	if spec := os.Getenv(worker.Env); spec != "" {
		os.Exit(worker.Main(spec))
	}
	code := m.Run()
	if plainBuild.dir != "" {
		os.RemoveAll(plainBuild.dir)
	}
	if code == 0 {
		// toxiproxy leaks the goroutine of a toxic whose link's writer
		// has gone (blocked sending to it, forever); not ours to fix.
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}
