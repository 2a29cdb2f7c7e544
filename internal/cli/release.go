package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/redis-reservation/reservation"
)

// releaseResult is what release --json prints.
type releaseResult struct {
	Resource string `json:"resource"`
	Key      string `json:"key"`
	Released bool   `json:"released"`
	Holder   string `json:"holder"` // the holder whose reservation was broken
}

func newReleaseCmd(a *app) *cobra.Command {
	f := &readFlags{}
	var force bool
	cmd := &cobra.Command{
		Use:   "release --force [flags] RESOURCE",
		Short: "Break someone else's reservation of RESOURCE",
		Long: `Delete the reservation of RESOURCE whoever holds it, and wake its waiters.
It is for an operator: a reserve run releases its own reservation when its
command exits. A holder of this library finds out within milliseconds (on a
server with client tracking, Redis 6 and later; else at its next renewal)
and, if it is a reserve run, stops its command and exits 70. --force is
required.

It exits 0 whether or not RESOURCE was held. --json prints
{"resource","key","released","holder"}.`,
		Example:           `  reserve release --force nightly-report`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeResources(a, &f.conn),
		RunE: func(cmd *cobra.Command, args []string) error {
			resource := args[0]
			if !force {
				return usageErrorf("release breaks whoever holds %q: add --force to do it", resource)
			}
			ctx, c, done, err := f.open(cmd, a, reservation.Options{})
			if err != nil {
				return err
			}
			defer done()
			fctx, cancel := bounded(ctx)
			defer cancel()
			holder, err := c.ForceRelease(fctx, resource)
			if err != nil {
				return f.conn.failureOf(ctx, err, resource)
			}
			res := releaseResult{Resource: resource, Key: c.Key(resource), Released: holder != "", Holder: holder}
			if f.json {
				return writeJSON(a.stdout, res)
			}
			msg := fmt.Sprintf("released %s (it was held by %s)\n", resource, holder)
			if !res.Released {
				msg = resource + " was not held\n"
			}
			_, err = io.WriteString(a.stdout, msg)
			return outputError(err)
		},
	}
	f.add(cmd, "one object {resource,key,released,holder}")
	cmd.Flags().BoolVar(&force, "force", false, "confirm: break the reservation whoever holds it")
	return cmd
}
