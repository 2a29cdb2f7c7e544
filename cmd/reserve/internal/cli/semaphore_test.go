package cli

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// holdPermits has n clients, each its own holder, take a permit of a
// semaphore of limit permits. Holder i's TTL is (n-i) times ttl, so that
// the last one's permit is the first to expire, for at least a third of
// ttl (until the renewals).
func holdPermits(t *testing.T, srv *redistest.Server, resource string, limit, n int, ttl time.Duration) []*reservation.Reservation {
	t.Helper()
	var held []*reservation.Reservation
	for i := range n {
		c := libClient(t, srv, "holder"+strconv.Itoa(i), time.Duration(n-i)*ttl)
		r, err := c.TryLock(t.Context(), resource, reservation.Limit(limit))
		if err != nil {
			t.Fatalf("holder %d: TryLock(%q, Limit(%d)): %v", i, resource, limit, err)
		}
		held = append(held, r)
	}
	return held
}

// TestRunLimit runs more reserve run --limit 2 on one resource than it has
// permits: their commands, which log their start and end, never run more
// than two at once, two do run at once, and each has its permit's key, the
// limit and a fencing token in its environment.
func TestRunLimit(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	log := filepath.Join(t.TempDir(), "log")
	script := `echo "start $(date +%s%N) $RESERVE_KEY $RESERVE_LIMIT $RESERVE_TOKEN $RESERVE_RESOURCE" >> "$LOG"; sleep 0.5; ` +
		`echo "end $(date +%s%N) $RESERVE_KEY" >> "$LOG"`
	const runs = 5
	var procs []*proc
	for i := range runs {
		procs = append(procs, startReserve(t, srv, []string{"LOG=" + log},
			"run", "--by", "w"+strconv.Itoa(i), "--limit", "2", "pool", "--", "sh", "-c", script))
	}
	for _, p := range procs {
		if res := p.wait(t, 30*time.Second); res.code != 0 {
			t.Fatalf("reserve run --limit 2: %v", res)
		}
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	type mark struct {
		at    int64
		start bool
		key   string
	}
	var marks []mark
	permits := []string{"{reservation-pool}:permit-1", "{reservation-pool}:permit-2"}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		at, _ := strconv.ParseInt(f[1], 10, 64)
		marks = append(marks, mark{at, f[0] == "start", f[2]})
		if !slices.Contains(permits, f[2]) {
			t.Errorf("RESERVE_KEY = %s, want a permit's key, one of %v", f[2], permits)
		}
		if f[0] == "start" {
			if token, err := strconv.ParseInt(f[4], 10, 64); len(f) != 6 || f[3] != "2" || err != nil || token <= 0 || f[5] != "pool" {
				t.Errorf("environment %q, want the permit's key, RESERVE_LIMIT 2, a token and the resource", line)
			}
		}
	}
	if len(marks) != 2*runs {
		t.Fatalf("log has %d lines, want %d:\n%s", len(marks), 2*runs, b)
	}
	slices.SortStableFunc(marks, func(a, b mark) int { return int(a.at - b.at) })
	inUse := map[string]bool{}
	most := 0
	for _, m := range marks {
		switch {
		case m.start && inUse[m.key]:
			t.Errorf("%s taken at %d while in use", m.key, m.at)
		case m.start:
			inUse[m.key] = true
		default:
			delete(inUse, m.key)
		}
		most = max(most, len(inUse))
	}
	if most != 2 {
		t.Errorf("at most %d commands ran at once, want 2 (the limit):\n%s", most, b)
	}
}

// TestRunLimitRefused checks that --no-wait gives up at once, saying why,
// when every permit is held, when the name is a semaphore of another limit,
// and for a plain run of a semaphore's name.
func TestRunLimitRefused(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	held := holdPermits(t, srv, "full", 2, 2, time.Minute)
	env := []string{envRedisURL + "=" + srv.URL()}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--limit", "2"}, `no permit of "full" is free (--limit 2): the first to be freed is held by ` + held[1].Holder() +
			" (expires in "},
		{[]string{"--limit", "3"}, `"full" is a semaphore of 2 permits, not 3 (--limit): every holder must give the same --limit`},
		{nil, `"full" is a semaphore of 2 permits (reserve run --limit 2 takes one of them): a plain reservation of it waits`},
	} {
		args := append(append([]string{"run", "--no-wait"}, tc.args...), "full", "--", "true")
		res := runReserve(t, nil, env, args...)
		if res.code != ExitNotAcquired || !strings.HasPrefix(res.stderr, "reserve: "+tc.want) ||
			!strings.HasSuffix(res.stderr, "; not waiting (--no-wait)\n") {
			t.Errorf("reserve %s: got %v\nwant exit %d and %q", strings.Join(args, " "), res, ExitNotAcquired, tc.want)
		}
	}
}

// TestStatusAndListSemaphore checks that status and list show every holder
// of a semaphore, in text and in JSON, and list one entry for it.
func TestStatusAndListSemaphore(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	env := []string{envRedisURL + "=" + srv.URL()}
	held := holdPermits(t, srv, "exports", 3, 2, time.Minute)
	plain := hold(t, libClient(t, srv, "plain", time.Minute), "nightly")

	in := statusJSON(t, srv, "exports")
	checkPermitsJSON(t, in, held)
	if !in.Held || in.Holder != held[1].Holder() || in.TTLMillis > 60_000 || in.TTLMillis < 40_000 ||
		in.Token != max(held[0].Token(), held[1].Token()) || in.Key != "reservation-exports" {
		t.Errorf("status --json = %+v; want held, the first to expire's holder %s and TTL, the last token", in, held[1].Holder())
	}
	infos := listJSON(t, runReserve(t, nil, env, "list", "--json"))
	if names := resources(infos); !slices.Equal(names, []string{"exports", "nightly"}) {
		t.Fatalf("list --json lists %v, want exports and nightly", names)
	}
	checkPermitsJSON(t, infos[0], held)
	if infos[1].Limit != 0 || infos[1].Permits != nil || infos[1].Holder != plain.Holder() {
		t.Errorf("list --json has %+v for the reservation", infos[1])
	}
	// JSON without the semaphore's fields for a reservation.
	res := runReserve(t, nil, env, "status", "--json", "nightly")
	if strings.Contains(res.stdout, `"limit"`) || strings.Contains(res.stdout, `"permits"`) {
		t.Errorf("status --json of a reservation: %s", res.stdout)
	}

	res = runReserve(t, nil, env, "status", "exports")
	for _, want := range []string{
		"exports is a semaphore of 3 permits, 2 held\n",
		"  permit 1    held by " + held[0].Holder() + "  expires in ",
		"  permit 2    held by " + held[1].Holder() + "  expires in ",
		"  last token  " + strconv.FormatInt(held[1].Token(), 10) + " (acquired ~",
		"  key         reservation-exports (the semaphore's marker",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("status output has no %q:\n%s", want, res.stdout)
		}
	}
	res = runReserve(t, nil, env, "list")
	rows := listRows(res.stdout)["exports"]
	if want := "exports 2 of 3 permits held - " + strconv.FormatInt(held[1].Token(), 10) + " -"; len(rows) != 3 || rows[0] != want {
		t.Fatalf("list rows of exports = %q, want %q and a row for each permit\n%s", rows, want, res.stdout)
	}
	for i, r := range held {
		if f := strings.Fields(rows[i+1]); len(f) != 4 || f[0]+" "+f[1] != "permit "+strconv.Itoa(i+1) || f[2] != r.Holder() || !strings.HasSuffix(f[3], "s") {
			t.Errorf("list row %q, want permit %d held by %s and its time left", rows[i+1], i+1, r.Holder())
		}
	}

	// Every permit released: free, a semaphore still while its marker
	// lasts, and not listed.
	for _, r := range held {
		if err := r.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	res = runReserve(t, nil, env, "status", "exports")
	if !strings.HasPrefix(res.stdout, "exports is a semaphore of 3 permits, none held") {
		t.Errorf("status with no permit held:\n%s", res.stdout)
	}
	if in := statusJSON(t, srv, "exports"); in.Held || in.Limit != 3 || in.Permits != nil {
		t.Errorf("status --json with no permit held = %+v", in)
	}
	if names := resources(listJSON(t, runReserve(t, nil, env, "list", "--json"))); !slices.Equal(names, []string{"nightly"}) {
		t.Errorf("list --json with no permit held lists %v, want nightly only", names)
	}
}

// checkPermitsJSON fails the test unless in shows a semaphore of 3
// permits held by held, in permit order.
func checkPermitsJSON(t *testing.T, in infoJSON, held []*reservation.Reservation) {
	t.Helper()
	if in.Limit != 3 || len(in.Permits) != len(held) {
		t.Fatalf("%+v; want a semaphore of 3 permits, %d held", in, len(held))
	}
	for i, p := range in.Permits {
		if p.Permit != i+1 || p.Key != held[i].Key() || p.Holder != held[i].Holder() || p.TTLMillis <= 0 || p.TTLMillis > 120_000 {
			t.Errorf("permit %d = %+v; want key %s, holder %s", i+1, p, held[i].Key(), held[i].Holder())
		}
	}
}

// TestReleaseForceSemaphore breaks a semaphore: release --force names
// every holder, a reserve run holding a permit stops its command and exits
// 70, a library holder sees its loss, and the name is free for a plain run.
func TestReleaseForceSemaphore(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	env := []string{envRedisURL + "=" + srv.URL()}
	held := holdPermits(t, srv, "stuck", 3, 1, time.Minute)
	run := startReserve(t, srv, nil, "run", "--by", "runner", "--limit", "3", "stuck", "--", "sleep", "30")
	c := libClient(t, srv, "looker", time.Second)
	waitFor(t, 10*time.Second, "the run's permit", func() bool {
		in, err := c.Status(t.Context(), "stuck")
		return err == nil && len(in.Permits) == 2
	})
	in, err := c.Status(t.Context(), "stuck")
	if err != nil {
		t.Fatal(err)
	}
	res := runReserve(t, nil, env, "release", "--force", "--json", "stuck")
	var got releaseResult
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || res.code != 0 {
		t.Fatalf("release --force --json: %v, %v", err, res)
	}
	want := releaseResult{Resource: "stuck", Key: "reservation-stuck", Released: true, Holder: "semaphore:3", Limit: 3}
	for _, p := range in.Permits {
		want.Permits = append(want.Permits, releasedPermit{Key: p.Key, Holder: p.Holder})
	}
	if !slices.Equal(got.Permits, want.Permits) || got.Resource != want.Resource || got.Key != want.Key ||
		got.Released != want.Released || got.Holder != want.Holder || got.Limit != want.Limit {
		t.Errorf("release --force --json = %+v, want %+v", got, want)
	}
	if res := run.wait(t, 10*time.Second); res.code != ExitLost {
		t.Errorf("the run whose permit was freed: got %v\nwant exit %d", res, ExitLost)
	}
	select {
	case <-held[0].Done():
		if !errors.Is(held[0].Err(), reservation.ErrLost) {
			t.Errorf("the library holder: %v, want ErrLost", held[0].Err())
		}
	case <-time.After(2 * time.Second):
		t.Errorf("the library holder did not see its loss")
	}
	if res := runReserve(t, nil, env, "run", "--no-wait", "stuck", "--", "true"); res.code != 0 {
		t.Errorf("a plain run after the release: %v", res)
	}

	// The text form names the holders; a marker alone is released too.
	held = holdPermits(t, srv, "stuck2", 2, 2, time.Minute)
	res = runReserve(t, nil, env, "release", "--force", "stuck2")
	if want := "released stuck2, a semaphore of 2 permits, 2 of them held: by " + held[0].Holder() + ", " + held[1].Holder() + "\n"; res.stdout != want {
		t.Errorf("release --force of a semaphore: got %v\nwant %q", res, want)
	}
	r, err := libClient(t, srv, "h", time.Second).TryLock(t.Context(), "stuck3", reservation.Limit(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Release(t.Context()); err != nil { // its marker is left
		t.Fatal(err)
	}
	res = runReserve(t, nil, env, "release", "--force", "stuck3")
	if want := "released stuck3, a semaphore of 2 permits, none of them held (its marker is deleted)\n"; res.stdout != want {
		t.Errorf("release --force of a marker alone: got %v\nwant %q", res, want)
	}
}

// TestWaitSemaphore waits for a semaphore: it is free once none of its
// permits is held.
func TestWaitSemaphore(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	env := []string{envRedisURL + "=" + srv.URL()}
	held := holdPermits(t, srv, "pool", 3, 2, time.Minute)
	res := runReserve(t, nil, env, "wait", "--timeout", "300ms", "pool")
	if want := `reserve: 2 of the 3 permits of "pool" are held; the first to be freed is held by ` + held[1].Holder(); res.code != ExitNotAcquired ||
		!strings.HasPrefix(res.stderr, want) {
		t.Errorf("wait --timeout while permits are held: got %v\nwant exit %d and %q", res, ExitNotAcquired, want)
	}
	p := startReserve(t, srv, nil, "wait", "pool")
	if err := held[0].Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if processGone(p.cmd.Process.Pid) {
		t.Errorf("wait exited while a permit was still held")
	}
	if err := held[1].Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if res := p.wait(t, 10*time.Second); res.code != 0 {
		t.Errorf("wait once no permit is held: %v", res)
	}
}
