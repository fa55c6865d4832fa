// Command pause is the dev node's pod sandbox process: it holds the pod's namespaces, exits
// on SIGTERM or SIGINT, and as PID 1 of a shared PID namespace reaps orphaned children.
// Standard library only, built static (CGO_ENABLED=0) so the image needs nothing else.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for { // reap every exited child; WNOHANG so a live one does not block us
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
