package redisserver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/redis-reservation/reservation/internal/hashslot"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start starts a server for a test and kills it when the test ends.
func start(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

func TestStartAndRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := start(t, Options{Dir: dir, Password: "p w", Args: []string{"--maxmemory-policy", "noeviction"}})
	if got, want := s.URL(), "redis://:p%20w@"+s.Addr+"/0"; got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}
	ctx := context.Background()
	for field, want := range map[string]string{"dir": dir, "save": "", "appendonly": "no", "maxmemory-policy": "noeviction"} {
		v, err := s.do(ctx, "CONFIG", "GET", field)
		if l, _ := v.([]any); err != nil || len(l) != 2 || l[1] != want {
			t.Errorf("CONFIG GET %s = %v, %v; want %q", field, v, err, want)
		}
	}
	if _, err := do(ctx, s.Addr, "", "PING"); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING without the password: %v, want NOAUTH", err)
	}
	addr, pid := s.Addr, s.Pid()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Addr != addr || s.Pid() == pid || s.Pid() == 0 {
		t.Errorf("after Restart: %s pid %d, want %s and a new pid (was %d)", s.Addr, s.Pid(), addr, pid)
	}
	s.Pause()
	pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err := s.do(pctx, "PING")
	cancel()
	if err == nil {
		t.Errorf("PING of a paused server answered")
	}
	s.Stop() // resumes it first
	if s.Pid() != 0 || !strings.Contains(s.LogTail(), "ready to exit") {
		t.Errorf("Stop of a paused server: pid %d, log:\n%s", s.Pid(), s.LogTail())
	}
}

func TestCPUs(t *testing.T) {
	t.Parallel()
	s := start(t, Options{CPUs: "0"})
	status, err := os.ReadFile("/proc/" + strconv.Itoa(s.Pid()) + "/status")
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if !strings.Contains(string(status), "Cpus_allowed_list:\t0\n") {
		t.Errorf("server not pinned to CPU 0:\n%s", status)
	}
	info, err := s.Info(context.Background(), "server")
	if err != nil || InfoField(info, "process_id") != strconv.Itoa(s.Pid()) {
		t.Errorf("INFO process_id = %q (%v), want %d", InfoField(info, "process_id"), err, s.Pid())
	}
}

func TestPortInUse(t *testing.T) {
	t.Parallel()
	s := start(t, Options{})
	// A second server on the first one's port is a port clash, which
	// Start answers by trying another port.
	other := start(t, Options{})
	other.Kill()
	err := other.start(context.Background(), s.ports)
	if !errors.Is(err, errAddrInUse) {
		t.Errorf("start on a taken port: err = %v, want errAddrInUse", err)
	}
	if other.Pid() != 0 {
		t.Errorf("failed start left a process running")
	}
}

func TestBinary(t *testing.T) {
	// Not parallel: changes the environment.
	t.Setenv("PATH", t.TempDir())
	t.Setenv(BinEnv, "")
	_, err := Start(context.Background(), Options{Dir: t.TempDir()})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "apt-get install redis-server") {
		t.Errorf("Start without redis-server: err = %v, want ErrNotFound saying how to install it", err)
	}
	t.Setenv(BinEnv, "/nonexistent/redis-server")
	_, err = Binary()
	if err == nil || !strings.Contains(err.Error(), BinEnv) || !strings.Contains(err.Error(), "/nonexistent/redis-server") {
		t.Errorf("Binary() with a wrong %s: err = %v, want it named with its value", BinEnv, err)
	}
}

// TestSentinelBinary checks that a Sentinel runs the redis-sentinel beside
// the server binary when there is one, and redis-server --sentinel when not.
func TestSentinelBinary(t *testing.T) {
	t.Parallel()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	for _, sibling := range []bool{false, true} {
		dir := t.TempDir()
		link := func(name string) {
			if err := os.Symlink(bin, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		link("redis-server")
		if sibling {
			link("redis-sentinel")
		}
		s := start(t, Options{Dir: t.TempDir(), Bin: filepath.Join(dir, "redis-server"), sentinel: true,
			conf: confLine("sentinel", "monitor", "m", "127.0.0.1", "1", "1")})
		info, err := s.Info(context.Background(), "server")
		if err != nil || InfoField(info, "redis_mode") != "sentinel" {
			t.Errorf("sibling %v: redis_mode:%s (%v), want sentinel", sibling, InfoField(info, "redis_mode"), err)
		}
		if got := strings.HasSuffix(s.name, "redis-sentinel"); got != sibling {
			t.Errorf("sibling %v: ran %s %v", sibling, s.name, s.argv)
		}
	}
}

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `""`},
		{"abc", `"abc"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"a b\n\x00é", `"a b\x0a\x00\xc3\xa9"`},
	} {
		if got := quote(tc.in); got != tc.want {
			t.Errorf("quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestSlotOf(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want int
	}{
		{"123456789", 0x31c3 % Slots}, // CRC-16/XMODEM's check value
		{"foo", 12182},
		{"{user1000}.following", SlotOf("user1000")},
		{"x{user1000}y{z}", SlotOf("user1000")},
		{"foo{}{bar}", int(hashslot.CRC16("foo{}{bar}")) % Slots}, // empty tag: the whole key
		{"foo{{bar}}zap", SlotOf("{bar")},
		{"{", int(hashslot.CRC16("{")) % Slots},
	} {
		if got := SlotOf(tc.key); got != tc.want {
			t.Errorf("SlotOf(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
}
