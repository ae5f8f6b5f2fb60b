//go:build !race

package fault

// exitDelay is what a -race binary adds to its exit; none here.
const exitDelay = 0
