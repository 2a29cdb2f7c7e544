package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/redis-reservation/reservation"
)

// releaseResult is what release --json prints.
type releaseResult struct {
	Resource string `json:"resource"`
	Key      string `json:"key"`
	Released bool   `json:"released"`
	// Holder is the holder whose reservation was broken; for a
	// semaphore, "semaphore:<limit>".
	Holder string `json:"holder"`
	// Limit is, for a semaphore, its number of permits; absent for a
	// reservation.
	Limit int `json:"limit,omitempty"`
	// Permits are the semaphore's permits that were held, and freed;
	// absent when none was.
	Permits []releasedPermit `json:"permits,omitempty"`
}

// releasedPermit is a permit of a semaphore that release freed.
type releasedPermit struct {
	Key    string `json:"key"`
	Holder string `json:"holder"`
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

For a semaphore (reserve run --limit), it frees every permit and the
semaphore's marker at once, and names each holder: the name is then free
for anyone, a plain reservation included.

It exits 0 whether or not RESOURCE was held. --json prints
{"resource","key","released","holder"}; for a semaphore, "holder" is
"semaphore:<limit>", "limit" its number of permits, and "permits" has the
{"key","holder"} of each permit freed.`,
		Example:           `  reserve release --force nightly-report`,
		Args:              oneResource,
		ValidArgsFunction: completeResources(a, &f.conn),
		RunE: func(cmd *cobra.Command, args []string) error {
			resource := args[0]
			if !force {
				return usageErrorf("release breaks whoever holds %q: add --force to do it", resource)
			}
			// The library reports each permit of a semaphore it frees.
			var (
				mu    sync.Mutex
				freed []reservation.Event
			)
			f.conn.observe = func(e reservation.Event) {
				if e.Kind == reservation.EventReleased && e.Resource == resource {
					mu.Lock()
					freed = append(freed, e)
					mu.Unlock()
				}
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
			c.Close() // delivers the events
			res := releaseResult{Resource: resource, Key: c.Key(resource), Released: holder != "", Holder: holder}
			if n, ok := strings.CutPrefix(holder, semaphoreHolder); ok {
				res.Limit, _ = strconv.Atoi(n)
				mu.Lock()
				for _, e := range freed {
					p := releasedPermit{Key: e.Key, Holder: e.Holder}
					// Once each: a quorum's servers report theirs.
					if e.Key != res.Key && !slices.Contains(res.Permits, p) {
						res.Permits = append(res.Permits, p)
					}
				}
				mu.Unlock()
			}
			if f.json {
				return writeJSON(a.stdout, res)
			}
			_, err = io.WriteString(a.stdout, releasedSentence(res))
			return outputError(err)
		},
	}
	f.add(cmd, "one object {resource,key,released,holder}")
	cmd.Flags().BoolVar(&force, "force", false, "confirm: break the reservation whoever holds it")
	return cmd
}

// releasedSentence says what release --force broke, for a person.
func releasedSentence(res releaseResult) string {
	switch {
	case !res.Released:
		return res.Resource + " was not held\n"
	case res.Limit > 0 && len(res.Permits) == 0:
		return fmt.Sprintf("released %s, a semaphore of %d %s, none of them held (its marker is deleted)\n",
			res.Resource, res.Limit, plural(res.Limit, "permit", "permits"))
	case res.Limit > 0:
		holders := make([]string, len(res.Permits))
		for i, p := range res.Permits {
			holders[i] = p.Holder
		}
		return fmt.Sprintf("released %s, a semaphore of %d %s, %d of them held: by %s\n",
			res.Resource, res.Limit, plural(res.Limit, "permit", "permits"), len(res.Permits), strings.Join(holders, ", "))
	}
	return fmt.Sprintf("released %s (it was held by %s)\n", res.Resource, res.Holder)
}
