//go:build race

package fault

import "time"

// exitDelay is what a -race binary adds to its exit: the race runtime
// sleeps (GORACE atexit_sleep_ms, 1s by default) to catch late reports.
const exitDelay = time.Second
