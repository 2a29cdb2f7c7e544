package redistest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// StartMain is Start for a TestMain, where there is no testing.TB (runnable
// examples need a server too). The caller calls stop when done. The error
// says how to install redis-server when it is missing.
func StartMain(opts ...Option) (s *Server, stop func(), err error) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	bin := os.Getenv(BinEnv)
	if bin == "" {
		bin = "redis-server"
	}
	if bin, err = exec.LookPath(bin); err != nil {
		return nil, nil, fmt.Errorf("redistest: redis-server is not on PATH and %s is not set; these tests run a real Redis. "+
			"Install it with `apt-get install redis-server`, or set %s to its path", BinEnv, BinEnv)
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, nil, err
	}
	s = &Server{
		Password: c.password,
		bin:      bin,
		dir:      dir,
		conf:     filepath.Join(dir, "redis.conf"),
		logPath:  filepath.Join(dir, "redis.log"),
		args:     append([]string(nil), c.args...),
	}
	stop = func() {
		s.Kill()
		os.RemoveAll(dir)
	}
	if err := os.WriteFile(s.conf, []byte(s.config()), 0o600); err != nil {
		stop()
		return nil, nil, err
	}
	for range startTries {
		var port int
		if port, err = freePort(); err != nil {
			break
		}
		if err = s.start(port); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("redistest: start %s: %w", bin, err)
	}
	return s, stop, nil
}
