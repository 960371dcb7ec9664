//go:build !race

package latency

// statScale scales the number of simulated deploys of the statistical
// tests (see race_test.go).
const statScale = 1.0
