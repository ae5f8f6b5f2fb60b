//go:build race

package testbin

// Race is true when the tests run with the race detector.
const Race = true
