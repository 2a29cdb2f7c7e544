package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/redis-reservation/reservation"
)

// readFlags are the flags of the commands that only read or break
// reservations.
type readFlags struct {
	conn connFlags
	json bool
}

func (f *readFlags) add(cmd *cobra.Command, what string) {
	f.conn.add(cmd)
	addJSON(cmd, &f.json, what)
}

// open makes a Client for reading (no reservation is taken, so By only
// names the client in logs), with a context that ends at the first signal.
// done closes the Client and ends the watch of signals.
func (f *readFlags) open(cmd *cobra.Command, a *app) (ctx context.Context, c *reservation.Client, done func(), err error) {
	ctx, stop := a.interruptible(cmd.Context())
	c, err = f.conn.connect(ctx, a, reservation.Options{})
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	return ctx, c, func() { c.Close(); stop() }, nil
}

func newStatusCmd(a *app) *cobra.Command {
	f := &readFlags{}
	cmd := &cobra.Command{
		Use:   "status [flags] RESOURCE",
		Short: "Show who holds RESOURCE, for how long, and its fencing token",
		Long: `Show what Redis holds for RESOURCE: whether it is held, by which holder
("<worker name>-<random id>" for this library), how long the key lives
without renewal, the last fencing token issued for it, and (approximately,
from the token, which is the server's time in microseconds at acquisition)
how long ago it was acquired. It changes nothing, and exits 0 whether the
resource is held or free.

--json prints {"resource","key","held","holder","ttl_ms","token"}: ttl_ms is
-1 for a key without expiry and 0 when not held; token is 0 when unknown.`,
		Example: `  reserve status nightly-report
  reserve status --json nightly-report | jq -r .holder`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeResources(a, &f.conn),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkResource(args[0]); err != nil {
				return err
			}
			ctx, c, done, err := f.open(cmd, a)
			if err != nil {
				return err
			}
			defer done()
			in, err := c.Status(ctx, args[0])
			if err != nil {
				return acquireError(ctx, err)
			}
			if f.json {
				return writeJSON(a.stdout, in)
			}
			return writeStatus(a.stdout, in, time.Now())
		},
	}
	f.add(cmd, "one object {resource,key,held,holder,ttl_ms,token}")
	return cmd
}

func newListCmd(a *app) *cobra.Command {
	f := &readFlags{}
	var match string
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "List every held reservation",
		Long: `List every held reservation whose resource name matches --match (a Redis
glob: * ? [abc], \ to escape), walking the keyspace with SCAN (never KEYS),
with its holder, time left, fencing token and approximate age.

--json prints an array of {"resource","key","held","holder","ttl_ms","token"}.`,
		Example: `  reserve list
  reserve list --match 'invoice:*'
  reserve list --json | jq -r '.[].resource'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, done, err := f.open(cmd, a)
			if err != nil {
				return err
			}
			defer done()
			infos, err := c.List(ctx, match)
			if err != nil {
				return acquireError(ctx, err)
			}
			if infos == nil {
				infos = []reservation.Info{} // [] in JSON, not null
			}
			slices.SortFunc(infos, func(x, y reservation.Info) int { return strings.Compare(x.Resource, y.Resource) })
			if f.json {
				return writeJSON(a.stdout, infos)
			}
			return writeList(a.stdout, infos, time.Now())
		},
	}
	f.add(cmd, "an array of {resource,key,held,holder,ttl_ms,token}")
	cmd.Flags().StringVar(&match, "match", "*", "only resources whose name matches this `glob`")
	return cmd
}

// writeJSON prints v as one JSON document on w.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return outputError(enc.Encode(v))
}

// writeStatus prints in for a person.
func writeStatus(w io.Writer, in reservation.Info, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if in.Held {
		fmt.Fprintf(tw, "%s is held by %s\n", in.Resource, in.Holder)
		fmt.Fprintf(tw, "  expires\t%s\n", expiryShort(in))
		if in.Token != 0 {
			fmt.Fprintf(tw, "  token\t%d\n", in.Token)
		} else {
			fmt.Fprintf(tw, "  token\tunknown (its record expired, or a Node worker holds it)\n")
		}
		if age := tokenAge(in.Token, now); age != "" {
			fmt.Fprintf(tw, "  held for\t%s (approximate, from the token)\n", age)
		}
	} else {
		fmt.Fprintf(tw, "%s is free\n", in.Resource)
		if in.Token != 0 {
			last := strconv.FormatInt(in.Token, 10)
			if age := tokenAge(in.Token, now); age != "" {
				last += " (acquired " + age + " ago)"
			}
			fmt.Fprintf(tw, "  last token\t%s\n", last)
		}
	}
	fmt.Fprintf(tw, "  key\t%s\n", in.Key)
	return outputError(tw.Flush())
}

// writeList prints infos as a table for a person.
func writeList(w io.Writer, infos []reservation.Info, now time.Time) error {
	if len(infos) == 0 {
		_, err := fmt.Fprintln(w, "no reservation is held")
		return outputError(err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE\tHOLDER\tEXPIRES IN\tTOKEN\tHELD FOR")
	for _, in := range infos {
		token, age := "-", tokenAge(in.Token, now)
		if in.Token != 0 {
			token = strconv.FormatInt(in.Token, 10)
		}
		if age == "" {
			age = "-"
		}
		left := "never"
		if in.TTLMillis >= 0 {
			left = fmtDuration(in.TTL)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.Resource, in.Holder, left, token, age)
	}
	return outputError(tw.Flush())
}

// expiryShort says when a held key expires, in a few words.
func expiryShort(in reservation.Info) string {
	if in.TTLMillis < 0 {
		return "never (the key has no TTL)"
	}
	return "in " + fmtDuration(in.TTL) + " unless renewed"
}

// tokenAge answers roughly how long ago token was issued, as "~3m12s", or
// "" when it cannot tell. A token is the server's time in microseconds at
// acquisition (unless faster acquisitions pushed it a little further), so
// the age is off by the clock difference between here and the server.
func tokenAge(token int64, now time.Time) string {
	issued := time.UnixMicro(token)
	if token <= 0 || issued.Year() < 2020 || issued.After(now.Add(time.Minute)) {
		return ""
	}
	return "~" + fmtDuration(max(now.Sub(issued), 0))
}

// fmtDuration prints d for a person: 850ms, 27.4s, 3m12s, 26h3m.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	s := d.Round(time.Minute).String()
	return s[:len(s)-2] // drop "0s"
}

// completeResources completes a RESOURCE argument with the resources held
// now, for shell completion. It gives up quietly after a second.
func completeResources(a *app, f *connFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), time.Second)
		defer cancel()
		addr, _ := f.addr(a)
		opt := reservation.Options{By: hostname(), Logger: slog.New(slog.DiscardHandler)}
		if err := f.options(a, addr, &opt); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := reservation.New(addr, &opt)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer c.Close()
		infos, err := c.List(ctx, globEscapeCLI(toComplete)+"*")
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []cobra.Completion
		for _, in := range infos {
			names = append(names, cobra.CompletionWithDesc(in.Resource, "held by "+in.Holder))
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// globEscapeCLI escapes the glob characters of s for --match.
func globEscapeCLI(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
