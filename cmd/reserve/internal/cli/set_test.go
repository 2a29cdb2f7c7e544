package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-reservation/reservation"
)

// TestRunSet runs reserve run with overlapping sets of resources given in
// different orders ("a b", "b a", "b c", "c a"), several of each at once:
// all finish (no deadlock), two commands that share a resource never run
// at once, commands with disjoint sets do, and each command finds every
// resource's name, key and token in its environment, the first one's under
// the single names too.
func TestRunSet(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	log := filepath.Join(t.TempDir(), "log")
	// One line at the start and one at the end, each with every resource.
	script := `i=1; set=""; while [ $i -le "$RESERVE_COUNT" ]; do ` +
		`eval "set=\"\$set \$RESERVE_RESOURCE_$i:\$RESERVE_KEY_$i:\$RESERVE_TOKEN_$i\""; i=$((i+1)); done; ` +
		`echo "start $(date +%s%N) $RESERVE_RESOURCE:$RESERVE_KEY:$RESERVE_TOKEN$set" >> "$LOG"; sleep 0.3; ` +
		`echo "end $(date +%s%N) $RESERVE_RESOURCE:$RESERVE_KEY:$RESERVE_TOKEN$set" >> "$LOG"`
	sets := [][]string{{"a", "b"}, {"b", "a"}, {"b", "c"}, {"c", "a"}, {"d", "e"}}
	var procs []*proc
	for round := range 2 {
		for i, set := range sets {
			args := append([]string{"run", "--by", fmt.Sprint("w", round, i)}, set...)
			args = append(args, "--", "sh", "-c", script)
			procs = append(procs, startReserve(t, srv, []string{"LOG=" + log}, args...))
		}
	}
	for _, p := range procs {
		if res := p.wait(t, 30*time.Second); res.code != 0 {
			t.Fatalf("reserve %s: %v", strings.Join(p.cmd.Args[1:], " "), res)
		}
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	type mark struct {
		at        int64
		start     bool
		resources []string
	}
	var marks []mark
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 5 {
			t.Fatalf("log line %q: want start or end, a time, the first resource and the set of 2", line)
		}
		at, _ := strconv.ParseInt(f[1], 10, 64)
		m := mark{at: at, start: f[0] == "start"}
		for i, member := range f[3:] {
			p := strings.Split(member, ":")
			token, err := strconv.ParseInt(p[2], 10, 64)
			if len(p) != 3 || p[1] != "reservation-"+p[0] || err != nil || token <= 0 {
				t.Errorf("resource %d in %q: want its name, key and token", i+1, line)
			}
			m.resources = append(m.resources, p[0])
		}
		if f[2] != f[3] {
			t.Errorf("RESERVE_RESOURCE, RESERVE_KEY and RESERVE_TOKEN are %s, want the first resource's, %s", f[2], f[3])
		}
		if !slices.ContainsFunc(sets, func(s []string) bool { return slices.Equal(s, m.resources) }) {
			t.Errorf("resources %v in the order given? want one of %v", m.resources, sets)
		}
		marks = append(marks, m)
	}
	if len(marks) != 2*len(procs) {
		t.Fatalf("log has %d lines, want %d:\n%s", len(marks), 2*len(procs), b)
	}
	slices.SortStableFunc(marks, func(a, b mark) int { return int(a.at - b.at) })
	inUse := map[string]bool{}
	disjoint := false
	for _, m := range marks {
		if !m.start {
			for _, r := range m.resources {
				delete(inUse, r)
			}
			continue
		}
		for _, r := range m.resources {
			if inUse[r] {
				t.Errorf("%s taken at %d while in use", r, m.at)
			}
		}
		disjoint = disjoint || len(inUse) > 0
		for _, r := range m.resources {
			inUse[r] = true
		}
	}
	if !disjoint {
		t.Errorf("no two commands ran at once, though some sets are disjoint:\n%s", b)
	}
}

// TestRunSetRefused checks that reserve run --no-wait of a set gives up at
// once when any member is held, saying which and that they are reserved
// together, and holds none of them meanwhile; with --timeout it waits,
// and runs once the member is released.
func TestRunSetRefused(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	lib := libClient(t, srv, "lib", time.Minute)
	held := hold(t, lib, "b")
	res := runReserve(t, srv, nil, "run", "--no-wait", "a", "b", "c", "--", "true")
	want := `reserve: "a", "b" and "c" are reserved together, all or none, and "b" is held by ` + held.Holder() + " (expires in "
	if res.code != ExitNotAcquired || !strings.HasPrefix(res.stderr, want) || !strings.HasSuffix(res.stderr, "; not waiting (--no-wait)\n") {
		t.Errorf("reserve run --no-wait a b c, b held: got %v\nwant exit %d and %q", res, ExitNotAcquired, want)
	}
	for _, r := range []string{"a", "c"} {
		// Free: nothing of the set was kept.
		o := hold(t, lib, r)
		if err := o.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	p := startReserve(t, srv, nil, "run", "--timeout", "20s", "a", "b", "--", "sh", "-c", `echo "$RESERVE_COUNT $RESERVE_RESOURCE_2"`)
	time.Sleep(300 * time.Millisecond)
	if err := held.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res := p.wait(t, 20*time.Second); res.code != 0 || res.stdout != "2 b\n" {
		t.Errorf("reserve run --timeout 20s a b, b released: got %v\nwant exit 0 and 2 b", res)
	}
}

// TestRunSetLost deletes one member's key while reserve run holds a set:
// reserve says once that the set is gone, naming the member, stops the
// command and exits 70, and the other member is given back.
func TestRunSetLost(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	p := startReserve(t, srv, []string{"STARTED=" + started},
		"run", "--grace", "1s", "x", "y", "--", "sh", "-c", `touch "$STARTED"; exec sleep 30`)
	waitFor(t, 10*time.Second, "the command to start", func() bool { _, err := os.Stat(started); return err == nil })
	rdb := srv.Client(t)
	if err := rdb.Del(context.Background(), "reservation-y").Err(); err != nil {
		t.Fatal(err)
	}
	res := p.wait(t, 15*time.Second)
	want := `reserve: the reservation of "x" and "y", held together, is gone: `
	if res.code != ExitLost || strings.Count(res.stderr, want) != 1 || !strings.Contains(res.stderr, `(member "y" of the set)`) ||
		!strings.Contains(res.stderr, `the reservation of "x" and "y" was lost while the command ran`) {
		t.Errorf("reserve run x y, y's key deleted: got %v\nwant exit %d, once %q naming member y", res, ExitLost, want)
	}
	if n, err := rdb.Exists(context.Background(), "reservation-x").Result(); err != nil || n != 0 {
		t.Errorf("x's key exists (%d, %v) after the set was lost: want it given back", n, err)
	}
	// And another may take both at once.
	r, err := libClient(t, srv, "next", time.Minute).TryLock(context.Background(), "x", reservation.With("y"))
	if err != nil {
		t.Fatalf("TryLock(x, With(y)) after the loss: %v", err)
	}
	_ = r.Release(context.Background())
}
