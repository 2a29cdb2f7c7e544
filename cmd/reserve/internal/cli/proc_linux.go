package cli

import "syscall"

// sysProcAttr puts the command in a process group of its own, in the
// foreground of terminal tty when tty >= 0. The command gets SIGTERM when
// reserve dies (even by SIGKILL), since nobody renews its reservation then.
func sysProcAttr(tty int) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if tty >= 0 {
		a.Foreground, a.Ctty = true, tty
	}
	return a
}
