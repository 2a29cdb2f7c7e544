package cli

import (
	"context"
	"encoding/json"
	"errors"
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
// names the client in logs) with opt, and a context that ends at the first
// signal. done closes the Client and ends the watch of signals.
func (f *readFlags) open(cmd *cobra.Command, a *app, opt reservation.Options) (ctx context.Context, c *reservation.Client, done func(), err error) {
	ctx, stop := a.interruptible(cmd.Context())
	c, err = f.conn.connect(ctx, a, opt)
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	return ctx, c, func() { c.Close(); stop() }, nil
}

// infoJSON is what status, list and wait print with --json for one
// resource. Its fields only ever grow: scripts read them.
type infoJSON struct {
	Resource string `json:"resource"`
	Key      string `json:"key"`
	Held     bool   `json:"held"`
	Holder   string `json:"holder"`
	// TTLMillis is the key's time to live: -1 when it has no expiry, 0
	// when it is not held.
	TTLMillis int64 `json:"ttl_ms"`
	Token     int64 `json:"token"`
	// GuardMillis is how long the restart guard still holds acquisitions
	// back, 0 when it does not.
	GuardMillis int64 `json:"guard_ms"`
	// GuardUnset reports that the restart guard is not primed: the next
	// acquisition starts it.
	GuardUnset bool `json:"guard_unset"`
	// Waiters are the holder values of the workers queued for the
	// resource, first come first. Absent when nobody queues.
	Waiters []string `json:"waiters,omitempty"`
	// Servers is each server's own view in quorum mode, in the order of
	// the --redis flags; the fields above are then the majority's. Absent
	// outside quorum mode.
	Servers []serverJSON `json:"servers,omitempty"`
	// Limit is, for a semaphore, its number of permits; absent for a
	// reservation. Held, Holder and TTLMillis are then those of the
	// permit that expires first, and Token the last issued to any permit.
	Limit int `json:"limit,omitempty"`
	// Permits are a semaphore's held permits, by number; absent when none
	// is held.
	Permits []permitJSON `json:"permits,omitempty"`
}

// permitJSON is one held permit of a semaphore.
type permitJSON struct {
	Permit    int    `json:"permit"` // its number, from 1 to the limit
	Key       string `json:"key"`
	Holder    string `json:"holder"`
	TTLMillis int64  `json:"ttl_ms"` // -1 when the key has no expiry
}

// serverJSON is one server's view of a resource in quorum mode: the
// fields of infoJSON that a server has, or the error that kept it from
// being read.
type serverJSON struct {
	Addr        string `json:"addr"` // host:port
	Held        bool   `json:"held"`
	Holder      string `json:"holder"`
	TTLMillis   int64  `json:"ttl_ms"`
	Token       int64  `json:"token"`
	GuardMillis int64  `json:"guard_ms"`
	GuardUnset  bool   `json:"guard_unset"`
	// Error says why the server could not be read ("does not answer
	// (connection refused)"); absent when it was.
	Error string `json:"error,omitempty"`
}

// causeFunc says how the server at addr failed, for a person (connFlags'
// serverCause).
type causeFunc func(addr string, err error) string

// toJSON returns in's JSON form; cause says how a server of a quorum
// failed.
func toJSON(in reservation.Info, cause causeFunc) infoJSON {
	j := infoJSON{
		Resource:    in.Resource,
		Key:         in.Key,
		Held:        in.Held,
		Holder:      in.Holder,
		TTLMillis:   ttlMillis(in),
		Token:       in.Token,
		GuardMillis: in.Guard.Milliseconds(),
		GuardUnset:  in.GuardUnset,
		Waiters:     in.Waiters,
		Limit:       in.Limit,
	}
	for _, p := range in.Permits {
		ttl := p.TTL.Milliseconds()
		if p.NoExpiry {
			ttl = -1
		}
		j.Permits = append(j.Permits, permitJSON{Permit: p.Number, Key: p.Key, Holder: p.Holder, TTLMillis: ttl})
	}
	for _, s := range in.Servers {
		sj := serverJSON{Addr: hostPort(s.Addr)}
		if s.Err != nil {
			sj.Error = cause(s.Addr, s.Err)
		} else {
			sj.Held, sj.Holder, sj.TTLMillis, sj.Token = s.Held, s.Holder, ttlMillis(s.Info), s.Token
			sj.GuardMillis, sj.GuardUnset = s.Guard.Milliseconds(), s.GuardUnset
		}
		j.Servers = append(j.Servers, sj)
	}
	return j
}

// ttlMillis is in's TTL as ttl_ms has it: -1 for a key without expiry.
func ttlMillis(in reservation.Info) int64 {
	if in.NoExpiry {
		return -1
	}
	return in.TTL.Milliseconds()
}

// addGuardFlag registers --restart-guard on a command that shows the
// restart guard: its time left depends on the period the holders use. The
// command's PreRunE refuses --restart-guard 0.
func addGuardFlag(cmd *cobra.Command, g *guardValue) {
	cmd.Flags().Var(g, "restart-guard",
		"the restart guard `duration` the holders use, to show its time left (default the default --ttl, 30s; \"off\" hides it)")
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		return g.check(cmd, "the default --ttl, "+reservation.DefaultTTL.String())
	}
}

func newStatusCmd(a *app) *cobra.Command {
	f := &readFlags{}
	var guard guardValue
	cmd := &cobra.Command{
		Use:   "status [flags] RESOURCE",
		Short: "Show who holds RESOURCE, for how long, and its fencing token",
		Long: `Show what Redis holds for RESOURCE: whether it is held, by which holder
("<worker name>-<random id>" for this library), how long the key lives
without renewal, the last fencing token issued for it, and (approximately,
from the token, which is the server's time in microseconds at acquisition)
how long ago it was acquired. It also shows the restart guard when it holds
acquisitions back, or when it is not primed (a new server, or one that lost
its data: the next acquisition starts it). It changes nothing, and exits 0
whether the resource is held or free.

For a semaphore (reserve run --limit), it shows its number of permits, and
each held permit's holder and time left.

With --quorum, this is what a majority of the servers hold (held when a
majority holds it with one holder; the time until fewer than a majority
do), followed by what each server holds, or why it could not be read. A
minority of servers down is said on stderr, and status exits 0.

--json prints {"resource","key","held","holder","ttl_ms","token","guard_ms",
"guard_unset"}: ttl_ms is -1 for a key without expiry and 0 when not held;
token is 0 when unknown; guard_ms is how long the restart guard still holds
acquisitions back (0 when it does not); guard_unset is true when the guard
is not primed. With --quorum, "servers" adds each server's
{"addr","held","holder","ttl_ms","token","guard_ms","guard_unset"}, or its
{"addr","error"}. For a semaphore, "limit" is its number of permits and
"permits" has each held one's {"permit","key","holder","ttl_ms"}; "held" is
true while any is held, "holder" and "ttl_ms" are the permit's that expires
first, "token" the last issued to any.`,
		Example: `  reserve status nightly-report
  reserve status --json nightly-report | jq -r .holder

  # Every holder of a semaphore's permits.
  reserve status --json exports | jq -r '.permits[].holder'`,
		Args:              oneResource,
		ValidArgsFunction: completeResources(a, &f.conn),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, done, err := f.open(cmd, a, reservation.Options{RestartGuard: time.Duration(guard)})
			if err != nil {
				return err
			}
			defer done()
			sctx, cancel := bounded(ctx)
			defer cancel()
			in, err := c.Status(sctx, args[0])
			if err != nil {
				return f.conn.failureOf(ctx, err, args[0])
			}
			if f.json {
				return writeJSON(a.stdout, toJSON(in, f.conn.serverCause))
			}
			return writeStatus(a.stdout, in, c.Options().RestartGuard, thisOne(f.conn.kind), f.conn.serverCause, time.Now())
		},
	}
	f.add(cmd, "one object {resource,key,held,holder,ttl_ms,token,guard_ms,guard_unset}")
	addGuardFlag(cmd, &guard)
	return cmd
}

func newListCmd(a *app) *cobra.Command {
	f := &readFlags{}
	var (
		match string
		guard guardValue
	)
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "List every held reservation",
		Long: `List every held reservation whose resource name matches --match (a Redis
glob: * ? [abc], \ to escape), walking the keyspace with SCAN (never KEYS;
on a Redis Cluster, on every master), with its holder, time left, fencing
token and approximate age; and, below them, the restart guard when it holds
acquisitions back or is not primed. A semaphore (reserve run --limit) with
a permit held is one row, with how many of its permits are held and its
last token, followed by one row for each held permit: its holder and time
left.

--json prints an array of the objects of status --json.

With --quorum, each reservation held on any server is listed with what a
majority holds ("(no majority)" when none does), and below it one row for
each server.

On a Redis Cluster with masters that cannot be read, or a quorum with
servers that cannot be read, list prints what the others hold, says on
stderr which it could not read, and exits 69: the answer is incomplete.`,
		Example: `  reserve list
  reserve list --match 'invoice:*'
  reserve list --json | jq -r '.[].resource'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, done, err := f.open(cmd, a, reservation.Options{RestartGuard: time.Duration(guard)})
			if err != nil {
				return err
			}
			defer done()
			infos, err := c.List(ctx, match)
			partial := errors.Is(err, reservation.ErrPartial)
			if err != nil && !partial {
				return f.conn.failure(ctx, err)
			}
			slices.SortFunc(infos, func(x, y reservation.Info) int { return strings.Compare(x.Resource, y.Resource) })
			if f.json {
				out := make([]infoJSON, 0, len(infos)) // [] in JSON, not null
				for _, in := range infos {
					out = append(out, toJSON(in, f.conn.serverCause))
				}
				if err := writeJSON(a.stdout, out); err != nil || !partial {
					return err
				}
				return f.conn.partial(err)
			}
			if err := writeList(a.stdout, infos, f.conn.serverCause, time.Now()); err != nil {
				return err
			}
			if partial {
				// The guard of the masters that answered says little
				// of the others'.
				return f.conn.partial(err)
			}
			g, err := serverGuard(ctx, c, infos)
			if err != nil {
				return f.conn.failure(ctx, err)
			}
			return writeGuard(a.stdout, "restart guard: ", g, c.Options().RestartGuard, thisOne(f.conn.kind))
		},
	}
	f.add(cmd, "an array of {resource,key,held,holder,ttl_ms,token,guard_ms,guard_unset}")
	cmd.Flags().StringVar(&match, "match", "*", "only resources whose name matches this `glob`")
	addGuardFlag(cmd, &guard)
	return cmd
}

// guardProbe is the resource whose Status tells the restart guard's state
// when no reservation is held: on a single server the guard is one for
// all resources (on Cluster, one per slot: this is the probe's slot's).
const guardProbe = "reserve:restart-guard-probe"

// serverGuard returns the restart guard's state as infos show it: the
// longest time left, and unset when any is. With no infos, it reads it
// with a Status of guardProbe.
func serverGuard(ctx context.Context, c *reservation.Client, infos []reservation.Info) (reservation.Info, error) {
	if len(infos) == 0 {
		sctx, cancel := bounded(ctx)
		defer cancel()
		return c.Status(sctx, guardProbe)
	}
	var g reservation.Info
	for _, in := range infos {
		g.Guard = max(g.Guard, in.Guard)
		g.GuardUnset = g.GuardUnset || in.GuardUnset
	}
	return g, nil
}

// writeJSON prints v as one JSON document on w.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return outputError(enc.Encode(v))
}

// writeStatus prints in for a person, then each server's view in quorum
// mode; period is the restart guard's, this names the deployment ("this
// server is"), and cause says how a server of a quorum failed.
func writeStatus(w io.Writer, in reservation.Info, period time.Duration, this string, cause causeFunc, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	key := in.Key
	switch {
	case in.Limit > 0:
		writeSemaphore(tw, in, now)
		key += " (the semaphore's marker; status --json shows each permit's key)"
	case in.Held:
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
	default:
		fmt.Fprintf(tw, "%s is free\n", in.Resource)
		writeLastToken(tw, in.Token, now)
	}
	if len(in.Waiters) > 0 {
		fmt.Fprintf(tw, "  queued\t%d, first come, first served: %s\n", len(in.Waiters), strings.Join(in.Waiters, ", "))
	}
	fmt.Fprintf(tw, "  key\t%s\n", key)
	if err := writeGuard(tw, "  restart guard\t", in, period, this); err != nil {
		return err
	}
	if err := outputError(tw.Flush()); err != nil || in.Servers == nil {
		return err
	}
	return writeServers(w, in.Servers, cause)
}

// writeSemaphore prints the head of the status of in, a semaphore: how
// many of its permits are held, by whom and until when, and its last token.
func writeSemaphore(w io.Writer, in reservation.Info, now time.Time) {
	held := "none held (a plain reservation of it, or another --limit, waits until its marker expires)"
	switch n := len(in.Permits); {
	case n == in.Limit:
		held = "all held"
	case n > 0:
		held = fmt.Sprintf("%d held", n)
	}
	fmt.Fprintf(w, "%s is a semaphore of %d %s, %s\n", in.Resource, in.Limit, plural(in.Limit, "permit", "permits"), held)
	for _, p := range in.Permits {
		fmt.Fprintf(w, "  permit %d\theld by %s\texpires %s\n", p.Number, p.Holder, expiresIn(p.TTL, p.NoExpiry))
	}
	writeLastToken(w, in.Token, now)
}

// writeLastToken prints the last token issued and roughly when, unless it
// is unknown (0).
func writeLastToken(w io.Writer, token int64, now time.Time) {
	if token == 0 {
		return
	}
	last := strconv.FormatInt(token, 10)
	if age := tokenAge(token, now); age != "" {
		last += " (acquired " + age + " ago)"
	}
	fmt.Fprintf(w, "  last token\t%s\n", last)
}

// writeServers prints what each server of a quorum holds, below a status.
func writeServers(w io.Writer, servers []reservation.ServerInfo, cause causeFunc) error {
	fmt.Fprintf(w, "  on each of the %d servers (a majority is %d):\n", len(servers), len(servers)/2+1)
	t := newTable(w)
	for _, s := range servers {
		addr := "    " + hostPort(s.Addr)
		if s.Err != nil {
			t.row(addr, cause(s.Addr, s.Err), "", "", "")
			continue
		}
		state, expiry, token, guard := "free", "", "", ""
		if s.Held {
			state, expiry = "held by "+s.Holder, "expires "+expiryShort(s.Info)
		}
		switch {
		case s.Token != 0 && s.Held:
			token = "token " + strconv.FormatInt(s.Token, 10)
		case s.Token != 0:
			token = "last token " + strconv.FormatInt(s.Token, 10)
		}
		switch {
		case s.Guard > 0:
			guard = "restart guard: holds acquisitions back for " + fmtDuration(s.Guard) + " more"
		case s.GuardUnset:
			guard = "restart guard: not primed"
		}
		t.row(addr, state, expiry, token, guard)
	}
	return t.flush()
}

// table is a tabwriter on w for rows of as many cells each, whose lines
// lose the padding at their ends (the rows of a quorum's servers have
// empty cells last). An error row keeps every cell, so that it does not
// end the columns of the rows around it.
type table struct {
	w  io.Writer
	b  strings.Builder
	tw *tabwriter.Writer
}

func newTable(w io.Writer) *table {
	t := &table{w: w}
	t.tw = tabwriter.NewWriter(&t.b, 0, 0, 2, ' ', 0)
	return t
}

// row adds a row of cells.
func (t *table) row(cells ...string) {
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// flush writes the table to w.
func (t *table) flush() error {
	if err := t.tw.Flush(); err != nil {
		return outputError(err)
	}
	lines := strings.Split(t.b.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	_, err := io.WriteString(t.w, strings.Join(lines, "\n"))
	return outputError(err)
}

// writeGuard prints the restart guard's state after label, when it holds
// acquisitions back or is not primed; period is its duration, and this
// names the deployment ("this server").
func writeGuard(w io.Writer, label string, in reservation.Info, period time.Duration, this string) error {
	var err error
	switch {
	case in.Guard > 0:
		_, err = fmt.Fprintf(w, "%sholds acquisitions back for %s more\n", label, fmtDuration(in.Guard))
	case in.GuardUnset:
		_, err = fmt.Fprintf(w, "%snot primed — the next acquisition starts it (%s); run 'reserve prime' if %s new\n",
			label, fmtDuration(period), this)
	}
	return outputError(err)
}

// writeList prints infos as a table for a person; in quorum mode, each
// resource's row is followed by one for each server, and cause says how a
// server failed.
func writeList(w io.Writer, infos []reservation.Info, cause causeFunc, now time.Time) error {
	if len(infos) == 0 {
		_, err := fmt.Fprintln(w, "no reservation is held")
		return outputError(err)
	}
	t := newTable(w)
	t.row("RESOURCE", "HOLDER", "EXPIRES IN", "TOKEN", "HELD FOR")
	for _, in := range infos {
		age := tokenAge(in.Token, now)
		if age == "" {
			age = "-"
		}
		holder, left := in.Holder, listTTL(in)
		switch {
		case in.Limit > 0:
			// The holders follow, one row each; the token is the
			// last issued to any permit, not one holder's.
			holder, left, age = fmt.Sprintf("%d of %d %s held", len(in.Permits), in.Limit, plural(in.Limit, "permit", "permits")), "-", "-"
		case !in.Held:
			holder, left = "(no majority)", "-"
		}
		t.row(in.Resource, holder, left, listToken(in.Token), age)
		for _, p := range in.Permits {
			left := fmtDuration(p.TTL)
			if p.NoExpiry {
				left = "never"
			}
			t.row("  permit "+strconv.Itoa(p.Number), p.Holder, left, "", "")
		}
		for _, s := range in.Servers {
			addr := "  " + hostPort(s.Addr)
			switch {
			case s.Err != nil:
				t.row(addr, cause(s.Addr, s.Err), "", "", "")
			case !s.Held:
				t.row(addr, "free", "-", listToken(s.Token), "")
			default:
				t.row(addr, s.Holder, listTTL(s.Info), listToken(s.Token), "")
			}
		}
	}
	return t.flush()
}

// listTTL is the EXPIRES IN cell of list for in.
func listTTL(in reservation.Info) string {
	if in.NoExpiry {
		return "never"
	}
	return fmtDuration(in.TTL)
}

// listToken is the TOKEN cell of list for token.
func listToken(token int64) string {
	if token == 0 {
		return "-"
	}
	return strconv.FormatInt(token, 10)
}

// expiryShort says when a held key expires, in a few words.
func expiryShort(in reservation.Info) string {
	return expiresIn(in.TTL, in.NoExpiry)
}

// expiresIn says when a key with ttl (or none) expires, in a few words.
func expiresIn(ttl time.Duration, noExpiry bool) string {
	if noExpiry {
		return "never (the key has no TTL)"
	}
	return "in " + fmtDuration(ttl) + " unless renewed"
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
		// Cobra parses the flags twice before it completes (once to
		// count the arguments), and each parse adds every --redis again.
		if r := &f.redis; r.set && len(r.addrs)%2 == 0 && slices.Equal(r.addrs[:len(r.addrs)/2], r.addrs[len(r.addrs)/2:]) {
			r.addrs = r.addrs[:len(r.addrs)/2]
		}
		// Silent: completion prints nothing but the names.
		opt := reservation.Options{Logger: slog.New(slog.DiscardHandler), OnEvent: func(reservation.Event) {}}
		c, err := f.client(ctx, a, &opt)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer c.Close()
		// A SCAN for the typed prefix when it is a plain name; else all,
		// filtered here.
		match := "*"
		if !strings.ContainsAny(toComplete, `*?[]\`) {
			match = toComplete + "*"
		}
		infos, err := c.List(ctx, match)
		if err != nil && !errors.Is(err, reservation.ErrPartial) {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []cobra.Completion
		for _, in := range infos {
			if strings.HasPrefix(in.Resource, toComplete) {
				desc := "held by " + in.Holder
				if in.Limit > 0 {
					desc = fmt.Sprintf("a semaphore, %d of %d permits held", len(in.Permits), in.Limit)
				}
				names = append(names, cobra.CompletionWithDesc(in.Resource, desc))
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// partial reports a List that some Cluster masters, or some servers of a
// quorum, did not answer: exit 69, since the answer is incomplete, naming
// each and why.
func (f *connFlags) partial(err error) error {
	nodes := nodeErrors(err)
	if f.kind == quorum {
		return unavailable(fmt.Errorf("the list is incomplete: %d %s of %s could not be read: %s",
			len(nodes), plural(len(nodes), "server", "servers"), f.where, f.serverFailures(nodes)))
	}
	parts := make([]string, 0, len(nodes))
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s (%s)", n.Addr, shortCause(n.Err)))
	}
	return unavailable(fmt.Errorf("the list is incomplete: %d %s of %s could not be read: %s",
		len(nodes), plural(len(nodes), "master", "masters"), f.where, strings.Join(parts, ", ")))
}

// nodeErrors answers the *reservation.NodeError in the tree of err.
func nodeErrors(err error) []*reservation.NodeError {
	if ne, ok := err.(*reservation.NodeError); ok {
		return []*reservation.NodeError{ne}
	}
	var out []*reservation.NodeError
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, nodeErrors(e)...)
		}
	case interface{ Unwrap() error }:
		out = nodeErrors(u.Unwrap())
	}
	return out
}
