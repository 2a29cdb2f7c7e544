//go:build unix

package redisserver

import "syscall"

// signal sends sig to p's process group (see sysProcAttr). Callers check
// first that p has not been reaped, so that the group id has not been freed
// for reuse by an unrelated process.
func signal(p *proc, sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}
