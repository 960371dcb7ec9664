//go:build !race

package sequential

// statScale scales the number of simulated deploys of the statistical
// tests (see race_test.go).
const statScale = 1.0
