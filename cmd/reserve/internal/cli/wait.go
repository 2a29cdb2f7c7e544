package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/redis-reservation/reservation"
)

// waitPoll is how often reserve wait looks at the key. It only reads: the
// library's wake-ups are for waiters that acquire.
const waitPoll = 100 * time.Millisecond

func newWaitCmd(a *app) *cobra.Command {
	f := &readFlags{}
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait [flags] RESOURCE",
		Short: "Block until RESOURCE is free",
		Long: `Block until RESOURCE is free (released, expired or broken), without taking
it: to take it, use reserve run. It looks every 0.1 s, and exits 0 once the
resource is free, or 75 when --timeout passes first. A semaphore (reserve
run --limit) is free once none of its permits is held.`,
		Example: `  # Deploy once the nightly report is done.
  reserve wait nightly-report && ./deploy.sh

  # Give up after ten minutes.
  reserve wait --timeout 10m nightly-report || echo "still running"`,
		Args:              oneResource,
		ValidArgsFunction: completeResources(a, &f.conn),
		RunE: func(cmd *cobra.Command, args []string) error {
			resource := args[0]
			if timeout < 0 {
				return usageErrorf("--timeout %v is negative", timeout)
			}
			ctx, c, done, err := f.open(cmd, a, reservation.Options{})
			if err != nil {
				return err
			}
			defer done()
			var deadline <-chan time.Time
			if timeout > 0 {
				t := time.NewTimer(timeout)
				defer t.Stop()
				deadline = t.C
			}
			timer := time.NewTimer(0)
			defer timer.Stop()
			last := reservation.Info{Resource: resource} // what the last look found
			for first := true; ; first = false {
				select {
				case <-ctx.Done():
					return interrupted(ctx)
				case <-deadline:
					return &exitError{code: ExitNotAcquired, err: fmt.Errorf("%s; gave up after --timeout %v", heldBy(last), timeout)}
				case <-timer.C:
				}
				sctx, cancel := bounded(ctx)
				in, err := c.Status(sctx, resource)
				cancel()
				if err != nil {
					return f.conn.failureOf(ctx, err, resource)
				}
				if !in.Held {
					if f.json {
						return writeJSON(a.stdout, toJSON(in, f.conn.serverCause))
					}
					return nil
				}
				last = in
				if first && isTerminal(a.stderr) {
					fmt.Fprintf(a.stderr, "reserve: %s; waiting\n", a.redact(heldBy(in)))
				}
				delay := waitPoll
				if in.TTL > 0 {
					delay = min(delay, in.TTL+time.Millisecond)
				}
				timer.Reset(delay)
			}
		},
	}
	f.add(cmd, "the free resource's object, as status --json prints it")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (exit 75); 0 waits for ever")
	return cmd
}

// heldBy says who holds the resource of in, and until when.
func heldBy(in reservation.Info) string {
	switch {
	case !in.Held:
		return fmt.Sprintf("%q is held", in.Resource)
	case in.Limit > 0 && len(in.Permits) == 1:
		return fmt.Sprintf("1 of the %d %s of %q is held, by %s (expires %s)", in.Limit, plural(in.Limit, "permit", "permits"),
			in.Resource, in.Holder, expiryShort(in))
	case in.Limit > 0:
		return fmt.Sprintf("%d of the %d permits of %q are held; the first to be freed is held by %s (expires %s)",
			len(in.Permits), in.Limit, in.Resource, in.Holder, expiryShort(in))
	case in.NoExpiry:
		return fmt.Sprintf("%q is held by %s (it never expires: the key has no TTL)", in.Resource, in.Holder)
	}
	return fmt.Sprintf("%q is held by %s (expires in %s unless renewed)", in.Resource, in.Holder, fmtDuration(in.TTL))
}
