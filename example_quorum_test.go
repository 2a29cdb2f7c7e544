package reservation_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redisserver"
)

// A quorum of three independent servers: each reservation is held on a
// majority of them, so one server down, or restarted without its data,
// neither loses it nor lets anyone else in. Its fencing token still only
// grows.
func ExampleNewQuorum() {
	addrs := exampleQuorum() // "redis-1:6379", "redis-2:6379", "redis-3:6379"
	c, err := reservation.NewQuorum(addrs, &reservation.Options{By: "worker-1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	r, err := c.TryLock(ctx, "ledger-close")
	if err != nil {
		log.Fatal(err)
	}
	in, err := c.Status(ctx, "ledger-close")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("held on a majority:", in.Held, "- servers:", len(in.Servers))

	other, err := reservation.NewQuorum(addrs, &reservation.Options{By: "worker-2", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer other.Close()
	_, err = other.TryLock(ctx, "ledger-close")
	fmt.Println("worker-2 refused:", errors.Is(err, reservation.ErrNotAcquired))

	if err := r.Release(ctx); err != nil {
		log.Fatal(err)
	}
	r2, err := other.Lock(ctx, "ledger-close") // woken by the release
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("token grew:", r2.Token() > r.Token())
	r2.Release(ctx)
	// Output:
	// held on a majority: true - servers: 3
	// worker-2 refused: true
	// token grew: true
}

// quorumServers are the example's three servers, started on first use and
// killed by TestMain (stopTopologies).
var quorumServers []*redisserver.Server

// exampleQuorum returns the addresses of three fresh servers, their restart
// guards primed.
func exampleQuorum() []string {
	topoMu.Lock()
	defer topoMu.Unlock()
	if quorumServers == nil {
		for range 3 {
			dir, err := os.MkdirTemp("", "reservation-example-")
			if err != nil {
				log.Fatal(err)
			}
			topoDirs = append(topoDirs, dir)
			s, err := redisserver.Start(context.Background(), redisserver.Options{Dir: dir})
			if err != nil {
				log.Fatal(err)
			}
			quorumServers = append(quorumServers, s)
		}
	}
	addrs := make([]string, len(quorumServers))
	for i, s := range quorumServers {
		addrs[i] = s.Addr
	}
	c, err := reservation.NewQuorum(addrs, &reservation.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PrimeRestartGuard(context.Background()); err != nil {
		log.Fatal(err)
	}
	return addrs
}
