//go:build !race

package sendmail

const raceEnabled = false
