// Command workercmd is a fault-test worker process built on its own, without
// the race detector, for the scenarios whose worker must run as production
// binaries do (a process starved of CPU: the race detector's runtime makes
// its timers fire two to three times later). It runs the worker.Spec in
// $FAULTS_WORKER (see worker.Main).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation/faults/internal/worker"
)

func main() {
	redis.SetLogger(quietLog{}) // failed dials are the faults injected
	spec := os.Getenv(worker.Env)
	if spec == "" {
		fmt.Fprintln(os.Stderr, "workercmd: $"+worker.Env+" is not set: it is started by the fault tests")
		os.Exit(2)
	}
	os.Exit(worker.Main(spec))
}

type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}
