package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// quorumFlags returns --quorum and a --redis for each of servers.
func quorumFlags(servers []*redistest.Server) []string {
	args := []string{"--quorum"}
	for _, s := range servers {
		args = append(args, "--redis", s.URL())
	}
	return args
}

// quorumCmd returns a function that runs reserve in process on the quorum
// of servers: the quorum flags go after the command's name, before any --.
func quorumCmd(t *testing.T, servers []*redistest.Server) func(args ...string) result {
	return func(args ...string) result {
		t.Helper()
		return inProcess(t, nil, append(append(args[:1:1], quorumFlags(servers)...), args[1:]...)...)
	}
}

// quorumClient returns a library Client on the quorum of servers, closed
// at the end of the test.
func quorumClient(t *testing.T, servers []*redistest.Server, by string) *reservation.Client {
	t.Helper()
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.URL()
	}
	c, err := reservation.NewQuorum(urls, &reservation.Options{By: by, TTL: 20 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("reservation.NewQuorum: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// startQuorum starts n servers with their restart guards primed, as a
// quorum's long-lived servers have them.
func startQuorum(t *testing.T, n int) []*redistest.Server {
	t.Helper()
	servers := redistest.StartMasters(t, n)
	if _, err := quorumClient(t, servers, "primer").PrimeRestartGuard(context.Background()); err != nil {
		t.Fatalf("PrimeRestartGuard: %v", err)
	}
	return servers
}

// statusOf decodes the output of status --json.
func statusOf(t *testing.T, res result) infoJSON {
	t.Helper()
	var in infoJSON
	if err := json.Unmarshal([]byte(res.stdout), &in); err != nil || res.code != 0 {
		t.Fatalf("status --json: %v\n%v", err, res)
	}
	return in
}

// serverLine returns the line of out that starts, after its indentation,
// with addr, with its runs of spaces (a table's padding) made single, or
// "".
func serverLine(out, addr string) string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == addr {
			return strings.Join(f, " ")
		}
	}
	return ""
}

// listRows returns the rows of the table that list printed, by resource:
// the resource's row, then its servers', with runs of spaces made single.
func listRows(out string) map[string][]string {
	rows := make(map[string][]string)
	var resource string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case !strings.HasPrefix(line, " "):
			resource = f[0]
			rows[resource] = append(rows[resource], strings.Join(f, " "))
		default:
			rows[resource] = append(rows[resource], strings.Join(f, " "))
		}
	}
	return rows
}

// TestQuorumUsageErrors gives reserve several servers in the forms it
// refuses: each exits 64 with a message that says what to give, before
// touching Redis (the addresses do not answer, which would be 69).
func TestQuorumUsageErrors(t *testing.T) {
	t.Parallel()
	a, b, c, d := unusedAddr(t), unusedAddr(t), unusedAddr(t), unusedAddr(t)
	const pw = "Qu0rum-Secret_7"
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		msg  string
	}{
		{"two --redis without --quorum", nil, []string{"status", "--redis", a, "--redis", b, "job"},
			"--redis is given 2 times: for a quorum over these servers, add --quorum"},
		{"three --redis without --quorum, run", nil, []string{"run", "--redis", a, "--redis", b, "--redis", c, "job", "--", "true"},
			"--redis is given 3 times: for a quorum over these servers, add --quorum"},
		{"several in $REDIS_URL without quorum", map[string]string{envRedisURL: a + " " + b + " " + c}, []string{"list"},
			"$REDIS_URL holds 3 addresses: for a quorum over these servers, add --quorum (or set $RESERVE_QUORUM=true)"},
		{"--quorum=false", nil, []string{"wait", "--quorum=false", "--redis", a, "--redis", b, "--redis", c, "job"},
			"--redis is given 3 times"},
		{"--quorum alone", nil, []string{"status", "--quorum", "job"}, "--quorum needs the address of each server: give --redis once for each"},
		{"--quorum, one server", nil, []string{"status", "--quorum", "--redis", a, "job"}, "--quorum needs at least 3 servers, got 1"},
		{"--quorum, two servers", nil, []string{"release", "--force", "--quorum", "--redis", a, "--redis", b, "job"},
			"--quorum needs at least 3 servers, got 2"},
		{"--quorum, four servers", nil, []string{"list", "--quorum", "--redis", a, "--redis", b, "--redis", c, "--redis", d},
			"--quorum needs an odd number of servers, got 4: a majority of 4 is 3, so they survive no more failures than 3 servers do; give 3 or 5"},
		{"$RESERVE_QUORUM, two servers", map[string]string{envQuorum: "true", envRedisURL: a + " " + b}, []string{"prime"},
			"$RESERVE_QUORUM needs at least 3 servers, got 2: give them all in $REDIS_URL, separated by spaces"},
		{"bad $RESERVE_QUORUM", map[string]string{envQuorum: "maybe"}, []string{"status", "job"}, `$RESERVE_QUORUM "maybe": want true or false`},
		{"--quorum and --cluster", nil, []string{"status", "--quorum", "--cluster", "--redis", a, "--redis", b, "--redis", c, "job"},
			"--quorum and --cluster exclude each other"},
		{"--quorum and $RESERVE_CLUSTER", map[string]string{envCluster: "1"},
			[]string{"status", "--quorum", "--redis", a, "--redis", b, "--redis", c, "job"},
			"--quorum and $RESERVE_CLUSTER exclude each other"},
		{"a Cluster URL", nil, []string{"status", "--quorum", "--redis", a, "--redis", "redis://" + b + "?addr=" + d, "--redis", c, "job"},
			"--quorum: redis://" + b + "?addr=" + d + " is a Redis Cluster URL (addr=): each server of a quorum is one Redis server"},
		{"a Sentinel URL", nil, []string{"status", "--quorum", "--redis", a, "--redis", c, "--redis", "redis://:" + pw + "@" + b + "?master_name=m", "job"},
			"--quorum: redis://:xxxxx@" + b + "?master_name=m is a Sentinel URL (master_name): each server of a quorum is one Redis server"},
		{"a server twice", nil, []string{"status", "--quorum", "--redis", a, "--redis", b, "--redis", "redis://" + a + "/1", "job"},
			"--quorum: the server at " + a + " is given twice: the servers of a quorum must be independent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := inProcess(t, tc.env, tc.args...)
			if res.code != ExitUsage {
				t.Errorf("got %v\nwant exit %d", res, ExitUsage)
			}
			first, _, _ := strings.Cut(res.stderr, "\n")
			if !strings.HasPrefix(first, "reserve: ") || !strings.Contains(first, tc.msg) {
				t.Errorf("first line of stderr = %q, want reserve: ...%s...", first, tc.msg)
			}
			if !strings.Contains(res.stderr, "Usage: reserve") {
				t.Errorf("stderr has no usage line:\n%s", res.stderr)
			}
			if res.stdout != "" || strings.Contains(res.stderr, pw) {
				t.Errorf("stdout = %q (want nothing), stderr = %q (without the password)", res.stdout, res.stderr)
			}
		})
	}
}

// TestQuorum runs every command on a quorum of three servers: with all of
// them up (per-server views in status and list, a foreign holder on one
// server), with one down (everything works; list says it is incomplete),
// and with two down (every command fails at once, naming them, and a
// holder loses its reservation).
func TestQuorum(t *testing.T) {
	t.Parallel()
	servers := startQuorum(t, 3)
	cmd := quorumCmd(t, servers)
	holder := quorumClient(t, servers, "holder")
	ctx := context.Background()

	t.Run("run", func(t *testing.T) {
		res := cmd("run", "--no-wait", "q-run", "--", "sh", "-c", `echo "$RESERVE_TOKEN"`)
		if res.code != 0 || strings.TrimSpace(res.stdout) == "" || res.stderr != "" {
			t.Fatalf("run: got %v\nwant exit 0, the token, nothing on stderr", res)
		}
		r := hold(t, holder, "q-busy")
		res = cmd("run", "--no-wait", "q-busy", "--", "echo", "ran")
		if want := `"q-busy" is held by ` + r.Holder(); res.code != ExitNotAcquired || strings.Contains(res.stdout, "ran") ||
			!strings.Contains(res.stderr, want) {
			t.Errorf("run --no-wait on a held resource: got %v\nwant exit %d and %q", res, ExitNotAcquired, want)
		}
		// The environment form: the addresses in $REDIS_URL.
		urls := make([]string, len(servers))
		for i, s := range servers {
			urls[i] = s.URL()
		}
		res = inProcess(t, map[string]string{envRedisURL: strings.Join(urls, " "), envQuorum: "true"}, "run", "--no-wait", "q-env", "--", "echo", "ran")
		if res.code != 0 || strings.TrimSpace(res.stdout) != "ran" {
			t.Errorf("run with $%s and $%s: got %v\nwant exit 0", envRedisURL, envQuorum, res)
		}
	})

	// A holding on every server, and a key of a foreign holder on one
	// server only, which no majority holds.
	r := hold(t, holder, "q-held")
	// Shown as 1m0s (rounded) for the half second the subtests take to
	// reach list.
	if err := servers[2].Client(t).Set(ctx, reservation.DefaultPrefix+"q-minority", "intruder", time.Minute+490*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}

	t.Run("status", func(t *testing.T) {
		res := cmd("status", "q-held")
		if res.code != 0 || !strings.Contains(res.stdout, "q-held is held by "+r.Holder()) ||
			!strings.Contains(res.stdout, "on each of the 3 servers (a majority is 2):") {
			t.Fatalf("status: got %v\nwant exit 0, held by %s, then each server", res, r.Holder())
		}
		for _, s := range servers {
			if line := serverLine(res.stdout, s.Addr); !strings.Contains(line, "held by "+r.Holder()) || !strings.Contains(line, "token ") {
				t.Errorf("status: the line of %s is %q, want it held by %s, with its token:\n%s", s.Addr, line, r.Holder(), res.stdout)
			}
		}
		in := statusOf(t, cmd("status", "--json", "q-held"))
		if !in.Held || in.Holder != r.Holder() || len(in.Servers) != len(servers) {
			t.Fatalf("status --json = %+v, want held by %s, with %d servers", in, r.Holder(), len(servers))
		}
		for i, s := range in.Servers {
			if s.Addr != servers[i].Addr || !s.Held || s.Holder != r.Holder() || s.Token <= 0 || s.TTLMillis <= 0 || s.Error != "" {
				t.Errorf("status --json: server %d = %+v, want %s, held by %s, with a token and a TTL", i, s, servers[i].Addr, r.Holder())
			}
		}

		// Shell completion names the held resources, on the quorum and
		// on one of its servers alone.
		for _, args := range [][]string{
			append(append([]string{"__complete", "status"}, quorumFlags(servers)...), "q-he"),
			{"__complete", "release", "--redis", servers[0].URL(), "q-he"},
		} {
			if res := inProcess(t, nil, args...); res.code != 0 || !strings.HasPrefix(res.stdout, "q-held\theld by "+r.Holder()) {
				t.Errorf("reserve %s: got %v\nwant q-held, held by %s", strings.Join(args, " "), res, r.Holder())
			}
		}

		res = cmd("status", "q-minority")
		if res.code != 0 || !strings.Contains(res.stdout, "q-minority is free") ||
			!strings.Contains(serverLine(res.stdout, servers[2].Addr), "held by intruder") ||
			!strings.Contains(serverLine(res.stdout, servers[0].Addr), "free") {
			t.Errorf("status of a resource held on one server: got %v\nwant free, and held by intruder on %s", res, servers[2].Addr)
		}
	})

	t.Run("list", func(t *testing.T) {
		res := cmd("list", "--match", "q-*")
		if res.code != 0 {
			t.Fatalf("list: %v", res)
		}
		// Each resource's row, then one for each server.
		rows := listRows(res.stdout)
		if row := rows["q-held"]; len(row) != 1+len(servers) || !strings.HasPrefix(row[0], "q-held "+r.Holder()+" ") {
			t.Fatalf("list: the rows of q-held are %q, want it held by %s, then each server:\n%s", row, r.Holder(), res.stdout)
		}
		for i, s := range servers {
			if row := rows["q-held"][1+i]; !strings.HasPrefix(row, s.Addr+" "+r.Holder()+" ") {
				t.Errorf("list: row %d of q-held is %q, want %s held by %s", 1+i, row, s.Addr, r.Holder())
			}
		}
		want := []string{"q-minority (no majority) - - -", servers[0].Addr + " free - -", servers[1].Addr + " free - -",
			servers[2].Addr + " intruder 1m0s -"}
		if row := rows["q-minority"]; !slices.Equal(row, want) {
			t.Errorf("list: the rows of q-minority are %q, want %q:\n%s", row, want, res.stdout)
		}
		res = cmd("list", "--json", "--match", "q-*")
		for _, in := range listJSON(t, res) {
			if len(in.Servers) != len(servers) {
				t.Errorf("list --json: %s has %d servers, want %d", in.Resource, len(in.Servers), len(servers))
				continue
			}
			if in.Resource == "q-minority" && (in.Held || !in.Servers[2].Held || in.Servers[2].Holder != "intruder" || in.Servers[0].Held) {
				t.Errorf("list --json: q-minority = %+v, want held by intruder on the third server only", in)
			}
		}
	})

	t.Run("wait and release", func(t *testing.T) {
		res := cmd("wait", "--timeout", "100ms", "q-held")
		if res.code != ExitNotAcquired || !strings.Contains(res.stderr, `"q-held" is held by `+r.Holder()) {
			t.Errorf("wait --timeout on a held resource: got %v\nwant exit %d", res, ExitNotAcquired)
		}
		r2 := hold(t, holder, "q-broken")
		res = cmd("release", "--force", "q-broken")
		if want := "released q-broken (it was held by " + r2.Holder() + ")"; res.code != 0 || !strings.Contains(res.stdout, want) {
			t.Errorf("release --force: got %v\nwant exit 0 and %q", res, want)
		}
		for _, s := range servers {
			if n, err := s.Client(t).Exists(ctx, reservation.DefaultPrefix+"q-broken").Result(); err != nil || n != 0 {
				t.Errorf("the key of q-broken on %s after release --force: %d, %v; want gone", s.Addr, n, err)
			}
		}
		select {
		case <-r2.Done():
		case <-time.After(5 * time.Second):
			t.Errorf("the holder of q-broken did not lose it after release --force")
		}
		res = cmd("wait", "--timeout", "10s", "q-broken")
		if res.code != 0 {
			t.Errorf("wait on a released resource: %v", res)
		}
	})

	// One server down: a minority, so everything still works, and says
	// which server failed.
	servers[2].Kill()
	down := servers[2].Addr + " does not answer (connection refused)"

	t.Run("one server down", func(t *testing.T) {
		res := cmd("run", "--no-wait", "q-minus-one", "--", "echo", "ran")
		if res.code != 0 || strings.TrimSpace(res.stdout) != "ran" {
			t.Fatalf("run with one server down: got %v\nwant exit 0", res)
		}
		if want := "reserve: " + servers[2].Addr + ", one of the 3 servers of the quorum, does not answer (connection refused)"; !strings.Contains(res.stderr, want) {
			t.Errorf("run with one server down: stderr = %q, want %q", res.stderr, want)
		}
		res = cmd("status", "q-held")
		if res.code != 0 || !strings.Contains(res.stdout, "q-held is held by "+r.Holder()) ||
			serverLine(res.stdout, servers[2].Addr) != down {
			t.Errorf("status with one server down: got %v\nwant exit 0, held, and %q", res, down)
		}
		in := statusOf(t, cmd("status", "--json", "q-held"))
		if len(in.Servers) != len(servers) {
			t.Fatalf("status --json with one server down = %+v, want %d servers", in, len(servers))
		}
		if s := in.Servers[2]; !in.Held || s.Addr != servers[2].Addr || s.Error != "does not answer (connection refused)" || s.Held {
			t.Errorf("status --json with one server down = %+v, want held, and the error of %s", in, servers[2].Addr)
		}
		wantErr := fmt.Sprintf("the list is incomplete: 1 server of the quorum of 3 Redis servers (%s, %s, %s) could not be read: %s",
			servers[0].Addr, servers[1].Addr, servers[2].Addr, down)
		res = cmd("list", "--match", "q-held")
		if res.code != ExitUnavailable || !strings.Contains(res.stderr, wantErr) || !strings.Contains(res.stdout, r.Holder()) ||
			serverLine(res.stdout, servers[2].Addr) != down {
			t.Errorf("list with one server down: got %v\nwant exit %d, q-held, and %q", res, ExitUnavailable, wantErr)
		}
		select {
		case <-r.Done():
			t.Errorf("the holding of q-held ended with one server down: %v", r.Err())
		default:
		}
	})

	t.Run("majority down", func(t *testing.T) {
		// A reserve run holds a resource, then a second server goes.
		p := startReserve(t, nil, nil, append(append([]string{"run", "--ttl", "1s"}, quorumFlags(servers)...),
			"q-doomed", "--", "sh", "-c", "echo started; exec sleep 60")...)
		waitFor(t, 10*time.Second, "the command to start", func() bool { return strings.Contains(p.stdout.String(), "started") })
		servers[1].Kill()
		want := fmt.Sprintf("reserve: cannot use the quorum of 3 Redis servers (%s, %s, %s): 1 of the 3 servers answered, and 2 (a majority) must: "+
			"%s does not answer (connection refused); %s does not answer (connection refused)",
			servers[0].Addr, servers[1].Addr, servers[2].Addr, servers[1].Addr, servers[2].Addr)
		for _, args := range [][]string{
			{"run", "--no-wait", "q-none", "--", "echo", "ran"},
			{"run", "q-none", "--", "echo", "ran"},
			{"status", "q-held"},
			{"list"},
			{"wait", "q-held"},
			{"release", "--force", "q-held"},
			{"prime"},
		} {
			res := cmd(args...)
			if res.code != ExitUnavailable || strings.Contains(res.stdout, "ran") || strings.TrimSpace(res.stderr) != want {
				t.Errorf("%s with two servers of three down: got %v\nwant exit %d and only %q", args[0], res, ExitUnavailable, want)
			}
			if res.elapsed > 5*time.Second {
				t.Errorf("%s with two servers of three down took %v, want a few seconds at most", args[0], res.elapsed)
			}
		}
		res := p.wait(t, 15*time.Second)
		if res.code != ExitLost || !strings.Contains(res.stderr, `the reservation of "q-doomed" is gone`) {
			t.Errorf("run holding q-doomed when a majority went down: got %v\nwant exit %d, saying it is gone", res, ExitLost)
		}
	})
}

// TestQuorumPrime primes a quorum of new servers: the guard shows unset
// on each, an acquisition is held back, prime lifts it once; it refuses
// servers in use, and servers it cannot all read.
func TestQuorumPrime(t *testing.T) {
	t.Parallel()
	servers := redistest.StartMasters(t, 3)
	cmd := quorumCmd(t, servers)
	in := statusOf(t, cmd("status", "--json", "p-job"))
	if !in.GuardUnset || len(in.Servers) != 3 {
		t.Fatalf("status --json on new servers = %+v, want guard_unset on each", in)
	}
	for _, s := range in.Servers {
		if !s.GuardUnset {
			t.Errorf("status --json on new servers: %s has guard_unset false", s.Addr)
		}
	}
	res := cmd("run", "--no-wait", "p-job", "--", "echo", "ran")
	prime := "reserve prime --quorum --redis " + servers[0].URL() + " --redis " + servers[1].URL() + " --redis " + servers[2].URL()
	if res.code != ExitNotAcquired || strings.Contains(res.stdout, "ran") ||
		!strings.Contains(res.stderr, "if these servers are new, run: "+prime) {
		t.Fatalf("run --no-wait on new servers: got %v\nwant exit %d, and %q", res, ExitNotAcquired, prime)
	}
	res = cmd("prime")
	if want := fmt.Sprintf("primed the restart guard of the quorum of 3 Redis servers (%s, %s, %s) (lifted the guard",
		servers[0].Addr, servers[1].Addr, servers[2].Addr); res.code != 0 || !strings.Contains(res.stdout, want) {
		t.Fatalf("prime: got %v\nwant exit 0 and %q", res, want)
	}
	res = cmd("prime")
	if res.code != ExitFailure || !strings.Contains(res.stderr, "primed already") {
		t.Errorf("prime again: got %v\nwant exit %d, primed already", res, ExitFailure)
	}
	res = cmd("run", "--no-wait", "p-job", "--", "echo", "ran")
	if res.code != 0 || strings.TrimSpace(res.stdout) != "ran" {
		t.Errorf("run after prime: %v", res)
	}
	hold(t, quorumClient(t, servers, "user"), "p-held")
	res = cmd("prime")
	if res.code != ExitFailure || !strings.Contains(res.stderr, `holds a reservation ("p-held")`) {
		t.Errorf("prime while a reservation is held: got %v\nwant exit %d naming it", res, ExitFailure)
	}
	servers[0].Kill()
	res = cmd("prime")
	if want := "not primed: 1 server of the quorum of 3 Redis servers"; res.code != ExitUnavailable || !strings.Contains(res.stderr, want) ||
		!strings.Contains(res.stderr, servers[0].Addr+" does not answer (connection refused)") {
		t.Errorf("prime with a server down: got %v\nwant exit %d, %q, naming %s", res, ExitUnavailable, want, servers[0].Addr)
	}
}

// TestQuorumPasswords gives a quorum of servers with a password the right
// one and wrong ones, in the URLs and in REDIS_PASSWORD: a refusal names
// each server and says what to give, and no password ever shows.
func TestQuorumPasswords(t *testing.T) {
	t.Parallel()
	const (
		right = "Right-Qu0rum_pw"
		wrong = "Wr0ng-Qu0rum_pw"
	)
	servers := redistest.StartMasters(t, 3, redistest.WithPassword(right))
	with := func(pw string) string {
		var urls []string
		for _, s := range servers {
			urls = append(urls, "redis://:"+url.QueryEscape(pw)+"@"+s.Addr)
		}
		return strings.Join(urls, " ")
	}
	bare := strings.Join([]string{servers[0].Addr, servers[1].Addr, servers[2].Addr}, " ")
	quorumOn := envQuorum + "=true"
	checkPasswordsHidden(t, []passwordCase{
		{"right in the URLs", []string{envRedisURL + "=" + with(right), quorumOn}, []string{"status", "job"}, 0},
		{"right in REDIS_PASSWORD", []string{envRedisURL + "=" + bare, envRedisPassword + "=" + right, quorumOn}, []string{"list"}, 0},
		{"wrong in the URLs", []string{envRedisURL + "=" + with(wrong), quorumOn}, []string{"run", "job", "--", "true"}, ExitUnavailable},
		{"wrong in REDIS_PASSWORD", []string{envRedisURL + "=" + with(right), envRedisPassword + "=" + wrong, quorumOn},
			[]string{"status", "--json", "job"}, ExitUnavailable},
	}, right, wrong)

	res := inProcess(t, map[string]string{envRedisURL: with(wrong), envQuorum: "1"}, "status", "job")
	for _, s := range servers {
		if want := s.Addr + " refused the credentials"; res.code != ExitUnavailable || !strings.Contains(res.stderr, want) {
			t.Errorf("status with wrong passwords: got %v\nwant exit %d and %q", res, ExitUnavailable, want)
		}
	}
	res = inProcess(t, map[string]string{envRedisURL: bare, envQuorum: "1"}, "status", "job")
	if want := servers[0].Addr + " wants a password (in its URL or $REDIS_PASSWORD)"; res.code != ExitUnavailable || !strings.Contains(res.stderr, want) {
		t.Errorf("status without passwords: got %v\nwant exit %d and %q", res, ExitUnavailable, want)
	}
}
