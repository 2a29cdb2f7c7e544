package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redisserver"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// primeURL primes the restart guard of the deployment of addr (every slot
// of a Cluster), as one does on a brand-new one.
func primeURL(t *testing.T, addr string) {
	t.Helper()
	c, err := reservation.New(addr, &reservation.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("reservation.New: %v", err)
	}
	defer c.Close()
	if _, err := c.PrimeRestartGuard(context.Background()); err != nil {
		t.Fatalf("PrimeRestartGuard: %v", err)
	}
}

// urlClient returns a library Client on the deployment of addr, closed at
// the end of the test.
func urlClient(t *testing.T, addr, by string) *reservation.Client {
	t.Helper()
	c, err := reservation.New(addr, &reservation.Options{By: by, TTL: 20 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("reservation.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// masterOf answers the address of the master that holds key.
func masterOf(t *testing.T, rdb *redis.ClusterClient, key string) string {
	t.Helper()
	node, err := rdb.MasterForKey(context.Background(), key)
	if err != nil {
		t.Fatalf("MasterForKey(%q): %v", key, err)
	}
	return node.Options().Addr
}

// spread answers resource names with prefix, at least one on each master
// of the cluster, by master.
func spread(t *testing.T, rdb *redis.ClusterClient, prefix string, masters int) map[string][]string {
	t.Helper()
	on := make(map[string][]string)
	for i := 0; len(on) < masters || i < masters; i++ {
		if i > 100 {
			t.Fatalf("no names with prefix %q on %d masters: %v", prefix, masters, on)
		}
		name := prefix + strconv.Itoa(i)
		addr := masterOf(t, rdb, reservation.DefaultPrefix+name)
		on[addr] = append(on[addr], name)
	}
	return on
}

// listJSON decodes the output of list --json.
func listJSON(t *testing.T, res result) []infoJSON {
	t.Helper()
	var infos []infoJSON
	if err := json.Unmarshal([]byte(res.stdout), &infos); err != nil {
		t.Fatalf("list --json: %v\n%v", err, res)
	}
	return infos
}

// resources answers the resource names of infos.
func resources(infos []infoJSON) []string {
	var names []string
	for _, in := range infos {
		names = append(names, in.Resource)
	}
	return names
}

// TestCluster runs reserve on a Cluster of three masters, named in each of
// the ways reserve takes, with resources on every master and names that
// are hash tags; then with a master killed.
func TestCluster(t *testing.T) {
	t.Parallel()
	// Partial coverage allowed: once a master is killed, the others go on
	// answering for their slots, as a deployment that prefers a partial
	// answer to none does.
	cl := redistest.StartCluster(t, redisserver.ClusterOptions{AllowPartialCoverage: true})
	node := cl.Addrs()[0]
	co, err := redis.ParseClusterURL(cl.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClusterClient(co)
	defer rdb.Close()
	ctx := context.Background()
	// Subtests that acquire need the guard primed, which the first one
	// does with reserve (and the others again, so that each may run on
	// its own).
	primed := func(t *testing.T) {
		t.Helper()
		primeURL(t, cl.URL())
	}

	t.Run("prime", func(t *testing.T) {
		// A new Cluster: every slot's restart guard is unset.
		env := map[string]string{envRedisURL: node}
		res := inProcess(t, env, "status", "--json", "fresh")
		var in infoJSON
		if err := json.Unmarshal([]byte(res.stdout), &in); err != nil || res.code != 0 || !in.GuardUnset {
			t.Fatalf("status --json on a new Cluster: %v, %v; want guard_unset", err, res)
		}
		res = inProcess(t, env, "prime")
		if want := "primed the restart guard of the Redis Cluster at " + node; res.code != 0 || !strings.Contains(res.stdout, want) {
			t.Fatalf("prime: got %v\nwant exit 0 and %q", res, want)
		}
		res = inProcess(t, env, "prime")
		if res.code != ExitFailure || !strings.Contains(res.stderr, "primed already") {
			t.Errorf("prime again: got %v\nwant exit %d, primed already", res, ExitFailure)
		}
	})

	// Each way of naming the Cluster: by one node's address (reserve
	// asks it what it is), with more nodes in ?addr=, with --cluster or
	// its variable (reserve does not ask).
	for i, form := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"node address, detected", map[string]string{envRedisURL: node}, nil},
		{"node URL, detected", map[string]string{envRedisURL: "redis://" + node}, nil},
		{"addr URL", map[string]string{envRedisURL: cl.URL()}, nil},
		{"--cluster", map[string]string{envRedisURL: node}, []string{"--cluster"}},
		{"--redis and --cluster", nil, []string{"--redis", node, "--cluster"}},
		{envCluster, map[string]string{envRedisURL: node, envCluster: "true"}, nil},
	} {
		t.Run(form.name, func(t *testing.T) {
			primed(t)
			cmd := func(args ...string) result {
				t.Helper()
				return inProcess(t, form.env, append(append(args[:1:1], form.args...), args[1:]...)...)
			}
			job := fmt.Sprintf("form%d-job", i)
			res := cmd("run", "--no-wait", job, "--", "sh", "-c", `echo "$RESERVE_KEY $RESERVE_TOKEN"`)
			key, token, _ := strings.Cut(strings.TrimSpace(res.stdout), " ")
			if res.code != 0 || key != reservation.DefaultPrefix+job || token == "" || res.stderr != "" {
				t.Fatalf("run: got %v\nwant exit 0 and the key and token", res)
			}
			res = cmd("status", "--json", job)
			var in infoJSON
			if err := json.Unmarshal([]byte(res.stdout), &in); err != nil || res.code != 0 || in.Held || strconv.FormatInt(in.Token, 10) != token {
				t.Fatalf("status --json after run: %v, %v; want free, token %s", err, res, token)
			}
			// Holdings on every master: list reads them all.
			holder := urlClient(t, cl.URL(), "lister")
			var want []string
			for _, names := range spread(t, rdb, fmt.Sprintf("form%d-held-", i), len(cl.Addrs())) {
				for _, name := range names {
					hold(t, holder, name)
					want = append(want, name)
				}
			}
			slices.Sort(want)
			res = cmd("list", "--json", "--match", fmt.Sprintf("form%d-held-*", i))
			if got := resources(listJSON(t, res)); res.code != 0 || !slices.Equal(got, want) {
				t.Errorf("list --json: got %v (exit %d, %s), want %v", got, res.code, res.stderr, want)
			}
			res = cmd("status", want[0])
			if res.code != 0 || !strings.Contains(res.stdout, want[0]+" is held by lister-") {
				t.Errorf("status of a held resource: %v", res)
			}
		})
	}

	t.Run("hash tags in names", func(t *testing.T) {
		// A name with braces makes a key with a hash tag (or half of
		// one): the reservation's other keys must land in its slot.
		primed(t)
		names := []string{"{", "}", "{}", "}{", "{a}b", "a{b}c", "{a}{b}", "{{a}}"}
		env := map[string]string{envRedisURL: node}
		for _, name := range names {
			res := inProcess(t, env, "run", "--no-wait", name, "--", "sh", "-c", `echo "$RESERVE_TOKEN"`)
			if res.code != 0 || strings.TrimSpace(res.stdout) == "" {
				t.Errorf("run %q: %v", name, res)
			}
		}
		c := urlClient(t, cl.URL(), "braces")
		for _, name := range names {
			r := hold(t, c, name)
			if v, err := rdb.Get(ctx, reservation.DefaultPrefix+name).Result(); err != nil || v != r.Holder() {
				t.Errorf("key of %q holds %q (%v), want %q", name, v, err, r.Holder())
			}
			res := inProcess(t, env, "status", "--json", name)
			var in infoJSON
			if err := json.Unmarshal([]byte(res.stdout), &in); err != nil || res.code != 0 || !in.Held ||
				in.Holder != r.Holder() || in.Token != r.Token() {
				t.Errorf("status --json %q = %+v (%v, %v), want held by %s with token %d", name, in, err, res, r.Holder(), r.Token())
			}
		}
		res := inProcess(t, env, "list", "--json")
		got := resources(listJSON(t, res))
		for _, name := range names {
			if !slices.Contains(got, name) {
				t.Errorf("list --json has no %q: %v", name, got)
			}
		}
	})

	t.Run("several resources", func(t *testing.T) {
		// One hash tag: held together. Two slots: exit 64, saying how.
		primed(t)
		env := map[string]string{envRedisURL: node}
		res := inProcess(t, env, "run", "--no-wait", "{batch}-a", "{batch}-b", "--", "sh", "-c", `echo "$RESERVE_COUNT $RESERVE_KEY_2"`)
		if res.code != 0 || res.stdout != "2 reservation-{batch}-b\n" {
			t.Errorf("run {batch}-a {batch}-b: got %v\nwant exit 0 and the second key", res)
		}
		res = inProcess(t, env, "run", "--no-wait", "slot-a", "slot-b", "--", "true")
		want := "a set's keys must be in one hash slot, and reservation-slot-a and reservation-slot-b are not: give the names one hash tag"
		if res.code != ExitUsage || !strings.Contains(res.stderr, want) || strings.Contains(res.stderr, "Usage:") {
			t.Errorf("run slot-a slot-b: got %v\nwant exit %d and %q", res, ExitUsage, want)
		}
	})

	t.Run("wait replicas", func(t *testing.T) {
		primed(t)
		// The masters have no replica: no acquisition is confirmed.
		res := inProcess(t, map[string]string{envRedisURL: node},
			"run", "--wait-replicas", "1", "--wait-timeout", "50ms", "replicated-job", "--", "echo", "ran")
		if res.code != ExitUnavailable || strings.Contains(res.stdout, "ran") ||
			!strings.Contains(res.stderr, `"replicated-job" was not acquired on the Redis Cluster at `+node+": fewer than 1 replica") ||
			!strings.Contains(res.stderr, "it was given back") {
			t.Errorf("run --wait-replicas 1 on masters without replicas: got %v\nwant exit %d, the command not run, saying why", res, ExitUnavailable)
		}
		if n, err := rdb.Exists(ctx, reservation.DefaultPrefix+"replicated-job").Result(); err != nil || n != 0 {
			t.Errorf("the key of a refused acquisition exists (%d, %v)", n, err)
		}
	})

	t.Run("user without INFO", func(t *testing.T) {
		primed(t)
		// The Cluster is told from CLUSTER INFO; without that either,
		// reserve cannot tell, and says to give --cluster.
		for _, n := range cl.Servers() {
			nc := redis.NewClient(&redis.Options{Addr: n.Addr})
			for _, acl := range [][]any{
				{"ACL", "SETUSER", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info"},
				{"ACL", "SETUSER", "blind", "on", ">pw", "~*", "&*", "+@all", "-info", "-cluster"},
			} {
				if err := nc.Do(ctx, acl...).Err(); err != nil {
					t.Fatal(err)
				}
			}
			nc.Close()
		}
		res := inProcess(t, map[string]string{envRedisURL: "redis://noinfo:pw@" + node}, "run", "--no-wait", "noinfo-job", "--", "true")
		if res.code != 0 {
			t.Errorf("run as a user without INFO: %v", res)
		}
		res = inProcess(t, map[string]string{envRedisURL: "redis://blind:pw@" + node}, "run", "--no-wait", "blind-job", "--", "true")
		if res.code != ExitUsage || !strings.Contains(res.stderr, "Redis at "+node+" is a Redis Cluster node") ||
			!strings.Contains(res.stderr, "give --cluster") {
			t.Errorf("run as a user without INFO and CLUSTER: got %v\nwant exit %d, saying to give --cluster", res, ExitUsage)
		}
	})

	t.Run("not a Cluster", func(t *testing.T) {
		srv := startTestRedis(t)
		res := inProcess(t, map[string]string{envRedisURL: srv.Addr, envCluster: "1"}, "status", "job")
		if res.code != ExitUsage || !strings.Contains(res.stderr, srv.Addr+" is not a Redis Cluster") {
			t.Errorf("$%s=1 on one server: got %v\nwant exit %d, saying it is not a Cluster", envCluster, res, ExitUsage)
		}
		// --cluster=false: one server, whatever it is.
		res = inProcess(t, map[string]string{envRedisURL: node}, "run", "--no-wait", "--cluster=false", "job", "--", "true")
		if res.code != ExitUsage || !strings.Contains(res.stderr, "is a Redis Cluster node") {
			t.Errorf("--cluster=false on a Cluster node: got %v\nwant exit %d", res, ExitUsage)
		}
		res = inProcess(t, map[string]string{envRedisURL: "redis://" + unusedAddr(t) + "?master_name=m"}, "status", "--cluster", "job")
		if res.code != ExitUsage || !strings.Contains(res.stderr, "give one of them") {
			t.Errorf("--cluster with a Sentinel URL: got %v\nwant exit %d", res, ExitUsage)
		}
	})

	t.Run("not a quorum server", func(t *testing.T) {
		// Asked what it is, the node says it is a Cluster's: refused,
		// before any command on a key. The other two servers do not
		// answer, which is the first contact's to report.
		res := inProcess(t, nil, "status", "--quorum", "--redis", unusedAddr(t), "--redis", "redis://"+node, "--redis", unusedAddr(t), "job")
		if want := node + " is a Redis Cluster node: each server of a quorum must be a Redis server of its own"; res.code != ExitUsage ||
			!strings.Contains(res.stderr, want) {
			t.Errorf("--quorum with a Cluster node: got %v\nwant exit %d and %q", res, ExitUsage, want)
		}
	})

	// Last: it kills a master.
	t.Run("master down", func(t *testing.T) {
		primed(t)
		c := urlClient(t, cl.URL(), "survivor")
		on := spread(t, rdb, "down-", len(cl.Addrs()))
		victim := cl.Addrs()[1] // not the URL's first node
		var alive, dead []string
		for addr, names := range on {
			for _, name := range names {
				hold(t, c, name)
				if addr == victim {
					dead = append(dead, name)
				} else {
					alive = append(alive, name)
				}
			}
		}
		slices.Sort(alive)
		cl.Server(victim).Kill()
		env := map[string]string{envRedisURL: cl.URL()}

		res := inProcess(t, env, "status", dead[0])
		if want := fmt.Sprintf("cannot use the Redis Cluster at %s: the master of %q, %s, does not answer (connection refused)",
			strings.Join(cl.Addrs(), ", "), dead[0], victim); res.code != ExitUnavailable || !strings.Contains(res.stderr, want) {
			t.Errorf("status of a resource on the killed master: got %v\nwant exit %d and %q", res, ExitUnavailable, want)
		}
		res = inProcess(t, env, "status", alive[0])
		if res.code != 0 || !strings.Contains(res.stdout, alive[0]+" is held by survivor-") {
			t.Errorf("status of a resource on a live master: %v", res)
		}

		wantErr := fmt.Sprintf("the list is incomplete: 1 master of the Redis Cluster at %s could not be read: %s (connection refused)",
			strings.Join(cl.Addrs(), ", "), victim)
		res = inProcess(t, env, "list", "--match", "down-*")
		if res.code != ExitUnavailable || !strings.Contains(res.stderr, wantErr) {
			t.Errorf("list with a master down: got %v\nwant exit %d and %q", res, ExitUnavailable, wantErr)
		}
		for _, name := range alive {
			if !strings.Contains(res.stdout, name) {
				t.Errorf("list with a master down does not show %q, on a live master:\n%s", name, res.stdout)
			}
		}
		for _, name := range dead {
			if strings.Contains(res.stdout, name) {
				t.Errorf("list with a master down shows %q, on the dead master:\n%s", name, res.stdout)
			}
		}
		res = inProcess(t, env, "list", "--json", "--match", "down-*")
		if got := resources(listJSON(t, res)); res.code != ExitUnavailable || !slices.Equal(got, alive) || !strings.Contains(res.stderr, wantErr) {
			t.Errorf("list --json with a master down: got %v (%v)\nwant exit %d, %v and %q", got, res, ExitUnavailable, alive, wantErr)
		}
	})
}

// TestSentinel runs reserve through a Sentinel URL: the master's password
// in the URL or in REDIS_PASSWORD, replicas waited for, and what it says
// when the URL is wrong, no Sentinel answers, or the master is down.
func TestSentinel(t *testing.T) {
	t.Parallel()
	const pw = "master-pw"
	// No failover within the test: the master stays down once killed.
	s := redistest.StartSentinel(t, redisserver.SentinelOptions{Options: redisserver.Options{Password: pw},
		Sentinels: 1, DownAfter: time.Minute})
	primeURL(t, s.URL())
	sentinel := s.Sentinels[0].Addr
	noPw := "redis://" + sentinel + "?master_name=" + s.MasterName
	where := fmt.Sprintf("the Sentinel master %q (Sentinels at %s)", s.MasterName, sentinel)

	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"run, password in the URL", map[string]string{envRedisURL: s.URL()},
			[]string{"run", "--no-wait", "s-job", "--", "echo", "ran"}, 0, "ran", ""},
		{"status, password in the environment", map[string]string{envRedisURL: noPw, envRedisPassword: pw},
			[]string{"status", "s-job"}, 0, "s-job is free", ""},
		{"wait for the replica", map[string]string{envRedisURL: s.URL()},
			[]string{"run", "--no-wait", "--wait-replicas", "1", "s-job", "--", "echo", "ran"}, 0, "ran", ""},
		{"wait for more replicas than there are", map[string]string{envRedisURL: s.URL(), envWaitReplicas: "2", envWaitTimeout: "50ms"},
			[]string{"run", "--no-wait", "s-job", "--", "echo", "ran"}, ExitUnavailable, "",
			`"s-job" was not acquired on ` + where + ": fewer than 2 replicas (--wait-replicas) confirmed it within 50ms"},
		{"no master password", map[string]string{envRedisURL: noPw},
			[]string{"status", "s-job"}, ExitUnavailable, "", "wants a password: give the master's in $" + envRedisPassword},
		{"plain Sentinel address", map[string]string{envRedisURL: sentinel},
			[]string{"status", "s-job"}, ExitUsage, "",
			sentinel + ` is a Redis Sentinel, not a Redis server: give the name of its master (it watches "` + s.MasterName + `")`},
		{"unknown master", map[string]string{envRedisURL: "redis://" + sentinel + "?master_name=nosuch"},
			[]string{"status", "s-job"}, ExitUnavailable, "",
			`the Sentinels at ` + sentinel + ` know no master named "nosuch" (they watch "` + s.MasterName + `")`},
		{"no Sentinel answers", map[string]string{envRedisURL: "redis://" + unusedAddr(t) + "?master_name=" + s.MasterName},
			[]string{"status", "s-job"}, ExitUnavailable, "", "no Sentinel answers: 127.0.0.1:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := inProcess(t, tc.env, tc.args...)
			if res.code != tc.code || !strings.Contains(res.stdout, tc.stdout) || !strings.Contains(res.stderr, tc.stderr) {
				t.Errorf("got %v\nwant exit %d, %q on stdout and %q on stderr", res, tc.code, tc.stdout, tc.stderr)
			}
			if tc.stderr == "" && res.stderr != "" {
				t.Errorf("stderr = %q, want nothing", res.stderr)
			}
			if tc.code == ExitUnavailable && res.elapsed > 5*time.Second {
				t.Errorf("it took %v to fail, want a few seconds at most", res.elapsed)
			}
		})
	}

	t.Run("not a quorum server", func(t *testing.T) {
		res := inProcess(t, map[string]string{envRedisURL: sentinel + " " + s.Master.Addr + " " + unusedAddr(t), envQuorum: "1"}, "status", "s-job")
		if want := sentinel + " is a Redis Sentinel, not a Redis server: each server of a quorum must be a Redis server of its own"; res.code != ExitUsage ||
			!strings.Contains(res.stderr, want) {
			t.Errorf("a quorum with a Sentinel: got %v\nwant exit %d and %q", res, ExitUsage, want)
		}
	})

	t.Run("master down", func(t *testing.T) {
		s.Master.Kill()
		res := inProcess(t, map[string]string{envRedisURL: s.URL()}, "status", "s-job")
		want := fmt.Sprintf("cannot use %s: the master that the Sentinels name, %s, does not answer (connection refused)", where, s.Master.Addr)
		if res.code != ExitUnavailable || !strings.Contains(res.stderr, want) {
			t.Errorf("status with the master down: got %v\nwant exit %d and %q", res, ExitUnavailable, want)
		}
	})
}

// passwordCase is a run of reserve that is given passwords, right or
// wrong: none may show in its output.
type passwordCase struct {
	name string
	env  []string
	args []string
	want int
}

// checkPasswordsHidden runs each case with the built binary, checks its
// exit code, and that none of secrets shows in its output; a refusal must
// name the address.
func checkPasswordsHidden(t *testing.T, cases []passwordCase, secrets ...string) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := runReserve(t, nil, tc.env, tc.args...)
			if res.code != tc.want {
				t.Errorf("got %v\nwant exit %d", res, tc.want)
			}
			for _, pw := range secrets {
				if strings.Contains(res.stdout+res.stderr, pw) || strings.Contains(res.stdout+res.stderr, url.QueryEscape(pw)) {
					t.Errorf("the password %q shows in the output:\n%v", pw, res)
				}
			}
			if tc.want == ExitUnavailable && !strings.Contains(res.stderr, "127.0.0.1:") {
				t.Errorf("stderr does not name the address: %q", res.stderr)
			}
		})
	}
}
