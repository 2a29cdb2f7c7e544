package redistest

import "syscall"

// sysProcAttr puts redis-server in its own process group, so that a signal
// reaches any child it forks (BGSAVE, a full sync to a replica), and asks the
// kernel to kill it if the test process dies without running its cleanups.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
