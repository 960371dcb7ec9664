//go:build race

package sequential

// statScale scales the number of simulated deploys of the statistical
// tests: the race detector makes each Decide several times slower.
const statScale = 0.1
