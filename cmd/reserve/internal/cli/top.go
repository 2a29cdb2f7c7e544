package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/redis-reservation/reservation"
)

const (
	// minTopInterval bounds --interval from below: each refresh walks
	// the keyspace with SCAN.
	minTopInterval = 100 * time.Millisecond
	// noticeDelay is how long top waits after a release notice before it
	// scans: the next waiter takes its turn meanwhile, and a burst of
	// releases makes one scan.
	noticeDelay = 50 * time.Millisecond
	// subscribeTimeout bounds the subscription to each server's release
	// notices: a server that does not answer is not waited for.
	subscribeTimeout = 3 * time.Second
	// followTime is the time stamp of the lines of --follow.
	followTime = "2006-01-02T15:04:05.000Z07:00"
)

// topOptions are the flags of reserve top, apart from the connection's.
type topOptions struct {
	match    string
	interval time.Duration
	follow   bool
}

func newTopCmd(a *app) *cobra.Command {
	f := &connFlags{}
	var o topOptions
	cmd := &cobra.Command{
		Use:   "top [flags]",
		Short: "Watch the held reservations, their waiters and every change, live",
		Long: `Show every held reservation whose resource matches --match (as reserve list
does: SCAN, never KEYS), refreshed every --interval, with its holder, time
left, fencing token and age; a semaphore with its permits; the workers
queued for each resource, first come first; with --quorum, each server's
view. Below the table, the changes as they happen, with their time:

  acquired    a holding appeared (seen by the next scan)
  released    a holding ended with a release notice (its holder's Release,
              or reserve release --force): heard at once, and top scans at once
  expired     a holding vanished without a notice at the expiry it showed:
              its holder stopped renewing it (crashed, stalled, cut off)
  taken over  another holder has the key, and the last did not release it:
              it expired (or was deleted or overwritten), and a waiter took it
  deleted     a holding vanished before its expiry without a notice: a Node
              worker's release, a DEL, a flush

On a Redis Cluster the release notices are sharded, and top cannot
subscribe to them by pattern: a release shows at the next scan, as
released (maybe deleted). A loss is only known in its holder's process:
top shows an expiry, never a "loss". The age is the token's (the server's time in µs at acquisition) for
holders of this library; for others (Node workers, semaphore permits) it is
since top saw the holding appear, and "-" when it was there before top
started.

In a terminal, keys: s sorts by the next column (resource, holder, time
left, age), r reverses, / filters (a substring, or a glob with * ? [...];
any case; on the resource, holders and waiters), Enter keeps the filter,
Esc clears it, arrows and PgUp/PgDn scroll, q or Ctrl-C quits (exit 0).
What reserve would say on stderr meanwhile (--log-level records among it)
shows in the changes pane.

When standard output is not a terminal, top prints the table once and
exits, as reserve list does (exit 69 when some Cluster master or quorum
server was not read); with --follow it prints the table, then one line
for each change as it happens, until interrupted:
  2025-11-25T14:03:07.412+01:00 released    nightly-report  web-1-8f3c...`,
		Example: `  reserve top
  reserve top --match 'invoice:*' --interval 2s

  # The changes as lines, for a log or grep.
  reserve top --follow | grep --line-buffered 'expired\|taken over'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTop(cmd, a, f, o)
		},
	}
	f.add(cmd)
	fs := cmd.Flags()
	fs.StringVar(&o.match, "match", "*", "only resources whose name matches this `glob`")
	fs.DurationVar(&o.interval, "interval", time.Second, "how often to scan the keyspace again (at least "+minTopInterval.String()+"); a release notice scans at once")
	fs.BoolVar(&o.follow, "follow", false,
		"print the table, then each change as a line, until interrupted (also in a terminal); without it and without a terminal, print the table once and exit")
	return cmd
}

// runTop runs reserve top: the terminal view when stdout is a terminal,
// else the table once, or with --follow the table and the changes.
func runTop(cmd *cobra.Command, a *app, f *connFlags, o topOptions) error {
	if o.interval < minTopInterval {
		return usageErrorf("--interval %v: at least %v (each refresh walks the keyspace)", o.interval, minTopInterval)
	}
	view := !o.follow && isTerminal(a.stdout)
	ta, sink := a, (*topSink)(nil)
	if view {
		// What reserve or the library would say on stderr goes to the
		// changes pane instead: the terminal is the view's.
		sink = &topSink{}
		c := *a
		c.stderr = sink
		c.notes = &notes{a: &c}
		ta = &c
	}
	ctx, stop := ta.interruptible(cmd.Context())
	defer stop()
	c, err := f.connect(ctx, ta, reservation.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	if !view && !o.follow {
		return topOnce(ctx, a, f, c, o.match)
	}
	w := &topWatch{a: ta, c: c, f: f, o: o, wake: make(chan struct{}, 1)}
	w.subscribe(ctx)
	defer w.close()
	if o.follow {
		return w.follow(ctx)
	}
	return w.runView(ctx, sink)
}

// topOnce prints the table once, as reserve list does.
func topOnce(ctx context.Context, a *app, f *connFlags, c *reservation.Client, match string) error {
	lctx, cancel := bounded(ctx)
	infos, err := c.List(lctx, match)
	cancel()
	partial := errors.Is(err, reservation.ErrPartial)
	if err != nil && !partial {
		return f.failure(ctx, err)
	}
	if err := writeTop(a.stdout, topGroups(infos, nil, f.serverCause, time.Now())); err != nil {
		return err
	}
	if partial {
		return f.partial(err)
	}
	return nil
}

// writeTop prints groups, sorted by resource, as a table.
func writeTop(w io.Writer, groups []topGroup) error {
	if len(groups) == 0 {
		_, err := fmt.Fprintln(w, "no reservation is held")
		return outputError(err)
	}
	sortGroups(groups, sortResource, false)
	t := newTable(w)
	t.row(topColumns...)
	for _, g := range groups {
		for _, r := range g.rows {
			t.row(r.cells[:]...)
		}
	}
	return t.flush()
}

// topView is what one refresh shows.
type topView struct {
	infos []reservation.Info // the last scan read (the one before, when this one failed)
	items map[string]topItem // the holdings the tracker knows, for their ages
	at    time.Time          // when the scan ended
	// problem says why the scan failed or is incomplete, or "".
	problem string
	stale   bool // the scan failed: infos are the last good one's
}

// topWatch scans again and again, and hears the release notices.
type topWatch struct {
	a *app
	c *reservation.Client
	f *connFlags
	o topOptions
	t *topTracker

	wake chan struct{} // a release notice of a holding shown: scan now

	// The subscriptions to the release notices, and their clients.
	rdbs []redis.UniversalClient
	subs []*redis.PubSub
	wg   sync.WaitGroup
	// noNotices says why the release notices are not heard, or "".
	noNotices string
}

// subscribe subscribes to the release notices of the deployment (on each
// server of a quorum), and starts the tracker. On a Cluster they are
// sharded (SPUBLISH), and a sharded channel cannot be subscribed to by
// pattern: top then tells releases from deletions by nothing.
func (w *topWatch) subscribe(ctx context.Context) {
	opt := w.c.Options()
	d := w.f.dep
	switch {
	case d == nil || d.kind == cluster || d.co != nil:
		w.noNotices = "a Redis Cluster sends release notices on sharded channels, which top cannot subscribe to by pattern"
	case d.kind == sentinel:
		fo := d.failoverOptions()
		if fo == nil {
			w.noNotices = "the Sentinel URL did not parse again"
			break
		}
		w.rdbs = append(w.rdbs, redis.NewFailoverClient(fo))
	case d.kind == quorum:
		for _, addr := range d.addrs {
			w.rdbs = append(w.rdbs, redis.NewClient(singleOptions(addr, &opt)))
		}
	default:
		w.rdbs = append(w.rdbs, redis.NewClient(singleOptions(d.addr, &opt)))
	}
	// Each pattern on its own connection, all at once: a pattern that
	// an ACL refuses, or a server that does not answer, fails alone.
	patterns := releasePatterns(opt.Prefix)
	var (
		mu     sync.Mutex
		failed []string
		heard  bool // a subscription to the untagged keys' notices works
		subs   sync.WaitGroup
	)
	for _, rdb := range w.rdbs {
		for i, pattern := range patterns {
			subs.Add(1)
			go func() {
				defer subs.Done()
				ps := rdb.PSubscribe(ctx, pattern)
				sctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
				_, err := ps.Receive(sctx) // the subscription's confirmation, or why not
				cancel()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					ps.Close()
					failed = append(failed, w.a.redact(oneLine(err.Error())))
					return
				}
				w.subs = append(w.subs, ps)
				heard = heard || i == 0
			}()
		}
	}
	subs.Wait()
	if !heard && len(w.rdbs) > 0 {
		slices.Sort(failed)
		w.noNotices = "the subscription to the release notices failed: " + strings.Join(slices.Compact(failed), "; ")
	}
	w.t = newTopTracker(heard, w.o.interval)
	for _, ps := range w.subs {
		ch := ps.Channel()
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for msg := range ch {
				if w.t.notice(msg.Payload, time.Now()) {
					select {
					case w.wake <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
}

// releasePatterns returns the patterns of the release channels of the keys
// with prefix, taken from the library's ACL rule (ACLRules): Redis checks a
// PSUBSCRIBE's pattern literally against a user's channel rules, so top
// subscribes to the rule's own words. They are "{<prefix>*}:released" for
// the keys without a hash tag, then "{*}:released:<prefix>*" for those
// with one (docs/DESIGN.md, "How companions are named"). The payload of a
// notice is the key released.
func releasePatterns(prefix string) []string {
	var patterns []string
	for _, word := range reservation.ACLRules(prefix, reservation.OneServer).Worker {
		if p, ok := strings.CutPrefix(word, "&"); ok && strings.Contains(p, "}:released") {
			patterns = append(patterns, p)
		}
	}
	return patterns
}

// close ends the subscriptions and waits for their goroutines.
func (w *topWatch) close() {
	for _, ps := range w.subs {
		ps.Close()
	}
	w.wg.Wait()
	for _, rdb := range w.rdbs {
		rdb.Close()
	}
}

// sources says where the changes come from, for the first line of the
// changes.
func (w *topWatch) sources() string {
	s := fmt.Sprintf("a scan every %v", w.o.interval)
	if w.noNotices != "" {
		return s + "; releases are not heard as they happen (" + w.noNotices + "), so a release shows at the next scan, as released or deleted"
	}
	return s + ", and at once on each release notice"
}

// loop scans now, then every interval and soon after each release notice
// of a holding shown, and hands each view and its changes to emit, until
// ctx ends or emit answers false.
func (w *topWatch) loop(ctx context.Context, emit func(topView, []topChange) bool) {
	var (
		last    []reservation.Info
		lastEnd time.Time
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.wake:
			// A burst of releases makes one scan, at most one a
			// minTopInterval.
			d := max(noticeDelay, time.Until(lastEnd.Add(minTopInterval)))
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		v, changes := w.scan(ctx, &last)
		lastEnd = time.Now()
		if ctx.Err() != nil || !emit(v, changes) {
			return
		}
		timer.Reset(w.o.interval)
	}
}

// scan lists the holdings once and diffs them with the last scan; last is
// the last good scan's, kept to show when this one fails.
func (w *topWatch) scan(ctx context.Context, last *[]reservation.Info) (topView, []topChange) {
	start := time.Now()
	lctx, cancel := bounded(ctx)
	infos, err := w.c.List(lctx, w.o.match)
	cancel()
	now := time.Now()
	v := topView{at: now}
	var changes []topChange
	partial := errors.Is(err, reservation.ErrPartial)
	switch {
	case err == nil || partial:
		changes = w.t.scan(infos, start, now, err == nil)
		slices.SortFunc(infos, func(x, y reservation.Info) int { return strings.Compare(x.Resource, y.Resource) })
		*last = infos
		if partial {
			v.problem = w.a.redact(oneLine(w.f.partial(err).Error())) + "; its holdings' changes wait for a complete scan"
		}
	default:
		v.stale = true
		v.problem = w.a.redact(oneLine(w.f.failure(ctx, err).Error())) + "; showing the last scan"
	}
	v.infos, v.items = *last, w.t.snapshotItems()
	return v, changes
}

// follow prints the table once, then each change as a line, until ctx
// ends (exit 128+n) or stdout fails (exit 1). A failing scan is said on
// stderr, once until the scans work again.
func (w *topWatch) follow(ctx context.Context) error {
	var (
		printed bool
		said    string
		werr    error
	)
	if w.noNotices != "" {
		fmt.Fprintf(w.a.stderr, "reserve: releases are not heard as they happen (%s), so a release shows at the next scan, as released or deleted\n", w.noNotices)
	}
	w.loop(ctx, func(v topView, changes []topChange) bool {
		if v.problem != said {
			if v.problem != "" {
				fmt.Fprintf(w.a.stderr, "reserve: %s\n", v.problem)
			} else {
				fmt.Fprintf(w.a.stderr, "reserve: %s reads again\n", w.f.where)
			}
			said = v.problem
		}
		if !printed && !v.stale {
			printed = true
			if werr = writeTop(w.a.stdout, topGroups(v.infos, v.items, w.f.serverCause, v.at)); werr != nil {
				return false
			}
		}
		for _, c := range changes {
			if _, err := fmt.Fprintf(w.a.stdout, "%s %s\n", c.at.Format(followTime), c); err != nil {
				werr = outputError(err)
				return false
			}
		}
		return true
	})
	if werr != nil {
		return werr
	}
	return interrupted(ctx)
}

// topSink takes what reserve and the library write on stderr while the
// terminal view runs, for the changes pane.
type topSink struct {
	mu    sync.Mutex
	lines []string
	part  string
}

func (s *topSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	text := s.part + string(p)
	lines := strings.Split(text, "\n")
	s.part = lines[len(lines)-1]
	s.lines = append(s.lines, lines[:len(lines)-1]...)
	return len(p), nil
}

// take returns the lines written since the last take.
func (s *topSink) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := s.lines
	s.lines = nil
	return lines
}
