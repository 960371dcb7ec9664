package app

import (
	"os"
	"runtime/debug"
)

// DefaultGOGC is the garbage collector's target Guardian runs with unless
// the GOGC environment variable sets another: 75, the default Prometheus
// runs its own storage with (runtime.gogc), instead of Go's 100. Scraped
// samples and a service's watch state outlive many collections, and the
// heap a collector lets grow between them is spread with them: at 1,000
// services, 75 keeps about 10 MiB less resident (83 instead of 92 MiB of
// heap in use) for a few percent more CPU (docs/benchmarks.md).
const DefaultGOGC = 75

// SetGCDefault sets the collector's target to DefaultGOGC unless GOGC is
// set in the environment, and returns the target in effect (-1: off). The
// daemon calls it at start.
func SetGCDefault() int {
	if _, set := os.LookupEnv("GOGC"); set {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(DefaultGOGC)
	return DefaultGOGC
}
