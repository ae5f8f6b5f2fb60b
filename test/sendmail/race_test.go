//go:build race

package sendmail

const raceEnabled = true
