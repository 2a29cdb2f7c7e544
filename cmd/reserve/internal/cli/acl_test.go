package cli

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis-reservation/reservation"
)

// TestACLCommand checks that reserve acl prints the library's rules, for
// each deployment and prefix, and refuses contradictory flags.
func TestACLCommand(t *testing.T) {
	t.Parallel()
	with := func(rule reservation.ACLRule, words ...string) reservation.ACLRule {
		return append(slices.Clone(rule), words...)
	}
	for _, tc := range []struct {
		args []string
		want reservation.ACLRule
	}{
		{nil, with(reservation.ACLRules("", reservation.OneServer).Worker, "+psubscribe")},
		{[]string{"--read-only"}, with(reservation.ACLRules("", reservation.OneServer).ReadOnly,
			"&{reservation-*}:released", "&{*}:released:reservation-*", "+psubscribe")},
		{[]string{"--cluster", "--prefix", "jobs:"}, reservation.ACLRules("jobs:", reservation.ClusterNodes).Worker},
		{[]string{"--quorum"}, with(reservation.ACLRules("", reservation.QuorumServers).Worker, "+psubscribe")},
	} {
		res := inProcess(t, nil, append([]string{"acl"}, tc.args...)...)
		if res.code != 0 || res.stdout != tc.want.String()+"\n" || res.stderr != "" {
			t.Errorf("reserve acl %s: got %v\nwant exit 0 and %q", strings.Join(tc.args, " "), res, tc.want)
		}
	}
	for _, args := range [][]string{{"--cluster", "--quorum"}, {"--prefix", ""}, {"extra"}} {
		if res := inProcess(t, nil, append([]string{"acl"}, args...)...); res.code != ExitUsage {
			t.Errorf("reserve acl %s: got %v\nwant exit %d", strings.Join(args, " "), res, ExitUsage)
		}
	}
}

// TestACLUsers gives Redis users the rules that reserve acl prints, and
// one without the scripts, and uses reserve as each: the worker does
// everything with nothing to say; the read-only user looks, and its run is
// refused at once with a sentence that names the command; so is the run
// of the user without EVALSHA.
func TestACLUsers(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	primeURL(t, srv.URL())
	ctx := context.Background()
	rdb := srv.Client(t)
	setUser := func(name string, rule ...string) {
		t.Helper()
		args := append([]any{"ACL", "SETUSER", name, "on", ">pw"}, anys(rule)...)
		if err := rdb.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("ACL SETUSER %s: %v", name, err)
		}
	}
	for name, args := range map[string][]string{"worker": {"acl"}, "viewer": {"acl", "--read-only"}} {
		res := inProcess(t, nil, args...)
		if res.code != 0 {
			t.Fatalf("reserve %s: %v", strings.Join(args, " "), res)
		}
		setUser(name, strings.Fields(res.stdout)...)
	}
	setUser("noeval", "~*", "&*", "+@all", "-eval", "-evalsha")
	as := func(user string) []string {
		return []string{envRedisURL + "=redis://" + user + ":pw@" + srv.Addr}
	}
	hold(t, libClient(t, srv, "other", 20*time.Second), "held")

	for _, args := range [][]string{
		{"run", "job", "--", "true"},
		{"run", "--limit", "2", "pool", "--", "true"},
		{"run", "a", "b", "--", "true"},
		{"status", "held"},
		{"list"},
		{"wait", "job"},
		{"release", "--force", "job"},
	} {
		if res := runReserve(t, nil, as("worker"), args...); res.code != 0 || res.stderr != "" {
			t.Errorf("worker: reserve %s: got %v\nwant exit 0 and nothing on stderr", strings.Join(args, " "), res)
		}
	}
	if res := runReserve(t, nil, as("worker"), "run", "--no-wait", "held", "--", "true"); res.code != ExitNotAcquired {
		t.Errorf("worker: reserve run --no-wait on a held resource: got %v\nwant exit %d", res, ExitNotAcquired)
	}
	for _, args := range [][]string{{"status", "held"}, {"list", "--json"}, {"top"}} {
		if res := runReserve(t, nil, as("viewer"), args...); res.code != 0 || res.stderr != "" {
			t.Errorf("viewer: reserve %s: got %v\nwant exit 0 and nothing on stderr", strings.Join(args, " "), res)
		}
	}
	// reserve top hears releases as they happen, of keys with a hash tag
	// too: the rules allow its PSUBSCRIBE patterns.
	for _, user := range []string{"viewer", "worker"} {
		c := libClient(t, srv, "tagger", 20*time.Second)
		plain, tagged := hold(t, c, user+"-plain"), hold(t, c, user+"-{t}")
		p := startReserve(t, nil, as(user), "top", "--follow", "--interval", "200ms", "--match", user+"-*")
		waitFor(t, 10*time.Second, user+"'s top table", func() bool { return strings.Contains(p.stdout.String(), user+"-{t}") })
		for _, r := range []*reservation.Reservation{plain, tagged} {
			if err := r.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
		heard := regexp.MustCompile(`(?m) released\s+` + regexp.QuoteMeta(user) + `-plain\s.*\n(.*\n)*.* released\s+` + regexp.QuoteMeta(user+"-{t}") + `\s`)
		waitFor(t, 5*time.Second, user+"'s top: both releases, as released", func() bool { return heard.MatchString(p.stdout.String()) })
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		if res := p.wait(t, 10*time.Second); strings.Contains(res.stderr, "not heard") {
			t.Errorf("%s: reserve top says releases are not heard: %v", user, res)
		}
	}
	for _, user := range []string{"viewer", "noeval"} {
		res := runReserve(t, nil, as(user), "run", "job", "--", "true")
		want := "cannot use Redis at " + srv.Addr + ": it refuses this user a command that reserve needs: NOPERM this user has no permissions to run the 'evalsha' command (reserve acl prints the ACL rule that reserve needs)"
		if res.code != ExitUnavailable || !strings.Contains(res.stderr, want) || res.elapsed > 5*time.Second {
			t.Errorf("%s: reserve run: got %v\nwant exit %d at once, and %q", user, res, ExitUnavailable, want)
		}
	}
}

// anys returns ss as a slice of any, for Do.
func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
