// Package faults proves the reservation library safe under real faults: it
// runs workers that contend for a few resources with short TTLs, injects a
// fault (a cut or slow link through toxiproxy, kill -9 of a holder process,
// a Redis restart or FLUSHALL, a paused Redis, a paused holder, a key
// deleted or overwritten by another client), records every holding in a
// history and checks it (package history). Each scenario prints a summary
// line that cmd/reliability-table turns into the table of
// docs/RELIABILITY.md.
//
// Short form (seconds per scenario, as CI runs it):
//
//	go test -race -count=1 ./...
//
// Long form (soak):
//
//	go test -race -count=1 -v -run Fault -soak=60s -timeout=40m . | go run ./cmd/reliability-table
package faults

import (
	"context"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// go-redis logs each failed dial; here they are the faults injected.
	redis.SetLogger(quietLog{})
	if spec := os.Getenv(workerEnv); spec != "" {
		os.Exit(workerMain(spec))
	}
	goleak.VerifyTestMain(m,
		// toxiproxy leaks the goroutine of a toxic whose link's writer
		// has gone (blocked sending to it, forever); not ours to fix.
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
	)
}

type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}
