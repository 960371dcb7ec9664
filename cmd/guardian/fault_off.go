//go:build !faultpoints || !unix

package main

import "go.uber.org/zap"

// faultHook is nil in a normal build: fault points exist only in builds
// with the faultpoints tag, for tests.
func faultHook(*zap.Logger) func(point string) { return nil }
