package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
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
resource is free, or 75 when --timeout passes first.`,
		Example: `  # Deploy once the nightly report is done.
  reserve wait nightly-report && ./deploy.sh

  # Give up after ten minutes.
  reserve wait --timeout 10m nightly-report || echo "still running"`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeResources(a, &f.conn),
		RunE: func(cmd *cobra.Command, args []string) error {
			resource := args[0]
			if timeout < 0 {
				return usageErrorf("--timeout %v is negative", timeout)
			}
			if err := checkResource(resource); err != nil {
				return err
			}
			ctx, c, done, err := f.open(cmd, a)
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
			for first := true; ; first = false {
				select {
				case <-ctx.Done():
					return interrupted(ctx)
				case <-deadline:
					return notAcquired(ctx, c, resource, "gave up after --timeout "+timeout.String())
				case <-timer.C:
				}
				in, err := c.Status(ctx, resource)
				if err != nil {
					return acquireError(ctx, err)
				}
				if !in.Held {
					if f.json {
						return writeJSON(a.stdout, in)
					}
					return nil
				}
				if first && isTerminal(a.stderr) {
					fmt.Fprintf(a.stderr, "reserve: %q is held by %s (%s); waiting\n", resource, in.Holder, expiry(in))
				}
				delay := waitPoll
				if in.TTL > 0 {
					delay = min(delay, in.TTL+time.Millisecond)
				}
				timer.Reset(delay)
			}
		},
	}
	f.add(cmd, "the free resource's {resource,key,held,holder,ttl_ms,token}")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (exit 75); 0 waits for ever")
	return cmd
}
