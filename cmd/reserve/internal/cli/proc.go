package cli

import (
	"errors"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// foregroundTTY answers the descriptor of in when it is a terminal whose
// foreground process group is reserve's own, else -1.
func foregroundTTY(in io.Reader) int {
	f, ok := in.(*os.File)
	if !ok {
		return -1
	}
	fd := int(f.Fd())
	pg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || pg != unix.Getpgrp() {
		return -1
	}
	return fd
}

// reclaimTTY makes reserve's process group the foreground of the terminal
// again, after the command's group had it. A background group that does so
// gets SIGTTOU, which is ignored meanwhile.
func reclaimTTY(fd int) {
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	_ = unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, unix.Getpgrp())
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	return err == nil
}

// signalGroup sends sig to the process group that p leads, or to p alone
// when that fails.
func signalGroup(p *os.Process, sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return p.Signal(sig)
	}
	if err := syscall.Kill(-p.Pid, s); err == nil || !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return p.Signal(sig)
}

// stopGroup waits until the process group pgid is empty, and kills what is
// left of it at deadline.
func stopGroup(pgid int, deadline time.Time) {
	for syscall.Kill(-pgid, 0) == nil {
		if !time.Now().Before(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
