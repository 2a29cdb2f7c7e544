package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/redis-reservation/reservation"
)

func newPrimeCmd(a *app) *cobra.Command {
	var (
		conn  connFlags
		guard guardValue
	)
	cmd := &cobra.Command{
		Use:   "prime [flags]",
		Short: "Tell a brand-new Redis that it lost nothing, so that its first acquisitions need not wait",
		Long: `Record in Redis that its data is intact, so that the restart guard does not
hold back acquisitions on it. Run it once on a brand-new server: as the last
step of setting it up, before anything acquires there; or when the first
acquisition there was held back (it found the server new and started the
guard, and reserve said so): prime lifts that guard, and says so.

Priming a server that restarted without its data is unsafe. Such a server
looks new, but holders from before may not have seen their loss yet: they
still believe, for up to a TTL, that they hold keys that are gone, and the
restart guard is what waits for them. Prime only a server you know is new.

It refuses, and changes nothing, when a reservation is held there (under
--prefix): the server is in use, not new; and when the guard is primed
already.

Exit status: 0 primed; 1 refused; 69 when Redis cannot be reached or
refuses the credentials; 64 for bad usage.`,
		Example: `  # Right after starting a fresh Redis, before the first reserve run.
  reserve prime --redis redis://redis.internal:6379

  # The first run on a new server was held back by the restart guard.
  reserve run --no-wait nightly-report -- ./report.sh    # exit 75, "... run: reserve prime"
  reserve prime && reserve run --no-wait nightly-report -- ./report.sh`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := a.interruptible(cmd.Context())
			defer stop()
			c, err := conn.connect(ctx, a, reservation.Options{RestartGuard: time.Duration(guard)})
			if err != nil {
				return err
			}
			defer c.Close()
			return prime(ctx, a, &conn, c)
		},
	}
	conn.add(cmd)
	addGuardFlag(cmd, &guard)
	return cmd
}

// prime primes the restart guard of c's server, unless it is in use; it
// lifts a guard that an acquisition started, and says so.
func prime(ctx context.Context, a *app, conn *connFlags, c *reservation.Client) error {
	// First: a server that holds reservations is not new, whatever its
	// guard says.
	infos, err := c.List(ctx, "*")
	switch {
	case errors.Is(err, reservation.ErrPartial):
		// What a server that cannot be read holds is unknown: it may be
		// in use.
		nodes := nodeErrors(err)
		return unavailable(fmt.Errorf("not primed: %d %s of %s could not be read, so reserve cannot tell that %s: %s",
			len(nodes), plural(len(nodes), "server", "servers"), conn.where,
			plural(len(nodes), "it holds no reservation", "they hold no reservation"), conn.serverFailures(nodes)))
	case err != nil:
		return conn.failure(ctx, err)
	}
	if len(infos) > 0 {
		return &exitError{code: ExitFailure, err: fmt.Errorf("not primed: %s holds %s, so it is in use, not new, "+
			"and priming it could let new holders overlap holders from before a loss of its data",
			conn.where, heldList(infos))}
	}
	// What the guard does now, to tell what priming changed.
	before, err := serverGuard(ctx, c, nil)
	if err != nil {
		return conn.failure(ctx, err)
	}
	pctx, cancel := bounded(ctx)
	defer cancel()
	primed, err := c.PrimeRestartGuard(pctx)
	if err != nil {
		return conn.failure(ctx, err)
	}
	if !primed {
		return &exitError{code: ExitFailure,
			err: fmt.Errorf("not primed: the restart guard of %s is primed already; nothing changed", conn.where)}
	}
	lifted := ""
	if before.Guard > 0 {
		lifted = fmt.Sprintf(" (lifted the guard that an acquisition started, which held acquisitions back for %s more)",
			fmtDuration(before.Guard))
	}
	_, err = fmt.Fprintf(a.stdout, "primed the restart guard of %s%s: acquisitions there start at once\n", conn.where, lifted)
	return outputError(err)
}

// heldList names the reservations of infos, a few of them, for a message.
func heldList(infos []reservation.Info) string {
	names := make([]string, 0, len(infos))
	for _, in := range infos {
		names = append(names, fmt.Sprintf("%q", in.Resource))
	}
	slices.Sort(names)
	const shown = 3
	if len(names) == 1 {
		return "a reservation (" + names[0] + ")"
	}
	if len(names) > shown {
		names = append(names[:shown], "...")
	}
	return fmt.Sprintf("%d reservations (%s)", len(infos), strings.Join(names, ", "))
}
