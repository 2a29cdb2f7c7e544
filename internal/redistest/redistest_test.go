package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/redis-reservation/reservation/internal/redisserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ping(ctx context.Context, addr, password string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, MaxRetries: -1,
		DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	defer c.Close()
	return c.Ping(ctx).Err()
}

func TestStart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr = %q, want 127.0.0.1:<port>", s.Addr)
	}
	if got, want := s.URL(), "redis://"+s.Addr+"/0"; got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}
	if s.Pid() == 0 {
		t.Errorf("Pid() = 0 for a running server")
	}
	ctx := context.Background()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("GET k = %q, %v; want \"v\", nil", got, err)
	}
	for param, want := range map[string]string{"save": "", "appendonly": "no", "dir": s.dir} {
		got, err := c.ConfigGet(ctx, param).Result()
		if err != nil {
			t.Fatalf("CONFIG GET %s: %v", param, err)
		}
		if got[param] != want {
			t.Errorf("CONFIG GET %s = %q, want %q", param, got[param], want)
		}
	}
}

func TestPassword(t *testing.T) {
	t.Parallel()
	const pw = `p w"\:@/é`
	s := Start(t, WithPassword(pw))
	if s.Password != pw {
		t.Errorf("Password = %q, want %q", s.Password, pw)
	}
	ctx := context.Background()
	if err := ping(ctx, s.Addr, ""); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING without password: err = %v, want NOAUTH", err)
	}
	if err := ping(ctx, s.Addr, "wrong"); err == nil {
		t.Errorf("PING with a wrong password: err = nil, want an error")
	}
	if err := s.Client(t).Ping(ctx).Err(); err != nil {
		t.Errorf("Client().Ping: %v", err)
	}
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", s.URL(), err)
	}
	if opt.Password != pw || opt.Addr != s.Addr || opt.DB != 0 {
		t.Errorf("ParseURL(URL()) = password %q addr %q db %d; want %q %q 0", opt.Password, opt.Addr, opt.DB, pw, s.Addr)
	}
}

func TestWithArgs(t *testing.T) {
	t.Parallel()
	s := Start(t, WithArgs("--notify-keyspace-events", "Kgx"), WithArgs("--maxmemory-policy", "noeviction"))
	got, err := s.Client(t).ConfigGet(context.Background(), "notify-keyspace-events").Result()
	if err != nil {
		t.Fatal(err)
	}
	// Redis normalises the flags' order.
	if v := got["notify-keyspace-events"]; len(v) != 3 || !strings.Contains(v, "K") || !strings.Contains(v, "g") || !strings.Contains(v, "x") {
		t.Errorf("notify-keyspace-events = %q, want K, g and x", v)
	}
}

func TestRestartLosesData(t *testing.T) {
	t.Parallel()
	s := Start(t, WithPassword("pw"), WithArgs("--notify-keyspace-events", "Kx"))
	ctx := context.Background()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	addr, pid := s.Addr, s.Pid()
	s.Restart(t)
	if s.Addr != addr {
		t.Errorf("Addr after Restart = %q, want %q", s.Addr, addr)
	}
	if s.Pid() == pid || s.Pid() == 0 {
		t.Errorf("Pid after Restart = %d, want a new running process (was %d)", s.Pid(), pid)
	}
	// The old client's pooled connection died with the old process.
	_ = c.Ping(ctx).Err()
	n, err := c.Exists(ctx, "k").Result()
	if err != nil || n != 0 {
		t.Errorf("EXISTS k after Restart = %d, %v; want 0, nil", n, err)
	}
	got, err := c.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil || got["notify-keyspace-events"] == "" {
		t.Errorf("WithArgs lost on Restart: notify-keyspace-events = %q, %v", got["notify-keyspace-events"], err)
	}
	if !strings.Contains(s.Log(), "Ready to accept connections") {
		t.Errorf("Log() lacks the start message")
	}
}

func TestKill(t *testing.T) {
	t.Parallel()
	s := Start(t)
	pid := s.Pid()
	s.Kill()
	if err := ping(context.Background(), s.Addr, ""); err == nil {
		t.Errorf("PING after Kill succeeded")
	}
	if s.Pid() != 0 {
		t.Errorf("Pid() after Kill = %d, want 0", s.Pid())
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); runtime.GOOS == "linux" && err == nil {
		t.Errorf("process %d still exists after Kill (zombie?)", pid)
	}
	s.Kill() // no-op
	s.Stop() // no-op
	s.Restart(t)
	if err := ping(context.Background(), s.Addr, ""); err != nil {
		t.Errorf("PING after Kill and Restart: %v", err)
	}
}

func TestStop(t *testing.T) {
	t.Parallel()
	s := Start(t, WithPassword("secret"))
	s.Stop()
	if err := ping(context.Background(), s.Addr, "secret"); err == nil {
		t.Errorf("PING after Stop succeeded")
	}
	if !strings.Contains(s.Log(), "ready to exit") {
		t.Errorf("Stop did not shut down gracefully; log:\n%s", s.Log())
	}
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx := context.Background()
	c := s.Client(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	s.Pause()
	var nerr net.Error
	if err := ping(ctx, s.Addr, ""); !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Errorf("PING while paused: err = %v, want a timeout", err)
	}
	s.Resume()
	if err := ping(ctx, s.Addr, ""); err != nil {
		t.Errorf("PING after Resume: %v", err)
	}
	s.Pause()
	s.Stop() // resumes, then shuts down
	if s.Pid() != 0 {
		t.Errorf("Stop of a paused server left it running")
	}
}

func TestKillPaused(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.Pause()
	s.Kill()
	s.Restart(t)
	if err := ping(context.Background(), s.Addr, ""); err != nil {
		t.Errorf("PING after Pause, Kill, Restart: %v", err)
	}
	s.Pause() // left paused: the cleanup must still reap it
}

func TestFlushAll(t *testing.T) {
	t.Parallel()
	s := Start(t, WithPassword("pw"))
	ctx := context.Background()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.FlushAll(t)
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Errorf("DBSIZE after FlushAll = %d, %v; want 0, nil", n, err)
	}
}

func TestStartMasters(t *testing.T) {
	t.Parallel()
	ss := StartMasters(t, 3)
	if len(ss) != 3 {
		t.Fatalf("len = %d, want 3", len(ss))
	}
	ctx := context.Background()
	seen := map[string]bool{}
	for i, s := range ss {
		if seen[s.Addr] {
			t.Errorf("Addr %s used twice", s.Addr)
		}
		seen[s.Addr] = true
		if err := s.Client(t).Set(ctx, "k", i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range ss {
		if got, err := s.Client(t).Get(ctx, "k").Int(); err != nil || got != i {
			t.Errorf("master %d: GET k = %d, %v; want %d (masters must be independent)", i, got, err, i)
		}
		if role, err := s.Client(t).Do(ctx, "ROLE").Slice(); err != nil || role[0] != "master" {
			t.Errorf("master %d: ROLE = %v, %v", i, role, err)
		}
	}
}

func TestStartReplicated(t *testing.T) {
	t.Parallel()
	var r *redisserver.Replicated
	t.Run("run", func(t *testing.T) {
		r = StartReplicated(t, redisserver.ReplicatedOptions{Replicas: 2})
		ctx := context.Background()
		m := redis.NewClient(&redis.Options{Addr: r.Master.Addr})
		defer m.Close()
		if err := m.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		for _, s := range r.Replicas {
			c := redis.NewClient(&redis.Options{Addr: s.Addr})
			defer c.Close()
			if role, err := c.Do(ctx, "ROLE").Slice(); err != nil || role[0] != "slave" {
				t.Errorf("replica %s: ROLE = %v, %v", s.Addr, role, err)
			}
		}
	})
	for _, s := range r.Servers() {
		if s.Pid() != 0 {
			t.Errorf("server %s still runs after its test", s.Addr)
		}
	}
}

// fatalTB records Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = strings.TrimSpace(strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " "))
	f.mu.Unlock()
	runtime.Goexit()
}

func runFatal(t *testing.T, fn func(tb testing.TB)) string {
	t.Helper()
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.msg
}

func TestMissingBinary(t *testing.T) {
	// Not parallel: changes the environment.
	t.Setenv("PATH", t.TempDir())
	t.Setenv(BinEnv, "")
	msg := runFatal(t, func(tb testing.TB) { Start(tb) })
	if !strings.Contains(msg, "apt-get install redis-server") {
		t.Errorf("Fatalf message = %q, want it to say how to install redis-server", msg)
	}

	t.Setenv(BinEnv, "/nonexistent/redis-server")
	msg = runFatal(t, func(tb testing.TB) { Start(tb) })
	if !strings.Contains(msg, BinEnv) || !strings.Contains(msg, "/nonexistent/redis-server") {
		t.Errorf("Fatalf message = %q, want it to name %s and its value", msg, BinEnv)
	}
}
