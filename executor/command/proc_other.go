//go:build !unix

package command

import (
	"os"
	"os/exec"
)

// setProcessGroup leaves cmd as it is: without Unix process groups only the
// command itself is killed when its context ends.
func setProcessGroup(cmd *exec.Cmd) {}

// killGroup does nothing without Unix process groups.
func killGroup(pid int) error { return os.ErrProcessDone }
