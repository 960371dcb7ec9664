//go:build !linux

package command

// startTicks cannot be read without /proc.
func startTicks(int) uint64 { return 0 }

// running cannot tell without /proc: Attach then reports the outcome as
// unknown at once.
func running(int, uint64) bool { return false }
