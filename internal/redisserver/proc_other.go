//go:build unix && !linux

package redisserver

import "syscall"

// sysProcAttr puts redis-server in its own process group, so that a signal
// reaches any child it forks (a full sync to a replica) and a Ctrl-C at a
// terminal reaches only the program that started it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
