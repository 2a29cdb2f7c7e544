package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redisserver"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// TestTopTrackerChanges feeds the tracker scans and release notices, and
// checks each kind of change and where it comes from: acquired (a key
// that appears), released (gone, or another holder, after a release
// notice), expired (gone at its expiry), deleted (gone before its expiry
// without a notice), taken over (another holder without a notice, also
// when the scan in between saw the key gone at its expiry), and nothing
// from a partial scan.
func TestTopTrackerChanges(t *testing.T) {
	t0 := time.Date(2025, 11, 25, 14, 0, 0, 0, time.UTC)
	held := func(resource, holder string, ttl time.Duration) reservation.Info {
		return reservation.Info{Resource: resource, Key: "reservation-" + resource, Held: true, Holder: holder, TTL: ttl}
	}
	sem := reservation.Info{Resource: "pool", Key: "reservation-pool", Held: true, Limit: 2,
		Permits: []reservation.PermitInfo{{Number: 1, Key: "{reservation-pool}:permit-1", Holder: "p1", TTL: 10 * time.Second}}}
	tr := newTopTracker(true, time.Second)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	scan := func(s float64, complete bool, infos ...reservation.Info) string {
		var lines []string
		for _, c := range tr.scan(infos, at(s), at(s).Add(time.Millisecond), complete) {
			lines = append(lines, c.String())
		}
		return strings.Join(lines, "\n")
	}
	want := func(got, want string) {
		t.Helper()
		re := regexp.MustCompile(`\s+`)
		if norm := func(s string) string { return re.ReplaceAllString(strings.TrimSpace(s), " ") }; norm(got) != norm(want) {
			t.Errorf("changes:\n%s\nwant:\n%s", got, want)
		}
	}

	want(scan(0, true, held("a", "h1", 10*time.Second), held("b", "h2", 2*time.Second), held("c", "h3", 10*time.Second),
		held("d", "h4", 10*time.Second), held("e", "h5", 2*time.Second), sem), "")
	// a released (a notice), b expired, c deleted (no notice, early), d
	// taken over, e released and taken by the next waiter, a permit of
	// pool released by its holder, f acquired.
	if !tr.notice("reservation-a", at(0.5)) || !tr.notice("reservation-e", at(0.6)) || !tr.notice("{reservation-pool}:permit-1", at(0.7)) {
		t.Error("notice of a holding shown: want true (scan now)")
	}
	if tr.notice("reservation-zzz", at(0.7)) {
		t.Error("notice of a key not shown: want false")
	}
	want(scan(2.5, true, held("d", "h9", 10*time.Second), held("e", "h6", 10*time.Second), held("f", "h7", 10*time.Second)), `
		released a h1
		expired b h2 (not renewed)
		deleted c h3 (before its expiry, without a release notice)
		taken over d h9 from h4 (not released: deleted or overwritten before its expiry)
		released e h5
		acquired e h6
		acquired f h7
		released pool permit 1 p1`)
	// A partial scan (a master not read) shows what it read, and says
	// nothing of what it did not.
	want(scan(3, false), "")
	if got := len(tr.snapshotItems()); got != 0 {
		t.Errorf("items after an empty partial scan: %d, want 0", got)
	}
	// f expires, and the scan after sees it held by another: a takeover
	// after the expiry. d is taken over once its expiry passed.
	want(scan(13, true, held("d", "h10", 10*time.Second)), `
		taken over d h10 from h9 (after it expired)
		expired e h6 (not renewed)
		expired f h7 (not renewed)`)
	want(scan(13.5, true, held("d", "h10", 10*time.Second), held("f", "h8", 10*time.Second)), `
		taken over f h8 from h7 (after it expired)`)
	// Ages: from the token for a holder of this library, from when top
	// saw it appear for another, unknown for one there from the start.
	items := tr.snapshotItems()
	if since := items["reservation-f"].since; !since.Equal(at(13.5)) {
		t.Errorf("since of f: %v, want %v", since, at(13.5))
	}
	now := at(20)
	if d, ok := holdingAge("node-1", 0, items["reservation-f"].since, now); !ok || d != 6500*time.Millisecond {
		t.Errorf("age of a holding seen appearing: %v, %v", d, ok)
	}
	ours := "w-0123456789abcdef01234567"
	if d, ok := holdingAge(ours, now.Add(-time.Minute).UnixMicro(), time.Time{}, now); !ok || d != time.Minute {
		t.Errorf("age of our holding from its token: %v, %v", d, ok)
	}
	if _, ok := holdingAge("node-7-1234", now.Add(-time.Minute).UnixMicro(), time.Time{}, now); ok {
		t.Error("age of a Node holder from the token of an earlier holding: want unknown")
	}

	// Without the notices, a key gone early may have been released or
	// deleted: top says released, and why it cannot tell.
	tr = newTopTracker(false, time.Second)
	scan(0, true, held("a", "h1", 10*time.Second))
	want(scan(1, true), `released a h1 (before its expiry; release notices are not heard here, so maybe deleted)`)
}

// TestTopSortFilter sorts rows by each column, both ways, with the
// unknown values last, and filters them by a substring or a glob, on the
// resource, holders and waiters, in any case.
func TestTopSortFilter(t *testing.T) {
	now := time.Now()
	infos := []reservation.Info{
		{Resource: "b-job", Key: "k-b", Held: true, Holder: "web-1-0123456789abcdef01234567", TTL: 20 * time.Second,
			Token: now.Add(-time.Hour).UnixMicro(), Waiters: []string{"Queued-Worker-1"}},
		{Resource: "a-job", Key: "k-a", Held: true, Holder: "web-2-0123456789abcdef01234567", TTL: 5 * time.Second,
			Token: now.Add(-time.Minute).UnixMicro()},
		{Resource: "c-node", Key: "k-c", Held: true, Holder: "node-7-1234", TTL: 10 * time.Second},
		{Resource: "d-never", Key: "k-d", Held: true, Holder: "admin", NoExpiry: true},
	}
	order := func(s topSort, reverse bool, filter string) string {
		groups := topGroups(infos, nil, nil, now)
		sortGroups(groups, s, reverse)
		f := newTopFilter(filter)
		var out []string
		for _, g := range groups {
			if f.match(g) {
				out = append(out, g.resource)
			}
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		sort    topSort
		reverse bool
		filter  string
		want    string
	}{
		{sortResource, false, "", "a-job b-job c-node d-never"},
		{sortResource, true, "", "d-never c-node b-job a-job"},
		{sortHolder, false, "", "d-never c-node b-job a-job"},
		{sortLeft, false, "", "a-job c-node b-job d-never"},
		{sortLeft, true, "", "b-job c-node a-job d-never"},
		{sortAge, false, "", "b-job a-job c-node d-never"},
		{sortAge, true, "", "a-job b-job c-node d-never"},
		{sortResource, false, "job", "a-job b-job"},
		{sortResource, false, "NODE", "c-node"},
		{sortResource, false, "queued-worker", "b-job"},
		{sortResource, false, "*-n*", "c-node d-never"},
		{sortResource, false, "?-job", "a-job b-job"},
		{sortResource, false, "[ab]-*", "a-job b-job"},
		{sortResource, false, "[!ab]-*", "c-node d-never"},
		{sortResource, false, "web-?-*", "a-job b-job"},
		{sortResource, false, "nothing", ""},
	} {
		if got := order(c.sort, c.reverse, c.filter); got != c.want {
			t.Errorf("sort by %v (reverse %v), filter %q: %q, want %q", c.sort, c.reverse, c.filter, got, c.want)
		}
	}
}

// TestTopUsage refuses an --interval below the minimum, as a usage error.
func TestTopUsage(t *testing.T) {
	res := inProcess(t, nil, "top", "--interval", "10ms")
	if res.code != ExitUsage || !strings.Contains(res.stderr, "--interval 10ms") {
		t.Fatalf("reserve top --interval 10ms: %v", res)
	}
}

// topScene holds what the tests of top watch, on srv: job-a held by web-1
// with web-2 queued behind it (Lock), the semaphore exports with two of
// its three permits held, and node-job held by a Node-style holder (a
// plain SET, no token) for a minute.
type topScene struct {
	t    *testing.T
	srv  *redistest.Server
	jobA *reservation.Reservation
	wg   sync.WaitGroup
	stop context.CancelFunc
	ctx  context.Context
}

func newTopScene(t *testing.T) *topScene {
	t.Helper()
	s := &topScene{t: t, srv: startTestRedis(t)}
	s.ctx, s.stop = context.WithCancel(context.Background())
	t.Cleanup(func() {
		s.stop()
		s.wg.Wait()
	})
	s.jobA = hold(t, libClient(t, s.srv, "web-1", 10*time.Second), "job-a")
	s.lock(libClient(t, s.srv, "web-2", 10*time.Second), "job-a")
	for i := range 2 {
		c := libClient(t, s.srv, fmt.Sprintf("sem-%d", i+1), 10*time.Second)
		if _, err := c.TryLock(s.ctx, "exports", reservation.Limit(3)); err != nil {
			t.Fatalf("TryLock(exports, Limit(3)): %v", err)
		}
	}
	s.set("node-job", "node-7-1234", time.Minute)
	// The waiter is queued once status shows it.
	waitFor(t, 10*time.Second, "web-2 queued for job-a", func() bool {
		in, err := libClient(t, s.srv, "probe", time.Second).Status(s.ctx, "job-a")
		return err == nil && len(in.Waiters) == 1
	})
	return s
}

// lock has c wait for resource (Lock) in the background until it has it
// or the test ends; it holds it until the test ends.
func (s *topScene) lock(c *reservation.Client, resource string) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_, _ = c.Lock(s.ctx, resource)
	}()
}

// set holds resource as a Node worker does: a plain SET with an expiry.
func (s *topScene) set(resource, value string, ttl time.Duration) {
	s.t.Helper()
	rdb := s.srv.Client(s.t)
	if err := rdb.Set(s.ctx, reservation.DefaultPrefix+resource, value, ttl).Err(); err != nil {
		s.t.Fatalf("SET: %v", err)
	}
}

// TestTopPlain runs reserve top with stdout a pipe: it prints the table
// once, as list does, with the waiters and permits below their resource and
// "-" for an age it cannot know, and exits 0.
func TestTopPlain(t *testing.T) {
	t.Parallel()
	s := newTopScene(t)
	res := runReserve(t, s.srv, nil, "top")
	if res.code != 0 {
		t.Fatalf("reserve top: %v", res)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	want := []string{
		`RESOURCE\s+HOLDER\s+EXPIRES IN\s+TOKEN\s+HELD FOR\s+QUEUE`,
		`exports\s+2 of 3 permits held\s+-\s+\d{16}\s+-\s+-`,
		`  permit 1\s+sem-\d-[0-9a-f]{24}\s+\S+s\s+-\s+-`,
		`  permit 2\s+sem-\d-[0-9a-f]{24}\s+\S+s\s+-\s+-`,
		`job-a\s+web-1-[0-9a-f]{24}\s+\S+s\s+\d{16}\s+~\S+s\s+1`,
		`  queued 1\s+web-2-[0-9a-f]{24}`,
		`node-job\s+node-7-1234\s+\S+s\s+-\s+-\s+-`,
	}
	if len(lines) != len(want) {
		t.Fatalf("reserve top printed %d lines, want %d:\n%s", len(lines), len(want), res.stdout)
	}
	for i, w := range want {
		if !regexp.MustCompile(`^` + w + `$`).MatchString(lines[i]) {
			t.Errorf("line %d: %q, want %q", i+1, lines[i], w)
		}
	}
}

// TestTopFollow runs reserve top --follow with stdout a pipe: the table,
// then a line for each change as it happens (a release heard at once,
// with the waiter's acquisition after it; a release of a key with a hash
// tag, whose channel is named otherwise), until SIGINT (exit 130).
func TestTopFollow(t *testing.T) {
	t.Parallel()
	s := newTopScene(t)
	// A key with a hash tag has its release channel named otherwise.
	tagged := hold(t, libClient(t, s.srv, "tag", 10*time.Second), "job-{t}b")
	p := startReserve(t, s.srv, nil, "top", "--follow", "--interval", "200ms", "--match", "job-*")
	waitFor(t, 10*time.Second, "the table", func() bool { return strings.Contains(p.stdout.String(), "queued 1") })
	if strings.Contains(p.stdout.String(), "node-job") {
		t.Errorf("--match job-* shows node-job:\n%s", p.stdout.String())
	}
	if err := s.jobA.Release(s.ctx); err != nil {
		t.Fatal(err)
	}
	if err := tagged.Release(s.ctx); err != nil {
		t.Fatal(err)
	}
	// The release, then web-2's acquisition, and the tagged key's release.
	lines := []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\S* released\s+job-a\s+web-1-[0-9a-f]{24}$`),
		regexp.MustCompile(`(?m)^\S+ acquired\s+job-a\s+web-2-[0-9a-f]{24}$`),
		regexp.MustCompile(`(?m)^\S+ released\s+job-\{t\}b\s+tag-[0-9a-f]{24}$`),
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := p.stdout.String()
		released, acquired, tag := lines[0].FindStringIndex(out), lines[1].FindStringIndex(out), lines[2].FindStringIndex(out)
		if released != nil && acquired != nil && tag != nil && released[0] < acquired[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the releases and web-2's acquisition after job-a's, as lines: not within 5s; stdout:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	if res := p.wait(t, 10*time.Second); res.code != ExitSignal+int(syscall.SIGINT) {
		t.Fatalf("reserve top --follow after SIGINT: %v", res)
	}
}

// tmuxPane is a shell in a detached tmux session of its own server, of a
// fixed size.
type tmuxPane struct {
	t      *testing.T
	socket string
}

var tmuxSessions atomic.Int64

// startTmux starts a tmux server with a session of 120×30 that runs an
// interactive shell with the prompt "$ ", and kills it when the test ends.
func startTmux(t *testing.T) *tmuxPane {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed: the tests of the terminal view of reserve top need it")
	}
	p := &tmuxPane{t: t, socket: fmt.Sprintf("reserve-top-test-%d-%d", os.Getpid(), tmuxSessions.Add(1))}
	t.Cleanup(func() {
		path, _ := exec.Command("tmux", "-L", p.socket, "display-message", "-p", "#{socket_path}").Output()
		_ = p.tmux("kill-server")
		// The server leaves its socket behind.
		if path := strings.TrimSpace(string(path)); path != "" {
			os.Remove(path)
		}
	})
	if err := p.tmux("-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "30",
		"env PS1='$ ' HISTFILE=/dev/null bash --norc --noprofile -i"); err != nil {
		t.Fatalf("tmux new-session: %v", err)
	}
	p.waitFor("the shell's prompt", 10*time.Second, func(screen string) bool { return strings.HasPrefix(screen, "$") })
	return p
}

func (p *tmuxPane) tmux(args ...string) error {
	cmd := exec.Command("tmux", append([]string{"-L", p.socket}, args...)...)
	cmd.Env = append(baseEnv(), "TERM=xterm-256color")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// keys types keys into the pane, as tmux send-keys names them.
func (p *tmuxPane) keys(keys ...string) {
	p.t.Helper()
	if err := p.tmux(append([]string{"send-keys", "-t", "0"}, keys...)...); err != nil {
		p.t.Fatalf("tmux send-keys %q: %v", keys, err)
	}
}

// screen returns what the pane shows.
func (p *tmuxPane) screen() string {
	cmd := exec.Command("tmux", "-L", p.socket, "capture-pane", "-p", "-t", "0")
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("tmux capture-pane: %v", err)
	}
	return string(out)
}

// waitFor polls the pane every 20 ms until cond holds for its screen, at
// most limit, and answers that screen.
func (p *tmuxPane) waitFor(what string, limit time.Duration, cond func(screen string) bool) string {
	p.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		screen := p.screen()
		if cond(screen) {
			return screen
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: not on the screen within %v; it shows:\n%s", what, limit, screen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitText waits until the screen matches each of the regexps.
func (p *tmuxPane) waitText(what string, limit time.Duration, res ...string) string {
	p.t.Helper()
	var compiled []*regexp.Regexp
	for _, re := range res {
		compiled = append(compiled, regexp.MustCompile(re))
	}
	return p.waitFor(what, limit, func(screen string) bool {
		for _, re := range compiled {
			if !re.MatchString(screen) {
				return false
			}
		}
		return true
	})
}

// tableRows returns the resources of the table's own rows (not the rows
// below them), top to bottom: the lines inside the table's frame that
// start with a name.
func tableRows(screen string) []string {
	var rows []string
	for _, line := range strings.Split(screen, "\n") {
		inner, ok := strings.CutPrefix(line, "│")
		if !ok || inner == "" || inner[0] == ' ' || strings.HasPrefix(inner, "RESOURCE") {
			continue
		}
		if f := strings.Fields(inner); len(f) > 1 && !regexp.MustCompile(`^\d\d:\d\d:\d\d$`).MatchString(f[0]) {
			rows = append(rows, f[0])
		}
	}
	return rows
}

// TestTopTerminal runs reserve top in a terminal (tmux) as a person does,
// while reservations come and go: it shows the held ones, the waiter and
// the semaphore's permits; the changes as they happen (a release, an
// expiry, a takeover); sorts, filters and clears the filter on their keys;
// and quits on q, and on Ctrl-C, with status 0, back to the shell.
func TestTopTerminal(t *testing.T) {
	t.Parallel()
	s := newTopScene(t)
	pane := startTmux(t)
	pane.keys(fmt.Sprintf("%s top --redis %s --interval 300ms", reserveBin, s.srv.URL()), "Enter")

	pane.waitText("the holdings, the waiter and the permits", 15*time.Second,
		`(?m)^.job-a\s+web-1-[0-9a-f]{24}\s+\S+\s+\d{16}\s+~\S+\s+1\s`,
		`(?m)^.  queued 1\s+web-2-[0-9a-f]{24}\s`,
		`(?m)^.exports\s+2 of 3 permits held\s`,
		`(?m)^.  permit 2\s+sem-\d-[0-9a-f]{24}\s`,
		`(?m)^.node-job\s+node-7-1234\s+\S+\s+-\s+-\s+-\s`, // no token, no age: a Node-style holder there before top
		`RESOURCE ▲`, `sorted by resource`, `s sort .* q quit`,
		`watching: a scan every 300ms, and at once on each release notice`)

	// Changes: one released, one left to expire, one taken over by a
	// waiter once it expired.
	rel := hold(t, libClient(t, s.srv, "rel", 10*time.Second), "rel-job")
	s.set("short-job", "node-5-55", 2500*time.Millisecond)
	s.set("to-job", "node-9-99", 3500*time.Millisecond)
	pane.waitText("the new holdings", 5*time.Second,
		`acquired\s+rel-job\s+rel-[0-9a-f]{24}`, `acquired\s+short-job\s+node-5-55`, `acquired\s+to-job\s+node-9-99`,
		`(?m)^.to-job\s+node-9-99\s`)
	s.lock(libClient(t, s.srv, "web-3", 10*time.Second), "to-job")
	if err := rel.Release(s.ctx); err != nil {
		t.Fatal(err)
	}
	pane.waitText("the release", 3*time.Second, `\d\d:\d\d:\d\d\s+released\s+rel-job\s+rel-[0-9a-f]{24}`)
	pane.waitText("the expiry and the takeover", 10*time.Second,
		`\d\d:\d\d:\d\d\s+expired\s+short-job\s+node-5-55 \(not renewed\)`,
		`\d\d:\d\d:\d\d\s+taken over\s+to-job\s+web-3-[0-9a-f]{24} from node-9-99`,
		`(?m)^.to-job\s+web-3-[0-9a-f]{24}\s`)
	if rows := tableRows(pane.screen()); !slices.Equal(rows, []string{"exports", "job-a", "node-job", "to-job"}) {
		t.Fatalf("rows by resource: %q", rows)
	}

	// s: by holder (node-7, sem-, web-1, web-3), then by time left.
	pane.keys("s")
	screen := pane.waitText("the sort by holder", 3*time.Second, `HOLDER ▲`, `sorted by holder`)
	if rows := tableRows(screen); !slices.Equal(rows, []string{"node-job", "exports", "job-a", "to-job"}) {
		t.Errorf("rows by holder: %q\n%s", rows, screen)
	}
	pane.keys("r")
	screen = pane.waitText("the reverse sort by holder", 3*time.Second, `HOLDER ▼`)
	if rows := tableRows(screen); !slices.Equal(rows, []string{"to-job", "job-a", "exports", "node-job"}) {
		t.Errorf("rows by holder, reversed: %q\n%s", rows, screen)
	}
	pane.keys("r", "s")
	pane.waitText("the sort by time left", 3*time.Second, `EXPIRES IN ▲`, `sorted by time left`)

	// /: a filter, typed; Enter keeps it; Esc clears it.
	pane.keys("/", "n", "o", "d", "e")
	screen = pane.waitText("the filter typed", 3*time.Second, `filter: node`, `1 of 4 resources match the filter`, `Enter keep filter`)
	if rows := tableRows(screen); !slices.Equal(rows, []string{"node-job"}) {
		t.Errorf("rows filtered by node: %q\n%s", rows, screen)
	}
	pane.keys("Enter")
	pane.waitText("the filter kept", 3*time.Second, `filter: node`, `s sort .* q quit`)
	pane.keys("Escape")
	pane.waitFor("the filter cleared", 3*time.Second, func(screen string) bool {
		return !strings.Contains(screen, "match the filter") && len(tableRows(screen)) == 4
	})
	pane.keys("/", "*", "-", "j", "o", "b", "Enter")
	screen = pane.waitText("a glob filter", 3*time.Second, `2 of 4 resources match the filter`)
	if rows := tableRows(screen); !slices.Equal(slices.Sorted(slices.Values(rows)), []string{"node-job", "to-job"}) {
		t.Errorf("rows filtered by *-job: %q\n%s", rows, screen)
	}

	// q quits, with status 0, back to the shell.
	pane.keys("q")
	pane.waitFor("the shell again", 5*time.Second, func(screen string) bool { return !strings.Contains(screen, "sorted by") })
	pane.keys("echo q-status=$?", "Enter")
	pane.waitText("status 0 after q", 5*time.Second, `(?m)^q-status=0$`)

	// Ctrl-C quits too.
	pane.keys("clear; "+reserveBin+" top --redis "+s.srv.URL(), "Enter")
	pane.waitText("the view again", 15*time.Second, `(?m)^reserve top `, `(?m)^.job-a\s`)
	pane.keys("C-c")
	pane.waitFor("the shell again", 5*time.Second, func(screen string) bool { return !strings.Contains(screen, "sorted by") })
	pane.keys("echo c-status=$?", "Enter")
	pane.waitText("status 0 after Ctrl-C", 5*time.Second, `(?m)^c-status=0$`)
}

// TestTopQuorum runs reserve top --follow on a quorum: the table has each
// server's view below the resource, as list shows it, and a release is
// heard on the servers' release channels.
func TestTopQuorum(t *testing.T) {
	t.Parallel()
	servers := startQuorum(t, 3)
	r, err := quorumClient(t, servers, "q-1").TryLock(context.Background(), "q-job")
	if err != nil {
		t.Fatal(err)
	}
	p := startReserve(t, nil, nil, append([]string{"top", "--follow", "--interval", "200ms"}, quorumFlags(servers)...)...)
	waitFor(t, 10*time.Second, "the table", func() bool { return strings.Contains(p.stdout.String(), servers[2].Addr) })
	out := p.stdout.String()
	for _, s := range servers {
		if line := serverLine(out, s.Addr); !regexp.MustCompile(`^\S+ q-1-[0-9a-f]{24} \S+s \d{16}$`).MatchString(line) {
			t.Errorf("the row of %s: %q\n%s", s.Addr, line, out)
		}
	}
	if err := r.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^\S+ released\s+q-job\s+q-1-[0-9a-f]{24}$`)
	waitFor(t, 5*time.Second, "the release", func() bool { return line.MatchString(p.stdout.String()) })
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if res := p.wait(t, 10*time.Second); res.code != ExitSignal+int(syscall.SIGTERM) {
		t.Fatalf("reserve top --follow after SIGTERM: %v", res)
	}
}

// TestTopCluster runs reserve top --follow on a Redis Cluster, whose
// release notices are sharded and cannot be subscribed to by pattern: top
// says so, and a release shows at the next scan, as one that it cannot
// tell from a deletion.
func TestTopCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, redisserver.ClusterOptions{})
	primeURL(t, cl.URL())
	c, err := reservation.New(cl.URL(), &reservation.Options{By: "c-1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r, err := c.TryLock(context.Background(), "c-job")
	if err != nil {
		t.Fatal(err)
	}
	p := startReserve(t, nil, nil, "top", "--follow", "--interval", "200ms", "--redis", cl.URL())
	waitFor(t, 10*time.Second, "the table", func() bool { return strings.Contains(p.stdout.String(), "c-job") })
	if err := r.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^\S+ released\s+c-job\s+c-1-[0-9a-f]{24} \(before its expiry; release notices are not heard here, so maybe deleted\)$`)
	waitFor(t, 5*time.Second, "the release", func() bool { return line.MatchString(p.stdout.String()) })
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	res := p.wait(t, 10*time.Second)
	if want := "releases are not heard as they happen (a Redis Cluster sends release notices on sharded channels"; res.code != ExitSignal+int(syscall.SIGINT) || !strings.Contains(res.stderr, want) {
		t.Fatalf("reserve top --follow on a Cluster: %v\nwant exit 130 and %q", res, want)
	}
}

// TestTopACL runs reserve top --follow as a user with the library's
// documented channel rule (&{reservation-*}:released, no other channel):
// Redis checks a PSUBSCRIBE's pattern literally against it, and top's
// pattern for the keys without a hash tag is that one, so the release is
// heard (the tagged keys' pattern is refused, alone).
func TestTopACL(t *testing.T) {
	t.Parallel()
	s := newTopScene(t)
	rdb := s.srv.Client(t)
	if err := rdb.Do(s.ctx, "ACL", "SETUSER", "viewer", "on", ">viewer-pw", "~*", "+@all",
		"resetchannels", "&{reservation-*}:released").Err(); err != nil {
		t.Fatal(err)
	}
	p := startReserve(t, nil, nil, "top", "--follow", "--interval", "200ms", "--match", "job-*",
		"--redis", "redis://viewer:viewer-pw@"+s.srv.Addr)
	waitFor(t, 10*time.Second, "the table", func() bool { return strings.Contains(p.stdout.String(), "queued 1") })
	if err := s.jobA.Release(s.ctx); err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^\S+ released\s+job-a\s+web-1-[0-9a-f]{24}$`)
	deadline := time.Now().Add(5 * time.Second)
	for !line.MatchString(p.stdout.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("the release, heard: not within 5s; stdout:\n%s\nstderr:\n%s", p.stdout.String(), p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	if res := p.wait(t, 10*time.Second); strings.Contains(res.stderr, "not heard") {
		t.Errorf("reserve top --follow as viewer: %v", res)
	}
}
