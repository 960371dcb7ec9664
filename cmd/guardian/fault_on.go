//go:build faultpoints && unix

package main

import (
	"os"
	"syscall"

	"go.uber.org/zap"
)

// faultHook, in a build with the faultpoints tag (the end-to-end tests
// build one), kills Guardian with SIGKILL at the fault point named by the
// GUARDIAN_FAULT environment variable, the way a crash would.
func faultHook(log *zap.Logger) func(point string) {
	want := os.Getenv("GUARDIAN_FAULT")
	if want == "" {
		return nil
	}
	log.Warn("fault point armed: Guardian kills itself there", zap.String("fault", want))
	return func(point string) {
		if point == want {
			log.Warn("fault point reached: SIGKILL", zap.String("fault", point))
			_ = log.Sync()
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}
