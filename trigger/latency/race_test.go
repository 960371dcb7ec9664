//go:build race

package latency

// statScale scales the number of simulated deploys of the statistical
// tests: the race detector makes each Decide several times slower, and
// these tests run in one goroutine, where it finds nothing.
const statScale = 0.2
