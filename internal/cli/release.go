package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
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
command exits. The holder finds out at its next renewal (within its
heartbeat interval) and, if it is a reserve run, stops its command and
exits 70. --force is required.

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
			if err := checkResource(resource); err != nil {
				return err
			}
			ctx, c, done, err := f.open(cmd, a)
			if err != nil {
				return err
			}
			defer done()
			holder, err := c.ForceRelease(ctx, resource)
			if err != nil {
				return acquireError(ctx, err)
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
