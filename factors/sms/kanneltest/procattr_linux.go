package kanneltest

import "syscall"

// procAttr makes the kernel kill a Kannel process when the test binary
// dies (a crash, a timeout's SIGQUIT), so none is left holding its ports.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
