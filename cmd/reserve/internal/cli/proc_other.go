//go:build !linux

package cli

import "syscall"

// sysProcAttr puts the command in a process group of its own, in the
// foreground of terminal tty when tty >= 0.
func sysProcAttr(tty int) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if tty >= 0 {
		a.Foreground, a.Ctty = true, tty
	}
	return a
}
