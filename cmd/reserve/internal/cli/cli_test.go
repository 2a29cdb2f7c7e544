package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redisserver"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// TestUsageErrors runs reserve in process with bad usage: each exits 64
// with a one-line message (and the usage line, unless the message is the
// library's or about the Redis address), before touching Redis: the Redis
// it is given does not answer, which would be exit 69.
// manyResources returns one more resource than reserve run takes at once.
func manyResources() []string {
	var rs []string
	for i := range reservation.MaxSet + 1 {
		rs = append(rs, fmt.Sprint("r", i))
	}
	return rs
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	env := map[string]string{envRedisURL: "redis://" + unusedAddr(t)}
	// The library's own reasons, for options it refuses.
	libReason := func(opt reservation.Options) string {
		_, err := reservation.New("redis://127.0.0.1:6379", &opt)
		if !errors.Is(err, reservation.ErrInvalidOptions) {
			t.Fatalf("reservation.New(%+v) = %v, want ErrInvalidOptions", opt, err)
		}
		return err.Error()
	}
	for _, tc := range []struct {
		args    []string
		msg     string
		noUsage bool // the library's reason, or a bad Redis address or file: no usage line
	}{
		{[]string{"run", "--bogus", "job", "--", "true"}, "unknown flag: --bogus", false},
		{[]string{"run", "job", "true"}, "missing -- before the command", false},
		{[]string{"run", "job"}, "missing -- before the command", false},
		{[]string{"run"}, "missing RESOURCE and COMMAND", false},
		{[]string{"run", "job", "--"}, "missing COMMAND after --", false},
		{[]string{"run", "--", "true"}, "missing RESOURCE before --", false},
		{[]string{"run", "a", "b", "a", "--", "true"}, `"a" is given twice: give each RESOURCE once`, false},
		{[]string{"run", "--limit", "3", "a", "b", "--", "true"},
			"--limit with 2 resources: a semaphore is reserved alone (one RESOURCE with --limit)", false},
		{append(append([]string{"run"}, manyResources()...), "--", "true"), "65 resources: run holds at most 64 at once", false},
		{[]string{"run", "--quorum", "a", "b", "--", "true"},
			"2 resources with a quorum (--quorum): several resources at once need one Redis server", false},
		{[]string{"run", "--ttl", "3x", "job", "--", "true"}, `invalid argument "3x" for "--ttl"`, false},
		{[]string{"run", "--timeout", "soon", "job", "--", "true"}, `invalid argument "soon" for "--timeout"`, false},
		{[]string{"run", "--restart-guard", "never", "job", "--", "true"}, `want a duration like 30s, or "off"`, false},
		{[]string{"run", "--no-wait", "--timeout", "1s", "job", "--", "true"}, "none of the others can be", false},
		{[]string{"run", "--grace", "-1s", "job", "--", "true"}, "--grace -1s is negative", false},
		// An explicit 0 would silently mean the default: refused.
		{[]string{"run", "--ttl", "0", "job", "--", "true"},
			"--ttl 0s: the TTL must be positive; leave the flag out for the default (30s)", false},
		{[]string{"run", "--heartbeat", "0s", "job", "--", "true"},
			"--heartbeat 0s: the renewal interval must be positive; leave the flag out for the default (a third of --ttl)", false},
		{[]string{"run", "--restart-guard", "0", "job", "--", "true"},
			`--restart-guard 0s: the guard period must be positive; leave the flag out for the default (the --ttl), or give "off"`, false},
		{[]string{"demo-worker", "--ttl", "0ms", "job"}, "--ttl 0s: the TTL must be positive", false},
		{[]string{"status", "--restart-guard", "0", "job"}, "--restart-guard 0s: the guard period must be positive", false},
		{[]string{"list", "--restart-guard", "0s"}, "--restart-guard 0s: the guard period must be positive", false},
		{[]string{"prime", "--restart-guard", "0"}, "--restart-guard 0s: the guard period must be positive", false},
		// Out of range: the library's reason.
		{[]string{"run", "--ttl", (reservation.MinTTL - time.Millisecond).String(), "job", "--", "true"},
			libReason(reservation.Options{TTL: reservation.MinTTL - time.Millisecond}), true},
		{[]string{"run", "--ttl", "-1s", "job", "--", "true"}, libReason(reservation.Options{TTL: -time.Second}), true},
		{[]string{"run", "--ttl", "30s", "--heartbeat", "1m", "job", "--", "true"},
			libReason(reservation.Options{TTL: 30 * time.Second, HeartbeatInterval: time.Minute}), true},
		{[]string{"run", "--wait-replicas", "-1", "job", "--", "true"}, libReason(reservation.Options{WaitReplicas: -1}), true},
		{[]string{"run", "--wait-replicas", "1", "--wait-timeout", "1h", "job", "--", "true"},
			libReason(reservation.Options{WaitReplicas: 1, WaitTimeout: time.Hour}), true},
		{[]string{"run", "--wait-replicas", "1", "--wait-timeout", "0", "job", "--", "true"},
			"--wait-timeout 0s: the wait timeout must be positive; leave the flag out for the default (200ms", false},
		{[]string{"run", "--wait-timeout", "1s", "job", "--", "true"}, "--wait-timeout bounds the wait for --wait-replicas, which is 0", false},
		{[]string{"run", "--wait-replicas", "two", "job", "--", "true"}, `invalid argument "two" for "--wait-replicas"`, false},
		{[]string{"status", "--cluster=maybe", "job"}, `invalid argument "maybe" for "--cluster"`, false},
		{[]string{"run", "--redis", "http://127.0.0.1:6379", "job", "--", "true"}, "bad Redis URL", true},
		{[]string{"status", "--redis", "redis://127.0.0.1:6379?master_name=m&addr=nohost", "job"}, "bad Redis URL", true},
		{[]string{"status", "--redis", "redis://127.0.0.1:6379?addr=127.0.0.1:6380&db=1", "job"}, "bad Redis URL", true},
		{[]string{"status", "--cluster", "--redis", "redis://127.0.0.1:6379/2", "job"}, "a Redis Cluster has only database 0", true},
		{[]string{"run", "--redis", "not an address", "job", "--", "true"}, "bad Redis address", true},
		{[]string{"run", "--tls-cert", "/no/cert.pem", "job", "--", "true"}, "--tls-cert and --tls-key go together", false},
		{[]string{"run", "--tls-ca", "/no/such/ca.pem", "job", "--", "true"}, "--tls-ca", true},
		{[]string{"run", "--prefix", "", "job", "--", "true"}, "--prefix is empty", false},
		{[]string{"run", "--log-level", "loud", "job", "--", "true"}, `--log-level "loud": want debug, info, warn or error`, false},
		{[]string{"status", "--log-format", "xml", "job"}, `--log-format "xml": want text or json`, false},
		{[]string{"status"}, "missing RESOURCE", false},
		{[]string{"status", "a", "b"}, "one RESOURCE, got 2: reserve status takes one at a time (reserve list shows every reservation)", false},
		{[]string{"release", "--force", "a", "b"}, "one RESOURCE, got 2: reserve release takes one at a time", false},
		{[]string{"wait", "a", "b"}, "one RESOURCE, got 2: reserve wait takes one at a time", false},
		{[]string{"list", "extra"}, `unknown command "extra"`, false},
		{[]string{"wait", "--timeout", "-1s", "job"}, "--timeout -1s is negative", false},
		{[]string{"release", "job"}, "add --force", false},
		{[]string{"run", "--limit", "0", "job", "--", "true"},
			"--limit 0: a semaphore has 1 to 1000 permits; leave the flag out for a plain reservation (one holder at a time)", false},
		{[]string{"run", "--limit", "-3", "job", "--", "true"}, "--limit -3: a semaphore has 1 to 1000 permits", false},
		{[]string{"run", "--limit", "1001", "job", "--", "true"}, "--limit 1001: a semaphore has at most 1000 permits", false},
		{[]string{"run", "--limit", "many", "job", "--", "true"}, `invalid argument "many" for "--limit"`, false},
		{[]string{"run", "--quorum", "--limit", "3", "job", "--", "true"},
			"--limit 3: semaphores are not available with a quorum (--quorum): give --limit with one Redis server, a Sentinel master or a Cluster", false},
		{[]string{"bogus"}, `unknown command "bogus"`, false},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			res := inProcess(t, env, tc.args...)
			if res.code != ExitUsage {
				t.Errorf("got %v\nwant exit %d", res, ExitUsage)
			}
			first, _, _ := strings.Cut(res.stderr, "\n")
			if !strings.HasPrefix(first, "reserve: ") || !strings.Contains(first, tc.msg) {
				t.Errorf("first line of stderr = %q, want reserve: ...%s...", first, tc.msg)
			}
			if usage := strings.Contains(res.stderr, "Usage: reserve"); usage == tc.noUsage {
				t.Errorf("stderr has a usage line: %v, want %v:\n%s", usage, !tc.noUsage, res.stderr)
			}
			if res.stdout != "" {
				t.Errorf("stdout = %q, want nothing", res.stdout)
			}
		})
	}
}

// TestUsageErrorsEnv gives bad values in the environment variables of
// reserve's flags: each exits 64 naming the variable.
func TestUsageErrorsEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		args []string
		msg  string
	}{
		{map[string]string{envCluster: "maybe"}, []string{"status", "job"}, `$RESERVE_CLUSTER "maybe": want true or false`},
		{map[string]string{envWaitReplicas: "two"}, []string{"run", "job", "--", "true"}, `$RESERVE_WAIT_REPLICAS "two": want a number`},
		{map[string]string{envWaitReplicas: "1", envWaitTimeout: "soon"}, []string{"run", "job", "--", "true"},
			`$RESERVE_WAIT_TIMEOUT "soon": want a positive duration`},
		{map[string]string{envQuorum: "true"}, []string{"run", "--limit", "2", "job", "--", "true"},
			"--limit 2: semaphores are not available with a quorum ($RESERVE_QUORUM)"},
	} {
		tc.env[envRedisURL] = "redis://" + unusedAddr(t)
		res := inProcess(t, tc.env, tc.args...)
		if first, _, _ := strings.Cut(res.stderr, "\n"); res.code != ExitUsage || !strings.Contains(first, tc.msg) {
			t.Errorf("%v: got %v\nwant exit %d and %q", tc.env, res, ExitUsage, tc.msg)
		}
	}
}

// TestInvalidResource gives names the library refuses: each exits 64 with
// the library's reason and the usage line.
func TestInvalidResource(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	env := map[string]string{envRedisURL: srv.URL()}
	long := strings.Repeat("x", reservation.MaxResourceLen+1)
	for _, args := range [][]string{
		{"run", "", "--", "true"},
		{"run", "--no-wait", long, "--", "true"},
		{"status", ""},
		{"wait", long},
		{"release", "--force", ""},
	} {
		res := inProcess(t, env, args...)
		first, _, _ := strings.Cut(res.stderr, "\n")
		if res.code != ExitUsage || !strings.Contains(first, "invalid resource") || !strings.Contains(res.stderr, "Usage: reserve") {
			t.Errorf("reserve %s: got %v\nwant exit %d, invalid resource and the usage", args[0], res, ExitUsage)
		}
	}
}

// TestUsageErrorsBinary checks the exit code of the real binary too.
func TestUsageErrorsBinary(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"run", "--bogus", "job", "--", "true"},
		{"run", "job", "true"},
		{"run", "--redis", "redis://127.0.0.1:notaport", "job", "--", "true"},
		{"run", "--ttl", "1h1x", "job", "--", "true"},
	} {
		if res := runReserve(t, nil, nil, args...); res.code != ExitUsage {
			t.Errorf("reserve %s: got %v\nwant exit %d", strings.Join(args, " "), res, ExitUsage)
		}
	}
}

// unusedAddr answers a loopback address where nothing listens and nothing
// will: the port stays bound, without listening, until the test ends, so a
// connection is refused and no redis-server started by a test running in
// parallel can take the port over.
func unusedAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// loopbackPort answers a loopback port that was free a moment ago, for a server
// the test starts on it at once.
func loopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func TestRedisUnavailable(t *testing.T) {
	t.Parallel()
	addr := unusedAddr(t)
	for _, args := range [][]string{
		{"run", "job", "--", "true"},
		{"status", "job"},
		{"list"},
		{"wait", "job"},
		{"release", "--force", "job"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel() // each takes go-redis's retries, about 2 s
			res := inProcess(t, map[string]string{envRedisURL: "redis://" + addr}, args...)
			if res.code != ExitUnavailable {
				t.Errorf("got %v\nwant exit %d", res, ExitUnavailable)
			}
			if !strings.Contains(res.stderr, addr) || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
				t.Errorf("stderr = %q, want one line naming %s", res.stderr, addr)
			}
		})
	}
}

// TestPasswordNeverShown gives reserve passwords, right and wrong, in the
// URL (its user information, a Sentinel URL's password parameter) and in
// REDIS_PASSWORD, on one server, through Sentinel and on a Cluster, and
// looks for them in everything it prints.
func TestPasswordNeverShown(t *testing.T) {
	t.Parallel()
	const (
		right = "Right-Pa55word_x9"
		wrong = "Wr0ng-Pa55word_q7"
	)
	withPw := func(addr, pw string) string {
		return (&url.URL{Scheme: "redis", User: url.UserPassword("", pw), Host: addr}).String()
	}
	t.Run("single", func(t *testing.T) {
		t.Parallel()
		srv := startTestRedis(t, redistest.WithPassword(right))
		hold(t, libClient(t, srv, "other", 5*time.Second), "held")
		down := unusedAddr(t)
		dir := t.TempDir()
		file := func(name, content string) string {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}
		rightFile, wrongFile := file("right", right+"\n"), file("wrong", wrong)
		longFile := file("long", strings.Repeat(right, 300))
		plain := envRedisURL + "=redis://" + srv.Addr
		checkPasswordsHidden(t, []passwordCase{
			{"wrong in file", []string{plain}, []string{"status", "--password-file", wrongFile, "job"}, ExitUnavailable},
			{"wrong in file from env", []string{plain, envPasswordFile + "=" + wrongFile}, []string{"run", "job", "--", "true"}, ExitUnavailable},
			{"right in file", []string{plain}, []string{"run", "--password-file", rightFile, "job", "--", "true"}, ExitOK},
			{"right in file, logs", []string{plain, envPasswordFile + "=" + rightFile},
				[]string{"run", "--log-level", "debug", "--log-format", "json", "job", "--", "true"}, ExitOK},
			{"file and env", []string{plain, envRedisPassword + "=" + wrong}, []string{"status", "--password-file", rightFile, "job"}, ExitUsage},
			{"file too long", []string{plain}, []string{"status", "--password-file", longFile, "job"}, ExitUsage},
			{"file not a file", []string{plain}, []string{"status", "--password-file", dir, "job"}, ExitUsage},
			{"wrong in URL", []string{envRedisURL + "=" + withPw(srv.Addr, wrong)}, []string{"run", "job", "--", "true"}, ExitUnavailable},
			{"wrong in env", []string{envRedisURL + "=redis://" + srv.Addr, envRedisPassword + "=" + wrong}, []string{"status", "job"}, ExitUnavailable},
			{"missing", []string{envRedisURL + "=redis://" + srv.Addr}, []string{"list"}, ExitUnavailable},
			{"server down", []string{envRedisURL + "=" + withPw(down, wrong)}, []string{"run", "job", "--", "true"}, ExitUnavailable},
			{"bad URL", []string{envRedisURL + "=redis://:" + wrong + "@127.0.0.1:port"}, []string{"run", "job", "--", "true"}, ExitUsage},
			{"bad URL flag", nil, []string{"status", "--redis", "redis://:" + wrong + "@127.0.0.1:6379/notadb", "job"}, ExitUsage},
			{"right, held", []string{envRedisURL + "=" + withPw(srv.Addr, right)}, []string{"run", "--no-wait", "held", "--", "true"}, ExitNotAcquired},
			{"right, status", []string{envRedisURL + "=" + withPw(srv.Addr, right)}, []string{"status", "held"}, ExitOK},
			{"right, list", []string{envRedisURL + "=" + withPw(srv.Addr, right)}, []string{"list", "--json"}, ExitOK},
			{"right, env", []string{envRedisURL + "=redis://" + srv.Addr, envRedisPassword + "=" + right}, []string{"run", "job", "--", "true"}, ExitOK},
			{"right, logs", []string{envRedisURL + "=" + withPw(srv.Addr, right), envLogLevel + "=debug"}, []string{"run", "job", "--", "true"}, ExitOK},
			{"wrong, json logs", []string{envRedisURL + "=" + withPw(srv.Addr, wrong)},
				[]string{"run", "--log-level", "debug", "--log-format", "json", "job", "--", "true"}, ExitUnavailable},
			{"help", []string{envRedisURL + "=" + withPw(srv.Addr, right)}, []string{"run", "--help"}, ExitOK},
		}, right, wrong)
	})
	t.Run("sentinel", func(t *testing.T) {
		t.Parallel()
		s := redistest.StartSentinel(t, redisserver.SentinelOptions{Options: redisserver.Options{Password: right}, Sentinels: 1})
		primeURL(t, s.URL())
		sentinel := s.Sentinels[0].Addr
		// The master's password in the password parameter; the URL's
		// user information is the Sentinels' (who have none here).
		masterPw := func(pw string) string {
			return "redis://" + sentinel + "?master_name=" + s.MasterName + "&password=" + url.QueryEscape(pw)
		}
		noPw := "redis://" + sentinel + "?master_name=" + s.MasterName
		checkPasswordsHidden(t, []passwordCase{
			{"wrong in URL", []string{envRedisURL + "=" + masterPw(wrong)}, []string{"run", "job", "--", "true"}, ExitUnavailable},
			{"wrong in env", []string{envRedisURL + "=" + noPw, envRedisPassword + "=" + wrong}, []string{"status", "job"}, ExitUnavailable},
			// A Sentinel without a password takes any (HELLO AUTH
			// default): the URL's password is for the Sentinels.
			{"any for the Sentinels", []string{envRedisURL + "=" + withPw(sentinel, wrong) + "?master_name=" + s.MasterName,
				envRedisPassword + "=" + right}, []string{"status", "job"}, ExitOK},
			{"Sentinel address", []string{envRedisURL + "=" + withPw(sentinel, wrong)}, []string{"status", "job"}, ExitUsage},
			{"bad URL", []string{envRedisURL + "=" + masterPw(wrong) + "&bogus=1"}, []string{"run", "job", "--", "true"}, ExitUsage},
			{"URL shown", []string{envRedisURL + "=redis://" + sentinel + "?master_name=&password=" + wrong}, []string{"status", "job"}, ExitUsage},
			{"right in URL", []string{envRedisURL + "=" + masterPw(right)}, []string{"run", "job", "--", "true"}, ExitOK},
			{"right in env", []string{envRedisURL + "=" + noPw, envRedisPassword + "=" + right}, []string{"list", "--json"}, ExitOK},
			{"right, logs", []string{envRedisURL + "=" + masterPw(right), envLogLevel + "=debug"}, []string{"run", "job", "--", "true"}, ExitOK},
		}, right, wrong)
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		cl := redistest.StartCluster(t, redisserver.ClusterOptions{Options: redisserver.Options{Password: right}})
		primeURL(t, cl.URL())
		node := cl.Addrs()[0]
		addrURL := func(pw string) string {
			return withPw(node, pw) + "?addr=" + cl.Addrs()[1] + "&addr=" + cl.Addrs()[2]
		}
		checkPasswordsHidden(t, []passwordCase{
			{"wrong in URL", []string{envRedisURL + "=" + addrURL(wrong)}, []string{"run", "job", "--", "true"}, ExitUnavailable},
			{"wrong in env, detected", []string{envRedisURL + "=" + node, envRedisPassword + "=" + wrong}, []string{"status", "job"}, ExitUnavailable},
			{"wrong in node URL, detected", []string{envRedisURL + "=" + withPw(node, wrong)}, []string{"list"}, ExitUnavailable},
			{"wrong, --cluster", []string{envRedisURL + "=" + withPw(node, wrong)}, []string{"status", "--cluster", "job"}, ExitUnavailable},
			{"bad URL", []string{envRedisURL + "=" + addrURL(wrong) + "&addr=nohost"}, []string{"run", "job", "--", "true"}, ExitUsage},
			{"right in URL", []string{envRedisURL + "=" + addrURL(right)}, []string{"run", "job", "--", "true"}, ExitOK},
			{"right in env, detected", []string{envRedisURL + "=" + node, envRedisPassword + "=" + right}, []string{"list", "--json"}, ExitOK},
			{"right in node URL, detected", []string{envRedisURL + "=" + withPw(node, right)}, []string{"status", "job"}, ExitOK},
			{"right, logs", []string{envRedisURL + "=" + addrURL(right), envLogLevel + "=debug"}, []string{"run", "job", "--", "true"}, ExitOK},
		}, right, wrong)
	})
}

// TestPasswordFile checks what --password-file says when the file cannot
// serve, and that a password read from it is used.
func TestPasswordFile(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t, redistest.WithPassword("s3cret"))
	dir := t.TempDir()
	empty, good := filepath.Join(dir, "empty"), filepath.Join(dir, "good")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte("s3cret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{envRedisURL + "=redis://" + srv.Addr}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"empty", env, []string{"status", "--password-file", empty, "job"}, ExitUsage, "reserve: --password-file " + empty + " is empty"},
		{"missing", env, []string{"status", "--password-file", dir + "/nope", "job"}, ExitUsage,
			"reserve: --password-file: open " + dir + "/nope: no such file or directory"},
		{"both", append([]string{envRedisPassword + "=x", envPasswordFile + "=" + good}, env...), []string{"status", "job"}, ExitUsage,
			"reserve: both $" + envPasswordFile + " and $" + envRedisPassword + " give a password: give one"},
		{"read", env, []string{"status", "--password-file", good, "job"}, ExitOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runReserve(t, nil, tc.env, tc.args...)
			if res.code != tc.code || !strings.Contains(res.stderr, tc.want) {
				t.Errorf("got %v\nwant exit %d and %q", res, tc.code, tc.want)
			}
		})
	}
}

func TestStatusAndListJSON(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	c := libClient(t, srv, "host-a", 20*time.Second)
	held := map[string]*reservation.Reservation{}
	for _, name := range []string{"json:one", "json:two", "json:{tagged}", "other"} {
		held[name] = hold(t, c, name)
	}
	free := hold(t, c, "json:free")
	if err := free.Release(ctx); err != nil {
		t.Fatal(err)
	}
	env := []string{envRedisURL + "=" + srv.URL()}

	// status of each, against what Redis holds.
	for name, r := range held {
		res := runReserve(t, nil, env, "status", "--json", name)
		if res.code != 0 {
			t.Fatalf("status %s: %v", name, res)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
			t.Fatalf("status --json %s: %v\n%s", name, err, res.stdout)
		}
		// The shape of before, and the fields added since.
		if keys := slices.Sorted(mapKeys(got)); !slices.Equal(keys,
			[]string{"guard_ms", "guard_unset", "held", "holder", "key", "resource", "token", "ttl_ms"}) {
			t.Errorf("status --json has keys %v, want resource key held holder ttl_ms token guard_ms guard_unset", keys)
		}
		var in infoJSON
		_ = json.Unmarshal([]byte(res.stdout), &in)
		value, _ := rdb.Get(ctx, "reservation-"+name).Result()
		pttl, _ := rdb.PTTL(ctx, "reservation-"+name).Result()
		if in.Resource != name || in.Key != "reservation-"+name || !in.Held || in.Holder != value || in.Holder != r.Holder() || in.Token != r.Token() {
			t.Errorf("status --json %s = %+v; Redis holds %q, token %d", name, in, value, r.Token())
		}
		if d := time.Duration(in.TTLMillis)*time.Millisecond - pttl; in.TTLMillis <= 0 || d < 0 || d > 2*time.Second {
			t.Errorf("status --json %s: ttl_ms %d, Redis's PTTL %v", name, in.TTLMillis, pttl)
		}
	}
	res := runReserve(t, nil, env, "status", "--json", "json:free")
	var in infoJSON
	if err := json.Unmarshal([]byte(res.stdout), &in); err != nil || res.code != 0 {
		t.Fatalf("status --json json:free: %v, %v", err, res)
	}
	if want := (infoJSON{Resource: "json:free", Key: "reservation-json:free", Token: free.Token()}); !reflect.DeepEqual(in, want) {
		t.Errorf("status --json json:free = %+v, want %+v", in, want)
	}

	// list --match, against the held set.
	res = runReserve(t, nil, env, "list", "--json", "--match", "json:*")
	var infos []infoJSON
	if err := json.Unmarshal([]byte(res.stdout), &infos); err != nil || res.code != 0 {
		t.Fatalf("list --json: %v, %v", err, res)
	}
	var names []string
	for _, in := range infos {
		names = append(names, in.Resource)
		if r := held[in.Resource]; r == nil || in.Holder != r.Holder() || in.Token != r.Token() || !in.Held {
			t.Errorf("list --json has %+v", in)
		}
	}
	if slices.Sort(names); !slices.Equal(names, []string{"json:one", "json:two", "json:{tagged}"}) {
		t.Errorf("list --json --match json:* lists %v", names)
	}
	res = runReserve(t, nil, env, "list", "--json", "--match", "nothing-*")
	if strings.TrimSpace(res.stdout) != "[]" {
		t.Errorf("list --json of nothing = %q, want []", res.stdout)
	}

	// The human forms name the holder and the token.
	res = runReserve(t, nil, env, "status", "json:one")
	for _, want := range []string{"json:one is held by " + held["json:one"].Holder(), fmt.Sprint(held["json:one"].Token()), "expires", "held for"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("status output has no %q:\n%s", want, res.stdout)
		}
	}
	res = runReserve(t, nil, env, "list")
	for _, want := range []string{"RESOURCE", "HOLDER", "json:two", held["json:two"].Holder(), "other"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("list output has no %q:\n%s", want, res.stdout)
		}
	}
	res = runReserve(t, nil, env, "status", "json:free")
	if !strings.Contains(res.stdout, "json:free is free") {
		t.Errorf("status of a free resource:\n%s", res.stdout)
	}
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	env := []string{envRedisURL + "=" + srv.URL()}
	r := hold(t, libClient(t, srv, "other", 20*time.Second), "waited")

	res := runReserve(t, nil, env, "wait", "--timeout", "300ms", "waited")
	if res.code != ExitNotAcquired || !strings.Contains(res.stderr, r.Holder()) {
		t.Errorf("wait --timeout while held: got %v\nwant exit %d naming the holder", res, ExitNotAcquired)
	}

	p := startReserve(t, nil, env, "wait", "--json", "waited")
	time.Sleep(300 * time.Millisecond)
	// It blocks while the resource is held (a zombie counts as exited).
	if processGone(p.cmd.Process.Pid) {
		t.Errorf("wait exited while the resource was held")
	}
	released := time.Now()
	if err := r.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	res = p.wait(t, 10*time.Second)
	var in infoJSON
	if err := json.Unmarshal([]byte(res.stdout), &in); err != nil || res.code != 0 || in.Held {
		t.Fatalf("wait --json: %v, %v", err, res)
	}
	if after := time.Since(released); after > 2*time.Second {
		t.Errorf("wait returned %v after the release", after)
	}
	// Nothing was taken: the token is the holder's.
	if in.Token != r.Token() {
		t.Errorf("after wait, token %d, want the last holder's %d", in.Token, r.Token())
	}
}

func TestReleaseForce(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	env := []string{envRedisURL + "=" + srv.URL()}
	c, err := reservation.New(srv.URL(), &reservation.Options{By: "victim", TTL: 3 * time.Second, HeartbeatInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := hold(t, c, "stuck")
	res := runReserve(t, nil, env, "release", "--force", "--json", "stuck")
	var got releaseResult
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || res.code != 0 {
		t.Fatalf("release --force --json: %v, %v", err, res)
	}
	if want := (releaseResult{Resource: "stuck", Key: "reservation-stuck", Released: true, Holder: r.Holder()}); !reflect.DeepEqual(got, want) {
		t.Errorf("release --force --json = %+v, want %+v", got, want)
	}
	select {
	case <-r.Done():
	case <-time.After(2 * time.Second):
		t.Errorf("the holder did not see its loss")
	}
	res = runReserve(t, nil, env, "release", "--force", "stuck")
	if res.code != 0 || !strings.Contains(res.stdout, "was not held") {
		t.Errorf("release --force of a free resource: %v", res)
	}
}

// TestRestartGuardFlag runs on a brand-new server: the restart guard
// refuses the first acquisition, unless --restart-guard is off or short.
func TestRestartGuardFlag(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t) // not primed
	env := []string{envRedisURL + "=" + srv.URL()}
	res := runReserve(t, nil, env, "run", "--no-wait", "--restart-guard", "off", "a", "--", "true")
	if res.code != 0 {
		t.Errorf("--restart-guard off: %v", res)
	}
	res = runReserve(t, nil, env, "run", "--no-wait", "b", "--", "true")
	if res.code != ExitNotAcquired || !strings.Contains(res.stderr, "restart guard") {
		t.Errorf("first acquisition on a new server: got %v\nwant exit %d explaining the restart guard", res, ExitNotAcquired)
	}
	srv.FlushAll(t)
	res = runReserve(t, nil, env, "run", "--restart-guard", "300ms", "c", "--", "true")
	if res.code != 0 || res.elapsed < 300*time.Millisecond {
		t.Errorf("--restart-guard 300ms: got %v, want exit 0 after 300ms", res)
	}
}

// TestDemo runs the demo on a server of its own, where every check must
// pass, and on a given one that pushes nothing to the waiters, where the
// wake-up check must fail and the others pass.
func TestDemo(t *testing.T) {
	t.Parallel()
	// summary answers the demo's check lines, and the one about wake-ups.
	summary := func(t *testing.T, res result, want int) (checks []string, wake string) {
		t.Helper()
		_, sum, ok := strings.Cut(res.stdout, "3. Summary")
		if !ok {
			t.Fatalf("demo output has no summary:\n%s", res.stdout)
		}
		for _, l := range strings.Split(sum, "\n") {
			l = strings.TrimSpace(l)
			if strings.HasPrefix(l, "✓") || strings.HasPrefix(l, "✗") {
				checks = append(checks, l)
				if strings.Contains(l, "waiter") {
					wake = l
				}
			}
		}
		if len(checks) != want || wake == "" {
			t.Fatalf("demo summary has %d checks, want %d, one of them about wake-ups:\n%s", len(checks), want, res.stdout)
		}
		return checks, wake
	}
	check := func(t *testing.T, res result, wantHeader string, wantChecks int) {
		t.Helper()
		if res.code != 0 {
			t.Fatalf("demo: %v", res)
		}
		for _, want := range []string{wantHeader, "1. ", "2. ", "kill -9", "took over", "token"} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("demo output has no %q:\n%s", want, res.stdout)
			}
		}
		checks, wake := summary(t, res, wantChecks)
		for _, c := range checks {
			if !strings.HasPrefix(c, "✓") {
				t.Errorf("demo check failed: %s\n%s", c, res.stdout)
			}
		}
		if !strings.Contains(wake, "a release woke the next waiter after") {
			t.Errorf("demo wake-up check = %q, want the time a release took to wake the next waiter", wake)
		}
		if res.elapsed > 20*time.Second {
			t.Errorf("demo took %v, want about 15s at most", res.elapsed)
		}
	}
	t.Run("own server", func(t *testing.T) {
		t.Parallel()
		res := runReserve(t, nil, nil, "demo", "--probe", unusedAddr(t))
		check(t, res, "started a throwaway redis-server", 4)
	})
	t.Run("given server without wake-ups", func(t *testing.T) {
		t.Parallel()
		// A user without Pub/Sub channels (Redis 7's default for a new
		// ACL user) gets neither client tracking, whose invalidations come
		// on a channel, nor the release notices: its waiters wake only when
		// the holder's key would run out, which must not pass for a wake-up.
		srv := redistest.Start(t) // not primed: the demo turns the guard off
		if err := srv.Client(t).Do(context.Background(), "ACL", "SETUSER", "nochan", "on", ">pw", "~*", "+@all").Err(); err != nil {
			t.Fatal(err)
		}
		url := strings.Replace(srv.URL(), "redis://", "redis://nochan:pw@", 1)
		res := runReserve(t, nil, []string{envRedisURL + "=" + url}, "demo")
		if res.code != ExitFailure || !strings.Contains(res.stdout, "reserve demo on Redis at "+srv.Addr) {
			t.Errorf("demo without wake-ups: got %v\nwant exit %d", res, ExitFailure)
		}
		checks, wake := summary(t, res, 4)
		// ✗, with a time, or none when no waiter got the job right after
		// the holding it found (another worker's came in between).
		if !strings.HasPrefix(wake, "✗ a release did not wake the next waiter: it got the job ") &&
			!strings.HasPrefix(wake, "✗ no release woke a waiter") {
			t.Errorf("demo without wake-ups: wake-up check %q, want ✗\n%s", wake, res.stdout)
		}
		for _, c := range checks {
			if c != wake && !strings.HasPrefix(c, "✓") {
				t.Errorf("demo without wake-ups: check failed: %s\n%s", c, res.stdout)
			}
		}
		if !strings.Contains(res.stderr, "refuses a command to this user") {
			t.Errorf("demo without wake-ups: stderr does not say what the server refuses:\n%s", res.stderr)
		}
		exists, err := srv.Client(t).Exists(context.Background(), "{reservation}:restart-guard").Result()
		if err != nil || exists != 0 {
			t.Errorf("the demo set the restart guard's marker on a server it did not start (%d, %v)", exists, err)
		}
	})
	t.Run("own cluster", func(t *testing.T) {
		t.Parallel()
		res := runReserve(t, nil, nil, "demo", "--cluster")
		check(t, res, "reserve demo: started it on ", 4)
		if !strings.Contains(res.stdout, "The jobs' keys live on 3 of the Cluster's masters: ") {
			t.Errorf("demo --cluster does not show the jobs spread over the masters:\n%s", res.stdout)
		}
	})
	t.Run("own quorum", func(t *testing.T) {
		t.Parallel()
		res := runReserve(t, nil, nil, "demo", "--quorum")
		check(t, res, "reserve demo: started them on ", 5)
		for _, want := range []string{"kill -9 the redis-server on ", "start it again, without its data", " holdings while one of the 3 servers was down"} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("demo --quorum output has no %q:\n%s", want, res.stdout)
			}
		}
		if !strings.Contains(res.stderr, "one of the 3 servers of the quorum, does not answer (") {
			t.Errorf("demo --quorum: stderr does not say which server is down:\n%s", res.stderr)
		}
	})
	t.Run("no redis-server", func(t *testing.T) {
		t.Parallel()
		empty := t.TempDir()
		p := startReserve(t, nil, []string{"PATH=" + empty}, "demo", "--probe", unusedAddr(t))
		res := p.wait(t, 10*time.Second)
		if res.code != ExitUnavailable || !strings.Contains(res.stderr, "apt-get install redis-server") {
			t.Errorf("demo without redis-server: got %v\nwant exit %d saying how to install it", res, ExitUnavailable)
		}
	})
}

func TestVersionAndCompletion(t *testing.T) {
	t.Parallel()
	res := inProcess(t, nil, "version")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "reserve ") {
		t.Errorf("version: %v", res)
	}
	res = inProcess(t, nil, "--version")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "reserve ") {
		t.Errorf("--version: %v", res)
	}
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		res = inProcess(t, nil, "completion", shell)
		if res.code != 0 || !strings.Contains(res.stdout, "reserve") {
			t.Errorf("completion %s: exit %d, %d bytes", shell, res.code, len(res.stdout))
		}
	}
}

// TestHelp checks that every command has a short description and examples.
func TestHelp(t *testing.T) {
	t.Parallel()
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		for _, c := range cmd.Commands() {
			if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
				continue
			}
			if c.Short == "" || c.Example == "" {
				t.Errorf("%s has no short description or no examples", c.CommandPath())
			}
			res := inProcess(t, nil, append(strings.Fields(c.CommandPath())[1:], "--help")...)
			if res.code != 0 || !strings.Contains(res.stdout, "Examples:") {
				t.Errorf("%s --help: %v", c.CommandPath(), res)
			}
			walk(c)
		}
	}
	walk(newRootCmd(&app{secrets: new([]string)}))
}

// TestTLS runs reserve against a Redis that only speaks TLS, with a CA and
// a client certificate made for the test.
func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := writeTestPKI(t, dir)
	port := loopbackPort(t)
	// redistest talks to the plain port; reserve to the TLS one.
	redistest.Start(t, redistest.WithArgs(
		"--tls-port", port,
		"--tls-cert-file", files.serverCert, "--tls-key-file", files.serverKey,
		"--tls-ca-cert-file", files.ca, "--tls-auth-clients", "yes"))
	addr := "127.0.0.1:" + port
	env := []string{envRedisURL + "=rediss://" + addr}
	tlsFlags := []string{"--tls-ca", files.ca, "--tls-cert", files.clientCert, "--tls-key", files.clientKey}
	res := runReserve(t, nil, env, append(append([]string{"run"}, tlsFlags...), "--restart-guard", "off", "tls-job", "--", "true")...)
	if res.code != 0 {
		t.Errorf("run over TLS: %v", res)
	}
	res = runReserve(t, nil, env, append(append([]string{"status"}, tlsFlags...), "tls-job")...)
	if res.code != 0 || !strings.Contains(res.stdout, "tls-job is free") {
		t.Errorf("status over TLS: %v", res)
	}
	// Without the client certificate, the server refuses.
	res = runReserve(t, nil, env, "status", "--tls-ca", files.ca, "tls-job")
	if res.code != ExitUnavailable {
		t.Errorf("status over TLS without a client certificate: got %v\nwant exit %d", res, ExitUnavailable)
	}
}

// TestLogFlags checks that the library's log records show only when asked
// for, by flag or environment, in text or JSON.
func TestLogFlags(t *testing.T) {
	t.Parallel()
	srv := startTestRedis(t)
	res := runReserve(t, srv, nil, "run", "logged", "--", "true")
	if res.code != 0 || res.stderr != "" {
		t.Errorf("by default: got %v\nwant exit 0 and nothing on stderr", res)
	}

	res = runReserve(t, srv, nil, "run", "--log-format", "json", "--log-level", "debug", "logged", "--", "true")
	if res.code != 0 {
		t.Fatalf("--log-format json: %v", res)
	}
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(res.stderr), "\n") {
		var rec struct{ Level, Msg, Resource string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("--log-format json: line %q is not JSON: %v", line, err)
			continue
		}
		if rec.Resource == "logged" {
			msgs = append(msgs, rec.Msg)
		}
	}
	for _, want := range []string{string(reservation.EventAcquired), string(reservation.EventReleased)} {
		if !slices.Contains(msgs, want) {
			t.Errorf("--log-format json: records %v, want %s among them\n%s", msgs, want, res.stderr)
		}
	}

	res = runReserve(t, srv, []string{envLogLevel + "=debug"}, "run", "logged", "--", "true")
	if res.code != 0 || !strings.Contains(res.stderr, "level=DEBUG msg="+string(reservation.EventAcquired)) {
		t.Errorf("$%s=debug: got %v\nwant text records", envLogLevel, res)
	}
	res = runReserve(t, srv, []string{envLogFormat + "=json"}, "run", "logged", "--", "true")
	if res.code != 0 || res.stderr != "" {
		// Info and above: nothing happens at those levels here.
		t.Errorf("$%s=json: got %v\nwant no record at level info", envLogFormat, res)
	}
	res = runReserve(t, srv, []string{envLogFormat + "=yaml"}, "status", "logged")
	if res.code != ExitUsage || !strings.Contains(res.stderr, "$"+envLogFormat) {
		t.Errorf("$%s=yaml: got %v\nwant exit %d naming the variable", envLogFormat, res, ExitUsage)
	}
}
