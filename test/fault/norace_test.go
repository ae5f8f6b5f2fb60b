//go:build !race

package fault

const raceEnabled = false

// exitDelay is what a -race binary adds to its exit; none here.
const exitDelay = 0
