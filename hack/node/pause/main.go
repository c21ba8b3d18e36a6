// Command pause holds a pod's namespaces for the local nodes' sandbox image, as
// registry.k8s.io/pause does: it sleeps until SIGTERM or SIGINT and then exits 0. As PID 1 it
// must handle those signals itself (the kernel ignores default-action signals for PID 1).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	// Children re-parented to us (only with a shared process namespace) are reaped.
	child := make(chan os.Signal, 1)
	signal.Notify(child, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-child:
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
