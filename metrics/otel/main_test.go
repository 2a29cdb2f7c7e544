package otel_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// redisURL is the address of the throwaway server that the tests and the
// examples use, its restart guard primed.
var redisURL string

func TestMain(m *testing.M) {
	srv, stop, err := redistest.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	redisURL = srv.URL()
	if err := prime(redisURL); err != nil {
		stop()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// prime primes the restart guard of the new server at url.
func prime(url string) error {
	c, err := reservation.New(url, &reservation.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.PrimeRestartGuard(context.Background())
	return err
}
